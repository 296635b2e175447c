"""Validation data for the INT8 accuracy gate, and how FP32 and INT8 scores are compared.

Two kinds of validation set:

* ``labelled``: images with anomalies (and masks where available): the AUROC drop is measured.
* ``normal``: only normal images (no anomalies anywhere).

On both, the score shift is measured: the mean absolute change of the normalised image score
(0.5 = the image threshold, 0 = the 1 % quantile of normal scores), over the normal and over
the anomalous images. Thresholds are set in FP32: INT8 noise that lifts normal scores raises
false alarms, and activation ranges calibrated on normal images clip anomaly scores down
towards the threshold, both silently, with AUROC intact.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgead.core.errors import DataError
from edgead.tasks.image.calibration import images_in
from edgead.tasks.image.data import Sample, open_dataset, read_mask
from edgead.tasks.image.evaluate import ScoredImage, of_product, summarize
from edgead.tasks.image.preprocess import mask_to_input, read_image
from edgead.tasks.image.split import recorded_split
from quant.int8 import Scores

LABELLED, NORMAL = "labelled", "normal"


@dataclass
class ValidationSet:
    kind: str  # LABELLED or NORMAL
    source: str
    samples: list[Sample]

    def to_json(self) -> dict:
        return {"kind": self.kind, "source": self.source, "n_images": len(self.samples),
                "n_anomalous": sum(s.label for s in self.samples)}


def validation_set(run_cfg: dict, val: str | Path | None = None) -> ValidationSet:
    """`val` if given; else the run's recorded test split when it has anomalies; else the normal
    images held out from training (they were used for thresholds, never for fitting)."""
    if val is not None:
        return _from_folder(Path(val))
    sp = recorded_split(run_cfg, "INT8 validation (--val DIR)")
    if any(s.label for s in sp.test):
        return ValidationSet(LABELLED, f"{sp.root} (test split)", sp.test)
    if not sp.holdout:
        raise DataError(f"{sp.root}: no anomalies and no held-out normal images to validate INT8 on; pass --val DIR")
    return ValidationSet(NORMAL, f"{sp.root} ({len(sp.holdout)} normal images held out from training)", sp.holdout)


def _from_folder(folder: Path) -> ValidationSet:
    if not folder.is_dir():
        raise DataError(f"validation folder {folder} does not exist")
    try:
        ds = open_dataset(folder)
    except DataError:
        files = images_in(folder)
        if not files:
            raise DataError(f"validation folder {folder} holds no images") from None
        return ValidationSet(NORMAL, f"{folder} (normal images)", [Sample(p, 0) for p in files])
    if any(s.label for s in ds.test):
        return ValidationSet(LABELLED, f"{folder} (test split)", ds.test)
    normal = ds.test or ds.train
    return ValidationSet(NORMAL, f"{folder} ({'test' if ds.test else 'training'} split, normal images)", normal)


def score(predictor, vset: ValidationSet) -> Scores:
    """Run `predictor` (an edgead Predictor) over the validation set. On a product set each
    image is normalised with its product's thresholds, and the metrics are also given per
    product (`<product>.image_auroc`, ...), so that the gate sees the product INT8 hurts most."""
    scored: list[ScoredImage] = []
    normalised, anomalous = [], []
    for s in vset.samples:
        img = read_image(s.path)
        product = s.product if s.product in predictor.products else None
        region, value, g = predictor.analyse(img, product)
        th, pixel_th = predictor.thresholds(product)
        normalised.append(float(th.normalize(value)) if th is not None else value)
        anomalous.append(th is not None and value >= th.threshold)
        labelled = vset.kind == LABELLED and (s.label == 0 or s.mask_path is not None)
        mask = mask_to_input(read_mask(s, img.shape[:2]), g) if labelled else None
        scored.append(ScoredImage(s, product or s.product, value, region, mask, th, pixel_th))
    found = {}
    if vset.kind == LABELLED:
        groups = {"": scored}
        products = sorted({s.product for s in vset.samples})
        if len(products) > 1:
            groups.update({f"{p}.": of_product(scored, p) for p in products})
        for prefix, records in groups.items():
            figures = summarize(records)
            found.update({prefix + k: figures[k] for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max")})
    return Scores(np.array([r.raw_score for r in scored], np.float64), np.asarray(normalised, np.float64),
                  np.asarray(anomalous, bool), np.array([s.label for s in vset.samples]), found)


def compare(kind: str, ref: Scores, cand: Scores) -> dict:
    """How much worse `cand` (INT8) is than `ref` (FP32), larger is worse.

    ``drop``: the largest of the image and pixel AUROC losses, pooled and per product on a
    product set (labelled sets; None otherwise).
    ``score_shift``: mean |change| of the normalised image score, over the normal and over the
    anomalous images, whichever is larger (normal scores that creep up raise false alarms;
    anomaly scores clipped by ranges calibrated on normal images lose defects).
    ``decision_flips``: share of images whose decision at the active threshold changed."""
    delta = np.abs(cand.normalised - ref.normalised)
    shifts = {f"{name}_shift": float(delta[ref.labels == label].mean())
              for name, label in (("normal", 0), ("anomalous", 1)) if (ref.labels == label).any()}
    out = {"drop": None, "score_shift": max(shifts.values()), **shifts,
           "decision_flips": float(np.mean(cand.anomalous != ref.anomalous))}
    if kind == LABELLED:  # every image and pixel AUROC, pooled and (on a product set) per product
        for k in (k for k in ref.metrics if k.endswith(("image_auroc", "pixel_auroc"))):
            if ref.metrics.get(k) is not None and cand.metrics.get(k) is not None:
                out[f"{k}_drop"] = float(ref.metrics[k] - cand.metrics[k])
        drops = [v for k, v in out.items() if k.endswith("_auroc_drop")]
        if not drops:
            raise DataError("the validation set gives no image or pixel AUROC (it needs normal and anomalous images)")
        out["drop"] = max(drops)
    return out
