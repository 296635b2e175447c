"""Anomaly-map post-processing shared by evaluation and the predictor (numpy + OpenCV).

The exported graph outputs a raw low-resolution `anomaly_map` (N, 1, h, w); everything
after it is here, identical for every model and runtime:
upsample to the network input size -> crop the valid (non-padded) region -> Gaussian blur
-> image score = max of that region -> (optionally) resize to the original image size."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from edgead.core.opencv import cv2
import numpy as np

from edgead.tasks.image.preprocess import Geometry


@dataclass(frozen=True)
class PostSpec:
    blur_sigma: float = 4.0  # in pixels of the network input
    score: str = "max"  # image score pooling over the valid region: "max" or "topk_mean"
    topk_fraction: float = 0.01

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "PostSpec":
        return cls(**d)


def smooth(m: np.ndarray, post: PostSpec) -> np.ndarray:
    if post.blur_sigma <= 0:
        return m
    k = 2 * int(4 * post.blur_sigma + 0.5) + 1
    return cv2.GaussianBlur(m, (k, k), post.blur_sigma, borderType=cv2.BORDER_REFLECT)


def valid_region(raw: np.ndarray, g: Geometry, height: int, width: int) -> np.ndarray:
    """Raw (h, w) map -> its valid (non-padded) region upsampled to network resolution."""
    m = cv2.resize(np.asarray(raw, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(m[g.top : g.top + g.inner_h, g.left : g.left + g.inner_w])


def pool_score(region: np.ndarray, post: PostSpec) -> float:
    if post.score == "max":
        return float(region.max())
    if post.score == "topk_mean":
        flat = region.ravel()
        k = max(1, int(round(flat.size * post.topk_fraction)))
        return float(np.partition(flat, flat.size - k)[-k:].mean())
    raise ValueError(f"unknown score pooling {post.score!r}")


def to_original(region: np.ndarray, g: Geometry) -> np.ndarray:
    return cv2.resize(region, (g.orig_w, g.orig_h), interpolation=cv2.INTER_LINEAR)


def process(raw: np.ndarray, g: Geometry, height: int, width: int, post: PostSpec) -> tuple[np.ndarray, float]:
    """Raw (h, w) map -> (valid-region map at network resolution, raw image score)."""
    region = smooth(valid_region(raw, g, height, width), post)
    return region, pool_score(region, post)
