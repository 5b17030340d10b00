"""`export_engine`: a ZRewardModel -> a verified engine directory (or Triton model repository).

Order of work, so that nothing is written unless it scores like the PyTorch model:
1. the static graph (`StaticScorer`) is checked against the Hugging Face forward on the sample;
2. torch.export, then the backend's graph (ONNX / AOTInductor package / TensorRT plan) is written
   into a temporary sibling directory (`atomic_dir`);
3. the compiled engine is loaded from there and measured on the sample (parity with the PyTorch
   model, batch invariance); over the limits, the temporary directory is removed;
4. the manifest (with the parity figures and every file's sha256) is written last, then the
   directory is renamed into place. An interrupted export leaves no directory that looks complete.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from zreward.engines import verify
from zreward.engines.artifact import (
    BACKENDS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    backend_unavailable,
    dump_json,
    file_table,
)
from zreward.errors import InputError
from zreward.io import atomic_dir, check_output_dir


@dataclass
class ExportOptions:
    backend: str = "onnxruntime"
    precision: str = "fp32"  # fp32 | fp16 | bf16: the graph's dtype (TensorRT builds exactly that)
    device: str = "cpu"  # where the graph is traced and compiled (aoti / tensorrt: cuda on a GPU)
    min_batch: int = 1
    opt_batch: int | None = None  # the TensorRT profile's opt batch (default: min(8, max_batch))
    max_batch: int = 32
    format: str = "engine"  # engine | triton
    sample_shapes: int = 4  # ShapeWorld images in the parity sample
    sample_random: int = 4  # random-pixel images in the parity sample
    providers: list[str] | None = None  # onnxruntime execution providers used for the parity check
    workspace_gb: float = 8.0  # TensorRT builder workspace
    optimization_level: int = 3  # TensorRT builder optimization level
    triton: dict = field(default_factory=dict)  # see triton_server.TritonOptions

    def checked(self) -> "ExportOptions":
        if self.backend not in BACKENDS:
            raise InputError(f"unknown backend {self.backend!r}; use one of {list(BACKENDS)}")
        if self.precision not in verify.PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}; use one of {list(verify.PRECISIONS)}")
        if self.format not in ("engine", "triton"):
            raise InputError(f"unknown format {self.format!r}; use engine or triton")
        if self.format == "triton" and self.backend == "aoti":
            raise InputError("--format triton serves onnxruntime and tensorrt engines, not aoti")
        opt = self.opt_batch or min(8, self.max_batch)
        if not 1 <= self.min_batch <= opt <= self.max_batch:
            raise InputError(f"batch range needs 1 <= min <= opt <= max, got "
                             f"min={self.min_batch} opt={opt} max={self.max_batch}")
        if self.sample_shapes + self.sample_random < 2:
            raise InputError("the parity sample needs at least 2 images")
        if self.device not in ("cpu", "cuda"):
            raise InputError(f"unknown export device {self.device!r}; use cpu or cuda")
        if self.providers is not None and (not isinstance(self.providers, list)
                                           or not all(isinstance(x, str) for x in self.providers)):
            raise InputError(f"providers must be a list of onnxruntime provider names, got {self.providers!r}")
        return replace(self, opt_batch=opt)

    def check_runnable(self) -> None:
        """This machine can export them: the backend is installed and the device exists."""
        if self.device == "cuda" and not torch.cuda.is_available():
            raise InputError("export device cuda: torch sees no CUDA device here")
        reason = backend_unavailable(self.backend, self.device)
        if reason:
            raise InputError(f"backend {self.backend!r} is not available: {reason}")


def weights_sha256(model) -> str:
    """sha256 over the backbone's state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.backbone.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def library_versions() -> dict:
    out = {"torch": torch.__version__}
    for name in ("zreward", "transformers", "onnx", "onnxruntime", "onnxscript"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    try:
        import tensorrt as trt  # its distribution name varies (tensorrt-cu12, -cu13): ask the module

        out["tensorrt"] = trt.__version__
    except ImportError:
        pass
    return out


def _chunks(fn, images, prompts, size):
    return torch.cat([fn(images[s:s + size], prompts[s:s + size]) for s in range(0, len(images), size)])


def export_engine(model, out, options: ExportOptions | None = None, source: str | None = None, log=None,
                  **overrides) -> dict:
    """Exports `model` to `out` (see the module docstring); returns the manifest written."""
    opts = replace(options or ExportOptions(), **overrides).checked()
    check_output_dir(out, MANIFEST, "an engine", protected=[source] if source and Path(source).exists() else [])
    log = log or (lambda msg: None)
    opts.check_runnable()
    dtype = verify.PRECISIONS[opts.precision]
    digest = weights_sha256(model)
    was_training = model.training
    try:
        return _export(model, out, opts, dtype, digest, source, log)
    finally:
        model.train(was_training)


def _export(model, out, opts: ExportOptions, dtype, digest: str, source, log) -> dict:
    from zreward.engines.host import HostInputs, max_length, min_length, position_table
    from zreward.engines.static import StaticScorer, export_program, has_static_length, reference_probs

    m = model.eval()
    if dtype != model.dtype or model.device != torch.device(opts.device):
        m = copy.deepcopy(model)  # the caller's model keeps its dtype and device
        m.backbone.to(dtype=dtype)
        m.to(opts.device)
    scorer = StaticScorer(m).eval()
    static_length = has_static_length(scorer)
    lengths = (min_length(m.encoder), max_length(m.encoder))
    positions = position_table(model, lengths[1])
    triton = opts.format == "triton"
    host = HostInputs(m.encoder, m.family, m.image_size, positions, static_length or triton)

    images, prompts = verify.sample_images(opts.sample_shapes, opts.sample_random, m.image_size)
    atol = verify.parity_atol(opts.precision)
    where = f"{source or 'model'} ({m.family.model_type}, {opts.backend}, {opts.precision})"
    log(f"checking the static graph against the Hugging Face forward on {len(images)} images")
    with torch.no_grad():
        ref = _chunks(lambda i, p: reference_probs(m, m.prepare(i, p)).cpu(), images, prompts, opts.max_batch)
        static = _chunks(lambda i, p: scorer(**{k: v.to(opts.device) for k, v in host(i, p).items()})[0].cpu(),
                         images, prompts, opts.max_batch)
    static_err = verify.max_abs(static, ref)
    log(f"  static graph vs Hugging Face: max |probs difference| {static_err:.2e}")
    verify.check("the static graph's max |probs difference| from the Hugging Face forward", static_err, atol, where)

    n_example = min(max(2, opts.min_batch), opts.max_batch)
    example = {k: v.to(opts.device) for k, v in host(images[:n_example], prompts[:n_example]).items()}
    log("tracing with torch.export")
    program = export_program(scorer, example, (opts.min_batch, opts.max_batch), lengths)

    out = Path(out)
    with atomic_dir(out) as tmp:
        graph_dir = tmp / "zreward_scorer" / "1" if triton else tmp
        host_dir = tmp / "zreward_preprocess" / "1" / "engine" if triton else tmp
        graph_dir.mkdir(parents=True, exist_ok=True)
        host_dir.mkdir(parents=True, exist_ok=True)
        log(f"building the {opts.backend} engine")
        runner, graph = _build(opts, program, example, graph_dir, scorer, lengths, static_length)
        m.tokenizer.save_pretrained(host_dir / "tokenizer")

        log(f"measuring parity on {len(images)} images")
        run = lambda i, p: runner(host(i, p))[0]
        probs = _chunks(run, images, prompts, opts.max_batch)
        parity = {
            "images": len(images), "shapeworld_images": opts.sample_shapes, "random_images": opts.sample_random,
            "static_vs_huggingface": static_err, "max_abs_probs": verify.max_abs(probs, ref),
            "batch_invariance": verify.batch_invariance(run, images, prompts, opts.opt_batch),
            "probs_atol": atol, "batch_invariance_atol": verify.BATCH_INVARIANCE_ATOL,
        }
        log(f"  engine vs PyTorch: max |probs difference| {parity['max_abs_probs']:.2e}; "
            f"batch invariance {parity['batch_invariance']:.2e}")
        verify.check("the engine's max |probs difference| from the PyTorch model", parity["max_abs_probs"], atol, where)
        if opts.precision == "fp32":
            verify.check("the batch dependence of one image's probs", parity["batch_invariance"],
                         verify.BATCH_INVARIANCE_ATOL, where)

        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "layout": opts.format, "backend": opts.backend,
            "precision": opts.precision, "device": opts.device,
            "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "source": {"model": source, "model_type": m.family.model_type, "weights_sha256": digest,
                       "spec": model.spec()},
            "rubric": m.rubric.to_dict(), "template": m.template.to_dict(), "temperature": m.temperature,
            "resolution": m.image_size, "family": asdict(m.family),
            "image_token_id": scorer.image_token_id,
            "batch": {"min": opts.min_batch, "opt": opts.opt_batch, "max": opts.max_batch},
            "text": {"min_length": lengths[0], "max_length": lengths[1], "fixed_length": host.fixed_length,
                     "positions": positions.tolist()},
            "graph": graph, "versions": library_versions(), "parity": parity,
        }
        if triton:
            from zreward.engines.triton_server import write_model_repository

            (host_dir / "host.json").write_text(dump_json(manifest))
            write_model_repository(tmp, manifest, opts.triton)
        manifest["files"] = file_table(tmp)
        (tmp / MANIFEST).write_text(dump_json(manifest))
    log(f"wrote {out}")
    return manifest


def _build(opts, program, example, graph_dir: Path, scorer, lengths, static_length):
    """Writes the backend's files into graph_dir; returns (runner, the manifest's graph entry)."""
    from zreward.engines.static import INPUT_NAMES, OUTPUT_NAMES

    rel = lambda p: p.name if graph_dir.name != "1" else f"zreward_scorer/1/{p.name}"
    io = {"inputs": list(INPUT_NAMES), "outputs": list(OUTPUT_NAMES), "patches": scorer.patches,
          "features": scorer.features, "dims": int(example["read_positions"].shape[1])}
    if opts.backend in ("onnxruntime", "tensorrt"):
        from zreward.engines.onnx_backend import GRAPH_FILE, OnnxRunner, export_onnx

        onnx_path = graph_dir / GRAPH_FILE
        export_onnx(program, example, onnx_path)
        weights = [rel(p) for p in graph_dir.iterdir() if p.name.startswith(GRAPH_FILE)]
        if opts.backend == "onnxruntime":
            return OnnxRunner(onnx_path, opts.providers), {"file": rel(onnx_path), "weights": weights, **io}
        from zreward.engines.tensorrt_backend import PLAN_FILE, TensorRTRunner, build_plan, profile_shapes

        length = (lengths[1],) * 3 if static_length else (lengths[0], lengths[1], lengths[1])
        shapes = profile_shapes(scorer.patches, scorer.features, io["dims"],
                                (opts.min_batch, opts.opt_batch, opts.max_batch), length)
        build_plan(onnx_path, graph_dir, shapes, int(opts.workspace_gb * (1 << 30)), opts.optimization_level)
        plan = graph_dir / PLAN_FILE
        return TensorRTRunner(plan), {"file": rel(plan), "weights": [rel(plan)] + weights, "onnx": rel(onnx_path),
                                      "profile": {k: [list(s) for s in v] for k, v in shapes.items()}, **io}
    from zreward.engines.aoti_backend import PACKAGE_FILE, AotiRunner, compile_aoti

    path = graph_dir / PACKAGE_FILE
    compile_aoti(program, path)
    return AotiRunner(path, opts.device), {"file": rel(path), "weights": [rel(path)], **io}
