"""The one table of export targets: what a bundle key means, which runtime opens it, which files
it has, how it is converted and how it is quantized. Export, the predictors, INT8, the
benchmark, the CLI and the tests read it; nothing else names a target's runtime or files.

Torch-free: converters and quantizers are named here and imported only when used."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from edgead.core.errors import UsageError

INT8_SUFFIX = "_int8"
TORCH = "torch"  # the runtime of a training run folder; never a bundle target


@dataclass(frozen=True)
class Target:
    name: str  # key of the FP32 artefact in a bundle's manifest
    runtime: str  # runtimes.load() name
    files: tuple[str, ...]  # file names in the bundle; the first is the one the runtime opens
    converter: str  # function in edgead.export that writes the FP32 files
    quantizer: str  # module with `candidates(...)` for INT8 (see quant/)
    description: str

    @property
    def main(self) -> str:
        return self.files[0]

    @property
    def int8_key(self) -> str:
        return self.name + INT8_SUFFIX


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("onnx", "onnxruntime", ("model.onnx",), "to_onnx", "quant.onnxruntime_int8", "ONNX Runtime"),
    Target("openvino", "openvino", ("model.xml", "model.bin"), "to_openvino", "quant.openvino_int8", "OpenVINO IR"),
    Target("tflite", "tflite", ("model.tflite",), "to_tflite", "quant.tflite_int8", "LiteRT / TFLite"),
)}
NAMES: tuple[str, ...] = tuple(TARGETS)


def get(name: str) -> Target:
    """The target called `name` (an FP32 key such as "onnx" or an INT8 key such as "onnx_int8")."""
    base = name[: -len(INT8_SUFFIX)] if name.endswith(INT8_SUFFIX) else name
    if base not in TARGETS:
        raise UsageError(f"unknown export target {name!r}; choose from {', '.join(NAMES)}")
    return TARGETS[base]


def parse(specs: list[str]) -> list[str]:
    """["onnx,openvino", "tflite"] -> ["onnx", "openvino", "tflite"], each checked."""
    names = [t.strip() for spec in specs for t in spec.split(",") if t.strip()]
    if not names:
        raise UsageError(f"no export target given; choose from {', '.join(NAMES)}")
    int8 = [n for n in names if n.endswith(INT8_SUFFIX)]
    if int8:
        raise UsageError(f"{int8[0]!r} is not an export target: export {int8[0][:-len(INT8_SUFFIX)]!r} with --int8")
    return [get(n).name for n in dict.fromkeys(names)]


def runtime_of(key: str, artefact: Mapping) -> str:
    """The runtime that opens a bundle artefact (its manifest entry says so; else the table)."""
    return artefact.get("runtime") or get(key).runtime


def for_runtime(runtime: str) -> Target:
    for t in TARGETS.values():
        if t.runtime == runtime:
            return t
    raise UsageError(f"no export target runs on {runtime!r}; runtimes: "
                     f"{', '.join(t.runtime for t in TARGETS.values())}")
