"""Before and after the graph for organised scans (GridCore: normals, descriptors and the bank
search are inside it): the scan's H x W grid, every `stride`-th row and column (so that a dense
scan costs what `max_points` points do), invalid points as 0, 0, 0 -> the graph -> every valid
point takes the score of its nearest grid point that went in. numpy only."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgead.core.errors import DataError
from edgead.tasks.pointcloud.io import Cloud

FORM = "grid"


@dataclass
class Gridded:
    valid: np.ndarray  # (N,) bool over the cloud's points
    x: np.ndarray  # (1, 3, h, w) float32 graph input
    index: np.ndarray  # (V,) each valid point's flat index in the graph's h x w output


@dataclass(frozen=True)
class GridSpec:
    shape: tuple[int, int]  # (H, W) of the scans the model was trained on
    stride: int = 1

    form = FORM

    @classmethod
    def for_scan(cls, cloud: Cloud, max_points: int) -> "GridSpec":
        if cloud.grid is None:
            raise DataError(f"{cloud.source or 'the scan'} is not organised (no H x W grid); gridcore needs organised "
                            "scans (depth cameras, MVTec 3D-AD xyz TIFFs); use --model fpfhcore for unorganised ones")
        h, w = cloud.grid
        return cls((h, w), max(1, math.ceil(math.sqrt(h * w / max_points))))

    @property
    def graph_shape(self) -> tuple[int, int]:
        return -(-self.shape[0] // self.stride), -(-self.shape[1] // self.stride)

    def prepare(self, cloud: Cloud) -> Gridded:
        if cloud.grid != self.shape:
            got = f"a {cloud.grid[0]} x {cloud.grid[1]} organised scan" if cloud.grid else "an unorganised cloud"
            raise DataError(f"{cloud.source or 'the scan'}: {got}; this model takes {self.shape[0]} x {self.shape[1]} "
                            "organised scans (the grid it was trained on)")
        valid = cloud.valid
        if not valid.any():
            raise DataError(f"{cloud.source or 'the scan'}: no valid points")
        h, w = self.shape
        s = self.stride
        grid = np.where(valid[:, None], cloud.points, 0).reshape(h, w, 3)[::s, ::s]
        x = np.ascontiguousarray(grid.transpose(2, 0, 1)[None], np.float32)
        rows, cols = np.divmod(np.flatnonzero(valid), w)
        gh, gw = self.graph_shape
        index = np.minimum(np.rint(rows / s).astype(np.int64), gh - 1) * gw + np.minimum(np.rint(cols / s).astype(np.int64), gw - 1)
        return Gridded(valid, x, index)

    @staticmethod
    def graph_inputs(g: Gridded) -> np.ndarray:
        return g.x

    @staticmethod
    def point_scores(outputs: np.ndarray, g: Gridded) -> np.ndarray:
        """(1, h, w) graph output -> (V,) scores of the valid points, negative where the graph
        scored a point only from weakly described neighbours (at boundaries and holes)."""
        return np.ascontiguousarray(outputs.reshape(-1)[g.index], np.float32)

    @staticmethod
    def finish(points: np.ndarray) -> tuple[np.ndarray, float]:
        """Graph scores of the valid points -> (point scores, cloud score). The cloud score is the
        largest score of a well-described point: a boundary's noisy descriptors would otherwise
        set off every scan. A weakly described point keeps its magnitude, capped at that."""
        judged = points > 0
        cloud = float(points[judged].max()) if judged.any() else float(np.abs(points).max())
        return np.where(judged, points, np.minimum(-points, cloud)), cloud

    @staticmethod
    def post() -> dict:
        """What `point_scores` and `finish` do, in words, for the run record."""
        return {"point_score": "the score of the point's nearest grid point in the graph's output",
                "cloud_score": "the largest score of a well-described point (GridSpec.finish)"}

    def to_json(self) -> dict:
        return {"form": FORM, "shape": list(self.shape), "stride": self.stride, "graph_shape": list(self.graph_shape)}

    @classmethod
    def from_json(cls, d: dict) -> "GridSpec":
        return cls((int(d["shape"][0]), int(d["shape"][1])), int(d["stride"]))
