"""Median latency of one bundle on one runtime (run one runtime per process: thread pools fight).

usage: python bench/latency.py BUNDLE RUNTIME THREADS [N] [PRECISION]  -> one JSON line
A thin wrapper over edgead.benchmark.measure (which `edgead benchmark` runs per case)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from edgead.core import bundle as bundle_io
from edgead.benchmark import Case, measure as measure_case
from edgead.tasks.image.predictor import choose_target

IMAGE = Path(__file__).resolve().parents[1] / "examples/data/hazelnut_toy/test/colour/00.jpg"


def measure(bundle: str, runtime: str, threads: int, n: int = 50, precision: str = "auto", warmup: int = 5) -> dict:
    manifest = bundle_io.load_manifest(bundle, verify=False)
    target = choose_target(manifest, runtime, precision).target
    case = Case(target, runtime, manifest["artefacts"][target].get("precision", "fp32"), threads)
    row = measure_case(bundle, case, {"images": [str(IMAGE)]}, n=n, warmup=warmup)
    return {"runtime": runtime, "precision": row["precision"], "threads": threads,
            "model_ms": row["model_ms"]["p50"], "predict_ms": row["predict_ms"]["p50"]}


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(measure(a[0], a[1], int(a[2]), int(a[3]) if len(a) > 3 else 50, a[4] if len(a) > 4 else "auto")))
