"""Window-KNN (signal model option, issue 24): the bank search in the exported graph gives the
nearest-normal-window distances a brute-force search gives, on every runtime, streaming equal
to batch, and flags the abnormal beats of a synthetic ECG."""
import json
from pathlib import Path

import numpy as np
import pytest

import runtimes
from edgead import targets
from edgead.cli import main
from edgead.signal_predictor import SignalPredictor
from test_signals import MODEL_RATE, make_record

PAIRS = [(t.name, t.runtime) for t in targets.TARGETS.values() if runtimes.available(t.runtime)]


@pytest.fixture(scope="module")
def knn_run(tmp_path_factory):
    from edgead.tasks.signal.train import train_signal

    record = make_record(tmp_path_factory.mktemp("ecg"))
    out = tmp_path_factory.mktemp("runs") / "knn"
    train_signal(record, out, model="windowknn", window=128, hop=32, rate=MODEL_RATE)
    return out, record


@pytest.fixture(scope="module")
def knn_bundle(knn_run, tmp_path_factory):
    from edgead.export import export

    out = tmp_path_factory.mktemp("bundles") / "knn"
    export(knn_run[0], out, [t for t, _ in PAIRS])
    return out


def brute_force(run, windows: np.ndarray) -> np.ndarray:
    """sqrt(min squared distance + 1) / scale, searched in numpy over the run's own bank."""
    from safetensors.numpy import load_file

    w = load_file(str(run / "weights.safetensors"))
    flat = windows.reshape(len(windows), -1).astype(np.float64)
    d2 = ((flat[:, None, :] - w["bank"][None].astype(np.float64)) ** 2).sum(-1).min(1)
    return np.sqrt(d2 + 1) / float(w["scale"][0])


def test_the_bank_holds_windows_at_more_offsets_than_the_hop(knn_run):
    cfg = json.loads((knn_run[0] / "run.json").read_text())
    log = cfg["train"]["log"]
    assert cfg["model"]["name"] == "windowknn" and log["bank_size"] > cfg["train"]["n_fit"]  # random offsets too
    assert log["bank_size"] == cfg["model"]["config"]["bank_size"]


@pytest.mark.parametrize("target, runtime", PAIRS)
def test_runtimes_give_the_brute_force_distances(knn_run, knn_bundle, target, runtime):
    from edgead.tasks.signal.data import load_signal
    from edgead.tasks.signal.preprocess import cut_windows, normalize, resample, window_starts

    run, record = knn_run
    pred = SignalPredictor(knn_bundle, runtime=runtime, precision="fp32")
    x = resample(load_signal(record).values, 200, MODEL_RATE)[-3000:]
    raw = cut_windows(x, window_starts(len(x), 128, 32)[0], 128)
    got = pred.score_windows(raw).window_score
    assert np.allclose(got, brute_force(run, normalize(raw, pred.spec)), rtol=1e-3)


def test_streaming_equals_batch_and_abnormal_beats_score_higher(knn_run, knn_bundle):
    from edgead.tasks.signal.data import load_signal
    from edgead.tasks.signal.evaluate import evaluate_signal

    run, record = knn_run
    pred = SignalPredictor(knn_bundle, runtime=PAIRS[0][1])
    samples = load_signal(record).values
    batch = pred.predict(samples, rate=200)
    stream, points = pred.stream(rate=200), []
    for i in range(0, len(samples), 333):
        points.append(stream.push(samples[i:i + 333]).point_score)
    points.append(stream.flush().point_score)
    assert np.array_equal(np.concatenate(points), batch.point_score)
    assert evaluate_signal(knn_bundle, record)["beat_auroc"] > 0.95  # wide inverted beats are far from normal ones


def test_a_model_without_training_loop_refuses_steps(tmp_path, capsys):
    golden = Path(__file__).parent / "golden" / "v1_signal"
    code = main(["train", "--model", "windowknn", "--data", str(golden / "toy_TRAIN.txt"), "--out",
                 str(tmp_path / "r"), "--steps", "10"])
    assert code == 2 and "windowknn has no training loop" in capsys.readouterr().err
