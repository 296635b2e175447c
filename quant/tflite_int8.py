"""TFLite full-integer INT8 with ai-edge-quantizer (int8 weights per channel, int8 activations,
int8 input and output tensors) on the FP32 .tflite written by litert-torch.

Calibration merges activation min/max over all samples (the quantizer's default moving average
collapses with batch-1 samples; min/max also keeps the tails, where anomaly scores live).
Repairs (mixed precision) keep the ops nearest the input and the output in float (see
quant.graph); the output tensor is then float too."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .gate import Candidate
from .graph import ends, input_distances, output_distances, repair_levels

RUNTIME = "tflite"


def _signature(model: Path) -> tuple[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_path=str(model)).get_signature_list()
    if len(sigs) != 1:
        raise ValueError(f"{model.name}: INT8 calibration expects one signature, found {list(sigs)}")
    key = next(iter(sigs))
    inputs = sigs[key]["inputs"]
    if len(inputs) != 1:
        raise ValueError(f"{model.name}: INT8 calibration supports one input, found {inputs}")
    return key, inputs[0]


def _data(model: Path, inputs: np.ndarray) -> dict[str, list[dict[str, np.ndarray]]]:
    key, name = _signature(model)
    return {key: [{name: np.ascontiguousarray(x[None], np.float32)} for x in inputs]}


def calibrate(model: Path, calib: np.ndarray) -> dict:
    """Per-tensor min/max over every calibration sample."""
    from ai_edge_quantizer import calibrator, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    cal = calibrator.Calibrator(model.read_bytes(), num_threads=2,
                                mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED,
                                qsv_update_func=qsv_utils.min_max_update)
    cal.calibrate(_data(model, calib), manager)
    return cal.get_model_qsvs()


def quantize(model: Path, ranges: dict, out: Path, float_ops: list[str] | tuple = ()) -> Path:
    """Full-integer model at `out`; ops in `float_ops` (named by their output tensors) stay float."""
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(str(model), recipe.static_wi8_ai8())
    if float_ops:
        # the quantizer names an op by its output tensor names joined and followed by ";"
        regex = "^(?:" + "|".join(re.escape(t) for t in float_ops) + ");$"
        q.update_quantization_recipe(regex, "*", algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
    q.quantize(ranges, enable_progress_report=False).export_model(str(out), overwrite=True)
    return out


def _ops(model: Path):
    """(the model, its main subgraph, each op's scope: its output tensors' names joined, as the
    quantizer names the op)."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    m = tfl.read_model(str(model))
    graph = m.subgraphs[0]
    names = [tfl.get_tensor_name(t) for t in graph.tensors]
    return m, graph, [";".join(names[i] for i in op.outputs if i >= 0) for op in graph.operators]


def distances(model: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Op (named by its output tensors' scope) -> fewest edges to a model output, and from the input."""
    _, graph, scope = _ops(model)
    producer = {i: k for k, op in enumerate(graph.operators) for i in op.outputs if i >= 0}
    producers = {scope[k]: [scope[producer[i]] for i in op.inputs if i in producer]
                 for k, op in enumerate(graph.operators)}
    sources = [scope[k] for k, op in enumerate(graph.operators) if any(i in graph.inputs for i in op.inputs)]
    return (output_distances(producers, [scope[producer[i]] for i in graph.outputs if i in producer]),
            input_distances(producers, sources))


WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}


def unweighted_ops_of_attention_graphs(model: Path) -> list[str]:
    """In a graph with attention (a SOFTMAX), every op without weights (named by its output
    tensors' scope); empty otherwise. TFLite decomposes LayerNorm into MEAN / SQUARED_DIFFERENCE /
    RSQRT chains whose int8 ranges collapse, and int8 attention logits lose the scores: keeping
    what has no weights in float, and the weight layers in INT8, is the Transformer candidate."""
    from ai_edge_quantizer.utils.tfl_flatbuffer_utils import TFL_OP_CODE_TO_NAME

    m, graph, scope = _ops(model)
    codes = [m.operatorCodes[op.opcodeIndex].builtinCode for op in graph.operators]
    # ops the quantizer has no name for (CAST, DEQUANTIZE of float16 constants, ...) have no weights
    kinds = [str(TFL_OP_CODE_TO_NAME[c]).rsplit(".", 1)[-1] if c in TFL_OP_CODE_TO_NAME else f"op {c}" for c in codes]
    if "SOFTMAX" not in kinds:
        return []
    return [s for s, kind in zip(scope, kinds) if kind not in WEIGHTED_OPS]


def candidates(fp32: Path, calib: np.ndarray, workdir: Path, **_) -> Iterator[Candidate]:
    """Full-integer INT8; for graphs with attention, INT8 weight layers with the rest float; then
    repairs with growing float ends (see quant.graph)."""
    ranges = calibrate(fp32, calib)
    base = {"tool": "ai-edge-quantizer", "activations": "int8", "weights": "int8 per-channel",
            "calibration": "min/max over all samples", "calibration_images": int(len(calib))}
    first = quantize(fp32, ranges, workdir / "model_int8.tflite")
    yield Candidate("all layers INT8", {"model_int8.tflite": first}, "model_int8.tflite", {**base, "float_ops": []})
    unweighted = unweighted_ops_of_attention_graphs(fp32)
    if unweighted:
        out = quantize(fp32, ranges, workdir / "model_int8_weighted.tflite", unweighted)
        yield Candidate(f"INT8 for the layers with weights, float for the {len(unweighted)} other ops (attention graph)",
                        {"model_int8.tflite": out}, "model_int8.tflite", {**base, "float_ops": unweighted})
    dist_out, dist_in = distances(fp32)
    for level in repair_levels(dist_out, dist_in):
        keep = ends(dist_out, dist_in, level)
        out = quantize(fp32, ranges, workdir / f"model_int8_ends{level}.tflite", keep)
        yield Candidate(f"float for the {len(keep)} ops within {level} steps of the input or the output",
                        {"model_int8.tflite": out}, "model_int8.tflite", {**base, "float_ops": keep})
