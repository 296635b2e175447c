"""Model registry (torch only). Each model module provides `Config`, `Model`, `fit` and `complexity`.

`Model.forward(image (N, 3, H, W)) -> anomaly_map (N, 1, h, w)`, raw and low resolution;
`edgead.postprocess` does the rest, the same for every model."""
from __future__ import annotations

import importlib
from types import ModuleType

MODELS: dict[str, tuple[str, str]] = {
    "hetnet": ("edgead.models.hetnet", "the default: distilled students; balanced accuracy, speed and INT8"),
    "patchcore": ("edgead.models.patchcore", "best whole-image detection on textures; no training loop; slowest (bank search)"),
    "pbas": ("edgead.models.pbas", "smallest head, fastest on ONNX Runtime; for a tight budget; INT8 least robust"),
    "fader": ("edgead.models.fader", "sharpest anomaly maps (localisation first); weaker whole-image ranking on textures"),
    "mmae": ("edgead.models.mmae", "signals (ECG, sensor series): multi-scale masked autoencoder, < 0.5 M parameters"),
}


def get(name: str) -> ModuleType:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return importlib.import_module(MODELS[name][0])
