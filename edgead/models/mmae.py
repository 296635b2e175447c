"""MMAE-lite: a compact multi-scale masked autoencoder for 1-D signals (after MMAE-ECG).

- The window (N, C, L) is cut into non-overlapping patches of `patch` samples; each patch is
  one token (linear embedding) plus a learnable *global* positional embedding (absolute
  position in the window).
- Multi-scale attention: each head has its own span (in patches; 0 = the whole window); local
  heads add a learnable *local* relative-position bias inside their span.
- Multi-scale masking: masked tokens are replaced by a learnable mask token; masks hide
  contiguous segments of `mask_scales` patches at several `mask_ratios`.
- One Transformer layer (global attention, its own positional embedding) decodes every patch;
  the loss is the reconstruction error of the masked patches.

Inference runs a fixed, deterministic mask set (buffers, so the exported graph is one pass):
for every scale s and group count k = round(1 / ratio), k masks each hide every k-th segment of
s patches, so each sample is hidden exactly once per (s, k). The point score is the squared
reconstruction error where a sample was hidden, averaged over masks and channels and divided
by its mean on normal training windows; the window score is the mean point score."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..core.progress import progress_bar, show_running_mean
from . import ddp
from .common import count_flops, n_params, optimizer_step

TASK = "signal"
SPAN_PENALTY = -20.0  # added to attention logits outside a head's span: exp(-20) ~ 2e-9, and small
# enough that INT8 ranges of the logits stay fine (a -1e4 mask leaves no resolution for the logits)


@dataclass
class MMAEConfig:
    channels: int = 1
    length: int = 256  # window length in samples; a multiple of `patch`
    patch: int = 8
    dim: int = 64
    depth: int = 3
    heads: int = 4
    spans: tuple[int, ...] = (2, 4, 0, 0)  # attention span per head in patches (|i - j| <= span); 0 = global
    mlp_ratio: float = 2.0
    mask_scales: tuple[int, ...] = (1, 2, 4)  # masked segment lengths, in patches
    mask_ratios: tuple[float, ...] = (0.25, 0.5)
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05

    @property
    def tokens(self) -> int:
        return self.length // self.patch

    def check(self) -> None:
        if self.length % self.patch:
            raise ValueError(f"window length {self.length} is not a multiple of the patch size {self.patch}")
        if len(self.spans) != self.heads or self.dim % self.heads:
            raise ValueError(f"need one span per head ({self.heads} heads, spans {self.spans}) and dim % heads == 0")
        if min(self.mask_scales) < 1 or not all(0 < r < 1 for r in self.mask_ratios):
            raise ValueError(f"bad mask scales {self.mask_scales} or ratios {self.mask_ratios}")


def choose_patch(length: int, target: int = 8) -> int:
    """The divisor of `length` in [4, 16] closest to `target` (ties: the larger); error if none."""
    divisors = [p for p in range(4, 17) if length % p == 0]
    if not divisors:
        raise ValueError(f"window length {length} has no divisor between 4 and 16 to use as patch size; "
                         "choose a window length that is a multiple of 8 (or resample)")
    return min(divisors, key=lambda p: (abs(p - target), -p))


def config_for(channels: int, length: int) -> MMAEConfig:
    """The default config for windows of `length` samples of `channels` channels."""
    return MMAEConfig(channels=channels, length=length, patch=choose_patch(length))


def inference_masks(tokens: int, scales: tuple[int, ...], ratios: tuple[float, ...]) -> np.ndarray:
    """(K, tokens) float32, 1 = hidden; every token is hidden exactly once per (scale, ratio)."""
    masks = []
    for s in scales:
        seg = np.arange(tokens) // s
        for r in ratios:
            k = max(2, int(round(1 / r)))
            masks += [(seg % k == g).astype(np.float32) for g in range(k)]
    return np.stack(masks)


class Attention(nn.Module):
    """Multi-head self-attention with a span per head and a learnable local relative bias."""

    def __init__(self, dim: int, spans: tuple[int, ...], tokens: int):
        super().__init__()
        self.heads, self.head_dim = len(spans), dim // len(spans)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        reach = max(max(spans), 1)
        self.rel_bias = nn.Parameter(torch.zeros(self.heads, 2 * reach + 1))  # the local embedding
        i = torch.arange(tokens)
        off = i[None, :] - i[:, None]
        self.register_buffer("rel_index", off.clamp(-reach, reach) + reach, persistent=False)
        span = torch.tensor([s if s > 0 else tokens for s in spans]).view(-1, 1, 1)
        self.register_buffer("span_bias", (off.abs()[None] > span).float() * SPAN_PENALTY, persistent=False)
        self.register_buffer("local", torch.tensor([float(s > 0) for s in spans]).view(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        bias = self.rel_bias[:, self.rel_index] * self.local + self.span_bias  # (H, n, n)
        att = torch.softmax(q @ k.transpose(-2, -1) * (self.head_dim ** -0.5) + bias, dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, spans: tuple[int, ...], tokens: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, spans, tokens)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MMAELite(nn.Module):
    input_name = "signal"
    outputs = ("point_score", "window_score")

    def __init__(self, config: MMAEConfig | None = None, pretrained: bool = False):  # no pretrained weights
        super().__init__()
        c = self.config = config or MMAEConfig()
        c.check()
        n = c.tokens
        self.embed = nn.Linear(c.channels * c.patch, c.dim)
        self.pos = nn.Parameter(torch.randn(1, n, c.dim) * 0.02)  # global positional embedding
        self.mask_token = nn.Parameter(torch.randn(1, 1, c.dim) * 0.02)
        self.encoder = nn.ModuleList(Block(c.dim, c.spans, n, c.mlp_ratio) for _ in range(c.depth))
        self.enc_norm = nn.LayerNorm(c.dim)
        self.dec_pos = nn.Parameter(torch.randn(1, n, c.dim) * 0.02)
        self.decoder = Block(c.dim, (0,) * c.heads, n, c.mlp_ratio)
        self.dec_norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.channels * c.patch)
        masks = torch.from_numpy(inference_masks(n, c.mask_scales, c.mask_ratios))
        self.register_buffer("infer_masks", masks, persistent=False)
        self.passes = float(len(c.mask_scales) * len(c.mask_ratios))  # times each token is hidden
        self.register_buffer("score_scale", torch.ones(1))

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, n, C * P)."""
        c = self.config
        return x.reshape(-1, c.channels, c.tokens, c.patch).transpose(1, 2).reshape(-1, c.tokens, c.channels * c.patch)

    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Windows (B, C, L) and token masks (B, n) (1 = hidden) -> reconstructed patches (B, n, C * P)."""
        m = mask.unsqueeze(-1)
        tok = self.embed(self.patchify(x)) * (1 - m) + self.mask_token * m + self.pos
        for blk in self.encoder:
            tok = blk(tok)
        tok = self.decoder(self.enc_norm(tok) + self.dec_pos)
        return self.head(self.dec_norm(tok))

    def point_errors(self, signal: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, L): squared error of hidden samples, averaged over masks and channels."""
        c = self.config
        k, n = self.infer_masks.shape
        x = signal.unsqueeze(1).expand(-1, k, -1, -1).reshape(-1, c.channels, c.length)
        masks = self.infer_masks.unsqueeze(0).expand(signal.shape[0], -1, -1).reshape(-1, n)
        err = (self.reconstruct(x, masks) - self.patchify(x)).square() * masks.unsqueeze(-1)
        err = err.reshape(-1, k, n * c.channels * c.patch).sum(1) / self.passes  # (B, n*C*P)
        err = err.reshape(-1, n, c.channels, c.patch).mean(2)  # (B, n, P)
        return err.reshape(-1, c.length)

    def forward(self, signal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        point = self.point_errors(signal) / self.score_scale
        return point, point.mean(-1)


# ------------------------------------------------------------------------------ training

def random_masks(b: int, tokens: int, scales: tuple[int, ...], ratios: tuple[float, ...],
                 gen: torch.Generator) -> torch.Tensor:
    """(b, tokens) training masks: per sample a random scale and ratio; half of them hide random
    segments, half every k-th segment at a random phase (the inference pattern)."""
    out = torch.zeros(b, tokens)
    pick = lambda seq: seq[int(torch.randint(len(seq), (1,), generator=gen))]  # noqa: E731
    for i in range(b):
        s, r = pick(scales), pick(ratios)
        n_seg = math.ceil(tokens / s)
        if float(torch.rand(1, generator=gen)) < 0.5:
            k = max(2, int(round(1 / r)))
            phase = int(torch.randint(k, (1,), generator=gen))
            hidden = (torch.arange(n_seg) % k) == phase
        else:
            hidden = torch.zeros(n_seg, dtype=torch.bool)
            hidden[torch.randperm(n_seg, generator=gen)[: max(1, round(r * n_seg))]] = True
        out[i] = hidden.repeat_interleave(s)[:tokens].float()
    return out


def fit(model: MMAELite, sample_batch: Callable[[np.random.Generator, int], np.ndarray],
        calibration: np.ndarray, seed: int = 0) -> dict:
    """Train on normal windows. `sample_batch(rng, n)` returns n normalised windows (n, C, L);
    `calibration` (N, C, L) normalised normal windows set the score scale."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    model.train()
    reconstruct = ddp.wrap(model, lambda net, x, m: net.reconstruct(x, m))
    losses = []
    bar = progress_bar(range(cfg.steps), desc="training mmae")
    for step in bar:
        x = torch.from_numpy(sample_batch(rng, cfg.batch_size))
        m = random_masks(len(x), cfg.tokens, cfg.mask_scales, cfg.mask_ratios, gen)
        hidden = m.sum().clamp_min(1)  # the whole batch's: each rank's loss is its share of the batch loss
        x, m = ddp.local(x), ddp.local(m)
        err = (reconstruct(x, m) - model.patchify(x)).square().mean(-1)
        loss = (err * m).sum() / hidden * ddp.world()  # DDP averages the ranks' gradients
        losses.append(optimizer_step(opt, sched, loss, clip=1.0))
        show_running_mean(bar, step, loss=losses)
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(calibration, np.float32))
        errs = torch.cat([model.point_errors(x[i:i + 256]) for i in range(0, len(x), 256)])
        model.score_scale.fill_(float(errs.mean().clamp_min(1e-8)))
    return {"final_loss": float(np.mean(losses[-50:])), "steps": cfg.steps, "score_scale": float(model.score_scale)}


def complexity(model: MMAELite) -> dict:
    """Parameters and FLOPs (2 x multiply-adds of matmuls) of one window with all inference masks."""
    c = model.config
    x = torch.zeros(1, c.channels, c.length)
    return {"params": n_params(model), "flops_per_window": count_flops(model, x),
            "masks_per_window": int(model.infer_masks.shape[0]), "tokens": c.tokens, "patch": c.patch}


Config = MMAEConfig
Model = MMAELite
