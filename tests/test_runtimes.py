"""Every runtime backend gives the torch model's outputs on the same input, by name."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import runtimes
from runtimes import BackendError, RuntimeNotInstalled

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 3, 32, 32)
RTOL, ATOL = 1e-4, 1e-5

torch = pytest.importorskip("torch", reason="torch builds the reference model")


def _has(*pkgs: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in pkgs)


class TinyNet(torch.nn.Module):
    """conv -> relu -> conv, returning a dict like the anomaly models do."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 1, 1)

    def forward(self, image):
        return {"anomaly_map": self.b(torch.relu(self.a(image)))}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def reference(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x))["anomaly_map"].numpy()


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return tmp_path_factory.mktemp("artefacts")


@pytest.fixture(scope="module")
def onnx_file(model, outdir):
    if not _has("onnx", "onnxscript"):
        pytest.skip("exporting ONNX needs onnx and onnxscript (pip install edgead[export])")
    path = outdir / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(SHAPE),), str(path), dynamo=True,
                          external_data=False, opset_version=18,
                          input_names=["image"], output_names=["anomaly_map"])
    return path


@pytest.fixture(scope="module")
def openvino_file(onnx_file, outdir):
    if not runtimes.available("openvino"):
        pytest.skip("openvino is not installed (pip install edgead[openvino])")
    from runtimes.openvino_backend import compile_from_onnx
    return compile_from_onnx(onnx_file, outdir / "ov" / "model.xml")


@pytest.fixture(scope="module")
def tflite_file(model, outdir):
    if not _has("litert_torch"):
        pytest.skip("converting to TFLite needs litert-torch (pip install edgead[export])")
    import litert_torch
    path = outdir / "model.tflite"
    litert_torch.convert(model, (torch.zeros(SHAPE),)).export(str(path))
    return path


@pytest.fixture(scope="module")
def torch_file(model, outdir):
    path = outdir / "model.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(SHAPE),)), str(path))
    return path


ARTEFACT = {"onnxruntime": "onnx_file", "openvino": "openvino_file",
            "tflite": "tflite_file", "torch": "torch_file"}


def _need(name: str) -> None:
    if not runtimes.available(name):
        pytest.skip(f"{name} is not installed (pip install edgead[{runtimes.EXTRAS[name]}])")


@pytest.mark.parametrize("name", runtimes.BACKENDS)
def test_parity_with_torch(name, request, x, reference):
    _need(name)
    path = request.getfixturevalue(ARTEFACT[name])
    assert path.suffix == runtimes.SUFFIXES[name]
    assert runtimes.backend_for_file(path) == name
    backend = runtimes.load(name, path, threads=1)
    assert backend.name == name and backend.threads == 1
    assert len(backend.input_names) == 1
    assert backend.output_names == ["anomaly_map"]
    assert backend.input_shapes[backend.input_names[0]] == SHAPE

    out = backend.run(x)                                  # one array: the only input
    assert list(out) == ["anomaly_map"]
    got = out["anomaly_map"]
    assert got.dtype == np.float32 and got.shape == reference.shape
    diff = float(np.abs(got - reference).max())
    print(f"{name}: max abs diff vs torch {diff:.3g}")
    np.testing.assert_allclose(got, reference, rtol=RTOL, atol=ATOL)

    by_name = backend.run({backend.input_names[0]: x.astype(np.float64)})  # cast to float32
    np.testing.assert_array_equal(by_name["anomaly_map"], got)
    with pytest.raises(BackendError, match="takes inputs"):
        backend.run({"not_an_input": x})


@pytest.mark.parametrize("name", runtimes.BACKENDS)
def test_default_threads(name, request, x, reference):
    _need(name)
    backend = runtimes.load(name, request.getfixturevalue(ARTEFACT[name]))
    assert backend.threads is None
    np.testing.assert_allclose(backend.run(x)["anomaly_map"], reference, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", runtimes.BACKENDS)
def test_missing_file_names_the_file(name, tmp_path):
    _need(name)
    missing = tmp_path / f"nope{runtimes.SUFFIXES[name]}"
    with pytest.raises(BackendError, match="nope"):
        runtimes.load(name, missing)


@pytest.mark.parametrize("name", ["onnxruntime", "openvino", "tflite", "torch"])
def test_corrupt_file_names_the_file(name, tmp_path):
    _need(name)
    bad = tmp_path / f"garbage{runtimes.SUFFIXES[name]}"
    bad.write_bytes(b"this is not a model" * 10)
    if name == "openvino":
        bad.with_suffix(".bin").write_bytes(b"\0" * 16)
    with pytest.raises(BackendError, match="garbage"):
        runtimes.load(name, bad)


def test_openvino_needs_bin(openvino_file, tmp_path):
    xml = tmp_path / "lonely.xml"
    xml.write_bytes(openvino_file.read_bytes())
    with pytest.raises(BackendError, match="lonely.bin"):
        runtimes.load("openvino", xml)


def test_openvino_ir_is_fp32(openvino_file, onnx_file):
    # compress_to_fp16=False: the .bin holds FP32 weights, as large as the ONNX initialisers
    n_params = 3 * 8 * 9 + 8 + 8 + 1
    assert openvino_file.with_suffix(".bin").stat().st_size >= 4 * n_params


def test_bad_threads_rejected(torch_file):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            runtimes.load("torch", torch_file, threads=bad)


def test_torch_in_memory(model, x, reference):
    b = runtimes.load("torch", model, threads=1)
    assert b.input_names == ["image"] and b.path is None
    np.testing.assert_allclose(b.run(x)["anomaly_map"], reference, rtol=0, atol=0)
    assert b.output_names == ["anomaly_map"]
    ep = torch.export.export(model, (torch.zeros(SHAPE),))
    b = runtimes.load("torch", ep)
    assert b.output_names == ["anomaly_map"]                # known before the first run
    batch = np.concatenate([x, x])
    assert runtimes.load("torch", model).run(batch)["anomaly_map"].shape == (2, 1, 32, 32)


def test_torch_output_names_for_tuples():
    class Two(torch.nn.Module):
        def forward(self, a):
            return a * 2, a + 1

    b = runtimes.load("torch", Two(), output_names=["double", "plus_one"])
    out = b.run(np.ones((2, 2), np.float32))
    assert list(out) == ["double", "plus_one"]
    assert float(out["plus_one"][0, 0]) == 2.0
    assert list(runtimes.load("torch", Two()).run(np.ones(3, np.float32))) == ["output_0", "output_1"]


def test_registry():
    assert runtimes.BACKENDS == ("onnxruntime", "openvino", "tflite", "torch")
    assert runtimes.SUFFIXES["openvino"] == ".xml"
    assert runtimes.available("torch") is True
    assert runtimes.available("torch", import_check=True) is True
    assert set(runtimes.installed()) <= set(runtimes.BACKENDS)
    assert "torch" in runtimes.installed()
    with pytest.raises(ValueError, match="unknown runtime"):
        runtimes.available("tensorflow")
    with pytest.raises(ValueError, match="unknown runtime"):
        runtimes.load("tensorflow", "x")
    with pytest.raises(ValueError, match="no runtime"):
        runtimes.backend_for_file("model.h5")


def test_runtime_not_installed_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # makes `import onnxruntime` fail
    with pytest.raises(RuntimeNotInstalled, match=r"pip install edgead\[onnxruntime\]"):
        runtimes.load("onnxruntime", tmp_path / "m.onnx")
    for mod in ("ai_edge_litert", "ai_edge_litert.interpreter",
                "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(RuntimeNotInstalled, match=r"edgead\[tflite\]") as err:
        runtimes.load("tflite", tmp_path / "m.tflite")
    assert isinstance(err.value, ImportError)


def test_onnxruntime_falls_back_to_cpu():
    pytest.importorskip("onnxruntime")
    from runtimes.onnxruntime_backend import providers_for
    assert providers_for(None, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    have = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for(["tensorrt", "cuda"], have) == have
    with pytest.warns(UserWarning, match="not available"):
        assert providers_for("cuda", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_tflite_int8_io_roundtrip():
    from runtimes.tflite_backend import dequantize, quantize
    detail = {"dtype": np.int8, "quantization": (0.05, -3),
              "quantization_parameters": {"scales": np.array([0.05], np.float32),
                                          "zero_points": np.array([-3]), "quantized_dimension": 0}}
    x = np.array([-7.0, -1.0, 0.0, 0.26, 3.0, 100.0], np.float32)
    q = quantize(x, detail)
    assert q.dtype == np.int8
    assert q.tolist() == [-128, -23, -3, 2, 57, 127]            # rounded, shifted, clipped
    back = dequantize(q, detail)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back[1:5], x[1:5], atol=0.025 + 1e-6)
    per_axis = {"dtype": np.int8, "quantization_parameters": {
        "scales": np.array([1.0, 0.5], np.float32), "zero_points": np.array([0, 0]),
        "quantized_dimension": 1}}
    assert quantize(np.ones((1, 2), np.float32), per_axis).tolist() == [[1, 2]]
    float_detail = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize(x, float_detail) is x


def test_import_runtimes_imports_no_runtime():
    code = ("import sys, json, runtimes\n"
            "runtimes.installed(); [runtimes.available(n) for n in runtimes.BACKENDS]\n"
            "heavy = ('torch', 'onnxruntime', 'openvino', 'ai_edge_litert', 'tflite_runtime', 'edgead', 'quant')\n"
            "print(json.dumps([m for m in heavy if m in sys.modules]))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []


def test_runtimes_source_is_standalone():
    for f in (ROOT / "runtimes").glob("*.py"):
        text = f.read_text()
        assert "import edgead" not in text and "from edgead" not in text, f
        assert "import quant" not in text and "from quant" not in text, f


@pytest.mark.parametrize("name", runtimes.BACKENDS)
def test_wrong_shape_is_a_clear_error(name, request, x, reference):
    _need(name)
    backend = runtimes.load(name, request.getfixturevalue(ARTEFACT[name]), threads=1)
    with pytest.raises(BackendError, match=r"expects input .* of shape \(1, 3, 32, 32\)"):
        backend.run(np.concatenate([x, x]))              # these artefacts have a static batch
    np.testing.assert_allclose(backend.run(x)["anomaly_map"], reference, rtol=RTOL, atol=ATOL)


def test_dynamic_batch(model, x, outdir):
    """A batch-dynamic artefact takes batches of 1 and N; input_shapes shows None."""
    _need("onnxruntime")
    if not _has("onnx", "onnxscript"):
        pytest.skip("exporting ONNX needs onnx and onnxscript")
    path = outdir / "dynamic.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(SHAPE),), str(path), dynamo=True,
                          external_data=False, input_names=["image"],
                          output_names=["anomaly_map"],
                          dynamic_shapes={"image": {0: torch.export.Dim.DYNAMIC}})
    batch = np.concatenate([x, 2 * x, -x])
    with torch.no_grad():
        want = model(torch.from_numpy(batch))["anomaly_map"].numpy()
    names = ["onnxruntime"] + (["openvino"] if runtimes.available("openvino") else [])
    for name in names:
        b = runtimes.load(name, path, threads=1)
        assert b.input_shapes["image"] == (None, 3, 32, 32), name
        np.testing.assert_allclose(b.run(batch)["anomaly_map"], want, rtol=RTOL, atol=ATOL)
        assert b.run(x)["anomaly_map"].shape == (1, 1, 32, 32)


def test_threads_reach_the_runtime(onnx_file, openvino_file):
    if runtimes.available("onnxruntime"):
        opts = runtimes.load("onnxruntime", onnx_file, threads=1).session.get_session_options()
        assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    ov = runtimes.load("openvino", openvino_file, threads=1)
    assert int(ov.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert "float32" in str(ov.compiled.get_property("INFERENCE_PRECISION_HINT"))
