"""`zreward export`: a reward model -> a verified compiled engine (or a Triton model repository)."""

from __future__ import annotations

from pathlib import Path

import click

from zreward.errors import InputError

BACKEND_CHOICES = ("onnxruntime", "aoti", "tensorrt")


@click.command("export")
@click.option("--model", "-m", default=None, help="Checkpoint directory or hub id (default: the embedded model).")
@click.option("--backend", default=None, type=click.Choice(BACKEND_CHOICES),
              help="Engine backend (default: the profile's, else onnxruntime).")
@click.option("--out", required=True, type=click.Path(), help="The engine directory to write (replaced atomically).")
@click.option("--max-batch", default=None, type=click.IntRange(1), help="Largest batch the engine takes (default 32).")
@click.option("--precision", default=None, type=click.Choice(["fp32", "fp16", "bf16"]),
              help="The graph's dtype (default: the profile's, else fp32).")
@click.option("--verify", is_flag=True,
              help="Measure parity on 64 ShapeWorld + 16 random-pixel images (default: 4 + 4).")
@click.option("--profile", default=None, help="An export profile: a name in export/profiles/ or a .json path.")
@click.option("--format", "fmt", default="engine", show_default=True, type=click.Choice(["engine", "triton"]),
              help="engine: a directory for zreward.load_engine; triton: a Triton Inference Server repository.")
def export_command(model, backend, out, max_batch, precision, verify, profile, fmt):
    """Export the model to a compiled engine that scores exactly like PyTorch (checked before writing)."""
    try:
        _export(model, backend, out, max_batch, precision, verify, profile, fmt)
    except InputError as e:
        raise click.ClickException(str(e)) from None


def _export(model, backend, out, max_batch, precision, verify, profile, fmt):
    from zreward.engines.exporter import ExportOptions, export_engine
    from zreward.engines.profiles import export_overrides, load_profile
    from zreward.models import load_model

    overrides, resolution = {}, None
    if profile:
        prof = load_profile(profile)
        click.echo(f"profile {prof['name']}: {prof.get('description', '')}".rstrip(": "))
        overrides = export_overrides(prof)
        resolution = prof.get("resolution")
    for key, value in (("backend", backend), ("max_batch", max_batch), ("precision", precision)):
        if value is not None:
            overrides[key] = value
    if max_batch is not None and overrides.get("opt_batch", 0) > max_batch:
        overrides["opt_batch"] = max_batch
    if max_batch is not None and overrides.get("min_batch", 1) > max_batch:
        overrides["min_batch"] = max_batch
    if verify:
        overrides.update(sample_shapes=64, sample_random=16)
    overrides["format"] = fmt
    options = ExportOptions(**overrides).checked()  # bad options fail before the model loads
    options.check_runnable()

    from zreward.engines.artifact import MANIFEST
    from zreward.io import check_output_dir

    check_output_dir(out, MANIFEST, "an engine", protected=[model] if model and Path(model).exists() else [])
    click.echo(f"loading {model or 'the embedded default model'}")
    rm = load_model(model)
    if resolution is not None and int(resolution) != rm.image_size:
        raise InputError(f"profile {profile!r} is for resolution {resolution}; the model scores at {rm.image_size}")
    manifest = export_engine(rm, out, options, source=model or "default", log=click.echo)
    p = manifest["parity"]
    click.echo(f"{options.backend} engine ({options.precision}, batch {options.min_batch}..{options.max_batch}) "
               f"at {out}: max |probs difference| {p['max_abs_probs']:.2e} on {p['images']} images, "
               f"batch invariance {p['batch_invariance']:.2e}")
