"""INT8 for signal bundles: the quant/ per-runtime quantizers and accuracy gate, fed with signal
calibration windows and judged on signal validation data.

Calibration: normalised normal windows from the run's training part (or from `calib`, any
signal file of the same kind, all of it taken as normal). Validation: the run's training data
(its recorded test part) or `val`; the gate limits the sample-level AUROC drop (when the data
has anomalies) and the mean shift of the normalised window scores of normal windows."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

import runtimes

from .signal_eval import evaluate_windows
from .signal_export import training_windows
from .signal_predictor import SignalPredictor

DEFAULT_CALIB = 200
DEFAULT_MAX_SHIFT = 0.05


class SignalInt8Session:
    """Same interface as quant.int8.Int8Session: `quantize(target, fp32_file, workdir, max_drop=...)`."""

    def __init__(self, config: dict, calib: str | Path | None = None, calib_size: int = DEFAULT_CALIB,
                 val: str | Path | None = None):
        self.config = config
        if calib is None:
            self.calib, source = training_windows(config, calib_size), "training part of the run's data"
        else:
            self.calib, source = _file_windows(config, calib, calib_size), str(calib)
        self.calib_info = {"source": source, "n_windows": int(len(self.calib))}
        self.val = val if val is not None else config["train"]["data"]["source"]

    def _score(self, runtime: str, path: Path, target: str, precision: str) -> dict:
        pred = SignalPredictor.from_backend(self.config, runtimes.load(runtime, path), target, precision)
        metrics, labels, raw = evaluate_windows(pred, self.val)
        normal = labels == 0 if labels is not None else np.ones(len(raw), bool)
        return {"sample_auroc": metrics.get("sample_auroc"), "normalised": pred._normalized(raw)[normal]}

    def quantize(self, target: str, fp32_file: Path, workdir: Path, max_drop: float = 0.01,
                 max_shift: float = DEFAULT_MAX_SHIFT, **_) -> tuple[dict[str, Path], dict]:
        from quant.gate import run_gate
        from quant.int8 import QUANTIZERS, int8_target

        if target not in QUANTIZERS:
            raise ValueError(f"no INT8 quantizer for target {target!r}; choose from {', '.join(QUANTIZERS)}")
        runtime, module_name = QUANTIZERS[target]
        module = importlib.import_module(module_name)
        key = int8_target(target)
        ref = self._score(runtime, fp32_file, target, "fp32")
        limits = {"drop": max_drop, "score_shift": max_shift}

        def measure(cand) -> dict:
            got = self._score(runtime, cand.path, key, "int8")
            drop = None if ref["sample_auroc"] is None else float(ref["sample_auroc"] - got["sample_auroc"])
            return {"drop": drop, "score_shift": float(np.mean(np.abs(got["normalised"] - ref["normalised"]))),
                    "int8": {"sample_auroc": got["sample_auroc"]}}

        history: list[dict] = []
        cands = module.candidates(fp32_file, self.calib, workdir, max_drop=max_drop, history=history,
                                  ranking=self.calib[:8])
        try:
            chosen, record = run_gate(cands, measure, limits, what=f"{key} ({runtime})", history=history)
        finally:
            close = getattr(cands, "close", None)
            if close is not None:
                close()
        best = record["attempts"][-1]
        gate = {"passed": True, "limits": limits, "drop": best["drop"], "score_shift": best["score_shift"],
                "validation": str(self.val), "fp32": {"sample_auroc": ref["sample_auroc"]}, "int8": best["int8"],
                "chosen": record["chosen"], "attempts": record["attempts"]}
        meta = {"runtime": runtime, "precision": "int8", "file": chosen.main, "source_target": target,
                "quantization": chosen.settings, "calibration": self.calib_info, "gate": gate}
        extra = [n for n in chosen.files if n != chosen.main]
        if extra:
            meta["extra_files"] = extra
        return dict(chosen.files), meta


def _file_windows(config: dict, path: str | Path, n: int) -> np.ndarray:
    """Normalised windows of a calibration signal file, spread evenly over it."""
    from .data.signals import SampleSet, load_signal
    from .signal_preprocess import SignalSpec, cut_windows, normalize, resample, window_starts

    spec = SignalSpec.from_json(config["input"])
    d = load_signal(path)
    if isinstance(d, SampleSet):
        raw = d.values
    else:
        x = resample(d.values, d.rate, spec.rate)
        raw = cut_windows(x, window_starts(len(x), spec.length, spec.hop)[0], spec.length)
    if len(raw) == 0 or raw.shape[1:] != (spec.channels, spec.length):
        raise ValueError(f"{path}: no calibration windows of shape ({spec.channels}, {spec.length}) in it")
    pick = np.unique(np.linspace(0, len(raw) - 1, min(n, len(raw))).round().astype(int))
    return normalize(raw[pick], spec)
