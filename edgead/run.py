"""Trained runs: a folder with `run.json` (config, input spec, thresholds) and `weights.safetensors`."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

RUN_FILE = "run.json"
WEIGHTS = "weights.safetensors"


class RunError(ValueError):
    """A run folder is missing or malformed."""


def is_run(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def read_run_config(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    f = run_dir / RUN_FILE
    if not f.is_file():
        raise RunError(f"{run_dir} is not a trained run (no {RUN_FILE}); create one with `edgead train`")
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RunError(f"{f}: unreadable run config ({e}); re-run `edgead train`") from e
    for key in ("model", "input", "post", "thresholds"):
        if key not in cfg:
            raise RunError(f"{f}: missing key {key!r}; re-run `edgead train`")
    if not (run_dir / WEIGHTS).is_file():
        raise RunError(f"{run_dir / WEIGHTS} is missing; re-run `edgead train`")
    return cfg


def build_model(cfg: dict, pretrained: bool = False):
    """Instantiate the run's torch model (without weights unless `pretrained`)."""
    from .models import get

    mod = get(cfg["model"]["name"])
    fields = {f.name for f in dataclasses.fields(mod.Config)}
    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg["model"]["config"].items() if k in fields}
    return mod.Model(mod.Config(**params), pretrained=pretrained)


def load_model(run_dir: str | Path):
    """The trained torch model of a run, in eval mode."""
    from safetensors.torch import load_file

    cfg = read_run_config(run_dir)
    model = build_model(cfg)
    model.load_state_dict(load_file(str(Path(run_dir) / WEIGHTS)), strict=True)
    return model.eval(), cfg
