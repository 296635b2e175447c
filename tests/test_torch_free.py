"""The Predictor and `edgead predict` run with numpy + OpenCV + one runtime, without torch."""
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import blocking
from edgead.predictor import Predictor

BLOCK = blocking("torch")


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True)


def test_torch_is_really_blocked():
    r = run_blocked("import torch")
    assert r.returncode != 0 and "blocked" in r.stderr


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "tflite"])
def test_predictor_without_torch(tiny_bundle, small_mvtec, runtime):
    img = sorted((small_mvtec / "test/colour").glob("*.jpg"))[0]
    r = run_blocked(f"""
        from edgead.predictor import Predictor  # the documented import path
        res = Predictor({str(tiny_bundle)!r}, runtime={runtime!r}).predict({str(img)!r})
        assert "torch" not in sys.modules
        print(res.raw_score, res.anomaly_map.shape)
    """)
    assert r.returncode == 0, r.stderr
    score, shape = r.stdout.split(" ", 1)
    want = Predictor(tiny_bundle, runtime=runtime).predict(img).raw_score  # the same call here, torch importable
    assert float(score) == pytest.approx(want, rel=1e-6) and shape.strip() == "(128, 128)"


def test_cli_predict_without_torch(tiny_bundle, small_mvtec):
    folder = small_mvtec / "test/good"
    r = run_blocked(f"""
        from edgead.cli import main
        code = main(["predict", {str(tiny_bundle)!r}, {str(folder)!r}, "--json", "--runtime", "onnxruntime"])
        assert "torch" not in sys.modules
        sys.exit(code)
    """)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    assert sorted(l["path"] for l in lines) == sorted(str(p) for p in folder.iterdir()) and len(lines) == 6
    pred = Predictor(tiny_bundle, runtime="onnxruntime")
    assert [l["raw_score"] for l in lines] == pytest.approx([pred.predict(l["path"]).raw_score for l in lines], rel=1e-6)
