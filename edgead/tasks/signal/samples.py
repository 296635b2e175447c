"""Real input windows of a signal run (for the export parity check and INT8 calibration),
taken from the run's training data as the run recorded it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgead.core.errors import DataError
from edgead.tasks.signal.data import SampleSet, _wfdb_base, load_signal, split_samples
from edgead.tasks.signal.preprocess import SignalSpec, cut_windows, normalize, resample, window_starts


def training_windows(cfg: dict, n: int, seed: int = 0) -> np.ndarray:
    """Up to n normalised normal windows (n, C, L) from the run's training part, spread evenly;
    deterministic. Raises if the training data is gone or changed."""
    spec = SignalSpec.from_json(cfg["input"])
    train = cfg["train"]
    split = train["split"]
    src = train["data"]["source"]
    names = list(spec.channel_names) if split["kind"] == "series" else None
    d = load_signal(src, train["data"]["kind"], split.get("normal_class", "1"), names)
    if d.fingerprint() != train["data"].get("fingerprint"):
        raise DataError(f"{src} changed since training (its content fingerprint differs from the run's); "
                        "restore it, retrain, or pass the data explicitly (--calib / --val)")
    if isinstance(d, SampleSet):
        idx = split_samples(d.labels, split["train_fraction"], split["holdout"], split["seed"])["fit"]
        raw = d.values[idx]
    else:
        x = resample(d.values, d.rate, spec.rate, spec.resampling)[: split["fit_end"]]
        raw = cut_windows(x, window_starts(len(x), spec.length, spec.hop)[0], spec.length)
    pick = np.unique(np.linspace(0, len(raw) - 1, min(n, len(raw))).round().astype(int))
    return normalize(raw[pick], spec)


def sample_input(cfg: dict) -> tuple[np.ndarray, str]:
    """One real training window (1, C, L) and where it came from; a synthetic one only when the
    training data is gone (data that changed since training raises DataError)."""
    src = Path(str(cfg["train"]["data"]["source"]))
    if src.exists() or _wfdb_base(src) is not None:
        return training_windows(cfg, 1), f"the first training window of {src.name}"
    spec = SignalSpec.from_json(cfg["input"])
    t = np.arange(spec.length, dtype=np.float32)
    rng = np.random.default_rng(0)
    x = np.sin(2 * np.pi * t / max(8, spec.length / 4))[None, None] + 0.1 * rng.standard_normal((1, spec.channels, spec.length))
    return normalize(x.astype(np.float32), spec), f"a synthetic sine window: the training data ({src}) is not there any more"
