import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score

from edgead.core.metrics import aupro, auroc, f1_max, image_auroc, pixel_auroc, pixel_f1_max, summarize


# --------------------------------------------------------------------------- reference
def slow_aupro(masks, maps, fpr_limit=0.3, thresholds=None):
    """Independent, straightforward PRO curve: loop over thresholds, label regions with scipy."""
    masks = [np.asarray(m) > 0 for m in masks]
    maps = [np.asarray(a, np.float64) for a in maps]
    if thresholds is None:
        thresholds = np.unique(np.concatenate([a.ravel() for a in maps]))
    regions = []  # (image index, boolean region mask)
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    n_normal = sum((~m).sum() for m in masks)
    fprs, pros = [0.0], [0.0]
    for t in sorted(thresholds, reverse=True):
        pred = [a >= t for a in maps]
        fprs.append(sum((p & ~m).sum() for p, m in zip(pred, masks)) / n_normal)
        pros.append(np.mean([pred[i][r].sum() / r.sum() for i, r in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    # curve is monotone in threshold order; cut at fpr_limit with linear interpolation
    k = np.searchsorted(fprs, fpr_limit, side="left")  # first index with fpr >= limit
    if fprs[k] == fpr_limit:
        x, y = fprs[: k + 1], pros[: k + 1]
    else:
        w = (fpr_limit - fprs[k - 1]) / (fprs[k] - fprs[k - 1])
        x = np.append(fprs[:k], fpr_limit)
        y = np.append(pros[:k], pros[k - 1] + w * (pros[k] - pros[k - 1]))
    return np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / fpr_limit


def synthetic(rng, n=8, quantize=None):
    """Masks with several regions of different sizes (some touching diagonally) + normal images."""
    shapes = [(48, 64), (64, 64), (40, 56)]
    masks, maps = [], []
    for i in range(n):
        h, w = shapes[i % len(shapes)]
        m = np.zeros((h, w), np.uint8)
        if i % 3 != 2:  # every third image is defect-free
            for _ in range(rng.integers(1, 4)):
                y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
                s = rng.integers(1, 14)
                m[y:y + s, x:x + s] = 255
            if i == 0:  # two squares touching only at a corner: one 8-connected region
                m[:] = 0
                m[5:10, 5:10] = 1
                m[10:14, 10:14] = 1
                m[30:31, 40:41] = 1
        a = ndimage.gaussian_filter(rng.random((h, w)), 1.5) + 0.15 * ndimage.gaussian_filter(
            (m > 0).astype(float), 2) + 0.05 * (m > 0) * rng.random((h, w))
        if quantize:
            a = np.round(a * quantize) / quantize
        masks.append(m)
        maps.append(a.astype(np.float32))
    return masks, maps


# --------------------------------------------------------------------------- AUROC / F1
@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 10, 300) + y * rng.integers(0, 3, 300)  # many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert image_auroc(y.astype(bool), s.astype(float)) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auroc_extremes():
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == 0.5


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_auroc_one_class_raises(labels):
    with pytest.raises(ValueError, match="only one class"):
        auroc(labels, [0.1, 0.2, 0.3])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="lengths"):
        auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="binary"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="anomalous"):
        f1_max([0, 0], [0.1, 0.2])


@pytest.mark.parametrize("seed", range(5))
def test_f1_max_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400) * (rng.random(400) < 0.4)
    s = np.round(rng.normal(size=400) + y, 1)
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.nanmax(2 * p * r / (p + r))
    f1, thr = f1_max(y, s)
    assert f1 == pytest.approx(ref, abs=1e-12)
    pred = s >= thr
    tp = (pred & (y == 1)).sum()
    assert 2 * tp / (pred.sum() + (y == 1).sum()) == pytest.approx(f1, abs=1e-12)


# --------------------------------------------------------------------------- pixel metrics
def test_pixel_metrics_on_lists_of_different_sizes():
    rng = np.random.default_rng(0)
    masks, maps = synthetic(rng, n=7)
    assert len({m.shape for m in masks}) > 1
    y = np.concatenate([m.ravel() > 0 for m in masks])
    s = np.concatenate([a.ravel() for a in maps])
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert pixel_f1_max(masks, maps) == f1_max(y, s)
    # a stacked (N, H, W) array gives the same result as a list
    same = [m[:40, :48] for m in masks], [a[:40, :48] for a in maps]
    assert pixel_auroc(np.stack(same[0]), np.stack(same[1])) == pytest.approx(pixel_auroc(*same), abs=1e-15)


def test_pixel_shape_mismatch_raises():
    with pytest.raises(ValueError, match="resize"):
        pixel_auroc([np.zeros((4, 4))], [np.zeros((4, 5))])
    with pytest.raises(ValueError, match="masks but"):
        aupro([np.zeros((4, 4))] * 2, [np.zeros((4, 4))])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_exact_vs_slow_reference(seed, fpr_limit):
    """Few distinct values (many ties): the slow loop over *every* threshold is exact."""
    rng = np.random.default_rng(seed)
    masks, maps = synthetic(rng, n=6, quantize=40)
    assert aupro(masks, maps, fpr_limit) == pytest.approx(slow_aupro(masks, maps, fpr_limit), abs=1e-10)


def test_aupro_continuous_vs_slow_reference():
    """Continuous scores: a slow curve on 400 thresholds agrees within 1e-3."""
    rng = np.random.default_rng(42)
    masks, maps = synthetic(rng, n=9)
    normal = np.sort(np.concatenate([a[m == 0] for m, a in zip(masks, maps)]))[::-1]
    thr = normal[np.linspace(0, 0.32 * normal.size, 400).astype(int)]  # dense over FPR 0..0.32
    ref = slow_aupro(masks, maps, 0.3, thresholds=thr)
    assert aupro(masks, maps) == pytest.approx(ref, abs=1e-3)
    assert 0.05 < ref < 0.95  # non-trivial case


def test_aupro_region_weighting():
    """Each region counts equally, whatever its size (not a pixel-weighted recall)."""
    m = np.zeros((20, 20), np.uint8)
    m[0:10, 0:10] = 1  # big region, fully detected
    m[15, 15] = 1  # one-pixel region, missed
    a = np.where(m > 0, 1.0, 0.0)
    a[15, 15] = -1.0
    assert aupro([m], [a]) == pytest.approx(0.5)


def test_aupro_perfect_and_inverted():
    rng = np.random.default_rng(1)
    masks, _ = synthetic(rng, n=6)
    perfect = [(m > 0).astype(np.float32) for m in masks]
    inverted = [1 - p for p in perfect]
    assert aupro(masks, perfect) == pytest.approx(1.0)
    assert aupro(masks, inverted) == pytest.approx(0.0, abs=1e-12)
    noisy_inv = [p + 0.1 * rng.random(p.shape) for p in inverted]
    assert aupro(masks, noisy_inv) < 0.01


def test_aupro_needs_regions():
    with pytest.raises(ValueError, match="defect region"):
        aupro([np.zeros((8, 8))], [np.ones((8, 8))])
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro([np.eye(8)], [np.eye(8)], fpr_limit=0)


# --------------------------------------------------------------------------- summarize
def test_summarize():
    rng = np.random.default_rng(3)
    masks, maps = synthetic(rng, n=9)
    labels = np.array([int(m.any()) for m in masks])
    scores = np.array([a.max() for a in maps])
    out = summarize(labels, scores, masks, maps)
    assert set(out) >= {"image_auroc", "pixel_auroc", "aupro", "f1_max", "n_images"}
    assert out["n_images"] == 9
    assert out["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert out["pixel_auroc"] == pytest.approx(pixel_auroc(masks, maps))
    assert out["aupro"] == pytest.approx(aupro(masks, maps))
    assert out["f1_max"] == pytest.approx(f1_max(labels, scores)[0])

    no_pix = summarize(labels, scores)
    assert no_pix["pixel_auroc"] is None and no_pix["aupro"] is None
    empty = summarize(labels, scores, [np.zeros_like(m) for m in masks], maps)
    assert empty["pixel_auroc"] is None and empty["aupro"] is None
    one_class = summarize([0, 0], [0.1, 0.2])
    assert one_class["image_auroc"] is None and one_class["f1_max"] is None


def test_chunked_paths_agree(monkeypatch):
    """Large inputs are processed in chunks (of whole tie groups); results must not change."""
    import edgead.core.metrics as metrics

    rng = np.random.default_rng(7)
    masks, maps = synthetic(rng, n=6, quantize=40)
    full = aupro(masks, maps), pixel_auroc(masks, maps), aupro(masks, maps, 0.9)
    monkeypatch.setattr(metrics, "_CHUNK", 7)
    assert (aupro(masks, maps), pixel_auroc(masks, maps), aupro(masks, maps, 0.9)) == pytest.approx(full, abs=1e-12)
