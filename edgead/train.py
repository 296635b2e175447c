"""`edgead train` as a Python call, for every task: the model's task does the work.

    from edgead.train import train
    train("data/hazelnut", "runs/hazelnut")  # the default image model, padim
    train("ECG5000_TRAIN.txt", "runs/ecg", model="mmae", steps=2000)"""
from __future__ import annotations

from pathlib import Path

from edgead.models import DEFAULT_MODEL


def train(data: str | Path, out: str | Path, model: str = DEFAULT_MODEL, **options) -> dict | None:
    """Train `model` on the normal part of `data` and write the run folder `out`; returns its
    record (None on the ranks other than 0 under torchrun). `options` are the task's own (see edgead.tasks.image.train / edgead.tasks.signal.train)."""
    from edgead.tasks import for_model

    return for_model(model).train(data, out, model=model, **options)
