"""The point-cloud task: scans in; per-point FPFH descriptors computed before the graph (numpy,
scipy) or, for organised scans (GridCore), inside it; their distance to a bank of normal
descriptors in the graph; the cloud score and thresholds after it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgead.tasks.base import Task
from edgead.tasks.pointcloud import cli

TIMING_POINTS = 10_000


class PointCloudTask(Task):
    name = "pointcloud"
    predictor_path = "edgead.tasks.pointcloud.predictor:PointCloudPredictor"
    output_names = ("point_score",)
    input_name = "descriptors"

    add_arguments = staticmethod(cli.add_arguments)
    cli_train = staticmethod(cli.cmd_train)
    input_files = staticmethod(cli.input_files)
    score_file = staticmethod(cli.score_file)
    add_commands = staticmethod(cli.add_commands)

    def train(self, data, out, model: str | None = None, **options) -> dict:
        from edgead.tasks.pointcloud.train import train_pointcloud

        return train_pointcloud(data, out, model=model, **options)

    def evaluate(self, predictor, data, **options) -> dict:
        from edgead.tasks.pointcloud.evaluate import evaluate_pointcloud

        return evaluate_pointcloud(None, data, predictor=predictor)

    def evaluable(self, data) -> bool:
        return Path(data).is_dir()  # a data set; one scan (`benchmark --data scan.pcd`) is only timed

    def input_text(self, spec: Mapping) -> str:
        if spec.get("form") == "grid":
            return f"3x{spec['graph_shape'][0]}x{spec['graph_shape'][1]} organised points"
        return f"{spec['dim']}x{spec['chunk']} descriptors"

    def manifest_outputs(self) -> dict:
        return {"point_score": "point_score", "layout": "NL (points form) or NHW (grid form)",
                "computed_before_graph": {
                    "points": ["valid points (finite, not 0,0,0)", "k nearest neighbours, PCA normals facing the viewpoint, "
                               "FPFH at input.scales", "chunks of input.chunk descriptors"],
                    "grid": ["every input.stride-th row and column of the organised scan, invalid points as 0,0,0"]},
                "computed_after_graph": {
                    "points": ["mean over input.smooth nearest points", "cloud score: the largest point score",
                               "threshold normalisation"],
                    "grid": ["each valid point takes its nearest grid point's score (negative: weakly described)",
                             "cloud score: the largest positive score; negative scores become their magnitude, "
                             "capped at it", "threshold normalisation"]}}

    def sample_input(self, run: Mapping, sample: Any = None) -> tuple[np.ndarray, str]:
        from edgead.tasks.pointcloud.io import read_cloud
        from edgead.tasks.pointcloud.predictor import as_cloud
        from edgead.tasks.pointcloud.preprocess import spec_from_json

        spec = spec_from_json(run["input"])
        if sample is not None:
            return spec.graph_inputs(spec.prepare(as_cloud(sample)))[:1], "a cloud given by the caller"
        from edgead.tasks.pointcloud.data import recorded_scans

        first = Path(run["train"]["data"]["source"]) / run["train"]["split"]["fit"][0]
        if not first.parent.is_dir() or not first.is_file():
            cloud, what = synthetic_surface(spec), f"a synthetic wavy surface: the training scan ({first}) is not there any more"
        else:
            recorded_scans(run, "the export parity check")  # raises if the scans changed since training
            cloud, what = read_cloud(first), f"training scan {run['train']['split']['fit'][0]}"
        return spec.graph_inputs(spec.prepare(cloud))[:1], what

    def int8_data(self, run: Mapping, calib=None, calib_size: int | None = None, val=None):
        from edgead.tasks.pointcloud.int8 import int8_data

        return int8_data(dict(run), calib, calib_size, val)

    def timing_inputs(self, manifest: Mapping, data=None) -> tuple[dict, str]:
        if data is not None and Path(data).is_dir():  # a data set (benchmark --data also evaluates on it)
            from edgead.core.errors import DataError
            from edgead.tasks.pointcloud.data import open_clouds

            ds = open_clouds(data)
            first = (ds.test or ds.train or [None])[0]
            if first is None:
                raise DataError(f"--data {data}: no scans found")
            return {"scan": str(first.path)}, f"the scan {first.path.relative_to(Path(data)).as_posix()} of {data}"
        if data is not None:
            return {"scan": str(data)}, f"the scan {data}"
        return {"points": TIMING_POINTS}, f"a synthetic {TIMING_POINTS}-point surface (pass --data to time your own scan)"

    def timing_calls(self, predictor, spec: Mapping):
        cloud = timing_cloud(spec, predictor.spec)
        xs = predictor.spec.graph_inputs(predictor.spec.prepare(cloud))
        return (lambda i: predictor.run(xs[i % len(xs)][None]), lambda i: predictor.predict(cloud))


def synthetic_surface(spec, points: int = TIMING_POINTS):
    """A wavy noise-free surface: organised on the model's grid (GridSpec), else `points` points."""
    from edgead.tasks.pointcloud.io import Cloud

    if getattr(spec, "form", "points") == "grid":
        h, w = spec.shape
        v, u = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
        z = 3 + 0.1 * np.sin(3 * u) * np.cos(2 * v)
        return Cloud(np.stack([u * z / 3, v * z / 3, z], -1).reshape(-1, 3).astype(np.float32), (h, w))
    uv = np.random.default_rng(0).uniform(-1, 1, (points, 2))
    z = 0.1 * np.sin(3 * uv[:, 0]) * np.cos(2 * uv[:, 1])
    return Cloud(np.c_[uv, z].astype(np.float32), viewpoint=np.array([0, 0, 10], np.float32))


def timing_cloud(spec: Mapping, model_spec=None):
    """The scan to time with: the given file, or a synthetic surface (spec['points'] points, or the
    model's grid)."""
    from edgead.tasks.pointcloud.io import read_cloud

    if spec.get("scan"):
        return read_cloud(spec["scan"])
    return synthetic_surface(model_spec, int(spec["points"]))
