"""ONNX Runtime INT8: static QDQ quantization (`onnxruntime.quantization.quantize_static`).

uint8 activations, per-channel int8 weights in a 7-bit range (`reduce_range`: x86 CPUs without
VNNI multiply u8 x s8 pairs into saturating int16 sums; with full-range weights that wrecked
the anomaly maps here, 6 pixel-AUROC points lost), MinMax calibration (anomaly scores live in
the tails of activation distributions, so ranges are not clipped), after ORT's own
pre-processing (shape inference and graph optimisation).
Repairs keep the nodes nearest the input and the output in FP32 (`nodes_to_exclude`, see quant.graph),
then, if none of those passes, the same models with their output bias-corrected: ONNX Runtime has
no counterpart of NNCF's bias correction, and INT8 noise that is not zero-mean lifts every score
(PBAS-lite on hazelnut_toy: normal scores up by 0.07 of the threshold span, AUROC unchanged)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .gate import Candidate
from .graph import ends, input_distances, output_distances, repair_levels

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


def attention_nodes(graph) -> list[str]:
    """The cores of a Transformer's attention and its normalisations: each Softmax with the ops
    back to the MatMul of its logits (scale, additive mask), the MatMul that applies its weights,
    and every LayerNormalization. INT8 ranges hurt there most (a mask's large negative logits
    share one scale with the logits that matter); empty for graphs without attention."""
    from collections import defaultdict

    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in graph.node for o in n.output}
    consumers = defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)
    keep = {n.name for n in graph.node if n.op_type == "LayerNormalization"}
    for n in (n for n in graph.node if n.op_type == "Softmax"):
        keep.add(n.name)
        node = n
        while node.op_type != "MatMul" or node is n:
            upstream = [producer[i] for i in node.input if i in producer and i not in constants]
            if not upstream:
                break
            node = upstream[0]
            keep.add(node.name)
        keep |= {c.name for c in consumers[n.output[0]] if c.op_type == "MatMul"}
    return sorted(keep)


def quantize(model: Path, input_name: str, calib: np.ndarray, out: Path, exclude: list[str] | tuple = (),
             cache: Path | None = None) -> Path:
    """Static QDQ quantization of a pre-processed model; `exclude` nodes stay FP32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(model), str(out), _reader(calib, input_name), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(exclude),
                    # no CalibMaxIntermediateOutputs: ORT (up to 1.32 at least; microsoft/onnxruntime#18893)
                    # drops each full block of outputs without computing its ranges, so only the last
                    # N mod block inputs calibrated (none: "No data is collected"). MinMax keeps only the
                    # small ReduceMin/ReduceMax outputs, so all of them fit in memory.
                    calibration_cache_path=str(cache) if cache is not None else None)
    return out


BIAS_IMAGES = 64  # calibration images used to measure the output offset


def outputs(model: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Each graph output of `model` (ONNX Runtime, one input) over `inputs`, stacked."""
    import runtimes

    backend = runtimes.load(RUNTIME, model)
    runs = [backend.run(np.ascontiguousarray(x[None], np.float32)) for x in inputs]
    return {n: np.stack([r[n] for r in runs]) for n in runs[0]}


def output_offsets(reference: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean INT8 - FP32 difference of each output (both from `outputs` on the same inputs)."""
    return {n: float(np.mean(got[n].astype(np.float64) - ref)) for n, ref in reference.items()}


def bias_corrected(model: Path, offsets: dict[str, float], out: Path) -> Path:
    """`model` with `offsets[name]` subtracted from each named graph output."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(model))
    g = m.graph
    for name, offset in offsets.items():
        raw = f"{name}_before_bias_correction"
        for node in g.node:
            node.output[:] = [raw if o == name else o for o in node.output]
            node.input[:] = [raw if i == name else i for i in node.input]
        g.initializer.append(numpy_helper.from_array(np.array(offset, np.float32), f"{name}_bias_correction"))
        g.node.append(helper.make_node("Sub", [raw, f"{name}_bias_correction"], [name], name=f"{name}_bias_correction_sub"))
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    return out


def candidates(fp32: Path, calib: np.ndarray, workdir: Path, max_drop: float | None = None,
               history: list[dict] | None = None, **_) -> Iterator[Candidate]:
    """The fully quantized QDQ model, then repairs: growing FP32 ends (see quant.graph), then
    the same with the mean output offset on calibration images subtracted. An offset cannot change
    an AUROC, so only the repairs whose AUROC drop was within `max_drop` (per the gate's `history`)
    are corrected."""
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
    attention = attention_nodes(graph)  # from here on FP32 in every repair of a Transformer
    also = f" and the {len(attention)} attention and normalisation nodes" if attention else ""
    if attention:
        out = quantize(pre, name, calib, workdir / "model_int8_attention.onnx", attention, cache)
        yield Candidate(f"FP32 for the {len(attention)} attention and normalisation nodes", {"model_int8.onnx": out},
                        "model_int8.onnx", {**base, "fp32_nodes": attention})
    made: list[tuple[Path, list[str]]] = []
    dist_out, dist_in = distances(graph, name)
    for level in repair_levels(dist_out, dist_in):
        keep = sorted(set(ends(dist_out, dist_in, level)) | set(attention))
        out = quantize(pre, name, calib, workdir / f"model_int8_ends{level}.onnx", keep, cache)
        yield Candidate(f"FP32 for the nodes within {level} steps of the input or the output{also} ({len(keep)} in all)",
                        {"model_int8.onnx": out}, "model_int8.onnx", {**base, "fp32_nodes": keep})
        drop = history[-1].get("drop") if history else None
        if max_drop is None or drop is None or drop <= max_drop:
            made.append((out, keep))
    sample = calib[:BIAS_IMAGES]
    reference = outputs(pre, sample) if made else {}
    for i, (model, keep) in enumerate(made):
        offsets = output_offsets(reference, outputs(model, sample))
        fixed = bias_corrected(model, offsets, workdir / f"model_int8_bc{i}.onnx")
        yield Candidate(f"FP32 for the {len(keep)} nodes at the ends, output bias-corrected",
                        {"model_int8.onnx": fixed}, "model_int8.onnx",
                        {**base, "fp32_nodes": keep, "output_bias_correction": offsets})
