"""Median latency per window of a signal bundle (or run, on torch) on one runtime; run one runtime
per process (thread pools fight).

usage: python bench/signal_latency.py BUNDLE_OR_RUN RUNTIME THREADS [N] [PRECISION]  -> one JSON line
model_ms: one normalised window through the runtime; window_ms: score_windows on one raw window
(normalisation + runtime + thresholds); push_ms: one stream push of `hop` samples (one window)."""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from edgead.tasks.signal.predictor import SignalPredictor
from edgead.tasks.signal.preprocess import normalize


def _median_ms(fn, n: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def measure(source: str, runtime: str, threads: int, n: int = 200, precision: str = "auto", warmup: int = 20) -> dict:
    if runtime == "torch":
        import torch

        torch.set_num_threads(threads)
    pred = SignalPredictor(source, runtime=runtime, threads=threads, precision=precision)
    spec = pred.spec
    if runtime == "torch":
        pred.batch = 1
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((1, spec.channels, spec.length)).astype(np.float32)
    x = normalize(raw, spec)
    stream = pred.stream()
    stream.push(rng.standard_normal((spec.length - spec.hop, spec.channels)))
    chunk = rng.standard_normal((spec.hop, spec.channels))
    return {"runtime": runtime, "precision": pred.precision, "threads": threads,
            "model_ms": _median_ms(lambda: pred.raw_scores(x), n, warmup),
            "window_ms": _median_ms(lambda: pred.score_windows(raw), n, warmup),
            "push_ms": _median_ms(lambda: stream.push(chunk), n, warmup)}


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(measure(a[0], a[1], int(a[2]), int(a[3]) if len(a) > 3 else 200, a[4] if len(a) > 4 else "auto")))
