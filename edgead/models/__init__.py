"""Model registry: name -> module, task, and when to pick it. The table is torch-free; each
model module (torch) provides `Config`, `Model`, `fit` and `complexity`, and its `Model`'s
forward returns the task's named outputs (`Model.outputs`), raw: the task's post-processing
does the rest, the same for every model of that task."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple

from ..core.errors import UsageError

class ModelEntry(NamedTuple):
    module: str
    task: str  # the edgead.tasks package that trains, exports and serves it
    why: str  # one line: when to pick it


MODELS: dict[str, ModelEntry] = {
    "padim": ModelEntry("edgead.models.padim", "image", "the default: per-location Gaussians of pretrained features; "
                        "best whole-image detection measured; nothing to train"),
    "hetnet": ModelEntry("edgead.models.hetnet", "image", "distilled students; best AUPRO on small defects of "
                         "aligned parts; trains in minutes"),
    "patchcore": ModelEntry("edgead.models.patchcore", "image", "nearest-neighbour memory bank; strong on textures; no training loop; slowest (bank search)"),
    "pbas": ModelEntry("edgead.models.pbas", "image", "smallest head, fastest on ONNX Runtime; for a tight budget; INT8 least robust"),
    "fader": ModelEntry("edgead.models.fader", "image", "sharpest anomaly maps (localisation first); weaker whole-image ranking on textures"),
    "uniad": ModelEntry("edgead.models.uniad", "image", "several products, one model (--data A --data B): a small "
                        "Transformer rebuilds the features; per-product thresholds"),
    "onenip": ModelEntry("edgead.models.onenip", "image", "several products, one model; sharper maps than uniad (each "
                         "image is compared with a stored normal image of its product); predictions must name the product"),
    "pradot": ModelEntry("edgead.models.pradot", "image", "parts whose layout matters (a piece missing or in the "
                         "wrong place): prototypes per grid cell and global ones, fitted by optimal transport"),
    "fpfhcore": ModelEntry("edgead.models.fpfhcore", "pointcloud", "point clouds: multi-scale FPFH descriptors "
                           "and a coreset bank of normal ones; no pretrained 3-D weights needed"),
    "gridcore": ModelEntry("edgead.models.gridcore", "pointcloud", "organised scans (depth cameras, MVTec 3D-AD): "
                           "descriptors and bank search all inside the graph; no scipy on the device"),
    "mmae": ModelEntry("edgead.models.mmae", "signal", "signals (ECG, sensor series): multi-scale masked autoencoder, < 0.5 M parameters"),
    "windowknn": ModelEntry("edgead.models.windowknn", "signal", "signals: distance to the nearest normal window, searched "
                            "in the graph; beats mmae on beat-to-beat ECG and short spikes, not on slow periodic series"),
}

DEFAULT_MODEL = "padim"  # what `edgead train` fits without --model; why: BENCHMARKS.md, issue 17


def check(name: str) -> ModelEntry:
    """The registry entry of `name` (torch-free)."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def get(name: str) -> ModuleType:
    return importlib.import_module(check(name).module)


def task_of(name: str) -> str:
    """The task ("image", "signal") a model belongs to (torch-free)."""
    return check(name).task


def configured(name: str, overrides: dict | None = None):
    """`name`'s Config with `overrides` (e.g. from `--set KEY=VALUE`); an unknown key is a
    usage error listing the model's settings."""
    import dataclasses

    cfg = get(name).Config()
    fields = [f.name for f in dataclasses.fields(cfg)]
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise UsageError(f"{name} has no setting {key!r}; it has: {', '.join(fields)}")
        setattr(cfg, key, value)
    return cfg


def build(cfg: dict, pretrained: bool = False):
    """Instantiate a run's torch model (without weights unless `pretrained`)."""
    import dataclasses

    mod = get(cfg["model"]["name"])
    fields = {f.name for f in dataclasses.fields(mod.Config)}
    recorded = {**getattr(mod, "RECORDED_BEFORE", {}), **cfg["model"]["config"]}
    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in recorded.items() if k in fields}
    return mod.Model(mod.Config(**params), pretrained=pretrained)


def load_run(run_dir):
    """The trained torch model of a run folder, in eval mode, and its record."""
    from pathlib import Path

    from safetensors.torch import load_file

    from ..core.run import WEIGHTS, read_run_config

    cfg = read_run_config(run_dir)
    model = build(cfg)
    model.load_state_dict(load_file(str(Path(run_dir) / WEIGHTS)), strict=True)
    return model.eval(), cfg


def torch_backend(net):
    """A torch model behind the runtimes interface, its outputs named as the model names them."""
    import runtimes

    return runtimes.load("torch", net, output_names=list(net.outputs))


def save_run(out, net, config: dict) -> None:
    """Write a run folder atomically: the weights (safetensors), their sha256 and the record."""
    from safetensors.torch import save_file

    from ..core.atomic import atomic_folder, write_json
    from ..core.run import RUN_FILE, WEIGHTS, weights_sha256

    with atomic_folder(out, RUN_FILE) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / WEIGHTS))
        config["weights_sha256"] = weights_sha256(tmp)
        write_json(tmp / RUN_FILE, config)
