"""`edgead eval`: metrics of a run or a bundle on a labelled data set, through the Predictor."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgead.core import metrics
from edgead.core.errors import DataError
from edgead.core.progress import progress_bar
from edgead.core.records import train_of
from edgead.tasks.image.data import open_dataset, read_mask
from edgead.tasks.image.predictor import Predictor
from edgead.tasks.image.preprocess import ImageReadError, mask_to_input, read_image
from edgead.tasks.image.split import is_training_data, recorded_split


def evaluate(source: str | Path, data: str | Path, runtime: str = "auto", precision: str = "auto",
             threads: int | None = None, save_maps: str | Path | None = None,
             predictor: Predictor | None = None) -> dict:
    """Image AUROC, pixel AUROC, AUPRO and F1-max on `data`'s test split.

    Pixel metrics are computed on the valid (non-padded) region at network resolution;
    anomalous images without a mask count for image metrics only."""
    predictor = predictor or Predictor(source, runtime=runtime, threads=threads, precision=precision)
    test, root, evaluated_on = test_samples(predictor.config, data)
    if not test:
        raise DataError(f"{data}: no test images (expected test/<good|defect>/ or good/ + bad/)")
    labels, scores, maps, masks = [], [], [], []
    for s in progress_bar(test, desc=f"eval ({predictor.runtime})"):
        img = read_image(s.path)
        region, score, g = predictor.analyse(img)
        labels.append(s.label)
        scores.append(score)
        if s.label == 0 or s.mask_path is not None:
            maps.append(region)
            masks.append(mask_to_input(read_mask(s, img.shape[:2]), g))
        if save_maps is not None:
            from edgead.tasks.image.visualize import save_overlay

            rel = s.path.relative_to(root).with_suffix(".png")
            save_overlay(Path(save_maps) / rel, img, predictor.result(region, score, g))
    has_defect_pixels = any(m.any() for m in masks)
    out = metrics.summarize(np.array(labels), np.array(scores), masks if has_defect_pixels else None,
                            maps if has_defect_pixels else None)
    out["runtime"], out["precision"] = predictor.runtime, predictor.precision
    out["evaluated_on"] = evaluated_on
    return out


def test_samples(run, data: str | Path) -> tuple[list, Path, str]:
    """The images to evaluate on: the run's recorded test split when `data` is the data it was
    trained on (so that no training image is ever scored as a test image), else `data`'s own."""
    if is_training_data(run, data):
        seed = int(train_of(run).get("seed", 0))
        try:
            sp = recorded_split(run, "evaluation on the training data", root=Path(data))
        except DataError as e:  # the folder changed: re-split with the run's seed, and say so
            return open_dataset(data, seed=seed).test, Path(data), f"the test split of seed {seed} ({e})"
        if sp.recorded:
            return sp.test, sp.root, "the test split recorded at training"
        return open_dataset(data, seed=seed).test, sp.root, f"the test split of seed {seed}, as at training"
    ds = open_dataset(data)
    return ds.test, ds.root, "all of the data's test split"


__all__ = ["evaluate", "ImageReadError"]
