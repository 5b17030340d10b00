"""The `zreward` command line: thin click commands, heavy imports inside them, one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from zreward.errors import InputError


class _Group(click.Group):
    """Turns the project's input errors (and OS errors on user files) into one-line CLI errors."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            if e.ctx is None:
                raise
            # One line, like every other error (click prints the usage block and a hint first).
            raise click.UsageError(f"{e.format_message()} (see '{e.ctx.command_path} --help')") from None
        except InputError as e:
            raise click.ClickException(str(e)) from None
        except (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
            raise click.ClickException(f"{e.filename}: {e.strerror}") from None


@click.group(cls=_Group)
@click.version_option(package_name="zreward")
def main():
    """zreward: distributional text-to-image reward models (score distributions, not scalars)."""
    _exit_cleanly_on_sigterm()


def _exit_cleanly_on_sigterm() -> None:
    """A scheduler's SIGTERM unwinds like Ctrl-C: the temporary folders of an unfinished output are removed
    (by default the process dies on the spot and leaves them)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _scorer(model: str | None, engine: str | None, dtype: str | None = None, device: str | None = None):
    for option, value in (("--model", model), ("--engine", engine)):
        if value is not None and not value.strip():
            raise InputError(f"{option}: empty path (leave the option out for the embedded model)")
    if model and engine:
        raise InputError("give --model or --engine, not both")
    if engine:
        if device or dtype:
            raise InputError("--device and --dtype apply to --model; an engine runs as it was exported")
        from zreward.engines import load_engine

        return load_engine(engine)
    import torch

    from zreward.models import load_model

    if device is None:  # a GPU when there is one: what a user with one expects
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise InputError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: torch sees no CUDA device here")
    return load_model(model, dtype=dtype, device=device)


# --- score ----------------------------------------------------------------------------------------
@main.command()
@click.option("--model", "-m", default=None, help="Checkpoint directory or hub id (default: the embedded model).")
@click.option("--engine", default=None, type=click.Path(), help="A compiled engine directory (zreward export).")
@click.option("--prompt", "-p", required=True, help="The text prompt the images were generated for.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per image.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--dtype", default=None, type=click.Choice(["float32", "bfloat16", "float16"]))
@click.option("--device", default=None, help="torch device, e.g. cuda or cpu  [default: cuda when available].")
@click.argument("images", nargs=-1, required=True, type=click.Path())
def score(model, engine, prompt, as_json, batch_size, dtype, device, images):
    """Score IMAGE... for a prompt: per-dimension distributions, mean and std."""
    if not prompt.strip():
        raise InputError("--prompt is empty")
    scorer = _scorer(model, engine, dtype, device)
    dist = scorer.score(list(images), prompt, batch_size=batch_size, progress=len(images) > batch_size)
    rows = dist.to_dict()
    if as_json:
        out = [{"image": img, "prompt": prompt, **row} for img, row in zip(images, rows)]
        click.echo(json.dumps(out, indent=2))
        return
    names = scorer.rubric.names
    width = max(len(str(i)) for i in images)
    click.echo(f"{'image':<{width}}  {'overall':>13}  " + "  ".join(f"{n:>13}" for n in names))
    for img, row in zip(images, rows):
        cells = [f"{row['dimensions'][n]['mean']:.2f} ± {row['dimensions'][n]['std']:.2f}" for n in names]
        overall = f"{row['overall']['mean']:.2f} ± {row['overall']['std']:.2f}"
        click.echo(f"{img:<{width}}  {overall:>13}  " + "  ".join(f"{c:>13}" for c in cells))


# --- demo ---------------------------------------------------------------------------------------
@main.command()
@click.option("--model", "-m", default=None, help="Checkpoint directory or hub id (default: the embedded model).")
@click.option("--seed", default=1234, show_default=True, type=int, help="Seed of the fresh ShapeWorld sample.")
@click.option("--n", default=800, show_default=True, type=click.IntRange(40), help="Images to generate.")
def demo(model, seed, n):
    """Score fresh ShapeWorld images with the model and evaluate it on them."""
    from zreward.demo import run_demo

    run_demo(model, seed=seed, n=n)


# --- eval -----------------------------------------------------------------------------------------
@main.command("eval")
@click.option("--model", "-m", default=None, help="Checkpoint directory or hub id (default: the embedded model).")
@click.option("--engine", default=None, type=click.Path(), help="A compiled engine directory.")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="A dataset directory (points/pairs JSONL).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--out", default=None, type=click.Path(), help="Also write metrics.json and reliability.png here.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--device", default=None, help="torch device, e.g. cuda or cpu  [default: cuda when available].")
def eval_cmd(model, engine, data_dir, as_json, out, batch_size, device):
    """HPA, margin-HPA, PLCC/SRCC, NLL, EMD and ECE of P(A > B) on a dataset."""
    from zreward.data import load_dataset
    from zreward.eval import evaluate

    if not Path(data_dir).is_dir():
        raise InputError(f"{data_dir}: dataset directory not found")
    if out and Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"{out}: --out is a file; it names a folder for metrics.json and reliability.png")
    scorer = _scorer(model, engine, device=device)
    data = load_dataset(data_dir, scorer.rubric)
    results = evaluate(scorer, data, batch_size=batch_size, progress=not as_json)
    if out:
        from zreward.eval.report import write_report

        write_report(results, out)
    if as_json:
        from zreward.eval.report import json_safe

        click.echo(json.dumps(json_safe(results), indent=2, allow_nan=False))  # NaN (no data) as null
        return
    for key in ("hpa", "margin_hpa", "n_pairs", "plcc", "srcc", "nll", "emd", "ece"):
        if key in results:
            click.echo(f"{key:>12}: {results[key]:.4f}" if isinstance(results[key], float) else f"{key:>12}: {results[key]}")
    for name, d in results.get("dimensions", {}).items():
        click.echo(f"{name:>12}: " + "  ".join(f"{k} {v:.3f}" for k, v in d.items() if isinstance(v, float)))


# --- train ----------------------------------------------------------------------------------------
@main.group(cls=_Group)
def train():
    """Train reward models on standard trainers."""


@train.command("sft")
@click.option("--data", "data_dir", required=True, type=click.Path(),
              help="A dataset directory, or a folder with train/ (and val/) datasets.")
@click.option("--out", required=True, type=click.Path(), help="Where to save the model (loads with --model OUT).")
@click.option("--max-minutes", default=15.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Wall-clock budget of the whole run (warm-up, student, validation, saving); it ends sooner "
                   "when --epochs passes come first.")
@click.option("--init", default=None, help="'default' (the embedded model) or a checkpoint; none: a fresh tiny model.")
@click.option("--epochs", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Passes over the prompt groups.")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate (cosine decay)  [default: 2e-4].")
@click.option("--backbone", default="qwen2_vl", show_default=True,
              type=click.Choice(["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5"]), help="Family of a fresh model.")
@click.option("--lora-r", default=0, show_default=True, type=click.IntRange(0), help="LoRA rank (0: full fine-tune).")
@click.option("--pair-loss-weight", default=0.5, show_default=True, type=click.FloatRange(min=0),
              help="Thurstone pair loss weight.")
@click.option("--vision-warmup-minutes", default=None, type=click.FloatRange(min=0),
              help="Vision warm-up before the student, part of --max-minutes  [default: 30% of --max-minutes "
                   "for a fresh model, at most --epochs passes over the images; 0 with --init].")
@click.option("--caption-loss-weight", default=0.5, show_default=True, type=click.FloatRange(min=0),
              help="Auxiliary captioning loss on the prompt tokens of well-aligned images (helps alignment).")
@click.option("--explanation-loss-weight", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Auxiliary loss on the first --explanation-tokens of each rationale, written after the score "
                   "slots (helps the model see what fails; scoring is unchanged).")
@click.option("--explanation-tokens", default=64, show_default=True, type=click.IntRange(1),
              help="Rationale tokens the explanation loss covers.")
@click.option("--groups-per-batch", default=8, show_default=True, type=click.IntRange(1),
              help="Prompt groups per step (each with all its images, at most 6).")
@click.option("--vision-warmup-batch-size", default=32, show_default=True, type=click.IntRange(1),
              help="Images per step of the vision warm-up.")
@click.option("--image-size", default=None, type=click.IntRange(28),
              help="Input resolution (pixels, square): of a fresh model [default: 112 for patch 14], or a new one "
                   "for the --init model, whose weights carry over.")
@click.option("--hidden-size", default=128, show_default=True, type=click.IntRange(16),
              help="Language-model width of a fresh model.")
@click.option("--num-layers", default=4, show_default=True, type=click.IntRange(1),
              help="Language-model depth of a fresh model.")
@click.option("--vision-hidden-size", default=64, show_default=True, type=click.IntRange(16),
              help="Vision-tower width of a fresh model.")
@click.option("--vision-depth", default=4, show_default=True, type=click.IntRange(1),
              help="Vision-tower depth of a fresh model.")
@click.option("--widen", default=1, show_default=True, type=click.IntRange(1),
              help="Make the --init model this many times wider first, keeping its scores (qwen2_vl).")
@click.option("--workers", default=None, type=click.IntRange(0),
              help="Data-loader worker processes  [default: 0 on the CPU, up to 4 beside a GPU].")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the run: a fresh model's initial weights and the data order.")
def train_sft_cmd(data_dir, out, max_minutes, init, epochs, lr, backbone, lora_r, pair_loss_weight,
                  vision_warmup_minutes, caption_loss_weight, explanation_loss_weight, explanation_tokens,
                  groups_per_batch, vision_warmup_batch_size,
                  image_size, hidden_size, num_layers, vision_hidden_size, vision_depth, widen, workers, seed):
    """The SFT student: soft-label CE on annotator histograms (+ Thurstone pairs)."""
    from zreward.training import sft_config_for, train_sft
    from zreward.training.data import resolve_splits

    train_set, val_set = resolve_splits(data_dir)
    from zreward.training import LR

    cfg = sft_config_for(out, init=init, epochs=epochs, lr=LR if lr is None else lr, backbone=backbone,
                         lora_r=lora_r, pair_loss_weight=pair_loss_weight, max_minutes=max_minutes, seed=seed,
                         vision_warmup_minutes=vision_warmup_minutes, caption_loss_weight=caption_loss_weight,
                         explanation_loss_weight=explanation_loss_weight, explanation_tokens=explanation_tokens,
                         groups_per_batch=groups_per_batch, vision_warmup_batch_size=vision_warmup_batch_size,
                         image_size=image_size, hidden_size=hidden_size, num_layers=num_layers, vision_hidden_size=vision_hidden_size,
                         vision_depth=vision_depth, widen=widen, workers=workers)
    train_sft(train_set, out, cfg, val=val_set)
    from zreward.training.distributed import is_main_process

    if not is_main_process():  # under torchrun / accelerate launch the main process reports
        return
    log = json.loads((Path(out) / "training_log.json").read_text())
    click.echo(f"saved {out} ({log['steps']} steps, {log['minutes']:.1f} min, loss {log['train_loss']:.4f})")
    if "val" in log:
        v = log["val"]
        click.echo(f"val: hpa {v['hpa']:.4f}  margin_hpa {v['margin_hpa']:.4f}  plcc {v['plcc']:.4f}")


# --- data -----------------------------------------------------------------------------------------
@main.group(cls=_Group)
def data():
    """Build and import datasets."""


@data.command("shapeworld")
@click.option("--out", required=True, type=click.Path(), help="Output folder (train/ val/ test/ ood/).")
@click.option("--n", default=4000, show_default=True, type=click.IntRange(8), help="Images in all splits.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--image-size", default=112, show_default=True, type=click.IntRange(32),
              help="Pixels per side (112 for patch-14 backbones, 128 for patch 16).")
def shapeworld_cmd(out, n, seed, image_size):
    """Generate ShapeWorld, the synthetic text-to-image preference world."""
    from zreward.data.shapeworld import generate_shapeworld

    meta = generate_shapeworld(out, n, seed=seed, image_size=image_size, progress=True)
    summary = {s: {k: v[k] for k in ("images", "pairs", "noise_ceiling_hpa")} for s, v in meta["splits"].items()}
    click.echo(json.dumps({"splits": summary, "oracle_alignment_agreement": meta.get("oracle_alignment_agreement")}, indent=2))


@data.command("import")
@click.argument("kind", type=click.Choice(["hpdv2", "pickapic", "imagerewarddb"]))
@click.argument("src", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Output dataset directory.")
@click.option("--split", default=None, help="Which split of a dataset directory (train, validation, test, ...); "
              "needed when SRC holds several.")
@click.option("--image-root", default=None, type=click.Path(), help="Folder the image paths are relative to "
              "(hpdv2, imagerewarddb; default: found from SRC).")
@click.option("--no-copy", is_flag=True, help="Reference the source images by absolute path instead of copying "
              "them into OUT/images (hpdv2, imagerewarddb).")
@click.option("--skip-missing", is_flag=True, help="Leave out rows whose image file is absent, e.g. a partial "
              "download (hpdv2, imagerewarddb); counted in the summary.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
def import_cmd(kind, src, out, split, image_root, no_copy, skip_missing, overwrite):
    """Convert a published preference dataset (HPDv2, Pick-a-Pic, ImageRewardDB) to the zreward format."""
    from zreward.data.importers import import_dataset

    kwargs = {"split": split, "overwrite": overwrite}
    file_options = {"image_root": image_root, "copy_images": not no_copy, "skip_missing": skip_missing}
    if kind == "pickapic":  # images come as bytes inside the parquet rows
        given = [f"--{k}" for k, v in (("image-root", image_root), ("no-copy", no_copy),
                                        ("skip-missing", skip_missing)) if v]
        if given:
            raise InputError(f"{', '.join(given)} does not apply to pickapic (its images are bytes in the rows)")
    else:
        kwargs.update(file_options)
    rep = import_dataset(kind, src, out, **kwargs)
    skipped = ", ".join(f"{n} {why}" for why, n in rep.skipped.items())
    click.echo(f"wrote {rep.out}: {rep.points} points, {rep.pairs} pairs, {rep.images} images"
               + (f" (left out: {skipped})" if skipped else ""))


# --- env ------------------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True)
def env(as_json):
    """Versions and which backends are live (ops, engines)."""
    from zreward.env import environment_report

    report = environment_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for section, items in report.items():
            click.echo(f"{section}:")
            for k, v in items.items():
                click.echo(f"  {k:<22} {v}")


def _register_optional():
    try:
        from zreward.engines.cli import export_command
    except ImportError:
        return
    main.add_command(export_command, "export")


_register_optional()

if __name__ == "__main__":
    sys.exit(main())
