"""Evaluation metrics for anomaly detection and localisation (numpy + OpenCV only).

Conventions
-----------
* A sample (or pixel) is predicted anomalous iff ``score >= threshold``; label 1 = anomalous.
* All metrics are exact (no score binning); ties are handled like scikit-learn.
* Pixel metrics take a list of (H, W) masks and maps (sizes may differ between images) or
  (N, H, W) stacks; maps must already be resized to their mask's size. Pixel scores are
  cast to float32 and only sorted copies of the normal / defect pixels are kept: extra memory
  is ~5 bytes per pixel plus ~30 per defect pixel (1000 maps of 256x256: ~0.3 GB, ~1 s).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence, Union

import numpy as np

ArrayLike = Union[np.ndarray, Sequence[float]]
MapsLike = Union[np.ndarray, Sequence[np.ndarray]]

_CHUNK = 1 << 20


class NotFinite(ValueError):
    """Scores or maps hold NaN (a broken model or artefact, e.g. an INT8 candidate)."""


__all__ = ["auroc", "roc_curve", "image_auroc", "pixel_auroc", "aupro", "pro_curve", "f1_max", "pixel_f1_max",
           "summarize", "decisions"]


# --------------------------------------------------------------------------- helpers
def _binary_inputs(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate 1-D labels/scores and return (sorted negative scores, sorted positive scores)."""
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores have different lengths: {y.size} vs {s.size}")
    if y.size and not np.isin(y, (0, 1, False, True)).all():
        raise ValueError("labels must be binary (0 = normal, 1 = anomalous)")
    if np.isnan(s).any():
        raise NotFinite("scores contain NaN")
    pos = y.astype(bool)
    return np.sort(s[~pos]), np.sort(s[pos])


def _require_both(neg: np.ndarray, pos: np.ndarray, what: str) -> None:
    if neg.size == 0 or pos.size == 0:
        raise ValueError(
            f"{what} is undefined with only one class present "
            f"({pos.size} anomalous, {neg.size} normal); need both normal and anomalous samples"
        )


def _auc_sorted(neg: np.ndarray, pos: np.ndarray) -> float:
    """Mann-Whitney AUC = P(pos > neg) + 0.5 * P(pos == neg); ``neg`` must be sorted."""
    twice = 0  # python int: 2 * #(pos > neg) + #(pos == neg), no overflow
    for i in range(0, pos.size, _CHUNK):
        p = pos[i:i + _CHUNK]
        lo = np.searchsorted(neg, p, side="left")
        hi = np.searchsorted(neg, p, side="right")
        twice += int(lo.sum()) + int(hi.sum())
    return twice / (2.0 * neg.size * pos.size)


def _sorted_unique(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique values and counts of an already ascending-sorted 1-D array (no extra sort)."""
    if a.size == 0:
        return a, np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], a[1:] != a[:-1])))
    counts = np.diff(np.append(starts, a.size))
    return a[starts], counts


def _f1_sorted(neg: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    if pos.size == 0:
        raise ValueError("F1 is undefined without anomalous samples (no positive labels)")
    # The optimum is always at one of the positive scores: lowering the threshold to a
    # value without positives only adds false positives.
    cand, _ = _sorted_unique(pos)
    tp = pos.size - np.searchsorted(pos, cand, side="left")
    fp = neg.size - np.searchsorted(neg, cand, side="left")
    f1 = 2.0 * tp / (tp + fp + pos.size)
    best = cand.size - 1 - int(np.argmax(f1[::-1]))  # ties -> highest threshold
    return float(f1[best]), float(cand[best])


def _as_2d_list(x: MapsLike, name: str) -> list[np.ndarray]:
    if isinstance(x, np.ndarray):
        if x.ndim == 2:
            return [x]
        x = x.reshape((-1,) + x.shape[-2:]) if x.ndim > 3 else x
        if x.ndim != 3:
            raise ValueError(f"{name} must be (H, W), (N, H, W) or a list of (H, W) arrays")
        return list(x)
    out = []
    for i, a in enumerate(x):
        a = np.asarray(a)
        while a.ndim > 2 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 2:
            raise ValueError(f"{name}[{i}] has shape {a.shape}; expected (H, W)")
        out.append(a)
    return out


@dataclass
class _PixelData:
    neg: np.ndarray  # sorted float32 scores of normal pixels
    pos: np.ndarray  # sorted float32 scores of defect pixels
    pos_w: np.ndarray | None  # per defect pixel 1/region_area, aligned with pos
    n_regions: int


def _collect(masks: MapsLike, maps: MapsLike, regions: bool) -> _PixelData:
    from edgead.core.opencv import cv2  # here only: signals and point clouds run without OpenCV

    ms, ams = _as_2d_list(masks, "masks"), _as_2d_list(maps, "maps")
    if len(ms) != len(ams):
        raise ValueError(f"got {len(ms)} masks but {len(ams)} maps")
    n_fg = []
    for i, (m, a) in enumerate(zip(ms, ams)):
        if m.shape != a.shape:
            raise ValueError(f"mask {i} has shape {m.shape} but map has {a.shape}; resize the map first")
        n_fg.append(int(np.count_nonzero(m)))
    # Preallocate so that peak memory stays ~4 bytes per normal pixel.
    neg = np.empty(sum(a.size for a in ams) - sum(n_fg), np.float32)
    pos = np.empty(sum(n_fg), np.float32)
    w = np.empty(pos.size if regions else 0)
    n_regions, o0, o1 = 0, 0, 0
    for m, a, k in zip(ms, ams, n_fg):
        a = a.astype(np.float32, copy=False)
        if k == 0:
            neg[o0:o0 + a.size] = a.ravel()
            o0 += a.size
            continue
        fg = m > 0
        neg[o0:o0 + a.size - k] = a[~fg]
        pos[o1:o1 + k] = a[fg]
        o0 += a.size - k
        if regions:
            n, lab = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
            area = np.bincount(lab.ravel(), minlength=n).astype(np.float64)
            w[o1:o1 + k] = 1.0 / area[lab[fg]]
            n_regions += n - 1
        o1 += k
    if np.isnan(neg).any() or np.isnan(pos).any():
        raise NotFinite("maps contain NaN")
    neg.sort()
    if regions:
        order = np.argsort(pos, kind="stable")
        pos, w = pos[order], w[order]
    else:
        pos.sort()
    return _PixelData(neg, pos, w if regions else None, n_regions)


def _pro_segments(d: _PixelData, fpr_limit: float) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The PRO-FPR curve from the highest threshold down, in chunks of (fpr_gt, pro_gt, fpr_end,
    pro_end): one straight segment per distinct normal score, cut at ``fpr_limit``. Between
    consecutive segments the curve is vertical (no area). AUPRO and the plotted curve both read it."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if d.n_regions == 0 or d.neg.size == 0:
        raise ValueError(
            "AUPRO needs at least one defect region and some normal pixels "
            f"({d.n_regions} regions, {d.neg.size} normal pixels)"
        )
    n0 = d.neg.size
    # Only thresholds whose FPR starts below fpr_limit matter: keep the top normal scores
    # down to (and including the whole tie group of) the one where FPR crosses the limit.
    j = int(np.ceil(fpr_limit * n0)) - 1  # last needed position in descending order
    top = d.neg[np.searchsorted(d.neg, d.neg[n0 - 1 - j], side="left"):]  # ascending view
    cw = np.concatenate(([0.0], np.cumsum(d.pos_w)))
    total = cw[-1]
    hi = top.size
    while hi > 0:  # walk down from the highest score in chunks of whole tie groups
        lo = np.searchsorted(top, top[max(0, hi - _CHUNK)], side="left")
        vals, counts = _sorted_unique(top[lo:hi])
        vals, counts = vals[::-1], counts[::-1]  # descending thresholds
        ge = (top.size - hi) + np.cumsum(counts)  # normal pixels with score >= v
        fpr_ge = ge / n0
        fpr_gt = (ge - counts) / n0  # ... with score > v
        pro_ge = (total - cw[np.searchsorted(d.pos, vals, side="left")]) / d.n_regions
        pro_gt = (total - cw[np.searchsorted(d.pos, vals, side="right")]) / d.n_regions
        # At each normal value the curve is a straight segment (fpr_gt, pro_gt) -> (fpr_ge, pro_ge), cut at the limit.
        fpr_end = np.maximum(np.minimum(fpr_ge, fpr_limit), fpr_gt)
        pro_end = pro_gt + (fpr_end - fpr_gt) / (fpr_ge - fpr_gt) * (pro_ge - pro_gt)
        yield fpr_gt, pro_gt, fpr_end, pro_end
        hi = lo


def _aupro_from(d: _PixelData, fpr_limit: float) -> float:
    area = 0.0
    for fpr_gt, pro_gt, fpr_end, pro_end in _pro_segments(d, fpr_limit):
        area += float(np.sum((fpr_end - fpr_gt) * (pro_gt + pro_end))) / 2.0
    return area / fpr_limit


# --------------------------------------------------------------------------- public API
def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (equal to sklearn's ``roc_auc_score``, ties count 1/2)."""
    neg, pos = _binary_inputs(labels, scores)
    _require_both(neg, pos, "AUROC")
    return _auc_sorted(neg, pos)


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct score, from the highest threshold down, starting at (0, 0);
    its trapezoidal area equals ``auroc`` (a tie of both classes is a diagonal step)."""
    neg, pos = _binary_inputs(labels, scores)
    _require_both(neg, pos, "the ROC curve")
    thresholds = _sorted_unique(np.sort(np.concatenate((neg, pos))))[0][::-1]
    fpr = (neg.size - np.searchsorted(neg, thresholds, side="left")) / neg.size
    tpr = (pos.size - np.searchsorted(pos, thresholds, side="left")) / pos.size
    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], tpr))


def image_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Image-level AUROC: one label and one score per image."""
    return auroc(labels, scores)


def pixel_auroc(masks: MapsLike, maps: MapsLike) -> float:
    """AUROC over all pixels of all images (mask > 0 = defect pixel)."""
    d = _collect(masks, maps, regions=False)
    _require_both(d.neg, d.pos, "pixel AUROC")
    return _auc_sorted(d.neg, d.pos)


def aupro(masks: MapsLike, maps: MapsLike, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve (MVTec AD), exact.

    Regions are the 8-connected components of every ground-truth mask. For a threshold t,
    PRO(t) is the mean over all regions of the fraction of the region with score >= t, and
    FPR(t) the fraction of all normal pixels (of all images) with score >= t. The PRO-FPR
    curve through every distinct score is integrated (trapezoids) from FPR 0 to
    ``fpr_limit``, interpolated at the limit, and divided by ``fpr_limit``. Images without
    defects only contribute normal pixels.
    """
    return _aupro_from(_collect(masks, maps, regions=True), fpr_limit)


def pro_curve(masks: MapsLike, maps: MapsLike, fpr_limit: float = 0.3,
              points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) points of the curve ``aupro`` integrates (same regions, same thresholds), from
    (0, 0) up to ``fpr_limit``. The exact curve has two points per distinct normal score (millions
    for a large test set); ``points`` resamples it at that many FPRs, evenly spaced, for a plot."""
    grid = None if points is None else np.linspace(0.0, fpr_limit, points)
    fpr, pro = [np.zeros(1)], [np.zeros(1)]
    for fpr_gt, pro_gt, fpr_end, pro_end in _pro_segments(_collect(masks, maps, regions=True), fpr_limit):
        x = np.stack((fpr_gt, fpr_end), axis=1).ravel()  # each segment's start, then its end
        y = np.stack((pro_gt, pro_end), axis=1).ravel()
        if grid is not None:  # the grid's FPRs this chunk of the curve spans
            inside = grid[(grid >= x[0]) & (grid <= x[-1])]
            x, y = inside, np.interp(inside, x, y)
        fpr.append(x)
        pro.append(y)
    return np.concatenate(fpr), np.concatenate(pro)


def f1_max(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """Best F1 over all thresholds and the threshold reaching it (predict ``score >= thr``).

    Ties in F1 are broken towards the highest threshold (fewest false alarms).
    """
    neg, pos = _binary_inputs(labels, scores)
    return _f1_sorted(neg, pos)


def pixel_f1_max(masks: MapsLike, maps: MapsLike) -> tuple[float, float]:
    """``f1_max`` over all pixels of all images (mask > 0 = defect pixel)."""
    d = _collect(masks, maps, regions=False)
    return _f1_sorted(d.neg, d.pos)


def decisions(labels: ArrayLike, flagged: ArrayLike) -> dict:
    """What a threshold did: false alarms and misses, counts and rates (None where there is no
    good or no defective sample)."""
    y, f = np.asarray(labels).astype(bool), np.asarray(flagged).astype(bool)
    good, bad = int((~y).sum()), int(y.sum())
    fa, miss = int((f & ~y).sum()), int((~f & y).sum())
    return {"false_alarms": fa, "misses": miss, "n_good": good, "n_defective": bad,
            "false_alarm_rate": fa / good if good else None, "miss_rate": miss / bad if bad else None}


def summarize(
    image_labels: ArrayLike,
    image_scores: ArrayLike,
    masks: MapsLike | None = None,
    maps: MapsLike | None = None,
    fpr_limit: float = 0.3,
) -> dict:
    """All metrics as a JSON-able dict.

    Keys: ``n_images``, ``image_auroc``, ``f1_max``, ``f1_threshold``, ``pixel_auroc``,
    ``aupro``. A metric is ``None`` when it is undefined for the data (e.g. a single image
    class, no masks/maps, or no defect pixels).
    """
    neg, pos = _binary_inputs(image_labels, image_scores)
    out: dict = {"n_images": int(neg.size + pos.size), "image_auroc": None, "f1_max": None,
                 "f1_threshold": None, "pixel_auroc": None, "aupro": None}
    if neg.size and pos.size:
        out["image_auroc"] = _auc_sorted(neg, pos)
    if pos.size:
        out["f1_max"], out["f1_threshold"] = _f1_sorted(neg, pos)
    if masks is not None and maps is not None:
        d = _collect(masks, maps, regions=True)
        if d.pos.size and d.neg.size:
            out["pixel_auroc"] = _auc_sorted(d.neg, d.pos)
            out["aupro"] = _aupro_from(d, fpr_limit)
    return out
