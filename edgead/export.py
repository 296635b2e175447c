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
    if cfg.get("task") == "signal":
        from .signal_export import signal_manifest

        return signal_manifest(cfg)
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
        torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=[_input_name(model)],
                          output_names=list(getattr(model, "outputs", ["anomaly_map"])), opset_version=OPSET, dynamo=True,
                          external_data=False, verbose=False)
    return path


def tflite_file(model, x, path: Path) -> Path:
    import litert_torch
    import torch

    litert_torch.convert(model.eval(), sample_kwargs={_input_name(model): torch.from_numpy(x)}).export(str(path))
    return path


def _input_name(model) -> str:
    return getattr(model, "input_name", "image")


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


def parity(runtime: str, artefact: Path, x: np.ndarray, reference: np.ndarray | dict[str, np.ndarray],
           input_name: str = "image") -> float:
    """Max abs difference between the artefact's raw outputs and torch's, on input x.

    `reference` is the raw map, or {output name: array} for several outputs (an output the
    artefact names differently, e.g. TFLite's "output_0", is matched by shape)."""
    import runtimes

    out = runtimes.load(runtime, artefact, threads=1).run({input_name: x})
    refs = reference if isinstance(reference, dict) else {"anomaly_map": reference}
    diffs = []
    for name, ref in refs.items():
        got = out.get(name, next((v for v in out.values() if v.shape == ref.shape), next(iter(out.values()))))
        if got.shape != ref.shape:
            raise ExportError(f"{artefact.name}: output {name!r} shape {got.shape} != torch's {ref.shape}")
        diffs.append(float(np.abs(got - ref).max()))
    return max(diffs)


def export(run_dir: str | Path, out: str | Path, targets: list[str], sample_image: np.ndarray | None = None,
           int8: bool = False, calib: str | Path | None = None, calib_size: int | None = None,
           max_drop: float = 0.01, max_shift: float = 0.05, val: str | Path | None = None) -> dict:
    """Export `targets` of a run into bundle `out` (created or extended; written atomically).

    With `int8`, each target also gets an INT8 artefact "<target>_int8", calibrated on `calib`
    (default: the run's training images; `calib_size` of them) and gated on accuracy against
    FP32 on the validation data (`val`, default: the run's test split when it has anomalies,
    else held-out normal images): image/pixel AUROC may drop by `max_drop` at most, normalised
    scores (of normal, and of anomalous images) may move by `max_shift` on average. If even the repaired INT8 is
    outside, ExportError names the values. Every artefact is converted and checked before the
    bundle is touched."""
    import torch

    from .preprocess import InputSpec, preprocess
    from .run import load_model

    for t in targets:
        if t not in TARGETS:
            raise ValueError(f"unknown export target {t!r}; choose from {', '.join(TARGETS)}")
    model, cfg = load_model(run_dir)
    if cfg.get("task") == "signal":
        from .signal_export import sample_input

        x = sample_input(cfg)
    else:
        spec = InputSpec.from_json(cfg["input"])
        x = preprocess(sample_image, spec)[0][None] if sample_image is not None else _sample_input(cfg, spec)
    with torch.no_grad():
        raw = model(torch.from_numpy(x))
    reference = {n: t.numpy() for n, t in zip(model.outputs, raw)} if isinstance(raw, tuple) else raw.numpy()
    ref_max = max(float(np.abs(r).max()) for r in (reference.values() if isinstance(reference, dict) else [reference]))
    session = None
    with tempfile.TemporaryDirectory(prefix="edgead-export-") as tmp:
        staged = []  # (bundle key, files, meta), written once everything passed
        for target in targets:
            work = Path(tmp) / target
            work.mkdir()
            try:
                files, meta = convert(model, x, target, work)
            except ImportError as e:
                raise ExportError(f"exporting to {target} needs the export tools: pip install 'edgead[export]' ({e})") from e
            main_file = files[meta.get("file", next(iter(files)))]
            diff = parity(TARGET_RUNTIME[target], main_file, x, reference, _input_name(model))
            if diff > PARITY_ATOL * max(1.0, ref_max):
                raise ExportError(f"{target} artefact differs from torch by {diff:.3g} (max abs on the raw outputs); "
                                  "not writing it")
            meta.update({"precision": "fp32", "max_abs_diff_vs_torch": diff})
            staged.append((target, files, meta))
            if int8:
                session = session or _int8_session(cfg, calib, calib_size, val)
                staged.append(_quantize(session, target, main_file, Path(tmp) / f"{target}_int8", max_drop, max_shift))
        for key, files, meta in staged:
            bundle_io.add_artefacts(out, key, {n: str(p) for n, p in files.items()}, meta, manifest=base_manifest(cfg))
    return bundle_io.load_manifest(out)


def _int8_session(cfg: dict, calib, calib_size: int | None, val):
    if cfg.get("task") == "signal":
        from .signal_int8 import DEFAULT_CALIB, SignalInt8Session

        return SignalInt8Session(cfg, calib=calib, calib_size=calib_size or DEFAULT_CALIB, val=val)
    try:
        from quant.calibration import DEFAULT_SIZE
        from quant.int8 import Int8Session
    except ImportError as e:
        raise ExportError(f"INT8 export needs the quantization tools: pip install 'edgead[export]' ({e})") from e
    return Int8Session(cfg, calib=calib, calib_size=calib_size or DEFAULT_SIZE, val=val)


def _quantize(session, target: str, fp32_file: Path, workdir: Path, max_drop: float,
              max_shift: float) -> tuple[str, dict, dict]:
    from quant.int8 import GateFailed, int8_target

    workdir.mkdir()
    try:
        files, meta = session.quantize(target, fp32_file, workdir, max_drop=max_drop, max_shift=max_shift)
    except GateFailed as e:
        raise ExportError(str(e)) from e
    except ImportError as e:
        raise ExportError(f"INT8 for {target} needs the quantization tools: pip install 'edgead[export]' ({e})") from e
    return int8_target(target), files, meta


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
