"""`edgead train --model fpfhcore|gridcore`: a memory bank of normal descriptors from
`train/good` scans, thresholds from held-out normal scans, saved as a run (task "pointcloud").
Without --model: gridcore when the scans are organised (everything inside the graph), else
fpfhcore."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from edgead import __version__
from edgead.core.atomic import check_replaceable
from edgead.core.errors import DataError, UsageError
from edgead.core.fingerprint import fingerprint
from edgead.core.progress import progress_bar
from edgead.core.run import RUN_FILE
from edgead.core.thresholds import ThresholdSet
from edgead.tasks.pointcloud.data import CloudDataset, CloudSample, open_clouds
from edgead.tasks.pointcloud.io import read_cloud
from edgead.tasks.pointcloud.predictor import PointCloudPredictor
from edgead.tasks.pointcloud.grid import GridSpec
from edgead.tasks.pointcloud.preprocess import CloudSpec

DEFAULT_MODEL = "fpfhcore"  # unorganised scans
GRID_MODEL = "gridcore"  # organised scans
PER_CLOUD = 8192  # descriptors drawn from each training scan for the bank


def split_scans(samples: list[CloudSample], fraction: float, seed: int) -> tuple[list[CloudSample], list[CloudSample]]:
    """Seeded (fit, held out for thresholds): as the image task, at least 3 held out where a third
    of the scans allows it, and always one of each."""
    n_hold = max(1, min(max(3, round(len(samples) * fraction)), len(samples) // 3))
    order = np.random.default_rng(seed).permutation(len(samples))
    hold = set(order[:n_hold].tolist())
    return [s for i, s in enumerate(samples) if i not in hold], [s for i, s in enumerate(samples) if i in hold]


def default_model(ds: CloudDataset) -> str:
    """gridcore when the first training scan is organised, else fpfhcore."""
    return GRID_MODEL if ds.train and read_cloud(ds.train[0].path).grid is not None else DEFAULT_MODEL


def fit_descriptors(net, spec, cloud):
    """(M, dim) descriptors of a normal scan's described points, as the graph sees them."""
    if spec.form == "points":
        return spec.prepare(cloud).descriptors
    import torch

    with torch.no_grad():
        desc, ok, _ = net.describe(torch.from_numpy(spec.prepare(cloud).x))
    return desc[0].flatten(1)[:, ok[0, 0].flatten() > 0].T.numpy()


def train_pointcloud(data: str | Path, out: str | Path, model: str | None = None, seed: int = 0,
                     holdout: float = 0.15, scales: tuple[int, ...] | None = None, smooth: int | None = None,
                     max_points: int | None = None, threads: int | None = None, overrides: dict | None = None) -> dict:
    """Fit `model` on `data/train/good` and write the run folder `out`. `scales`, `smooth` and
    `max_points` override the defaults (CloudSpec in preprocess.py; for gridcore, `scales` and
    `smooth` are in pixels and go to its config)."""
    import torch

    from edgead.models import configured, get, save_run, torch_backend
    from edgead.tasks import check_model

    if not isinstance(data, (str, Path)):
        raise UsageError(f"point-cloud models train on one data set; got {data!r}")
    if model is not None:
        check_model(model, "pointcloud", DEFAULT_MODEL)
    if not 0 < holdout < 1:
        raise UsageError(f"--holdout must be a fraction between 0 and 1, got {holdout}")
    check_replaceable(out, RUN_FILE)
    t0 = time.time()
    ds = open_clouds(data)
    model = model or default_model(ds)
    mod = get(model)
    cfg = configured(model, overrides)
    if threads:
        torch.set_num_threads(threads)
    if len(ds.train) < 2:
        raise DataError(f"{ds.root / 'train' / 'good'}: {len(ds.train)} normal scans; at least 2 are needed "
                        "(one to fit, one held out for the threshold)")
    fit_set, hold_set = split_scans(ds.train, holdout, seed)
    if mod.FORM == GridSpec.form:
        spec = GridSpec.for_scan(read_cloud(fit_set[0].path), max_points or CloudSpec.max_points)
        cfg.scales, cfg.smooth = tuple(scales or cfg.scales), smooth or cfg.smooth
    else:
        spec = CloudSpec(**{k: v for k, v in (("scales", scales), ("smooth", smooth), ("max_points", max_points)) if v is not None})
    net = mod.Model(cfg)
    rng = np.random.default_rng(seed)
    parts = []
    for s in progress_bar(fit_set, desc="descriptors"):
        d = fit_descriptors(net, spec, read_cloud(s.path))
        parts.append(d[rng.permutation(len(d))[:PER_CLOUD]])
    log = mod.fit(net, np.concatenate(parts), seed=seed)
    net.eval()

    config = {
        "edgead_version": __version__,
        "task": "pointcloud",
        "model": {"name": model, "config": dataclasses.asdict(cfg)},
        "input": spec.to_json(),
        "input_name": net.input_name,
        "post": spec.post(),
        "outputs": {"point_score": "point_score"},
    }
    predictor = PointCloudPredictor.from_backend(config, torch_backend(net))
    clouds, points = [], []
    for s in progress_bar(hold_set, desc="thresholds"):
        p, raw, _ = predictor.analyse(read_cloud(s.path))
        clouds.append(raw)
        points.append(p)
    cloud_th, point_th = ThresholdSet.from_scores(np.array(clouds)), ThresholdSet.from_maps([p[None] for p in points])
    config["thresholds"] = {"cloud": cloud_th.to_json(), "point": point_th.to_json()}
    rel = lambda items: [s.path.relative_to(ds.root).as_posix() for s in items]  # noqa: E731
    config["train"] = {
        "data": {"source": str(ds.root.resolve()), "layout": "mvtec", "n_train": len(ds.train), "n_test": len(ds.test)},
        "split": {"fit": rel(fit_set), "holdout": rel(hold_set),
                  "fingerprint": fingerprint(ds.root, rel(fit_set) + rel(hold_set))},
        "n_fit": len(fit_set), "n_holdout": len(hold_set), "seed": seed,
        "seconds": round(time.time() - t0, 1), "log": log,
    }
    config["complexity"] = mod.complexity(net, spec.chunk if spec.form == "points" else spec.graph_shape)
    save_run(out, net, config)
    return config
