"""Model registry (torch only). Each model module provides `Config`, `Model`, `fit` and `complexity`.

`Model.forward(image (N, 3, H, W)) -> anomaly_map (N, 1, h, w)`, raw and low resolution;
`edgead.postprocess` does the rest, the same for every model."""
from __future__ import annotations

import importlib
from types import ModuleType

MODELS: dict[str, tuple[str, str]] = {
    "hetnet": ("edgead.models.hetnet", "distilled students on a pretrained teacher; the general default (accurate maps, mid-size)"),
    "patchcore": ("edgead.models.patchcore", "memory bank of normal patches, nearest-neighbour distance; the familiar baseline, "
                  "no training loop, strong on textures; bank grows latency"),
    "pbas": ("edgead.models.pbas", "discriminator trained on synthesised boundary anomalies; the fastest at inference, "
             "pick it for tight latency budgets"),
    "fader": ("edgead.models.fader", "inpainting reconstruction with feature attenuation; pick it for objects whose "
              "defects are large or structural (missing/extra parts)"),
    "mmae": ("edgead.models.mmae", "signals (ECG, sensor series): multi-scale masked autoencoder, < 0.5 M parameters; pick it for 1-D data"),
}


def get(name: str) -> ModuleType:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return importlib.import_module(MODELS[name][0])
