"""PaDiM-lite: a compact per-location Gaussian of the shared patch features.

The position-specific normal variation that per-location covariances capture (the illumination
band of a tile, a part's own edges) was what the compact students missed. PaDiM keeps one full
covariance per location (16-160 MB here); PaDiM-lite keeps, per location of a stride-16 grid, the
mean, the top-`rank` principal directions with their variances and one variance for the rest
(probabilistic PCA), about 6 MB at rank 32. The graph scores each location by its Mahalanobis
distance under that model: a batched matrix product per location, no gathers, no loop."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import PatchFeatures, constants_complexity, fitted_features, tensor_bytes

STORAGE = {"float32": torch.float32, "float16": torch.float16}
RECORDED_BEFORE = {"directions_dtype": "float32"}  # what runs that do not record a setting were made with
RESIZE = "stretch"  # per-location statistics want the part at the same place in every image, whatever its aspect


@dataclass
class PaDiMConfig:
    backbone: str = "lite1"  # EfficientNet-Lite0, -Lite1 or -Lite2 (bench/positional_stats.py: Lite1 measured best)
    stride: int = 16  # grid of the statistics: 8 (the features' own) or 16 (2 x 2 averaged)
    rank: int = 48  # principal directions kept per location
    directions_dtype: str = "float16"  # storage of the principal directions (computed in float32): halves the bundle
    eps: float = 0.01  # added to every variance (the features are standardised)
    grid_h: int = 1  # set by fit: the grid the statistics were fitted on
    grid_w: int = 1


class PaDiMLite(nn.Module):
    outputs = ("anomaly_map",)

    def __init__(self, config: PaDiMConfig | None = None, pretrained: bool = True):
        super().__init__()
        self.config = cfg = config or PaDiMConfig()
        if cfg.stride not in (8, 16):
            raise ValueError(f"padim: stride must be 8 or 16, got {cfg.stride}")
        if cfg.directions_dtype not in STORAGE:
            raise ValueError(f"padim: directions_dtype must be one of {sorted(STORAGE)}, got {cfg.directions_dtype!r}")
        self.features = PatchFeatures(pretrained, cfg.backbone)
        c, locations = self.features.channels, cfg.grid_h * cfg.grid_w
        self.register_buffer("mean", torch.zeros(1, c, cfg.grid_h, cfg.grid_w))
        self.register_buffer("directions", torch.zeros(locations, c, cfg.rank, dtype=STORAGE[cfg.directions_dtype]))
        self.register_buffer("inv_variances", torch.ones(locations, 1, cfg.rank))
        self.register_buffer("inv_rest", torch.ones(locations, 1))

    def grid(self, image: torch.Tensor) -> torch.Tensor:
        f = self.features(image)
        return F.avg_pool2d(f, 2) if self.config.stride == 16 else f

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        z = self.grid(image) - self.mean
        n, c, h, w = z.shape
        zl = z.flatten(2).permute(2, 0, 1)  # (locations, n, c)
        p = torch.bmm(zl, self.directions.float())  # (locations, n, rank)
        p2 = p * p
        d2 = (p2 * self.inv_variances).sum(-1) + ((zl * zl).sum(-1) - p2.sum(-1)) * self.inv_rest
        # sqrt(d^2 + 1) as in PatchCore-lite: no infinite slope at 0 for INT8 and rounding.
        return (d2.clamp_min(0) + 1).sqrt().permute(1, 0).reshape(n, 1, h, w)


def fit(model: PaDiMLite, images: np.ndarray, seed: int = 0) -> dict:
    """Fit the per-location statistics on normal images (N, 3, H, W) float32; returns a log."""
    cfg = model.config
    with torch.no_grad():
        f = fitted_features(model.features, images)
        f = F.avg_pool2d(f, 2) if cfg.stride == 16 else f
    n, c, h, w = f.shape
    if n < 2:
        raise ValueError("padim needs at least 2 normal images to fit its statistics")
    rank = min(cfg.rank, c - 1)
    x = f.permute(2, 3, 0, 1).reshape(h * w, n, c).double()
    mean = x.mean(1, keepdim=True)
    z = x - mean
    cov = z.transpose(1, 2) @ z / max(1, n - 1) + cfg.eps * torch.eye(c, dtype=torch.float64)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    cfg.grid_h, cfg.grid_w, cfg.rank = h, w, rank
    model.mean = mean.reshape(h, w, c).permute(2, 0, 1)[None].float().contiguous()
    model.directions = vectors[:, :, -rank:].to(STORAGE[cfg.directions_dtype]).contiguous()
    model.inv_variances = (1.0 / values[:, None, -rank:]).float().contiguous()
    model.inv_rest = (1.0 / values[:, :-rank].mean(1, keepdim=True)).float().contiguous()
    kept = float((values[:, -rank:].sum(1) / values.sum(1)).mean())
    return {"n_images": n, "grid": [h, w], "rank": rank, "variance_kept": round(kept, 4),
            "statistics_mb": round(stats_bytes(model) / 1e6, 2)}


def statistics(model: PaDiMLite) -> tuple[torch.Tensor, ...]:
    return model.mean, model.directions, model.inv_variances, model.inv_rest


def stats_bytes(model: PaDiMLite) -> int:
    return tensor_bytes(statistics(model))


def complexity(model: PaDiMLite, height: int, width: int) -> dict:
    return constants_complexity(model, height, width, "statistics_mb", statistics(model))


Config = PaDiMConfig
Model = PaDiMLite
