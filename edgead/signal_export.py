"""What `edgead export` needs to know about signal runs: the bundle manifest and real input
windows (for the parity check and INT8 calibration), taken from the run's training data."""
from __future__ import annotations

import numpy as np

from . import __version__
from .data.signals import SampleSet, load_signal, split_samples
from .signal_preprocess import SignalSpec, cut_windows, normalize, resample, window_starts


def signal_manifest(cfg: dict) -> dict:
    """Base manifest of a signal bundle (the artefacts are added by `edgead.bundle.add_artefacts`)."""
    return {
        "task": "signal",
        "model": {"name": cfg["model"]["name"], "config": cfg["model"]["config"]},
        "input": cfg["input"],
        "input_name": cfg.get("input_name", "signal"),
        "post": cfg["post"],
        "outputs": {"point_score": "point_score", "window_score": "window_score", "layout": "NCL",
                    "computed_before_graph": ["resampling to input.rate (linear)", "windows of input.length every input.hop",
                                              "normalisation (input.norm)"],
                    "computed_after_graph": ["point scores averaged over overlapping windows",
                                             "threshold normalisation"]},
        "thresholds": cfg["thresholds"],
        "edgead_version": __version__,
        "provenance": {"train": cfg.get("train", {}), "complexity": cfg.get("complexity", {}),
                       "metrics": cfg.get("metrics")},
    }


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
        raise ValueError(f"{src} changed since training")
    if isinstance(d, SampleSet):
        idx = split_samples(d.labels, split["train_fraction"], split["holdout"], split["seed"])["fit"]
        raw = d.values[idx]
    else:
        x = resample(d.values, d.rate, spec.rate)[: split["fit_end"]]
        raw = cut_windows(x, window_starts(len(x), spec.length, spec.hop)[0], spec.length)
    pick = np.unique(np.linspace(0, len(raw) - 1, min(n, len(raw))).round().astype(int))
    return normalize(raw[pick], spec)


def sample_input(cfg: dict) -> np.ndarray:
    """One real training window (1, C, L) if the data is still there, else a synthetic one."""
    try:
        return training_windows(cfg, 1)
    except Exception:
        spec = SignalSpec.from_json(cfg["input"])
        t = np.arange(spec.length, dtype=np.float32)
        rng = np.random.default_rng(0)
        x = np.sin(2 * np.pi * t / max(8, spec.length / 4))[None, None] + 0.1 * rng.standard_normal((1, spec.channels, spec.length))
        return normalize(x.astype(np.float32), spec)
