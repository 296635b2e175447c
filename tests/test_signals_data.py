"""Signal loaders (real files in ../shared/data/signals), resampling, windowing, normalisation."""
import json

import numpy as np
import pytest

from conftest import shared_data
from edgead.tasks.image.data import DataError
from edgead.tasks.signal.data import (Series, SampleSet, at_rate, detect_kind, load_signal, split_samples,
                                 split_series)
from edgead.tasks.signal.preprocess import (Resampler, SignalSpec, as_windows, cut_windows, normalize, overlap_mean,
                                      resample, window_starts)


# ------------------------------------------------------------------------------ real data

def test_ecg5000_formats_agree_and_split_by_class():
    root = shared_data("signals/ecg5000_train")
    sets = [load_signal(root / f"ECG5000_TRAIN.{ext}") for ext in ("txt", "ts", "arff")]
    for s in sets:
        assert isinstance(s, SampleSet) and s.values.shape == (500, 1, 140)
        assert int((s.labels == 0).sum()) == 292 and set(np.unique(s.classes)) == {"1", "2", "3", "4", "5"}
    np.testing.assert_allclose(sets[1].values, sets[0].values, atol=1e-6)
    np.testing.assert_allclose(sets[2].values, sets[0].values, atol=1e-6)
    assert (sets[1].labels == sets[0].labels).all() and (sets[2].labels == sets[0].labels).all()
    split = split_samples(sets[0].labels, 0.6, 0.15, seed=0)
    train = np.concatenate([split["fit"], split["holdout"]])
    assert (sets[0].labels[train] == 0).all() and len(train) == round(292 * 0.6)
    assert len(np.intersect1d(train, split["test"])) == 0 and len(train) + len(split["test"]) == 500
    assert sets[0].labels[split["test"]].sum() == 208  # every abnormal beat is tested


def test_mitbih_record_and_beats():
    rec = shared_data("signals/mitbih_wfdb_sample") / "100"
    assert detect_kind(rec) == "wfdb" and detect_kind(rec.with_suffix(".hea")) == "wfdb"
    s = load_signal(rec)
    assert isinstance(s, Series) and s.values.shape == (650000, 2) and s.rate == 360.0
    assert s.channel_names == ["MLII", "V5"]
    # 2239 N, 33 A, 1 V; the '+' rhythm annotation is not a beat
    assert len(s.beats) == 2273 and int(s.beat_labels.sum()) == 34 and "+" not in s.beat_symbols
    mlii = load_signal(rec, channels=["MLII"])
    assert mlii.values.shape == (650000, 1)
    np.testing.assert_array_equal(mlii.values[:, 0], s.values[:, 0])
    with pytest.raises(DataError, match="no channel 'V1'"):
        load_signal(rec, channels=["V1"])
    x = resample(s.values, 360, 120)
    labels, beats = at_rate(s, 120, len(x))
    assert labels is None and len(x) == 216667 and beats.max() < len(x)  # samples 0, 3, ..., 649998
    np.testing.assert_array_equal(x, s.values[::3])
    np.testing.assert_array_equal(beats, np.round(s.beats / 3).astype(int).clip(max=len(x) - 1))


def test_nab_labels_from_combined_windows():
    csv = shared_data("signals/nab") / "data/realKnownCause/nyc_taxi.csv"
    assert detect_kind(csv) == "nab"
    s = load_signal(csv)
    assert s.values.shape == (10320, 1) and s.point_labels.shape == (10320,)
    windows = json.loads((shared_data("signals/nab") / "labels/combined_windows.json").read_text())
    assert len(windows["realKnownCause/nyc_taxi.csv"]) == 5
    runs = np.flatnonzero(np.diff(np.concatenate([[0], s.point_labels, [0]])) == 1)
    assert len(runs) == 5 and 0 < s.point_labels.mean() < 0.2
    as_csv = load_signal(csv, kind="csv")  # the same file read generically: no labels, timestamp ignored
    assert as_csv.point_labels is None and np.array_equal(as_csv.values, s.values)


def test_generic_csv_with_label_column():
    s = load_signal(shared_data("signals/sktime") / "mitdb.csv")
    assert s.kind == "csv" and s.values.shape == (7500, 1) and s.channel_names == ["data"]
    assert s.point_labels.sum() > 0 and s.point_labels[6936:7288].all()


# ------------------------------------------------------------------------------ bad input

def test_bad_input_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_signal(tmp_path / "nope.csv")
    ragged = tmp_path / "r.txt"
    ragged.write_text("1 0.1 0.2 0.3\n2 0.1 0.2\n")
    with pytest.raises(DataError, match="different lengths"):
        load_signal(ragged)
    words = tmp_path / "w.csv"
    words.write_text("name,colour\na,b\nc,d\n")
    with pytest.raises(DataError, match="no numeric value column"):
        load_signal(words)
    short = tmp_path / "s.csv"
    short.write_text("v\n" + "\n".join("1.0" for _ in range(5)))
    with pytest.raises(DataError, match="too short"):
        split_series(5, 0.5, 0.15, 64)
    obj = tmp_path / "o.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="no pickle"):
        load_signal(obj)
    with pytest.raises(DataError, match="--data-kind"):
        (tmp_path / "x.bin").write_bytes(b"1")
        load_signal(tmp_path / "x.bin")
    series = tmp_path / "one_per_line.txt"
    series.write_text("\n".join(str(v) for v in range(50)))
    with pytest.raises(DataError, match="--data-kind csv"):
        load_signal(series)
    assert load_signal(series, kind="csv").values.shape == (50, 1)
    ucr = tmp_path / "u.txt"
    ucr.write_text("2 0.1 0.2\n3 0.3 0.4\n")
    with pytest.raises(DataError, match="normal class '1' not found"):
        load_signal(ucr)


def test_npy_and_npz(tmp_path):
    x = np.arange(300, dtype=np.float32).reshape(100, 3)
    np.save(tmp_path / "a.npy", x)
    s = load_signal(tmp_path / "a.npy", channels=["2"])
    assert s.values.shape == (100, 1) and s.values[5, 0] == x[5, 2]
    np.savez(tmp_path / "b.npz", values=x[:, 0], labels=(np.arange(100) > 90))
    z = load_signal(tmp_path / "b.npz")
    assert z.values.shape == (100, 1) and z.point_labels.sum() == 9


# ------------------------------------------------------------------------------ resampling / windows

def test_resample_is_exact_on_a_ramp_and_identity_without_rates():
    x = np.arange(100, dtype=np.float64)[:, None]
    y = resample(x, 300, 200)  # output k at source position 1.5 k
    np.testing.assert_allclose(y[:, 0], 1.5 * np.arange(len(y)), rtol=0, atol=1e-5)
    assert 1.5 * (len(y) - 1) <= 99 < 1.5 * len(y)
    up = resample(x, 100, 250)
    np.testing.assert_allclose(up[:, 0], 0.4 * np.arange(len(up)), atol=1e-5)
    assert resample(x, None, 120).shape == x.shape and resample(x, 120, 120) is not None


@pytest.mark.parametrize("src,dst", [(360, 120), (360, 128), (100, 250), (44.1, 16)])
def test_streaming_resampler_equals_batch(src, dst):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3001, 2)).astype(np.float32)
    ref = resample(x, src, dst)
    r, parts, i = Resampler(src, dst), [], 0
    while i < len(x):
        k = int(rng.integers(1, 40))
        parts.append(r.push(x[i:i + k]))
        i += k
    got = np.concatenate(parts)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    assert len(r.buf) <= 3  # bounded state


def test_window_starts_and_tail():
    starts, tail = window_starts(104, 32, 8)
    assert starts.tolist() == list(range(0, 73, 8)) and tail is None
    starts, tail = window_starts(103, 32, 8)
    assert starts[-1] == 64 and tail == 71
    assert len(window_starts(20, 32, 8)[0]) == 0


def test_normalisation_and_overlap_mean():
    spec = SignalSpec(channels=2, length=16, hop=4, min_std=0.1)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 2, 16)).astype(np.float32) * 3 + 7
    z = normalize(w, spec)
    np.testing.assert_allclose(z.mean(2), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(2), 1, atol=1e-4)
    flat = normalize(np.full((1, 2, 16), 5.0, np.float32), spec)
    assert np.abs(flat).max() == 0  # flat windows are not blown up
    g = SignalSpec(channels=2, length=16, hop=4, norm="global", mean=(7.0, 7.0), std=(3.0, 3.0))
    np.testing.assert_allclose(normalize(w, g), (w - 7) / 3, atol=1e-6)
    pts = overlap_mean(np.stack([np.full(16, 1.0), np.full(16, 3.0)]), np.array([0, 8]), 30)
    assert pts[:8].tolist() == [1.0] * 8 and pts[8:16].tolist() == [2.0] * 8 and np.isnan(pts[24:]).all()
    x = np.arange(40, dtype=np.float32)[:, None]
    assert cut_windows(x, np.array([3]), 16)[0, 0, 0] == 3
    assert as_windows(np.zeros((3, 16)), SignalSpec(channels=1, length=16, hop=4)).shape == (3, 1, 16)
    with pytest.raises(ValueError, match="expected windows"):
        as_windows(np.zeros((3, 15)), SignalSpec(channels=1, length=16, hop=4))
