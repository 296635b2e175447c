"""TFLite backend (.tflite) on ai-edge-litert, or tflite-runtime as a fallback.

Full-integer models are handled here: float32 inputs are quantized with each input
tensor's scale/zero point and quantized outputs are dequantized, so callers always
pass and receive float32.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .base import Backend, BackendError, RuntimeNotInstalled, check_file


def _interpreter_class():
    errors = []
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except Exception as exc:
        errors.append(exc)
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter
    except Exception as exc:
        errors.append(exc)
    raise RuntimeNotInstalled("tflite", "ai-edge-litert", "tflite", errors[0]) from errors[0]


def _qparams(detail: dict):
    """(scales, zero_points, axis) for a quantized tensor, or None for a float tensor."""
    if np.dtype(detail["dtype"]).kind == "f":
        return None
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), np.float32)
    zeros = np.asarray(qp.get("zero_points", []), np.int64)
    if scales.size == 0:
        scale, zero = detail.get("quantization", (0.0, 0))
        if not scale:
            return None
        scales, zeros = np.array([scale], np.float32), np.array([zero], np.int64)
    return scales, zeros, int(qp.get("quantized_dimension", 0))


def _bcast(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    if v.size == 1:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis] = v.size
    return v.reshape(shape)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """float -> the tensor's storage type (quantized with its scale/zero point, or cast)."""
    dtype = np.dtype(detail["dtype"])
    q = _qparams(detail)
    if q is None:
        return x.astype(dtype, copy=False)
    scales, zeros, axis = q
    y = np.round(x / _bcast(scales, axis, x.ndim)) + _bcast(zeros, axis, x.ndim)
    info = np.iinfo(dtype)
    return np.clip(y, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """The tensor's storage type -> float32."""
    q = _qparams(detail)
    if q is None:
        return y.astype(np.float32) if y.dtype.kind == "f" else y
    scales, zeros, axis = q
    return ((y.astype(np.float32) - _bcast(zeros, axis, y.ndim).astype(np.float32))
            * _bcast(scales, axis, y.ndim))


class _Interpreter:
    """One interpreter of the model with its tensor details. Not thread-safe (TFLite's own
    interpreter is not): the backend keeps one per thread."""

    def __init__(self, Interpreter, model: bytes, threads: int | None):
        self.interpreter = Interpreter(model_content=model, num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        if signatures:
            key = next(iter(signatures))
            self.runner = self.interpreter.get_signature_runner(key)
            self.inputs = self.runner.get_input_details()
            self.outputs = self.runner.get_output_details()
            self.input_names = list(signatures[key]["inputs"])
            self.output_names = list(signatures[key]["outputs"])
        else:
            self.runner = None
            self.interpreter.allocate_tensors()
            self.inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
            self.outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
            self.input_names, self.output_names = list(self.inputs), list(self.outputs)

    def run(self, feed):
        feed = {n: quantize(x, self.inputs[n]) for n, x in feed.items()}
        raw = self.runner(**feed) if self.runner is not None else self._invoke(feed)
        return {n: dequantize(np.asarray(raw[n]), self.outputs[n]) for n in self.output_names}

    def _invoke(self, feed):
        it = self.interpreter
        resized = False
        for n, x in feed.items():
            d = self.inputs[n]
            if tuple(d["shape"]) != x.shape:
                it.resize_tensor_input(d["index"], list(x.shape))
                resized = True
        if resized:
            it.allocate_tensors()
            self.inputs = {d["name"]: d for d in it.get_input_details()}
            self.outputs = {d["name"]: d for d in it.get_output_details()}
        for n, x in feed.items():
            it.set_tensor(self.inputs[n]["index"], x)
        it.invoke()
        return {n: it.get_tensor(self.outputs[n]["index"]) for n in self.output_names}


class TFLiteBackend(Backend):
    """Safe to share between threads: each thread gets its own interpreter of the same model bytes."""

    name = "tflite"

    def __init__(self, path, threads=None, device=None, files=None):
        self._Interpreter = _interpreter_class()
        content = (files or {}).get(Path(path).name)
        path = Path(path) if content is not None else check_file(path, self.name, (".tflite",))
        super().__init__(path, threads)
        if device not in (None, "cpu", "CPU"):
            raise BackendError(f"tflite: device {device!r} is not supported (CPU only); "
                               f"loading {str(path)!r}")
        try:
            self._model = content if content is not None else path.read_bytes()
            first = _Interpreter(self._Interpreter, self._model, self.threads)
        except Exception as exc:
            raise BackendError(f"tflite: cannot load {str(path)!r}: {exc}") from exc
        self._local = threading.local()
        self._local.session = first
        self.input_names, self.output_names = first.input_names, first.output_names
        self._in, self._out = first.inputs, first.outputs
        self.input_shapes = {
            n: tuple(int(s) if s >= 0 else None
                     for s in self._in[n].get("shape_signature", self._in[n]["shape"]))
            for n in self.input_names}

    @property
    def interpreter(self):
        """This thread's TFLite interpreter."""
        return self._session().interpreter

    def _session(self) -> _Interpreter:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = _Interpreter(self._Interpreter, self._model, self.threads)
        return session

    @property
    def quantized_io(self) -> bool:
        """True if any input or output tensor is stored as integers (full-integer model)."""
        return any(_qparams(d) is not None for d in [*self._in.values(), *self._out.values()])

    def _run(self, feed):
        return self._session().run(feed)


def load(path, threads=None, device=None, files=None) -> TFLiteBackend:
    """Open a .tflite file (CPU; XNNPACK where the runtime applies it). `files` ({file name:
    bytes}) supplies the content already read (and verified) by the caller."""
    return TFLiteBackend(path, threads=threads, device=device, files=files)
