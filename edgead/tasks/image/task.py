"""The image task: RGB images in, a low-resolution anomaly map out of the graph; letterbox,
blur, pooling and thresholds around it in numpy + OpenCV."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from edgead.core.errors import DataError, UsageError
from edgead.models import DEFAULT_MODEL
from edgead.tasks.base import Task
from edgead.tasks.image import cli

MAX_TIMING_IMAGES = 16  # distinct images cycled through when timing


class ImageTask(Task):
    name = "image"
    predictor_path = "edgead.tasks.image.predictor:Predictor"
    output_names = ("anomaly_map",)
    input_name = "image"

    add_arguments = staticmethod(cli.add_arguments)
    cli_train = staticmethod(cli.cmd_train)
    eval_options = staticmethod(cli.eval_options)
    predict_options = staticmethod(cli.predict_options)
    input_files = staticmethod(cli.input_files)
    score_file = staticmethod(cli.score_file)

    def check_predict(self, predictor, product: str | None = None) -> None:
        predictor.check_product(product)

    def train(self, data, out, model: str = DEFAULT_MODEL, **options) -> dict | None:
        from edgead.tasks.image.train import train

        return train(data, out, model=model, **options)

    def evaluate(self, predictor, data, **options) -> dict:
        from edgead.tasks.image.evaluate import evaluate

        return evaluate(None, data, predictor=predictor, **options)

    def manifest_outputs(self) -> dict:
        return {"anomaly_map": "anomaly_map", "layout": "NCHW", "computed_after_graph": [
            "bilinear upsampling to the input size", "crop of the letterbox padding",
            "gaussian blur (post.blur_sigma)", "image score pooling (post.score)", "threshold normalisation"]}

    def sample_input(self, run: Mapping, sample: Any = None) -> tuple[np.ndarray, str]:
        from edgead.tasks.image.preprocess import InputSpec, preprocess, read_image
        from edgead.tasks.image.split import data_root, recorded_split

        spec = InputSpec.from_json(run["input"])
        if sample is not None:
            return preprocess(sample, spec)[0][None], "an image given by the caller"
        root = data_root(run)
        if root is None or not root.is_dir():
            img = np.random.default_rng(0).integers(96, 160, (spec.height, spec.width, 3), dtype=np.uint8)
            return (preprocess(img, spec)[0][None],
                    f"synthetic mid-grey noise: the training data ({root}) is not there any more")
        first = recorded_split(run, "the export parity check").fit[0]  # raises if the data changed
        return preprocess(read_image(first.path), spec)[0][None], f"training image {first.path.relative_to(root).as_posix()}"

    def int8_data(self, run: Mapping, calib=None, calib_size: int | None = None, val=None):
        from edgead.tasks.image.calibration import DEFAULT_SIZE, calibration_set
        from edgead.tasks.image.preprocess import InputSpec, preprocess, read_image
        from edgead.tasks.image.predictor import PRODUCT_CHANNELS
        from edgead.tasks.image.validation import LABELLED, compare, score, validation_set
        from quant.int8 import AccuracyControl, Int8Data

        cset = calibration_set(run, calib, calib_size or DEFAULT_SIZE)
        vset = validation_set(run, val)
        channels = (run.get("outputs") or {}).get(PRODUCT_CHANNELS) or []
        strays = sorted({s.product or "(none)" for s in vset.samples} - set(channels)) if channels else []
        if strays:
            raise UsageError(f"--val {val}: a {run['model']['name']} model scores each image against its product's "
                             f"stored prompt, so INT8 validation images must come from its products "
                             f"({', '.join(channels)}), in product folders; these are not: {', '.join(strays)}")
        spec = InputSpec.from_json(run["input"])
        control = None
        if vset.kind == LABELLED:  # accuracy control needs anomalies to aim at
            control = AccuracyControl(vset.samples, lambda s: preprocess(read_image(s.path), spec)[0][None])
        return Int8Data(cset.inputs, cset.to_json(), vset.to_json(), lambda p: score(p, vset),
                        lambda ref, got: compare(vset.kind, ref, got), score_stats=True, accuracy_control=control)

    def timing_inputs(self, manifest: Mapping, data=None) -> tuple[dict, str]:
        if data is not None:
            from edgead.tasks.image.data import open_dataset

            ds = open_dataset(data)
            samples = ds.test or ds.train
            if not samples:
                raise DataError(f"--data {data}: no images found")
            files = [str(s.path) for s in sorted(samples, key=lambda s: s.path)][:MAX_TIMING_IMAGES]
            return {"images": files}, f"{len(files)} images from {data}"
        size = [int(manifest["input"]["height"]), int(manifest["input"]["width"])]
        return {"size": size}, f"a synthetic {size[1]}x{size[0]} frame (pass --data to time your own images)"

    def timing_calls(self, predictor, spec: Mapping):
        from edgead.tasks.image.preprocess import preprocess

        images = timing_images(spec)
        xs = [preprocess(im, predictor.spec)[0] for im in images]
        product = predictor.channels[0] if predictor.channels else None  # a prompted graph scores every product anyway
        return (lambda i: predictor.raw_map(xs[i % len(xs)], product),
                lambda i: predictor.predict(images[i % len(images)], product=product))


def timing_images(spec: Mapping) -> list[np.ndarray]:
    """RGB uint8 images to time with: the listed files, or one synthetic frame of `spec['size']`."""
    from edgead.core.opencv import cv2

    from edgead.tasks.image.preprocess import read_image

    if spec.get("images"):
        return [read_image(p) for p in spec["images"]]
    h, w = spec["size"]
    base = np.random.default_rng(0).integers(90, 170, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return [np.ascontiguousarray(cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC))]
