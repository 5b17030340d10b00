"""`zreward demo`: fresh ShapeWorld images the model never saw, scored and evaluated end to end."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click


def run_demo(model=None, seed: int = 1234, n: int = 800, batch_size: int = 32) -> dict:
    """Generates a small ShapeWorld (its own seed), scores one prompt group, evaluates the test split."""
    from zreward.data import load_dataset
    from zreward.data.shapeworld import generate_shapeworld
    from zreward.eval import evaluate
    from zreward.models import load_model

    scorer = load_model(model)
    with tempfile.TemporaryDirectory(prefix="zreward-demo-") as tmp:
        root = Path(tmp) / "shapeworld"
        meta = generate_shapeworld(root, n, seed=seed, image_size=scorer.image_size, progress=False)
        test = load_dataset(root / "test", scorer.rubric)
        group = [p for p in test.points if p.prompt == test.points[0].prompt]
        dist = scorer.score([p.image for p in group], group[0].prompt)
        click.echo(f'prompt: "{group[0].prompt}"\n')
        names = scorer.rubric.names
        click.echo(f"{'image':<7}{'injected failures':<34}{'overall':>14}" + "".join(f"{n:>14}" for n in names))
        for i, (p, row) in enumerate(zip(group, dist.to_dict())):
            fails = ", ".join(f["kind"] for f in p.extra.get("meta", {}).get("failures", [])) or "none"
            cells = "".join(f"{row['dimensions'][n]['mean']:>8.2f} ±{row['dimensions'][n]['std']:.2f}" for n in names)
            click.echo(f"{i:<7}{fails[:33]:<34}{row['overall']['mean']:>8.2f} ±{row['overall']['std']:.2f}{cells}")
        p_ab = dist[0].overall_prob_greater(dist[1]).item() if len(group) > 1 else float("nan")
        click.echo(f"\nP(image 0 > image 1) = {p_ab:.3f}")
        results = evaluate(scorer, test, batch_size=batch_size, progress=False)
        ceiling = meta["splits"]["test"]["noise_ceiling_hpa"]
        click.echo(f"\nShapeWorld test split (seed {seed}, {results['n_points']} images, {results['n_pairs']} pairs):")
        click.echo(f"  HPA {results['hpa']:.3f} (noise ceiling {ceiling:.3f})   margin-HPA {results['margin_hpa']:.3f}"
                   f"   PLCC {results['plcc']:.3f}   SRCC {results['srcc']:.3f}")
        return {"results": results, "ceiling": ceiling}
