"""Decision thresholds on raw anomaly scores, and a [0, 1] normalisation around them.

A part (or pixel) is anomalous iff ``raw_score >= threshold``. Three ways to get a threshold:

* ``normal_quantile`` - from held-out *good* parts only (the usual production-line case):
  the order statistic of rank ``k = ceil((n + 1) q)`` of their n scores. A new good part then
  raises a false alarm with probability ``(n + 1 - k) / (n + 1)`` on average (about ``1 - q``),
  whatever the score distribution; ``false_alarm_rate`` gives that rate with its interval.
* ``f1_adaptive`` - maximises F1 on a labelled validation set (needs anomalous samples).
* ``manual`` - a value chosen by the engineer.

``Normalizer`` maps raw scores so that the threshold becomes 0.5:
``clip(0.5 + (raw - threshold) / span, 0, 1)``, with ``span = 2 * (threshold - low)`` where
``low`` is a low (1 %) quantile of normal scores, i.e. typical good parts land in [0, 0.5)
and anything at least ``threshold - low`` above the threshold saturates at 1.
Everything is stored as plain JSON dicts next to a trained run.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Literal, Sequence, Union

import numpy as np

from edgead.core.metrics import MapsLike, _as_2d_list, f1_max, pixel_f1_max

ArrayLike = Union[np.ndarray, Sequence[float]]

KINDS = ("f1_adaptive", "normal_quantile", "manual")
DEFAULT_Q = 0.99  # ~1 % false alarms on good parts
DEFAULT_LOW_Q = 0.01  # quantile of normal scores that normalises to ~0

__all__ = [
    "KINDS", "DEFAULT_Q", "f1_adaptive", "normal_quantile", "manual", "pixel_f1_adaptive",
    "pixel_normal_quantile", "span_from_normal", "Normalizer", "ThresholdSet", "FalseAlarms",
    "false_alarm_rate", "rank", "needed_for", "print_false_alarms", "Override",
]

_NO_ANOMALIES = (
    "F1-adaptive threshold needs anomalous samples (label 1 / defect pixels) in the "
    "validation data, and none were given; use 'normal_quantile' or 'manual' instead"
)


def _finite_1d(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


# --------------------------------------------------------------------------- thresholds
def f1_adaptive(labels: ArrayLike, scores: ArrayLike) -> float:
    """Threshold maximising F1 on labelled validation scores (same as ``f1_max``'s)."""
    if not (np.asarray(labels).ravel() == 1).any():
        raise ValueError(_NO_ANOMALIES)
    return f1_max(labels, scores)[1]


def rank(n: int, q: float) -> int:
    """1-based rank of the order statistic used as the q-threshold of n normal scores:
    ``ceil((n + 1) q)``, at most n (then the threshold is the highest normal score seen)."""
    return max(1, min(n, math.ceil((n + 1) * q - 1e-9)))


def needed_for(q: float) -> int:
    """Fewest held-out normal samples whose threshold's expected false-alarm rate reaches
    ``1 - q`` (99 for q = 0.99: the highest of 99 scores is passed by 1 % of new ones).
    For q = 1 (no false alarm at all) no number is enough: 0 is returned."""
    return math.ceil(q / (1.0 - q) - 1e-9) if q < 1.0 else 0


def normal_quantile(normal_scores: ArrayLike, q: float = DEFAULT_Q) -> float:
    """The order statistic of rank ``rank(n, q)`` of held-out normal scores.

    Unlike an interpolated quantile, its false-alarm rate on new normal parts is known exactly
    for any continuous score distribution (see ``false_alarm_rate``); with fewer than
    ``needed_for(q)`` samples it is their maximum and the rate, ``1 / (n + 1)``, is above 1 - q."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must be in (0, 1], got {q}")
    s = _finite_1d(normal_scores, "normal_scores")
    k = rank(s.size, q) - 1
    return float(np.partition(s, k)[k])


@dataclass(frozen=True)
class FalseAlarms:
    """Share of new normal samples at or above a normal_quantile threshold: ``expected`` on
    average, within [low, high] with probability ``confidence`` (over the draw of the n
    held-out samples). The share is Beta(n + 1 - k, k) distributed for continuous scores."""

    expected: float
    low: float
    high: float
    confidence: float
    n: int
    k: int
    target: float  # 1 - q: the rate asked for

    @property
    def enough(self) -> bool:
        """Whether n held-out samples can reach the rate asked for (see ``needed_for``); a rate
        of 0 never is, and is not warned about."""
        return self.target <= 0 or self.n >= needed_for(1.0 - self.target)

    def describe(self, what: str = "samples") -> str:
        return (f"expected false alarms on good {what}: {self.expected:.1%} ({self.confidence:.0%} interval "
                f"{self.low:.1%}-{self.high:.1%}), from {self.n} held-out {what}")

    def to_json(self) -> dict:
        return {"expected": self.expected, "low": self.low, "high": self.high, "confidence": self.confidence,
                "n": self.n, "k": self.k, "target": self.target,
                "statistic": "order statistic of rank k = ceil((n + 1) q) of the n held-out normal scores"}

    @classmethod
    def from_json(cls, d: dict) -> "FalseAlarms":
        return cls(*(float(d[k]) for k in ("expected", "low", "high", "confidence")), int(d["n"]), int(d["k"]),
                   float(d["target"]))


def false_alarm_rate(n: int, q: float = DEFAULT_Q, confidence: float = 0.9) -> FalseAlarms:
    """The false-alarm rate of ``normal_quantile`` on n held-out normal samples (training side:
    imports scipy)."""
    from scipy.stats import beta

    k = rank(n, q)
    a, b = n + 1 - k, k
    tail = (1.0 - confidence) / 2
    low, high = (float(v) for v in beta.ppf([tail, 1.0 - tail], a, b))
    return FalseAlarms(a / (n + 1), low, high, confidence, n, k, round(1.0 - q, 12))


def print_false_alarms(thresholds: dict, what: str) -> None:
    """After training: the expected false-alarm rate of a threshold set (its JSON) on stdout, and
    on stderr a warning saying what to do when its held-out normal samples are too few for the
    rate asked for. Nothing for thresholds without the record (f1_adaptive, manual, old runs)."""
    fa = (thresholds.get("meta") or {}).get("false_alarms")
    if not fa or thresholds.get("active") != "normal_quantile":
        return
    rate = FalseAlarms.from_json(fa)
    print(rate.describe(what))
    if not rate.enough:
        print(f"warning: {rate.n} held-out good {what} are too few for a {rate.target:.1%} false-alarm rate (that "
              f"needs at least {needed_for(1.0 - rate.target)}). Hold out more good {what} (add good {what}, or raise "
              "--holdout), or set the threshold on the line (edgead predict --threshold score:0.6 or raw:VALUE)",
              file=sys.stderr)


def manual(value: float) -> float:
    """A threshold chosen by hand (validated to be a finite number)."""
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"manual threshold must be finite, got {value}")
    return v


def pixel_f1_adaptive(masks: MapsLike, maps: MapsLike) -> float:
    """Pixel threshold maximising F1 over all pixels (mask > 0 = defect)."""
    try:
        return pixel_f1_max(masks, maps)[1]
    except ValueError as e:
        if "without anomalous" in str(e):
            raise ValueError(_NO_ANOMALIES) from None
        raise


def pixel_normal_quantile(
    normal_maps: MapsLike, q: float = DEFAULT_Q, per: Literal["image", "pixel"] = "image"
) -> float:
    """Pixel threshold from anomaly maps of good parts only.

    ``per="image"`` (default): q-quantile of each map's maximum, so about ``1 - q`` of good
    parts show *any* pixel above the threshold. ``per="pixel"``: q-quantile over all pixels
    (about ``1 - q`` of good pixels flagged - usually too noisy for q < 0.999).
    """
    maps = _as_2d_list(normal_maps, "normal_maps")
    if per == "image":
        vals = np.array([np.max(m) for m in maps], dtype=np.float64)
    elif per == "pixel":
        vals = np.concatenate([np.asarray(m, np.float32).ravel() for m in maps])
    else:
        raise ValueError(f"per must be 'image' or 'pixel', got {per!r}")
    return normal_quantile(vals, q)


def span_from_normal(threshold: float, normal_scores: ArrayLike, low_q: float = DEFAULT_LOW_Q) -> float:
    """Normalisation span ``2 * (threshold - low_q-quantile of normal scores)``, never 0."""
    s = _finite_1d(normal_scores, "normal_scores")
    return _span(threshold, float(np.quantile(s, low_q)), float(s.max()))


def _span(threshold: float, low: float, high: float) -> float:
    span = 2.0 * (threshold - low)
    if not (math.isfinite(span) and span > 0):  # threshold at/below the normal scores
        span = 2.0 * (high - low)
    if not (math.isfinite(span) and span > 0):  # all normal scores identical
        span = max(abs(threshold), 1.0)
    return float(span)


# --------------------------------------------------------------------------- normaliser
@dataclass(frozen=True)
class Normalizer:
    """``normalize(raw) = clip(0.5 + (raw - threshold) / span, 0, 1)``; threshold -> 0.5."""

    threshold: float
    span: float
    kind: str = "manual"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and math.isfinite(self.span) and self.span > 0):
            raise ValueError(f"need a finite threshold and span > 0, got {self.threshold}, {self.span}")

    @classmethod
    def from_normal(cls, threshold: float, normal_scores: ArrayLike, kind: str = "manual",
                    low_q: float = DEFAULT_LOW_Q) -> "Normalizer":
        """Span from normal scores (see ``span_from_normal``)."""
        return cls(float(threshold), span_from_normal(threshold, normal_scores, low_q), kind)

    def normalize(self, x: float | np.ndarray) -> float | np.ndarray:
        """Normalise a scalar (returns float) or an array (float32 stays float32)."""
        a = np.asarray(x)
        if not np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float64)
        out = np.clip(0.5 + (a - a.dtype.type(self.threshold)) / a.dtype.type(self.span), 0, 1)
        return float(out) if out.ndim == 0 else out

    __call__ = normalize

    def to_json(self) -> dict:
        return {"kind": self.kind, "threshold": float(self.threshold), "span": float(self.span)}

    @classmethod
    def from_json(cls, d: dict) -> "Normalizer":
        return cls(float(d["threshold"]), float(d["span"]), str(d.get("kind", "manual")))


# --------------------------------------------------------------------------- override
@dataclass(frozen=True)
class Override:
    """A threshold a user sets on the line: a raw score ("raw:1.2", or a bare "1.2"), or a
    normalised score ("score:0.6", 0.5 being the trained threshold), which moves each threshold
    set by its own span, so one value suits every product of a unified model."""

    value: float
    scale: Literal["raw", "score"] = "raw"

    @classmethod
    def parse(cls, text: str | float) -> "Override":
        """"raw:1.2", "score:0.6" or "1.2" -> Override; ValueError says what is accepted."""
        if isinstance(text, (int, float)):
            return cls(manual(text))
        scale, sep, number = str(text).strip().rpartition(":")
        scale = scale if sep else "raw"
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if scale not in ("raw", "score") or not math.isfinite(value):
            raise ValueError(f"threshold {text!r}: expected raw:VALUE (a raw score), score:VALUE (a normalised score, "
                             "0.5 = the trained threshold) or a bare raw score, e.g. raw:1.2 or score:0.6")
        if scale == "score" and not 0.0 < value < 1.0:
            raise ValueError(f"threshold {text!r}: a normalised score lies strictly between 0 and 1 (0.5 = the "
                             "trained threshold); scores are clipped to [0, 1], so 0 and 1 cannot be told apart")
        return cls(value, scale)

    def raw(self, thresholds: "ThresholdSet") -> float:
        """The raw threshold this override means for `thresholds`: measured from the trained
        threshold with its span (not from an earlier override)."""
        if self.scale == "raw":
            return self.value
        nz = thresholds.normalizer(thresholds.trained)
        return nz.threshold + (self.value - 0.5) * nz.span

    def apply(self, thresholds: "ThresholdSet") -> None:
        """Make this override the active (manual) threshold of `thresholds`."""
        thresholds.set_manual(self.raw(thresholds))


# --------------------------------------------------------------------------- threshold set
@dataclass
class ThresholdSet:
    """Thresholds of one level (image or pixel) computed for a run, with one active kind.

    ``low``/``high``: 1 %-quantile and max of the normal reference scores; they define the
    normalisation span of every threshold (see module doc).
    """

    values: dict[str, float]
    active: str
    low: float
    high: float
    meta: dict = field(default_factory=dict)
    trained: str = field(default="", compare=False)  # the kind active when the set was made or read

    def __post_init__(self) -> None:
        for k in self.values:
            if k not in KINDS:
                raise ValueError(f"unknown threshold kind {k!r}; expected one of {KINDS}")
        self.select(self.active)
        self.trained = self.trained or self.active

    # -- construction
    @classmethod
    def from_scores(cls, scores: ArrayLike, labels: ArrayLike | None = None, *, q: float = DEFAULT_Q,
                    manual: float | None = None, active: str | None = None,
                    low_q: float = DEFAULT_LOW_Q) -> "ThresholdSet":
        """Image-level thresholds from validation scores (labels: 0 normal, 1 anomalous).

        Without labels all scores are taken as normal. Computes ``normal_quantile`` when
        normal samples exist, ``f1_adaptive`` when anomalous ones exist, ``manual`` if given.
        Default active kind: manual > normal_quantile > f1_adaptive.
        """
        s = _finite_1d(scores, "scores")
        y = np.zeros(s.size, np.int64) if labels is None else np.asarray(labels).ravel()
        if y.shape != s.shape:
            raise ValueError(f"labels and scores have different lengths: {y.size} vs {s.size}")
        normal, n_anom = s[y == 0], int((y == 1).sum())
        values: dict[str, float] = {}
        if normal.size:
            values["normal_quantile"] = normal_quantile(normal, q)
        if n_anom:
            values["f1_adaptive"] = f1_adaptive(y, s)
        ref = normal if normal.size else s
        meta = {"level": "image", "q": q, "n_normal": int(normal.size), "n_anomalous": n_anom}
        if normal.size:
            meta["false_alarms"] = false_alarm_rate(normal.size, q).to_json()
        return cls._build(values, manual, active, float(np.quantile(ref, low_q)), float(ref.max()), meta)

    @classmethod
    def from_maps(cls, maps: MapsLike, masks: MapsLike | None = None, *, q: float = DEFAULT_Q,
                  per: Literal["image", "pixel"] = "image", manual: float | None = None,
                  active: str | None = None, low_q: float = DEFAULT_LOW_Q) -> "ThresholdSet":
        """Pixel-level thresholds from anomaly maps (and ground-truth masks if available).

        ``normal_quantile`` uses the maps without defect pixels (see ``pixel_normal_quantile``),
        ``f1_adaptive`` all pixels when masks contain defects. The span reference uses all
        normal pixels (sub-sampled to ~2M for the quantile).
        """
        ams = _as_2d_list(maps, "maps")
        ms = [None] * len(ams) if masks is None else _as_2d_list(masks, "masks")
        if len(ms) != len(ams):
            raise ValueError(f"got {len(ms)} masks but {len(ams)} maps")
        step = max(1, sum(a.size for a in ams) // 2_000_000)
        normal_maps, ref, high, n_defect = [], [], -math.inf, 0
        for m, a in zip(ms, ams):
            a = np.asarray(a, np.float32)
            fg = None if m is None else np.asarray(m) > 0
            if fg is not None and fg.shape != a.shape:
                raise ValueError(f"mask shape {fg.shape} != map shape {a.shape}")
            if fg is None or not fg.any():
                normal_maps.append(a)
                px = a.ravel()
            else:
                n_defect += int(fg.sum())
                px = a[~fg]
            if px.size:
                ref.append(px[::step])
                high = max(high, float(px.max()))
        if not ref:
            raise ValueError("no normal pixels in the maps")
        ref = _finite_1d(np.concatenate(ref), "maps")
        values: dict[str, float] = {}
        if normal_maps:
            values["normal_quantile"] = pixel_normal_quantile(normal_maps, q, per)
        if n_defect:
            values["f1_adaptive"] = pixel_f1_adaptive(ms, ams)
        meta = {"level": "pixel", "q": q, "per": per, "n_normal_maps": len(normal_maps),
                "n_maps": len(ams), "n_defect_pixels": n_defect}
        if normal_maps and per == "image":  # per pixel, neighbouring pixels are not independent draws
            meta["false_alarms"] = false_alarm_rate(len(normal_maps), q).to_json()
        return cls._build(values, manual, active, float(np.quantile(ref, low_q)), high, meta)

    @classmethod
    def _build(cls, values, manual_value, active, low, high, meta) -> "ThresholdSet":
        if manual_value is not None:
            values["manual"] = manual(manual_value)
        if active is None:
            active = next((k for k in ("manual", "normal_quantile", "f1_adaptive") if k in values), None)
            if active is None:
                raise ValueError("no threshold could be computed from the given data")
        return cls(values, active, low, high, meta)

    # -- use
    def select(self, kind: str) -> "ThresholdSet":
        """Make ``kind`` the active threshold (in place; returns self)."""
        if kind not in KINDS:
            raise ValueError(f"unknown threshold kind {kind!r}; expected one of {KINDS}")
        if kind not in self.values:
            if kind == "f1_adaptive":
                raise ValueError(_NO_ANOMALIES)
            raise ValueError(f"threshold kind {kind!r} was not computed; available: {sorted(self.values)}")
        self.active = kind
        return self

    def set_manual(self, value: float, activate: bool = True) -> "ThresholdSet":
        """Add (or replace) the manual threshold; make it active by default."""
        self.values["manual"] = manual(value)
        return self.select("manual") if activate else self

    @property
    def threshold(self) -> float:
        """The active raw threshold."""
        return self.values[self.active]

    def normalizer(self, kind: str | None = None) -> Normalizer:
        """Normalizer of ``kind`` (default: the active one)."""
        kind = self.active if kind is None else kind
        if kind not in self.values:
            self.select(kind)  # raises the explanatory error
        thr = self.values[kind]
        return Normalizer(thr, _span(thr, self.low, self.high), kind)

    def normalize(self, x: float | np.ndarray) -> float | np.ndarray:
        """Normalise raw scores/maps with the active threshold (threshold -> 0.5)."""
        return self.normalizer().normalize(x)

    # -- JSON
    def to_json(self) -> dict:
        """Plain dict; ``normalizer`` (active threshold + span) is derived, for runtimes."""
        return {
            "active": self.active,
            "values": {k: float(v) for k, v in self.values.items()},
            "reference": {"low": float(self.low), "high": float(self.high)},
            "normalizer": self.normalizer().to_json(),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_json(cls, d: dict) -> "ThresholdSet":
        ref = d["reference"]
        return cls({k: float(v) for k, v in d["values"].items()}, str(d["active"]),
                   float(ref["low"]), float(ref["high"]), dict(d.get("meta", {})))
