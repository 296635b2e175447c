"""`edgead eval`: metrics of a run or a bundle on a labelled data set, through the Predictor."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgead.core.opencv import cv2
import numpy as np

from edgead.core import metrics
from edgead.core.errors import DataError, UsageError
from edgead.core.progress import progress_bar
from edgead.core.records import train_of
from edgead.core.thresholds import ThresholdSet
from edgead.tasks.image.data import Sample, open_dataset, read_mask
from edgead.tasks.image.predictor import Predictor
from edgead.tasks.image.preprocess import ImageReadError, mask_to_input, read_image
from edgead.tasks.image.split import is_training_data, recorded_split


def evaluate(source: str | Path, data: str | Path, runtime: str = "auto", precision: str = "auto",
             threads: int | None = None, save_maps: str | Path | None = None,
             predictor: Predictor | None = None, geometry: str = "network", product: str | None = None,
             report: str | Path | None = None) -> dict:
    """Image AUROC, pixel AUROC, AUPRO and F1-max on `data`'s test split.

    Pixel metrics are computed on the valid (non-padded) region at network resolution
    (`geometry="network"`), or on the original image geometry (`"original"`: aspect kept, long
    side capped at ORIGINAL_LONG_SIDE pixels, maps resized with area interpolation and masks
    with nearest), a protocol any tool's maps can be compared on. Anomalous images without a
    mask count for image metrics only. `product` names the product of a one-product folder for a
    unified model (a product folder it was trained on is recognised without it). `report` names
    a folder for an HTML report with plots (edgead.tasks.image.report; needs matplotlib), built
    from the same scores; the result then says where it is (`report`)."""
    if geometry not in GEOMETRIES:
        raise UsageError(f"geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
    if report is not None:  # refused before any scoring: a folder that is not a report, or no matplotlib
        from edgead.tasks.image.report import check_report_folder

        check_report_folder(report)
    predictor = predictor or Predictor(source, runtime=runtime, threads=threads, precision=precision)
    if product is not None:
        predictor.check_product(product)  # an unknown product fails before any work
    test, root, evaluated_on = test_samples(predictor.config, data)
    if not test:
        raise DataError(f"{data}: no test images (expected test/<good|defect>/ or good/ + bad/)")
    products = list(dict.fromkeys(s.product for s in test))
    if product is not None and products != [""]:
        raise UsageError(f"{data} is a product set: each image's product is its folder's; leave out --product")
    if products != [""] and not predictor.products:
        raise UsageError(f"{data} holds several products ({', '.join(products)}) and this model was trained on one; "
                         "pass that product's folder")
    def named(s) -> str | None:  # the product whose thresholds judge sample s
        return s.product if s.product in predictor.products else product

    scored: list[ScoredImage] = []
    for s in progress_bar(test, desc=f"eval ({predictor.runtime})"):
        img = read_image(s.path)
        region, score, g = predictor.analyse(img, s.product or product)
        mask = None
        if s.label == 0 or s.mask_path is not None:
            mask = read_mask(s, img.shape[:2])
            if geometry == "original":
                region, mask = on_original_geometry(region, mask)
            else:
                mask = mask_to_input(mask, g)
        scored.append(ScoredImage(s, named(s) or s.product, score, region, mask, *predictor.thresholds(named(s))))
        if save_maps is not None:
            from edgead.tasks.image.visualize import save_overlay

            rel = s.path.relative_to(root).with_suffix(".png")
            save_overlay(Path(save_maps) / rel, img, predictor.result(region, score, g, product=named(s)))
    out = figures(scored)
    out["runtime"], out["precision"] = predictor.runtime, predictor.precision
    out["evaluated_on"] = evaluated_on
    out["pixel_geometry"] = geometry
    if report is not None:
        from edgead.tasks.image.report import ReportHeader, write_report

        out["report"] = str(write_report(report, scored, out, ReportHeader.of(predictor, data, out)))
    return out


@dataclass
class ScoredImage:
    """One test image as eval scored it: what the metrics and the report are computed from."""

    sample: Sample
    product: str  # whose thresholds judge it ("" for a one-product model)
    raw_score: float
    region: np.ndarray  # raw anomaly map of the valid region, on the pixel metrics' geometry
    mask: np.ndarray | None  # ground truth on the same geometry; None: a defect without a mask
    image_thresholds: ThresholdSet | None  # those that judge it (its product's); None: the model has none
    pixel_thresholds: ThresholdSet | None

    @property
    def flagged(self) -> bool | None:
        """The shipped decision (raw score at or above the active image threshold); None without thresholds."""
        return None if self.image_thresholds is None else self.raw_score >= self.image_thresholds.threshold

    @property
    def score(self) -> float | None:
        """The normalised score (0.5 = its threshold), as the Predictor reports it."""
        return None if self.image_thresholds is None else float(self.image_thresholds.normalize(self.raw_score))


def figures(scored: list[ScoredImage]) -> dict:
    """The metrics and the decisions at the threshold; for a product set, each product's
    (`products`) and their mean, with the decisions counted over every product."""
    products = products_of(scored)
    if products == [""]:
        return {**summarize(scored), **at_threshold(scored)}
    per = {p: {**summarize(of_product(scored, p)), **at_threshold(of_product(scored, p))} for p in products}
    out = {"n_images": sum(m["n_images"] for m in per.values())}
    for k in MEAN_OVER_PRODUCTS:  # over the products where the figure is defined
        values = [m[k] for m in per.values() if m[k] is not None]
        out[k] = float(np.mean(values)) if values else None
    out.update(at_threshold(scored))  # the counts over every product, each at its own threshold
    out["products"] = per
    return out


def products_of(scored: list[ScoredImage]) -> list[str]:
    """The product folders of the scored images, in order ("" alone for one product)."""
    return list(dict.fromkeys(r.sample.product for r in scored))


def of_product(scored: list[ScoredImage], product: str) -> list[ScoredImage]:
    return [r for r in scored if r.sample.product == product]


def summarize(scored: list[ScoredImage]) -> dict:
    """metrics.summarize over scored images; pixel metrics only where some mask has defect pixels."""
    labels = np.array([r.sample.label for r in scored])
    scores = np.array([r.raw_score for r in scored])
    maps, masks = pixel_pairs(scored)
    has_defect_pixels = any(k.any() for k in masks)
    return metrics.summarize(labels, scores, masks if has_defect_pixels else None, maps if has_defect_pixels else None)


def pixel_pairs(scored: list[ScoredImage]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(maps, masks) of the images that count for pixel metrics (those with a ground truth)."""
    with_mask = [r for r in scored if r.mask is not None]
    return [r.region for r in with_mask], [r.mask for r in with_mask]


def at_threshold(scored: list[ScoredImage]) -> dict:
    """metrics.decisions at the shipped (active) image threshold; nothing without thresholds."""
    if any(r.flagged is None for r in scored):
        return {}
    return metrics.decisions([r.sample.label for r in scored], [r.flagged for r in scored])


GEOMETRIES = ("network", "original")
MEAN_OVER_PRODUCTS = ("image_auroc", "pixel_auroc", "aupro", "f1_max")  # a product set's headline figures
ORIGINAL_LONG_SIDE = 256


def on_original_geometry(region: np.ndarray, mask: np.ndarray, long_side: int = ORIGINAL_LONG_SIDE):
    """(map, mask) on the original image's geometry, its long side capped at `long_side`:
    the map (valid region, any resolution) resized with area interpolation, the mask with nearest."""
    h, w = mask.shape
    scale = min(1.0, long_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    m = cv2.resize(np.asarray(region, np.float32), size, interpolation=cv2.INTER_AREA)
    k = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return m, k


def trained_product(run, data: str | Path) -> str | None:
    """The product `data` is, when it is one product folder of the product set `run` was trained on."""
    products = train_of(run).get("data", {}).get("products") or []
    data = Path(data)
    return data.name if data.name in products and is_training_data(run, data.parent) else None


def test_samples(run, data: str | Path) -> tuple[list, Path, str]:
    """The images to evaluate on: the run's recorded test split when `data` is the data it was
    trained on (so that no training image is ever scored as a test image), else `data`'s own."""
    product = trained_product(run, data)
    if product is not None:  # one product folder of a product set the run was trained on
        sp = recorded_split(run, "evaluation on the training data", root=Path(data).parent)
        return ([s for s in sp.test if s.product == product], Path(data),
                f"product {product} of the test split recorded at training")
    if is_training_data(run, data):
        seed = int(train_of(run).get("seed", 0))
        try:
            sp = recorded_split(run, "evaluation on the training data", root=Path(data))
        except DataError as e:  # the folder changed: re-split with the run's seed, and say so
            return open_dataset(data, seed=seed).test, Path(data), f"the test split of seed {seed} ({e})"
        # runs from before the split was recorded: recorded_split re-derived it with the run's seed
        return sp.test, sp.root, ("the test split recorded at training" if sp.recorded
                                  else f"the test split of seed {seed}, as at training")
    ds = open_dataset(data)
    return ds.test, ds.root, "all of the data's test split"


__all__ = ["evaluate", "ImageReadError"]
