"""Export profiles: the shipped files load, map onto ExportOptions, and bad files are clear errors."""

import json

import pytest

from zreward import InputError
from zreward.engines.exporter import ExportOptions
from zreward.engines.profiles import export_overrides, list_profiles, load_profile


def test_shipped_profiles_are_valid_export_options():
    names = list_profiles()
    assert {"cpu-onnxruntime", "cpu-aoti", "h100-tensorrt-bf16"} <= set(names)
    for name in names:
        opts = ExportOptions(**export_overrides(load_profile(name))).checked()
        assert opts.backend in ("onnxruntime", "aoti", "tensorrt")


def test_h100_tensorrt_profile():
    prof = load_profile("h100-tensorrt-bf16")
    opts = ExportOptions(**export_overrides(prof)).checked()
    assert (opts.backend, opts.precision, opts.device) == ("tensorrt", "bf16", "cuda")
    assert (opts.min_batch, opts.opt_batch, opts.max_batch) == (1, 32, 128)
    assert opts.workspace_gb == 16 and opts.triton["kind"] == "KIND_GPU"


def test_profile_by_path_and_errors(tmp_path):
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"backend": "aoti", "batch": {"max": 2, "opt": 2}}))
    assert export_overrides(load_profile(str(good))) == {"backend": "aoti", "max_batch": 2, "opt_batch": 2}
    with pytest.raises(InputError, match="unknown export profile 'nope'"):
        load_profile("nope")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "backend": "aoti",\n  oops\n}')
    with pytest.raises(InputError, match=r"bad\.json:3: malformed profile"):
        load_profile(str(bad))
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"backnd": "aoti"}))
    with pytest.raises(InputError, match=r"unknown profile key\(s\) \['backnd'\]"):
        load_profile(str(typo))


def test_profile_directory_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "site.json").write_text(json.dumps({"backend": "onnxruntime", "precision": "fp16"}))
    monkeypatch.setenv("ZREWARD_EXPORT_PROFILES", str(tmp_path))
    assert "site" in list_profiles() and load_profile("site")["precision"] == "fp16"
