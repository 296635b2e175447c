"""FADeR-lite: reconstruction by inpainting with one deterministic mask, plus feature attenuation.

Works on locally aware stride-8 features of the frozen backbone (`common.PatchFeatures`):
- one deterministic mask per image, from feature statistics: a location's saliency is its
  mean squared standardised feature (its distance from the average normal patch); the most
  salient `mask_fraction` of normal locations (threshold fitted on normal data, soft edge) are
  excised, so one pass gives a repeatable map;
- excised locations keep a coarse hint: a low-pass (local mean) of the features, not zeros;
- a light UNet (stride 8 -> 16 -> 32 and back, skip connections) restores the features;
- FADeR: on each skip connection, a two-layer 1x1 MLP predicts a soft attenuation (0..1)
  that scales the skip features, so patterns the decoder cannot restore are not copied
  through. Its targets come from reconstruction errors, patch by patch (no labels): during
  training, random patches of the input are perturbed; a pass with open skips measures how
  badly each patch is reconstructed, and the attenuation target is exp(-max(0, e/median - 1)).
Anomaly map = squared reconstruction error, averaged over channels, divided by its mean on
normal data."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.progress import progress_bar, show_running_mean
from . import ddp
from .common import (PATCH_CHANNELS, PATCH_STRIDES, PatchFeatures, backbone_complexity, conv_bn, count_flops, fitted_features,
                     n_params, optimizer_step, patch_mask, sep_conv)

C = PATCH_CHANNELS


@dataclass
class FADeRConfig:
    width: int = 64
    steps: int = 1200
    batch_size: int = 8
    lr: float = 2e-3
    mask_fraction: float = 0.3  # share of normal locations the saliency mask excises
    hint_kernel: int = 7  # low-pass hint over this many feature cells (stride 8)
    attenuation: bool = True  # the FADeR MLPs (False: plain skip connections, for the ablation)
    noise_fraction: float = 0.3  # upper bound of the grid share perturbed per training image
    noise_scale: tuple[float, float] = (0.5, 2.0)  # in standardised feature units


class Attenuation(nn.Module):
    """Two 1x1 layers: skip features -> soft gate in (0, 1) per location."""

    def __init__(self, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(channels, channels // 2, 1), nn.ReLU(inplace=True), nn.Conv2d(channels // 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x))


class InpaintingUNet(nn.Module):
    def __init__(self, w: int, attenuation: bool):
        super().__init__()
        self.enc0 = conv_bn(C, w)
        self.enc1 = sep_conv(w, 2 * w, 2)
        self.enc2 = nn.Sequential(sep_conv(2 * w, 4 * w, 2), sep_conv(4 * w, 4 * w))
        self.dec1 = nn.Sequential(conv_bn(6 * w, 2 * w), sep_conv(2 * w, 2 * w))
        self.dec0 = nn.Sequential(conv_bn(3 * w, w), sep_conv(w, w), nn.Conv2d(w, C, 1))
        self.att0 = Attenuation(w) if attenuation else None
        self.att1 = Attenuation(2 * w) if attenuation else None

    def gates(self, e0: torch.Tensor, e1: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.att0 is None:
            return None, None
        return self.att0(e0), self.att1(e1)

    def forward(self, x: torch.Tensor, open_skips: bool = False) -> tuple[torch.Tensor, tuple]:
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        b = self.enc2(e1)
        g0, g1 = (None, None) if open_skips else self.gates(e0, e1)
        s1 = e1 if g1 is None else e1 * g1
        d1 = self.dec1(torch.cat([F.interpolate(b, size=e1.shape[-2:], mode="nearest"), s1], 1))
        s0 = e0 if g0 is None else e0 * g0
        out = self.dec0(torch.cat([F.interpolate(d1, size=e0.shape[-2:], mode="nearest"), s0], 1))
        return out, (g0, g1)


class FADeRLite(nn.Module):
    outputs = ("anomaly_map",)

    def __init__(self, config: FADeRConfig | None = None, pretrained: bool = True):
        super().__init__()
        self.config = config or FADeRConfig()
        self.features = PatchFeatures(pretrained)
        self.unet = InpaintingUNet(self.config.width, self.config.attenuation)
        self.register_buffer("saliency_threshold", torch.ones(()))
        self.register_buffer("saliency_softness", torch.ones(()))
        self.register_buffer("map_scale", torch.ones(()))

    def saliency(self, f: torch.Tensor) -> torch.Tensor:
        return (f * f).mean(1, keepdim=True)

    def mask(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((self.saliency(f) - self.saliency_threshold) / self.saliency_softness)

    def excise(self, f: torch.Tensor) -> torch.Tensor:
        """Masked locations replaced by the local mean of the features (the coarse hint)."""
        k = self.config.hint_kernel
        hint = F.avg_pool2d(f, k, 1, k // 2, count_include_pad=False)
        m = self.mask(f)
        return (1 - m) * f + m * hint

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f = self.features(image)
        recon, _ = self.unet(self.excise(f))
        return error(recon, f) / self.map_scale


def perturb(f: torch.Tensor, fraction: float, scale: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise to random rectangles covering up to `fraction` of each feature grid."""
    n, c, h, w = f.shape
    m = patch_mask(n, h, w, fraction, gen)
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n, 1, 1, 1, generator=gen)
    return f + m * s * torch.randn(f.shape, generator=gen)


def error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared difference averaged over channels: (N, 1, h, w)."""
    return ((a - b) ** 2).mean(1, keepdim=True)


def gate_target(err: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Attenuation target from a patch-wise reconstruction error: 1 up to the median, decaying above."""
    e = F.adaptive_avg_pool2d(err, size) if err.shape[-2:] != size else err
    med = e.flatten(1).median(1).values.view(-1, 1, 1, 1).clamp_min(1e-8)
    return torch.exp(-(e / med - 1).clamp_min(0))


def fit(model: FADeRLite, images: np.ndarray, seed: int = 0) -> dict:
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    feats = fitted_features(model.features, images)
    with torch.no_grad():
        s = model.saliency(feats).flatten()
        model.saliency_threshold.copy_(torch.quantile(s[: 1_000_000], 1 - cfg.mask_fraction))
        model.saliency_softness.copy_((0.1 * s.std()).clamp_min(1e-4))
    opt = torch.optim.AdamW(model.unet.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    model.unet.train()
    unet = ddp.wrap(model.unet)
    n, losses, gates = len(feats), [], []
    bar = progress_bar(range(cfg.steps), desc="training inpainting decoder")
    for step in bar:
        clean = feats[torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)]
        noisy = perturb(clean, cfg.noise_fraction, cfg.noise_scale, gen)
        share = ddp.share(len(clean))
        clean, noisy = ddp.local(clean), ddp.local(noisy)  # drawn as one process would, trained on by this rank
        x = model.excise(noisy)
        recon, (g0, g1) = unet(x)
        loss = F.mse_loss(recon, clean)
        if g0 is not None:
            with torch.no_grad():
                open_recon, _ = model.unet(x, open_skips=True)
                err = error(open_recon, clean)
            loss = loss + F.binary_cross_entropy(g0, gate_target(err, g0.shape[-2:])) \
                + F.binary_cross_entropy(g1, gate_target(err, g1.shape[-2:]))
            gates.append(float(g0.mean()))
        losses.append(optimizer_step(opt, sched, loss * share))
        show_running_mean(bar, step, loss=losses)
    model.eval()
    with torch.no_grad():
        maps = torch.cat([error(model.unet(model.excise(feats[i : i + 32]))[0], feats[i : i + 32]) for i in range(0, n, 32)])
        model.map_scale.copy_(maps.mean().clamp_min(1e-8))
    return {"final_loss": float(np.mean(losses[-50:])), "steps": cfg.steps,
            "mean_gate": float(np.mean(gates[-50:])) if gates else None, "map_scale": float(model.map_scale)}


def complexity(model: FADeRLite, height: int, width: int) -> dict:
    x = torch.zeros(1, 3, height, width)
    f = model.features(x)
    out = backbone_complexity(model.features.backbone, x, PATCH_STRIDES)
    out.update({"student_params": n_params(model.unet), "student_flops": count_flops(lambda t: model.unet(t)[0], f),
                "total_flops": count_flops(model, x)})
    return out


Config = FADeRConfig
Model = FADeRLite
