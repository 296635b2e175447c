"""GridCore: FPFH-Core for organised scans (a depth camera's H x W grid of points) with the
normals, the descriptors and the bank search all inside the graph. On a grid every neighbour is
a fixed pixel offset, so a neighbourhood is a shifted copy of the map: slices of one padded
tensor, no gathers, one static shape for every runtime.

Per scale s (pixels), over 16 neighbours q on the square ring at distance s from a point p, with
d the unit chord p -> q: soft histograms (11 triangular bins on [-1, 1]) of n_p.d, n_q.d and
n_p.n_q. These are FPFH's pair features as cosines (ONNX has no atan2); a point's histogram plus
the mean over its (2s+1)^2 window, as FPFH adds its neighbours'. A neighbour that is invalid or
farther than `gate` x its pixel distance x the point's own spacing (a depth jump) is left
out, and a point with under `min_pairs` of its ring (a boundary) is not "well described".
Normals: the cross products of the chords to the 4 neighbours at the smallest scale, summed
over a 3 x 3 window (a stereo scan is noisy pixel to pixel), oriented by the grid itself.

Then the standardised descriptors' distance to the nearest of a coreset bank (FPFH-Core's
search), and each point's mean over the well-described points of its (2 smooth + 1)^2 window."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import count_flops
from .fpfhcore import FPFHCore, FPFHCoreConfig, fit as fit_bank

BINS = 11
RING_SIZE = 16  # neighbours per scale: evenly spaced on the square ring at Chebyshev distance s
QUADRANTS = ((0, 1), (1, 0), (0, -1), (-1, 0))  # right, down, left, up: consecutive pairs turn one way


@dataclass
class GridCoreConfig(FPFHCoreConfig):
    scales: tuple[int, ...] = (2, 4, 6)  # neighbour rings (pixels of the graph's grid; bench/pointcloud_bench.py)
    gate: float = 6.0  # a neighbour farther than gate x offset x the point's spacing is across a depth jump
    smooth: int = 3  # radius in pixels of the mean of scores
    min_pairs: float = 0.75  # of the ring's neighbours at each scale; points with fewer (boundaries) take their neighbours' scores
    dim: int = field(default=3 * 3 * BINS)  # set by fit: 33 per scale


def ring(s: int, size: int = RING_SIZE) -> list[tuple[int, int]]:
    """(dy, dx) offsets on the square of half-width s, clockwise from the right, at most `size`."""
    side = [(-s + i, s) for i in range(2 * s)] + [(s, s - i) for i in range(2 * s)]
    square = side + [(-dy, -dx) for dy, dx in side]
    return [square[i] for i in np.unique(np.linspace(0, len(square), min(size, len(square)), endpoint=False).astype(int))]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(1, keepdim=True)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ax, ay, az = a[:, 0:1], a[:, 1:2], a[:, 2:3]
    bx, by, bz = b[:, 0:1], b[:, 1:2], b[:, 2:3]
    return torch.cat([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], 1)


def _unit(a: torch.Tensor) -> torch.Tensor:
    return a / _dot(a, a).clamp_min(1e-24).sqrt()


def _window_mean(t: torch.Tensor, weight: torch.Tensor, radius: int, fallback: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of t over the (2r+1)^2 window, counting only where weight is 1 (`fallback` where
    the window has no such point)."""
    k = 2 * radius + 1
    num = F.avg_pool2d(t * weight, k, 1, radius)
    den = F.avg_pool2d(weight, k, 1, radius)
    mean = num / (den + 1e-6)
    return mean if fallback is None else torch.where(den > 0, mean, fallback)


class GridCore(nn.Module):
    outputs = ("point_score",)
    input_name = "xyz"

    def __init__(self, config: GridCoreConfig | None = None, pretrained: bool = False):
        super().__init__()
        self.config = cfg = config or GridCoreConfig()
        cfg.dim = 3 * BINS * len(cfg.scales)
        self.search = FPFHCore(cfg)
        self.register_buffer("centres", torch.linspace(-1, 1, BINS).view(1, BINS, 1, 1))

    def describe(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n, 3, H, W) points (invalid ones 0, 0, 0) -> ((n, dim, H, W) descriptors, (n, 1, H, W)
        1 where a point is valid and has `min_pairs` usable neighbours at every scale, (n, 1, H, W)
        1 where it has one at least)."""
        cfg = self.config
        h, w = xyz.shape[2], xyz.shape[3]
        r = max(cfg.scales)
        valid = (_dot(xyz, xyz) > 0).float()
        padded_p, padded_v = F.pad(xyz, (r, r, r, r)), F.pad(valid, (r, r, r, r))

        def at(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
            return t[:, :, r + dy : r + dy + h, r + dx : r + dx + w]

        # the point's spacing: its nearest of the 4 one-pixel neighbours (robust at depth jumps)
        far = 1e30
        near = [torch.where(at(padded_v, dy, dx) * valid > 0, _dot(at(padded_p, dy, dx) - xyz, at(padded_p, dy, dx) - xyz), far)
                for dy, dx in QUADRANTS]
        spacing = torch.stack(near, 0).amin(0).clamp_max(far).sqrt()

        def usable(dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
            """The chord to the neighbour at (dy, dx), and 1 where that neighbour counts."""
            chord = at(padded_p, dy, dx) - xyz
            reach = cfg.gate * float(np.hypot(dy, dx))
            ok = at(padded_v, dy, dx) * valid * (_dot(chord, chord).sqrt() < reach * spacing).float()
            return chord, ok

        s0 = min(cfg.scales)
        chords = [usable(dy * s0, dx * s0) for dy, dx in QUADRANTS]
        normal = sum(_cross(a, b) * (oa * ob) for (a, oa), (b, ob) in zip(chords, chords[1:] + chords[:1]))
        normal = _unit(F.avg_pool2d(normal, 3, 1, 1))
        padded_n = F.pad(normal, (r, r, r, r))

        parts, described, some = [], valid, valid
        for s in cfg.scales:
            hist, count = 0, 0
            offsets = ring(s)
            for dy, dx in offsets:
                chord, ok = usable(dy, dx)
                d = _unit(chord)
                nq = at(padded_n, dy, dx)
                feats = (_dot(normal, d), _dot(nq, d), _dot(normal, nq))
                hist = hist + torch.cat([F.relu(1 - (f - self.centres).abs() * (BINS - 1) / 2) for f in feats], 1) * ok
                count = count + ok
            own = hist * (100.0 / (count + 1e-6))  # per cent of the usable pairs, as FPFH
            has = (count >= cfg.min_pairs * len(offsets)).float()
            parts.append(own + _window_mean(own, has, s))
            described, some = described * has, some * (count > 0).float()
        return torch.cat(parts, 1), described, some

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) -> (n, H, W) raw point scores, smoothed over the described points;
        negative where no point near it is well described (see GridSpec.point_scores)."""
        desc, ok, some = self.describe(xyz)
        n, dim, h, w = desc.shape
        raw = self.search(desc.reshape(n, dim, h * w)).reshape(n, 1, h, w)
        r = self.config.smooth
        # boundary points (few neighbours, noisy descriptors) take the described points' scores
        # around them; where there are none, the mean of the points that have a neighbour, negated:
        # a point score all the same (its magnitude), but not one the cloud score may take
        return _window_mean(raw, ok, r, -_window_mean(raw, some, r))[:, 0]


def fit(model: GridCore, descriptors: np.ndarray, seed: int = 0) -> dict:
    """The bank from normal descriptors (M, dim) of described points (GridCore.describe)."""
    return fit_bank(model.search, descriptors, seed)


def complexity(model: GridCore, shape: tuple[int, int]) -> dict:
    x = torch.zeros(1, 3, *shape)
    bank = model.search.bank
    return {"bank_entries": len(bank), "bank_mb": round(bank.numel() * 4 / 1e6, 2),
            "flops": count_flops(model, x), "grid": list(shape)}


Config = GridCoreConfig
Model = GridCore
FORM = "grid"  # takes organised scans whole (edgead.tasks.pointcloud.grid)
