"""Bundles refuse tampering and unknown schemas; a failed export leaves nothing behind."""
import json
import shutil

import pytest

from edgead import export as export_mod
from runtimes import BackendError
from edgead.core.bundle import BundleError
from edgead.cli import main
from edgead.tasks.image.predictor import Predictor


def test_tampered_artefact_is_refused(tiny_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    data = bytearray((b / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"file 'model\.onnx' \(target 'onnx'\) does not match its sha256 "
                                          r"\(modified or corrupted\); re-export the bundle"):
        Predictor(b, runtime="onnxruntime")


def test_truncated_artefact_is_refused_with_exit_2(tiny_bundle, tmp_path, small_mvtec, capsys):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    (b / "model.tflite").write_bytes((b / "model.tflite").read_bytes()[:1000])
    img = next((small_mvtec / "test/good").glob("*.jpg"))
    assert main(["predict", str(b), str(img)]) == 2
    size, err = (tiny_bundle / "model.tflite").stat().st_size, capsys.readouterr().err
    assert (f"edgead predict: error: bundle {str(b)!r}: file 'model.tflite' (target 'tflite') is truncated "
            f"(1000 bytes, manifest says {size}); re-export the bundle\n") in err and "Traceback" not in err


def test_unknown_schema_is_refused(tiny_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    m = json.loads((b / "edgead.json").read_text())
    m["schema_version"] = 99
    (b / "edgead.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="upgrade edgead"):
        Predictor(b)


def test_interrupted_export_leaves_nothing(tiny_run, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt("simulated Ctrl-C during conversion")

    monkeypatch.setattr(export_mod, "tflite_file", boom)
    with pytest.raises(KeyboardInterrupt):
        export_mod.export(tiny_run, tmp_path / "bundle", ["tflite"])
    assert list(tmp_path.iterdir()) == []


def test_failed_second_target_keeps_the_first_intact(tiny_run, tiny_bundle, tmp_path, monkeypatch):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    before = (b / "edgead.json").read_text()

    def broken(model, x, path):
        path.write_bytes(b"not a model")
        return path

    monkeypatch.setattr(export_mod, "tflite_file", broken)
    with pytest.raises(BackendError, match=r"^tflite: cannot load '.*model\.tflite'"):  # the parity check loads it
        export_mod.export(tiny_run, b, ["tflite"])
    assert (b / "edgead.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
