"""Local geometry of a point cloud in numpy + scipy (the device computes it too, before the
graph): k nearest neighbours, PCA normals turned towards the sensor, and FPFH descriptors
(Rusu et al. 2009: three angles between each point pair's normals, 11-bin histograms each, a
point's own plus its neighbours' weighted by 1/d^2, as Open3D does). Descriptors at several
neighbourhood sizes are concatenated: small defects show at the small one, shallow ones at the
large one."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINS = 11
FPFH_DIM = 3 * BINS
PAIRS = 16384 * 32  # point pairs per block of the pair computation (~100 MB)


@dataclass
class Neighbours:
    distance: np.ndarray  # (N, K + 1) float32, column 0 is the point itself
    index: np.ndarray  # (N, K + 1) int


def neighbours(points: np.ndarray, k: int) -> Neighbours:
    from scipy.spatial import cKDTree

    k = min(k, len(points) - 1)
    d, idx = cKDTree(points).query(points, k=k + 1)
    return Neighbours(d.astype(np.float32), idx)


def spacing(points: np.ndarray) -> float:
    """The median distance from a point to its nearest neighbour: the scan's resolution, the unit
    of displacement strengths and radii."""
    return float(np.median(neighbours(points, 1).distance[:, 1]))


def normals(points: np.ndarray, nb: Neighbours, viewpoint: np.ndarray) -> np.ndarray:
    """(N, 3) unit normals: the least-variance direction of each neighbourhood, turned to face the
    sensor (FPFH's angles change sign with the normal, so the orientation must be the same on the
    workstation and the device)."""
    out = np.empty_like(points)
    step = max(1, PAIRS // nb.index.shape[1])
    for s in range(0, len(points), step):
        group = points[nb.index[s : s + step]]
        centred = group - group.mean(1, keepdims=True)
        _, vectors = np.linalg.eigh(np.einsum("nki,nkj->nij", centred, centred))
        out[s : s + step] = vectors[:, :, 0]
    flip = np.einsum("ni,ni->n", out, viewpoint[None] - points) < 0
    out[flip] *= -1
    return out


def _pair_angles(p: np.ndarray, n: np.ndarray, q: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, ...]:
    """Darboux-frame angles of point pairs (p, n) -> (q, m), (..., 3) each: (theta, alpha, phi),
    zero where the pair is degenerate."""
    d = q - p
    dist = np.linalg.norm(d, axis=-1)
    safe = np.where(dist > 0, dist, 1)
    a1, a2 = np.einsum("...i,...i->...", n, d) / safe, np.einsum("...i,...i->...", m, d) / safe
    swap = (np.abs(a1) < np.abs(a2))[..., None]  # the source is the point whose normal is nearer d
    src, dst, d = np.where(swap, m, n), np.where(swap, n, m), np.where(swap, -d, d)
    phi = np.where(swap[..., 0], -a2, a1)
    v = np.cross(d, src)
    vn = np.linalg.norm(v, axis=-1)
    ok = (dist > 0) & (vn > 0)
    v = v / np.where(vn > 0, vn, 1)[..., None]
    w = np.cross(src, v)
    alpha = np.einsum("...i,...i->...", v, dst)
    theta = np.arctan2(np.einsum("...i,...i->...", w, dst), np.einsum("...i,...i->...", src, dst))
    return tuple(np.where(ok, f, 0) for f in (theta, alpha, phi))


def spfh(points: np.ndarray, nrm: np.ndarray, nb: Neighbours) -> np.ndarray:
    """(N, 33) simplified point feature histograms, each block of 11 summing to 100."""
    n, k = nb.index.shape[0], nb.index.shape[1] - 1
    out = np.zeros((n, FPFH_DIM), np.float64)
    step = max(1, PAIRS // k)
    for s in range(0, n, step):
        j = nb.index[s : s + step, 1:]
        theta, alpha, phi = _pair_angles(points[s : s + step, None], nrm[s : s + step, None], points[j], nrm[j])
        bins = [np.clip(np.floor(BINS * (theta + np.pi) / (2 * np.pi)), 0, BINS - 1),
                np.clip(np.floor(BINS * (alpha + 1) / 2), 0, BINS - 1) + BINS,
                np.clip(np.floor(BINS * (phi + 1) / 2), 0, BINS - 1) + 2 * BINS]
        rows = np.repeat(np.arange(len(j)), k)
        flat = np.concatenate([rows * FPFH_DIM + b.ravel().astype(np.int64) for b in bins])
        out[s : s + step] = np.bincount(flat, minlength=len(j) * FPFH_DIM).reshape(len(j), FPFH_DIM)
    return out * (100.0 / k)


def fpfh(points: np.ndarray, nrm: np.ndarray, nb: Neighbours) -> np.ndarray:
    """(N, 33) fast point feature histograms."""
    from scipy.sparse import csr_matrix

    n, k = nb.index.shape[0], nb.index.shape[1] - 1
    own = spfh(points, nrm, nb)
    d2 = nb.distance[:, 1:].astype(np.float64) ** 2
    w = np.where(d2 > 0, 1.0 / np.where(d2 > 0, d2, 1), 0.0)
    weights = csr_matrix((w.ravel(), nb.index[:, 1:].ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    near = np.asarray(weights @ own).reshape(n, 3, BINS)
    total = near.sum(2, keepdims=True)
    near = near * np.where(total > 0, 100.0 / np.where(total > 0, total, 1), 0)
    return (own + near.reshape(n, FPFH_DIM)).astype(np.float32)


def describe(points: np.ndarray, viewpoint: np.ndarray, scales: tuple[int, ...]) -> tuple[np.ndarray, Neighbours]:
    """(N, 33 * len(scales)) FPFH at each neighbourhood size in `scales` (numbers of neighbours;
    normals from the smallest), and the largest scale's neighbours (for smoothing scores)."""
    biggest = neighbours(points, max(scales))
    nrm = normals(points, Neighbours(biggest.distance[:, : min(scales) + 1], biggest.index[:, : min(scales) + 1]), viewpoint)
    parts = [fpfh(points, nrm, Neighbours(biggest.distance[:, : k + 1], biggest.index[:, : k + 1])) for k in scales]
    return np.concatenate(parts, 1), biggest
