"""Signal loaders (real files in ../shared/data/signals), resampling, windowing, normalisation."""
import itertools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import blocking, shared_data
from edgead.tasks.image.data import DataError
from edgead.tasks.signal.data import (Series, SampleSet, at_rate, detect_kind, load_signal, split_samples,
                                 split_series)
from edgead.tasks.signal.preprocess import (MaskResampler, Resampler, SignalSpec, as_windows, cut_windows, normalize,
                                            overlap_mean, resample, resample_factors, resample_mask, window_starts)


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
    assert labels is None and len(x) == 216667 and beats.max() < len(x)  # ceil(650000 / 3); k at source 3 k
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

RATE_PAIRS = [(360, 120, 1, 3), (100, 250, 5, 2), (250, 100, 2, 5), (1000, 360, 9, 25), (128.5, 257, 2, 1),
              (44.1, 16, 160, 441), (360, 360, 1, 1)]


def _walk(n: int, seed: int = 0) -> np.ndarray:
    """A centred two-channel random walk: broadband, like a noisy lead."""
    x = np.cumsum(np.random.default_rng(seed).standard_normal((n, 2)), axis=0)
    return x - x.mean(axis=0)


@pytest.mark.parametrize("src,dst,up,down", RATE_PAIRS)
def test_resample_equals_scipy_resample_poly_with_edge_padding(src, dst, up, down):
    from scipy.signal import resample_poly

    assert resample_factors(src, dst) == (up, down)
    for n in (1, 7, 3001):  # shorter than the filter, and long
        x = _walk(n)
        ref = resample_poly(x, up, down, axis=0, padtype="edge")
        got = resample(x, src, dst)
        assert got.dtype == np.float32 and got.shape == ref.shape == (-(-n * up // down), 2)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-7 * max(np.ptp(x), np.abs(x).max(), 1e-3))


@pytest.mark.parametrize("src,dst", [(360, 120), (100, 250), (44.1, 16), (1000, 360)])
def test_streaming_resampler_is_bit_identical_to_batch_in_any_chunks(src, dst):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3001, 2)).astype(np.float32)
    missing = rng.random(3001) < 0.01
    ref, ref_missing = resample(x, src, dst), resample_mask(missing, src, dst)
    assert ref_missing.shape == (len(ref),) and ref_missing.any()
    for sizes in ([1], [7], rng.integers(1, 200, 64), [len(x)]):
        r, rm, parts, masks, i, peak = Resampler(src, dst), MaskResampler(src, dst), [], [], 0, 0
        for k in itertools.cycle(sizes):
            if i >= len(x):
                break
            parts.append(r.push(x[i:i + k]))
            masks.append(rm.push(missing[i:i + k]))
            assert len(masks[-1]) == len(parts[-1])  # the mask follows the data's schedule
            peak, i = max(peak, len(r.buf)), i + k
        parts.append(r.flush())
        masks.append(rm.flush())
        assert np.array_equal(np.concatenate(parts), ref) and np.array_equal(np.concatenate(masks), ref_missing)
        assert peak <= r.before + r.after + r.down + max(sizes)  # bounded: the filter's span and a chunk


def test_the_missing_mask_covers_the_filters_main_lobe():
    missing = np.zeros(30, bool)
    missing[10] = True
    assert np.flatnonzero(resample_mask(missing, 360, 120)).tolist() == [3, 4]  # source 9 and 12, within 3
    assert np.flatnonzero(resample_mask(missing, 100, 250)).tolist() == [23, 24, 25, 26, 27]  # 9.2 .. 10.8
    assert np.array_equal(resample_mask(missing, None, 120), missing)


def test_resampling_needs_no_scipy():
    """scipy is not installed on devices: the filter is designed in numpy."""
    code = blocking("scipy") + textwrap.dedent("""
        import numpy as np
        from edgead.tasks.signal.preprocess import resample, resample_mask
        assert resample(np.ones((100, 2)), 360, 120).shape == (34, 2)
        assert resample_mask(np.ones(100, bool), 100, 250).all()
        assert "scipy" not in sys.modules
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _db(y: np.ndarray, x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(y ** 2)) / np.sqrt(np.mean(x ** 2)))


def test_resampling_removes_what_would_alias_and_keeps_the_band():
    t = np.arange(360 * 20) / 360
    edge = 100  # output samples near the padded ends are left out
    for hz, lo, hi in ((100, -np.inf, -60), (10, -0.1, 0.1)):  # 100 Hz would fold to 20 Hz at 120 Hz
        x = np.sin(2 * np.pi * hz * t)[:, None]
        y = resample(x, 360, 120)[edge:-edge]
        assert lo < _db(y, x[3 * edge:-3 * edge]) < hi, hz


def test_identity_passes_samples_through_with_no_delay():
    x = _walk(50).astype(np.float32)
    for src, dst in ((None, 120), (120, None), (120, 120.0)):
        r = Resampler(src, dst)
        assert np.array_equal(r.push(x[:10]), x[:10]) and np.array_equal(r.push(x[10:]), x[10:])
        assert r.flush().shape == (0, 2)
    assert resample_factors(None, 120) == (1, 1) and np.array_equal(resample(x, 120, 120), x)


def test_an_awkward_rate_ratio_is_refused_not_approximated():
    with pytest.raises(DataError) as e:
        Resampler(359.87, 120)
    assert str(e.value) == ("resampling 359.87 Hz to the model's 120 Hz needs the ratio 12000/35987: its anti-alias "
                            "filter would have 719,741 taps (up and down are limited to 1000); use rates with a "
                            "simpler ratio, e.g. a model rate of 119.957 Hz, and check that 359.87 Hz is the data's "
                            "real rate")
    with pytest.raises(DataError, match="1001/1000"):
        resample(np.zeros((10, 1)), 1000, 1001)
    assert resample_factors(128.5, 120) == (240, 257) and resample_factors(44100, 16000) == (160, 441)


def test_a_flushed_resampler_takes_nothing_more():
    r = Resampler(360, 120)
    assert r.push(np.zeros((10, 1))).shape[1:] == (1,)
    assert len(r.flush()) > 0
    with pytest.raises(ValueError, match="already flushed"):
        r.flush()
    with pytest.raises(ValueError, match="was flushed"):
        r.push(np.zeros((1, 1)))
    assert len(Resampler(360, 120).flush()) == 0  # nothing pushed: nothing out


@pytest.mark.parametrize("src,dst", [(360, 120), (100, 250)])
def test_beats_and_labels_line_up_with_the_resampled_samples(src, dst):
    t = np.arange(3000)
    beats = np.array([400, 1201, 2002, 2603])
    x = sum(np.exp(-0.5 * ((t - b) / 8.0) ** 2) for b in beats)[:, None].astype(np.float32)
    labels = (np.abs(t[:, None] - beats).min(axis=1) <= 12).astype(np.uint8)
    s = Series(x, "syn", "npy", rate=src, point_labels=labels, beats=beats)
    y = resample(x, src, dst)[:, 0]
    moved_labels, moved = at_rate(s, dst, len(y))
    for b in moved:  # each bump's peak is on its moved beat (1201 -> 3002.5 at 250 Hz: a tie)
        assert y[b] >= y[b - 10:b + 11].max() - 1e-6
    up, down = resample_factors(src, dst)
    near = np.abs(np.arange(len(y))[:, None] * down / up - beats).min(axis=1)  # source distance to a beat
    assert (moved_labels[near < 12] == 1).all() and (moved_labels[near > 13] == 0).all()


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


def test_models_from_before_the_filter_keep_their_linear_resampling():
    """A spec without `resampling` (runs and bundles made before the anti-aliased resampler) is
    scored as it was trained: linear interpolation, exact on a ramp, batch equal to stream."""
    from edgead.tasks.signal.preprocess import resampler

    old = {"channels": 1, "length": 64, "hop": 16, "rate": 120.0, "norm": "window"}
    assert SignalSpec.from_json(old).resampling == "linear"
    assert SignalSpec.from_json({**old, "resampling": "polyphase"}).resampling == "polyphase"
    assert SignalSpec(1, 64, 16, 120.0).to_json()["resampling"] == "polyphase"  # what new runs record
    ramp = np.arange(300, dtype=np.float64)[:, None]
    y = resample(ramp, 300, 200, "linear")  # output k at source position 1.5 k
    assert np.allclose(y[:, 0], 1.5 * np.arange(len(y))) and len(y) == 200
    r = resampler(300, 200, "linear")
    streamed = np.concatenate([r.push(ramp[i:i + 7]) for i in range(0, 300, 7)] + [r.flush()])
    assert np.array_equal(streamed, y)
    missing = np.zeros(300, bool)
    missing[30] = True
    assert np.flatnonzero(resample_mask(missing, 300, 200, "linear")).tolist() == [20]  # 1.5 k = 30
