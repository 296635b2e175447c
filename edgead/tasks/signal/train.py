"""`edgead train --model mmae`: fit a signal model on normal data, set thresholds on held-out
normal data, save the run (same run folder format as images, with `task: "signal"`).

Splits (recorded in the run, so `edgead eval` on the same data scores the test part only):
- fixed-length samples (UCR): a seeded `train_fraction` of the normal class trains (15 % of it
  held out for thresholds); the other normals and every anomalous sample are the test set;
- recordings (WFDB, NAB, CSV, numpy): the first `train_fraction` trains (its last 15 % held out
  for thresholds), the rest is the test part. Labels are never used for training."""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from edgead import __version__
from edgead.core.atomic import check_replaceable
from edgead.core.errors import UsageError
from edgead.tasks.signal.data import SampleSet, Series, load_signal, split_samples, split_series
from edgead.core.run import RUN_FILE
from edgead.tasks.signal.predictor import SignalPredictor
from edgead.tasks.signal.preprocess import SignalSpec, cut_windows, normalize, resample, window_starts
from edgead.core.thresholds import ThresholdSet

DEFAULT_WINDOW = 256
DEFAULT_TRAIN_FRACTION = {"samples": 0.6, "series": 0.5}
DEFAULT_NORM = {"ucr": "window", "wfdb": "window", "nab": "global", "csv": "global", "npy": "global"}


def _spec(channels: int, length: int, hop: int, rate: float | None, norm: str, raw: np.ndarray,
          names: list[str]) -> SignalSpec:
    """Input spec with normalisation statistics from raw normal training windows (N, C, L)."""
    mean = tuple(float(v) for v in raw.mean(axis=(0, 2)))
    std = tuple(float(max(v, 1e-6)) for v in raw.std(axis=(0, 2)))
    win_std = float(np.median(raw.std(axis=2)))
    return SignalSpec(channels, length, hop, rate, norm, mean if norm == "global" else (),
                      std if norm == "global" else (), max(1e-2 * win_std, 1e-6), tuple(names))


def train_signal(data: str | Path, out: str | Path, model: str = "mmae", data_kind: str | None = None,
                 window: int | None = None, hop: int | None = None, rate: float | None = None,
                 channels: list[str] | None = None, norm: str | None = None, train_fraction: float | None = None,
                 normal_class: str = "1", steps: int | None = None, epochs: int | None = None, seed: int = 0,
                 holdout: float = 0.15, threads: int | None = None, model_config: dict | None = None) -> dict | None:
    """Train signal model `model` on the normal part of `data` and write the run folder `out`.

    `norm` defaults to "window" (z-score per window) for ECG data (UCR, WFDB), whose amplitude
    and baseline drift, and to "global" (training mean/std) for sensor and metric series (NAB,
    CSV, numpy), where a level shift is often the anomaly. `model_config` overrides fields of
    the model's Config (e.g. {"dim": 32, "depth": 2}). Under torchrun, rank 0 writes the run and
    returns its record, the other ranks None."""
    import torch

    from edgead.models import ddp, get, save_run, torch_backend
    from edgead.tasks import check_model

    check_model(model, "signal", "mmae")
    if not isinstance(data, (str, Path)):
        raise UsageError(f"signal models train on one data set; got {data!r}")
    if not 0 < holdout < 1:
        raise UsageError(f"--holdout must be a fraction between 0 and 1, got {holdout}")
    check_replaceable(out, RUN_FILE)
    mod = get(model)
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    d = load_signal(data, data_kind, normal_class, channels)
    norm = norm or DEFAULT_NORM.get(d.kind, "window")
    if isinstance(d, SampleSet):
        prep = _prepare_samples(d, window, hop, rate, norm, train_fraction, holdout, seed)
    else:
        prep = _prepare_series(d, window, hop, rate, norm, train_fraction, holdout)
    spec: SignalSpec = prep["spec"]

    cfg = mod.config_for(spec.channels, spec.length)
    for k, v in (model_config or {}).items():
        if not hasattr(cfg, k) or k in ("channels", "length"):
            raise ValueError(f"unknown or fixed model setting {k!r} for {model}")
        setattr(cfg, k, tuple(v) if isinstance(v, list) else v)
    if (steps is not None or epochs is not None) and not hasattr(cfg, "steps"):
        raise UsageError(f"{model} has no training loop, so --steps and --epochs do not apply; leave them out")
    if steps is not None:
        cfg.steps = steps
    elif epochs is not None:
        cfg.steps = max(1, epochs * math.ceil(prep["n_fit"] / cfg.batch_size))
    torch.manual_seed(seed)
    net = mod.Model(cfg)
    with ddp.session():  # under torchrun the ranks share each step's batch (edgead.models.ddp)
        log = mod.fit(net, prep["sample_batch"], prep["calibration"], seed=seed)
        main = ddp.is_main()
    if not main:
        return None
    net.eval()

    config = {
        "edgead_version": __version__,
        "task": "signal",
        "model": {"name": model, "config": dataclasses.asdict(cfg)},
        "input": spec.to_json(),
        "input_name": net.input_name,
        "post": {"point_score": "mean over the regular windows covering a sample (a tail window fills the end)",
                 "window_score": "mean point score of the window"},
        "outputs": {"point_score": "point_score", "window_score": "window_score"},
        "thresholds": {},
    }
    predictor = SignalPredictor.from_backend(config, torch_backend(net))
    win_scores, point_max = prep["holdout_scores"](predictor)
    window_th = ThresholdSet.from_scores(win_scores)
    point_th = ThresholdSet.from_scores(point_max)
    window_th.meta["level"], point_th.meta["level"] = "window", "point (per-window maximum)"
    config["thresholds"] = {"window": window_th.to_json(), "point": point_th.to_json()}
    config["train"] = {
        "data": {**d.summary(), "fingerprint": d.fingerprint()}, "split": prep["split"],
        "n_fit": prep["n_fit"], "n_holdout": int(len(win_scores)), "seed": seed,
        "seconds": round(time.time() - t0, 1), "log": log,
    }
    config["complexity"] = mod.complexity(net)
    save_run(out, net, config)
    return config



def _prepare_samples(d: SampleSet, window, hop, rate, norm, train_fraction, holdout, seed) -> dict:
    n, c, length = d.values.shape
    if window is not None and window != length:
        raise ValueError(f"{d.source}: samples have {length} points; --window must be {length} or left out")
    if rate is not None:
        raise ValueError(f"{d.source}: fixed-length samples have no sample rate; leave out --rate")
    frac = train_fraction or DEFAULT_TRAIN_FRACTION["samples"]
    split = split_samples(d.labels, frac, holdout, seed)
    raw_fit = d.values[split["fit"]]
    spec = _spec(c, length, length, None, norm, raw_fit, [f"ch{i}" for i in range(c)])
    fit_x = normalize(raw_fit, spec)

    def holdout_scores(pred: SignalPredictor):
        s = pred.score_windows(d.values[split["holdout"]])
        return s.window_score, s.point_score.max(axis=1)

    return {"spec": spec, "n_fit": len(fit_x), "calibration": fit_x, "holdout_scores": holdout_scores,
            "sample_batch": lambda rng, k: fit_x[rng.integers(0, len(fit_x), k)],
            "split": {"kind": "samples", "normal_class": d.normal_class, "train_fraction": frac,
                      "holdout": holdout, "seed": seed, "n_fit": int(len(split["fit"])),
                      "n_holdout": int(len(split["holdout"])), "n_test": int(len(split["test"]))}}


def _prepare_series(d: Series, window, hop, rate, norm, train_fraction, holdout) -> dict:
    if rate is not None and d.rate is None:
        raise ValueError(f"{d.source}: the file has no sample rate, so it cannot be resampled; leave out --rate")
    rate = rate or d.rate
    x = resample(d.values, d.rate, rate)
    length = window or DEFAULT_WINDOW
    hop = hop or max(1, length // 4)
    if hop > length:
        raise ValueError(f"--hop {hop} is longer than the window ({length}): samples between windows would not be scored")
    frac = train_fraction or DEFAULT_TRAIN_FRACTION["series"]
    sp = split_series(len(x), frac, holdout, length)
    fit_x = x[:sp["fit_end"]]
    calib_starts = window_starts(len(fit_x), length, hop)[0]
    raw_calib = cut_windows(fit_x, calib_starts, length)
    spec = _spec(x.shape[1], length, hop, rate, norm, raw_calib, d.channel_names)

    def sample_batch(rng, k):
        return normalize(cut_windows(fit_x, rng.integers(0, len(fit_x) - length + 1, k), length), spec)

    def holdout_scores(pred: SignalPredictor):
        res = pred.predict(x[sp["fit_end"]:sp["train_end"]])
        wins = np.array([w.raw_score for w in res.windows])
        pmax = np.array([res.point_score[w.start:w.start + length].max() for w in res.windows])
        return wins, pmax

    return {"spec": spec, "n_fit": len(calib_starts), "calibration": normalize(raw_calib, spec),
            "sample_batch": sample_batch, "holdout_scores": holdout_scores,
            "split": {"kind": "series", "train_fraction": frac, "holdout": holdout, "source_rate": d.rate,
                      **{k: int(v) for k, v in sp.items()}}}
