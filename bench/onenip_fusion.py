"""Issue 18: how OneNIP-lite's map should weigh its refiner against the reconstruction error
(map = error / its normal level + w * P(defect)), on a trained run, without retraining.

usage: python bench/onenip_fusion.py RUN DATA [--weights 0 0.5 1 2 1000] [--geometry network|original]"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgead.models import load_run, torch_backend
from edgead.tasks.image.evaluate import evaluate
from edgead.tasks.image.predictor import Predictor


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("data")
    p.add_argument("--weights", nargs="*", type=float, default=[0.0, 0.5, 1.0, 2.0, 1000.0])
    p.add_argument("--geometry", default="network")
    a = p.parse_args()
    model, record = load_run(a.run)
    for w in a.weights:
        model.config.refiner_weight = w
        res = evaluate(None, a.data, predictor=Predictor.from_backend(record, torch_backend(model)), geometry=a.geometry)
        per = res.get("products") or {Path(a.data).name: res}
        print(json.dumps({"refiner_weight": w, "geometry": a.geometry,
                          **{prod: {k: round(v[k], 4) for k in ("image_auroc", "pixel_auroc", "aupro")} for prod, v in per.items()}}),
              flush=True)


if __name__ == "__main__":
    main()
