"""Issue 19: FPFH-Core on the shared real scans with synthetic defects (3D-PNAS at three
strengths, and a second generator never trained on: spherical dents, holes).

usage: python bench/pointcloud_bench.py [--model fpfhcore|gridcore] [--scans NAME ...] [--scales 48,96 ...] [--json OUT]
For each scan: `synth3d` (organised scans thinned to every 4th row and column), train with each
--scales setting (default: the model's; neighbours for fpfhcore, pixels for gridcore), eval; one
JSON line per (scan, scales)."""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from edgead.tasks.pointcloud.evaluate import evaluate_pointcloud
from edgead.tasks.pointcloud.synth import SynthOptions, make_dataset
from edgead.tasks.pointcloud.train import train_pointcloud

SCANS = Path(__file__).resolve().parents[2] / "shared" / "data" / "pointclouds" / "pcl_scans"
DEFAULT_SCANS = ["milk.pcd", "table_scene_mug_stereo_textured.pcd", "milk_cartoon_all_small_clorox.pcd"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scans", nargs="*", default=DEFAULT_SCANS)
    p.add_argument("--model", default="fpfhcore", choices=["fpfhcore", "gridcore"])
    p.add_argument("--scales", nargs="*", default=["default"])
    p.add_argument("--out", default=str(Path(__file__).parent / "work" / "pointcloud"))
    p.add_argument("--json", default=None)
    a = p.parse_args()
    out, rows = Path(a.out), []
    for name in a.scans:
        data = out / Path(name).stem
        if not (data / "SYNTHETIC.json").is_file():
            make_dataset([SCANS / name], data, SynthOptions(n_train=12, n_good=8, n_defect=8, grid_step=4))
        for scales in a.scales:
            run = out / f"run_{a.model}_{Path(name).stem}_{scales.replace(',', '_')}"
            shutil.rmtree(run, ignore_errors=True)
            t = time.time()
            cfg = train_pointcloud(data, run, model=a.model,
                                   scales=None if scales == "default" else tuple(int(k) for k in scales.split(",")))
            train_s = round(time.time() - t, 1)
            t = time.time()
            r = evaluate_pointcloud(run, data)
            row = {"model": a.model, "scan": name, "scales": cfg["model"]["config"].get("scales") or cfg["input"]["scales"], "train_s": train_s, "eval_s_per_cloud": round((time.time() - t) / r["n_clouds"], 2),
                   "points_per_cloud": json.loads((data / "SYNTHETIC.json").read_text())["options"].get("max_points"),
                   "bank": cfg["complexity"]["bank_entries"],
                   "cloud_auroc": round(r["cloud_auroc"], 3), "point_auroc": round(r["point_auroc"], 3),
                   "false_alarms": f"{r['false_alarms']}/{r['n_good']}", "misses": f"{r['misses']}/{r['n_defective']}",
                   "kinds": {k: {m: round(v[m], 3) for m in ("cloud_auroc", "point_auroc")} for k, v in r["kinds"].items()}}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
