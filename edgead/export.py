"""`edgead export`: a trained run -> a bundle with ONNX / OpenVINO / TFLite artefacts.

Every artefact is run once on a real preprocessed image right after conversion and its
output compared with torch; the difference is written into the manifest."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import __version__
from . import bundle as bundle_io

TARGETS = ("onnx", "openvino", "tflite")
TARGET_RUNTIME = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "tflite"}
OPSET = 18
PARITY_ATOL = 1e-3  # of the raw map, FP32 artefacts


class ExportError(RuntimeError):
    """Conversion failed or the artefact does not reproduce torch."""


def base_manifest(cfg: dict) -> dict:
    return {
        "task": cfg.get("task", "image"),
        "model": {"name": cfg["model"]["name"], "config": cfg["model"]["config"]},
        "input": cfg["input"],
        "post": cfg["post"],
        "outputs": {"anomaly_map": "anomaly_map", "layout": "NCHW", "computed_after_graph": [
            "bilinear upsampling to the input size", "crop of the letterbox padding",
            "gaussian blur (post.blur_sigma)", "image score pooling (post.score)", "threshold normalisation"]},
        "input_name": "image",
        "thresholds": cfg["thresholds"],
        "edgead_version": __version__,
        "provenance": {"train": cfg.get("train", {}), "complexity": cfg.get("complexity", {}),
                       "metrics": cfg.get("metrics")},
    }


def onnx_file(model, x, path: Path) -> Path:
    import torch

    with torch.no_grad():
        torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=["image"],
                          output_names=["anomaly_map"], opset_version=OPSET, dynamo=True,
                          external_data=False, verbose=False)
    return path


def tflite_file(model, x, path: Path) -> Path:
    import litert_torch
    import torch

    litert_torch.convert(model.eval(), sample_kwargs={"image": torch.from_numpy(x)}).export(str(path))
    return path


def convert(model, x: np.ndarray, target: str, workdir: Path) -> tuple[dict[str, Path], dict]:
    """Write one target's files into workdir; returns ({name in bundle: path}, artefact meta)."""
    if target == "onnx":
        return {"model.onnx": onnx_file(model, x, workdir / "model.onnx")}, {"runtime": "onnxruntime", "opset": OPSET}
    if target == "openvino":
        from runtimes.openvino_backend import compile_from_onnx

        onnx_path = onnx_file(model, x, workdir / "for_openvino.onnx")
        xml = compile_from_onnx(onnx_path, workdir / "model.xml")
        return ({"model.xml": xml, "model.bin": xml.with_suffix(".bin")},
                {"runtime": "openvino", "file": "model.xml", "extra_files": ["model.bin"]})
    if target == "tflite":
        return {"model.tflite": tflite_file(model, x, workdir / "model.tflite")}, {"runtime": "tflite"}
    raise ValueError(f"unknown export target {target!r}; choose from {', '.join(TARGETS)}")


def parity(runtime: str, artefact: Path, x: np.ndarray, reference: np.ndarray) -> float:
    """Max abs difference between the artefact's raw map and torch's, on input x."""
    import runtimes

    out = runtimes.load(runtime, artefact, threads=1).run({"image": x})
    got = out.get("anomaly_map", next(iter(out.values())))
    if got.shape != reference.shape:
        raise ExportError(f"{artefact.name}: output shape {got.shape} != torch's {reference.shape}")
    return float(np.abs(got - reference).max())


def export(run_dir: str | Path, out: str | Path, targets: list[str], sample_image: np.ndarray | None = None) -> dict:
    """Export `targets` of a run into bundle `out` (created or extended; written atomically)."""
    import torch

    from .preprocess import InputSpec, preprocess
    from .run import load_model

    for t in targets:
        if t not in TARGETS:
            raise ValueError(f"unknown export target {t!r}; choose from {', '.join(TARGETS)}")
    model, cfg = load_model(run_dir)
    spec = InputSpec.from_json(cfg["input"])
    x = preprocess(sample_image, spec)[0][None] if sample_image is not None else _sample_input(cfg, spec)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    for target in targets:
        with tempfile.TemporaryDirectory(prefix="edgead-export-") as tmp:
            try:
                files, meta = convert(model, x, target, Path(tmp))
            except ImportError as e:
                raise ExportError(f"exporting to {target} needs the export tools: pip install 'edgead[export]' ({e})") from e
            main_file = files[meta.get("file", next(iter(files)))]
            diff = parity(TARGET_RUNTIME[target], main_file, x, reference)
            if diff > PARITY_ATOL * max(1.0, float(np.abs(reference).max())):
                raise ExportError(f"{target} artefact differs from torch by {diff:.3g} (max abs on the raw map); "
                                  "not writing it")
            meta.update({"precision": "fp32", "max_abs_diff_vs_torch": diff})
            bundle_io.add_artefacts(out, target, {n: str(p) for n, p in files.items()}, meta,
                                               manifest=base_manifest(cfg))
    return bundle_io.load_manifest(out)


def _sample_input(cfg: dict, spec) -> np.ndarray:
    """A real training image if the data folder is still there, else mid-grey noise."""
    from .data.images import open_dataset
    from .preprocess import preprocess, read_image

    try:
        ds = open_dataset(cfg["train"]["data"]["root"])
        return preprocess(read_image(ds.train[0].path), spec)[0][None]
    except Exception:
        rng = np.random.default_rng(0)
        img = rng.integers(96, 160, (spec.height, spec.width, 3), dtype=np.uint8)
        return preprocess(img, spec)[0][None]
