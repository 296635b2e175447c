"""MMAE-lite end to end on a synthetic ECG-like WFDB record (beats annotated, V beats in the test
part): training, evaluation, export parity on every runtime, streaming == batch, the CLI, and
the torch-free signal predictor. Plus a short real-data check on UCR ECG5000."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import runtimes
from edgead import targets
from conftest import blocking, run_example, shared_data
from edgead.core.thresholds import normal_quantile
from edgead.tasks.signal.predictor import SignalPredictor
from edgead.tasks.signal.preprocess import resample

pytestmark = pytest.mark.slow  # trains and exports (tiny) models
PAIRS = [(t.name, t.runtime) for t in targets.TARGETS.values() if runtimes.available(t.runtime)]
TARGETS, RUNTIMES = [t for t, _ in PAIRS], [r for _, r in PAIRS]
TINY = {"dim": 32, "depth": 1, "heads": 2, "spans": [2, 0], "mask_scales": [1, 2], "mask_ratios": [0.5]}
SRC_RATE, MODEL_RATE = 200, 100


def make_record(folder, name="syn", fs=SRC_RATE, seconds=240, seed=0):
    """A synthetic one-lead ECG: beats every ~0.8 s (P, QRS, T bumps), wide inverted 'V' beats
    now and then after 60 % of the record; written as a WFDB record with .atr beat annotations."""
    import wfdb

    rng = np.random.default_rng(seed)
    t = np.arange(fs * seconds) / fs
    x = 0.05 * rng.standard_normal(len(t)) + 0.1 * np.sin(2 * np.pi * 0.2 * t)
    beats, symbols, pos = [], [], 0.5
    while pos < seconds - 1:
        abnormal = pos > seconds * 0.6 and rng.random() < 0.08
        bump = lambda mu, sd, a: a * np.exp(-0.5 * ((t - (pos + mu)) / sd) ** 2)  # noqa: E731
        x += bump(0.0, 0.04, -1.2) + bump(0.25, 0.06, -0.4) if abnormal else \
            bump(-0.16, 0.02, 0.15) + bump(0.0, 0.01, 1.0) + bump(0.25, 0.04, 0.3)
        beats.append(int(pos * fs))
        symbols.append("V" if abnormal else "N")
        pos += 0.8 + 0.05 * rng.standard_normal()
    wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=["II"], p_signal=x[:, None], fmt=["16"], write_dir=str(folder))
    wfdb.wrann(name, "atr", np.array(beats), symbols, write_dir=str(folder))
    return folder / name


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models: one torch thread (two spin-waiting threads on a busy 2-core machine are ~30x
    slower per call); the previous setting is restored after this module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def record(tmp_path_factory):
    return make_record(tmp_path_factory.mktemp("ecg"))


@pytest.fixture(scope="session")
def signal_run(record, tmp_path_factory):
    from edgead.tasks.signal.train import train_signal

    out = tmp_path_factory.mktemp("runs") / "mmae"
    train_signal(record, out, window=128, hop=32, rate=MODEL_RATE, steps=60, model_config=TINY)
    return out


@pytest.fixture(scope="session")
def signal_bundle(signal_run, tmp_path_factory):
    from edgead.export import export

    out = tmp_path_factory.mktemp("bundles") / "mmae"
    export(signal_run, out, TARGETS)
    return out


@pytest.fixture(scope="session")
def torch_predictor(signal_run):
    return SignalPredictor(signal_run)


@pytest.fixture(scope="session")
def samples(record):
    from edgead.tasks.signal.data import load_signal

    return load_signal(record).values  # (T, 1) at 200 Hz


# ------------------------------------------------------------------------------ training

def test_run_is_complete_and_small(signal_run, torch_predictor, samples):
    cfg = json.loads((signal_run / "run.json").read_text())
    assert cfg["task"] == "signal" and cfg["model"]["name"] == "mmae"
    assert cfg["input"]["rate"] == MODEL_RATE and cfg["input"]["length"] == 128 and cfg["input"]["hop"] == 32
    c = cfg["complexity"]
    assert 0 < c["params"] < 500_000 and c["flops_per_window"] > 1e5 and c["masks_per_window"] == 4
    split = cfg["train"]["split"]
    assert split["kind"] == "series" and split["fit_end"] < split["train_end"] < split["n"] == 24000
    at_model_rate = resample(samples, SRC_RATE, MODEL_RATE)
    held = torch_predictor.predict(at_model_rate[split["fit_end"]:split["train_end"]])  # scored here
    scores = {"window": [w.raw_score for w in held.windows],
              "point": [held.point_score[w.start:w.start + 128].max() for w in held.windows]}
    for level in ("window", "point"):  # the 0.99 quantile (order statistic) of the held-out part's scores
        th = cfg["thresholds"][level]
        assert th["active"] == "normal_quantile" and th["values"]["normal_quantile"] == pytest.approx(
            normal_quantile(scores[level], 0.99), rel=1e-4), level


def test_default_model_is_under_half_a_million_parameters():
    from edgead.models.mmae import MMAEConfig, MMAELite, complexity, inference_masks

    c = complexity(MMAELite(MMAEConfig(length=256, patch=8)))
    assert c["params"] < 500_000 and c["tokens"] == 32
    m = inference_masks(32, (1, 2, 4), (0.25, 0.5))
    assert m.shape == (18, 32) and (m.sum(0) == 6).all()  # every token hidden once per (scale, ratio)


def test_eval_finds_the_abnormal_beats(signal_run, record):
    from edgead.tasks.signal.evaluate import evaluate_signal

    res = evaluate_signal(signal_run, record)
    assert res["evaluated_on"] == "test part of the training data"
    assert res["n_beats"] > 100 and res["n_non_normal_beats"] >= 5
    assert res["beat_auroc"] > 0.9 and res["sample_auroc"] > 0.85
    # F1-max beats flagging everything (F1 = 2p / (1 + p) at prevalence p), at window and point level
    p_win, p_pt = res["n_anomalous_windows"] / res["n_windows"], res["n_anomalous_points"] / res["n_points"]
    assert res["f1_max"] > 2 * p_win / (1 + p_win) and res["point_f1_max"] > 2 * p_pt / (1 + p_pt), res
    assert res["point_auroc"] > 0.5  # points of V beats rank above points of normal ones


# ------------------------------------------------------------------------------ export parity

def test_manifest_describes_the_signal_bundle(signal_bundle):
    m = json.loads((signal_bundle / "edgead.json").read_text())
    assert m["task"] == "signal" and m["input_name"] == "signal" and m["input"]["kind"] == "signal"
    assert set(m["artefacts"]) == set(TARGETS)
    for art in m["artefacts"].values():
        assert art["precision"] == "fp32" and art["max_abs_diff_vs_torch"] < 1e-3


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_scores_match_torch(signal_bundle, torch_predictor, samples, runtime):
    pred = SignalPredictor(signal_bundle, runtime=runtime, threads=1)
    assert pred.runtime == runtime and pred.batch == 1
    ref = torch_predictor.predict(samples, rate=SRC_RATE)
    got = pred.predict(samples, rate=SRC_RATE)
    w_ref = np.array([w.raw_score for w in ref.windows])
    w_got = np.array([w.raw_score for w in got.windows])
    np.testing.assert_allclose(w_got, w_ref, rtol=1e-4)
    np.testing.assert_allclose(got.point_score, ref.point_score, rtol=1e-4, atol=1e-5 * ref.point_score.max())
    assert [w.is_anomalous for w in got.windows] == [w.is_anomalous for w in ref.windows]


# ------------------------------------------------------------------------------ streaming

def _stream_in_chunks(pred, samples, rate, seed, missing):
    rng = np.random.default_rng(seed)
    stream, ups, i = pred.stream(rate=rate), [], 0
    peak_buffer = 0
    while i < len(samples):
        k = int(rng.choice([1, 3, 17, 64, 200, 1111]))
        ups.append(stream.push(samples[i:i + k], missing[i:i + k]))
        peak_buffer = max(peak_buffer, len(stream.buf), len(stream.acc_sum))
        i += k
    ups.append(stream.flush())
    return ups, peak_buffer


@pytest.mark.parametrize("runtime", ["torch"] + RUNTIMES[:1])
def test_streaming_in_random_chunks_equals_one_batch_call(signal_run, signal_bundle, samples, runtime):
    pred = SignalPredictor(signal_run if runtime == "torch" else signal_bundle, runtime=runtime)
    if runtime == "torch":
        pred.batch = 1  # one window per call, as the exported artefacts run: identical arithmetic
    missing = np.zeros(len(samples), bool)
    missing[[5000, 5001, 20000]] = True  # filled upstream: "dropout" windows, in both
    ref = pred.predict(samples, rate=SRC_RATE, missing=missing)
    ups, peak = _stream_in_chunks(pred, samples, SRC_RATE, 3, missing)
    windows = [w for u in ups for w in u.windows]
    assert [(w.start, w.fault) for w in windows] == [(w.start, w.fault) for w in ref.windows]
    assert sum(w.fault == "dropout" for w in windows) >= 4
    np.testing.assert_array_equal([w.raw_score for w in windows], [w.raw_score for w in ref.windows])
    points = np.concatenate([u.point_score for u in ups])
    assert [u.point_start for u in ups] == list(np.cumsum([0] + [len(u.point_score) for u in ups[:-1]]))
    np.testing.assert_array_equal(points, ref.point_score)
    spec = pred.spec
    assert peak <= spec.length + spec.hop + 1111 // 2 + 2  # bounded: about a window, a hop and a chunk


def test_stream_emits_windows_as_soon_as_they_are_complete(torch_predictor):
    spec = torch_predictor.spec
    stream = torch_predictor.stream()  # model rate: no resampling
    x = np.random.default_rng(0).standard_normal(spec.length + spec.hop)
    first = stream.push(x[: spec.length - 1])
    assert first.windows == [] and len(first.point_score) == 0
    second = stream.push(x[spec.length - 1: spec.length])
    assert [w.start for w in second.windows] == [0] and len(second.point_score) == spec.hop
    third = stream.push(x[spec.length:])
    assert [w.start for w in third.windows] == [spec.hop]
    with pytest.raises(ValueError, match="channel"):
        stream.push(np.zeros((4, 3)))
    stream.flush()
    with pytest.raises(ValueError, match="flushed"):
        stream.push(x[:4])


def test_fixed_windows_and_bad_input(torch_predictor, samples):
    spec = torch_predictor.spec
    w = np.stack([samples[:spec.length, 0], samples[spec.length:2 * spec.length, 0]])
    s = torch_predictor.score_windows(w)
    assert s.point_score.shape == (2, spec.length) and s.window_score.shape == (2,)
    np.testing.assert_allclose(s.window_score, s.point_score.mean(1), rtol=1e-5)
    with pytest.raises(ValueError, match="fewer than one window"):
        torch_predictor.predict(np.zeros(spec.length - 1))
    with pytest.raises(ValueError, match="NaN"):
        torch_predictor.predict(np.full(1000, np.nan))


# ------------------------------------------------------------------------------ CLI and torch-free path

BLOCK = blocking("torch")


def test_predict_cli_and_streaming_without_torch(signal_bundle, record):
    code = BLOCK + textwrap.dedent(f"""
        import numpy as np
        from edgead.cli import main
        from edgead.tasks.signal.predictor import SignalPredictor
        from edgead.tasks.signal.data import load_signal
        p = SignalPredictor({str(signal_bundle)!r}, runtime="onnxruntime")
        x = load_signal({str(record)!r}).values
        s = p.stream(rate={SRC_RATE})
        n = sum(len(s.push(x[i:i + 500]).windows) for i in range(0, len(x), 500)) + len(s.flush().windows)
        assert "torch" not in sys.modules
        print("windows", n)
        sys.exit(main(["predict", {str(signal_bundle)!r}, {str(record)!r}, "--json", "--runtime", "onnxruntime"]))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    n = int(lines[0].split()[1])
    rows = [json.loads(line) for line in lines[1:]]
    assert len(rows) == n > 100 and {"start", "end", "score", "raw_score", "is_anomalous"} <= set(rows[0])
    assert rows[1]["start"] - rows[0]["start"] == 32


def test_cli_train_eval_export_on_csv(tmp_path, capsys):
    from edgead.cli import main

    rng = np.random.default_rng(0)
    t = np.arange(3000)
    x = np.sin(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(len(t))
    x[2500:2540] = 0.0  # a flat-line fault in the test part
    lab = ((t >= 2500) & (t < 2540)).astype(int)
    csv = tmp_path / "sensor.csv"
    csv.write_text("timestamp,value,label\n" + "\n".join(f"{i},{v:.5f},{y}" for i, v, y in zip(t, x, lab)))
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--model", "mmae", "--data", str(csv), "--out", str(run), "--window", "64",
                 "--steps", "15"]) == 0
    assert "MFLOPs per window" in capsys.readouterr().out
    assert main(["eval", str(run), "--data", str(csv), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_anomalous_points"] == 40 and res["sample_auroc"] is not None and res["point_auroc"] is not None
    assert main(["export", str(run), "--target", "onnx", "--out", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["eval", str(bundle), "--data", str(csv), "--json"]) == 0
    on_onnx = json.loads(capsys.readouterr().out)
    assert on_onnx["runtime"] == "onnxruntime" and on_onnx["sample_auroc"] == pytest.approx(res["sample_auroc"], abs=1e-3)
    assert on_onnx["point_auroc"] == pytest.approx(res["point_auroc"], abs=1e-3)  # torch and ONNX point scores agree
    assert main(["predict", str(bundle), str(csv), str(tmp_path / "missing.csv")]) == 1
    out = capsys.readouterr().out
    missing = tmp_path / "missing.csv"
    assert str(csv) in out and f"ERROR {missing}: signal data {missing} does not exist (give a file:" in out


def test_set_on_a_signal_model_is_a_usage_error(tmp_path, capsys):
    from edgead.cli import main

    assert main(["train", "--model", "mmae", "--data", str(tmp_path / "any.csv"), "--out", str(tmp_path / "run"),
                 "--set", "depth=2"]) == 2
    assert "--set is for image models, but model mmae is a signal one" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_signal_modules_import_without_torch():
    code = BLOCK + textwrap.dedent("""
        import edgead.signal_predictor, edgead.tasks.signal.preprocess, edgead.tasks.signal.data
        import edgead.tasks.signal.cli, edgead.tasks.signal.evaluate, edgead.tasks.signal.samples, edgead.tasks.signal.task
        from edgead.signal_predictor import SignalPredictor
        assert "torch" not in sys.modules
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------ real data

def test_ecg5000_short_training_separates_abnormal_beats(tmp_path):
    from edgead.tasks.signal.evaluate import evaluate_signal
    from edgead.tasks.signal.train import train_signal

    data = shared_data("signals/ecg5000_train") / "ECG5000_TRAIN.txt"
    cfg = train_signal(data, tmp_path / "run", steps=80, model_config=TINY)
    assert cfg["input"]["length"] == 140 and cfg["model"]["config"]["patch"] == 7
    res = evaluate_signal(tmp_path / "run", data)
    assert res["n_samples"] == 500 - cfg["train"]["split"]["n_fit"] - cfg["train"]["split"]["n_holdout"]
    assert res["n_anomalous"] == 208 and res["sample_auroc"] > 0.9


def test_int8_export_of_a_signal_bundle_is_gated_and_chosen(signal_run, record, tmp_path):
    from edgead.export import ExportError, export
    from edgead.tasks.signal.evaluate import evaluate_signal

    m = export(signal_run, tmp_path / "b", ["onnx"], int8=True, max_drop=0.5, max_shift=0.5)
    art = m["artefacts"]["onnx_int8"]
    assert art["precision"] == "int8" and art["gate"]["passed"] and art["calibration"]["n_windows"] > 50
    pred = SignalPredictor(tmp_path / "b", runtime="onnxruntime", precision="int8")  # auto picks by measured speed
    assert pred.precision == "int8"
    res = evaluate_signal(tmp_path / "b", record, predictor=pred)
    assert res["precision"] == "int8" and res["sample_auroc"] == pytest.approx(art["gate"]["int8"]["sample_auroc"])
    fp32 = evaluate_signal(tmp_path / "b", record, runtime="onnxruntime", precision="fp32")  # measured, not read back
    assert fp32["precision"] == "fp32" and fp32["sample_auroc"] == pytest.approx(art["gate"]["fp32"]["sample_auroc"])
    assert fp32["sample_auroc"] > 0.8 and fp32["sample_auroc"] - res["sample_auroc"] <= 0.5
    with pytest.raises(ExportError, match=r"onnx_int8 \(onnxruntime\): INT8 accuracy is not within bounds \(.*"
                                          r"score_shift \d\.\d{4} > 0\.0\).*not written"):  # refused, not shipped
        export(signal_run, tmp_path / "c", ["onnx"], int8=True, max_drop=0.5, max_shift=0.0)
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------------ device example

def _ecg_stream(*args):
    return run_example("ecg_stream.py", *args, timeout=300)


def test_ecg_stream_example_alarms_match_the_batch_predictor(signal_bundle, record, samples):
    pred = SignalPredictor(signal_bundle, runtime="onnxruntime")
    ref = pred.predict(samples, rate=SRC_RATE).windows
    r = _ecg_stream(signal_bundle, record, "--runtime", "onnxruntime", "--json", "--chunk", 37)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [w["start"] for w in rows] == [w.start for w in ref]
    assert np.allclose([w["raw_score"] for w in rows], [w.raw_score for w in ref], rtol=1e-5)
    runs = sum(1 for i, w in enumerate(ref) if w.is_anomalous and (i == 0 or not ref[i - 1].is_anomalous))
    r = _ecg_stream(signal_bundle, record, "--runtime", "onnxruntime")
    assert r.returncode == 0, r.stderr
    alarms = [line for line in r.stdout.splitlines() if line.startswith("ALARM")]
    assert len(alarms) == runs > 0 and f"{runs} alarms" in r.stderr
    starts = np.array([float(a.split("t=")[1].split()[0]) for a in alarms])
    assert (starts > 0.6 * 240).sum() > (starts <= 0.6 * 240).sum()  # V beats: last 40 % of the record


def test_ecg_stream_example_on_mitbih_and_bad_input(signal_bundle, tmp_path):
    r = _ecg_stream(signal_bundle, tmp_path / "nothing", "--runtime", "onnxruntime")
    assert r.returncode == 2 and f"ecg_stream: signal data {tmp_path / 'nothing'} does not exist" in r.stderr
    rec = shared_data("signals/mitbih_wfdb_sample") / "100"
    r = _ecg_stream(signal_bundle, rec, "--runtime", "onnxruntime", "--max-seconds", 20)
    assert r.returncode == 0, r.stderr
    assert "20.0 s in" in r.stderr and "no channel" in r.stderr  # MLII / V5 leads, the model's is II
