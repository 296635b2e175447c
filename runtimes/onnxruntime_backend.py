"""ONNX Runtime backend (.onnx)."""
from __future__ import annotations

import warnings

from pathlib import Path

import numpy as np

from .base import Backend, BackendError, RuntimeNotInstalled, check_file

_SHORT = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}

_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


def _import():
    try:
        import onnxruntime
    except Exception as exc:
        raise RuntimeNotInstalled("onnxruntime", "onnxruntime", "onnxruntime", exc) from exc
    return onnxruntime


def providers_for(device, have: list[str]) -> list[str]:
    """Execution providers to use: the requested ones that exist here, then CPU.

    `device` is None, a provider name ("CUDAExecutionProvider" or short "cuda"), or a list.
    Requested providers that this onnxruntime build lacks are skipped with a warning.
    """
    wanted = [device] if isinstance(device, str) else list(device or [])
    wanted = [_SHORT.get(w.lower(), w) for w in wanted]
    chosen = [w for w in wanted if w in have]
    missing = [w for w in wanted if w not in have]
    if missing:
        warnings.warn(f"onnxruntime: providers {missing} are not available in this build "
                      f"(have {have}); using {chosen + ['CPUExecutionProvider']}", stacklevel=3)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path, threads=None, device=None, files=None):
        ort = _import()
        content = (files or {}).get(Path(path).name)
        path = Path(path) if content is not None else check_file(path, self.name, (".onnx", ".ort"))
        super().__init__(path, threads)
        opts = ort.SessionOptions()
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
        self.providers = providers_for(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(content if content is not None else str(path), sess_options=opts,
                                                providers=self.providers)
        except Exception as exc:
            raise BackendError(f"onnxruntime: cannot load {str(path)!r}: {exc}") from exc
        ins = self.session.get_inputs()
        self.input_names = [i.name for i in ins]
        self.input_shapes = {i.name: tuple(d if isinstance(d, int) else None for d in i.shape)
                             for i in ins}
        self._dtypes = {i.name: _TYPES.get(i.type) for i in ins}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, feed):
        feed = {k: v if self._dtypes[k] in (None, v.dtype) else v.astype(self._dtypes[k])
                for k, v in feed.items()}
        outs = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, outs))


def load(path, threads=None, device=None, files=None) -> OnnxRuntimeBackend:
    """Open an .onnx file on CPU, or on the given provider(s) when this build has them.
    `files` ({file name: bytes}) supplies the content already read (and verified) by the caller."""
    return OnnxRuntimeBackend(path, threads=threads, device=device, files=files)
