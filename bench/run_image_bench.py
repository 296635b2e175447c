"""Image benchmark: train with defaults, evaluate, export FP32 targets, per-runtime AUROC,
latency (1 and 2 threads) and bundle size. Writes bench/results/image_<model>.json and prints
markdown rows for BENCHMARKS.md.

usage: python bench/run_image_bench.py [--model hetnet] [--data DIR ...] [--out bench/work]"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from edgead import targets as target_table

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "images"
DEFAULT_DATA = [SHARED / "hazelnut_toy", SHARED / "magnetic_tile"]
RUNTIMES = [t.runtime for t in target_table.TARGETS.values()]


def latency(bundle: Path, runtime: str, threads: int, precision: str = "fp32") -> dict:
    out = subprocess.run([sys.executable, str(HERE / "latency.py"), str(bundle), runtime, str(threads), "50", precision],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from edgead.core.bundle import artefact_bytes
    from edgead.tasks.image.evaluate import evaluate
    from edgead.export import export
    from edgead.tasks.image.train import train

    p = argparse.ArgumentParser()
    p.add_argument("--model", default="hetnet")
    p.add_argument("--data", nargs="*", default=[str(d) for d in DEFAULT_DATA])
    p.add_argument("--out", default=str(HERE / "work"))
    a = p.parse_args()
    results = []
    for data in map(Path, a.data):
        if not data.is_dir():
            print(f"skip {data}: absent", file=sys.stderr)
            continue
        run, bundle = Path(a.out) / f"{a.model}_{data.name}", Path(a.out) / f"{a.model}_{data.name}_bundle"
        t = time.time()
        cfg = train(data, run, model=a.model)
        train_s = time.time() - t
        row = {"model": a.model, "data": data.name, "train_s": round(train_s, 1), "complexity": cfg["complexity"],
               "torch": evaluate(run, data)}
        export(run, bundle, ["onnx", "openvino", "tflite"])
        manifest = json.loads((bundle / "edgead.json").read_text())
        row["runtimes"] = {}
        for rt, target in zip(RUNTIMES, ["onnx", "openvino", "tflite"]):
            row["runtimes"][rt] = {
                "bytes": artefact_bytes(manifest, target),
                "eval": evaluate(bundle, data, runtime=rt),
                "latency": [latency(bundle, rt, th) for th in (1, 2)],
            }
        results.append(row)
        print(json.dumps(row), flush=True)
    meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv)}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"image_{a.model}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
