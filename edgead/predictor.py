"""The runtime-agnostic Predictor: preprocess -> run -> post-process -> threshold -> map.

Imports numpy, OpenCV and one runtime; never torch (except to run a training run folder
directly, which is what `edgead eval RUN_DIR` does)."""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import runtimes

from . import bundle as bundle_io
from . import postprocess
from .preprocess import Geometry, InputSpec, as_rgb, preprocess, read_image
from .postprocess import PostSpec
from .run import is_run, read_run_config
from .thresholds import ThresholdSet

# Target names in a bundle's `artefacts`, and the runtime that reads each.
TARGET_RUNTIME = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "tflite", "torch": "torch"}
ImageLike = str | Path | np.ndarray


@dataclass
class Result:
    score: float  # normalised to [0, 1]; 0.5 = the image threshold
    raw_score: float
    is_anomalous: bool
    anomaly_map: np.ndarray = field(repr=False)  # float32 (H, W) at input resolution, 0.5 = pixel threshold
    mask: np.ndarray = field(repr=False)  # bool (H, W): anomaly_map >= 0.5
    path: str | None = None

    def to_json(self) -> dict:
        d = {"score": round(self.score, 6), "raw_score": self.raw_score, "is_anomalous": self.is_anomalous,
             "anomalous_area": round(float(self.mask.mean()), 6)}
        return {"path": self.path, **d} if self.path is not None else d


def runtime_preference() -> list[str]:
    """Fastest-first order of runtimes for this machine when `runtime="auto"`."""
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
        return ["openvino", "onnxruntime", "tflite"]
    return ["tflite", "onnxruntime", "openvino"]


def choose_target(manifest: dict, runtime: str = "auto", precision: str = "auto") -> str:
    """Pick an artefact of the bundle: runtime 'auto' or a name, precision 'auto' | 'fp32' | 'int8'."""
    arts = manifest["artefacts"]
    want = runtime_preference() if runtime == "auto" else [runtime]
    for name in want:
        if name not in runtimes.BACKENDS:
            raise ValueError(f"unknown runtime {name!r}; choose one of {', '.join(runtimes.BACKENDS)} or 'auto'")
    candidates = [(t, a) for t, a in arts.items() if a.get("runtime", TARGET_RUNTIME.get(t)) in want]
    if precision != "auto":
        candidates = [(t, a) for t, a in candidates if a.get("precision", "fp32") == precision]
    usable = [(t, a) for t, a in candidates if runtimes.available(a.get("runtime", TARGET_RUNTIME.get(t)))]
    if not usable:
        have = {t: f"{a.get('runtime', TARGET_RUNTIME.get(t))}/{a.get('precision', 'fp32')}" for t, a in arts.items()}
        hint = f"installed runtimes: {runtimes.installed() or 'none'}"
        raise ValueError(f"no artefact in the bundle fits runtime={runtime!r}, precision={precision!r} "
                         f"(bundle has {have}; {hint}); install one with pip install 'edgead[onnxruntime]' "
                         f"(or [openvino], [tflite]) or export that target")
    order = {"int8": 0, "fp32": 1} if precision == "auto" else {}
    rank = {n: i for i, n in enumerate(want)}
    usable.sort(key=lambda ta: (rank[ta[1].get("runtime", TARGET_RUNTIME.get(ta[0]))], order.get(ta[1].get("precision", "fp32"), 2)))
    return usable[0][0]


class Predictor:
    """Scores images with a bundle (or a training run) on one runtime."""

    def __init__(self, source: str | Path, runtime: str = "auto", threads: int | None = None,
                 precision: str = "auto", device: Any = None, target: str | None = None):
        """`target` names one artefact of the bundle (a key of its manifest's "artefacts"),
        overriding the choice by `runtime` and `precision`."""
        path = Path(source)
        if is_run(path):
            from .run import load_model  # torch, only for training runs

            if runtime not in ("auto", "torch"):
                raise ValueError(f"{path} is a training run: it runs on torch only; export a bundle for {runtime!r}")
            model, config = load_model(path)
            self._init(config, runtimes.load("torch", model, threads=threads, output_names=["anomaly_map"]), "torch", "fp32")
            return
        manifest = bundle_io.load_manifest(path, verify=True)
        if manifest.get("task") != "image":
            raise ValueError(f"{path}: bundle task is {manifest.get('task')!r}; use the predictor for that task")
        target = target or choose_target(manifest, runtime, precision)
        file = bundle_io.artefact_path(path, manifest, target)  # names the bundle's targets if unknown
        art = manifest["artefacts"][target]
        name = art.get("runtime", TARGET_RUNTIME.get(target))
        backend = runtimes.load(name, file, threads=threads, device=device)
        self._init(manifest, backend, target, art.get("precision", "fp32"))

    @classmethod
    def from_backend(cls, config: dict, backend: Any, target: str = "torch", precision: str = "fp32") -> "Predictor":
        self = cls.__new__(cls)
        self._init(config, backend, target, precision)
        return self

    def _init(self, config: dict, backend: Any, target: str, precision: str) -> None:
        self.config = config
        self.backend, self.target, self.precision = backend, target, precision
        self.spec = InputSpec.from_json(config["input"])
        self.post = PostSpec.from_json(config["post"])
        th = config.get("thresholds") or {}
        self.image_thresholds = ThresholdSet.from_json(th["image"]) if "image" in th else None
        self.pixel_thresholds = ThresholdSet.from_json(th["pixel"]) if "pixel" in th else None
        self.output_name = config.get("outputs", {}).get("anomaly_map", "anomaly_map")

    @property
    def runtime(self) -> str:
        return self.backend.name

    def raw_map(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed (3, H, W) -> raw low-resolution map (h, w) from the runtime."""
        out = self.backend.run(np.ascontiguousarray(x[None], dtype=np.float32))
        return out[self.output_name][0, 0] if self.output_name in out else next(iter(out.values()))[0, 0]

    def analyse(self, image_rgb: np.ndarray) -> tuple[np.ndarray, float, Geometry]:
        """RGB image -> (raw map of the valid region at network resolution, raw score, geometry)."""
        x, g = preprocess(image_rgb, self.spec)
        region, score = postprocess.process(self.raw_map(x), g, self.spec.height, self.spec.width, self.post)
        return region, score, g

    def predict(self, image: ImageLike | Sequence[ImageLike], color_order: str = "RGB") -> Result | list[Result]:
        """Score a path, an image array (gray / RGB / BGR / RGBA, uint8) or a batch of them.

        `color_order` says how 3/4-channel arrays are ordered (OpenCV frames are "BGR")."""
        if isinstance(image, (list, tuple)) or (isinstance(image, np.ndarray) and image.ndim == 4):
            return [self.predict(im, color_order) for im in image]
        if isinstance(image, (str, Path)):
            rgb, path = read_image(image), str(image)
        else:
            rgb, path = as_rgb(image, color_order), None
        return self.result(*self.analyse(rgb), path=path)

    def result(self, region: np.ndarray, raw: float, g: Geometry, path: str | None = None) -> Result:
        """Threshold and normalise the output of `analyse`."""
        if self.image_thresholds is None or self.pixel_thresholds is None:
            raise ValueError("this model has no thresholds; train it with `edgead train` to compute them")
        amap = np.asarray(self.pixel_thresholds.normalize(postprocess.to_original(region, g)), np.float32)
        score = float(self.image_thresholds.normalize(raw))
        return Result(score, raw, raw >= self.image_thresholds.threshold, amap, amap >= 0.5, path)
