"""Reliability figures for BENCHMARKS.md (issue 16): per runtime, (1) one Predictor shared by 4
threads vs sequential results, (2) a soak of N predict calls with the process's RSS at start,
after 1,000 calls and at the end; and (3) the same soak for a SignalStream.

usage: python bench/reliability_soak.py IMAGE_BUNDLE IMAGE_DIR SIGNAL_BUNDLE [--n 10000] [--json OUT]
Each runtime runs in its own process (python bench/reliability_soak.py --child ...)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def image_child(bundle: str, images: str, runtime: str, n: int) -> dict:
    import cv2

    from edgead.predictor import Predictor

    files = sorted(p for p in Path(images).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:23]
    frames = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    pred = Predictor(bundle, runtime=runtime, precision="fp32", threads=1)
    sequential = [pred.predict(f).raw_score for f in frames]
    got, lock = [], threading.Lock()

    def worker(w: int) -> None:
        for rep in range(5):
            for i in range(len(frames)):
                j = (i + 7 * w) % len(frames)
                v = pred.predict(frames[j]).raw_score
                with lock:
                    got.append((j, v))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    differ = sum(v != sequential[j] for j, v in got)
    rss = {"start": rss_mb()}
    t = time.perf_counter()
    for i in range(n):
        pred.predict(frames[i % len(frames)])
        if i + 1 == 1000:
            rss["after_1000"] = rss_mb()
    rss["end"] = rss_mb()
    return {"runtime": runtime, "threads_results": len(got), "threads_differ": differ, "soak_calls": n,
            "soak_s": round(time.perf_counter() - t, 1), "rss_mb": {k: round(v, 1) for k, v in rss.items()}}


def stream_child(bundle: str, runtime: str, n: int) -> dict:
    from edgead.signal_predictor import SignalPredictor

    pred = SignalPredictor(bundle, runtime=runtime, threads=1)
    stream = pred.stream()
    rng = np.random.default_rng(0)
    rss = {"start": rss_mb()}
    windows = 0
    t = time.perf_counter()
    for i in range(n):
        windows += len(stream.push(np.sin(np.arange(i * 16, i * 16 + 16) / 5.0) + 0.05 * rng.standard_normal(16)).windows)
        if i + 1 == 1000:
            rss["after_1000"] = rss_mb()
    rss["end"] = rss_mb()
    return {"runtime": runtime, "stream_pushes": n, "windows": windows, "soak_s": round(time.perf_counter() - t, 1),
            "rss_mb": {k: round(v, 1) for k, v in rss.items()}}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("image_bundle", nargs="?")
    p.add_argument("images", nargs="?")
    p.add_argument("signal_bundle", nargs="?")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--json", default=None)
    p.add_argument("--kinds", default="image,stream", help="which soaks to run")
    p.add_argument("--child", nargs=3, metavar=("KIND", "RUNTIME", "ARGS"), default=None)
    a = p.parse_args()
    if a.child:
        kind, runtime, args = a.child
        args = json.loads(args)
        row = image_child(*args, runtime, a.n) if kind == "image" else stream_child(*args, runtime, a.n)
        print(json.dumps(row))
        return 0
    rows = []
    kinds = a.kinds.split(",")
    for kind, args in [(k, v) for k, v in (("image", [a.image_bundle, a.images]), ("stream", [a.signal_bundle]))
                       if k in kinds]:
        for runtime in ("onnxruntime", "openvino", "tflite"):
            out = subprocess.run([sys.executable, __file__, "--n", str(a.n), "--child", kind, runtime, json.dumps(args)],
                                 capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else \
                {"runtime": runtime, "error": out.stderr.strip().splitlines()[-1:]}
            row["kind"] = kind
            print(json.dumps(row), flush=True)
            rows.append(row)
    if a.json:
        out = Path(a.json)
        kept = [r for r in json.loads(out.read_text())["rows"] if r["kind"] not in kinds] if out.is_file() else []
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "n": a.n, "rows": kept + rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
