"""Before and after the graph, the same on the workstation and the device (numpy + scipy):
a cloud's valid points (a fixed random subset of at most `max_points` of them: a dense scan costs
what a sparse one does) -> multi-scale FPFH descriptors in fixed-size chunks -> the graph's raw
scores -> scores smoothed over each point's neighbours -> every valid point takes the score of
its nearest described point -> the cloud's score (the largest)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgead.core.errors import DataError
from edgead.tasks.pointcloud.features import Neighbours, describe
from edgead.tasks.pointcloud.io import Cloud

MIN_POINTS = 64


@dataclass(frozen=True)
class CloudSpec:
    scales: tuple[int, ...] = (48, 96)  # neighbours per FPFH scale (bench/pointcloud_bench.py)
    smooth: int = 16  # a point's score is the mean of the raw scores of its `smooth` nearest points
    chunk: int = 4096  # descriptors per graph call (a static shape)
    max_points: int = 16384  # described points per cloud; the others take their nearest one's score

    form = "points"

    def prepare(self, cloud: Cloud) -> "Described":
        return described(cloud, self)

    def graph_inputs(self, d: "Described") -> np.ndarray:
        return chunks(d.descriptors, self.chunk)

    def point_scores(self, outputs: np.ndarray, d: "Described") -> np.ndarray:
        """(chunks, chunk) graph outputs -> (V,) scores of the valid points."""
        return point_scores(outputs.reshape(-1)[: len(d.descriptors)], d, self.smooth)

    @staticmethod
    def finish(points: np.ndarray) -> tuple[np.ndarray, float]:
        """Point scores -> (point scores, cloud score: the largest)."""
        return points, float(points.max())

    def post(self) -> dict:
        """What `point_scores` and `finish` do, in words, for the run record."""
        return {"point_score": f"mean of the raw scores of a point's {self.smooth} nearest points",
                "cloud_score": "the largest point score"}

    @property
    def dim(self) -> int:
        return 33 * len(self.scales)

    def to_json(self) -> dict:
        return {"form": self.form, **asdict(self), "scales": list(self.scales), "dim": self.dim}

    @classmethod
    def from_json(cls, d: dict) -> "CloudSpec":
        return cls(tuple(int(k) for k in d["scales"]), int(d["smooth"]), int(d["chunk"]), int(d["max_points"]))


@dataclass
class Described:
    valid: np.ndarray  # (N,) bool over the cloud's points
    descriptors: np.ndarray  # (M, dim) float32 of the described points
    neighbours: Neighbours  # among the described points
    nearest: np.ndarray | None  # (V,) for each valid point, its nearest described point; None: all are described


def described(cloud: Cloud, spec: CloudSpec) -> Described:
    valid = cloud.valid
    if int(valid.sum()) < MIN_POINTS:
        raise DataError(f"{cloud.source or 'cloud'}: {int(valid.sum())} valid points; at least {MIN_POINTS} are needed")
    pts = cloud.points[valid].astype(np.float64)
    nearest = None
    if len(pts) > spec.max_points:
        from scipy.spatial import cKDTree

        subset = pts[np.sort(np.random.default_rng(0).permutation(len(pts))[: spec.max_points])]
        nearest = cKDTree(subset).query(pts)[1]
        pts = subset
    desc, nb = describe(pts, cloud.sensor(), spec.scales)
    return Described(valid, desc, nb, nearest)


def chunks(descriptors: np.ndarray, size: int) -> np.ndarray:
    """(M, dim) -> (ceil(M / size), dim, size) graph inputs; the last chunk is padded with the
    first descriptors (real values, so that INT8 ranges and scores are never disturbed)."""
    m = len(descriptors)
    n = -(-m // size)
    pad = n * size - m
    full = np.concatenate([descriptors, descriptors[np.arange(pad) % m]]) if pad else descriptors
    return np.ascontiguousarray(full.reshape(n, size, -1).transpose(0, 2, 1), np.float32)


def point_scores(raw: np.ndarray, d: Described, k: int) -> np.ndarray:
    """Raw graph scores of the described points -> the score of every valid point: the mean over
    the k nearest described points (itself included), taken by the valid points nearest to it."""
    k = max(1, min(k, d.neighbours.index.shape[1]))
    smooth = raw[d.neighbours.index[:, :k]].mean(1).astype(np.float32)
    return smooth if d.nearest is None else smooth[d.nearest]


def spec_from_json(d: dict):
    """A run's input spec: GridSpec for organised-scan models (GridCore), else CloudSpec."""
    from edgead.tasks.pointcloud.grid import FORM, GridSpec

    return GridSpec.from_json(d) if d.get("form") == FORM else CloudSpec.from_json(d)
