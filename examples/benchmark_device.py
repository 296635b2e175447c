#!/usr/bin/env python3
"""Benchmark an edgead bundle on this device (Raspberry Pi, Jetson, x86 box).

Copy this file and a bundle to the device, install numpy + OpenCV + one runtime
(see examples/README.md for aarch64 and Jetson), then:

    pip install 'edgead[onnxruntime]'            # or [openvino], [tflite]
    python benchmark_device.py bundles/hazelnut --data hazelnut_test/ --threads 1,4

Prints one row per runtime x precision x threads (size, load time, latency p50/p90/p99 of the
whole Predictor path and of the bare model, images/s, peak memory, AUROC with --data) and
writes the table with the machine's description to benchmark-<arch>-<date>.json.
Uses only numpy, OpenCV, the installed runtime(s) and edgead's torch-free Predictor.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

try:
    from edgead.benchmark import format_table, parse_list, run_benchmark
except ImportError as e:  # copied alone onto a device without edgead
    sys.exit(f"benchmark_device.py needs edgead: pip install 'edgead[onnxruntime]' (or [openvino], [tflite]) ({e})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="bundle folder from `edgead export`")
    p.add_argument("--runtimes", help="comma-separated (default: every runtime the bundle has)")
    p.add_argument("--threads", help="comma-separated thread counts (default: 1 and all cores)")
    p.add_argument("--precisions", help="comma-separated, e.g. fp32,int8 (default: all)")
    p.add_argument("--data", help="labelled images (MVTec layout or good/ + bad/): timed on them, adds AUROCs")
    p.add_argument("--n", type=int, default=200, help="timed runs per case")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs first")
    p.add_argument("--device", help="e.g. cuda or tensorrt with onnxruntime on a Jetson")
    p.add_argument("--json", help="report file (default: benchmark-<arch>-<date>.json here)")
    a = p.parse_args(argv)

    try:
        report = run_benchmark(a.bundle, parse_list(a.runtimes), parse_list(a.threads, int), a.data, a.n,
                               a.warmup, parse_list(a.precisions), a.device,
                               log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except (OSError, ValueError) as e:  # a missing or tampered bundle, bad data folder or option
        print(f"benchmark_device.py: error: {e}", file=sys.stderr)
        return 2
    print(format_table(report))
    out = Path(a.json or f"benchmark-{platform.machine()}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.write_text(json.dumps(report, indent=1))
    print(f"report written to {out}")
    return 1 if any(r["status"] == "failed" for r in report["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
