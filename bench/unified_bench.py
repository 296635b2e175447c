"""Issue 18: a unified model trained once on several products against the same model trained
per product, each product's figures from `edgead eval` (both pixel geometries).

usage: python bench/unified_bench.py [--model uniad] [--data DIR ...] [--out DIR] [--skip-per-product | --skip-unified]
                                     [--set KEY=VALUE ...] [--json OUT]
Runs stay in --out (default bench/work/unified) for export and latency afterwards."""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from edgead.tasks.image.cli import settings
from edgead.tasks.image.evaluate import evaluate
from edgead.tasks.image.train import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"
FIGURES = ("image_auroc", "pixel_auroc", "aupro")


def figures(run: Path, data: Path) -> dict:
    out = {}
    for geometry in ("network", "original"):
        m = evaluate(run, data, geometry=geometry)
        per = m.get("products") or {data.name: m}
        out[geometry] = {p: {k: None if v[k] is None else round(v[k], 4) for k in FIGURES} for p, v in per.items()}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="uniad")
    p.add_argument("--data", nargs="*", default=[str(SHARED / "hazelnut_toy"), str(SHARED / "magnetic_tile")])
    p.add_argument("--out", default=str(Path(__file__).parent / "work" / "unified"))
    p.add_argument("--skip-per-product", action="store_true")
    p.add_argument("--skip-unified", action="store_true", help="only the per-product runs")
    p.add_argument("--set", nargs="*", default=None, metavar="KEY=VALUE")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    out, data = Path(a.out), [Path(d) for d in a.data]
    rows = []
    jobs = ([] if a.skip_unified else [("unified", data)]) + ([] if a.skip_per_product else [(f"per product ({d.name})", [d]) for d in data])
    for name, folders in jobs:
        run = out / f"{a.model}_{'unified' if len(folders) > 1 else folders[0].name}"
        t = time.time()
        train(folders if len(folders) > 1 else folders[0], run, model=a.model, overrides=settings(a.set))
        seconds = round(time.time() - t, 1)
        root = Path(os.path.commonpath(folders)) if len(folders) > 1 else folders[0]
        row = {"model": a.model, "training": name, "run": str(run), "train_s": seconds, **figures(run, root)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
