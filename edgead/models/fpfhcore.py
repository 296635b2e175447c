"""FPFH-Core: a memory bank of normal local-geometry descriptors for point clouds (the BTF /
PatchCore recipe of the 3-D anomaly detection literature, which needs no pretrained 3-D weights).

The device computes each point's multi-scale FPFH descriptor in numpy (neighbours of an
unorganised cloud have no static shape, so they stay outside the graph); the graph
standardises a fixed-size chunk of descriptors and returns each one's distance to the nearest
normal descriptor of a greedy coreset (a 1x1 convolution and a min, as PatchCore-lite)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import count_flops
from .patchcore import greedy_coreset


@dataclass
class FPFHCoreConfig:
    coreset_ratio: float = 0.1
    max_bank: int = 2048  # cap: the search is chunk x bank x dim per call
    pool_cap: int = 100_000  # descriptors drawn at random before the greedy selection
    projection_dim: int = 32
    dim: int = 66  # set by fit: 33 per FPFH scale
    bank_size: int = 1  # set by fit


class FPFHCore(nn.Module):
    outputs = ("point_score",)
    input_name = "descriptors"

    def __init__(self, config: FPFHCoreConfig | None = None, pretrained: bool = False):
        super().__init__()
        self.config = cfg = config or FPFHCoreConfig()
        self.register_buffer("mean", torch.zeros(1, cfg.dim, 1))
        self.register_buffer("std", torch.ones(1, cfg.dim, 1))
        self.register_buffer("bank", torch.zeros(cfg.bank_size, cfg.dim))

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        """(n, dim, chunk) raw descriptors -> (n, chunk) raw point scores (the chunk size is fixed
        at export: a static shape for every runtime)."""
        z = (descriptors - self.mean) / self.std
        # |z - m|^2 = |z|^2 - 2 z.m + |m|^2, min over the bank; sqrt(d^2 + 1) as in PatchCore-lite
        partial = F.conv1d(z, -2 * self.bank[:, :, None], (self.bank * self.bank).sum(1))
        d2 = partial.amin(1) + (z * z).sum(1)
        return (d2.clamp_min(0) + 1).sqrt()


def fit(model: FPFHCore, descriptors: np.ndarray, seed: int = 0) -> dict:
    """Standardisation and coreset bank from normal descriptors (M, dim)."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(descriptors, np.float32))
    n = len(x)
    cfg.dim = x.shape[1]
    # one scale for every bin: the histograms share a unit (per cent of pairs), and a bin that
    # is nearly constant on normal data must not blow up to thousands of standard deviations
    mean, std = x.mean(0), x.std(0).mean().clamp_min(1e-6).expand(x.shape[1])
    if n > cfg.pool_cap:
        x = x[torch.randperm(n, generator=gen)[: cfg.pool_cap]]
    z = (x - mean) / std
    k = max(1, min(cfg.max_bank, round(cfg.coreset_ratio * n)))
    bank = z[greedy_coreset(z, k, cfg.projection_dim, gen)]
    cfg.bank_size = len(bank)
    model.mean, model.std = mean[None, :, None].clone(), std[None, :, None].clone()
    model.bank = bank.contiguous()
    return {"n_descriptors": n, "pool": len(x), "bank_size": len(bank), "bank_mb": round(bank.numel() * 4 / 1e6, 2)}


def complexity(model: FPFHCore, chunk: int) -> dict:
    x = torch.zeros(1, model.config.dim, chunk)
    return {"bank_entries": len(model.bank), "bank_mb": round(model.bank.numel() * 4 / 1e6, 2),
            "flops_per_chunk": count_flops(model, x), "chunk": chunk}


Config = FPFHCoreConfig
Model = FPFHCore
FORM = "points"  # takes described points in chunks (edgead.tasks.pointcloud.preprocess)
