"""INT8 data of point-cloud runs: calibration inputs (chunks of descriptors, or organised scans
for GridCore) from the run's training scans
(or `--calib`: a data set's train/good, or a folder of normal scans); validation on the test scans
of the run's data (or of `--val`) when they hold defects (cloud and point AUROC), else on normal
scans (score shift only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgead.core.errors import DataError
from edgead.tasks.pointcloud.data import GOOD, CloudSample, open_clouds, read_point_mask, recorded_scans, scan_files, scans
from edgead.tasks.pointcloud.io import SUFFIXES, read_cloud
from edgead.tasks.pointcloud.preprocess import spec_from_json

DEFAULT_CALIB = 32  # graph inputs: chunks of descriptors, or scans


def normal_scans(folder: Path) -> list[Path]:
    """A data set's train/good scans, else every scan in `folder` outside ground_truth/."""
    if (folder / "train" / GOOD).is_dir():
        return scans(folder / "train" / GOOD)
    return [f for f, _ in scan_files([str(folder)])]


def int8_data(config: dict, calib: str | Path | None = None, calib_size: int | None = None, val: str | Path | None = None):
    from quant.int8 import Int8Data, Scores

    from edgead.tasks.pointcloud.evaluate import auroc, point_auroc

    spec = spec_from_json(config["input"])
    root, recorded = recorded_scans(config, "INT8 calibration and validation") if not (calib and val) else (None, {})
    files = normal_scans(Path(calib)) if calib else recorded["fit"]
    if not files:
        raise DataError(f"--calib {calib}: no scans ({', '.join(SUFFIXES)}) in it")
    n = calib_size or DEFAULT_CALIB
    xs = []
    for f in files:  # only as many scans as the inputs need
        xs.append(spec.graph_inputs(spec.prepare(read_cloud(f))))
        if sum(map(len, xs)) >= n:
            break
    xs = np.concatenate(xs)
    xs = xs[np.unique(np.linspace(0, len(xs) - 1, min(n, len(xs))).round().astype(int))]

    if val is not None:
        ds = open_clouds(val) if (Path(val) / "test").is_dir() or (Path(val) / "train").is_dir() else None
        samples = (ds.test or ds.train) if ds else [CloudSample(p, 0, GOOD) for p in normal_scans(Path(val))]
        what = Path(val).name  # records name no user folders
    else:
        test = open_clouds(root).test
        labelled = any(s.label for s in test)
        samples = test if labelled else [CloudSample(p, 0, GOOD) for p in recorded["holdout"]]
        what = "the run's test scans" if labelled else "the run's held-out normal scans"
    if not samples:
        raise DataError(f"{val or root}: no scans to validate INT8 on")
    prepared = []
    for s in samples:  # inputs once; each candidate only runs the graph
        d = spec.prepare(read_cloud(s.path))
        prepared.append((s, d, read_point_mask(s, len(d.valid))[d.valid]))

    def score(pred) -> Scores:
        rows = []
        for s, d, mask in prepared:
            points, raw = pred.scores(d)
            rows.append((s, raw, points, mask))  # evaluate's row layout
        raw = np.array([r for _, r, *_ in rows])
        labels = np.array([s.label for s, *_ in rows])
        return Scores(raw, pred.cloud_thresholds.normalize(raw), raw >= pred.cloud_thresholds.threshold, labels,
                      {"cloud_auroc": auroc(labels, raw), "point_auroc": point_auroc(rows)})

    def compare(ref: Scores, got: Scores) -> dict:
        drops = [ref.metrics[k] - got.metrics[k] for k in ("cloud_auroc", "point_auroc") if ref.metrics[k] is not None]
        shift = max(float(np.mean(np.abs(got.normalised[ref.labels == c] - ref.normalised[ref.labels == c])))
                    for c in (0, 1) if (ref.labels == c).any())
        return {"drop": float(max(drops)) if drops else None, "score_shift": shift}

    return Int8Data(xs, {"source": Path(calib).name if calib else "training scans", "n_inputs": int(len(xs))},
                    what, score, compare, score_stats=True)
