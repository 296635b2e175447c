"""The wheel a device installs (`make wheel`): built from this checkout and installed into a
fresh virtualenv with one runtime extra, no torch and, first, no OpenCV; then the README's embed
snippet must score as the checkout does."""
import subprocess
import sys
from pathlib import Path

import pytest

from edgead import __version__
from edgead.predictor import Predictor

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(REPO)],
                   check=True, capture_output=True)
    wheel = next((root / "dist").glob(f"edgead-{__version__}-py3-none-any.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    py = root / "venv" / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{wheel}[onnxruntime]"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return py


def test_the_wheel_installs_without_torch_or_opencv_and_says_how_to_get_opencv(device_venv, tiny_bundle, small_mvtec):
    py = device_venv
    r = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    r = subprocess.run([str(py.parent / "edgead"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"edgead {__version__}"
    img = sorted((small_mvtec / "test" / "good").glob("*"))[0]
    r = subprocess.run([str(py.parent / "edgead"), "predict", str(tiny_bundle), str(img)], capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'edgead[opencv]'" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_embed_snippet_scores_as_the_checkout(device_venv, tiny_bundle, small_mvtec):
    py = device_venv
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "opencv-python-headless"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    img = sorted((small_mvtec / "test" / "good").glob("*"))[0]
    snippet = f"""
import sys
from edgead.predictor import Predictor
predictor = Predictor({str(tiny_bundle)!r}, runtime="onnxruntime", threads=2)
result = predictor.predict({str(img)!r})
assert "torch" not in sys.modules
print(result.raw_score)
"""
    r = subprocess.run([str(py), "-c", snippet], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    want = Predictor(tiny_bundle, runtime="onnxruntime").predict(img).raw_score
    assert float(r.stdout) == pytest.approx(want, rel=1e-5)
