"""Perlin gradient noise (numpy): the blob shapes of synthetic defects, for every modality."""
from __future__ import annotations

import numpy as np


def perlin(h: int, w: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin gradient noise (h, w) in about [-0.7, 0.7], `cells` lattice cells on the longer side."""
    gy, gx = max(1, round(cells * h / max(h, w))), max(1, round(cells * w / max(h, w)))
    angles = rng.uniform(0, 2 * np.pi, (gy + 1, gx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], -1)
    y, x = np.meshgrid(np.linspace(0, gy, h, endpoint=False), np.linspace(0, gx, w, endpoint=False), indexing="ij")
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = y - y0, x - x0

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[y0 + dy, x0 + dx]
        return g[..., 0] * (fx - dx) + g[..., 1] * (fy - dy)

    fade = lambda t: t * t * t * (t * (t * 6 - 15) + 10)  # noqa: E731 - Perlin's quintic
    u, v = fade(fx), fade(fy)
    top = corner(0, 0) * (1 - u) + corner(0, 1) * u
    bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
    return top * (1 - v) + bottom * v
