"""OpenVINO backend (.xml + .bin), and ONNX -> OpenVINO IR conversion.

Safe to share between threads: each thread gets its own infer request of the one compiled model."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .base import Backend, BackendError, RuntimeNotInstalled, check_file


def _import():
    try:
        import openvino
    except Exception as exc:
        raise RuntimeNotInstalled("openvino", "openvino", "openvino", exc) from exc
    return openvino


def compile_config(device: str, threads: int | None) -> dict:
    """compile_model settings: FP32 math on CPU (OpenVINO may default to bf16 there, which
    breaks FP32 parity; INT8 layers of quantized models still run INT8), latency mode."""
    config: dict = {"PERFORMANCE_HINT": "LATENCY"}
    if "CPU" in device.upper():
        config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


class OpenVINOBackend(Backend):
    name = "openvino"

    def __init__(self, path, threads=None, device=None, files=None):
        ov = _import()
        files = files or {}
        xml, weights = files.get(Path(path).name), files.get(Path(path).with_suffix(".bin").name)
        path = Path(path) if xml is not None else check_file(path, self.name, (".xml", ".onnx", ".tflite"))
        if xml is not None and weights is None and path.suffix.lower() == ".xml":
            raise BackendError(f"openvino: the weights of {path.name} ({path.with_suffix('.bin').name}) were not supplied")
        if xml is None and path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
            raise BackendError(f"openvino: weights file {str(path.with_suffix('.bin'))!r} "
                               f"(beside {path.name}) does not exist")
        super().__init__(path, threads)
        self.device = device or "CPU"
        self.config = compile_config(self.device, self.threads)
        try:
            core = ov.Core()
            if xml is not None:  # exactly the bytes the caller verified; nothing is re-read from disk
                model = core.read_model(xml.decode("utf-8"), ov.Tensor(np.frombuffer(weights, np.uint8).copy()))
            else:
                model = core.read_model(str(path))
            self.compiled = core.compile_model(model, self.device, self.config)
        except Exception as exc:
            raise BackendError(f"openvino: cannot load {str(path)!r} on {self.device}: {exc}") from exc
        self._local = threading.local()  # one infer request per thread: a request is not thread-safe
        self.input_names = [_port_name(p, i, "input") for i, p in enumerate(self.compiled.inputs)]
        self.output_names = [_port_name(p, i, "output") for i, p in enumerate(self.compiled.outputs)]
        self.input_shapes = {
            n: tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape())
            for n, p in zip(self.input_names, self.compiled.inputs)}

    @property
    def request(self):
        """This thread's infer request (created on first use)."""
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        return req

    def _run(self, feed):
        ports = self.compiled.inputs
        res = self.request.infer({p: feed[n] for n, p in zip(self.input_names, ports)},
                                 share_inputs=False, share_outputs=False)
        return {n: np.array(res[p]) for n, p in zip(self.output_names, self.compiled.outputs)}


def _port_name(port, i: int, kind: str) -> str:
    try:
        return port.get_any_name()
    except RuntimeError:  # unnamed tensor
        return f"{kind}_{i}"


def load(path, threads=None, device=None, files=None) -> OpenVINOBackend:
    """Compile an OpenVINO IR (.xml with its .bin) for `device` (default "CPU"). `files`
    ({file name: bytes}) supplies both files' content already read (and verified) by the caller."""
    return OpenVINOBackend(path, threads=threads, device=device, files=files)


def compile_from_onnx(onnx_path: str | os.PathLike, xml_path: str | os.PathLike) -> Path:
    """Convert an .onnx file to OpenVINO IR at `xml_path` (+ .bin), keeping FP32 weights."""
    ov = _import()
    src = check_file(onnx_path, "openvino", (".onnx",))
    xml = Path(xml_path)
    if xml.suffix.lower() != ".xml":
        raise BackendError(f"openvino: IR path {str(xml)!r} should end with .xml")
    try:
        model = ov.convert_model(str(src))
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(xml), compress_to_fp16=False)
    except Exception as exc:
        raise BackendError(f"openvino: cannot convert {str(src)!r} to {str(xml)!r}: {exc}") from exc
    return xml
