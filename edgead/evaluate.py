"""`edgead eval`: metrics of a run or a bundle on a labelled data set, through the Predictor."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import metrics
from .data.images import open_dataset, read_mask
from .predictor import Predictor
from .preprocess import ImageReadError, mask_to_input, read_image
from .progress import progress_bar


def evaluate(source: str | Path, data: str | Path, runtime: str = "auto", precision: str = "auto",
             threads: int | None = None, save_maps: str | Path | None = None,
             predictor: Predictor | None = None) -> dict:
    """Image AUROC, pixel AUROC, AUPRO and F1-max on `data`'s test split.

    Pixel metrics are computed on the valid (non-padded) region at network resolution;
    anomalous images without a mask count for image metrics only."""
    predictor = predictor or Predictor(source, runtime=runtime, threads=threads, precision=precision)
    ds = open_dataset(data)
    if not ds.test:
        raise ValueError(f"{data}: no test images (expected test/<good|defect>/ or good/ + bad/)")
    labels, scores, maps, masks = [], [], [], []
    for s in progress_bar(ds.test, desc=f"eval ({predictor.runtime})"):
        img = read_image(s.path)
        region, score, g = predictor.analyse(img)
        labels.append(s.label)
        scores.append(score)
        if s.label == 0 or s.mask_path is not None:
            maps.append(region)
            masks.append(mask_to_input(read_mask(s, img.shape[:2]), g))
        if save_maps is not None:
            from .visualize import save_overlay

            rel = s.path.relative_to(ds.root).with_suffix(".png")
            save_overlay(Path(save_maps) / rel, img, predictor.result(region, score, g))
    has_defect_pixels = any(m.any() for m in masks)
    out = metrics.summarize(np.array(labels), np.array(scores), masks if has_defect_pixels else None,
                            maps if has_defect_pixels else None)
    out["runtime"], out["precision"] = predictor.runtime, predictor.precision
    return out


__all__ = ["evaluate", "ImageReadError"]
