"""Median latency of one bundle on one runtime (run one runtime per process: thread pools fight).

usage: python bench/latency.py BUNDLE RUNTIME THREADS [N] [PRECISION]  -> one JSON line"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from edgead.predictor import Predictor
from edgead.preprocess import read_image


def measure(bundle: str, runtime: str, threads: int, n: int = 50, precision: str = "auto", warmup: int = 5) -> dict:
    pred = Predictor(bundle, runtime=runtime, threads=threads, precision=precision)
    root = Path(__file__).resolve().parents[1] / "examples/data/hazelnut_toy/test/colour"
    img = read_image(sorted(root.glob("*.jpg"))[0])
    from edgead.preprocess import preprocess

    x = preprocess(img, pred.spec)[0]
    for _ in range(warmup):
        pred.predict(img)
    model_ms, full_ms = [], []
    for _ in range(n):
        t = time.perf_counter()
        pred.raw_map(x)
        model_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        pred.predict(img)
        full_ms.append((time.perf_counter() - t) * 1e3)
    return {"runtime": runtime, "precision": pred.precision, "threads": threads,
            "model_ms": float(np.median(model_ms)), "predict_ms": float(np.median(full_ms))}


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(measure(a[0], a[1], int(a[2]), int(a[3]) if len(a) > 3 else 50, a[4] if len(a) > 4 else "auto")))
