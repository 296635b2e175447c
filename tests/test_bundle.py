"""The bundle format: atomic writes, integrity checks, several targets, clear errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgead.core import bundle as B
from edgead.core.bundle import BundleError, add_artefacts, artefact_path, load_manifest, write_bundle

ROOT = Path(__file__).resolve().parents[1]


def _manifest(**artefacts) -> dict:
    return {"task": "anomaly_map", "model": {"name": "tiny"},
            "input": {"name": "image", "shape": [1, 3, 32, 32], "dtype": "float32"},
            "outputs": {"anomaly_map": {"shape": [1, 1, 32, 32]}},
            "artefacts": artefacts or {"onnx": {"file": "model.onnx", "precision": "fp32"}}}


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    (d / "model.onnx").write_bytes(os.urandom(3000))
    (d / "model.xml").write_text("<net/>")
    (d / "model.bin").write_bytes(os.urandom(5000))
    (d / "stats.json").write_text('{"mean": 0.5}')
    return d


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_write_and_load(tmp_path, src):
    out = write_bundle(tmp_path / "b", _manifest(),
                       {"model.onnx": src / "model.onnx", "stats.json": src / "stats.json"})
    assert out == (tmp_path / "b").absolute()
    m = load_manifest(out)
    assert m["schema_version"] == B.SCHEMA_VERSION == 1
    art = m["artefacts"]["onnx"]
    assert art["precision"] == "fp32"                       # caller's keys are kept
    assert art["bytes"] == 3000 and art["sha256"] == B.sha256_file(src / "model.onnx")
    assert set(m["files"]) == {"model.onnx", "stats.json"}
    assert m["edgead_version"]
    assert artefact_path(out, m, "onnx") == out / "model.onnx"
    assert (out / "model.onnx").read_bytes() == (src / "model.onnx").read_bytes()
    assert _leftovers(tmp_path) == []                       # no temp folder left behind
    json.loads((out / "edgead.json").read_text())           # plain JSON


def test_caller_manifest_not_mutated(tmp_path, src):
    m = _manifest()
    write_bundle(tmp_path / "b", m, {"model.onnx": src / "model.onnx"})
    assert "sha256" not in m["artefacts"]["onnx"] and "schema_version" not in m


def test_sha256_streams(tmp_path):
    import hashlib
    f = tmp_path / "big"
    data = os.urandom(3 * B._CHUNK + 17)
    f.write_bytes(data)
    assert B.sha256_file(f) == hashlib.sha256(data).hexdigest()


def test_replace_existing_bundle(tmp_path, src):
    out = tmp_path / "b"
    write_bundle(out, _manifest(), {"model.onnx": src / "model.onnx"})
    (src / "model2.onnx").write_bytes(b"new model")
    write_bundle(out, _manifest(onnx={"file": "model2.onnx"}),
                 {"model2.onnx": src / "model2.onnx"})
    assert sorted(p.name for p in out.iterdir()) == ["edgead.json", "model2.onnx"]
    assert load_manifest(out)["artefacts"]["onnx"]["bytes"] == 9
    assert _leftovers(tmp_path) == []


def test_crash_mid_write_leaves_nothing(tmp_path, src, monkeypatch):
    calls = []
    real = B._copy_file

    def flaky(a, b):
        calls.append(a)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real(a, b)

    monkeypatch.setattr(B, "_copy_file", flaky)
    files = {"model.onnx": src / "model.onnx", "stats.json": src / "stats.json"}
    with pytest.raises(OSError, match="simulated"):
        write_bundle(tmp_path / "b", _manifest(), files)
    assert not (tmp_path / "b").exists()
    assert _leftovers(tmp_path) == []


def test_crash_keeps_old_bundle(tmp_path, src, monkeypatch):
    out = tmp_path / "b"
    write_bundle(out, _manifest(), {"model.onnx": src / "model.onnx"})
    before = (out / "edgead.json").read_text()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(B, "_write_json", boom)
    with pytest.raises(KeyboardInterrupt):
        write_bundle(out, _manifest(), {"model.onnx": src / "model.onnx"})
    assert (out / "edgead.json").read_text() == before
    load_manifest(out)
    assert _leftovers(tmp_path) == []


def test_tampered_artefact_refused(tmp_path, src):
    out = write_bundle(tmp_path / "b", _manifest(), {"model.onnx": src / "model.onnx"})
    f = out / "model.onnx"
    data = bytearray(f.read_bytes())
    data[1234] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx.*sha256.*re-export"):
        load_manifest(out)
    assert load_manifest(out, verify=False)["task"] == "anomaly_map"


def test_truncated_artefact_refused(tmp_path, src):
    out = write_bundle(tmp_path / "b", _manifest(), {"model.onnx": src / "model.onnx"})
    with open(out / "model.onnx", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(BundleError, match=r"model\.onnx.*truncated.*1000 bytes.*3000"):
        load_manifest(out)


def test_missing_artefact_refused(tmp_path, src):
    out = write_bundle(tmp_path / "b", _manifest(), {"model.onnx": src / "model.onnx"})
    (out / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.onnx.*missing"):
        load_manifest(out)


def _edit_manifest(out: Path, **changes) -> None:
    """Edit as a hand-written (digest-less, schema-1) manifest would be, so that the structural
    checks, not the digest, are what is tested."""
    p = out / "edgead.json"
    m = json.loads(p.read_text())
    m.pop("manifest_sha256", None)
    for k, v in changes.items():
        if v is None:
            m.pop(k)
        else:
            m[k] = v
    p.write_text(json.dumps(m))


def test_schema_checks(tmp_path, src):
    out = write_bundle(tmp_path / "b", _manifest(), {"model.onnx": src / "model.onnx"})
    _edit_manifest(out, schema_version=2)
    with pytest.raises(BundleError, match=r"bundle schema 2 is newer than this edgead "
                                          r"supports \(1\): upgrade edgead"):
        load_manifest(out)
    for bad in (0, "1", 1.5):
        _edit_manifest(out, schema_version=bad)
        with pytest.raises(BundleError, match="unknown schema_version"):
            load_manifest(out)
    _edit_manifest(out, schema_version=1, task=None)
    with pytest.raises(BundleError, match=r"required key.*'task'"):
        load_manifest(out)


def test_bad_folders(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_manifest(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="edgead.json is missing"):
        load_manifest(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "edgead.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_manifest(tmp_path / "broken")


def test_refuses_to_overwrite_non_bundle(tmp_path, src):
    user = tmp_path / "photos"
    user.mkdir()
    (user / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(BundleError, match="not an edgead bundle"):
        write_bundle(user, _manifest(), {"model.onnx": src / "model.onnx"})
    assert (user / "holiday.jpg").read_bytes() == b"precious"
    assert _leftovers(tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    write_bundle(empty, _manifest(), {"model.onnx": src / "model.onnx"})  # empty folder is fine
    load_manifest(empty)


def test_add_second_target_keeps_first(tmp_path, src):
    out = tmp_path / "b"
    write_bundle(out, _manifest(), {"model.onnx": src / "model.onnx",
                                    "stats.json": src / "stats.json"})
    onnx_sha = load_manifest(out)["artefacts"]["onnx"]["sha256"]
    add_artefacts(out, "openvino", {"model.xml": src / "model.xml", "model.bin": src / "model.bin"},
                  {"file": "model.xml", "extra_files": ["model.bin"], "precision": "fp32"})
    m = load_manifest(out)
    assert sorted(m["artefacts"]) == ["onnx", "openvino"]
    assert m["artefacts"]["onnx"]["sha256"] == onnx_sha
    assert m["artefacts"]["openvino"]["precision"] == "fp32"
    assert set(m["files"]) == {"model.onnx", "stats.json", "model.xml", "model.bin"}
    assert artefact_path(out, m, "openvino") == out / "model.xml"

    # re-exporting a target replaces its files; the other target and shared files stay
    (src / "model_int8.xml").write_text("<net int8/>")
    (src / "model_int8.bin").write_bytes(b"\1" * 10)
    add_artefacts(out, "openvino", {"model_int8.xml": src / "model_int8.xml",
                                    "model_int8.bin": src / "model_int8.bin"},
                  {"file": "model_int8.xml", "extra_files": ["model_int8.bin"]})
    m = load_manifest(out)
    assert set(m["files"]) == {"model.onnx", "stats.json", "model_int8.xml", "model_int8.bin"}
    assert not (out / "model.bin").exists()
    assert _leftovers(tmp_path) == []

    with pytest.raises(BundleError, match="already belong to target"):
        add_artefacts(out, "tflite", {"model.onnx": src / "model.onnx"})
    with pytest.raises(BundleError, match="no 'tflite' artefact.*--target tflite"):
        artefact_path(out, m, "tflite")


def test_add_artefacts_creates_bundle(tmp_path, src):
    out = tmp_path / "new"
    with pytest.raises(BundleError, match="not a bundle yet"):
        add_artefacts(out, "onnx", {"model.onnx": src / "model.onnx"})
    base = _manifest()
    base["artefacts"] = {}
    add_artefacts(out, "onnx", {"model.onnx": src / "model.onnx"}, {"precision": "fp32"},
                  manifest=base)
    assert load_manifest(out)["artefacts"]["onnx"]["file"] == "model.onnx"


def test_add_refuses_tampered_bundle(tmp_path, src):
    out = write_bundle(tmp_path / "b", _manifest(), {"model.onnx": src / "model.onnx"})
    (out / "model.onnx").write_bytes(b"evil")
    with pytest.raises(BundleError, match="model.onnx"):
        add_artefacts(out, "openvino", {"model.xml": src / "model.xml"})


def test_write_argument_errors(tmp_path, src):
    with pytest.raises(BundleError, match="not among the files"):
        write_bundle(tmp_path / "b", _manifest(), {"other.onnx": src / "model.onnx"})
    with pytest.raises(BundleError, match="does not exist"):
        write_bundle(tmp_path / "b", _manifest(), {"model.onnx": src / "missing.onnx"})
    m = _manifest()
    del m["input"]
    with pytest.raises(BundleError, match="required key"):
        write_bundle(tmp_path / "b", m, {"model.onnx": src / "model.onnx"})
    bad = _manifest(onnx={"file": "../escape.onnx"})
    with pytest.raises(BundleError, match="invalid file name"):
        write_bundle(tmp_path / "b", bad, {"../escape.onnx": src / "model.onnx"})
    m = _manifest()
    m["model"] = {"weights": object()}
    with pytest.raises(BundleError, match="JSON"):
        write_bundle(tmp_path / "b", m, {"model.onnx": src / "model.onnx"})
    assert not (tmp_path / "b").exists() and _leftovers(tmp_path) == []


def test_manifest_cannot_point_outside(tmp_path, src):
    out = write_bundle(tmp_path / "b", _manifest(), {"model.onnx": src / "model.onnx"})
    m = json.loads((out / "edgead.json").read_text())
    m["files"]["../../etc/passwd"] = {"sha256": "0", "bytes": 1}
    m.pop("manifest_sha256")  # as a hand-written manifest would be: the path check is what is tested
    (out / "edgead.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="invalid file name"):
        load_manifest(out)


def test_bundle_module_is_light():
    code = ("import sys, json, edgead.core.bundle\n"
            "print(json.dumps([m for m in ('torch', 'onnxruntime', 'openvino') "
            "if m in sys.modules]))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []
    text = (ROOT / "edgead" / "core" / "bundle.py").read_text()
    assert "import torch" not in text and "import pickle" not in text
