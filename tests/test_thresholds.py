import json

import numpy as np
import pytest

from edgead.core.metrics import f1_max, pixel_f1_max
from edgead.core.thresholds import (
    FalseAlarms, Normalizer, Override, ThresholdSet, f1_adaptive, false_alarm_rate, manual, needed_for, normal_quantile,
    pixel_f1_adaptive, pixel_normal_quantile, print_false_alarms, rank, span_from_normal,
)


def _json_round_trip(d):
    return json.loads(json.dumps(d))


def test_normal_quantile_is_the_order_statistic_of_rank_ceil_n_plus_1_q():
    scores = np.random.default_rng(3).permutation(np.arange(300.0))
    assert normal_quantile(scores, q=0.99) == 297.0  # k = ceil(301 * 0.99) = 298, the 298th smallest
    assert normal_quantile(np.arange(101.0), q=0.99) == 100.0  # k = ceil(101.98) = 102 > n: the maximum
    assert normal_quantile([3.0, 1.0, 2.0], q=0.5) == 2.0
    assert rank(98, 0.99) == 98 and rank(199, 0.99) == 198  # ceil(200 * 0.99)
    assert needed_for(0.99) == 99 and needed_for(0.95) == 19


def test_false_alarm_rate_matches_simulated_holdouts():
    """4000 hold-outs of uniform normal scores: the share of new normals at or above each
    threshold (1 - t for uniform scores) averages the stated rate, and the 90 % interval holds
    it about 90 % of the time."""
    rng = np.random.default_rng(0)
    for n, q in ((5, 0.99), (60, 0.95), (250, 0.99)):
        rate = false_alarm_rate(n, q)
        true = np.array([1.0 - normal_quantile(rng.random(n), q) for _ in range(4000)])
        assert true.mean() == pytest.approx(rate.expected, rel=0.05), (n, q)
        covered = np.mean((true >= rate.low) & (true <= rate.high))
        assert covered == pytest.approx(0.90, abs=0.02), (n, q)
        assert rate.enough == (n >= needed_for(q))
    small = false_alarm_rate(5, 0.99)
    assert small.expected == pytest.approx(1 / 6) and small.k == 5
    assert FalseAlarms.from_json(_json_round_trip(small.to_json())) == small


def test_training_warns_when_the_holdout_is_too_small_for_the_rate(capsys):
    small = ThresholdSet.from_scores(np.random.default_rng(0).random(5)).to_json()
    print_false_alarms(small, "images")
    out, err = capsys.readouterr()
    assert "expected false alarms on good images: 16.7%" in out and "from 5 held-out images" in out
    assert "5 held-out good images are too few for a 1.0% false-alarm rate" in err and "--holdout" in err
    big = ThresholdSet.from_scores(np.random.default_rng(0).random(200)).to_json()
    print_false_alarms(big, "images")
    out, err = capsys.readouterr()
    assert "expected false alarms on good images: 1.0%" in out and err == ""


def test_normal_quantile_known_distribution():
    x = np.random.default_rng(0).normal(size=200_000)
    assert normal_quantile(x) == pytest.approx(2.3263, abs=0.03)  # default q = 0.99
    # ~1 % of fresh normal samples exceed it
    fresh = np.random.default_rng(1).normal(size=200_000)
    assert np.mean(fresh >= normal_quantile(x)) == pytest.approx(0.01, abs=0.002)
    with pytest.raises(ValueError):
        normal_quantile([], 0.99)
    with pytest.raises(ValueError):
        normal_quantile([1.0, 2.0], q=1.5)


def test_f1_adaptive_equals_f1_max_threshold():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(int)
    s = rng.normal(size=300) + 1.5 * y
    assert f1_adaptive(y, s) == f1_max(y, s)[1]


def test_f1_adaptive_without_anomalies_raises():
    with pytest.raises(ValueError, match="anomalous"):
        f1_adaptive([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="anomalous"):
        pixel_f1_adaptive([np.zeros((4, 4))], [np.ones((4, 4))])
    ts = ThresholdSet.from_scores([0.1, 0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="anomalous"):
        ts.select("f1_adaptive")
    with pytest.raises(ValueError, match="unknown"):
        ts.select("otsu")


def test_manual():
    assert manual(3) == 3.0
    with pytest.raises(ValueError):
        manual(float("nan"))


def test_normalizer_threshold_maps_to_half_and_is_monotone():
    normal = np.random.default_rng(0).gamma(2.0, size=1000)
    thr = normal_quantile(normal)
    nz = Normalizer.from_normal(thr, normal, kind="normal_quantile")
    assert nz.normalize(thr) == pytest.approx(0.5)
    assert isinstance(nz(thr), float)
    x = np.linspace(-5, 30, 1001)
    y = nz.normalize(x)
    assert np.all(np.diff(y) >= 0) and y.min() == 0.0 and y.max() == 1.0
    assert nz.normalize(np.quantile(normal, 0.01)) == pytest.approx(0.0, abs=1e-12)
    assert np.mean(nz.normalize(normal) < 0.5) == pytest.approx(0.99, abs=0.002)
    m = np.random.default_rng(1).random((8, 8)).astype(np.float32)
    assert nz.normalize(m).dtype == np.float32 and nz.normalize(m).shape == (8, 8)
    assert nz.normalize(np.array([1, 2])).dtype == np.float64


def test_span_never_zero():
    assert span_from_normal(1.0, [1.0, 1.0, 1.0]) > 0
    assert span_from_normal(0.0, [2.0, 3.0]) > 0  # threshold below all normal scores
    with pytest.raises(ValueError):
        Normalizer(0.5, 0.0)


def test_normalizer_json_round_trip():
    nz = Normalizer(0.7, 0.4, "manual")
    d = _json_round_trip(nz.to_json())
    assert d == {"kind": "manual", "threshold": 0.7, "span": 0.4}
    assert Normalizer.from_json(d) == nz


def test_threshold_set_from_scores_and_json():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200, int), np.ones(20, int)]
    s = np.r_[rng.normal(size=200), rng.normal(3, 1, size=20)]
    ts = ThresholdSet.from_scores(s, y)
    assert set(ts.values) == {"normal_quantile", "f1_adaptive"}
    assert ts.active == "normal_quantile"  # default without manual value
    assert ts.threshold == pytest.approx(normal_quantile(s[y == 0]))
    assert ts.select("f1_adaptive").threshold == f1_adaptive(y, s)
    assert ts.normalize(ts.threshold) == pytest.approx(0.5)

    back = ThresholdSet.from_json(_json_round_trip(ts.to_json()))
    assert back == ts
    assert back.to_json()["normalizer"]["threshold"] == ts.threshold
    assert back.normalize(1.234) == ts.normalize(1.234)

    ts.set_manual(2.0)
    assert ts.active == "manual" and ts.normalize(2.0) == pytest.approx(0.5)
    assert ThresholdSet.from_scores(s, y, manual=1.0).active == "manual"
    assert ThresholdSet.from_scores(s, y, active="f1_adaptive").active == "f1_adaptive"
    assert ThresholdSet.from_scores(s[y == 1], np.ones(20)).active == "f1_adaptive"


def test_pixel_thresholds():
    rng = np.random.default_rng(0)
    maps = [rng.random((32, 32)).astype(np.float32) for _ in range(6)] + [rng.random((24, 40)).astype(np.float32)]
    masks = [np.zeros(a.shape, np.uint8) for a in maps]
    for m, a in zip(masks[:3], maps[:3]):
        m[4:10, 4:12] = 1
        a[4:10, 4:12] += 0.8
    normal_maps = maps[3:]
    maxima = np.sort([a.max() for a in normal_maps])
    assert pixel_normal_quantile(normal_maps, 0.5) == maxima[2]  # k = ceil(5 * 0.5) = 3 of 4 maps
    all_px = np.sort(np.concatenate([a.ravel() for a in normal_maps]))
    assert pixel_normal_quantile(normal_maps, 0.99, per="pixel") == all_px[rank(all_px.size, 0.99) - 1]

    ts = ThresholdSet.from_maps(maps, masks)
    assert ts.values["f1_adaptive"] == pixel_f1_max(masks, maps)[1] == pixel_f1_adaptive(masks, maps)
    assert ts.values["normal_quantile"] == pytest.approx(pixel_normal_quantile(normal_maps))
    nm = ts.normalize(maps[0])
    assert nm.shape == maps[0].shape and nm.min() >= 0 and nm.max() <= 1
    assert ThresholdSet.from_json(_json_round_trip(ts.to_json())) == ts

    only_normal = ThresholdSet.from_maps(normal_maps)
    assert set(only_normal.values) == {"normal_quantile"}
    with pytest.raises(ValueError, match="anomalous"):
        only_normal.select("f1_adaptive")


def test_override_moves_each_threshold_set_by_its_own_span():
    rng = np.random.default_rng(0)
    narrow, wide = ThresholdSet.from_scores(rng.normal(0, 1, 300)), ThresholdSet.from_scores(rng.normal(5, 10, 300))
    spans = [t.normalizer().span for t in (narrow, wide)]
    before = [t.threshold for t in (narrow, wide)]
    o = Override.parse("score:0.6")
    for t in (narrow, wide):
        o.apply(t)
    assert [t.active for t in (narrow, wide)] == ["manual", "manual"]
    assert [t.threshold for t in (narrow, wide)] == pytest.approx([b + 0.1 * s for b, s in zip(before, spans)])
    once = narrow.threshold
    o.apply(narrow)  # again: still measured from the trained threshold, not from the first override
    assert narrow.threshold == once
    Override.parse("score:0.5").apply(narrow)
    assert narrow.threshold == pytest.approx(before[0]) and narrow.active == "manual"
    assert Override.parse("raw:-2.5") == Override(-2.5, "raw") == Override.parse("-2.5") == Override.parse(-2.5)
    assert Override.parse("-2.5").raw(narrow) == -2.5
    for bad in ("score:0", "score:1", "x:1", "", "raw:", "score:inf"):
        with pytest.raises(ValueError, match="threshold"):
            Override.parse(bad)
