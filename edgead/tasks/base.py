"""The Task contract: everything that differs between modalities, behind one interface, so
that train, export, INT8, benchmark and the CLI are written once. A new modality is a new
package under edgead/tasks/ with a `Task` subclass, registered in edgead/tasks/__init__.py.

Torch-free: each method imports its own (torch-side) modules when called."""
from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

Flags = dict[str, str]  # argparse dest -> the flag as typed, e.g. {"image_size": "--image-size"}


@dataclass
class FileScores:
    """What scoring one input file gives, the same for `edgead predict` and the Ray engine."""

    rows: list[dict]  # `predict --json` lines (one per image, scan, sample or window), before what scored them
    line: str  # the plain-text line of `predict` without --json


class Task:
    name: str
    predictor_path: str  # "module:Class" of the torch-free predictor
    output_names: tuple[str, ...]  # the model's outputs, named once for every artefact
    input_name: str

    # ------------------------------------------------------------------ predictor
    def predictor_class(self) -> type:
        module, cls = self.predictor_path.split(":")
        return getattr(importlib.import_module(module), cls)

    def predictor(self, source, **kw):
        return self.predictor_class()(source, **kw)

    # ------------------------------------------------------------------ command line
    def add_arguments(self, command: str, group: argparse._ArgumentGroup) -> None:
        """Add this task's own flags of `command` ("train", "eval", "predict"). Their defaults
        must be None, so that the CLI can tell a flag that was given from one that was not."""

    def add_commands(self, sub) -> None:
        """Add this task's own subcommands (e.g. `synth3d`) to the `edgead` command's subparsers."""

    def cli_train(self, a: argparse.Namespace) -> int:
        raise NotImplementedError

    def eval_options(self, a: argparse.Namespace) -> dict:
        """This task's own `edgead eval` flags as keyword arguments of `evaluate`."""
        return {}

    def predict_options(self, a: argparse.Namespace) -> dict:
        """This task's own `edgead predict` flags as keyword arguments of `score_file`."""
        return {}

    def check_predict(self, predictor, **options) -> None:
        """Refuse options that no input could be scored with (before any work)."""

    def input_files(self, paths: list[str]) -> list[tuple[Path, Path]]:
        """The input files of `paths` (files, or folders where the task searches them), each with
        a name for its outputs (maps) that never collides with another's; DataError if none."""
        raise NotImplementedError

    def score_file(self, predictor, path: Path, name: Path, maps: Path | None = None, **options) -> FileScores:
        """Score one input file; with `maps`, write its maps (overlays, point scores) there under
        `name`. Raises DataError / ValueError / OSError for an input that cannot be scored."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training and evaluation
    def train(self, data, out, model: str, **options) -> dict | None:
        raise NotImplementedError

    def evaluate(self, predictor, data, **options) -> dict:
        raise NotImplementedError

    # ------------------------------------------------------------------ export
    def manifest_outputs(self) -> dict:
        """The manifest's `outputs` entry: output names, layout, what runs outside the graph."""
        raise NotImplementedError

    def sample_input(self, run: Mapping, sample: Any = None) -> tuple[np.ndarray, str]:
        """One real model input for the parity check, and a description of where it came from
        for the manifest. A synthetic input only when the training data is gone; data that
        changed since training raises DataError."""
        raise NotImplementedError

    def int8_data(self, run: Mapping, calib=None, calib_size: int | None = None, val=None):
        """The calibration and validation data of the INT8 session (quant.int8.Int8Data)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ benchmark
    def timing_inputs(self, manifest: Mapping, data=None) -> tuple[dict, str]:
        """A JSON-able description of what to time with (passed to a child process), and a
        sentence saying what it is."""
        raise NotImplementedError

    def evaluable(self, data) -> bool:
        """Whether `benchmark --data DATA` can also measure accuracy on DATA (not only time it)."""
        return True

    def input_text(self, spec: Mapping) -> str:
        """The model input in a few characters, for reports: "256x256" for images, "1x140"
        (channels x samples) for signals."""
        if "height" in spec:
            return f"{spec['width']}x{spec['height']}"
        return f"{spec.get('channels')}x{spec.get('length')}"

    def timing_calls(self, predictor, spec: Mapping) -> tuple[Callable[[int], Any], Callable[[int], Any]]:
        """(bare model call, whole predict call), each taking the iteration number."""
        raise NotImplementedError
