"""Inference runtimes behind one small interface (arrays and files only).

    >>> import runtimes
    >>> runtimes.installed()                      # e.g. ['onnxruntime', 'openvino']
    >>> b = runtimes.load("onnxruntime", "model.onnx", threads=1)
    >>> b.run(x)["anomaly_map"]

Importing this package imports no runtime library; each backend imports its own lazily.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from .base import Backend, BackendError, RuntimeNotInstalled

BACKENDS: tuple[str, ...] = ("onnxruntime", "openvino", "tflite", "torch")

#: File suffix each backend reads (OpenVINO's .xml needs its .bin beside it).
SUFFIXES: dict[str, str] = {
    "onnxruntime": ".onnx",
    "openvino": ".xml",
    "tflite": ".tflite",
    "torch": ".pt2",
}

#: Top-level packages that provide each runtime, in order of preference.
PACKAGES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime",),
    "openvino": ("openvino",),
    "tflite": ("ai_edge_litert", "tflite_runtime"),
    "torch": ("torch",),
}

#: pip extra that installs each runtime (`pip install edgead[<extra>]`).
EXTRAS: dict[str, str] = {
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "tflite": "tflite",
    "torch": "train",
}

_MODULES = {
    "onnxruntime": "onnxruntime_backend",
    "openvino": "openvino_backend",
    "tflite": "tflite_backend",
    "torch": "torch_backend",
}

__all__ = ["BACKENDS", "SUFFIXES", "EXTRAS", "Backend", "BackendError", "RuntimeNotInstalled",
           "available", "installed", "load", "backend_for_file"]


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown runtime {name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def available(name: str, import_check: bool = False) -> bool:
    """Whether runtime `name` is installed.

    By default only looks the package up (importlib.util.find_spec, no import); with
    `import_check=True` it really imports it, which also catches broken installs.
    """
    for pkg in PACKAGES[_check_name(name)]:
        try:
            if importlib.util.find_spec(pkg) is None:
                continue
            if import_check:
                importlib.import_module(pkg)
            return True
        except Exception:  # broken install, or find_spec on a half-removed package
            continue
    return False


def installed(import_check: bool = False) -> list[str]:
    """Names of the runtimes available here, in BACKENDS order."""
    return [n for n in BACKENDS if available(n, import_check)]


def backend_for_file(path: str | os.PathLike) -> str:
    """Runtime name that reads a file, from its suffix (e.g. 'model.xml' -> 'openvino')."""
    suffix = Path(path).suffix.lower()
    for name, s in SUFFIXES.items():
        if s == suffix:
            return name
    raise ValueError(f"no runtime reads {suffix or 'suffix-less'} files ({str(path)!r}); known: "
                     + ", ".join(f"{s} ({n})" for n, s in SUFFIXES.items()))


def load(name: str, artefact_path, threads: int | None = None, device=None, **options) -> Backend:
    """Load a model file with runtime `name`.

    threads: intra-op threads (None: runtime default). device: runtime-specific
    (ONNX Runtime provider name(s), OpenVINO device string, torch device); None is CPU.
    options: backend-specific keyword arguments (``output_names`` for torch; ``files``, a
    {file name: bytes} of content the caller already read and verified, for the file backends,
    so that what runs is exactly what was checked).
    Every backend is safe to share between threads (one infer request / interpreter per thread
    where the runtime's own object is not).
    Raises RuntimeNotInstalled if the runtime is missing, BackendError if the file won't load.
    """
    module = importlib.import_module(f"{__name__}.{_MODULES[_check_name(name)]}")
    return module.load(artefact_path, threads=threads, device=device, **options)
