"""PRADOT-lite: prototypes of normal patch features fitted with optimal transport, local and global.

Local prototypes belong to a cell of the stride-16 grid (what belongs where: a part's layout);
global ones may match anywhere (what may appear at all). Fitting transports each batch of normal
patch features onto the prototypes with entropic optimal transport (log-domain Sinkhorn) under
the cost (1 - a) x feature distance + a x grid distance, and moves every prototype towards its
barycentre (an EMA). The balanced plan gives every prototype an equal share of the patches;
`assign="kmeans"` uses hard nearest assignments instead, for the ablation.

The feature distance is squared Euclidean, in units of the typical distance between two normal
images' patches at one place. The paper's cosine suits its uncentred ResNet features; these
features are standardised (centred), where a cosine mostly measures noise around the mean.

Inference needs no transport: a patch's score is its cost to the nearest prototype. Local
prototypes are searched in the patch's own and 8 neighbouring cells by shifting the prototype
maps (static slices, no gathers); global ones with one 1x1 convolution and a min. Each cost is
divided by its mean on the normal training patches (constants: no per-image normalisation) and
the two are added."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import PatchFeatures, constants_complexity, fitted_features, tensor_bytes
from ..core.progress import progress_bar

RESIZE = "stretch"  # local prototypes want the part at the same place in every image
OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
MODES = ("both", "local", "global")
ASSIGN = ("ot", "kmeans")


@dataclass
class PRADOTConfig:
    backbone: str = "lite1"
    dim: int = 0  # PCA projection of the patch features to this many dimensions; 0: all of them
    whiten: bool = False  # divide each principal direction by its spread (+ 10 % of the mean spread)
    per_cell: int = 16  # local prototypes per cell of the stride-16 grid (the paper's; bench/pradot_ablation.py)
    n_global: int = 64
    alpha: float = 0.3  # weight of the grid distance in the local cost (the paper's)
    reg: float = 0.05  # entropic regularisation of the transport (costs are about 0-2)
    iters: int = 30  # Sinkhorn iterations per batch
    epochs: int = 8  # passes over the normal patches
    batch: int = 16  # images per transport problem
    momentum: float = 0.2  # EMA step towards the barycentres
    mode: str = "both"  # "local", "global" or "both"
    assign: str = "ot"  # "ot" (Sinkhorn) or "kmeans" (hard nearest), same cost, init and updates
    grid_h: int = 1  # set by fit
    grid_w: int = 1


def _sq(x: torch.Tensor, dim: int) -> torch.Tensor:
    return (x * x).sum(dim, keepdim=True)


def _shift(t: torch.Tensor, dy: int, dx: int, fill: float = 0.0) -> torch.Tensor:
    """out[..., y, x] = t[..., y - dy, x - dx] (a pad and a static slice), `fill` outside."""
    h, w = t.shape[2], t.shape[3]
    return F.pad(t, (1, 1, 1, 1), value=fill)[:, :, 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]


class PRADOTLite(nn.Module):
    outputs = ("anomaly_map",)

    def __init__(self, config: PRADOTConfig | None = None, pretrained: bool = True):
        super().__init__()
        self.config = cfg = config or PRADOTConfig()
        if cfg.mode not in MODES or cfg.assign not in ASSIGN:
            raise ValueError(f"pradot: mode must be one of {MODES} and assign one of {ASSIGN}")
        self.features = PatchFeatures(pretrained, cfg.backbone)
        c, h, w = self.features.channels, cfg.grid_h, cfg.grid_w
        d = cfg.dim or c
        self.register_buffer("centre", torch.zeros(1, c, 1, 1))
        self.register_buffer("projection", torch.zeros(d, c, 1, 1))
        self.register_buffer("local_protos", torch.zeros(cfg.per_cell, d, h, w))
        self.register_buffer("global_protos", torch.zeros(cfg.n_global, d, 1, 1))
        self.register_buffer("feature_scale", torch.ones(()))  # the unit of feature distance (see fit)
        self.register_buffer("scales", torch.ones(2))  # mean local and global cost on normal patches

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) -> (n, d, h, w) patch embeddings on the stride-16 grid, scaled so that a
        squared distance of 1 is the typical one between two normal images' patches at one place."""
        f = F.avg_pool2d(self.features(image), 2)
        return F.conv2d(f - self.centre, self.projection) / self.feature_scale.sqrt()

    def local_cost(self, u: torch.Tensor) -> torch.Tensor:
        """(n, 1, h, w): min over the 3 x 3 neighbouring cells' prototypes of the local cost.
        The patches move, not the prototypes: an optimiser would fold shifted copies of a
        constant into 9 constants (and an INT8 tool quantize each)."""
        a = self.config.alpha
        protos = self.local_protos
        norms = _sq(protos, 1)
        uu = _sq(u, 1)
        best = None
        for dy, dx in OFFSETS:
            # the patch at q, moved to cell c = q + (dy, dx), against that cell's prototypes
            moved, moved_sq = _shift(u, dy, dx), _shift(uu, dy, dx)
            d2 = torch.cat([(moved * protos[k : k + 1]).sum(1, keepdim=True) * -2 + norms[k : k + 1]
                            for k in range(protos.shape[0])], 1).amin(1, keepdim=True) + moved_sq
            cost = (1 - a) * d2.clamp_min(0) + a * math.hypot(dy, dx) / math.sqrt(2)
            cost = _shift(cost, -dy, -dx, fill=1e3)  # back to the patch's own place; no cell there: 1e3
            best = cost if best is None else torch.minimum(best, cost)
        return best

    def global_cost(self, u: torch.Tensor) -> torch.Tensor:
        g = self.global_protos
        d2 = F.conv2d(u, -2 * g, _sq(g, 1).flatten()).amin(1, keepdim=True) + _sq(u, 1)
        return d2.clamp_min(0)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        u = self.embed(image)
        mode = self.config.mode
        out = 0
        if mode in ("both", "local"):
            out = out + self.local_cost(u) / self.scales[0]
        if mode in ("both", "global"):
            out = out + self.global_cost(u) / self.scales[1]
        return out


# ------------------------------------------------------------------------------ fitting


def sinkhorn(cost: torch.Tensor, weight: torch.Tensor, reg: float, iters: int) -> torch.Tensor:
    """Entropic transport plans, batched: cost (B, m, k), weight (B, m) of each patch (0: none),
    uniform over the k prototypes; log-domain for stability. Returns plans (B, m, k)."""
    log_a = torch.log(weight / weight.sum(1, keepdim=True).clamp_min(1e-12) + 1e-30)
    log_b = torch.full(cost.shape[::2], -math.log(cost.shape[2]), dtype=cost.dtype)
    log_k = -cost / reg
    g = torch.zeros_like(log_b)
    for _ in range(iters):
        f = log_a - torch.logsumexp(log_k + g[:, None, :], 2)
        g = log_b - torch.logsumexp(log_k + f[:, :, None], 1)
    return torch.exp(log_k + f[:, :, None] + g[:, None, :]) * (weight > 0)[:, :, None]


def _plan(cost: torch.Tensor, weight: torch.Tensor, cfg: PRADOTConfig) -> torch.Tensor:
    if cfg.assign == "ot":
        return sinkhorn(cost, weight, cfg.reg, cfg.iters)
    hard = F.one_hot(cost.argmin(2), cost.shape[2]).to(cost.dtype)
    return hard * (weight > 0)[:, :, None]


def _step(protos: torch.Tensor, x: torch.Tensor, plan: torch.Tensor, momentum: float) -> torch.Tensor:
    """Move prototypes (B, k, d) towards the barycentres of their share of patches x (B, m, d)."""
    mass = plan.sum(1)[:, :, None]
    bary = torch.bmm(plan.transpose(1, 2), x) / mass.clamp_min(1e-12)
    return torch.where(mass > 0, (1 - momentum) * protos + momentum * bary, protos)  # one that got nothing stays


def _d2(x: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Squared distances (B, m, k) between patches (B, m, d) and prototypes (B, k, d)."""
    return (_sq(x, 2) - 2 * torch.bmm(x, protos.transpose(1, 2)) + _sq(protos, 2).transpose(1, 2)).clamp_min(0)


def _neighbourhood(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, d, h, w) -> per cell, the patches of its 3 x 3 neighbourhood in every image:
    (h*w, 9n, d) features, (h*w, 9n) 1 where inside the grid, (9n,) grid distance / sqrt(2)."""
    n, d, h, w = u.shape
    ones = torch.ones(n, 1, h, w)
    feats = [_shift(u, -dy, -dx) for dy, dx in OFFSETS]  # at cell c: the patch at c + (dy, dx)
    valid = [_shift(ones, -dy, -dx) for dy, dx in OFFSETS]
    x = torch.stack(feats).permute(3, 4, 0, 1, 2).reshape(h * w, 9 * n, d)
    v = torch.stack(valid).permute(3, 4, 0, 1, 2).reshape(h * w, 9 * n)
    dist = torch.tensor([math.hypot(dy, dx) / math.sqrt(2) for dy, dx in OFFSETS]).repeat_interleave(n)
    return x, v, dist


def fit(model: PRADOTLite, images: np.ndarray, seed: int = 0) -> dict:
    """Projection, local and global prototypes and cost scales from normal images (N, 3, H, W)."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        f = F.avg_pool2d(fitted_features(model.features, images), 2).double()
    n, c, h, w = f.shape
    cfg.grid_h, cfg.grid_w = h, w
    flat = f.permute(0, 2, 3, 1).reshape(-1, c)
    centre = flat.mean(0)
    if cfg.dim or cfg.whiten:
        dim = min(cfg.dim or c, c, len(flat) - 1)
        sample = flat[torch.randperm(len(flat), generator=gen)[:20000]] - centre
        _, sv, v = torch.linalg.svd(sample, full_matrices=False)
        projection = v[:dim]
        if cfg.whiten:
            var = sv * sv / len(sample)
            projection = projection / (var[:dim] + 0.1 * var.mean()).sqrt()[:, None]
        cfg.dim = dim
    else:
        dim, projection = c, torch.eye(c, dtype=f.dtype)
    model.centre = centre.float().view(1, c, 1, 1)
    model.projection = projection.float().view(dim, c, 1, 1).contiguous()
    with torch.no_grad():
        u = F.conv2d(f.float() - model.centre, model.projection)  # (n, dim, h, w)

    # start: each cell's prototypes at random images' patches of that cell; global ones at random patches
    local = u[torch.randint(0, n, (cfg.per_cell,), generator=gen)].permute(2, 3, 0, 1).reshape(h * w, cfg.per_cell, dim)
    local = local + 0.01 * torch.randn(local.shape, generator=gen)
    patches = u.permute(0, 2, 3, 1).reshape(-1, dim)
    if len(patches) >= cfg.n_global:
        glob = patches[torch.randperm(len(patches), generator=gen)[: cfg.n_global]][None].clone()
    else:  # fewer normal patches than prototypes: repeats, moved apart a little
        glob = patches[torch.randint(0, len(patches), (cfg.n_global,), generator=gen)][None]
        glob = glob + 0.01 * torch.randn(glob.shape, generator=gen)
    # the unit of feature distance: a normal patch's mean squared distance to another image's
    # patch at its place, so that the grid term (alpha, in cells) has the same scale everywhere
    model.feature_scale = (u - u.roll(1, 0)).pow(2).sum(1).mean().clamp_min(1e-12).float()
    u = u / model.feature_scale.sqrt()
    local, glob = local / model.feature_scale.sqrt(), glob / model.feature_scale.sqrt()
    for _ in progress_bar(range(cfg.epochs), desc=f"prototypes ({cfg.assign})"):
        for s in torch.randperm(n, generator=gen).split(cfg.batch):
            x, valid, dist = _neighbourhood(u[s])
            cost = (1 - cfg.alpha) * _d2(x, local) + cfg.alpha * dist[None, :, None]
            local = _step(local, x, _plan(cost, valid, cfg), cfg.momentum)
            xg = u[s].permute(0, 2, 3, 1).reshape(1, -1, dim)
            glob = _step(glob, xg, _plan(_d2(xg, glob), torch.ones(xg.shape[:2]), cfg), cfg.momentum)
    model.local_protos = local.reshape(h, w, cfg.per_cell, dim).permute(2, 3, 0, 1).contiguous()
    model.global_protos = glob[0].reshape(cfg.n_global, dim, 1, 1).contiguous()
    with torch.no_grad():
        lc, gc = model.local_cost(u), model.global_cost(u)
    model.scales = torch.stack([lc.mean(), gc.mean()]).float()
    return {"n_images": n, "grid": [h, w], "dim": dim, "prototypes_mb": round(tensor_bytes(constants(model)) / 1e6, 2),
            "mean_cost": {"local": round(float(lc.mean()), 4), "global": round(float(gc.mean()), 4)}}


def constants(model: PRADOTLite) -> tuple[torch.Tensor, ...]:
    return model.centre, model.projection, model.local_protos, model.global_protos


def complexity(model: PRADOTLite, height: int, width: int) -> dict:
    return constants_complexity(model, height, width, "prototypes_mb", constants(model))


Config = PRADOTConfig
Model = PRADOTLite
