import cv2
import numpy as np
import pytest

from edgead.tasks.image.data import DataError, open_dataset, read_mask


def _img(path, shape=(20, 30), gray=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(0).integers(0, 255, shape if gray else (*shape, 3), dtype=np.uint8)
    cv2.imwrite(str(path), a)


def test_mvtec_layout_masks_with_and_without_suffix(tmp_path):
    for i in range(3):
        _img(tmp_path / "train/good" / f"{i}.png")
    _img(tmp_path / "test/good/a.png")
    _img(tmp_path / "test/crack/b.png", gray=True)
    _img(tmp_path / "test/crack/c.png", (40, 10))
    _img(tmp_path / "test/hole/d.png")
    m = np.zeros((20, 30), np.uint8)
    m[5:9, 5:9] = 255
    (tmp_path / "ground_truth/crack").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "ground_truth/crack/b_mask.png"), m)
    cv2.imwrite(str(tmp_path / "ground_truth/crack/c.png"), m)
    ds = open_dataset(tmp_path)
    assert ds.layout == "mvtec" and len(ds.train) == 3 and len(ds.test) == 4
    by = {s.path.name: s for s in ds.test}
    assert by["b.png"].mask_path.name == "b_mask.png"
    assert by["c.png"].mask_path.name == "c.png"
    assert by["d.png"].label == 1 and by["d.png"].mask_path is None
    assert read_mask(by["b.png"], (20, 30)).sum() == 16
    assert read_mask(by["c.png"], (40, 10)).shape == (40, 10)  # resized to the image
    assert not read_mask(by["a.png"], (20, 30)).any()


def test_folder_layout_holds_out_good_images(tmp_path):
    for i in range(10):
        _img(tmp_path / "good" / f"{i}.jpg")
    for i in range(2):
        _img(tmp_path / "bad" / f"{i}.jpg")
    ds = open_dataset(tmp_path, holdout_fraction=0.2)
    assert ds.layout == "folder" and len(ds.train) == 8
    assert sum(s.label for s in ds.test) == 2 and len(ds.test) == 4
    assert not {s.path for s in ds.train} & {s.path for s in ds.test}


def test_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="expected the MVTec layout .*, or a folder of such product folders"):
        open_dataset(tmp_path)
    (tmp_path / "train/good").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        open_dataset(tmp_path)
