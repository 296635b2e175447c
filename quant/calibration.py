"""Calibration inputs for INT8: real images through the predictor's own preprocessing.

By default the images come from the run's training folder (`train/good` or `good/`), leaving
out the normal images held out for thresholds, so that they stay unseen for the accuracy
gate. `--calib DIR` takes a data set folder (its training split) or any folder of images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgead.data.images import IMAGE_SUFFIXES, DataError, open_dataset
from edgead.preprocess import InputSpec, preprocess, read_image

DEFAULT_SIZE = 200


@dataclass
class CalibrationSet:
    inputs: np.ndarray  # (N, 3, H, W) float32, preprocessed like the Predictor does
    source: str  # where the images came from, for the manifest

    def to_json(self) -> dict:
        return {"source": self.source, "n_images": int(len(self.inputs))}


def images_in(folder: Path) -> list[Path]:
    """Every image file under `folder`, recursively, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def run_fit_images(run_cfg: dict) -> list[Path]:
    """The normal images a run was fitted on (its training split minus the threshold hold-out)."""
    from edgead.train import split_holdout

    info = run_cfg.get("train", {})
    root = info.get("data", {}).get("root")
    if not root or not Path(root).is_dir():
        raise DataError(f"the run's training data folder {root!r} is not there any more; pass calibration "
                        "images with --calib DIR (a data set or any folder of normal images)")
    samples = open_dataset(root, seed=info.get("seed", 0)).train
    n_hold = int(info.get("n_holdout", 0))
    if 0 < n_hold < len(samples):
        samples = split_holdout(samples, n_hold / len(samples), info.get("seed", 0))[0]
    return [s.path for s in samples]


def calibration_paths(run_cfg: dict, calib: str | Path | None = None) -> tuple[list[Path], str]:
    """Image paths for calibration and a description of their source."""
    if calib is None:
        return run_fit_images(run_cfg), f"{run_cfg['train']['data']['root']} (training images of the run)"
    folder = Path(calib)
    if not folder.is_dir():
        raise DataError(f"calibration folder {folder} does not exist; pass a folder of normal images with --calib")
    try:
        paths = [s.path for s in open_dataset(folder).train]
        where = f"{folder} (training split)"
    except DataError:
        paths, where = images_in(folder), str(folder)
    if not paths:
        raise DataError(f"calibration folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths, where


def pick(paths: list[Path], size: int, seed: int = 0) -> list[Path]:
    """A seeded subset of `size` paths (all of them if there are fewer), in sorted order."""
    if size < 1:
        raise ValueError(f"calibration size must be at least 1, got {size}")
    if len(paths) <= size:
        return list(paths)
    idx = np.sort(np.random.default_rng(seed).choice(len(paths), size, replace=False))
    return [paths[i] for i in idx]


def calibration_set(run_cfg: dict, calib: str | Path | None = None, size: int = DEFAULT_SIZE,
                    seed: int = 0) -> CalibrationSet:
    """Preprocessed calibration inputs for a run (see the module docstring for the source)."""
    spec = InputSpec.from_json(run_cfg["input"])
    paths, where = calibration_paths(run_cfg, calib)
    chosen = pick(paths, size, seed)
    return CalibrationSet(np.stack([preprocess(read_image(p), spec)[0] for p in chosen]), where)
