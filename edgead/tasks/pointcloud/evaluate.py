"""`edgead eval` of a point-cloud model: cloud AUROC (each scan's score), point AUROC (every valid
point of the test scans, pooled), both per defect kind too, and what the shipped thresholds do
(false alarms and misses). Data written by `edgead synth3d` is labelled synthetic in the result."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgead.core import metrics
from edgead.core.errors import DataError
from edgead.core.progress import progress_bar
from edgead.tasks.pointcloud.data import GOOD, MARKER, open_clouds, read_point_mask
from edgead.tasks.pointcloud.io import read_cloud


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return float(metrics.auroc(labels, scores)) if 0 < labels.sum() < len(labels) else None


def evaluate_pointcloud(source, data: str | Path, predictor=None, **_) -> dict:
    from edgead.tasks.pointcloud.predictor import PointCloudPredictor

    predictor = predictor or PointCloudPredictor(source)
    ds = open_clouds(data)
    if not ds.test:
        raise DataError(f"{data}: no test scans (expected test/<good|defect>/)")
    rows = []
    for s in progress_bar(ds.test, desc=f"eval ({predictor.runtime})"):
        cloud = read_cloud(s.path)
        points, raw, valid = predictor.analyse(cloud)
        rows.append((s, raw, points, read_point_mask(s, len(valid))[valid]))
    return summarize(rows, predictor, Path(data))


def summarize(rows: list, predictor, root: Path) -> dict:
    labels = np.array([s.label for s, *_ in rows])
    raw = np.array([r for _, r, *_ in rows])
    th = predictor.cloud_thresholds.threshold if predictor.cloud_thresholds else None
    out: dict = {"n_clouds": len(rows), "cloud_auroc": auroc(labels, raw), "point_auroc": point_auroc(rows)}
    if th is not None:
        out.update(metrics.decisions(labels, raw >= th))
    kinds = sorted({s.kind for s, *_ in rows} - {GOOD})
    if len(kinds) > 1:
        good = [r for r in rows if r[0].kind == GOOD]
        out["kinds"] = {k: {"cloud_auroc": auroc(np.array([s.label for s, *_ in sub]), np.array([r for _, r, *_ in sub])),
                            "point_auroc": point_auroc(sub)}
                        for k in kinds for sub in [good + [r for r in rows if r[0].kind == k]]}
    marker = root / MARKER
    if marker.is_file():
        out["anomalies"] = "synthetic: " + json.loads(marker.read_text())["description"]
    out["runtime"], out["precision"] = predictor.runtime, predictor.precision
    return out


def point_auroc(rows: list) -> float | None:
    """Pooled over the points of normal scans and of defective scans with a mask (a defective scan
    without one counts for the cloud figures only)."""
    rows = [r for r in rows if r[0].label == 0 or r[0].mask_path is not None]
    if not any(m.any() for *_, m in rows):
        return None
    return auroc(np.concatenate([m for *_, m in rows]).astype(int), np.concatenate([p for _, _, p, _ in rows]))
