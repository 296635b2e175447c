"""One process against `torchrun --nproc-per-node 2` (DDP, gloo) on the same run, and a second
seed of the one-process run for the size of seed noise. Writes bench/results/ddp_training.json
and prints markdown rows for BENCHMARKS.md.

usage: python bench/ddp_training.py [--only hetnet,mmae] [--work bench/work/ddp]

One process gets both cores (--threads 2); each of the two ranks gets one (--threads 1)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
CASES = {
    "hetnet": (["--model", "hetnet", "--data", str(SHARED / "images" / "hazelnut_toy")], ("image_auroc", "pixel_auroc", "aupro")),
    "mmae": (["--model", "mmae", "--data", str(SHARED / "signals" / "ecg5000_train" / "ECG5000_TRAIN.txt")],
             ("sample_auroc", "f1_max")),
}


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t


def measure(name: str, out: Path, procs: int, seed: int) -> dict:
    flags, keys = CASES[name]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"] \
        if procs > 1 else [sys.executable]
    seconds = run([*launcher, "-m", "edgead", "train", *flags, "--out", str(out), "--seed", str(seed),
                   "--threads", str(2 // procs)])
    data = flags[flags.index("--data") + 1]
    ev = subprocess.run([sys.executable, "-m", "edgead", "eval", str(out), "--data", data, "--json"],
                        capture_output=True, text=True, check=True)
    metrics = json.loads(ev.stdout.strip().splitlines()[-1])
    record = json.loads((out / "run.json").read_text())
    th = record["thresholds"]
    level = "image" if "image" in th else "window"
    return {"processes": procs, "seed": seed, "seconds": round(seconds, 1), "final_loss": record["train"]["log"]["final_loss"],
            "threshold": th[level]["values"]["normal_quantile"], **{k: metrics.get(k) for k in keys}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--only", default=",".join(CASES))
    p.add_argument("--work", default=str(HERE / "work" / "ddp"))
    a = p.parse_args()
    work = Path(a.work)
    results = {}
    for name in a.only.split(","):
        rows = []
        for procs, seed in ((1, 0), (2, 0), (1, 1)):
            rows.append(measure(name, work / f"{name}_p{procs}_s{seed}", procs, seed))
            print(json.dumps({name: rows[-1]}), file=sys.stderr, flush=True)
        results[name] = rows
    from edgead.core.machine import machine_info

    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "ddp_training.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "results": results}, indent=1))
    for name, rows in results.items():
        keys = [k for k in rows[0] if k not in ("processes", "seed")]
        print(f"\n| {name} | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
        for r in rows:
            label = f"{r['processes']} process{'es' if r['processes'] > 1 else ''}, seed {r['seed']}"
            print(f"| {label} | " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
