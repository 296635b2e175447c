"""INT8 export per runtime: gated on accuracy, run by the unchanged Predictor, refused when bad."""
import json
import re
import shutil

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import runtimes
from edgead import targets
from edgead.core.bundle import artefact_files
from edgead.cli import main
from edgead.tasks.image.data import Sample, open_dataset
from edgead.tasks.image.evaluate import evaluate
from edgead.export import ExportError, export
from edgead.tasks.image.predictor import Predictor
from quant.gate import Candidate, GateFailed, run_gate

TARGETS = [t.name for t in targets.TARGETS.values() if runtimes.available(t.runtime)]
RUNTIME = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "tflite"}


def remeasure(bundle, target, samples):
    """What the gate promises, measured here, not read from the manifest: the image AUROC of the
    FP32 and the INT8 artefact (sklearn, on raw scores of the public Predictor; {} without both
    classes) and the score shift (mean |INT8 - FP32| normalised score, the worse of the normal
    and the anomalous images)."""
    labels = np.array([s.label for s in samples])
    preds = {"fp32": Predictor(bundle, target=target), "int8": Predictor(bundle, target=f"{target}_int8")}
    res = {p: [pred.predict(s.path) for s in samples] for p, pred in preds.items()}
    auroc = ({p: roc_auc_score(labels, [r.raw_score for r in rs]) for p, rs in res.items()}
             if 0 < labels.sum() < len(labels) else {})
    delta = np.abs(np.array([r.score for r in res["int8"]]) - np.array([r.score for r in res["fp32"]]))
    return auroc, max(float(delta[labels == y].mean()) for y in (0, 1) if (labels == y).any())


@pytest.fixture(scope="module")
def small_run(small_mvtec, tmp_path_factory):
    """HetNet-lite at 128 px, 90 steps: trained enough for its maps to survive INT8 (the 64 px,
    6-step `tiny_run` is mostly noise, and INT8 adds its own)."""
    from edgead.tasks.image.train import train

    out = tmp_path_factory.mktemp("runs") / "hetnet128"
    train(small_mvtec, out, model="hetnet", epochs=30, image_size=128)
    return out


@pytest.fixture(scope="module")
def int8_bundle(small_run, tmp_path_factory):
    """FP32 + INT8 of every target, gated with the default limits (1 AUROC point, 0.05 shift),
    calibrated on the 24 fit images of the small hazelnut set."""
    out = tmp_path_factory.mktemp("int8") / "bundle"
    export(small_run, out, TARGETS, int8=True, calib_size=24)
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_int8_artefact_is_described_in_the_manifest(int8_bundle, small_mvtec, target):
    m = json.loads((int8_bundle / "edgead.json").read_text())
    fp32, int8 = m["artefacts"][target], m["artefacts"][f"{target}_int8"]
    assert fp32["precision"] == "fp32" and int8["precision"] == "int8"
    assert int8["runtime"] == RUNTIME[target] and int8["source_target"] == target
    assert int8["file"] != fp32["file"] and len(int8["sha256"]) == 64
    assert int8["calibration"]["n_images"] == 24
    gate = int8["gate"]
    assert gate["limits"] == {"drop": 0.01, "score_shift": 0.05}
    assert gate["passed"] and gate["validation"]["kind"] == "labelled" and gate["validation"]["n_images"] == 23
    auroc, shift = remeasure(int8_bundle, target, open_dataset(small_mvtec).test)  # the gate's 23 images
    assert auroc["fp32"] - auroc["int8"] <= 0.01 and shift <= 0.05, (auroc, shift)
    for p in ("fp32", "int8"):  # the manifest records what the artefacts really score
        assert gate[p]["image_auroc"] == pytest.approx(auroc[p], abs=1e-9), (p, gate[p], auroc)
    assert gate["score_shift"] == pytest.approx(shift, abs=1e-4)
    assert gate["drop"] == pytest.approx(max(gate["fp32"][k] - gate["int8"][k] for k in ("image_auroc", "pixel_auroc")))
    assert gate["attempts"][-1]["name"] == gate["chosen"]


@pytest.mark.parametrize("target", TARGETS)
def test_int8_auroc_within_one_point_of_fp32(int8_bundle, small_mvtec, target):
    """Measured again here through evaluate(), not taken from the manifest."""
    fp32 = evaluate(int8_bundle, small_mvtec, runtime=RUNTIME[target], precision="fp32")
    int8 = evaluate(int8_bundle, small_mvtec, runtime=RUNTIME[target], precision="int8")
    assert int8["precision"] == "int8" and fp32["precision"] == "fp32"
    for k in ("image_auroc", "pixel_auroc"):
        assert abs(int8[k] - fp32[k]) <= 0.01, (k, fp32[k], int8[k])
    assert fp32["pixel_auroc"] > 0.9  # a model worth quantizing


@pytest.mark.parametrize("target", TARGETS)
def test_predictor_runs_int8_like_fp32(int8_bundle, small_mvtec, target):
    rt = RUNTIME[target]
    pred = Predictor(int8_bundle, runtime=rt, precision="int8")
    assert pred.precision == "int8" and pred.target == f"{target}_int8"
    img = sorted((small_mvtec / "test/colour").glob("*.jpg"))[0]
    got, ref = pred.predict(img), Predictor(int8_bundle, runtime=rt, precision="fp32").predict(img)
    assert got.anomaly_map.shape == ref.anomaly_map.shape == (128, 128) and got.mask.dtype == bool
    assert np.isfinite(got.raw_score) and got.raw_score != ref.raw_score  # really another model
    assert got.is_anomalous == ref.is_anomalous and abs(got.score - ref.score) < 0.1


def test_int8_records_name_no_user_folders(int8_bundle, small_run, small_mvtec):
    """Calibration and validation sources are recorded by folder name, never by absolute path."""
    text = (int8_bundle / "edgead.json").read_text()
    assert str(small_mvtec) not in text and str(small_run) not in text
    arts = json.loads(text)["artefacts"]
    assert arts[f"{TARGETS[0]}_int8"]["calibration"]["source"].startswith(f"{small_mvtec.name} (training images")


def test_int8_artefacts_are_smaller(int8_bundle):
    m = json.loads((int8_bundle / "edgead.json").read_text())
    on_disk = lambda key: sum((int8_bundle / f).stat().st_size for f in artefact_files(m["artefacts"][key]))  # noqa: E731
    for target in TARGETS:
        assert on_disk(f"{target}_int8") < 0.8 * on_disk(target), target  # repairs may keep a few layers FP32


@pytest.fixture(scope="module")
def constant_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("constant")
    for i in range(4):
        cv2.imwrite(str(folder / f"grey{i}.png"), np.full((128, 128, 3), 128, np.uint8))
    return folder


@pytest.mark.parametrize("target", TARGETS)
def test_broken_calibration_is_refused_or_repaired_never_silent(tiny_run, tiny_bundle, small_mvtec, constant_images,
                                                                tmp_path, target):
    """Constant grey calibration images: plain INT8 fails the gate; then either a repair passes
    (recorded as such, and really within the limits) or the export fails and writes nothing."""
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    # OpenVINO is gated on normal images only here: with anomalies its last repair, NNCF accuracy
    # control, ranks every layer (minutes); the labelled path is covered by the other runtimes.
    val = small_mvtec / "test" / "good" if target == "openvino" else None
    try:
        export(tiny_run, bundle, [target], int8=True, calib=constant_images, max_drop=0.01, max_shift=0.05, val=val)
    except ExportError as e:
        assert re.search(r"INT8 accuracy is not within bounds \((drop|score_shift) \d\.\d{4} > ", str(e)), str(e)
        assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
        return
    gate = json.loads((bundle / "edgead.json").read_text())["artefacts"][f"{target}_int8"]["gate"]
    first = gate["attempts"][0]
    assert first["excess"] > 1.0, "constant calibration should spoil plain INT8"
    samples = [Sample(p, 0) for p in sorted(val.iterdir())] if val is not None else open_dataset(small_mvtec).test
    _, shift = remeasure(bundle, target, samples)  # the gate's validation images, scored here
    assert gate["chosen"] != first["name"] and shift <= 0.05, (gate["chosen"], shift)
    if val is None:  # measured again through evaluate(), not taken from the manifest
        fp32 = evaluate(bundle, small_mvtec, runtime=RUNTIME[target], precision="fp32")
        int8 = evaluate(bundle, small_mvtec, runtime=RUNTIME[target], precision="int8")
        assert max(fp32[k] - int8[k] for k in ("image_auroc", "pixel_auroc")) <= 0.01


def test_cli_names_the_drop_and_exits_2(tiny_run, constant_images, tmp_path, capsys):
    code = main(["export", str(tiny_run), "--target", TARGETS[0], "--int8", "--calib", str(constant_images),
                 "--calib-size", "4", "--max-shift", "0.000001", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    key, rt = f"{TARGETS[0]}_int8", RUNTIME[TARGETS[0]]
    assert code == 2 and re.search(  # what failed, by how much, that nothing was written, and how to fix it
        rf"^edgead export: error: {key} \({rt}\): INT8 accuracy is not within bounds \((drop \d\.\d{{4}} > 0\.01, )?"
        r"score_shift \d\.\d{4} > 1e-06\) even at best, after \d+ repair\(s\) \[.+\]; the INT8 artefact was not "
        r"written\. Calibrate with more or more typical normal images \(--calib\), allow a larger loss "
        r"\(--max-drop / --max-shift\) or ship FP32\.$", err, re.M), err
    assert not (tmp_path / "b").exists()


def test_gate_returns_the_first_candidate_within_limits(tmp_path):
    made = []

    def candidates():
        for name, drop in (("a", 0.2), ("b", 0.005), ("c", 0.0)):
            made.append(name)
            yield Candidate(name, {"m": tmp_path / name}, "m", {"drop": drop})

    chosen, record = run_gate(candidates(), lambda c: {"drop": c.settings["drop"], "score_shift": 0.0},
                              {"drop": 0.01, "score_shift": 0.05})
    assert chosen.name == "b" and made == ["a", "b"]  # "c" is never built
    assert [a["name"] for a in record["attempts"]] == ["a", "b"] and record["attempts"][0]["excess"] == pytest.approx(20)


def test_gate_failure_names_the_best_drop(tmp_path):
    cands = [Candidate(n, {"m": tmp_path / n}, "m", {"drop": d}) for n, d in (("a", 0.3), ("b", 0.04))]
    with pytest.raises(GateFailed, match=r"drop 0\.0400 > 0\.01") as e:
        run_gate(cands, lambda c: {"drop": c.settings["drop"], "score_shift": None}, {"drop": 0.01, "score_shift": 0.05})
    assert e.value.record["passed"] is False and len(e.value.record["attempts"]) == 2


def test_the_size_bar_counts_only_the_target_s_own_fp32_files(tmp_path):
    """INT8 from an existing bundle: model.* there also matches the other targets' files, which
    let an INT8 artefact larger than its FP32 one through the size check."""
    from quant.int8 import fp32_size

    for name, size in (("model.onnx", 100), ("model.xml", 10), ("model.bin", 200), ("model.tflite", 90)):
        (tmp_path / name).write_bytes(b"x" * size)
    assert fp32_size(tmp_path / "model.onnx", "onnx") == 100
    assert fp32_size(tmp_path / "model.xml", "openvino") == 210
    assert fp32_size(tmp_path / "model.tflite", "tflite") == 90


def test_a_candidate_with_nan_scores_fails_and_the_next_one_is_tried(tmp_path):
    cands = [Candidate(n, {"m": tmp_path / n}, "m") for n in ("nan", "ok")]
    measured = {"nan": {"failed": "the scores are not finite"}, "ok": {"drop": 0.001, "score_shift": 0.01}}
    chosen, record = run_gate(cands, lambda c: measured[c.name], {"drop": 0.01, "score_shift": 0.05})
    assert chosen.name == "ok" and record["attempts"][0]["excess"] is None
    with pytest.raises(GateFailed, match="no candidate could be measured.*nan: the scores are not finite"):
        run_gate(cands[:1], lambda c: measured[c.name], {"drop": 0.01, "score_shift": 0.05})


def test_parity_refuses_an_artefact_with_nan_where_torch_has_numbers(tmp_path):
    """NaN - x is NaN, and NaN > tolerance is False: a plain max-difference check would pass it."""
    import onnx
    from onnx import TensorProto, helper

    from edgead.export import ExportError, parity

    graph = helper.make_graph([helper.make_node("Sqrt", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    x = np.array([4.0, -1.0], np.float32)  # sqrt(-1) is NaN in the artefact
    with pytest.raises(ExportError, match="NaN or infinite at 1 of 2 values"):
        parity("onnxruntime", tmp_path / "m.onnx", x, {"y": np.array([2.0, 0.0], np.float32)}, "x")
    assert parity("onnxruntime", tmp_path / "m.onnx", np.array([4.0, 9.0], np.float32), {"y": np.array([2.0, 3.0], np.float32)}, "x") == 0


def test_repairs_keep_both_ends_of_the_graph_in_fp32():
    from quant.graph import ends, head_levels, input_distances, output_distances

    # stem -> a -> b -> c -> d -> out, with a side branch a -> side -> d
    producers = {"stem": [], "a": ["stem"], "b": ["a"], "c": ["b"], "side": ["a"], "d": ["c", "side"], "out": ["d"]}
    dist_out, dist_in = output_distances(producers, ["out"]), input_distances(producers, ["stem"])
    assert dist_out == {"out": 0, "d": 1, "c": 2, "side": 2, "b": 3, "a": 3, "stem": 4}
    assert dist_in == {"stem": 0, "a": 1, "b": 2, "side": 2, "c": 3, "d": 3, "out": 4}
    assert ends(dist_out, dist_in, 0) == ["out", "stem"]
    assert ends(dist_out, dist_in, 1) == ["a", "d", "out", "stem"]
    assert head_levels(dist_out) == [1, 2]


def test_openvino_repairs_take_the_ranges_that_measured_better_with_full_bias_correction():
    from quant.openvino_int8 import _better_ranges

    def attempt(ranges, bias, drop, shift=0.0):
        return {"settings": {"activation_ranges": ranges, "bias_correction": bias}, "drop": drop,
                "score_shift": shift}

    fast = [attempt("MINMAX", "fast", 0.07), attempt("nncf default", "fast", 0.09)]
    assert _better_ranges(fast + [attempt("MINMAX", "full", 0.061), attempt("nncf default", "full", 0.057)]) is False
    assert _better_ranges(fast + [attempt("MINMAX", "full", 0.05), attempt("nncf default", "full", 0.057)]) is True
    no_labels = [attempt("MINMAX", "full", None, 0.3), attempt("nncf default", "full", None, 0.2)]
    assert _better_ranges(no_labels) is False  # normal images only: the score shift decides
    tied = [attempt("MINMAX", "full", 0.0, 0.41), attempt("nncf default", "full", 0.0, 0.80)]
    assert _better_ranges(tied) is True  # equal drops: the smaller shift wins
    assert _better_ranges([attempt("MINMAX", "full", 0.0, 0.80), attempt("nncf default", "full", 0.0, 0.41)]) is False


def test_output_bias_correction_removes_the_mean_int8_offset(tmp_path):
    """The last ONNX Runtime repair subtracts the mean INT8 - FP32 output offset measured on
    calibration images; the corrected graph keeps the output's name and shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ort = pytest.importorskip("onnxruntime")
    from quant.onnxruntime_int8 import bias_corrected, output_offsets, outputs

    def model(path, gain):
        x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2, 3])
        y = helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 2, 3])
        g = helper.make_graph([helper.make_node("Mul", ["image", "k"], ["anomaly_map"])], "m", [x], [y],
                              [numpy_helper.from_array(np.array(gain, np.float32), "k")])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return path

    fp32, int8 = model(tmp_path / "a.onnx", 1.0), model(tmp_path / "b.onnx", 1.1)  # "INT8" scores 10 % high
    calib = np.random.default_rng(0).uniform(1, 3, (8, 2, 3)).astype(np.float32)
    reference = outputs(fp32, calib)
    offsets = output_offsets(reference, outputs(int8, calib))
    assert offsets["anomaly_map"] == pytest.approx(0.1 * calib.mean(), rel=1e-5)
    fixed = bias_corrected(int8, offsets, tmp_path / "c.onnx")
    x = calib[:1]
    out = ort.InferenceSession(str(fixed), providers=["CPUExecutionProvider"]).run(["anomaly_map"], {"image": x})[0]
    np.testing.assert_allclose(out, 1.1 * x - offsets["anomaly_map"], rtol=1e-5)
    assert output_offsets(reference, outputs(fixed, calib))["anomaly_map"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("n", [16, 40])
def test_onnxruntime_calibration_sees_every_calibration_input(tmp_path, n):
    """The largest activation is in the FIRST calibration input: the INT8 range must cover it
    (ORT's CalibMaxIntermediateOutputs dropped all but the last n mod 16 inputs, and failed at n = 16)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ort = pytest.importorskip("onnxruntime")
    from quant.onnxruntime_int8 import quantize

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, 8, 8])
    w = numpy_helper.from_array(np.full((1, 4, 1, 1), 0.25, np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["image", "w"], ["anomaly_map"])], "m", [x], [y], [w])
    fp32 = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    calib = np.random.default_rng(0).uniform(0, 1, (n, 4, 8, 8)).astype(np.float32)
    calib[0] *= 50  # only the first input reaches 50
    int8 = quantize(fp32, "image", calib, tmp_path / "q.onnx")
    out = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(["anomaly_map"], {"image": calib[:1]})[0]
    want = calib[0].mean(0)
    assert np.abs(out[0, 0] - want).max() < 0.02 * want.max()


def test_candidates_no_smaller_than_fp32_are_never_tried(tmp_path):
    from quant.int8 import smaller_than

    def cand(name, size):
        f = tmp_path / f"{name}.onnx"
        f.write_bytes(bytes(size))
        return Candidate(name, {"model_int8.onnx": f}, "model_int8.onnx", {})

    kept = [c.name for c in smaller_than(iter([cand("all int8", 30), cand("every node fp32", 100), cand("ends", 60)]), 100)]
    assert kept == ["all int8", "ends"]
    with pytest.raises(GateFailed, match="no candidate quantized any weights"):
        run_gate(smaller_than(iter([cand("every node fp32", 99)]), 100), lambda c: {"drop": 0.0}, {"drop": 0.01})


@pytest.mark.parametrize("target", TARGETS)
def test_export_times_each_pair_here_and_auto_picks_by_it(int8_bundle, target):
    """Export timed the FP32 / INT8 pair on this machine; precision="auto" follows those figures
    (INT8 only under 95 % of FP32's time) and says so."""
    from edgead.core.machine import machine_key

    timed = json.loads((int8_bundle / "edgead.json").read_text())["artefacts"][f"{target}_int8"]["speed"]
    assert timed["machine"] == timed["fp32"]["machine"] == machine_key() and timed["fp32"]["target"] == target
    int8_ms, fp32_ms = timed["ms"]["default"], timed["fp32"]["ms"]["default"]
    pred = Predictor(int8_bundle, runtime=RUNTIME[target])
    assert pred.target == (f"{target}_int8" if int8_ms < 0.95 * fp32_ms else target)
    assert f"{int8_ms:.2f} ms INT8 vs {fp32_ms:.2f} ms FP32" in pred.choice.reason
