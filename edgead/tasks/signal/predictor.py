"""The torch-free SignalPredictor: windows -> runtime -> point and window scores -> thresholds.

Three ways in, all giving the same scores for the same samples:
- `score_windows(windows)`: fixed-length samples (e.g. heartbeats), (N, C, L) or (N, L);
- `predict(samples, rate)`: a whole recording (T,) or (T, C) in one call;
- `stream(rate)`: push samples as they arrive, in chunks of any size; window scores come as
  soon as a window is complete, point scores as soon as no later window can cover them.
  Memory stays bounded (about one window plus one hop of samples). With a rate change the
  anti-alias filter holds back 10 max(up, down) / up source samples (30 for 360 -> 120 Hz)
  until later ones arrive or `flush()`.

Long recordings are resampled to the model's rate, cut into windows every `hop` samples and
each window normalised (see `edgead.tasks.signal.preprocess`); a point's score is the mean over the
regular windows covering it, and samples after the last regular window take the scores of one
extra window aligned to the end of the recording. Times are model-rate sample indices.

Imports numpy and one runtime; never torch (except to run a training run folder directly)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgead.core.errors import DataError, UsageError
from edgead.core.predictor import BasePredictor
from edgead.core.thresholds import Override, ThresholdSet
from edgead.tasks.signal.preprocess import (SignalSpec, as_series, as_windows, cut_windows, fill_gaps, normalize,
                                            overlap_mean, resample, resample_mask, resampler, window_faults,
                                            window_starts)

MAX_BATCH = 64  # windows per runtime call when the artefact takes any batch size


@dataclass
class WindowScores:
    """Scores of fixed-length windows: raw point (N, L) and window (N,) scores, and the normalised
    window scores (0.5 = window threshold) with their decisions."""

    point_score: np.ndarray = field(repr=False)
    window_score: np.ndarray
    score: np.ndarray
    is_anomalous: np.ndarray
    fault: list = field(default_factory=list)  # per window: None, or "flat" / "saturated" / "dropout"


@dataclass
class WindowResult:
    start: int  # first sample of the window (model rate, from the start of the recording)
    raw_score: float
    score: float  # normalised: 0.5 = the window threshold
    is_anomalous: bool
    fault: str | None = None  # "flat", "saturated" or "dropout": the sensor, not the signal, is suspect

    @property
    def state(self) -> str:
        """"fault", "anomalous" or "normal": a faulty window is never reported as normal."""
        return "fault" if self.fault else "anomalous" if self.is_anomalous else "normal"

    def to_json(self) -> dict:
        out = {"start": self.start, "raw_score": self.raw_score, "score": round(self.score, 6),
               "is_anomalous": self.is_anomalous}
        return {**out, "fault": self.fault} if self.fault else out


@dataclass
class SeriesResult:
    """Scores of a whole recording at the model rate."""

    rate: float | None
    windows: list[WindowResult]
    point_score: np.ndarray = field(repr=False)  # (T,) raw
    point_threshold: float

    @property
    def point_is_anomalous(self) -> np.ndarray:
        return self.point_score >= self.point_threshold


@dataclass
class StreamUpdate:
    """What one `push` (or `flush`) completed: new windows, and final point scores of the
    samples [point_start, point_start + len(point_score))."""

    windows: list[WindowResult]
    point_start: int
    point_score: np.ndarray = field(repr=False)
    point_threshold: float

    @property
    def point_is_anomalous(self) -> np.ndarray:
        return self.point_score >= self.point_threshold


class SignalPredictor(BasePredictor):
    """Scores signals with a signal bundle (or a training run, on torch) on one runtime."""

    task = "signal"
    output_names = ("point_score", "window_score")
    default_input_name = "signal"

    def _setup(self, config) -> None:
        self.spec = SignalSpec.from_json(config["input"])
        th = config.get("thresholds") or {}
        self.window_thresholds = ThresholdSet.from_json(th["window"]) if "window" in th else None
        self.point_thresholds = ThresholdSet.from_json(th["point"]) if "point" in th else None
        shape = (getattr(self.backend, "input_shapes", {}) or {}).get(self.input_name)
        self.batch = shape[0] if shape and shape[0] is not None else MAX_BATCH

    # -------------------------------------------------------------------------- windows

    def raw_scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised windows (N, C, L) -> raw (point (N, L), window (N,)) from the runtime."""
        points, wins = [], []
        for i in range(0, len(x), self.batch):
            chunk = np.ascontiguousarray(x[i:i + self.batch], np.float32)
            n = len(chunk)
            if n < self.batch and self.batch != MAX_BATCH:  # static batch: pad the last call
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, 0)])
            out = self.run(chunk)
            points.append(out["point_score"][:n])
            wins.append(out["window_score"][:n])
        if not points:
            return np.zeros((0, self.spec.length), np.float32), np.zeros(0, np.float32)
        return np.concatenate(points), np.concatenate(wins)

    def set_threshold(self, value: float | str | Override) -> None:
        """Set the window threshold (the "manual" kind): a raw window score, or an `Override` such
        as "score:0.6" (normalised: 0.5 = the trained threshold)."""
        if self.window_thresholds is None:
            raise UsageError("this model has no thresholds to override; train it with `edgead train`")
        (value if isinstance(value, Override) else Override.parse(value)).apply(self.window_thresholds)

    @property
    def window_threshold(self) -> float:
        """The active raw window threshold (inf while a model has none, i.e. during training)."""
        return self.window_thresholds.threshold if self.window_thresholds else float("inf")

    @property
    def point_threshold(self) -> float:
        return self.point_thresholds.threshold if self.point_thresholds else float("inf")

    def _normalized(self, raw: np.ndarray) -> np.ndarray:
        th = self.window_thresholds
        return np.asarray(th.normalize(raw.astype(np.float64))) if th else np.full(raw.shape, np.nan)

    def score_windows(self, windows: np.ndarray) -> WindowScores:
        """Raw fixed-length windows (N, C, L) or (N, L) -> scores (normalisation happens here)."""
        if not np.isfinite(np.asarray(windows, np.float64)).all():
            raise DataError("the windows hold NaN or inf values; fixed-length samples cannot be filled, drop those")
        raw = as_windows(windows, self.spec)
        point, win = self.raw_scores(normalize(raw, self.spec))
        return WindowScores(point, win, self._normalized(win), win >= self.window_threshold,
                            window_faults(raw, self.spec))

    def _window_results(self, starts: list[int] | np.ndarray, scores: np.ndarray,
                        faults: list[str | None]) -> list[WindowResult]:
        norm = self._normalized(np.asarray(scores))
        return [WindowResult(int(s), float(v), float(n), bool(v >= self.window_threshold), f)
                for s, v, n, f in zip(starts, scores, norm, faults)]

    # -------------------------------------------------------------------------- recordings

    def predict(self, samples: np.ndarray, rate: float | None = None,
                missing: np.ndarray | None = None) -> SeriesResult:
        """A whole recording (T,) or (T, C) at `rate` Hz (default: the model's rate) -> scores.

        Missing samples (NaN, inf) are filled by linear interpolation, as the file loaders do;
        `missing` marks samples a loader already filled. Windows holding either get the fault
        "dropout"."""
        spec = self.spec
        filled, nan = fill_gaps(as_series(samples, spec.channels))
        gaps = nan if missing is None else np.asarray(missing, bool) | (nan if nan is not None else False)
        x = resample(filled, rate, spec.rate, spec.resampling)
        gaps = resample_mask(gaps, rate, spec.rate, spec.resampling) if gaps is not None and np.any(gaps) else None
        n = len(x)
        starts, tail = window_starts(n, spec.length, spec.hop)
        if not len(starts):
            raise DataError(f"the recording has {n} samples at the model rate, fewer than one window ({spec.length})")
        raw = cut_windows(x, starts, spec.length)
        point, win = self.raw_scores(normalize(raw, spec))
        faults = window_faults(raw, spec, _cut_mask(gaps, starts, spec.length))
        points = overlap_mean(point, starts, n)
        all_starts, all_scores = list(starts), list(win)
        if tail is not None:
            raw_tail = cut_windows(x, np.array([tail]), spec.length)
            tp, tw = self.raw_scores(normalize(raw_tail, spec))
            gap = np.flatnonzero(np.isnan(points))  # samples after the last regular window
            points[gap] = tp[0][gap - tail]
            all_starts.append(tail)
            all_scores.append(tw[0])
            faults += window_faults(raw_tail, spec, _cut_mask(gaps, np.array([tail]), spec.length))
        return SeriesResult(spec.rate, self._window_results(all_starts, np.asarray(all_scores), faults),
                            points.astype(np.float32), self.point_threshold)

    def stream(self, rate: float | None = None) -> "SignalStream":
        """A streaming scorer for samples arriving at `rate` Hz (default: the model's rate)."""
        return SignalStream(self, rate)


def _cut_mask(mask: np.ndarray | None, starts: np.ndarray, length: int) -> np.ndarray | None:
    """(N, 1, L) windows of a (T,) bool mask (None stays None)."""
    return None if mask is None else cut_windows(mask[:, None].astype(np.float32), starts, length) > 0


class SignalStream:
    """Push samples in chunks of any size; see `SignalPredictor` for what comes out when."""

    def __init__(self, predictor: SignalPredictor, rate: float | None = None):
        self.predictor = predictor
        self.spec = spec = predictor.spec
        if spec.hop > spec.length:
            raise ValueError(f"hop {spec.hop} > window length {spec.length}: samples between windows would never be scored")
        self.resampler = resampler(rate, spec.rate, spec.resampling)
        self.buf = np.zeros((0, spec.channels), np.float32)  # model-rate samples from buf_start
        self.mask_resampler = resampler(rate, spec.rate, spec.resampling, mask=True)  # the same output schedule
        self.mbuf = np.zeros((0, 1), bool)  # the sample was filled (missing), aligned with buf
        self.buf_start = 0
        self.n = 0  # model-rate samples received
        self.next_start = 0  # next regular window start
        self.emitted = 0  # point scores are final before this index
        self.acc_sum = np.zeros(0)  # per point from `emitted`
        self.acc_cnt = np.zeros(0)
        self.closed = False

    def push(self, samples: np.ndarray, missing: np.ndarray | None = None) -> StreamUpdate:
        """Add samples (n,) or (n, C) at the stream's rate; returns what they completed. `missing`
        (n,) marks samples that were filled upstream (e.g. by a file loader): their windows get
        the fault "dropout", as in `predict`."""
        if self.closed:
            raise ValueError("this stream was flushed; start a new one with predictor.stream()")
        spec = self.spec
        x = as_series(samples, spec.channels)
        if not np.isfinite(x).all():
            raise DataError("a stream needs finite samples: a missing one cannot be interpolated before the next "
                            "valid one arrives; fill gaps upstream, or score the recording with predict()")
        m = np.zeros((len(x), 1), np.float32) if missing is None else np.asarray(missing, np.float32).reshape(-1, 1)
        if len(m) != len(x):
            raise DataError(f"missing has {len(m)} entries for {len(x)} samples")
        windows = self._take(self.resampler.push(x), self.mask_resampler.push(m))
        update = self._emit(self.next_start, windows)
        keep_from = max(0, min(self.next_start, self.n - spec.length))
        self.buf, self.mbuf = self.buf[keep_from - self.buf_start:], self.mbuf[keep_from - self.buf_start:]
        self.buf_start = keep_from
        return update

    def flush(self) -> StreamUpdate:
        """End of the recording: the samples the resampler held back (its filter reaches past the
        last one), then the tail window; returns the remaining windows and points."""
        if self.closed:
            raise ValueError("this stream was already flushed; start a new one with predictor.stream()")
        spec = self.spec
        self.closed = True
        windows = self._take(self.resampler.flush(), self.mask_resampler.flush())
        covered = self.next_start - spec.hop + spec.length if self.next_start else 0  # end of the last regular window
        if self.n >= spec.length and covered < self.n:
            tail = self.n - spec.length
            raw_tail = cut_windows(self.buf, np.array([tail - self.buf_start]), spec.length)
            point, win = self.predictor.raw_scores(normalize(raw_tail, spec))
            self._grow(self.n)
            a = covered - self.emitted
            self.acc_sum[a:] = point[0][covered - tail:]
            self.acc_cnt[a:] = 1
            tail_gaps = _cut_mask(self.mbuf[:, 0], np.array([tail - self.buf_start]), spec.length)
            windows += self.predictor._window_results([tail], win, window_faults(raw_tail, spec, tail_gaps))
        return self._emit(self.n if self.n >= spec.length else self.emitted, windows)

    def _take(self, y: np.ndarray, m: np.ndarray) -> list[WindowResult]:
        """Adds model-rate samples `y` and their missing mask `m`; scores the regular windows
        they complete and adds their point scores to the running sums."""
        if not len(y):
            return []
        spec = self.spec
        self.buf = np.concatenate([self.buf, y]) if len(self.buf) else y
        self.mbuf = np.concatenate([self.mbuf, m])
        self.n += len(y)
        starts = []
        while self.next_start + spec.length <= self.n:
            starts.append(self.next_start)
            self.next_start += spec.hop
        if not starts:
            return []
        wins = cut_windows(self.buf, np.asarray(starts) - self.buf_start, spec.length)
        point, win = self.predictor.raw_scores(normalize(wins, spec))
        faults = window_faults(wins, spec, _cut_mask(self.mbuf[:, 0], np.asarray(starts) - self.buf_start, spec.length))
        self._grow(starts[-1] + spec.length)
        for s, p in zip(starts, point):
            a = s - self.emitted
            self.acc_sum[a:a + spec.length] += p
            self.acc_cnt[a:a + spec.length] += 1
        return self.predictor._window_results(starts, win, faults)

    def _grow(self, end: int) -> None:
        extra = end - self.emitted - len(self.acc_sum)
        if extra > 0:
            self.acc_sum = np.concatenate([self.acc_sum, np.zeros(extra)])
            self.acc_cnt = np.concatenate([self.acc_cnt, np.zeros(extra)])

    def _emit(self, upto: int, windows: list[WindowResult]) -> StreamUpdate:
        k = max(0, upto - self.emitted)
        with np.errstate(invalid="ignore", divide="ignore"):
            pts = (self.acc_sum[:k] / self.acc_cnt[:k]).astype(np.float32)
        update = StreamUpdate(windows, self.emitted, pts, self.predictor.point_threshold)
        self.acc_sum, self.acc_cnt = self.acc_sum[k:], self.acc_cnt[k:]
        self.emitted += k
        return update
