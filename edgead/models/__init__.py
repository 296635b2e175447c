"""Model registry (torch only). Each model module provides `Config`, `Model`, `fit` and `complexity`.

`Model.forward(image (N, 3, H, W)) -> anomaly_map (N, 1, h, w)`, raw and low resolution;
`edgead.postprocess` does the rest, the same for every model."""
from __future__ import annotations

import importlib
from types import ModuleType

MODELS: dict[str, tuple[str, str]] = {
    "hetnet": ("edgead.models.hetnet", "the default: distilled students, accurate maps on objects and textures"),
    "patchcore": ("edgead.models.patchcore", "the familiar baseline: nearest normal patch, no training loop; bigger bank, slower"),
    "pbas": ("edgead.models.pbas", "the fastest: backbone + tiny discriminator; for tight latency budgets"),
    "fader": ("edgead.models.fader", "inpainting reconstruction; for large or structural defects (missing, extra parts)"),
    "mmae": ("edgead.models.mmae", "signals (ECG, sensor series): multi-scale masked autoencoder, < 0.5 M parameters"),
}


def get(name: str) -> ModuleType:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return importlib.import_module(MODELS[name][0])
