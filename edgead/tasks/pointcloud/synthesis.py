"""Synthetic surface defects on real scans.

3D-PNAS (Cheng & Du 2025): around a random centre, the points are projected onto their local
tangent plane (a local frame, so that a closed part does not get twin defects front and back),
a multi-octave Perlin field is sampled there, the points where it is strongest (a set fraction
of the scan, 1-5 % by default, as in real benchmarks) are pushed along their normals, outwards
(bulge) or inwards (dent), by a strength in multiples of the scan's point spacing, tapering to 0
at the defect's edge. The displaced points are the ground truth.

A second, different generator never used for training (so that a detector is not only scored on
the generator it may have learned): spherical dents and holes (a patch of points removed; the
ring of points around it is the ground truth)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgead.core.errors import DataError
from edgead.core.perlin import perlin
from edgead.tasks.pointcloud.features import neighbours, normals, spacing
from edgead.tasks.pointcloud.io import Cloud

STRENGTHS = {"subtle": 2.0, "medium": 4.0, "strong": 8.0}  # displacement in point spacings
NORMAL_NEIGHBOURS = 16
FIELD_GRID = 64  # Perlin field resolution over the defect's tangent-plane extent


@dataclass
class PnasSpec:
    strength: float = STRENGTHS["medium"]  # peak displacement, in multiples of the point spacing
    area: tuple[float, float] = (0.01, 0.05)  # fraction of the valid points a defect covers
    scale: int = 2  # Perlin lattice cells across the defect region at the first octave
    octaves: int = 3
    persistence: float = 0.5  # amplitude factor per octave
    lacunarity: float = 2.0  # frequency factor per octave
    sign: int = 0  # +1 bulge, -1 dent, 0 either at random


@dataclass
class Defect:
    cloud: Cloud  # the defective scan (organised scans keep their grid)
    mask: np.ndarray  # (N,) bool: the points that make the defect
    kind: str


def fractal(cells: int, spec: PnasSpec, rng: np.random.Generator) -> np.ndarray:
    """(FIELD_GRID, FIELD_GRID) multi-octave Perlin noise scaled to [0, 1]."""
    field, amp = np.zeros((FIELD_GRID, FIELD_GRID)), 1.0
    for o in range(spec.octaves):
        field += amp * perlin(FIELD_GRID, FIELD_GRID, max(1, round(cells * spec.lacunarity ** o)), rng)
        amp *= spec.persistence
    return (field - field.min()) / max(np.ptp(field), 1e-12)


def _local_frame(points: np.ndarray) -> np.ndarray:
    """(3, 3) rows: the region's two principal in-plane directions, then its normal."""
    c = points - points.mean(0)
    return np.linalg.svd(c, full_matrices=False)[2]


def _prepare(cloud: Cloud, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    valid = np.flatnonzero(cloud.valid)
    if len(valid) < 4 * NORMAL_NEIGHBOURS:
        raise DataError(f"{cloud.source}: {len(valid)} valid points; a synthetic defect needs at least {4 * NORMAL_NEIGHBOURS}")
    pts = cloud.points[valid].astype(np.float64)
    nrm = normals(pts, neighbours(pts, NORMAL_NEIGHBOURS), cloud.sensor())
    return valid, pts, nrm, spacing(pts), int(rng.integers(0, len(valid)))


def _defect(cloud: Cloud, points: np.ndarray, marked: np.ndarray, kind: str) -> Defect:
    """The scan with its points replaced by `points`, and `marked` (indices) as the ground truth."""
    mask = np.zeros(len(cloud.points), bool)
    mask[marked] = True
    return Defect(Cloud(points, cloud.grid, cloud.viewpoint, cloud.source), mask, kind)


def pnas(cloud: Cloud, spec: PnasSpec, seed: int) -> Defect:
    """One 3D-PNAS defect on `cloud`, deterministic for `seed`."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    valid, pts, nrm, step, centre = _prepare(cloud, rng)
    target = max(3, int(rng.uniform(*spec.area) * len(valid)))
    region_size = min(len(pts), 3 * target)
    _, region = cKDTree(pts).query(pts[centre], k=region_size)
    region = np.atleast_1d(region)
    frame = _local_frame(pts[region])
    uv = (pts[region] - pts[centre]) @ frame[:2].T
    radius = np.abs(uv).max(0).max() + 1e-12
    field = fractal(spec.scale, spec, rng)
    gx = np.clip(((uv[:, 0] / radius + 1) / 2 * (FIELD_GRID - 1)).round().astype(int), 0, FIELD_GRID - 1)
    gy = np.clip(((uv[:, 1] / radius + 1) / 2 * (FIELD_GRID - 1)).round().astype(int), 0, FIELD_GRID - 1)
    falloff = np.clip(1 - np.linalg.norm(uv, axis=1) / radius, 0, 1)  # one blob around the centre
    value = field[gy, gx] * falloff
    chosen = np.argsort(-value)[:target]
    edge = value[chosen].min()
    taper = (value[chosen] - edge) / max(value[chosen].max() - edge, 1e-12)
    sign = spec.sign or (1 if rng.random() < 0.5 else -1)
    moved = region[chosen]
    out = cloud.points.copy()
    out[valid[moved]] = (pts[moved] + sign * spec.strength * step * np.sqrt(taper)[:, None] * nrm[moved]).astype(np.float32)
    return _defect(cloud, out, valid[moved], "bulge" if sign > 0 else "dent")


def sphere_dent(cloud: Cloud, depth: float, seed: int, area: tuple[float, float] = (0.01, 0.05)) -> Defect:
    """A spherical-cap dent: the points within a radius of a random centre pushed inwards by
    depth * sqrt(1 - (r / radius)^2) point spacings."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    valid, pts, nrm, step, centre = _prepare(cloud, rng)
    target = max(3, int(rng.uniform(*area) * len(valid)))
    dist, near = cKDTree(pts).query(pts[centre], k=min(len(pts), target))
    dist, near = np.atleast_1d(dist), np.atleast_1d(near)
    cap = np.sqrt(np.clip(1 - (dist / (dist.max() + 1e-12)) ** 2, 0, 1))
    out = cloud.points.copy()
    out[valid[near]] = (pts[near] - depth * step * cap[:, None] * nrm[near]).astype(np.float32)
    return _defect(cloud, out, valid[near], "sphere_dent")


def hole(cloud: Cloud, seed: int, area: tuple[float, float] = (0.01, 0.05)) -> Defect:
    """A patch of points removed (set invalid, so an organised scan keeps its grid); the ring of
    points around the hole, as many as were removed, is the ground truth."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    valid, pts, _, _, centre = _prepare(cloud, rng)
    target = max(3, int(rng.uniform(*area) * len(valid)))
    _, near = cKDTree(pts).query(pts[centre], k=min(len(pts), 2 * target))
    removed, ring = near[:target], near[target:]
    out = cloud.points.copy()
    out[valid[removed]] = np.nan
    return _defect(cloud, out, valid[ring], "hole")
