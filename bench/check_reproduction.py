"""Re-train two rows of BENCHMARKS.md with their defaults and check that the metrics are the
recorded ones to 1e-6 (after a refactor that must not move a number):
HetNet-lite on hazelnut_toy (bench/results/image_models.json) and MMAE-lite on ECG5000
(bench/results/signal_mmae.json), evaluated on the torch run as the tables were.

usage: python bench/check_reproduction.py [--out /tmp/edgead_repro]"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
TOL = 1e-6


def check(name: str, got: dict, want: dict, keys) -> bool:
    ok = True
    for k in keys:
        same = (got[k] is None and want[k] is None) or abs(got[k] - want[k]) <= TOL
        ok &= same
        print(f"{name:>28} {k:>12}: recorded {want[k]!r:<22} now {got[k]!r:<22} {'same' if same else 'DIFFERENT'}", flush=True)
    return ok


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="/tmp/edgead_repro")
    out = Path(p.parse_args().out)
    from edgead.tasks.image.evaluate import evaluate
    from edgead.tasks.signal.evaluate import evaluate_signal
    from edgead.train import train

    ok = True
    image = next(r for r in json.loads((HERE / "results/image_models.json").read_text())["results"]
                 if r["model"] == "hetnet" and r["data"] == "hazelnut_toy")
    data = SHARED / "images/hazelnut_toy"
    t = time.time()
    train(data, out / "hetnet_hazelnut_toy", model="hetnet")
    print(f"hetnet trained in {time.time() - t:.0f} s", flush=True)
    ok &= check("hetnet hazelnut_toy", evaluate(out / "hetnet_hazelnut_toy", data), image["fp32"],
                ("image_auroc", "pixel_auroc", "aupro"))
    signal = next(r for r in json.loads((HERE / "results/signal_mmae.json").read_text())["rows"] if r["data"] == "ecg5000")
    data = SHARED / "signals/ecg5000_train/ECG5000_TRAIN.txt"
    t = time.time()
    train(data, out / "mmae_ecg5000", model="mmae", threads=1)
    print(f"mmae trained in {time.time() - t:.0f} s", flush=True)
    ok &= check("mmae ecg5000", evaluate_signal(out / "mmae_ecg5000", data), signal["torch"], ("sample_auroc", "f1_max"))
    print("all the same" if ok else "SOME NUMBERS MOVED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
