"""Issue 20: what PRADOT-lite's parts buy. For each data set: the default run (prototypes fitted
by optimal transport) scored with local prototypes only, global only and both (the same fitted
prototypes, no retraining: the mode only changes the graph's sum); the same with k-means
prototypes (hard nearest assignments, same cost, size, start and updates); and the transport's
shortcuts (fewer Sinkhorn iterations, fewer passes), each with its training time.

usage: python bench/pradot_ablation.py [--data DIR ...] [--work DIR] [--json OUT]
Runs already in WORK are reused (delete them to start over)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from run_int8_bench import DEFAULT_DATA

from edgead.models import load_run, torch_backend
from edgead.tasks.image.evaluate import evaluate
from edgead.tasks.image.predictor import Predictor
from edgead.tasks.image.train import train

HERE = Path(__file__).resolve().parent
VARIANTS = {"ot": {}, "kmeans": {"assign": "kmeans"}, "ot_iters10": {"iters": 10}, "ot_epochs3": {"epochs": 3},
            "per_cell8": {"per_cell": 8}, "per_cell16": {"per_cell": 16}, "global256": {"n_global": 256},
            "dim64": {"dim": 64}, "alpha0.1": {"alpha": 0.1}, "whiten": {"whiten": True},
            "whiten_per_cell16": {"whiten": True, "per_cell": 16}}
MODES = ("both", "local", "global")
METRICS = ("image_auroc", "pixel_auroc", "aupro")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="*", default=[str(d) for d in DEFAULT_DATA])
    p.add_argument("--work", default=str(HERE / "work" / "pradot"))
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--json", default=str(HERE / "results" / "pradot_ablation.json"))
    a = p.parse_args()
    rows = []
    for data in map(Path, a.data):
        for name in a.variants:
            run = Path(a.work) / f"{data.name}_{name}"
            t = time.time()
            if not (run / "run.json").is_file():
                train(data, run, model="pradot", overrides=VARIANTS[name])
            model, record = load_run(run)
            seconds = record["train"].get("seconds", round(time.time() - t, 1))
            for mode in MODES if name in ("ot", "kmeans") else ("both",):
                model.config.mode = mode
                res = evaluate(None, data, predictor=Predictor.from_backend(record, torch_backend(model)))
                row = {"data": data.name, "variant": name, "mode": mode, "train_s": seconds,
                       **{k: round(res[k], 4) for k in METRICS}}
                print(json.dumps(row), flush=True)
                rows.append(row)
    Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
