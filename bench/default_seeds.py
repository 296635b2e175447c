"""Issue 17: the default image model (`edgead train`, no flag) over three seeds on each shared
data set, scored with `edgead eval` on both pixel geometries; the mean and spread.

usage: python bench/default_seeds.py [--data DIR ...] [--seeds 0 1 2] [--json OUT]"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from edgead.tasks.image.evaluate import evaluate
from edgead.models import DEFAULT_MODEL
from edgead.train import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"
FIGURES = ("image_auroc", "pixel_auroc", "aupro")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="*", default=[str(SHARED / "hazelnut_toy"), str(SHARED / "magnetic_tile")])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--json", default=None)
    a = p.parse_args()
    rows, summary = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for data in map(Path, a.data):
            for seed in a.seeds:
                run = Path(tmp) / f"{data.name}_{seed}"
                cfg = train(data, run, seed=seed)
                for geometry in ("network", "original"):
                    m = evaluate(run, data, geometry=geometry)
                    row = {"data": data.name, "model": DEFAULT_MODEL, "seed": seed, "geometry": geometry,
                           "train_s": cfg["train"]["seconds"], **{k: round(m[k], 4) for k in FIGURES}}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
            for geometry in ("network", "original"):
                sel = [r for r in rows if r["data"] == data.name and r["geometry"] == geometry]
                s = {"data": data.name, "geometry": geometry}
                for k in FIGURES:
                    v = [r[k] for r in sel]
                    s[k] = {"mean": round(statistics.mean(v), 4), "min": min(v), "max": max(v)}
                print(json.dumps(s), flush=True)
                summary.append(s)
    if a.json:
        Path(a.json).write_text(json.dumps({"runs": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
