"""`edgead train`: fit a model on normal images, compute thresholds on held-out normals, save the run."""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from edgead import __version__
from edgead.core.atomic import check_replaceable
from edgead.core.errors import DataError, UsageError
from edgead.core.progress import progress_bar
from edgead.core.run import RUN_FILE
from edgead.core.thresholds import ThresholdSet
from edgead.models import DEFAULT_MODEL
from edgead.tasks.image import split
from edgead.tasks.image.data import ImageDataset, Sample, open_data, open_dataset
from edgead.tasks.image.postprocess import PostSpec
from edgead.tasks.image.predictor import PRODUCT_CHANNELS, Predictor
from edgead.tasks.image.preprocess import InputSpec, preprocess, read_image
from edgead.tasks.image.split import split_products


def load_inputs(samples: list[Sample], spec: InputSpec, desc: str = "reading images") -> np.ndarray:
    return np.stack([preprocess(read_image(s.path), spec)[0] for s in progress_bar(samples, desc=desc)])


def score_samples(predictor: Predictor, samples: list[Sample]) -> tuple[np.ndarray, list[np.ndarray]]:
    scores, maps = [], []
    for s in progress_bar(samples, desc="scoring"):
        region, score, _ = predictor.analyse(read_image(s.path), s.product or None)
        scores.append(score)
        maps.append(region)
    return np.array(scores), maps


def train(data: str | Path | list[str | Path], out: str | Path, model: str = DEFAULT_MODEL, epochs: int | None = None,
          image_size: int = 256, seed: int = 0, holdout: float = 0.15, resize: str | None = None,
          val: str | Path | None = None, threads: int | None = None, overrides: dict | None = None) -> dict | None:
    """Train `model` on `data/train/good` (or `data/good`) and write the run folder `out`.

    Under torchrun (several processes) the ranks share the work (edgead.models.ddp); rank 0
    computes the thresholds and writes the run and returns its record, the others None.

    `data` is one product's folder, a folder of product folders, or a list of product folders:
    several products need a unified model (its module's UNIFIED), which is fitted on all of them
    and gets thresholds per product plus product-agnostic ones.
    `overrides` sets fields of the model's Config (e.g. {"attenuation": False} for FADeR-lite);
    `resize` None takes the model's own (its module's RESIZE, else letterbox)."""
    import torch

    from edgead.models import configured, get
    from edgead.tasks import check_model

    check_model(model, "image", DEFAULT_MODEL)
    if image_size < 32:
        raise UsageError(f"--image-size must be at least 32 pixels, got {image_size}")
    if not 0 < holdout < 1:
        raise UsageError(f"--holdout must be a fraction between 0 and 1, got {holdout}")
    check_replaceable(out, RUN_FILE)
    mod = get(model)
    cfg = configured(model, overrides)
    if epochs is not None and not hasattr(cfg, "steps"):
        raise UsageError(f"{model} has no training loop, so --epochs does not apply; leave it out")
    if threads:
        torch.set_num_threads(threads)
    return _train(data, out, model, mod, cfg, epochs, image_size, seed, holdout, resize, val)


def _train(data, out, model: str, mod, cfg, epochs, image_size, seed, holdout, resize, val) -> dict | None:
    import torch

    from edgead.models import MODELS, ddp, get, save_run, torch_backend

    t0 = time.time()
    ds: ImageDataset = open_data(data, seed=seed)
    unified = getattr(mod, "UNIFIED", False)
    if ds.products and not unified:
        models = ", ".join(n for n in MODELS if getattr(get(n), "UNIFIED", False))
        raise UsageError(f"{ds.root} holds {len(ds.products)} products ({', '.join(ds.products)}) and {model} trains "
                         f"one product per run: pass one product's folder, or train one model for all of them "
                         f"with --model {models}")
    if ds.products and val is not None:
        raise UsageError("--val is for one product; leave it out when training on several (thresholds come "
                         "from each product's held-out normal images)")
    for product in ds.products or [""]:
        n = sum(s.product == product for s in ds.train)
        if n < 4:
            raise DataError(f"{ds.root / product}: only {n} normal training images; at least 4 are needed")
    fit_set, hold_set = split_products(ds.train, holdout, seed)
    spec = InputSpec(height=image_size, width=image_size, resize=resize or getattr(mod, "RESIZE", "letterbox"))
    post = PostSpec(blur_sigma=4.0 * image_size / 256)
    x = load_inputs(fit_set, spec)

    if epochs is not None:
        cfg.steps = max(1, epochs * math.ceil(len(fit_set) / cfg.batch_size))
    torch.manual_seed(seed)
    net = mod.Model(cfg, pretrained=True)
    with ddp.session():  # under torchrun the ranks share the fit (edgead.models.ddp); rank 0 goes on alone
        if unified:
            log = mod.fit(net, x, seed=seed, groups=np.array([ds.products.index(s.product) if ds.products else 0
                                                              for s in fit_set]))
        else:
            log = mod.fit(net, x, seed=seed)
        main = ddp.is_main()
    net.eval()
    del x
    if not main:
        return None
    if "prompt_images" in log:  # indices into the fit set -> the images a user can look at
        log["prompt_images"] = [fit_set[i].path.relative_to(ds.root).as_posix() for i in log["prompt_images"]]

    config = {
        "edgead_version": __version__,
        "task": "image",
        "model": {"name": model, "config": dataclasses.asdict(cfg)},
        "input": spec.to_json(),
        "post": post.to_json(),
        "outputs": {"anomaly_map": "anomaly_map"},
    }
    if getattr(mod, "PROMPTED", False) and ds.products:  # one map channel per product, in this order
        config["outputs"][PRODUCT_CHANNELS] = list(ds.products)
    predictor = Predictor.from_backend(config, torch_backend(net))
    hold_scores, hold_maps = score_samples(predictor, hold_set)
    image_th = ThresholdSet.from_scores(hold_scores)
    pixel_th = ThresholdSet.from_maps(hold_maps)
    if val is not None:
        image_th, pixel_th = _validation_thresholds(predictor, val, hold_scores, hold_maps)
    config["thresholds"] = {"image": image_th.to_json(), "pixel": pixel_th.to_json()}
    if ds.products:
        config["thresholds"]["products"] = product_thresholds(ds.products, hold_set, hold_scores, hold_maps)
    config["train"] = {
        "data": ds.summary(), "split": split.record(ds, fit_set, hold_set, seed),
        "n_fit": len(fit_set), "n_holdout": len(hold_set), "seed": seed,
        "seconds": round(time.time() - t0, 1), "log": log,
    }
    config["complexity"] = mod.complexity(net, spec.height, spec.width)
    save_run(out, net, config)
    return config


def product_thresholds(products: list[str], hold_set: list[Sample], scores: np.ndarray, maps: list) -> dict:
    """Image and pixel thresholds of each product, from its own held-out normal images."""
    out = {}
    for product in products:
        idx = [i for i, s in enumerate(hold_set) if s.product == product]
        out[product] = {"image": ThresholdSet.from_scores(scores[idx]).to_json(),
                        "pixel": ThresholdSet.from_maps([maps[i] for i in idx]).to_json()}
    return out


def _validation_thresholds(predictor: Predictor, val: str | Path, hold_scores, hold_maps):
    """Thresholds from a labelled validation set (adds F1-adaptive when it has anomalies)."""
    from edgead.tasks.image.data import read_mask
    from edgead.tasks.image.preprocess import mask_to_input

    vds = open_dataset(val)
    samples = vds.test or vds.train
    scores, maps, masks = list(hold_scores), list(hold_maps), [np.zeros(m.shape, bool) for m in hold_maps]
    labels = [0] * len(scores)
    for s in progress_bar(samples, desc="validation"):
        img = read_image(s.path)
        region, score, g = predictor.analyse(img)
        scores.append(score)
        labels.append(s.label)
        if s.label == 0 or s.mask_path is not None:
            maps.append(region)
            masks.append(mask_to_input(read_mask(s, img.shape[:2]), g))
    image_th = ThresholdSet.from_scores(np.array(scores), np.array(labels))
    pixel_th = ThresholdSet.from_maps(maps, masks)
    for th in (image_th, pixel_th):
        if "f1_adaptive" in th.values:
            th.select("f1_adaptive")
    return image_th, pixel_th
