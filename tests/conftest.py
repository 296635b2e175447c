import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import pytest

os.environ.setdefault("EDGEAD_QUIET", "1")
REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "examples" / "data" / "hazelnut_toy"
SHARED = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples"
EXAMPLE_ENV = dict(os.environ, PYTHONPATH=str(REPO), EDGEAD_QUIET="1")  # as if edgead were pip-installed


def blocking(*packages: str) -> str:
    """Python source that makes importing `packages` (and their submodules) fail: the first lines
    of a child interpreter's code, as on a device that lacks them."""
    return textwrap.dedent(f"""
        import sys
        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {packages!r}:
                    raise ImportError(name + " is blocked in this test")
        sys.meta_path.insert(0, Blocked())
    """)


def run_example(name, *args, cwd=None, timeout=180) -> subprocess.CompletedProcess:
    """Run examples/<name> in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True,
                          text=True, env=EXAMPLE_ENV, cwd=cwd, timeout=timeout)


def shared_data(rel: str) -> Path:
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"real data {p} is absent (it lives in ../shared/data beside the checkout)")
    return p


@pytest.fixture(scope="session")
def small_mvtec(tmp_path_factory) -> Path:
    """A small MVTec-layout copy of the vendored hazelnut sample, downscaled to 128 px."""
    root = tmp_path_factory.mktemp("hazel")
    for src in DEMO_DATA.rglob("*"):
        if src.suffix.lower() not in (".jpg", ".png"):
            continue
        dst = root / src.relative_to(DEMO_DATA)
        dst.parent.mkdir(parents=True, exist_ok=True)
        img = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
        interp = cv2.INTER_NEAREST if "ground_truth" in src.parts else cv2.INTER_AREA
        cv2.imwrite(str(dst), cv2.resize(img, (128, 128), interpolation=interp))
    return root


@pytest.fixture(scope="session")
def tiny_run(small_mvtec, tmp_path_factory) -> Path:
    """A HetNet-lite run trained for a few steps at 64 px (fast; not accurate)."""
    from edgead.tasks.image.train import train

    out = tmp_path_factory.mktemp("runs") / "hetnet"
    train(small_mvtec, out, model="hetnet", epochs=2, image_size=64)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported to all three FP32 targets."""
    from edgead.export import export

    out = tmp_path_factory.mktemp("bundles") / "hetnet"
    export(tiny_run, out, ["onnx", "openvino", "tflite"])
    return out
