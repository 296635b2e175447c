"""UniAD-lite: one feature-reconstruction Transformer for many products.

The shared patch features (EfficientNet-Lite taps, standardised) averaged to a stride-16 grid are
the tokens. An encoder reads them; a decoder rebuilds each token from layer-wise learned queries
that attend to the encoder's memory through neighbour-masked attention: a token may not look at
the k x k tokens around it, so it cannot copy itself (UniAD's cure for the "identical shortcut"
that lets a reconstruction model rebuild anomalies too). Training adds feature jitter. The map is
the per-token reconstruction error.

The mask is a constant additive bias of NEIGHBOUR_PENALTY on the logits: no loop, no -inf, so it
exports and quantizes like any other add."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..core.progress import progress_bar, show_running_mean
from . import ddp
from .common import PATCH_STRIDES, PatchFeatures, backbone_complexity, count_flops, fitted_features, n_params, optimizer_step

UNIFIED = True  # trains on several products at once (edgead train --data A --data B)
RESIZE = "stretch"  # learned per-position embeddings want the part at the same place in every image
NEIGHBOUR_PENALTY = -20.0  # exp(-20) ~ 2e-9: masked, yet leaves INT8 resolution for the logits (as in MMAE-lite)


@dataclass
class UniADConfig:
    backbone: str = "lite0"
    width: int = 128  # token width inside the Transformer
    heads: int = 4
    ffn: int = 256
    encoder_layers: int = 2
    decoder_layers: int = 2
    neighbour: int = 5  # a decoder token may not attend to the k x k tokens centred on it (odd; 1 = itself only)
    jitter: float = 20.0  # feature jitter in training: noise of std jitter * |f| / C per channel (UniAD's scale)
    steps: int = 3000
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 1e-4
    grid_h: int = 16  # set by fit: the token grid of the training images
    grid_w: int = 16


def check_settings(name: str, cfg) -> None:
    """The mask and head settings every neighbour-masked Transformer here needs."""
    if cfg.neighbour < 1 or cfg.neighbour % 2 == 0:
        raise ValueError(f"{name}: neighbour must be an odd number of tokens >= 1, got {cfg.neighbour}")
    if cfg.width % cfg.heads:
        raise ValueError(f"{name}: width {cfg.width} must be a multiple of heads {cfg.heads}")


def feature_tokens(features: PatchFeatures, image: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) -> standardised stride-16 feature tokens (n, h*w, C)."""
    return F.avg_pool2d(features(image), 2).flatten(2).transpose(1, 2)


def fitted_tokens(features: PatchFeatures, images: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """Normal training images -> their stride-16 tokens (n, h*w, C), after fitting the feature
    standardisation on them, and the token grid (h, w)."""
    with torch.no_grad():
        tokens = F.avg_pool2d(fitted_features(features, images), 2)
    return tokens.flatten(2).transpose(1, 2).contiguous(), tuple(tokens.shape[-2:])


def jitter_noise(tokens: torch.Tensor, jitter: float) -> torch.Tensor:
    """UniAD's feature jitter: noise of std jitter * |token| / C per channel."""
    return torch.randn_like(tokens) * tokens.norm(dim=-1, keepdim=True) / tokens.shape[-1] * jitter


def head_optimizer(model: nn.Module, cfg) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a one-cycle schedule over everything but the frozen backbone."""
    head = [p for name, p in model.named_parameters() if not name.startswith("features.")]
    opt = torch.optim.AdamW(head, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)


def encode(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """A model's `embed`, then its `encoder` layers with its position embedding `pos`."""
    x = model.embed(tokens)
    for layer in model.encoder:
        x = layer(x, model.pos)
    return x


def check_grid(h: int, w: int, k: int) -> None:
    """Every token must keep keys outside its k x k window: where all are masked the constant
    cancels in the softmax and the token may copy itself again."""
    if bool((neighbour_bias(h, w, k) < 0).all(-1).any()):
        raise UsageError(f"uniad: a {h} x {w} token grid is too small for a {k} x {k} neighbour mask (some tokens "
                         f"would see only their own window); raise --image-size to at least {16 * (k + 1)} px "
                         f"or lower it with --set neighbour=N")


def neighbour_bias(h: int, w: int, k: int) -> torch.Tensor:
    """(h*w, h*w) additive attention bias: NEIGHBOUR_PENALTY where the key lies in the k x k
    window centred on the query, 0 elsewhere."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    near = ((ys[:, None] - ys[None, :]).abs() <= k // 2) & ((xs[:, None] - xs[None, :]).abs() <= k // 2)
    return near.float() * NEIGHBOUR_PENALTY


class Attention(nn.Module):
    """Multi-head attention written with matmuls and an optional constant additive bias."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def weights(self, query: torch.Tensor, key: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        b, n, _ = query.shape
        q = self.q(query).reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(key).reshape(b, key.shape[1], self.heads, self.head_dim).transpose(1, 2)
        logits = q @ k.transpose(-2, -1) * (self.head_dim ** -0.5)
        return torch.softmax(logits + bias if bias is not None else logits, dim=-1)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = query.shape
        v = self.v(value).reshape(b, value.shape[1], self.heads, self.head_dim).transpose(1, 2)
        return self.proj((self.weights(query, key, bias) @ v).transpose(1, 2).reshape(b, n, d))


def ffn(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.attn, self.mlp = Attention(dim, heads), ffn(dim, hidden)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x + pos, x + pos, x))
        return self.norm2(x + self.mlp(x))


class DecoderLayer(nn.Module):
    """Its own learned query per token reads the previous layer's output, then the encoder's
    memory; both reads are neighbour-masked."""

    def __init__(self, dim: int, heads: int, hidden: int, tokens: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.read, self.cross, self.mlp = Attention(dim, heads), Attention(dim, heads), ffn(dim, hidden)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, out: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(out.shape[0], -1, -1)
        t = self.norm1(q + self.read(q + pos, out + pos, out, bias))
        t = self.norm2(t + self.cross(t + pos, memory + pos, memory, bias))
        return self.norm3(t + self.mlp(t))


class UniADLite(nn.Module):
    outputs = ("anomaly_map",)

    def __init__(self, config: UniADConfig | None = None, pretrained: bool = True):
        super().__init__()
        self.config = cfg = config or UniADConfig()
        check_settings("uniad", cfg)
        self.features = PatchFeatures(pretrained, cfg.backbone)
        c, tokens = self.features.channels, cfg.grid_h * cfg.grid_w
        self.embed, self.unembed = nn.Linear(c, cfg.width), nn.Linear(cfg.width, c)
        self.pos = nn.Parameter(torch.randn(1, tokens, cfg.width) * 0.02)
        self.encoder = nn.ModuleList(EncoderLayer(cfg.width, cfg.heads, cfg.ffn) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg.width, cfg.heads, cfg.ffn, tokens) for _ in range(cfg.decoder_layers))
        self.register_buffer("bias", neighbour_bias(cfg.grid_h, cfg.grid_w, cfg.neighbour), persistent=False)
        check_grid(cfg.grid_h, cfg.grid_w, cfg.neighbour)

    def set_grid(self, h: int, w: int) -> None:
        """Fresh per-token parameters for an h x w token grid (another input size)."""
        cfg = self.config
        cfg.grid_h, cfg.grid_w = h, w
        self.pos = nn.Parameter(torch.randn(1, h * w, cfg.width) * 0.02)
        for layer in self.decoder:
            layer.query = nn.Parameter(torch.randn(1, h * w, cfg.width) * 0.02)
        check_grid(h, w, cfg.neighbour)
        self.bias = neighbour_bias(h, w, cfg.neighbour)

    def tokens(self, image: torch.Tensor) -> torch.Tensor:
        return feature_tokens(self.features, image)

    def reconstruct(self, tokens: torch.Tensor) -> torch.Tensor:
        x = encode(self, tokens)
        out = x
        for layer in self.decoder:
            out = layer(out, x, self.pos, self.bias)
        return self.unembed(out)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        t = self.tokens(image)
        err = (self.reconstruct(t) - t).square().sum(-1)  # (n, tokens)
        # sqrt(err + 1) as in PatchCore-lite: no infinite slope at 0 for INT8 and rounding.
        return (err + 1).sqrt().reshape(-1, 1, self.config.grid_h, self.config.grid_w)


def fit(model: UniADLite, images: np.ndarray, seed: int = 0, groups: np.ndarray | None = None) -> dict:
    """Train on normal images (N, 3, H, W) float32. `groups` (N,) names each image's product:
    batches draw products uniformly, so that a product with few images weighs as much as one
    with many."""
    cfg = model.config
    tokens, (h, w) = fitted_tokens(model.features, images)  # (n, h*w, C)
    n = len(tokens)
    if (h, w) != (cfg.grid_h, cfg.grid_w):
        model.set_grid(h, w)
    groups = np.zeros(n, int) if groups is None else np.asarray(groups)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt, sched = head_optimizer(model, cfg)
    model.train()
    reconstruct = ddp.wrap(model, lambda m, t: m.reconstruct(t))
    losses = []
    bar = progress_bar(range(cfg.steps), desc="training uniad")
    for step in bar:
        clean = tokens[[rng.choice(members[i]) for i in rng.integers(0, len(members), cfg.batch_size)]]
        noisy = clean + jitter_noise(clean, cfg.jitter)
        share = ddp.share(len(clean))
        clean, noisy = ddp.local(clean), ddp.local(noisy)  # drawn as one process would, trained on by this rank
        loss = (reconstruct(noisy) - clean).square().mean() * share
        losses.append(optimizer_step(opt, sched, loss, clip=1.0))
        show_running_mean(bar, step, loss=losses)
    model.eval()
    return {"final_loss": float(np.mean(losses[-50:])), "steps": cfg.steps, "n_images": n,
            "products": len(members), "grid": [h, w]}


def complexity(model: UniADLite, height: int, width: int) -> dict:
    x = torch.zeros(1, 3, height, width)
    out = backbone_complexity(model.features.backbone, x, PATCH_STRIDES)
    head = [m for name, m in model.named_children() if name != "features"]
    total = count_flops(model, x)
    out.update({"head_params": n_params(*head) + model.pos.numel(), "head_flops": total - out["teacher_flops"],
                "total_flops": total})
    return out


Config = UniADConfig
Model = UniADLite
