"""How big should PatchCore-lite's memory bank be? Fit once with a large cap, then evaluate
prefixes of the greedy coreset (each prefix is itself a greedy coreset): accuracy, bank MB and
ONNX Runtime FP32 model latency per size. Writes bench/results/patchcore_bank_sweep.json.

usage: python bench/patchcore_bank_sweep.py [--data DIR] [--sizes 512 1024 ...] [--threads 2]"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from run_int8_bench import latency

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "images"


def main() -> None:
    from safetensors.torch import load_file, save_file

    from edgead.tasks.image.evaluate import evaluate
    from edgead.export import export
    from edgead.tasks.image.train import train

    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(SHARED / "magnetic_tile"))
    p.add_argument("--sizes", nargs="*", type=int, default=[512, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--work", default=str(HERE / "work" / "bank_sweep"))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    data, work = Path(a.data), Path(a.work)
    full = work / "full"
    if not (full / "run.json").is_file():
        train(data, full, model="patchcore", overrides={"max_bank": max(a.sizes), "coreset_ratio": 1.0})
    cfg = json.loads((full / "run.json").read_text())
    weights = load_file(str(full / "weights.safetensors"))
    rows = []
    for size in sorted(a.sizes):
        if size > len(weights["bank"]):
            continue
        run = work / f"bank{size}"
        run.mkdir(parents=True, exist_ok=True)
        c = json.loads(json.dumps(cfg))
        c["model"]["config"]["bank_size"] = size
        (run / "run.json").write_text(json.dumps(c))
        save_file({**weights, "bank": weights["bank"][:size].contiguous()}, str(run / "weights.safetensors"))
        ev = evaluate(run, data)
        bundle = work / f"bank{size}_bundle"
        if not (bundle / "edgead.json").is_file():
            export(run, bundle, ["onnx"])
        row = {"bank": size, "bank_mb": round(size * weights["bank"].shape[1] * 4 / 1e6, 2),
               **{k: ev[k] for k in ("image_auroc", "pixel_auroc", "aupro")},
               "ort_ms": latency(bundle, "onnxruntime", a.threads, "fp32")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(["python", *sys.argv]), "data": data.name, "n_patches": cfg["train"]["log"]["n_patches"]}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "patchcore_bank_sweep.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print("| bank | MB | image AUROC | pixel AUROC | AUPRO | ORT FP32 ms |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bank']} | {r['bank_mb']} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | {r['aupro']:.3f} | {r['ort_ms']:.1f} |")


if __name__ == "__main__":
    main()
