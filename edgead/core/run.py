"""Trained runs: a folder with `run.json` (config, input spec, thresholds) and `weights.safetensors`.

Torch-free: reading the record and hashing the weights. The torch model of a run is built by
`edgead.models.load_run`."""
from __future__ import annotations

import json
from pathlib import Path

from edgead.core.errors import RunError
from edgead.core.records import RUN_REQUIRED, RunRecord

RUN_FILE = "run.json"
WEIGHTS = "weights.safetensors"


def is_run(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def read_run_config(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    f = run_dir / RUN_FILE
    if not f.is_file():
        raise RunError(f"{run_dir} is not a trained run (no {RUN_FILE}); create one with `edgead train`")
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{f}: unreadable run config ({e}); re-run `edgead train`") from e
    if not isinstance(cfg, dict):
        raise RunError(f"{f}: should hold a JSON object; re-run `edgead train`")
    for key in RUN_REQUIRED:
        if key not in cfg:
            raise RunError(f"{f}: missing key {key!r}; re-run `edgead train`")
    if not (run_dir / WEIGHTS).is_file():
        raise RunError(f"{run_dir / WEIGHTS} is missing; re-run `edgead train`")
    if "weights_sha256" not in cfg:  # runs written before the field existed
        cfg["weights_sha256"] = weights_sha256(run_dir)
    return cfg


def weights_sha256(run_dir: str | Path) -> str:
    from edgead.core.bundle import sha256_file

    return sha256_file(Path(run_dir) / WEIGHTS)
