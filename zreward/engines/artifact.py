"""The engine artifact: a directory with manifest.json, graph files and tokenizer; and loading it.

    DIR/manifest.json    format version, backend, source model and weights sha256, rubric, resolution,
                         batch range, precision, library versions, parity figures measured at export,
                         the host-side layout (template, position table) and every file's sha256
    DIR/model.onnx[.data] | model.pt2 | model.onnx + model.plan + timing.cache
    DIR/tokenizer/       the tokenizer files the host needs

`load_engine(DIR)` validates all of it (format version, file sizes and hashes, library versions,
backend availability) and returns an `Engine` with `.rubric` and the PyTorch model's `score`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from zreward.distribution import ScoreDistribution
from zreward.errors import InputError
from zreward.rubric import Rubric

FORMAT = "zreward-engine"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BACKENDS = ("onnxruntime", "aoti", "tensorrt")


def dump_json(obj) -> str:
    """Indented JSON with innermost number lists kept on one line (the position table stays short)."""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[\s*([-0-9.eE+,\s]+?)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_table(root: Path) -> dict[str, dict]:
    """{relative path: {"bytes", "sha256"}} for every file under root except the manifest."""
    return {p.relative_to(root).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST}


def backend_unavailable(backend: str, device: str = "cpu") -> str | None:
    if backend == "onnxruntime":
        from zreward.engines.onnx_backend import unavailable_reason

        return unavailable_reason()
    if backend == "aoti":
        from zreward.engines.aoti_backend import unavailable_reason

        return unavailable_reason(device)
    if backend == "tensorrt":
        from zreward.engines.tensorrt_backend import unavailable_reason

        return unavailable_reason()
    return f"unknown backend {backend!r}; use one of {list(BACKENDS)}"


def read_manifest(root: Path) -> dict:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: engine directory not found")
    path = root / MANIFEST
    if not path.is_file():
        raise InputError(f"{root}: not an engine directory (no {MANIFEST}; an interrupted export leaves none)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: malformed manifest ({getattr(e, 'msg', e)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a zreward engine manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{root}: engine format version {manifest.get('format_version')!r}, this zreward reads "
                         f"version {FORMAT_VERSION}; re-export it with `zreward export`")
    _check_schema(path, manifest)
    return manifest


# What loading reads from a manifest: key path -> type. A damaged manifest fails here, naming the key.
MANIFEST_SCHEMA = {
    ("backend",): str, ("precision",): str, ("rubric",): dict, ("template",): dict, ("resolution",): int,
    ("family",): dict, ("family", "model_type"): str, ("family", "patch_size"): int, ("family", "merge_size"): int,
    ("family", "temporal_patch_size"): int, ("family", "image_mean"): list, ("family", "image_std"): list,
    ("batch",): dict, ("batch", "max"): int, ("text",): dict, ("text", "positions"): list,
    ("text", "fixed_length"): (bool, int), ("graph",): dict, ("files",): dict,
}


def _check_schema(path: Path, manifest: dict) -> None:
    for keys, kind in MANIFEST_SCHEMA.items():
        node, name = manifest, ".".join(keys)
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                raise InputError(f"{path}: damaged manifest: missing {name!r}")
            node = node[key]
        wrong_bool = isinstance(node, bool) and kind is int
        if wrong_bool or not isinstance(node, kind):
            raise InputError(f"{path}: damaged manifest: {name!r} has type {type(node).__name__}")
    for rel, meta in manifest["files"].items():
        if not (isinstance(meta, dict) and isinstance(meta.get("bytes"), int) and isinstance(meta.get("sha256"), str)):
            raise InputError(f"{path}: damaged manifest: files[{rel!r}] needs bytes and sha256")
    if not isinstance(manifest["graph"].get("file"), str):
        raise InputError(f"{path}: damaged manifest: missing 'graph.file'")
    try:
        Rubric.from_dict(manifest["rubric"])
    except InputError as e:
        raise InputError(f"{path}: damaged manifest: rubric: {e}") from None


def check_files(root: Path, manifest: dict, verify_hashes: bool = True) -> None:
    """Every listed file exists with its recorded size (and sha256): truncation and corruption fail."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise InputError(f"{root / MANIFEST}: lists no files")
    for rel, meta in files.items():
        p = root / rel
        if not p.is_file():
            raise InputError(f"{p}: missing from the engine")
        size = p.stat().st_size
        if size != meta["bytes"]:
            raise InputError(f"{p}: {size} bytes, the manifest records {meta['bytes']} (truncated or replaced)")
        if verify_hashes and sha256_file(p) != meta["sha256"]:
            kind = "weights" if rel in manifest.get("graph", {}).get("weights", []) else "file"
            raise InputError(f"{p}: {kind} hash mismatch (sha256 differs from the manifest; corrupt or modified)")


def check_versions(root: Path, manifest: dict) -> None:
    """Compiled artifacts are tied to the library that built them; portable ONNX graphs are not."""
    versions = manifest.get("versions", {})
    backend = manifest["backend"]
    if backend == "aoti":
        built, here = versions.get("torch", ""), torch.__version__
        if built.split(".")[:2] != here.split(".")[:2]:
            raise InputError(f"{root}: AOTInductor package compiled with torch {built}, running torch {here}; "
                             "re-export it with this torch")
    if backend == "tensorrt":
        import tensorrt as trt

        if versions.get("tensorrt") != trt.__version__:
            raise InputError(f"{root}: TensorRT plan built with tensorrt {versions.get('tensorrt')}, running "
                             f"{trt.__version__}; re-export it with this TensorRT")


class Engine:
    """A loaded engine: `score(images, prompts, batch_size)` -> ScoreDistribution, like ZRewardModel.

    Thread-safe: host preprocessing is per call; onnxruntime shares one session (its `run` is
    thread-safe), AOTInductor serializes calls into its package, TensorRT uses one execution context
    per thread. Batches above the engine's maximum are split.
    """

    def __init__(self, root: Path, manifest: dict, runner, host):
        self.path, self.manifest, self.runner, self.host = root, manifest, runner, host
        self.rubric = Rubric.from_dict(manifest["rubric"])
        self.backend = manifest["backend"]
        self.precision = manifest["precision"]
        self.image_size = int(manifest["resolution"])
        self.max_batch = int(manifest["batch"]["max"])

    def __repr__(self) -> str:
        return (f"Engine({str(self.path)!r}, backend={self.backend}, precision={self.precision}, "
                f"resolution={self.image_size}, max_batch={self.max_batch})")

    def run(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw graph call: inputs from `self.host(images, prompts)` -> (probs, score_mean, score_std)."""
        return self.runner(inputs)

    def score(self, images, prompts, batch_size: int = 32, progress: bool = False) -> ScoreDistribution:
        """images: PIL / paths / uint8 arrays / float tensors in [0, 1] -> ScoreDistribution (B, D, K).

        Batches above the engine's maximum are split.
        """
        from zreward.scoring import score_in_batches

        ok = isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1
        step = min(batch_size, self.max_batch) if ok else batch_size  # a bad one: score_in_batches names it
        return score_in_batches(lambda ims, ps: self.runner(self.host(ims, ps))[0], self.rubric, images, prompts,
                                step, progress)


def make_host(root: Path, manifest: dict):
    """The HostInputs of an engine directory (tokenizer files + the manifest's layout)."""
    from transformers import AutoTokenizer

    from zreward.engines.host import HostInputs
    from zreward.models.backbones import Family
    from zreward.models.processing import PromptEncoder, PromptTemplate

    text = manifest["text"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    except (OSError, ValueError) as e:
        raise InputError(f"{root / 'tokenizer'}: cannot load the tokenizer ({e})") from None
    fam = manifest["family"]
    try:
        family = Family(fam["model_type"], fam["patch_size"], fam["merge_size"], fam["temporal_patch_size"],
                        tuple(fam["image_mean"]), tuple(fam["image_std"]), fam.get("norm_plus_one", False))
        rubric = Rubric.from_dict(manifest["rubric"])
        grid = manifest["resolution"] // family.patch_size
        template = PromptTemplate(**manifest["template"])
        encoder = PromptEncoder(tokenizer, rubric, template, (grid // family.merge_size) ** 2)
        positions = torch.tensor(text["positions"])
    except (TypeError, ValueError, KeyError, ZeroDivisionError) as e:
        raise InputError(f"{root / MANIFEST}: damaged manifest ({type(e).__name__}: {e})") from None
    return HostInputs(encoder, family, manifest["resolution"], positions, text["fixed_length"])


def load_engine(path, providers=None, device: str | None = None, verify_hashes: bool = True,
                threads: int | None = None) -> Engine:
    """Validates and loads an engine directory written by `zreward export`.

    providers: onnxruntime execution providers (default: CUDA when installed, else CPU).
    threads: onnxruntime intra-op threads (default: its own; AOTInductor follows torch.set_num_threads).
    device: where an AOTInductor package runs (default: the device it was compiled for).
    verify_hashes: recompute every file's sha256 (set False to skip hashing very large engines).
    """
    from zreward.engines.static import SUPPORTED

    root = Path(path)
    manifest = read_manifest(root)
    backend = manifest.get("backend")
    if manifest.get("layout") == "triton":
        raise InputError(f"{root}: a Triton model repository; serve it with tritonserver (see export/README.md)")
    model_type = manifest.get("family", {}).get("model_type")
    if model_type not in SUPPORTED:
        raise InputError(f"{root}: unsupported backbone {model_type!r}; supported: {list(SUPPORTED)}")
    device = device or manifest.get("device", "cpu")
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
        raise InputError(f"device {device!r}: engines run on cpu or cuda")
    reason = backend_unavailable(backend, device)
    if reason:
        raise InputError(f"{root}: backend {backend!r} is not available here: {reason}")
    check_files(root, manifest, verify_hashes)
    check_versions(root, manifest)
    host = make_host(root, manifest)
    graph = manifest["graph"]
    if backend == "onnxruntime":
        from zreward.engines.onnx_backend import OnnxRunner

        runner = OnnxRunner(root / graph["file"], providers, threads)
    elif backend == "aoti":
        from zreward.engines.aoti_backend import AotiRunner

        runner = AotiRunner(root / graph["file"], device)
    else:
        from zreward.engines.tensorrt_backend import TensorRTRunner

        runner = TensorRTRunner(root / graph["file"])
    return Engine(root, manifest, runner, host)
