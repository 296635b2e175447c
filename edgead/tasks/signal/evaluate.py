"""`edgead eval` for signal runs and bundles: sample-level AUROC, point-level AUROC, F1-max.

If `data` is the data the run was trained on (same content fingerprint), only its recorded
test part is scored; any other data is scored whole.
- Fixed-length samples (UCR): one score per sample; sample AUROC and F1-max.
- Recordings: windows every `hop` samples; a window is anomalous if it holds an anomalous
  point or a non-N beat. Point labels come from the file (NAB windows, a CSV label column) or,
  for WFDB records, from the beats: a beat spans from the midpoint to the previous beat to the
  midpoint to the next one, and its score is the mean point score over that span (beat AUROC)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgead.core import metrics
from edgead.core.records import train_of
from edgead.tasks.signal.data import SampleSet, Series, at_rate, load_signal, split_samples
from edgead.tasks.signal.predictor import SignalPredictor
from edgead.tasks.signal.preprocess import resample


def evaluate_signal(source: str | Path, data: str | Path, data_kind: str | None = None, runtime: str = "auto",
                    precision: str = "auto", threads: int | None = None,
                    predictor: SignalPredictor | None = None) -> dict:
    """Metrics of a signal run or bundle on labelled signal data (see the module doc)."""
    predictor = predictor or SignalPredictor(source, runtime=runtime, threads=threads, precision=precision)
    return evaluate_windows(predictor, data, data_kind)[0]


def evaluate_windows(predictor: SignalPredictor, data: str | Path,
                     data_kind: str | None = None) -> tuple[dict, np.ndarray | None, np.ndarray]:
    """(metrics, window labels or None, raw window scores) of `predictor` on `data`."""
    train = train_of(predictor.config)
    split = train.get("split", {})
    names = list(predictor.spec.channel_names) if split.get("kind") == "series" else None
    d = load_signal(data, data_kind, split.get("normal_class", "1"), names or None)
    same = d.fingerprint() == train.get("data", {}).get("fingerprint")
    if isinstance(d, SampleSet):
        out, labels, scores = _eval_samples(predictor, d, split if same else None)
    else:
        out, labels, scores = _eval_series(predictor, d, split if same else None)
    out.update({"evaluated_on": "test part of the training data" if same else "all of the data",
                "runtime": predictor.runtime, "precision": predictor.precision})
    return out, labels, scores


def _binary_metrics(labels: np.ndarray, scores: np.ndarray, prefix: str) -> dict:
    labels = np.asarray(labels).astype(np.int64)
    has_both = 0 < labels.sum() < len(labels)
    out = {f"{prefix}_auroc": metrics.auroc(labels, scores) if has_both else None}
    if labels.sum():
        out[f"{prefix}_f1_max"], out[f"{prefix}_f1_threshold"] = metrics.f1_max(labels, scores)
    return out


def _eval_samples(predictor: SignalPredictor, d: SampleSet, split: dict | None) -> dict:
    if split and split.get("kind") == "samples":
        idx = split_samples(d.labels, split["train_fraction"], split["holdout"], split["seed"])["test"]
    else:
        idx = np.arange(len(d.labels))
    scores = predictor.score_windows(d.values[idx]).window_score
    labels = d.labels[idx]
    out = {"n_samples": int(len(idx)), "n_anomalous": int(labels.sum())}
    out.update(_binary_metrics(labels, scores, "sample"))
    out["f1_max"] = out.pop("sample_f1_max", None)
    out["f1_threshold"] = out.pop("sample_f1_threshold", None)
    out["point_auroc"] = None  # samples carry no point labels
    return out, labels, scores


def beat_spans(beats: np.ndarray, n: int) -> np.ndarray:
    """(B, 2) [start, end) of each beat: midpoints to the neighbouring beats (ends: +-half a gap)."""
    beats = np.asarray(beats, np.int64)
    if len(beats) == 1:
        return np.array([[0, n]])
    mid = (beats[:-1] + beats[1:]) // 2
    first = max(0, beats[0] - (mid[0] - beats[0]))
    last = min(n, beats[-1] + (beats[-1] - mid[-1]))
    return np.stack([np.concatenate([[first], mid]), np.concatenate([mid, [last]])], 1)


def _eval_series(predictor: SignalPredictor, d: Series, split: dict | None) -> tuple[dict, np.ndarray | None, np.ndarray]:
    spec = predictor.spec
    x = resample(d.values, d.rate, spec.rate, spec.resampling)
    labels, beats = at_rate(d, spec.rate, len(x))
    start = split["train_end"] if split and split.get("kind") == "series" else 0
    res = predictor.predict(x[start:], rate=spec.rate)
    n = len(x) - start
    points = res.point_score
    win_scores = np.array([w.raw_score for w in res.windows])
    out: dict = {"n_points": int(n), "n_windows": len(res.windows)}
    beat_labels = None
    if beats is not None:
        keep = (beats >= start) & (beats < len(x))
        b, bl = beats[keep] - start, d.beat_labels[keep]
        spans = beat_spans(b, n)
        beat_scores = np.array([points[s:e].mean() for s, e in spans])
        out.update({"n_beats": int(len(b)), "n_non_normal_beats": int(bl.sum())})
        out.update(_binary_metrics(bl, beat_scores, "beat"))
        if labels is None:
            labels = np.zeros(len(x), np.uint8)
            for (s, e), y in zip(spans + start, bl):
                labels[s:e] |= np.uint8(y)
        beat_labels = (b, bl)
    if labels is None:
        out.update({"sample_auroc": None, "point_auroc": None, "f1_max": None,
                    "note": "the data has no labels: scores only"})
        return out, None, win_scores
    lab = labels[start:]
    if beat_labels is not None:
        b, bl = beat_labels
        win_labels = np.array([bool(bl[(b >= w.start) & (b < w.start + spec.length)].any()) for w in res.windows])
    else:
        win_labels = np.array([bool(lab[w.start:w.start + spec.length].any()) for w in res.windows])
    out["n_anomalous_windows"] = int(win_labels.sum())
    out["n_anomalous_points"] = int(lab.sum())
    out.update(_binary_metrics(win_labels, win_scores, "sample"))
    out["f1_max"] = out.pop("sample_f1_max", None)
    out["f1_threshold"] = out.pop("sample_f1_threshold", None)
    out.update(_binary_metrics(lab, points, "point"))
    return out, win_labels.astype(np.int64), win_scores
