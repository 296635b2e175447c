"""Calibration inputs for INT8: real images through the predictor's own preprocessing.

By default the images are the ones the run was fitted on, as it recorded them (the normal
images held out for thresholds stay unseen for the accuracy gate). `--calib DIR` takes a data set folder (its training split) or any folder of images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgead.core.errors import DataError
from edgead.tasks.image.data import IMAGE_SUFFIXES, open_dataset
from edgead.tasks.image.preprocess import InputSpec, preprocess, read_image
from edgead.tasks.image.split import data_root, recorded_split

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
    """The normal images a run was fitted on, as the run recorded them (never the threshold hold-out)."""
    return [s.path for s in recorded_split(run_cfg, "INT8 calibration (--calib DIR)").fit]


def calibration_paths(run_cfg: dict, calib: str | Path | None = None) -> tuple[list[Path], str]:
    """Image paths for calibration and a description of their source."""
    if calib is None:
        return run_fit_images(run_cfg), f"{data_root(run_cfg)} (training images of the run)"
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
