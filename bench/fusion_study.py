"""Issue 17 lever: fuse HetNet-lite's and PaDiM-lite's maps, each normalised on the run's
held-out normal images (never on test images), and score the sum through edgead's pipeline.

usage: python bench/fusion_study.py [--data DIR ...] [--work DIR] [--json OUT]
Runs already in WORK (hetnet_<data>, padim_<data>) are reused."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgead.core import metrics
from edgead.core.run import read_run_config
from edgead.predictor import Predictor
from edgead.tasks.image.data import read_mask
from edgead.tasks.image.postprocess import pool_score
from edgead.tasks.image.preprocess import mask_to_input, read_image
from edgead.tasks.image.split import recorded_split
from edgead.train import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"


def regions(pred: Predictor, samples) -> list[np.ndarray]:
    return [pred.analyse(read_image(s.path))[0] for s in samples]


# PaDiM-lite as it was when this study was measured (before issue 17 changed its defaults); both
# models letterbox, so that their maps share one geometry
AS_MEASURED = {"padim": {"resize": "letterbox", "overrides": {"rank": 32, "directions_dtype": "float32"}}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="*", default=[str(SHARED / "hazelnut_toy"), str(SHARED / "magnetic_tile")])
    p.add_argument("--work", default=str(Path(__file__).resolve().parent / "work" / "models"))
    p.add_argument("--json", default=None)
    a = p.parse_args()
    rows = []
    for data in map(Path, a.data):
        runs = {}
        for model in ("hetnet", "padim"):
            run = Path(a.work) / f"{model}_{data.name}"
            if not (run / "run.json").is_file():
                train(data, run, model=model, **AS_MEASURED.get(model, {}))
            runs[model] = run
        split = recorded_split(read_run_config(runs["hetnet"]))
        test = split.test
        masks, labels = [], np.array([s.label for s in test])
        geoms = []
        per_model = {}
        for model, run in runs.items():
            pred = Predictor(run)
            held = regions(pred, recorded_split(read_run_config(run)).holdout)
            pixels = np.concatenate([r.ravel() for r in held])
            per_model[model] = {"mu": float(pixels.mean()), "sd": float(pixels.std()) or 1.0,
                                "test": [pred.analyse(read_image(s.path)) for s in test]}
        for i, s in enumerate(test):
            g = per_model["hetnet"]["test"][i][2]
            masks.append(mask_to_input(read_mask(s, (g.orig_h, g.orig_w)), g))
        post = Predictor(runs["hetnet"]).post
        variants = {"hetnet": {"hetnet": 1.0}, "padim": {"padim": 1.0}, "sum of z-maps": {"hetnet": 1.0, "padim": 1.0}}
        for name, weights in variants.items():
            maps = [sum(w * (per_model[m]["test"][i][0] - per_model[m]["mu"]) / per_model[m]["sd"] for m, w in weights.items())
                    for i in range(len(test))]
            scores = np.array([pool_score(r, post) for r in maps])
            keep = [i for i, s in enumerate(test) if s.label == 0 or s.mask_path is not None]
            out = metrics.summarize(labels, scores, [masks[i] for i in keep], [maps[i] for i in keep])
            row = {"data": data.name, "variant": name, **{k: out[k] for k in ("image_auroc", "pixel_auroc", "aupro")}}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
