"""HetNet-lite: noise-fusion distillation with a frozen EfficientNet-Lite0 teacher.

Two small students learn the teacher's multi-scale features on normal images:
- a regression student predicts the stride-8 and stride-16 teacher features from the
  stride-4 ones (it never saw defects, so it mispredicts them);
- a denoising student restores stride-8 fused teacher features whose training inputs had
  random patches corrupted with local multivariate Gaussian noise (per-location covariance
  of normal features), so at test time it pulls defective features back toward normal.
Anomaly map = teacher-student discrepancies, each divided by its mean on normal data,
averaged over scales and students (stride 8). The graph outputs it raw; blur and pooling
happen in `edgead.tasks.image.postprocess`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.progress import progress_bar, show_running_mean
from . import ddp
from .common import Standardize, conv_bn, count_flops, n_params, optimizer_step, patch_mask, sep_conv
from .efficientnet_lite import TAP_CHANNELS, efficientnet_lite0

C4, C8, C16 = TAP_CHANNELS[4], TAP_CHANNELS[8], TAP_CHANNELS[16]
CF = C4 + C8 + C16  # fused stride-8 features


@dataclass
class HetNetConfig:
    width: int = 64  # student width
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-3
    noise_prob: float = 0.5  # fraction of each image's grid hit by noise patches (upper bound)
    noise_scale: tuple[float, float] = (0.5, 2.0)
    cov_shrink: float = 0.1


class Whiten(nn.Module):
    """Squared Mahalanobis norm of residuals, (r^T S^-1 r) / C, with S the normal residual covariance."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("weight", torch.eye(channels))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        w = F.conv2d(r, self.weight[:, :, None, None])
        return (w * w).mean(1, keepdim=True)

    @torch.no_grad()
    def fit(self, residuals: torch.Tensor, shrink: float) -> None:
        x = residuals.permute(0, 2, 3, 1).reshape(-1, residuals.shape[1]).double()
        cov = torch.cov(x.T)
        cov = (1 - shrink) * cov + shrink * torch.diagonal(cov).mean() * torch.eye(len(cov), dtype=cov.dtype)
        vals, vecs = torch.linalg.eigh(cov)
        self.weight.copy_((vecs @ torch.diag(vals.clamp_min(1e-8).rsqrt()) @ vecs.T).float())


class RegressionStudent(nn.Module):
    """Stride-4 teacher features -> predicted stride-8 and stride-16 teacher features."""

    def __init__(self, w: int):
        super().__init__()
        self.down8 = nn.Sequential(conv_bn(C4, w), sep_conv(w, w, 2), sep_conv(w, w))
        self.head8 = nn.Conv2d(w, C8, 1)
        self.down16 = nn.Sequential(sep_conv(w, 2 * w, 2), sep_conv(2 * w, 2 * w))
        self.head16 = nn.Conv2d(2 * w, C16, 1)

    def forward(self, f4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h8 = self.down8(f4)
        return self.head8(h8), self.head16(self.down16(h8))


class DenoisingStudent(nn.Module):
    """Fused stride-8 features -> restored features, through a stride-16 bottleneck."""

    def __init__(self, w: int):
        super().__init__()
        self.enc = nn.Sequential(conv_bn(CF, w), sep_conv(w, 2 * w, 2), sep_conv(2 * w, 2 * w), sep_conv(2 * w, 2 * w))
        self.skip = conv_bn(CF, w)
        self.dec = nn.Sequential(conv_bn(3 * w, w), sep_conv(w, w), nn.Conv2d(w, CF, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        z = F.interpolate(self.enc(f), size=f.shape[-2:], mode="nearest")
        # The skip path sees a heavily pooled view only, so identity is not learnable.
        s = self.skip(F.avg_pool2d(f, 5, 1, 2, count_include_pad=False))
        return self.dec(torch.cat([z, s], 1))


class HetNetLite(nn.Module):
    outputs = ("anomaly_map",)

    def __init__(self, config: HetNetConfig | None = None, pretrained: bool = True):
        super().__init__()
        self.config = config or HetNetConfig()
        self.teacher = efficientnet_lite0(pretrained=pretrained, truncate_after=10)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.norm4, self.norm8, self.norm16 = Standardize(C4), Standardize(C8), Standardize(C16)
        self.norm_fused = Standardize(CF)
        self.regressor = RegressionStudent(self.config.width)
        self.denoiser = DenoisingStudent(self.config.width)
        self.whiten8, self.whiten16, self.whiten_fused = Whiten(C8), Whiten(C16), Whiten(CF)
        self.register_buffer("map_scale", torch.ones(3))

    def teacher_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.teacher.eval()
        with torch.no_grad():
            f4, f8, f16 = self.teacher.features(x, (4, 8, 16))
        return f4, f8, f16

    def fuse(self, f4n: torch.Tensor, f8n: torch.Tensor, f16n: torch.Tensor) -> torch.Tensor:
        size = f8n.shape[-2:]
        return torch.cat([F.avg_pool2d(f4n, 2), f8n, F.interpolate(f16n, size=size, mode="bilinear", align_corners=False)], 1)

    def residuals(self, f4: torch.Tensor, f8: torch.Tensor, f16: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Student minus teacher, in standardised feature units: regression@8, @16, denoising@8."""
        f4n, f8n, f16n = self.norm4(f4), self.norm8(f8), self.norm16(f16)
        p8, p16 = self.regressor(f4n)
        fused = self.norm_fused(self.fuse(f4n, f8n, f16n))
        return p8 - f8n, p16 - f16n, self.denoiser(fused) - fused

    def discrepancies(self, f4: torch.Tensor, f8: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
        """(N, 3, h8, w8): whitened residual norms of regression@8, regression@16 (upsampled), denoising@8."""
        r8, r16, rd = self.residuals(f4, f8, f16)
        d16 = F.interpolate(self.whiten16(r16), size=r8.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([self.whiten8(r8), d16, self.whiten_fused(rd)], 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        d = self.discrepancies(*self.teacher_features(image))
        return (d / self.map_scale.view(1, 3, 1, 1)).mean(1, keepdim=True)


class LocalGaussian:
    """Per-location Gaussian of normal fused features; samples noise shaped like local variation."""

    def __init__(self, feats: torch.Tensor, shrink: float):
        n, c, h, w = feats.shape
        x = feats.permute(2, 3, 0, 1).reshape(h * w, n, c)
        xc = x - x.mean(1, keepdim=True)
        cov = xc.transpose(1, 2) @ xc / max(n - 1, 1)
        eye = torch.eye(c).expand_as(cov)
        diag = torch.diagonal(cov, dim1=1, dim2=2).mean(1).view(-1, 1, 1)
        cov = (1 - shrink) * cov + shrink * diag * eye + 1e-4 * eye
        self.chol = torch.linalg.cholesky(cov)  # (hw, c, c)
        self.h, self.w, self.c = h, w, c

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(self.h * self.w, self.c, n, generator=gen)
        return (self.chol @ z).permute(2, 1, 0).reshape(n, self.c, self.h, self.w)


def extract(model: HetNetLite, images: np.ndarray, batch: int = 16, desc: str = "teacher features") -> list[torch.Tensor]:
    return list(ddp.features(lambda x: tuple(model.teacher_features(x)), images, batch,
                             lambda it: progress_bar(it, desc=desc)))


def fit(model: HetNetLite, images: np.ndarray, seed: int = 0) -> dict:
    """Train both students on normal images (N, 3, H, W) float32; returns a training log."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    f4, f8, f16 = extract(model, images)
    model.norm4.fit(f4), model.norm8.fit(f8), model.norm16.fit(f16)
    with torch.no_grad():
        fused_all = model.fuse(model.norm4(f4), model.norm8(f8), model.norm16(f16))
    model.norm_fused.fit(fused_all)
    fused_all = model.norm_fused(fused_all)
    noise = LocalGaussian(fused_all, cfg.cov_shrink)
    params = list(model.regressor.parameters()) + list(model.denoiser.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    model.regressor.train(), model.denoiser.train()
    regressor, denoiser = ddp.wrap(model.regressor), ddp.wrap(model.denoiser)
    n, losses = len(f4), []
    bar = progress_bar(range(cfg.steps), desc="training students")
    for step in bar:
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
        m = patch_mask(len(idx), fused_all.shape[2], fused_all.shape[3], cfg.noise_prob, gen)
        lo, hi = cfg.noise_scale
        scale = lo + (hi - lo) * torch.rand(len(idx), 1, 1, 1, generator=gen)
        share = ddp.share(len(idx))
        idx, m, scale, draw = (ddp.local(t) for t in (idx, m, scale, noise.sample(len(idx), gen)))  # draws as one process
        b4, b8, b16 = model.norm4(f4[idx]), model.norm8(f8[idx]), model.norm16(f16[idx])
        clean = fused_all[idx]
        p8, p16 = regressor(b4)
        loss_r = F.mse_loss(p8, b8) + F.mse_loss(p16, b16)
        noisy = clean + m * scale * draw
        loss_d = F.mse_loss(denoiser(noisy), clean)
        loss = (loss_r + loss_d) * share
        losses.append(optimizer_step(opt, sched, loss))
        show_running_mean(bar, step, loss=losses)
    model.eval()
    with torch.no_grad():
        res = [model.residuals(f4[i : i + 32], f8[i : i + 32], f16[i : i + 32]) for i in range(0, n, 32)]
        for k, wh in enumerate((model.whiten8, model.whiten16, model.whiten_fused)):
            wh.fit(torch.cat([r[k] for r in res]), cfg.cov_shrink)
        d = torch.cat([model.discrepancies(f4[i : i + 32], f8[i : i + 32], f16[i : i + 32]) for i in range(0, n, 32)])
        model.map_scale.copy_(d.mean((0, 2, 3)).clamp_min(1e-8))
    return {"final_loss": float(np.mean(losses[-50:])), "steps": cfg.steps, "map_scale": model.map_scale.tolist()}


def complexity(model: HetNetLite, height: int, width: int) -> dict:
    """Parameters and FLOPs (2 x multiply-adds) of the teacher and of the students."""
    x = torch.zeros(1, 3, height, width)
    f4, f8, f16 = model.teacher_features(x)
    fused = model.fuse(f4, f8, f16)
    return {
        "teacher_params": n_params(model.teacher),
        "teacher_flops": count_flops(lambda t: model.teacher.features(t, (4, 8, 16)), x),
        "student_params": n_params(model.regressor, model.denoiser),
        "student_flops": count_flops(model.regressor, f4) + count_flops(model.denoiser, fused),
        "total_flops": count_flops(model, x),
    }


Config = HetNetConfig
Model = HetNetLite
