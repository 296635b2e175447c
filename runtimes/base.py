"""The interface every runtime backend implements, and its errors.

A backend wraps one model file for one inference runtime. It knows nothing about what the
model computes: named float32 arrays go in, named float32 arrays come out.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import numpy as np

Shape = tuple  # tuple[int | None, ...]; None marks a dynamic dimension


class RuntimeNotInstalled(ImportError):
    """The Python package a backend needs cannot be imported."""

    def __init__(self, backend: str, package: str, extra: str, cause: BaseException | None = None):
        self.backend, self.package, self.extra = backend, package, extra
        msg = (f"the {backend!r} backend needs the {package!r} package, which is not installed"
               f" or failed to import; install it with: pip install edgead[{extra}]")
        if cause is not None:
            msg += f" (import error: {cause})"
        super().__init__(msg)


class BackendError(RuntimeError):
    """A model file could not be loaded or run; the message names the file."""


def check_threads(threads: int | None) -> int | None:
    """Validate an intra-op thread count (None keeps the runtime's default)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)


def check_file(path: str | os.PathLike, backend: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Return `path` as a Path, raising BackendError if it is not a readable file."""
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a model file" if p.is_dir() else "does not exist"
        raise BackendError(f"{backend}: model file {str(p)!r} {what}")
    if suffixes and p.suffix.lower() not in suffixes:
        raise BackendError(f"{backend}: model file {str(p)!r} should end with "
                           f"{' or '.join(suffixes)}")
    return p


class Backend(ABC):
    """One loaded model on one runtime.

    Attributes: ``name`` (runtime name), ``path`` (model file or None), ``threads``,
    ``input_names``, ``output_names``, ``input_shapes`` (name -> tuple, None = dynamic dim).
    """

    name: str = "?"

    def __init__(self, path: Path | None, threads: int | None):
        self.path = path
        self.threads = check_threads(threads)
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.input_shapes: dict[str, Shape] = {}

    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run the model. A single array feeds the only input; returns {output name: array}."""
        feed = self._feed(inputs)
        self._check_shapes(feed)
        try:
            outputs = self._run(feed)
        except BackendError:
            raise
        except Exception as exc:  # runtime-specific errors -> one error type naming the file
            shapes = {k: v.shape for k, v in feed.items()}
            raise BackendError(f"{self.name}: running {self._where()} on inputs {shapes} "
                               f"failed: {exc}") from exc
        return {k: _as_output(v) for k, v in outputs.items()}

    __call__ = run

    @abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runtime-specific inference on validated, ordered inputs."""

    def _where(self) -> str:
        return repr(str(self.path)) if self.path is not None else "the in-memory model"

    def _feed(self, inputs) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            unknown = [k for k in inputs if k not in self.input_names]
            missing = [k for k in self.input_names if k not in inputs]
            if unknown or missing:
                raise BackendError(f"{self.name}: {self._where()} takes inputs "
                                   f"{self.input_names}, got {list(inputs)}")
            return {k: _as_input(inputs[k]) for k in self.input_names}
        if len(self.input_names) != 1:
            raise BackendError(f"{self.name}: {self._where()} has inputs {self.input_names}: "
                               "pass a dict {name: array} instead of one array")
        return {self.input_names[0]: _as_input(inputs)}

    def _check_shapes(self, feed: dict[str, np.ndarray]) -> None:
        for n, x in feed.items():
            want = self.input_shapes.get(n)
            if want is None:
                continue
            if len(want) != x.ndim or any(w is not None and w != g for w, g in zip(want, x.shape)):
                shown = tuple("?" if w is None else w for w in want)
                raise BackendError(f"{self.name}: {self._where()} expects input {n!r} of shape "
                                   f"{shown} (? = any), got {x.shape}; export the model with "
                                   "that dimension dynamic to feed other shapes")

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self._where()} inputs={self.input_shapes} "
                f"outputs={self.output_names} threads={self.threads}>")


def _as_input(x) -> np.ndarray:
    """Contiguous numpy array; floating inputs become float32."""
    a = np.asarray(x)
    if a.dtype.kind == "f" and a.dtype != np.float32:
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


def _as_output(x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind == "f" and a.dtype != np.float32:
        a = a.astype(np.float32)
    return a
