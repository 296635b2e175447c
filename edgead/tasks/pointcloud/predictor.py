"""The torch-free PointCloudPredictor: a scan -> the graph's input (FPFH descriptors computed in
numpy and scipy; or, for GridCore, the organised scan itself) -> runtime -> point scores ->
thresholds. Imports numpy, one runtime and, for FPFH-Core, scipy; never torch (except to run a
training run folder directly)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from edgead.core.errors import DataError, UsageError
from edgead.core.predictor import BasePredictor
from edgead.core.thresholds import Override, ThresholdSet
from edgead.tasks.pointcloud.io import Cloud, read_cloud
from edgead.tasks.pointcloud.preprocess import spec_from_json

CloudLike = str | os.PathLike | np.ndarray | Cloud


@dataclass
class CloudResult:
    score: float  # normalised to [0, 1]; 0.5 = the cloud threshold
    raw_score: float
    is_anomalous: bool
    point_score: np.ndarray = field(repr=False)  # (N,) float32 normalised (0.5 = point threshold); NaN where invalid
    anomalous_points: np.ndarray = field(repr=False)  # (N,) bool: point_score >= 0.5
    path: str | None = None

    def to_json(self) -> dict:
        d = {"score": round(self.score, 6), "raw_score": self.raw_score, "is_anomalous": self.is_anomalous,
             "n_points": int(len(self.point_score)), "anomalous_points": int(self.anomalous_points.sum())}
        return {"path": self.path, **d} if self.path is not None else d


def as_cloud(x: CloudLike) -> Cloud:
    """A path, a Cloud, or an (N, 3) / (H, W, 3) array of points."""
    if isinstance(x, Cloud):
        return x
    if isinstance(x, (str, os.PathLike)):
        return read_cloud(x)
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[1] == 3:
        cloud = Cloud(np.ascontiguousarray(a, np.float32))
    elif a.ndim == 3 and a.shape[2] == 3:
        cloud = Cloud(np.ascontiguousarray(a.reshape(-1, 3), np.float32), (a.shape[0], a.shape[1]))
    else:
        raise DataError(f"a point cloud array must be N x 3 or H x W x 3, got shape {a.shape}")
    if len(cloud.points) == 0 or not cloud.valid.any():
        raise DataError(f"the point cloud array has no valid points ({len(cloud.points)} points, all NaN or 0, 0, 0)")
    return cloud


class PointCloudPredictor(BasePredictor):
    """Scores point clouds with a point-cloud bundle (or a training run, on torch) on one runtime."""

    task = "pointcloud"
    output_names = ("point_score",)
    default_input_name = "descriptors"

    def _setup(self, config) -> None:
        self.spec = spec_from_json(config["input"])
        if self.spec.form == "points":
            try:
                import scipy  # noqa: F401 - neighbours and the FPFH sums
            except ImportError as e:
                raise UsageError("point-cloud models need scipy on the device: pip install 'edgead[pointcloud]'") from e
        th = config.get("thresholds") or {}
        self.cloud_thresholds = ThresholdSet.from_json(th["cloud"]) if "cloud" in th else None
        self.point_thresholds = ThresholdSet.from_json(th["point"]) if "point" in th else None

    def set_threshold(self, value: float | str | Override) -> None:
        """Set the cloud threshold (the "manual" kind): a raw cloud score, or an `Override` such
        as "score:0.6" (normalised: 0.5 = the trained threshold)."""
        if self.cloud_thresholds is None:
            raise UsageError("this model has no thresholds to override; train it with `edgead train`")
        (value if isinstance(value, Override) else Override.parse(value)).apply(self.cloud_thresholds)

    def scores(self, prepared) -> tuple[np.ndarray, float]:
        """A scan prepared by `self.spec.prepare` -> (raw smoothed scores of its valid points, raw
        cloud score: the largest)."""
        outputs = np.stack([self.run(x[None])["point_score"][0] for x in self.spec.graph_inputs(prepared)])
        return self.spec.finish(self.spec.point_scores(outputs, prepared))

    def analyse(self, cloud: Cloud) -> tuple[np.ndarray, float, np.ndarray]:
        """(raw smoothed scores of the valid points, raw cloud score, the valid mask)."""
        prepared = self.spec.prepare(cloud)
        return (*self.scores(prepared), prepared.valid)

    def predict(self, cloud: CloudLike | list[CloudLike]) -> CloudResult | list[CloudResult]:
        """Score a scan (path, Cloud, or point array) or a list of them."""
        if isinstance(cloud, list):
            return [self.predict(c) for c in cloud]
        c = as_cloud(cloud)
        return self.result(*self.analyse(c), path=c.source or None)

    def result(self, points: np.ndarray, raw: float, valid: np.ndarray, path: str | None = None) -> CloudResult:
        if self.cloud_thresholds is None or self.point_thresholds is None:
            raise ValueError("this model has no thresholds; train it with `edgead train` to compute them")
        full = np.full(len(valid), np.nan, np.float32)
        full[valid] = self.point_thresholds.normalize(points)
        return CloudResult(float(self.cloud_thresholds.normalize(raw)), raw, raw >= self.cloud_thresholds.threshold,
                           full, np.nan_to_num(full, nan=0.0) >= 0.5, path)
