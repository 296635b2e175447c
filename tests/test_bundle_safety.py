"""Bundles refuse tampering and unknown schemas; a failed export leaves nothing behind."""
import json
import shutil

import pytest

from edgead import export as export_mod
from runtimes import BackendError
from edgead.core.bundle import BundleError
from edgead.core.errors import UsageError
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
    assert main(["predict", str(b), str(img), "--runtime", "tflite"]) == 2  # the files in use are verified
    size, err = (tiny_bundle / "model.tflite").stat().st_size, capsys.readouterr().err
    assert (f"edgead predict: error: bundle {str(b)!r}: file 'model.tflite' (target 'tflite') is truncated "
            f"(1000 bytes, manifest says {size}); re-export the bundle\n") in err and "Traceback" not in err


def test_a_device_bundle_of_one_target_loads_and_scores_as_the_full_one(tiny_bundle, tmp_path, small_mvtec, capsys):
    img = next((small_mvtec / "test/good").glob("*.jpg"))
    assert main(["slim", str(tiny_bundle), "--target", "tflite", "--out", str(tmp_path / "device")]) == 0
    assert sorted(p.name for p in (tmp_path / "device").iterdir()) == ["edgead.json", "model.tflite"]
    want = Predictor(tiny_bundle, runtime="tflite").predict(img).raw_score
    got = Predictor(tmp_path / "device", runtime="auto")
    assert got.target == "tflite" and got.predict(img).raw_score == pytest.approx(want, rel=1e-6)
    # a full bundle copied without the other targets' files loads too, and picks what is there
    b = tmp_path / "copied"
    shutil.copytree(tiny_bundle, b)
    for name in ("model.onnx", "model.xml", "model.bin"):
        (b / name).unlink()
    assert Predictor(b, runtime="auto").target == "tflite"
    with pytest.raises(UsageError, match="no artefact in the bundle fits runtime='onnxruntime'"):
        Predictor(b, runtime="onnxruntime")
    assert main(["slim", str(tiny_bundle), "--target", "coreml", "--out", str(tmp_path / "x")]) == 2
    assert "no target(s) ['coreml']" in capsys.readouterr().err


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
