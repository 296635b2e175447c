"""The image split a run was trained with, recorded in the run and read back by evaluation,
calibration and the INT8 gate, so that none of them re-derives it (and none can leak
training images into a test set by re-splitting with another seed).

Recorded as paths relative to the data root (fit / holdout / test) plus a content
fingerprint of those files: if the folder changed since training, readers say so."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from edgead.core.errors import DataError
from edgead.core.fingerprint import fingerprint
from edgead.core.records import is_data_path, split_of, train_of
from edgead.tasks.image.data import ImageDataset, Sample, open_dataset

KIND = "images"


@dataclass
class Split:
    root: Path
    fit: list[Sample]  # fitted the model
    holdout: list[Sample]  # normal images held out for thresholds (never fitted)
    test: list[Sample]
    recorded: bool  # False: a run from before splits were recorded, re-derived from its seed


def split_products(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """split_holdout within each product (a product set), so that every product keeps held-out
    normal images for its own thresholds."""
    fit: list[Sample] = []
    hold: list[Sample] = []
    for product in dict.fromkeys(s.product for s in samples):
        f, h = split_holdout([s for s in samples if s.product == product], fraction, seed)
        fit += f
        hold += h
    return fit, hold


def split_holdout(samples: list[Sample], fraction: float, seed: int, minimum: int = 3) -> tuple[list[Sample], list[Sample]]:
    """Seeded split of normal training images into (fit, held out for thresholds)."""
    n_hold = min(max(minimum, int(round(len(samples) * fraction))), len(samples) // 3)
    order = np.random.default_rng(seed).permutation(len(samples))
    hold = set(order[:n_hold].tolist())
    return [s for i, s in enumerate(samples) if i not in hold], [s for i, s in enumerate(samples) if i in hold]


def record(ds: ImageDataset, fit: list[Sample], holdout: list[Sample], seed: int) -> dict:
    """The `train.split` entry of an image run."""
    rel = {k: [s.path.relative_to(ds.root).as_posix() for s in v] for k, v in
           (("fit", fit), ("holdout", holdout), ("test", ds.test))}
    return {"kind": KIND, "layout": ds.layout, "seed": seed, **rel,
            "fingerprint": fingerprint(ds.root, [r for v in rel.values() for r in v])}


def data_root(run: Mapping) -> Path | None:
    """The training data folder of a run (None in a bundle, which keeps only a digest of it)."""
    data = train_of(run).get("data", {})
    root = data.get("root")
    return Path(root) if root and "root_sha256" not in data else None


def is_training_data(run: Mapping, folder: str | Path) -> bool:
    return is_data_path(train_of(run), "root", folder)


def recorded_split(run: Mapping, what: str = "this step", root: Path | None = None) -> Split:
    """The run's split as samples (from `root`, default the recorded folder: a bundle keeps only
    its digest); raises DataError if the data is gone or changed since training."""
    root = Path(root) if root is not None else data_root(run)
    if root is None or not root.is_dir():
        raise DataError(f"the run's data folder {str(root) if root else None!r} is not there any more, "
                        f"which {what} needs; restore it or pass the images explicitly (see --help)")
    info, split = train_of(run), split_of(run)
    ds = open_dataset(root, seed=int(info.get("seed", 0)), products=info.get("data", {}).get("products"))
    if split.get("kind") != KIND:  # runs written before the split was recorded
        n_hold = int(info.get("n_holdout", 0))
        fit, hold = (split_holdout(ds.train, n_hold / len(ds.train), int(info.get("seed", 0)))
                     if 0 < n_hold < len(ds.train) else (ds.train, []))
        return Split(root, fit, hold, ds.test, recorded=False)
    rels = [r for k in ("fit", "holdout", "test") for r in split[k]]
    if fingerprint(root, rels) != split.get("fingerprint"):
        raise DataError(f"{root} changed since training (its images differ from the ones the run recorded), "
                        f"so {what} cannot use the run's split; restore the data, retrain, or pass the images explicitly")
    by_rel = {s.path.relative_to(root).as_posix(): s for s in ds.train + ds.test}
    labelled = {r: by_rel.get(r) or Sample(root / r, 0) for r in rels}
    return Split(root, *[[labelled[r] for r in split[k]] for k in ("fit", "holdout", "test")], recorded=True)
