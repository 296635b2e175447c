import cv2
import numpy as np
import pytest

from edgead.tasks.image.postprocess import PostSpec, pool_score, process, to_original
from edgead.tasks.image.preprocess import ImageReadError, InputSpec, as_rgb, geometry_for, mask_to_input, preprocess, read_image


def test_gray_rgba_bgr_and_float_inputs_agree():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    spec = InputSpec(height=32, width=32)
    ref, _ = preprocess(rgb, spec)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    np.testing.assert_array_equal(preprocess(as_rgb(bgr, "BGR"), spec)[0], ref)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(preprocess(rgba, spec)[0], ref)
    np.testing.assert_allclose(preprocess(rgb / 255.0, spec)[0], ref, atol=1e-6)
    gray = rgb[:, :, 0]
    x, _ = preprocess(gray, spec)
    assert x.shape == (3, 32, 32) and np.allclose(x[0], x[1]) and np.allclose(x[1], x[2])


def test_bad_arrays_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        as_rgb(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_rgb(np.full((4, 4), 3.0))
    with pytest.raises(ValueError, match="dtype"):
        as_rgb(np.zeros((4, 4), np.int64))


def test_letterbox_keeps_aspect_and_pads_with_zero():
    img = np.full((100, 300, 3), 255, np.uint8)
    spec = InputSpec(height=64, width=64)
    x, g = preprocess(img, spec)
    assert (g.inner_h, g.inner_w) == (21, 64) and g.left == 0 and g.top == (64 - 21) // 2
    assert np.all(x[:, : g.top] == 0) and np.all(x[:, g.top + g.inner_h :] == 0)
    assert np.allclose(x[:, g.top : g.top + g.inner_h], 1.0)  # white -> (1 - .5) / .5
    stretch = geometry_for(100, 300, InputSpec(height=64, width=64, resize="stretch"))
    assert (stretch.inner_h, stretch.inner_w) == (64, 64)


def test_maps_come_back_at_original_size_without_padding():
    spec = InputSpec(height=64, width=64)
    x, g = preprocess(np.zeros((50, 100, 3), np.uint8), spec)
    raw = np.zeros((8, 8), np.float32)
    raw[0, :] = 100  # only the padded top row is hot
    region, score = process(raw, g, 64, 64, PostSpec(blur_sigma=0))
    assert region.shape == (g.inner_h, g.inner_w)
    assert score < 100  # padding never contributes its full value to the score
    assert to_original(region, g).shape == (50, 100)
    assert mask_to_input(np.ones((50, 100), np.uint8), g).shape == region.shape


def test_topk_pooling():
    region = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert pool_score(region, PostSpec(score="topk_mean", topk_fraction=0.05)) == pytest.approx(97.0)


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_read_image_returns_rgb(tmp_path):
    bgr = np.zeros((5, 5, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = read_image(tmp_path / "red.png")
    assert rgb[0, 0, 0] == 200 and rgb[0, 0, 2] == 0
