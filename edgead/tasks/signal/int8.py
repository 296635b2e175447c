"""INT8 data of signal runs: what the INT8 session (quant.int8) calibrates with and gates on.

Calibration: normalised normal windows from the run's training part (or from `calib`, any
signal file of the same kind, all of it taken as normal). Validation: the run's training data
(its recorded test part) or `val`; the gate limits the sample-level AUROC drop (when the data
has anomalies) and the mean shift of the normalised window scores of normal windows."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgead.tasks.signal.evaluate import evaluate_windows
from edgead.tasks.signal.samples import training_windows

DEFAULT_CALIB = 200


def int8_data(config: dict, calib: str | Path | None = None, calib_size: int | None = None,
              val: str | Path | None = None):
    """The signal calibration windows and validation data of the INT8 session (quant.int8)."""
    from quant.int8 import Int8Data, Scores

    n = calib_size or DEFAULT_CALIB
    if calib is None:
        windows, source = training_windows(config, n), "training part of the run's data"
    else:
        windows, source = _file_windows(config, calib, n), str(calib)
    val = val if val is not None else config["train"]["data"]["source"]

    def score(pred) -> Scores:
        metrics, labels, raw = evaluate_windows(pred, val)
        labels = labels if labels is not None else np.zeros(len(raw), np.int64)
        return Scores(raw, pred._normalized(raw), raw >= pred.window_threshold, labels,
                      {"sample_auroc": metrics.get("sample_auroc")})

    def compare(ref: Scores, got: Scores) -> dict:
        """AUROC drop (when the data has anomalies) and the mean shift of normal windows' normalised scores."""
        a, b = ref.metrics["sample_auroc"], got.metrics["sample_auroc"]
        normal = ref.labels == 0
        return {"drop": None if a is None else float(a - b),
                "score_shift": float(np.mean(np.abs(got.normalised[normal] - ref.normalised[normal])))}

    return Int8Data(windows, {"source": source, "n_windows": int(len(windows))}, str(val), score, compare)


def _file_windows(config: dict, path: str | Path, n: int) -> np.ndarray:
    """Normalised windows of a calibration signal file, spread evenly over it."""
    from edgead.tasks.signal.data import SampleSet, load_signal
    from edgead.tasks.signal.preprocess import SignalSpec, cut_windows, normalize, resample, window_starts

    spec = SignalSpec.from_json(config["input"])
    d = load_signal(path)
    if isinstance(d, SampleSet):
        raw = d.values
    else:
        x = resample(d.values, d.rate, spec.rate, spec.resampling)
        raw = cut_windows(x, window_starts(len(x), spec.length, spec.hop)[0], spec.length)
    if len(raw) == 0 or raw.shape[1:] != (spec.channels, spec.length):
        raise ValueError(f"{path}: no calibration windows of shape ({spec.channels}, {spec.length}) in it")
    pick = np.unique(np.linspace(0, len(raw) - 1, min(n, len(raw))).round().astype(int))
    return normalize(raw[pick], spec)
