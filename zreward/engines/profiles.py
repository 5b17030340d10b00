"""Export profiles: declarative JSON files (backend, precision, device, batch range, backend and
serving options) consumed by `zreward export --profile NAME`.

NAME is a file in the repository's export/profiles/ (or in $ZREWARD_EXPORT_PROFILES), without
.json, or a path to a profile file. Keys:

    description   free text
    backend       onnxruntime | aoti | tensorrt
    precision     fp32 | fp16 | bf16
    device        cpu | cuda (where the graph is traced and compiled)
    batch         {"min", "opt", "max"}
    resolution    optional: the image size the model must have (a check, not a resize)
    providers     onnxruntime execution providers for the export's parity check
    tensorrt      {"workspace_gb", "optimization_level"}
    triton        {"instances", "kind", "preferred_batch_sizes", "max_queue_delay_us", "preprocess_instances"}
"""

from __future__ import annotations

import os
from pathlib import Path

from zreward.errors import InputError
from zreward.io import read_json

PROFILE_DIR = Path(__file__).resolve().parents[2] / "export" / "profiles"
KEYS = {"description", "backend", "precision", "device", "batch", "resolution", "providers", "tensorrt", "triton"}


def profile_dirs() -> list[Path]:
    extra = os.environ.get("ZREWARD_EXPORT_PROFILES")
    return ([Path(extra)] if extra else []) + [PROFILE_DIR]


def list_profiles() -> list[str]:
    return sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.json")})


def load_profile(name: str) -> dict:
    """A profile by name or path -> its validated dict (with "name" added)."""
    path = Path(name)
    if not (path.suffix == ".json" and path.is_file()):
        found = [d / f"{name}.json" for d in profile_dirs() if (d / f"{name}.json").is_file()]
        if not found:
            raise InputError(f"unknown export profile {name!r}; available: {list_profiles()}")
        path = found[0]
    profile = read_json(path, "profile")
    if not isinstance(profile, dict):
        raise InputError(f"{path}: a profile must be a JSON object")
    unknown = sorted(set(profile) - KEYS)
    if unknown:
        raise InputError(f"{path}: unknown profile key(s) {unknown}; known: {sorted(KEYS)}")
    batch = profile.get("batch", {})
    if not isinstance(batch, dict) or set(batch) - {"min", "opt", "max"}:
        raise InputError(f"{path}: batch must be an object with min / opt / max")
    return {**profile, "name": path.stem}


def export_overrides(profile: dict) -> dict:
    """Profile -> keyword arguments of ExportOptions."""
    out = {k: profile[k] for k in ("backend", "precision", "device", "providers", "triton") if k in profile}
    batch = profile.get("batch", {})
    for key, field in (("min", "min_batch"), ("opt", "opt_batch"), ("max", "max_batch")):
        if key in batch:
            value = batch[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"profile {profile.get('name', '')!r}: batch {key} must be a whole number, "
                                 f"got {value!r}")
            out[field] = value
    trt = profile.get("tensorrt", {})
    for key in ("workspace_gb", "optimization_level"):
        if key in trt:
            out[key] = trt[key]
    return out
