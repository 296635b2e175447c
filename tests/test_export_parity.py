"""Every runtime gives the scores, maps and labels torch gives, through the one Predictor path."""
import json

import numpy as np
import pytest

import runtimes
from edgead import targets
from edgead.tasks.image.data import open_dataset
from edgead.tasks.image.evaluate import evaluate
from edgead.tasks.image.predictor import Predictor
from edgead.tasks.image.preprocess import preprocess, read_image

RUNTIMES = [t.runtime for t in targets.TARGETS.values() if runtimes.available(t.runtime)]


@pytest.fixture(scope="module")
def images(small_mvtec):
    return [read_image(s.path) for s in open_dataset(small_mvtec).test]


@pytest.fixture(scope="module")
def torch_results(tiny_run, images):
    return Predictor(tiny_run).predict(images)


def test_manifest_describes_every_target(tiny_run, tiny_bundle, images):
    m = json.loads((tiny_bundle / "edgead.json").read_text())
    assert set(m["artefacts"]) == {"onnx", "openvino", "tflite"}
    torch_pred = Predictor(tiny_run)
    x = preprocess(images[0], torch_pred.spec)[0]
    want = torch_pred.raw_map(x)  # the export's parity check redone here, on a test image, not read back
    for key, art in m["artefacts"].items():
        assert art["precision"] == "fp32" and len(art["sha256"]) == 64
        got = Predictor(tiny_bundle, target=key, threads=1).raw_map(x)
        assert np.abs(got - want).max() < 1e-3 * max(1.0, float(np.abs(want).max())), key
    assert m["input"]["height"] == 64 and m["thresholds"]["image"]["active"] == "normal_quantile"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_scores_maps_and_labels_match_torch(tiny_bundle, images, torch_results, runtime):
    pred = Predictor(tiny_bundle, runtime=runtime, threads=1)
    assert pred.runtime == runtime
    for ref, got in zip(torch_results, pred.predict(images)):
        assert got.raw_score == pytest.approx(ref.raw_score, rel=1e-4)
        assert got.score == pytest.approx(ref.score, abs=1e-4)
        assert np.abs(got.anomaly_map - ref.anomaly_map).max() <= 1e-3
        assert got.is_anomalous == ref.is_anomalous
        assert got.anomaly_map.shape == ref.anomaly_map.shape


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_eval_on_bundle_matches_eval_on_run(tiny_run, tiny_bundle, small_mvtec, runtime):
    ref = evaluate(tiny_run, small_mvtec)
    got = evaluate(tiny_bundle, small_mvtec, runtime=runtime)
    for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max"):
        assert got[k] == pytest.approx(ref[k], abs=2e-3), k
    assert got["runtime"] == runtime


def test_auto_runtime_and_precision_choice(tiny_bundle):
    pred = Predictor(tiny_bundle)
    assert pred.runtime in RUNTIMES and pred.precision == "fp32"
    with pytest.raises(ValueError, match="no artefact"):
        Predictor(tiny_bundle, precision="int8")
    with pytest.raises(ValueError, match="unknown runtime"):
        Predictor(tiny_bundle, runtime="tensorrt")


def test_inputs_of_any_kind(tiny_bundle, images):
    pred = Predictor(tiny_bundle, runtime=RUNTIMES[0])
    rgb = images[0]
    ref = pred.predict(rgb)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    assert pred.predict(bgr, color_order="BGR").raw_score == pytest.approx(ref.raw_score, rel=1e-6)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert pred.predict(rgba).raw_score == pytest.approx(ref.raw_score, rel=1e-6)
    gray = pred.predict(rgb[:, :, 1])
    assert gray.anomaly_map.shape == rgb.shape[:2]
    odd = pred.predict(rgb[:50, :97])  # wrong size and aspect: letterboxed
    assert odd.anomaly_map.shape == (50, 97) and odd.mask.dtype == bool
    batch = pred.predict(np.stack([rgb, rgb]))
    assert len(batch) == 2 and batch[1].raw_score == pytest.approx(ref.raw_score, rel=1e-6)
    with pytest.raises(ValueError):
        pred.predict(np.zeros((8, 8, 2), np.uint8))
