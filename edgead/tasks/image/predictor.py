"""The runtime-agnostic Predictor: preprocess -> run -> post-process -> threshold -> map.

Imports numpy, OpenCV and one runtime; never torch (except to run a training run folder
directly, which is what `edgead eval RUN_DIR` does)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgead.core.errors import UsageError
from edgead.core.predictor import BasePredictor, choose_target
from edgead.core.thresholds import Override, ThresholdSet
from edgead.tasks.image import postprocess
from edgead.tasks.image.postprocess import PostSpec
from edgead.tasks.image.preprocess import Geometry, InputSpec, as_rgb, preprocess, read_image

__all__ = ["Predictor", "Result", "choose_target"]
PRODUCT_CHANNELS = "anomaly_map_products"  # manifest outputs: the product of each anomaly_map channel (prompted models)
ImageLike = str | Path | np.ndarray


@dataclass
class Result:
    score: float  # normalised to [0, 1]; 0.5 = the image threshold
    raw_score: float
    is_anomalous: bool
    anomaly_map: np.ndarray = field(repr=False)  # float32 (H, W) at input resolution, 0.5 = pixel threshold
    mask: np.ndarray = field(repr=False)  # bool (H, W): anomaly_map >= 0.5
    path: str | None = None

    def to_json(self) -> dict:
        d = {"score": round(self.score, 6), "raw_score": self.raw_score, "is_anomalous": self.is_anomalous,
             "anomalous_area": round(float(self.mask.mean()), 6)}
        return {"path": self.path, **d} if self.path is not None else d


class Predictor(BasePredictor):
    """Scores images with an image bundle (or a training run, on torch) on one runtime."""

    task = "image"
    output_names = ("anomaly_map",)
    default_input_name = "image"

    def _setup(self, config) -> None:
        self.spec = InputSpec.from_json(config["input"])
        self.post = PostSpec.from_json(config["post"])
        th = config.get("thresholds") or {}
        self.image_thresholds = ThresholdSet.from_json(th["image"]) if "image" in th else None
        self.pixel_thresholds = ThresholdSet.from_json(th["pixel"]) if "pixel" in th else None
        self.product_thresholds = {name: (ThresholdSet.from_json(t["image"]), ThresholdSet.from_json(t["pixel"]))
                                   for name, t in (th.get("products") or {}).items()}
        self.channels = list((config.get("outputs") or {}).get(PRODUCT_CHANNELS) or [])

    @property
    def products(self) -> list[str]:
        """The products of a unified model (empty for a one-product model)."""
        return list(self.product_thresholds)

    def thresholds(self, product: str | None = None) -> tuple[ThresholdSet | None, ThresholdSet | None]:
        """(image, pixel) thresholds of `product`; None: the product-agnostic ones."""
        if product is None:
            return self.image_thresholds, self.pixel_thresholds
        if not self.product_thresholds:
            raise UsageError(f"product {product!r} given, but this model was trained on one product; leave it out")
        if product not in self.product_thresholds:
            raise UsageError(f"unknown product {product!r}; this model knows: {', '.join(self.product_thresholds)}")
        return self.product_thresholds[product]

    def set_threshold(self, value: float | str | Override, product: str | None = None) -> None:
        """Set the image threshold (the "manual" kind): a raw score, or an `Override` such as
        "score:0.6" (normalised: 0.5 = the trained threshold). Scores are normalised against it
        from now on. For `product` only, or (None) for every product and the product-agnostic
        threshold; a normalised value moves each product by its own span."""
        override = value if isinstance(value, Override) else Override.parse(value)
        image, _ = self.thresholds(product)
        if image is None:
            raise UsageError("this model has no thresholds to override; train it with `edgead train`")
        override.apply(image)
        if product is None:
            for other, _ in self.product_thresholds.values():
                override.apply(other)

    def channel(self, product: str | None) -> int:
        """The anomaly_map channel of `product`: 0, except for a prompted model (OneNIP-lite),
        whose graph gives one channel per product and cannot score without knowing which."""
        if not self.channels:
            return 0
        if product is None:
            raise UsageError(f"this {self.config['model']['name']} model compares each image with a stored normal "
                             f"image of its product, so it needs the product: one of {', '.join(self.channels)} "
                             "(Predictor.predict(..., product=NAME), edgead predict --product NAME)")
        if product not in self.channels:
            raise UsageError(f"unknown product {product!r}; this model knows: {', '.join(self.channels)}")
        return self.channels.index(product)

    def check_product(self, product: str | None) -> None:
        """An unknown product, or a missing one for a prompted model: the usage error, before any work."""
        self.thresholds(product)
        self.channel(product)

    def raw_map(self, x: np.ndarray, product: str | None = None) -> np.ndarray:
        """Preprocessed (3, H, W) -> raw low-resolution map (h, w) from the runtime."""
        return self.run(x[None])["anomaly_map"][0, self.channel(product)]

    def analyse(self, image_rgb: np.ndarray, product: str | None = None) -> tuple[np.ndarray, float, Geometry]:
        """RGB image -> (raw map of the valid region at network resolution, raw score, geometry)."""
        x, g = preprocess(image_rgb, self.spec)
        region, score = postprocess.process(self.raw_map(x, product), g, self.spec.height, self.spec.width, self.post)
        return region, score, g

    def predict(self, image: ImageLike | Sequence[ImageLike], color_order: str = "RGB",
                product: str | None = None) -> Result | list[Result]:
        """Score a path, an image array (gray / RGB / BGR / RGBA, uint8) or a batch of them.

        `color_order` says how 3/4-channel arrays are ordered (OpenCV frames are "BGR").
        `product` (unified models) picks that product's thresholds; None: the product-agnostic ones."""
        self.check_product(product)
        if isinstance(image, (list, tuple)) or (isinstance(image, np.ndarray) and image.ndim == 4):
            return [self.predict(im, color_order, product) for im in image]
        if isinstance(image, (str, Path)):
            rgb, path = read_image(image), str(image)
        else:
            rgb, path = as_rgb(image, color_order), None
        return self.result(*self.analyse(rgb, product), path=path, product=product)

    def result(self, region: np.ndarray, raw: float, g: Geometry, path: str | None = None,
               product: str | None = None) -> Result:
        """Threshold and normalise the output of `analyse`."""
        image_th, pixel_th = self.thresholds(product)
        if image_th is None or pixel_th is None:
            raise ValueError("this model has no thresholds; train it with `edgead train` to compute them")
        amap = np.asarray(pixel_th.normalize(postprocess.to_original(region, g)), np.float32)
        score = float(image_th.normalize(raw))
        return Result(score, raw, raw >= image_th.threshold, amap, amap >= 0.5, path)
