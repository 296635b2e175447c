"""INT8 for one exported target, for every task: quantize with the runtime's own tool, gate on
accuracy, describe.

    session = Int8Session(run_record, data, Predictor)   # data: the task's Int8Data
    files, meta = session.quantize("onnx", Path("model.onnx"), workdir, max_drop=0.01, max_shift=0.05)

The task supplies what differs (`Int8Data`): calibration inputs, the validation set, how a
predictor scores it and how FP32 and INT8 scores compare. The quantizer of each target comes
from the target table (edgead.targets). `meta` is the bundle manifest entry of
"<target>_int8": runtime, precision "int8", file(s), the calibration source and the gate
record (FP32 and INT8 metrics, the measured drop and score shift, every attempt). Raises
`GateFailed` when no attempt is within the limits."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import runtimes
from edgead import targets
from edgead.core.metrics import NotFinite

from .gate import Candidate, GateFailed, excess, run_gate

DEFAULT_MAX_DROP = 0.01  # AUROC lost, on labelled validation data
DEFAULT_MAX_SHIFT = 0.05  # mean |change| of normalised scores (0.5 = threshold)

__all__ = ["Int8Session", "Int8Data", "Scores", "GateFailed", "DEFAULT_MAX_DROP", "DEFAULT_MAX_SHIFT", "int8_target"]


def int8_target(target: str) -> str:
    """Bundle key of a target's INT8 artefact, e.g. 'onnx' -> 'onnx_int8'."""
    return targets.get(target).int8_key


@dataclass
class Scores:
    """What one model produced on a validation set."""

    raw: np.ndarray  # raw scores (per image, per window)
    normalised: np.ndarray  # normalised with the run's thresholds (0.5 = threshold)
    anomalous: np.ndarray  # bool decisions at the active threshold
    labels: np.ndarray  # 0 normal, 1 anomalous
    metrics: dict = field(default_factory=dict)  # AUROCs ... (labelled sets)


@dataclass
class AccuracyControl:
    """For quantizers that search themselves (OpenVINO's accuracy control): the validation
    items and how each becomes a model input."""

    items: list[Any]
    to_input: Callable[[Any], np.ndarray]


@dataclass
class Int8Data:
    """What a task gives the INT8 session."""

    calib: np.ndarray  # calibration model inputs (N, ...) float32
    calib_info: dict  # for the manifest: source, count
    validation: Any  # for the manifest: what the gate validated on
    score: Callable[[Any], Scores]  # predictor -> its scores on the validation set
    compare: Callable[[Scores, Scores], dict]  # (FP32, INT8) -> values, larger is worse; has "drop", "score_shift"
    score_stats: bool = False  # record mean raw score and share flagged, FP32 and INT8
    accuracy_control: AccuracyControl | None = None


class Int8Session:
    """Calibration and validation data of one run, shared by the targets quantized for it."""

    def __init__(self, config: dict, data: Int8Data, predictor_class: type):
        self.config, self.data, self.predictor_class = config, data, predictor_class

    def predictor(self, runtime: str, path: Path, target: str, precision: str):
        return self.predictor_class.from_backend(self.config, runtimes.load(runtime, path), target, precision)

    def quantize(self, target: str, fp32_file: Path, workdir: Path, max_drop: float = DEFAULT_MAX_DROP,
                 max_shift: float = DEFAULT_MAX_SHIFT,
                 on_attempt: Callable[[dict], None] | None = None) -> tuple[dict[str, Path], dict]:
        """Quantize `target`'s FP32 artefact, gate it, and return (files, manifest entry).
        `on_attempt` hears each gate attempt as it is recorded (for progress lines)."""
        t = targets.get(target)
        module = importlib.import_module(t.quantizer)
        data, key = self.data, t.int8_key
        limits = {"drop": max_drop, "score_shift": max_shift}
        reference = data.score(self.predictor(t.runtime, fp32_file, target, "fp32"))

        def values(predictor) -> dict:
            got = data.score(predictor)
            out = {**data.compare(reference, got), "int8": got.metrics}
            if data.score_stats:
                out["int8_score_stats"] = _stats(got)
            return out

        def measure(cand: Candidate) -> dict:
            try:
                return values(self.predictor(t.runtime, cand.path, key, "int8"))
            except NotFinite as e:  # a broken candidate, not a broken export
                return {"failed": f"the scores are not finite ({e})"}
            except runtimes.BackendError as e:  # e.g. a quantized division by zero
                return {"failed": f"the runtime could not run it ({e})"}

        def scaled_excess(backend) -> float:  # for tools with one "drop" scalar and one max_drop
            return max_drop * excess(values(self.predictor_class.from_backend(self.config, backend, key, "int8")), limits)

        history: list[dict] = []
        extra = {}
        if t.runtime == "openvino" and data.accuracy_control is not None:
            extra["validation"] = module.Validation(data.accuracy_control.items, data.accuracy_control.to_input,
                                                    scaled_excess)
        cands = module.candidates(fp32_file, data.calib, workdir, max_drop=max_drop, history=history, **extra)
        try:
            chosen, record = run_gate(smaller_than(cands, fp32_size(fp32_file, target)), measure, limits, what=f"{key} ({t.runtime})",
                                      history=history, on_attempt=on_attempt)
        finally:
            close = getattr(cands, "close", None)
            if close is not None:
                close()
        best = record["attempts"][-1]
        measured = [k for k in ("drop", "score_shift", "normal_shift", "anomalous_shift", "decision_flips") if k in best]
        gate = {"passed": True, "limits": limits, **{k: best.get(k) for k in measured},
                "validation": data.validation, "fp32": reference.metrics, "int8": best["int8"]}
        if data.score_stats:
            gate["fp32_score_stats"] = _stats(reference)
        gate.update({"chosen": record["chosen"], "attempts": record["attempts"]})
        meta = {"runtime": t.runtime, "precision": "int8", "file": chosen.main, "source_target": target,
                "quantization": chosen.settings, "calibration": data.calib_info, "gate": gate}
        extra_files = [n for n in chosen.files if n != chosen.main]
        if extra_files:
            meta["extra_files"] = extra_files
        return dict(chosen.files), meta


NOT_SMALLER = 0.9  # an "INT8" artefact at least this share of the FP32 size quantized none of the weights


def fp32_size(fp32_file: Path, target: str) -> int:
    """Bytes of `target`'s FP32 files beside `fp32_file` (its own files only: in a bundle,
    model.* also matches the other targets')."""
    return sum((fp32_file.parent / name).stat().st_size for name in targets.get(target).files)


def smaller_than(cands, fp32_bytes: int):
    """The candidates whose files are smaller than FP32: a repair that kept every layer with
    weights in FP32 (a small graph such as a bank search gets there) is FP32 called INT8."""
    for cand in cands:
        size = sum(Path(f).stat().st_size for f in cand.files.values())
        if size < NOT_SMALLER * fp32_bytes:
            yield cand


def _stats(s: Scores) -> dict:
    return {"mean_raw_score": float(s.raw.mean()), "flagged": float(s.anomalous.mean())}
