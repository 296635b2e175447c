"""Signal preprocessing in numpy: resampling, windowing and per-window normalisation.

One implementation for training, evaluation, calibration and the torch-free predictor
(batch and streaming), so all of them feed the network identical windows."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from edgead.core.errors import DataError

NORMS = ("window", "global", "none")


@dataclass(frozen=True)
class SignalSpec:
    """What the network expects; stored in run configs and bundle manifests (`input`)."""

    channels: int
    length: int  # window length in samples at `rate`
    hop: int  # distance between window starts on a long series
    rate: float | None = None  # model sample rate in Hz; None: index-based (no resampling)
    norm: str = "window"  # "window": z-score per window and channel; "global": training mean/std; "none"
    mean: tuple[float, ...] = ()  # per channel, for norm="global"
    std: tuple[float, ...] = ()
    min_std: float = 1e-3  # floor of the per-window std (flat windows are not blown up)
    channel_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"input.norm must be one of {NORMS}, got {self.norm!r}")
        if self.length < 2 or self.hop < 1 or self.channels < 1:
            raise ValueError(f"bad signal spec: length {self.length}, hop {self.hop}, channels {self.channels}")
        if self.norm == "global" and (len(self.mean) != self.channels or len(self.std) != self.channels):
            raise ValueError("input.norm='global' needs one mean and one std per channel")

    def to_json(self) -> dict:
        d = asdict(self)
        d["kind"] = "signal"
        return d

    @classmethod
    def from_json(cls, d: dict) -> "SignalSpec":
        d = {k: v for k, v in d.items() if k != "kind"}
        for k in ("mean", "std", "channel_names"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)


# ------------------------------------------------------------------------------ input checks

def as_series(x: np.ndarray, channels: int) -> np.ndarray:
    """(T,) or (T, C) samples -> float32 (T, C), checked against the model's channel count."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"expected samples of shape (T,) or (T, C), got {a.shape}")
    if a.shape[1] != channels:
        hint = " (pass time along axis 0: shape (T, C))" if a.shape[0] == channels else ""
        raise ValueError(f"the model takes {channels} channel(s), got samples with {a.shape[1]}{hint}")
    return a


def fill_gaps(values: np.ndarray, where: str = "the samples") -> tuple[np.ndarray, np.ndarray | None]:
    """Missing samples (NaN, inf; empty CSV cells) filled by linear interpolation per channel,
    and the (T,) mask of the samples that were missing (None when none were). The one rule for
    files and arrays: windows holding a filled sample are reported with the fault "dropout"."""
    values = np.asarray(values, np.float32)
    bad = ~np.isfinite(values)
    if not bad.any():
        return values, None
    values = values.copy()
    t = np.arange(len(values))
    for c in range(values.shape[1]):
        b = bad[:, c]
        if b.all():
            raise DataError(f"{where}: channel {c} has no valid samples (all NaN or inf)")
        if b.any():
            values[b, c] = np.interp(t[b], t[~b], values[~b, c])
    return values, bad.any(axis=1)


FLAT, SATURATED, DROPOUT = "flat", "saturated", "dropout"
SATURATION_SHARE = 0.2  # of a window's samples pinned at its own maximum or minimum


def window_faults(raw: np.ndarray, spec: "SignalSpec", missing: np.ndarray | None = None) -> list[str | None]:
    """Per raw window (N, C, L): "dropout" if it holds a filled (missing) sample, "flat" if a channel
    barely moves (std <= input.min_std, a dead or disconnected lead), "saturated" if a channel sits
    at its extreme for a fifth of the window (a clipped sensor); else None. Such windows get low
    anomaly scores, so they are reported as faults rather than passed as normal."""
    raw = np.asarray(raw, np.float64)
    std = raw.std(axis=2)
    flat = (std <= spec.min_std).any(axis=1)
    lo, hi = raw.min(axis=2, keepdims=True), raw.max(axis=2, keepdims=True)
    pinned = np.maximum((raw == hi).mean(axis=2), (raw == lo).mean(axis=2))
    saturated = ((pinned >= SATURATION_SHARE) & (std > spec.min_std)).any(axis=1)
    dropout = np.asarray(missing, bool).reshape(len(raw), -1).any(axis=1) if missing is not None else np.zeros(len(raw), bool)
    return [DROPOUT if d else FLAT if f else SATURATED if sa else None for d, f, sa in zip(dropout, flat, saturated)]


def as_windows(x: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """(N, L), (N, C, L) or one (C, L) / (L,) window -> float32 (N, C, L) of the model's length."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, None]
    elif a.ndim == 2:
        a = a[None] if spec.channels > 1 and a.shape == (spec.channels, spec.length) else a[:, None]
    if a.ndim != 3 or a.shape[1:] != (spec.channels, spec.length):
        raise ValueError(f"expected windows of shape (N, {spec.channels}, {spec.length}), got {np.shape(x)}; "
                         "long recordings go through predict()/stream()")
    if not np.isfinite(a).all():
        raise ValueError("windows contain NaN or inf")
    return a


# ------------------------------------------------------------------------------ resampling

MAX_RATE_RATIO = 1000  # resampling up or down by more is refused: a typo in a rate, not a use


def check_rates(src: float, dst: float) -> None:
    """Refuse sample rates that are not positive finite numbers, or a ratio that would make a
    recording 1000 times longer or shorter (it would exhaust memory or time, or keep nothing)."""
    for name, r in (("the data's", src), ("the model's", dst)):
        if not isinstance(r, (int, float, np.integer, np.floating)) or not math.isfinite(r) or r <= 0:
            raise DataError(f"{name} sample rate {r!r} Hz is not a positive finite number; give the rate the "
                            "samples were taken at, in Hz (--rate, or the `rate` argument)")
    ratio = float(dst) / float(src)
    if not 1 / MAX_RATE_RATIO <= ratio <= MAX_RATE_RATIO:
        raise DataError(f"resampling {src:g} Hz to the model's {dst:g} Hz changes the length {ratio:.3g} times "
                        f"(more than {MAX_RATE_RATIO}x); check the rate: it is in Hz (samples per second)")


class Resampler:
    """Linear-interpolation resampling from `src` Hz to `dst` Hz, batch or streaming.

    Output sample k sits at source position k * src / dst (exact rational arithmetic); it is
    produced once the two source samples around it exist, so pushing a signal in any chunks
    gives exactly the output of one `push` of the whole signal."""

    def __init__(self, src: float | None, dst: float | None):
        self.identity = src is None or dst is None or float(src) == float(dst)
        if not self.identity:
            check_rates(src, dst)
            r = Fraction(float(src)).limit_denominator(1_000_000) / Fraction(float(dst)).limit_denominator(1_000_000)
            self.p, self.q = r.numerator, r.denominator  # source step per output sample = p / q
        self.k = 0  # next output index
        self.offset = 0  # source index of buf[0]
        self.buf = np.zeros((0, 0), np.float64)

    def push(self, x: np.ndarray) -> np.ndarray:
        """Source samples (n, C) -> the output samples they complete, float32 (m, C)."""
        if self.identity:
            return np.asarray(x, np.float32)
        x = np.asarray(x, np.float64)
        self.buf = x if self.buf.size == 0 else np.concatenate([self.buf, x])
        end = self.offset + len(self.buf)  # source samples seen so far
        # Output k needs source i0 = floor(k p / q) and, unless it falls exactly on i0, i0 + 1.
        k_hi = (end - 1) * self.q // self.p  # last k with i0 <= end - 1
        ks = np.arange(self.k, k_hi + 1, dtype=np.int64)
        i0 = ks * self.p // self.q
        rem = ks * self.p % self.q
        ok = (rem == 0) | (i0 + 1 < end)
        ks, i0, rem = ks[ok], i0[ok], rem[ok]
        frac = (rem / self.q)[:, None]
        j0 = i0 - self.offset
        j1 = np.minimum(j0 + 1, len(self.buf) - 1)
        y = self.buf[j0] * (1.0 - frac) + self.buf[j1] * frac
        if len(ks):
            self.k = int(ks[-1]) + 1
        keep_from = self.k * self.p // self.q  # earliest source sample still needed
        drop = min(max(0, keep_from - self.offset), len(self.buf))
        self.buf, self.offset = self.buf[drop:], self.offset + drop
        return y.astype(np.float32)


def resample(x: np.ndarray, src: float | None, dst: float | None) -> np.ndarray:
    """Resample (T, C) samples from `src` to `dst` Hz (linear; identity when either is None)."""
    return Resampler(src, dst).push(x)


# ------------------------------------------------------------------------------ windows

def window_starts(n: int, length: int, hop: int) -> tuple[np.ndarray, int | None]:
    """Regular window starts 0, hop, 2 hop, ... fitting in n samples, and the start of a tail
    window aligned to the end when the regular ones leave samples uncovered (else None)."""
    if n < length:
        return np.zeros(0, np.int64), None
    starts = np.arange(0, n - length + 1, hop, dtype=np.int64)
    tail = n - length if starts[-1] + length < n else None
    return starts, tail


def cut_windows(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(T, C) samples -> (N, C, L) windows at `starts`."""
    view = np.lib.stride_tricks.sliding_window_view(x, length, axis=0)  # (T - L + 1, C, L)
    return np.ascontiguousarray(view[starts], dtype=np.float32)


def normalize(windows: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """(N, C, L) raw windows -> what the network reads, float32."""
    w = np.asarray(windows, np.float32)
    if spec.norm == "window":
        mean = w.mean(axis=2, keepdims=True, dtype=np.float64)
        std = w.std(axis=2, keepdims=True, dtype=np.float64)
        out = (w - mean) / np.maximum(std, spec.min_std)
    elif spec.norm == "global":
        mean = np.asarray(spec.mean, np.float64)[None, :, None]
        std = np.asarray(spec.std, np.float64)[None, :, None]
        out = (w - mean) / std
    else:
        return np.ascontiguousarray(w)
    return np.ascontiguousarray(out, dtype=np.float32)


def overlap_mean(point: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """Per-window point scores (N, L) at `starts` -> mean over the windows covering each of n
    samples (float64 sums, in window order); NaN where no window covers a sample."""
    total, count = np.zeros(n), np.zeros(n)
    length = point.shape[1]
    for s, p in zip(starts, point):
        total[s:s + length] += p
        count[s:s + length] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count
