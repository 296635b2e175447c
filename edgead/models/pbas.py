"""PBAS-lite: progressive boundary-guided anomaly synthesis on frozen backbone features.

Training (normal images only), on locally aware stride-8 patch features:
- approximate boundary: per-location centres of the projected normal features, set by an
  EMA pass over the data (each feature updates its most similar centre); a compactness loss
  pulls projected features toward their centre;
- synthesis: fake = f + k * r * (f - c) / |f - c|, with r the batch's mean distance to the
  centres, so fakes sit just outside the normal boundary and move inward as it tightens;
- refined boundary: a small discriminator learns normal (0) vs synthesised (1) with BCE.
Inference is backbone taps + 1x1 projection + a two-layer 1x1 discriminator, whose logit is
the anomaly map."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.progress import progress_bar, show_running_mean
from . import ddp
from .common import (PATCH_CHANNELS, PATCH_STRIDES, PatchFeatures, backbone_complexity, count_flops, fitted_features, n_params,
                     optimizer_step)

C = PATCH_CHANNELS


@dataclass
class PBASConfig:
    steps: int = 1500
    batch_size: int = 8  # images per step for the centre pass
    patches: int = 2048  # random patches (from all images) per training step
    lr: float = 5e-4
    hidden: int = 256  # discriminator width
    k: float = 0.5  # synthesis distance, as a share of the mean distance to the centres
    ema: float = 0.9  # centre update: c <- ema * c + (1 - ema) * batch mean
    # Gaussian jitter of normal features in training (standardised units), about the size of the
    # INT8 backbone's own error (0.13-0.18 std with its first layers in FP32): the discriminator
    # learns a boundary that quantization noise does not cross (see BENCHMARKS.md, issue 7).
    feature_noise: float = 0.2


class PBASLite(nn.Module):
    outputs = ("anomaly_map",)

    def __init__(self, config: PBASConfig | None = None, pretrained: bool = True):
        super().__init__()
        self.config = config or PBASConfig()
        self.features = PatchFeatures(pretrained)
        self.projection = nn.Conv2d(C, C, 1)
        h = self.config.hidden
        self.discriminator = nn.Sequential(nn.Conv2d(C, h, 1), nn.BatchNorm2d(h), nn.LeakyReLU(0.2), nn.Conv2d(h, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.discriminator(self.projection(self.features(image)))


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _column(rows: torch.Tensor) -> torch.Tensor:
    """(P, C) patch rows as a (1, C, P, 1) map: 1x1 convolutions run fastest on it."""
    return rows.T[None, :, :, None]


@torch.no_grad()
def ema_centres(model: PBASLite, feats: torch.Tensor, batch: int, ema: float) -> torch.Tensor:
    """(h*w, C) centres: the first batch's per-location mean, then each later batch's per-location
    mean updates its most similar centre (cosine), as in PBAS."""
    centres = None
    for i in range(0, len(feats), batch):
        mean = _flat(model.projection(feats[i : i + batch]).mean(0, keepdim=True))
        if centres is None:
            centres = mean.clone()
            continue
        j = (F.normalize(mean, dim=1) @ F.normalize(centres, dim=1).T).argmax(1)
        for src, dst in enumerate(j.tolist()):
            centres[dst] = ema * centres[dst] + (1 - ema) * mean[src]
    return centres


def synthesise(true: torch.Tensor, centres: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(fake features just outside the boundary, mean distance to the centres) for rows of `true`."""
    c = centres[(F.normalize(true, dim=1) @ F.normalize(centres, dim=1).T).argmax(1)]
    direction = true - c
    dist = direction.norm(dim=1, keepdim=True).clamp_min(1e-6)
    r = dist.mean()
    return true + (direction / dist * r * k).detach(), r


def fit(model: PBASLite, images: np.ndarray, seed: int = 0) -> dict:
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    feats = fitted_features(model.features, images)
    centres = ema_centres(model, feats, cfg.batch_size, cfg.ema)
    params = list(model.projection.parameters()) + list(model.discriminator.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-5)
    # Cosine decay: with a constant rate the boundary the run ends on depends on its last noisy
    # steps (magnetic_tile, two seeds: image AUROC 0.69-0.75 constant, 0.81-0.84 cosine).
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    model.projection.train(), model.discriminator.train()
    projection, discriminator = ddp.wrap(model.projection), ddp.wrap(model.discriminator)
    flat = _flat(feats)
    n, log = len(flat), {"compact": [], "bce": [], "p_true": [], "p_fake": []}
    bar = progress_bar(range(cfg.steps), desc="training discriminator")
    for step in bar:
        x = flat[torch.randint(0, n, (min(cfg.patches, n),), generator=gen)]
        if cfg.feature_noise > 0:
            x = x + cfg.feature_noise * torch.randn(x.shape, generator=gen)
        share = ddp.share(len(x))
        x = ddp.local(x)  # drawn as one process would, trained on by this rank
        true = projection(_column(x))[0, :, :, 0].T
        fake, r = synthesise(true, centres, cfg.k)
        logits = discriminator(_column(torch.cat([true, fake]))).flatten()
        labels = torch.cat([torch.zeros(len(true)), torch.ones(len(fake))])
        bce = F.binary_cross_entropy_with_logits(logits, labels)
        loss = (r + bce) * share
        optimizer_step(opt, sched, loss)
        with torch.no_grad():
            log["compact"].append(r.item())
            log["bce"].append(bce.item())
            log["p_true"].append((logits[: len(true)] < 0).float().mean().item())
            log["p_fake"].append((logits[len(true) :] >= 0).float().mean().item())
        show_running_mean(bar, step, bce=log["bce"], r=log["compact"])
    model.eval()
    return {k: float(np.mean(v[-50:])) for k, v in log.items()} | {"steps": cfg.steps, "centres": len(centres)}


def complexity(model: PBASLite, height: int, width: int) -> dict:
    x = torch.zeros(1, 3, height, width)
    f = model.features(x)
    out = backbone_complexity(model.features.backbone, x, PATCH_STRIDES)
    out.update({"student_params": n_params(model.projection, model.discriminator),
                "student_flops": count_flops(lambda t: model.discriminator(model.projection(t)), f),
                "total_flops": count_flops(model, x)})
    return out


Config = PBASConfig
Model = PBASLite
