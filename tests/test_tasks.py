"""The task structure: the registry and the target table drive everything, schema-1 files of
both tasks still load (golden copies written by edgead 0.1.0 before the restructure), outputs
are named once, and a run or bundle of one task used as another's gets a clear error."""
import ast
import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import runtimes
from conftest import blocking
from edgead import targets
from edgead.cli import main
from edgead.core.errors import TaskMismatch, UsageError
from edgead.predictor import Predictor
from edgead.signal_predictor import SignalPredictor

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
SIGNAL = GOLDEN / "v1_signal"


@pytest.fixture
def signal_bundle_v1(tmp_path):
    out = tmp_path / "signal_bundle"
    shutil.copytree(SIGNAL / "bundle", out)
    return out


# ------------------------------------------------------------------------------ golden schema-1 files

def test_v1_signal_bundle_scores_as_edgead_0_1_0_did(signal_bundle_v1):
    from edgead.tasks.signal.data import load_signal

    expected = json.loads((SIGNAL / "expected_scores.json").read_text())
    d = load_signal(SIGNAL / "toy_TRAIN.txt", "ucr")
    got = SignalPredictor(signal_bundle_v1, runtime="onnxruntime").score_windows(d.values[expected["rows"]])
    np.testing.assert_allclose(got.window_score, expected["window_score"], rtol=0, atol=1e-6)


def test_v1_signal_run_loads_on_torch_with_the_same_scores(tmp_path):
    from edgead.tasks.signal.data import load_signal

    run = tmp_path / "run"
    shutil.copytree(SIGNAL / "run", run)
    expected = json.loads((SIGNAL / "expected_scores.json").read_text())
    d = load_signal(SIGNAL / "toy_TRAIN.txt", "ucr")
    got = SignalPredictor(run).score_windows(d.values[expected["rows"]])
    assert got.window_score.shape == (len(expected["rows"]),)
    np.testing.assert_allclose(got.window_score, expected["window_score"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("record", ["edgead.json", "run.json"])
def test_v1_image_records_drive_the_predictor(record, tiny_bundle, small_mvtec):
    """A schema-1 image manifest / run.json (64 px HetNet-lite) around a 64 px HetNet-lite graph:
    its input spec, post-processing and thresholds are the ones applied."""
    from edgead.core.thresholds import ThresholdSet

    cfg = json.loads((GOLDEN / "v1_image" / record).read_text())
    backend = runtimes.load("onnxruntime", tiny_bundle / "model.onnx")
    pred = Predictor.from_backend(cfg, backend, "onnx", "fp32")
    img = sorted((small_mvtec / "test/colour").glob("*.jpg"))[0]
    res = pred.predict(img)
    th = ThresholdSet.from_json(cfg["thresholds"]["image"])
    assert res.score == pytest.approx(float(th.normalize(res.raw_score)), abs=1e-9)
    assert res.is_anomalous == (res.raw_score >= th.threshold)
    assert res.anomaly_map.shape == (128, 128)  # the image's own size, through the v1 input spec


def test_v1_manifests_pass_validation():
    from edgead.core.bundle import load_manifest

    for folder in (SIGNAL / "bundle", GOLDEN / "v1_image"):
        m = load_manifest(folder, verify=False)
        assert m["schema_version"] == 1 and m["artefacts"]["onnx"]["file"] == "model.onnx"


# ------------------------------------------------------------------------------ cross-task misuse

def test_image_predictor_on_a_signal_bundle_or_run_is_a_clear_error(signal_bundle_v1, tmp_path):
    with pytest.raises(TaskMismatch, match="is a signal bundle, not a image one: use .*SignalPredictor"):
        Predictor(signal_bundle_v1)
    run = tmp_path / "run"
    shutil.copytree(SIGNAL / "run", run)
    with pytest.raises(TaskMismatch, match="is a signal training run"):
        Predictor(run)


def test_signal_predictor_on_an_image_bundle_or_run_is_a_clear_error(tiny_bundle, tiny_run):
    with pytest.raises(TaskMismatch, match="is a image bundle, not a signal one: use .*image.predictor:Predictor"):
        SignalPredictor(tiny_bundle)
    with pytest.raises(TaskMismatch, match="is a image training run"):
        SignalPredictor(tiny_run)


def test_benchmark_works_on_a_signal_bundle(signal_bundle_v1, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(["benchmark", str(signal_bundle_v1), "--runtimes", "onnxruntime", "--threads", "1", "--n", "3",
                 "--warmup", "1", "--data", str(SIGNAL / "toy_TRAIN.txt"), "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    row = report["rows"][0]
    assert report["bundle"]["task"] == "signal" and report["bundle"]["input"] == "1x64"
    assert row["status"] == "ok" and row["model_ms"]["p50"] <= row["predict_ms"]["p50"] * 5
    from edgead.tasks.signal.evaluate import evaluate_signal

    independent = evaluate_signal(signal_bundle_v1, SIGNAL / "toy_TRAIN.txt", runtime="onnxruntime")
    assert row["sample_auroc"] == pytest.approx(independent["sample_auroc"], abs=1e-9)
    assert row["n_samples"] == independent["n_samples"] == 33  # the recorded test part, not the whole file


# ------------------------------------------------------------------------------ named outputs

def test_every_fresh_artefact_names_the_task_outputs(tiny_bundle, tiny_run):
    from edgead.core.bundle import load_manifest

    m = load_manifest(tiny_bundle)
    weights = hashlib.sha256((tiny_run / "weights.safetensors").read_bytes()).hexdigest()  # hashed here
    for key, art in m["artefacts"].items():
        rt = targets.runtime_of(key, art)
        if not runtimes.available(rt):
            continue
        backend = runtimes.load(rt, tiny_bundle / art["file"])
        assert list(backend.output_names) == ["anomaly_map"], (key, backend.output_names)
        assert art["weights_sha256"] == m["weights_sha256"] == weights
        assert art["parity_input"].startswith("training image train/good/")


def test_legacy_tflite_output_names_map_by_index_only_when_unambiguous():
    from edgead.core.predictor import legacy_output_names

    assert legacy_output_names(["output_0", "output_1"], ("point_score", "window_score")) == {
        "output_0": "point_score", "output_1": "window_score"}
    assert legacy_output_names(["output_1", "output_0"], ("point_score", "window_score")) == {}
    assert legacy_output_names(["a", "b"], ("point_score", "window_score")) == {}


# ------------------------------------------------------------------------------ one table, one registry

def test_target_table_is_the_one_source_of_targets():
    assert targets.NAMES == ("onnx", "openvino", "tflite")
    assert targets.get("openvino_int8").runtime == "openvino" and targets.get("tflite").int8_key == "tflite_int8"
    with pytest.raises(UsageError, match="unknown export target 'tensorrt'; choose from onnx, openvino, tflite"):
        targets.parse(["onnx,tensorrt"])
    assert targets.parse(["onnx,tflite", "onnx"]) == ["onnx", "tflite"]


def _py_files(*folders):
    return [p for f in folders for p in (REPO / f).rglob("*.py")]


def test_no_task_string_checks_outside_the_registry():
    """Only edgead/tasks/__init__.py and the records know how a task is named in a record."""
    allowed = {REPO / "edgead/tasks/__init__.py", REPO / "edgead/core/records.py"}
    offenders = []
    for path in _py_files("edgead", "quant", "runtimes"):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                text = ast.unparse(node)
                if "task" in text and any(f"'{n}'" in text for n in ("image", "signal", "pointcloud")):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {text}")
    assert not offenders, "\n".join(offenders)


def test_runtimes_know_nothing_of_models_and_core_nothing_of_torch():
    for path in _py_files("runtimes"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
        assert not [n for n in names if n.split(".")[0] in ("edgead", "quant")], path
    code = blocking("torch") + textwrap.dedent("""
        import pkgutil, importlib, edgead.core, edgead.tasks
        mods = ["edgead.targets", "edgead.benchmark", "edgead.predictor", "edgead.signal_predictor",
                "edgead.pointcloud_predictor", "edgead.engines.ray_scoring", "edgead.tasks.image.report"]
        mods += ["edgead.core." + m.name for m in pkgutil.iter_modules(edgead.core.__path__)]
        for task in ("image", "signal", "pointcloud"):
            for m in ("task", "predictor", "preprocess", "data", "evaluate", "cli"):
                mods.append(f"edgead.tasks.{task}.{m}")
        mods += ["edgead.tasks.pointcloud." + m for m in ("io", "lzf", "features", "synthesis", "synth", "render", "int8")]
        for m in mods:
            importlib.import_module(m)
        import edgead.tasks
        [t.predictor_class() for t in edgead.tasks.all_tasks()]
        assert "torch" not in sys.modules
        print(len(mods))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) >= 20


def test_the_export_api_refuses_an_int8_key_as_the_cli_does(tiny_run, tmp_path):
    from edgead.export import export

    with pytest.raises(UsageError, match="'onnx_int8' is not an export target: export 'onnx' with --int8"):
        export(tiny_run, tmp_path / "b", ["onnx_int8"])
    assert not (tmp_path / "b").exists()
