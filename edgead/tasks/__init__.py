"""The task registry: task name -> Task, and the task of a model, a run or a bundle.

The only place that maps names to modalities: nothing else compares `task` strings."""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Mapping

from edgead.core.errors import BundleError, RunError, UsageError
from edgead.core.records import task_of
from edgead.tasks.base import Task

#: task name -> "module:Class" of its Task (imported on first use)
TASKS: dict[str, str] = {
    "image": "edgead.tasks.image.task:ImageTask",
    "signal": "edgead.tasks.signal.task:SignalTask",
    "pointcloud": "edgead.tasks.pointcloud.task:PointCloudTask",
}
_loaded: dict[str, Task] = {}


def get(name: str) -> Task:
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; this edgead knows {', '.join(TASKS)}")
    if name not in _loaded:
        module, cls = TASKS[name].split(":")
        _loaded[name] = getattr(importlib.import_module(module), cls)()
    return _loaded[name]


def all_tasks() -> list[Task]:
    return [get(n) for n in TASKS]


def for_model(model: str) -> Task:
    from edgead.models import task_of as model_task

    return get(model_task(model))


def check_model(model: str, task: str, example: str) -> None:
    """Refuse a model of another task (e.g. mmae given image data), naming one that fits."""
    got = for_model(model).name
    if got != task:
        raise UsageError(f"{model} is a {got} model; {task} data needs a {task} model such as {example}")


def for_record(record: Mapping) -> Task:
    return get(task_of(record))


def for_path(path: str | Path) -> Task:
    """The task of a run folder or a bundle folder (read from its record, not verified here)."""
    from edgead.core.bundle import MANIFEST
    from edgead.core.run import RUN_FILE

    p = Path(path)
    if p.is_file() and p.name in (RUN_FILE, MANIFEST):
        p = p.parent
    for name, error in ((RUN_FILE, RunError), (MANIFEST, BundleError)):
        f = p / name
        if f.is_file():
            try:
                record = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as e:
                raise error(f"{f} is not valid JSON ({e}); re-create it with `edgead train` / `edgead export`") from e
            if not isinstance(record, dict):
                raise error(f"{f} should hold a JSON object; re-create it with `edgead train` / `edgead export`")
            return for_record(record)
    if not p.exists():
        raise UsageError(f"{p} does not exist: pass a run folder (from `edgead train`) or a bundle (from `edgead export`)")
    raise UsageError(f"{p} is neither a run folder (no {RUN_FILE}) nor a bundle (no {MANIFEST}); "
                     "pass what `edgead train` or `edgead export` wrote")


__all__ = ["Task", "TASKS", "get", "all_tasks", "for_model", "check_model", "for_record", "for_path"]
