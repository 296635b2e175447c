"""What every task's predictor shares: open a training run (torch) or a bundle (verified),
check that it belongs to the predictor's task, choose the artefact, load its runtime, and
return the model's outputs by the names the task fixed at conversion.

Torch-free: torch is imported only to run a training run folder directly."""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

import runtimes
from edgead import targets
from edgead.core import bundle as bundle_io
from edgead.core import speed
from edgead.core.errors import BundleError, EdgeadError, TaskMismatch, UsageError
from edgead.core.records import Manifest, RunRecord, task_of
from edgead.core.run import is_run, read_run_config

PRECISIONS = ("auto", "fp32", "int8")


def runtime_preference() -> list[str]:
    """Fastest-first order of runtimes for this machine when `runtime="auto"`."""
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
        return ["openvino", "onnxruntime", "tflite"]
    return ["tflite", "onnxruntime", "openvino"]


@dataclass(frozen=True)
class Choice:
    """The artefact a predictor loads, and why (printed by `edgead predict` and `eval`)."""

    target: str
    reason: str


def choose_target(manifest: Mapping, runtime: str = "auto", precision: str = "auto",
                  bundle_dir: str | Path | None = None, threads: int | None = None, device=None) -> Choice:
    """The bundle artefact to load: the wanted (or first installed, fastest-first) runtime; with
    `precision="auto"`, its INT8 artefact (which passed the accuracy gate) only where it was
    measured faster than FP32 on this machine's CPU (see edgead.core.speed), else FP32."""
    arts = manifest["artefacts"]
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if runtime == "auto":
        want = runtime_preference()
    elif runtime in runtimes.BACKENDS:
        want = [runtime]
    else:
        raise UsageError(f"unknown runtime {runtime!r}; choose from {', '.join(runtimes.BACKENDS)} or 'auto'")
    candidates = [(t, a) for t, a in arts.items() if a.get("runtime") != targets.TORCH and _runtime(t, a) in want]
    if precision != "auto":
        candidates = [(t, a) for t, a in candidates if a.get("precision", "fp32") == precision]
    usable = [(t, a) for t, a in candidates if runtimes.available(_runtime(t, a))]
    if not usable:
        have = {t: f"{_runtime(t, a)}/{a.get('precision', 'fp32')}" for t, a in arts.items()}
        hint = f"installed runtimes: {runtimes.installed() or 'none'}"
        raise UsageError(f"no artefact in the bundle fits runtime={runtime!r}, precision={precision!r} "
                         f"(bundle has {have}; {hint}); install one with pip install 'edgead[onnxruntime]' "
                         f"(or [openvino], [tflite]) or export that target")
    rank = {n: i for i, n in enumerate(want)}
    first = min(rank[_runtime(*ta)] for ta in usable)
    mine = {a.get("precision", "fp32"): t for t, a in sorted(usable, key=lambda ta: ta[0]) if rank[_runtime(t, a)] == first}
    if precision != "auto" or len(mine) == 1:
        key = next(iter(mine.values()))
        return Choice(key, f"{key}: the only {want[first]} artefact" + ("" if precision == "auto" else f" in {precision}"))
    if device is not None and str(device).upper() != "CPU":
        return Choice(mine["fp32"], f"{mine['fp32']} (FP32): speed is measured on CPUs only; on {device}, ask for "
                                    "--precision int8 to run INT8")
    found, source = speed.figures(bundle_dir, manifest)
    verdict = speed.faster_int8(mine["fp32"], mine["int8"], found, source, threads)
    return Choice(mine["int8"] if verdict.int8 else mine["fp32"], verdict.reason)


def _runtime(key: str, art: Mapping) -> str:
    """The runtime of an artefact; "?" for a key this edgead does not know (never chosen)."""
    try:
        return targets.runtime_of(key, art)
    except UsageError:
        return "?"


def legacy_output_names(produced: list[str], wanted: tuple[str, ...]) -> dict[str, str]:
    """Schema-1 TFLite artefacts written before outputs were named at conversion call them
    output_0, output_1, ... in the order of the model's outputs; map them by that index (and a
    single output to the single task output)."""
    if len(produced) == len(wanted) and all(n == f"output_{i}" for i, n in enumerate(produced)):
        return dict(zip(produced, wanted))
    if len(produced) == len(wanted) == 1:  # one output: nothing to confuse it with
        return {produced[0]: wanted[0]}
    return {}


def _open_bundle(path: Path, target: str | None, runtime: str, precision: str, check_task, threads: int | None = None,
                 device=None, tries: int = 3):
    """(manifest, choice, its runtime, {file: verified bytes}). A bundle being rewritten
    by another process while we read it can pair the old manifest with a new file: that shows as
    a checksum error with a manifest that changed meanwhile, and is read again."""
    manifest_file = path / bundle_io.MANIFEST
    for attempt in range(tries):
        before = manifest_file.read_bytes() if manifest_file.is_file() else None
        try:
            manifest = bundle_io.load_manifest(path, verify=False)
            present = bundle_io.present_targets(path, manifest)  # a device bundle may keep one target's files
            try:
                check_task(manifest, path, "bundle")
                choice = Choice(target, f"{target}: asked for by name") if target else \
                    choose_target({**manifest, "artefacts": {t: manifest["artefacts"][t] for t in present}},
                                  runtime, precision, path, threads, device)
                key = choice.target
                bundle_io.artefact_path(path, manifest, key)  # names the bundle's targets if unknown
            except EdgeadError:  # a damaged bundle is reported first, as a verified load would
                bundle_io.verify_files(path, bundle_io.without_absent(manifest, present))
                raise
            art = manifest["artefacts"][key]
            # the files in use (the artefact's, and those of no artefact) verified; the artefact's
            # read once and kept for the runtime
            content = bundle_io.verify_files(path, bundle_io.only_target(manifest, key), keep=bundle_io.artefact_files(art))
            rt = _runtime(key, art)
            if rt not in runtimes.BACKENDS or rt == targets.TORCH:
                raise BundleError(f"{path}: artefact {key!r} is for {rt!r}; a bundle carries ONNX, OpenVINO or TFLite "
                                  "artefacts only (torch programs can unpickle code, so they are never loaded from one)")
            mixed = art.get("weights_sha256") and manifest.get("weights_sha256") and \
                art["weights_sha256"] != manifest["weights_sha256"]
            if mixed:
                raise BundleError(f"{path}: artefact {key!r} was made from other weights than the bundle's "
                                  "thresholds and input spec (two runs were mixed); re-export the bundle")
            return manifest, choice, rt, {Path(n).name: b for n, b in content.items()}  # runtimes look up by name
        except BundleError:
            after = manifest_file.read_bytes() if manifest_file.is_file() else None
            if after == before or attempt == tries - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


class BasePredictor:
    """Subclasses set `task`, `output_names`, `default_input_name` and implement `_setup`."""

    task: ClassVar[str]
    output_names: ClassVar[tuple[str, ...]]
    default_input_name: ClassVar[str]

    def __init__(self, source: str | Path, runtime: str = "auto", threads: int | None = None,
                 precision: str = "auto", device: Any = None, target: str | None = None):
        """`target` names one artefact of the bundle (a key of its manifest's "artefacts"),
        overriding the choice by `runtime` and `precision`."""
        path = Path(source)
        if is_run(path):
            self._check_task(read_run_config(path), path, "training run")
            if runtime not in ("auto", targets.TORCH):
                raise UsageError(f"{path} is a training run: it runs on torch only; export a bundle for {runtime!r}")
            from edgead.models import load_run  # torch, only for training runs

            model, record = load_run(path)
            backend = runtimes.load(targets.TORCH, model, threads=threads, output_names=list(model.outputs))
            self._init(record, backend, targets.TORCH, "fp32")
            self.choice = Choice(targets.TORCH, "a training run runs on torch")
            return
        manifest, self.choice, rt, content = _open_bundle(path, target, runtime, precision, self._check_task, threads,
                                                          device)
        art = manifest["artefacts"][self.choice.target]
        backend = runtimes.load(rt, path / art["file"], threads=threads, device=device, files=content)
        self._init(manifest, backend, self.choice.target, art.get("precision", "fp32"))

    @classmethod
    def from_backend(cls, config: RunRecord | Manifest, backend: Any, target: str = targets.TORCH,
                     precision: str = "fp32"):
        """A predictor around an already loaded backend (training and the INT8 gate use it)."""
        self = cls.__new__(cls)
        self._check_task(config, Path("."), "model")
        self._init(config, backend, target, precision)
        self.choice = Choice(target, "given by the caller")
        return self

    def _check_task(self, record: Mapping, path: Path, what: str) -> None:
        got = task_of(record)
        if got != self.task:
            from edgead.tasks import get as get_task

            raise TaskMismatch(f"{path} is a {got} {what}, not a {self.task} one: use "
                               f"{get_task(got).predictor_path} (or the `edgead` command, which picks it)")

    def _init(self, config: Mapping, backend: Any, target: str, precision: str) -> None:
        self.config = config
        self.backend, self.target, self.precision = backend, target, precision
        self.input_name = config.get("input_name", self.default_input_name)
        produced = list(getattr(backend, "output_names", None) or [])
        missing = [n for n in self.output_names if n not in produced]
        self._rename = legacy_output_names(produced, self.output_names) if missing and produced else {}
        self._setup(config)

    def _setup(self, config: Mapping) -> None:
        raise NotImplementedError

    @property
    def runtime(self) -> str:
        return self.backend.name

    def scored_by(self) -> dict:
        """What scored a result, for JSON lines: the bundle's target (artefact key), the
        runtime, the precision, and the device where the backend reports one."""
        out = {"target": self.target, "runtime": self.runtime, "precision": self.precision}
        device = getattr(self.backend, "device", None)
        return {**out, "device": str(device)} if device is not None else out

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One runtime call: the model input -> the task's named outputs."""
        out = self.backend.run({self.input_name: np.ascontiguousarray(x, np.float32)})
        if self._rename:
            out = {self._rename.get(k, k): v for k, v in out.items()}
        missing = [n for n in self.output_names if n not in out]
        if missing:
            raise TaskMismatch(f"{self.runtime} artefact {self.target!r} lacks the {self.task} output(s) {missing} "
                               f"(it has {sorted(out)}); re-export the bundle with this edgead")
        return out
