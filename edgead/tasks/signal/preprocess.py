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
RESAMPLINGS = ("polyphase", "linear")


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
    resampling: str = "polyphase"  # how recordings reach `rate`; runs from before it was recorded: "linear"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"input.norm must be one of {NORMS}, got {self.norm!r}")
        if self.resampling not in RESAMPLINGS:
            raise ValueError(f"input.resampling must be one of {RESAMPLINGS}, got {self.resampling!r}")
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
        d.setdefault("resampling", "linear")  # a model trained before the anti-aliased resampler
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
# Largest up or down factor of a rate ratio. The filter has 20 max(up, down) + 1 taps and a large
# push costs about as many numpy calls, so 1000 keeps both small (20,001 taps; 650,000 samples
# from 1000 to 999 Hz take 0.17 s on a 2-core VM). Every usual pair fits (44100 -> 16000 is
# 160/441, 360 -> 250 is 25/36, 128.5 -> 120 is 240/257); a ratio beyond it (120 / 359.87 Hz =
# 12000/35987) is nearly always a measured or mistyped rate: refused, not silently rounded.
MAX_FACTOR = 1000
KAISER_BETA = 5.0  # scipy.signal.resample_poly's default window: ('kaiser', 5.0)
HALF_ZEROS = 10  # filter half length in sinc zero crossings: scipy's 10 * max(up, down) taps


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


def resample_factors(src: float | None, dst: float | None) -> tuple[int, int]:
    """(up, down) in lowest terms with dst / src = up / down; (1, 1) when either rate is None or
    they are equal. Rates are read as written (44.1 is 441/10, not its binary float)."""
    if src is None or dst is None or float(src) == float(dst):
        return 1, 1
    check_rates(src, dst)
    r = Fraction(repr(float(dst))) / Fraction(repr(float(src)))
    up, down = r.numerator, r.denominator
    if max(up, down) > MAX_FACTOR:
        k = max(1, round(src / dst)) if dst < src else round(dst / src)
        near = src / k if dst < src else src * k
        raise DataError(f"resampling {src:g} Hz to the model's {dst:g} Hz needs the ratio {up}/{down}: its "
                        f"anti-alias filter would have {20 * max(up, down) + 1:,} taps (up and down are limited to "
                        f"{MAX_FACTOR}); use rates with a simpler ratio, e.g. a model rate of {near:g} Hz, and "
                        f"check that {src:g} Hz is the data's real rate")
    return up, down


def lowpass(up: int, down: int) -> np.ndarray:
    """scipy.signal.resample_poly's anti-alias filter in numpy: firwin(2 half + 1, 1 / m,
    window=('kaiser', 5.0)) * up with m = max(up, down) and half = 10 m, i.e. a Kaiser-windowed
    sinc cut off at the lower Nyquist rate, unit DC gain, times `up` for the inserted zeros."""
    m = max(up, down)
    half = HALF_ZEROS * m
    t = np.arange(-half, half + 1, dtype=np.float64)
    h = (1.0 / m) * np.sinc((1.0 / m) * t) * np.kaiser(2 * half + 1, KAISER_BETA)
    return h / h.sum() * up


def main_lobe(up: int, down: int) -> np.ndarray:
    """0/1 taps over the same span as `lowpass`, 1 inside its main lobe (between the sinc's
    first zeros): the source samples that shape an output most."""
    m = max(up, down)
    half = HALF_ZEROS * m
    return (np.abs(np.arange(-half, half + 1)) < m).astype(np.float64)


def phase_taps(h: np.ndarray, up: int, before: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per phase p: (offsets, taps) of the filter's nonzero terms over the `width` source samples
    from base - before, where output k has phase k down mod up and base k down // up."""
    half = len(h) // 2
    out = []
    for p in range(up):
        idx = half + p + up * (before - np.arange(width))  # filter index of each source sample
        taps = np.where((idx >= 0) & (idx < len(h)), h[np.clip(idx, 0, len(h) - 1)], 0.0)
        offsets = np.flatnonzero(taps)
        out.append((offsets, taps[offsets]))
    return out


class Resampler:
    """Anti-aliased polyphase resampling from `src` Hz to `dst` Hz, batch or streaming: in numpy
    alone, equal to scipy.signal.resample_poly(x, up, down, axis=0, padtype="edge").

    Output k sits at source position k down / up (the filter is centred) and is its phase's taps
    times the source samples under the filter, summed in one fixed order, so any chunking gives
    bit-identical outputs. The first sample pads the front at once; `push` returns the outputs
    whose support has arrived (about 10 max(up, down) / up source samples are held back) and
    `flush` pads the end with the last sample and returns the rest. Identity (a rate None, or
    equal rates) passes samples through with no delay."""

    def __init__(self, src: float | None, dst: float | None):
        self.up, self.down = resample_factors(src, dst)
        self.identity = self.up == self.down
        h = np.ones(1) if self.identity else self._taps()  # identity: no filter, no delay
        half = len(h) // 2
        self.before, self.after = half // self.up, (half + self.up - 1) // self.up  # support around base
        self.phases = phase_taps(h, self.up, self.before, self.before + self.after + 1)
        self.buf: np.ndarray | None = None  # source samples still needed, front-padded, from index `start`
        self.start = 0
        self.seen = 0  # source samples pushed
        self.k = 0  # next output index
        self.tail: tuple[int, ...] = ()  # shape of one sample
        self.flushed = False

    def _taps(self) -> np.ndarray:
        return lowpass(self.up, self.down)

    def _finish(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, np.float32)

    def push(self, x: np.ndarray) -> np.ndarray:
        """Source samples (n, ...) -> the output samples whose filter support they complete."""
        if self.flushed:
            raise ValueError("this resampler was flushed; start a new Resampler for the next recording")
        x = np.asarray(x)
        self.tail = x.shape[1:]
        if self.identity or not len(x):
            return self._finish(x)
        x = x.astype(np.float64)
        if self.buf is None:  # the first sample pads the front
            self.buf, self.start = np.concatenate([np.repeat(x[:1], self.before, axis=0), x]), -self.before
        else:
            self.buf = np.concatenate([self.buf, x])
        self.seen += len(x)
        return self._emit((self.up * (self.seen - self.after) - 1) // self.down + 1)

    def flush(self) -> np.ndarray:
        """End of the recording: the remaining outputs, ceil(n up / down) in all (the end padded
        with the last sample)."""
        if self.flushed:
            raise ValueError("this resampler was already flushed; start a new Resampler for the next recording")
        self.flushed = True
        if self.identity or self.buf is None:
            return self._finish(np.zeros((0,) + self.tail))
        self.buf = np.concatenate([self.buf, np.repeat(self.buf[-1:], self.after, axis=0)])
        y = self._emit(-(-self.seen * self.up // self.down))
        self.buf = None
        return y

    def _emit(self, end: int) -> np.ndarray:
        """Outputs self.k .. end - 1, phase by phase; then drops the samples no output needs."""
        m = max(0, end - self.k)
        y = np.empty((m,) + self.buf.shape[1:])
        for r in range(min(m, self.up)):
            y[r::self.up] = self._phase_outputs(self.k + r, len(range(r, m, self.up)))
        self.k += m
        drop = min(self.k * self.down // self.up - self.before - self.start, len(self.buf) - 1)
        if drop > 0:  # (the last sample stays: it pads the end)
            self.buf, self.start = self.buf[drop:], self.start + drop
        return self._finish(y)

    def _phase_outputs(self, k: int, count: int) -> np.ndarray:
        """Outputs k, k + up, ... (`count` of them): one phase, its support moving by `down`."""
        base, phase = divmod(k * self.down, self.up)
        first = base - self.before - self.start
        span = self.down * (count - 1) + 1
        offsets, taps = self.phases[phase]
        acc = taps[0] * self.buf[first + offsets[0]:first + offsets[0] + span:self.down]
        for o, w in zip(offsets[1:], taps[1:]):
            acc += w * self.buf[first + o:first + o + span:self.down]
        return acc


class MaskResampler(Resampler):
    """A missing-sample mask resampled with the data's schedule (same output count, same outputs
    per push and flush): an output is missing when a source sample under the filter's main lobe,
    within max(up, down) / up source samples of it, was missing. (A FIR on a 0/1 mask rings.)"""

    def _taps(self) -> np.ndarray:
        return main_lobe(self.up, self.down)

    def _finish(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y) > 0


class LinearResampler:
    """The resampling of models trained before the anti-aliased one (input.resampling "linear"):
    output k is the linear interpolation at source position k src / dst, produced once the two
    source samples around it exist. Kept so that such models score as they were trained."""

    def __init__(self, src: float | None, dst: float | None, mask: bool = False):
        self.identity = src is None or dst is None or float(src) == float(dst)
        self.mask = mask  # a missing-sample mask: outputs touching a missing sample are missing
        if not self.identity:
            check_rates(src, dst)
            r = Fraction(float(src)).limit_denominator(1_000_000) / Fraction(float(dst)).limit_denominator(1_000_000)
            self.p, self.q = r.numerator, r.denominator  # source step per output sample = p / q
        self.k = 0  # next output index
        self.offset = 0  # source index of buf[0]
        self.buf = np.zeros((0, 0), np.float64)
        self.shape: tuple[int, ...] = ()  # of one sample

    def push(self, x: np.ndarray) -> np.ndarray:
        self.shape = np.shape(x)[1:]
        if self.identity:
            return self._finish(np.asarray(x))
        x = np.asarray(x, np.float64)
        self.buf = x if self.buf.size == 0 else np.concatenate([self.buf, x])
        end = self.offset + len(self.buf)  # source samples seen so far
        k_hi = (end - 1) * self.q // self.p  # last k whose left neighbour i0 = floor(k p / q) has arrived
        ks = np.arange(self.k, k_hi + 1, dtype=np.int64)
        i0, rem = ks * self.p // self.q, ks * self.p % self.q
        ok = (rem == 0) | (i0 + 1 < end)  # on a sample, or both neighbours there
        ks, i0, rem = ks[ok], i0[ok], rem[ok]
        frac = (rem / self.q).reshape(-1, *([1] * (x.ndim - 1)))
        j0 = i0 - self.offset
        y = self.buf[j0] * (1.0 - frac) + self.buf[np.minimum(j0 + 1, len(self.buf) - 1)] * frac
        if len(ks):
            self.k = int(ks[-1]) + 1
        drop = min(max(0, self.k * self.p // self.q - self.offset), len(self.buf))
        self.buf, self.offset = self.buf[drop:], self.offset + drop
        return self._finish(y)

    def flush(self) -> np.ndarray:
        return self._finish(np.zeros((0,) + self.shape))

    def _finish(self, y: np.ndarray) -> np.ndarray:
        return y > 0 if self.mask else np.asarray(y, np.float32)


def resampler(src: float | None, dst: float | None, method: str = "polyphase", mask: bool = False):
    """The streaming resampler of `method` (a spec's `resampling`), for samples or a missing mask."""
    if method == "linear":
        return LinearResampler(src, dst, mask)
    return (MaskResampler if mask else Resampler)(src, dst)


def resample(x: np.ndarray, src: float | None, dst: float | None, method: str = "polyphase") -> np.ndarray:
    """(T, C) samples from `src` to `dst` Hz (identity when either is None): float32."""
    r = resampler(src, dst, method)
    if r.identity:
        return np.asarray(x, np.float32)
    return np.concatenate([r.push(x), r.flush()])


def resample_mask(mask: np.ndarray, src: float | None, dst: float | None, method: str = "polyphase") -> np.ndarray:
    """(T,) missing-sample mask from `src` to `dst` Hz, aligned with `resample`'s output: bool."""
    r = resampler(src, dst, method, mask=True)
    if r.identity:
        return np.asarray(mask, bool)
    return np.concatenate([r.push(mask), r.flush()])


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
