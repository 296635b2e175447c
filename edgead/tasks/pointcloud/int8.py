"""INT8 data of point-cloud runs: calibration chunks of descriptors from the run's training
scans; validation on the data's test scans (cloud and point AUROC) or, without anomalies, the
held-out normal scans (score shift only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgead.core.records import train_of
from edgead.tasks.pointcloud.data import CloudSample, open_clouds, read_point_mask
from edgead.tasks.pointcloud.io import read_cloud
from edgead.tasks.pointcloud.preprocess import CloudSpec, chunks, described

DEFAULT_CALIB = 32  # chunks of descriptors


def int8_data(config: dict, calib: str | Path | None = None, calib_size: int | None = None, val: str | Path | None = None):
    from quant.int8 import Int8Data, Scores

    from edgead.tasks.pointcloud.evaluate import auroc

    spec = CloudSpec.from_json(config["input"])
    train = train_of(config)
    root = Path(train["data"]["source"])
    files = [p for p in (sorted(Path(calib).rglob("*.pcd")) if calib else [root / r for r in train["split"]["fit"]])]
    xs = np.concatenate([chunks(described(read_cloud(f), spec).descriptors, spec.chunk) for f in files])
    n = calib_size or DEFAULT_CALIB
    xs = xs[np.unique(np.linspace(0, len(xs) - 1, min(n, len(xs))).round().astype(int))]
    ds = open_clouds(val or root)
    samples = ds.test if any(s.label for s in ds.test) else [CloudSample(root / r, 0, "good") for r in train["split"]["holdout"]]
    clouds = [read_cloud(s.path) for s in samples]

    def score(pred) -> Scores:
        raws, points, masks = [], [], []
        for s, c in zip(samples, clouds):
            p, raw, valid = pred.analyse(c)
            raws.append(raw)
            points.append(p)
            masks.append(read_point_mask(s, len(valid))[valid])
        raw = np.array(raws)
        labels = np.array([s.label for s in samples])
        pixel = auroc(np.concatenate(masks).astype(int), np.concatenate(points)) if any(m.any() for m in masks) else None
        return Scores(raw, pred.cloud_thresholds.normalize(raw), raw >= pred.cloud_thresholds.threshold, labels,
                      {"cloud_auroc": auroc(labels, raw), "point_auroc": pixel})

    def compare(ref: Scores, got: Scores) -> dict:
        drops = [ref.metrics[k] - got.metrics[k] for k in ("cloud_auroc", "point_auroc") if ref.metrics[k] is not None]
        shift = max(float(np.mean(np.abs(got.normalised[ref.labels == c] - ref.normalised[ref.labels == c])))
                    for c in (0, 1) if (ref.labels == c).any())
        return {"drop": float(max(drops)) if drops else None, "score_shift": shift}

    return Int8Data(xs, {"source": "training scans" if not calib else str(calib), "n_chunks": int(len(xs))},
                    "test scans" if any(s.label for s in samples) else "held-out normal scans", score, compare,
                    score_stats=True)
