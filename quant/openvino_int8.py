"""OpenVINO INT8 with NNCF post-training quantization (`nncf.quantize`).

Candidates, in order: all layers INT8 with fast bias correction, MINMAX activation ranges (no
clipping of the tails, where anomaly scores live) and NNCF's default ranges; the same with
NNCF's full bias correction (slower, measured more accurate: FADeR-lite on magnetic_tile passes
all-INT8 with it, not without); then the repairs, with full bias correction and the range
setting that measured better: growing FP32 ends (input and output side, ignored scope, see
quant.graph), and `nncf.quantize_with_accuracy_control`, which reverts the layers that cost the
most accuracy to FP32 until the gate's drop on the validation set is within bounds."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .gate import Candidate
from .graph import ends, input_distances, output_distances, repair_levels

RUNTIME = "openvino"
RANKING_SUBSET = 50  # validation images used to rank layers in accuracy control
MAX_REVERTED = 10  # layers accuracy control may revert to FP32 (each costs a validation pass)
RANGES = {False: "nncf default", True: "MINMAX"}
BIAS_CORRECTION = {True: "fast", False: "full"}
ATTENTION_OPS = {"Softmax", "SoftMax", "ScaledDotProductAttention"}


@dataclass
class Validation:
    """What accuracy control needs from the gate: items, their model input, and the drop."""

    items: list[Any]
    to_input: Callable[[Any], np.ndarray]  # item -> (1, C, H, W) float32
    drop: Callable[[Any], float]  # backend-like object with .run(x) -> {name: array} -> drop (<= max_drop passes)


class CompiledBackend:
    """An `ov.CompiledModel` behind the runtimes Backend's `run` call (for accuracy control)."""

    name = RUNTIME

    def __init__(self, compiled):
        self.compiled = compiled
        self.output_names = [p.get_any_name() for p in compiled.outputs]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        res = self.compiled(np.ascontiguousarray(x, np.float32))
        return {n: np.asarray(res[p]) for n, p in zip(self.output_names, self.compiled.outputs)}


def _save(model, out: Path) -> dict[str, Path]:
    import openvino as ov

    ov.save_model(model, str(out), compress_to_fp16=False)
    return {"model_int8.xml": out, "model_int8.bin": out.with_suffix(".bin")}


def _advanced(minmax: bool):
    """Overflow fix on every layer (7-bit weight range): x86 CPUs without VNNI multiply u8 x s8
    pairs into saturating int16 sums, which wrecks full-range int8 weights (measured here)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    ranges = {"activations_range_estimator_params": RangeEstimatorParametersSet.MINMAX} if minmax else {}
    return AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE, **ranges)


def model_type(model):
    """NNCF's Transformer scheme for attention graphs (it keeps Softmax, LayerNorm and the
    attention's own MatMuls in the patterns NNCF knows for them), None for every other graph."""
    import nncf

    # OpenVINO fuses a matmul-softmax-matmul attention into ScaledDotProductAttention when it reads the ONNX
    attention = any(op.get_type_name() in ATTENTION_OPS for op in model.get_ordered_ops())
    return nncf.ModelType.TRANSFORMER if attention else None


def distances(model) -> tuple[dict[str, int], dict[str, int]]:
    """Op friendly name -> fewest edges to a model output, and from the input (constants and
    parameters left out)."""
    skip = {"Constant", "Parameter"}
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in skip]
    producers = {op.get_friendly_name(): [i.get_source_output().get_node().get_friendly_name() for i in op.inputs()]
                 for op in ops}
    outputs = [r.get_friendly_name() for r in model.get_results()]
    dist = output_distances(producers, outputs)
    params = {p.get_friendly_name() for p in model.get_parameters()}
    dist_in = input_distances(producers, [n for n, feeding in producers.items() if params & set(feeding)])
    return ({n: d - 1 for n, d in dist.items() if n in producers and n not in outputs},  # Result nodes are not layers
            {n: d for n, d in dist_in.items() if n not in outputs})


def candidates(fp32: Path, calib: np.ndarray, workdir: Path, validation: Validation | None = None,
               max_drop: float = 0.01, history: list[dict] | None = None, **_) -> Iterator[Candidate]:
    """All layers INT8: MINMAX and NNCF default ranges, with fast then full bias correction; then,
    with full bias correction and the range setting whose all-INT8 attempt measured better (read
    from the gate's `history`), growing FP32 ends (ignored scope, see quant.graph); last, accuracy
    control when a validation set is given."""
    import nncf
    import openvino as ov

    core = ov.Core()
    dataset = nncf.Dataset(list(calib), lambda x: np.ascontiguousarray(x[None], np.float32))
    kind = model_type(core.read_model(str(fp32)))
    base = {"tool": f"nncf {nncf.__version__}", "overflow_fix": "all layers", "calibration_images": int(len(calib)),
            **({"model_type": "transformer"} if kind is not None else {})}

    def quantize(minmax: bool, fast: bool, ignored: list[str], name: str):
        scope = nncf.IgnoredScope(names=ignored, validate=False) if ignored else None
        q = nncf.quantize(core.read_model(str(fp32)), dataset, subset_size=len(calib), ignored_scope=scope,
                          fast_bias_correction=fast, advanced_parameters=_advanced(minmax), model_type=kind)
        return _save(q, workdir / f"{name}.xml")

    def settings(minmax: bool, fast: bool, keep: list[str] | None) -> dict:  # None: not known in advance
        return {**base, "activation_ranges": RANGES[minmax], "bias_correction": BIAS_CORRECTION[fast],
                **({} if keep is None else {"fp32_layers": keep})}

    for fast in (True, False):
        for minmax in (True, False):
            name = "all layers INT8" + (", MINMAX activation ranges" if minmax else "")
            file = f"model_int8_{'minmax' if minmax else 'default'}_{BIAS_CORRECTION[fast]}"
            yield Candidate(name + ("" if fast else ", full bias correction"), quantize(minmax, fast, [], file),
                            "model_int8.xml", settings(minmax, fast, []))
    minmax = _better_ranges(history or [])
    dist_out, dist_in = distances(core.read_model(str(fp32)))
    for level in repair_levels(dist_out, dist_in):
        keep = ends(dist_out, dist_in, level)
        yield Candidate(f"FP32 for the {len(keep)} layers within {level} steps of the input or the output",
                        quantize(minmax, False, keep, f"model_int8_ends{level}"), "model_int8.xml",
                        settings(minmax, False, keep))
    if validation is None or len(validation.items) < 2:
        return
    yield _accuracy_control(core, fp32, dataset, len(calib), validation, max_drop, minmax, workdir,
                            settings(minmax, False, None), kind)


def _better_ranges(history: list[dict]) -> bool:
    """True for MINMAX: the range setting whose all-INT8, full-bias-correction attempt ranked images
    better (AUROC drop, None where unlabelled), then moved scores less (the gate's score shift);
    MINMAX on a tie."""
    measured = {h["settings"].get("activation_ranges"): (h.get("drop") or 0.0, h.get("score_shift") or 0.0)
                for h in history if h["settings"].get("bias_correction") == "full"}
    return measured.get(RANGES[True], (0.0, 0.0)) <= measured.get(RANGES[False], (1.0, 1.0))


def _accuracy_control(core, fp32: Path, dataset, n_calib: int, validation: Validation, max_drop: float,
                      minmax: bool, workdir: Path, settings: dict, kind=None) -> Candidate:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    n = len(validation.items)

    def validation_fn(compiled, items) -> tuple[float, None]:
        items = list(items)
        if len(items) != n:  # per-item metrics make no sense for AUROC: NNCF then ranks by outputs
            raise ValueError("the gate's drop is defined on the whole validation set only")
        return 1.0 - validation.drop(CompiledBackend(compiled)), None  # FP32 scores ~1 (NNCF divides by it)

    val_data = nncf.Dataset(validation.items, validation.to_input)
    q = nncf.quantize_with_accuracy_control(
        core.read_model(str(fp32)), dataset, val_data, validation_fn, max_drop=max_drop,
        subset_size=n_calib, fast_bias_correction=False, advanced_quantization_parameters=_advanced(minmax), model_type=kind,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            ranking_subset_size=min(RANKING_SUBSET, n), max_num_iterations=MAX_REVERTED))
    return Candidate("accuracy control (layers reverted to FP32)", _save(q, workdir / "model_int8_ac.xml"),
                     "model_int8.xml", {**settings, "accuracy_control": True})
