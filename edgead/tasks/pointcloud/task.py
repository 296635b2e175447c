"""The point-cloud task: scans in; per-point FPFH descriptors computed before the graph (numpy,
scipy), their distance to a bank of normal descriptors in the graph, smoothing, the cloud score
and thresholds after it."""
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
    cli_predict = staticmethod(cli.cmd_predict)
    add_commands = staticmethod(cli.add_commands)

    def train(self, data, out, model: str = "fpfhcore", **options) -> dict:
        from edgead.tasks.pointcloud.train import train_pointcloud

        return train_pointcloud(data, out, model=model, **options)

    def evaluate(self, predictor, data, **options) -> dict:
        from edgead.tasks.pointcloud.evaluate import evaluate_pointcloud

        return evaluate_pointcloud(None, data, predictor=predictor)

    def evaluable(self, data) -> bool:
        return Path(data).is_dir()  # a data set; one scan (`benchmark --data scan.pcd`) is only timed

    def input_text(self, spec: Mapping) -> str:
        return f"{spec['dim']}x{spec['chunk']} descriptors"

    def manifest_outputs(self) -> dict:
        return {"point_score": "point_score", "layout": "NL",
                "computed_before_graph": ["valid points (finite, not 0,0,0)", "k nearest neighbours, PCA normals "
                                          "facing the viewpoint, FPFH at input.scales", "chunks of input.chunk descriptors"],
                "computed_after_graph": ["mean over input.smooth nearest points", "cloud score: the largest point score",
                                         "threshold normalisation"]}

    def sample_input(self, run: Mapping, sample: Any = None) -> tuple[np.ndarray, str]:
        from edgead.tasks.pointcloud.io import read_cloud
        from edgead.tasks.pointcloud.preprocess import CloudSpec, chunks, described
        from edgead.tasks.pointcloud.predictor import as_cloud

        spec = CloudSpec.from_json(run["input"])
        if sample is not None:
            return chunks(described(as_cloud(sample), spec).descriptors, spec.chunk)[:1], "a cloud given by the caller"
        from edgead.tasks.pointcloud.data import recorded_scans

        first = Path(run["train"]["data"]["source"]) / run["train"]["split"]["fit"][0]
        if not first.parent.is_dir() or not first.is_file():
            rng = np.random.default_rng(0)
            pts = rng.normal(size=(2048, 3)).astype(np.float32) * [1, 1, 0.05]
            from edgead.tasks.pointcloud.io import Cloud

            return (chunks(described(Cloud(pts, viewpoint=np.array([0, 0, 10], np.float32)), spec).descriptors, spec.chunk)[:1],
                    f"a synthetic noisy plane: the training scan ({first}) is not there any more")
        recorded_scans(run, "the export parity check")  # raises if the scans changed since training
        return chunks(described(read_cloud(first), spec).descriptors, spec.chunk)[:1], f"training scan {run['train']['split']['fit'][0]}"

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
        from edgead.tasks.pointcloud.preprocess import chunks, described

        cloud = timing_cloud(spec)
        xs = chunks(described(cloud, predictor.spec).descriptors, predictor.spec.chunk)
        return (lambda i: predictor.run(xs[i % len(xs)][None]), lambda i: predictor.predict(cloud))


def timing_cloud(spec: Mapping):
    """The scan to time with: the given file, or a wavy synthetic surface of spec['points'] points."""
    from edgead.tasks.pointcloud.io import Cloud, read_cloud

    if spec.get("scan"):
        return read_cloud(spec["scan"])
    rng = np.random.default_rng(0)
    uv = rng.uniform(-1, 1, (int(spec["points"]), 2))
    z = 0.1 * np.sin(3 * uv[:, 0]) * np.cos(2 * uv[:, 1])
    return Cloud(np.c_[uv, z].astype(np.float32), viewpoint=np.array([0, 0, 10], np.float32))
