"""The records that cross module boundaries: a run's `run.json` and a bundle's `edgead.json`
(schema 1). This is the one place that knows their key names; readers go through the helpers
below instead of digging into nested dicts. Fields added after schema 1 are optional, so
every schema-1 file ever written still loads (tests/golden holds one of each task)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, TypedDict

SCHEMA_VERSION = 1
RUN_REQUIRED = ("model", "input", "post", "thresholds")
MANIFEST_REQUIRED = ("schema_version", "task", "model", "input", "outputs", "artefacts", "edgead_version")
LEGACY_TASK = "image"  # files written before `task` existed are image ones


class ModelRecord(TypedDict):
    name: str
    config: dict[str, Any]


class TrainRecord(TypedDict, total=False):
    data: dict[str, Any]  # where the data was, its summary and content fingerprint
    split: dict[str, Any]  # exactly which samples were fitted, held out, tested
    n_fit: int
    n_holdout: int
    seed: int
    seconds: float
    log: dict[str, Any]


class RunRecord(TypedDict, total=False):
    edgead_version: str
    task: str
    model: ModelRecord
    input: dict[str, Any]  # the task's input spec
    input_name: str
    post: dict[str, Any]
    outputs: dict[str, Any]
    thresholds: dict[str, dict[str, Any]]  # level ("image", "pixel", "window", "point") -> ThresholdSet
    train: TrainRecord
    complexity: dict[str, Any]
    weights_sha256: str  # of weights.safetensors (optional: runs before it lack it)


class ArtefactRecord(TypedDict, total=False):
    file: str
    extra_files: list[str]
    runtime: str
    precision: str  # "fp32" or "int8"
    sha256: str
    bytes: int
    weights_sha256: str  # the run weights it was converted from
    max_abs_diff_vs_torch: float
    parity_input: str  # which input the parity check used
    source_target: str  # INT8: the FP32 target it was quantized from
    quantization: dict[str, Any]
    calibration: dict[str, Any]
    gate: dict[str, Any]


class Manifest(TypedDict, total=False):
    schema_version: int
    edgead_version: str
    task: str
    model: ModelRecord
    input: dict[str, Any]
    input_name: str
    post: dict[str, Any]
    outputs: dict[str, Any]
    thresholds: dict[str, dict[str, Any]]
    provenance: dict[str, Any]  # train, complexity, metrics of the run
    weights_sha256: str
    artefacts: dict[str, ArtefactRecord]
    files: dict[str, dict[str, Any]]


#: every top-level key schema 1 defines; readers refuse others, so a new key needs a schema bump
MANIFEST_KEYS = tuple(Manifest.__annotations__) + ("manifest_sha256",)


def task_of(record: Mapping) -> str:
    return record.get("task") or LEGACY_TASK


def train_of(record: Mapping) -> TrainRecord:
    """The training record of a run, or the copy a bundle keeps in its provenance."""
    return record.get("train") or record.get("provenance", {}).get("train") or {}


def split_of(record: Mapping) -> dict[str, Any]:
    return dict(train_of(record).get("split") or {})


def same_model(a: Mapping, b: Mapping) -> bool:
    """Whether two records (run or manifest) describe the same trained weights: by the weights'
    sha256 where both have it, else by what a predictor reads (model, input, thresholds)."""
    wa, wb = a.get("weights_sha256"), b.get("weights_sha256")
    if wa and wb:
        return wa == wb
    keys = ("model", "input", "post", "thresholds")
    return all(a.get(k) == b.get(k) for k in keys)


PATH_KEYS = ("root", "source")  # the training data's location in TrainRecord.data


def path_digest(path: str | Path) -> str:
    return hashlib.sha256(str(Path(path).expanduser().resolve()).encode("utf-8")).hexdigest()


def device_train_record(train: Mapping) -> dict:
    """A run's training record as a bundle carries it: the data's location (which names user
    folders) becomes its base name plus a sha256 of the full path, enough to recognise the same
    folder on the training machine and nothing more."""
    out = json.loads(json.dumps(dict(train)))
    data = out.get("data", {})
    for key in PATH_KEYS:
        if data.get(key):
            data[f"{key}_sha256"] = path_digest(data[key])
            data[key] = Path(data[key]).name
    return out


def scrub_paths(record, paths) -> Any:
    """`record` (JSON-able) with every occurrence of the given absolute paths replaced by their
    base names: calibration and validation sources, parity notes... name no user folders."""
    text = json.dumps(record, ensure_ascii=False)
    forms = {str(f) for p in paths if p for f in (Path(p), Path(p).expanduser().resolve())}
    for form in sorted(forms, key=len, reverse=True):
        if Path(form).is_absolute() and len(Path(form).parts) > 1:
            text = text.replace(json.dumps(form, ensure_ascii=False)[1:-1], Path(form).name)
    return json.loads(text)


def is_data_path(train: Mapping, key: str, folder: str | Path) -> bool:
    """Whether `folder` is the recorded data location (full path in a run, digest in a bundle)."""
    data = train.get("data", {})
    if data.get(f"{key}_sha256"):
        return data[f"{key}_sha256"] == path_digest(folder)
    return bool(data.get(key)) and Path(data[key]).resolve() == Path(folder).resolve()
