"""ONNX Runtime INT8: static QDQ quantization (`onnxruntime.quantization.quantize_static`).

uint8 activations, per-channel int8 weights in a 7-bit range (`reduce_range`: x86 CPUs without
VNNI multiply u8 x s8 pairs into saturating int16 sums; with full-range weights that wrecked
the anomaly maps here, 6 pixel-AUROC points lost), MinMax calibration (anomaly scores live in
the tails of activation distributions, so ranges are not clipped), after ORT's own
pre-processing (shape inference and graph optimisation).
Repairs keep the nodes nearest the input and the output in FP32 (`nodes_to_exclude`, see quant.graph)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .gate import Candidate
from .graph import ends, head_levels, input_distances, output_distances

RUNTIME = "onnxruntime"


def _reader(inputs: np.ndarray, name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(inputs)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {name: np.ascontiguousarray(x[None], np.float32)}

    return Reader()


def _input_name(graph) -> str:
    inits = {i.name for i in graph.initializer}
    names = [i.name for i in graph.input if i.name not in inits]
    if len(names) != 1:
        raise ValueError(f"INT8 calibration supports models with one input, this one has {names}")
    return names[0]


def distances(graph, input_name: str) -> tuple[dict[str, int], dict[str, int]]:
    """Node name -> fewest edges to a graph output, and from the nodes reading `input_name`."""
    producer = {o: n.name for n in graph.node for o in n.output}
    producers = {n.name: [producer[i] for i in n.input if i in producer] for n in graph.node}
    return (output_distances(producers, [producer[o.name] for o in graph.output if o.name in producer]),
            input_distances(producers, [n.name for n in graph.node if input_name in n.input]))


def quantize(model: Path, input_name: str, calib: np.ndarray, out: Path, exclude: list[str] | tuple = (),
             cache: Path | None = None) -> Path:
    """Static QDQ quantization of a pre-processed model; `exclude` nodes stay FP32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(model), str(out), _reader(calib, input_name), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(exclude),
                    extra_options={"CalibMaxIntermediateOutputs": 16},
                    calibration_cache_path=str(cache) if cache is not None else None)
    return out


def candidates(fp32: Path, calib: np.ndarray, workdir: Path, **_) -> Iterator[Candidate]:
    """The fully quantized QDQ model, then repairs with growing FP32 ends (see quant.graph)."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = workdir / "ort_preprocessed.onnx"
    try:
        quant_pre_process(str(fp32), str(pre))
    except Exception:  # ORT's symbolic shape inference gives up on some graphs (PatchCore's min over the bank)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre)).graph
    name = _input_name(graph)
    cache = workdir / "ort_calibration.json"  # calibrate once, reuse for the repairs
    base = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ", "activations": "uint8",
            "weights": "int8 per-channel, 7-bit range", "calibration": "MinMax", "calibration_images": int(len(calib))}
    first = quantize(pre, name, calib, workdir / "model_int8.onnx", cache=cache)
    yield Candidate("all layers INT8", {"model_int8.onnx": first}, "model_int8.onnx", {**base, "fp32_nodes": []})
    dist_out, dist_in = distances(graph, name)
    for level in head_levels(dist_out):
        keep = ends(dist_out, dist_in, level)
        out = quantize(pre, name, calib, workdir / f"model_int8_ends{level}.onnx", keep, cache)
        yield Candidate(f"FP32 for the {len(keep)} nodes within {level} steps of the input or the output",
                        {"model_int8.onnx": out}, "model_int8.onnx", {**base, "fp32_nodes": keep})
