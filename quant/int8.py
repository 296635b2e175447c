"""INT8 for one exported target: quantize with the runtime's own tool, gate on accuracy, describe.

    session = Int8Session(run_config, calib=None, calib_size=200, val=None)
    files, meta = session.quantize("onnx", Path("model.onnx"), workdir, max_drop=0.01, max_shift=0.05)

`meta` is the bundle manifest entry of target "<target>_int8": runtime, precision "int8",
file(s), the calibration source and the gate record (FP32 and INT8 metrics on the validation
set, the AUROC drop and score shift, every attempt). Raises `GateFailed` when no attempt is
within the limits (see quant.validation for what they measure)."""
from __future__ import annotations

import importlib
from pathlib import Path

import runtimes

from .calibration import DEFAULT_SIZE, CalibrationSet, calibration_set
from .gate import Candidate, GateFailed, excess, run_gate
from .validation import LABELLED, Scores, ValidationSet, compare, score, validation_set

#: exported target -> (runtime, module with `candidates(...)`)
QUANTIZERS = {
    "onnx": ("onnxruntime", "quant.onnxruntime_int8"),
    "openvino": ("openvino", "quant.openvino_int8"),
    "tflite": ("tflite", "quant.tflite_int8"),
}
DEFAULT_MAX_DROP = 0.01  # AUROC (image or pixel) lost, on labelled validation data
DEFAULT_MAX_SHIFT = 0.05  # mean |change| of normalised scores (0.5 = threshold), normal or anomalous images

__all__ = ["Int8Session", "GateFailed", "QUANTIZERS", "DEFAULT_MAX_DROP", "DEFAULT_MAX_SHIFT", "int8_target"]


def int8_target(target: str) -> str:
    """Bundle key of a target's INT8 artefact, e.g. 'onnx' -> 'onnx_int8'."""
    return f"{target}_int8"


class Int8Session:
    """Calibration and validation data of one run, shared by the targets quantized for it."""

    def __init__(self, config: dict, calib: str | Path | None = None, calib_size: int = DEFAULT_SIZE,
                 val: str | Path | None = None, seed: int = 0):
        self.config = config
        self.calib: CalibrationSet = calibration_set(config, calib, calib_size, seed)
        self.validation: ValidationSet = validation_set(config, val)

    def predictor(self, runtime: str, path: Path, target: str, precision: str):
        from edgead.predictor import Predictor

        return Predictor.from_backend(self.config, runtimes.load(runtime, path), target, precision)

    def quantize(self, target: str, fp32_file: Path, workdir: Path, max_drop: float = DEFAULT_MAX_DROP,
                 max_shift: float = DEFAULT_MAX_SHIFT) -> tuple[dict[str, Path], dict]:
        """Quantize `target`'s FP32 artefact, gate it, and return (files, manifest entry)."""
        if target not in QUANTIZERS:
            raise ValueError(f"no INT8 quantizer for target {target!r}; choose from {', '.join(QUANTIZERS)}")
        runtime, module_name = QUANTIZERS[target]
        module = importlib.import_module(module_name)
        key = int8_target(target)
        vset = self.validation
        limits = {"drop": max_drop, "score_shift": max_shift}
        reference = score(self.predictor(runtime, fp32_file, target, "fp32"), vset)

        def values(predictor) -> dict:
            got = score(predictor, vset)
            return {**compare(vset.kind, reference, got), "int8": got.metrics, "int8_score_stats": _stats(got)}

        def measure(cand: Candidate) -> dict:
            return values(self.predictor(runtime, cand.path, key, "int8"))

        def scaled_excess(backend) -> float:  # for tools with one "drop" scalar and one max_drop
            from edgead.predictor import Predictor

            return max_drop * excess(values(Predictor.from_backend(self.config, backend, key, "int8")), limits)

        history: list[dict] = []
        extra = {}
        if runtime == "openvino" and vset.kind == LABELLED:  # accuracy control needs anomalies to aim at
            extra["validation"] = module.Validation(vset.samples, self._model_input, scaled_excess)
        cands = module.candidates(fp32_file, self.calib.inputs, workdir, max_drop=max_drop, history=history, **extra)
        try:
            chosen, record = run_gate(cands, measure, limits, what=f"{key} ({runtime})", history=history)
        finally:
            close = getattr(cands, "close", None)
            if close is not None:
                close()
        best = record["attempts"][-1]
        measured = ("drop", "score_shift", "normal_shift", "anomalous_shift", "decision_flips")
        gate = {"passed": True, "limits": limits, **{k: best.get(k) for k in measured},
                "validation": vset.to_json(), "fp32": reference.metrics, "int8": best["int8"],
                "fp32_score_stats": _stats(reference), "chosen": record["chosen"], "attempts": record["attempts"]}
        meta = {"runtime": runtime, "precision": "int8", "file": chosen.main, "source_target": target,
                "quantization": chosen.settings, "calibration": self.calib.to_json(), "gate": gate}
        extra_files = [n for n in chosen.files if n != chosen.main]
        if extra_files:
            meta["extra_files"] = extra_files
        return dict(chosen.files), meta

    def _model_input(self, sample):
        from edgead.preprocess import InputSpec, preprocess, read_image

        return preprocess(read_image(sample.path), InputSpec.from_json(self.config["input"]))[0][None]


def _stats(s: Scores) -> dict:
    return {"mean_raw_score": float(s.raw.mean()), "flagged": float(s.anomalous.mean())}
