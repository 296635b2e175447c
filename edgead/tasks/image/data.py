"""Image data sets: MVTec-AD layout (with masks) and a plain `good/` + `bad/` folder layout."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgead.core.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
GOOD = "good"


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 normal, 1 anomalous
    defect: str = GOOD
    mask_path: Path | None = None


@dataclass
class ImageDataset:
    root: Path
    layout: str  # "mvtec" or "folder"
    train: list[Sample]
    test: list[Sample]

    def summary(self) -> dict:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "n_test_anomalous": sum(s.label for s in self.test),
            "defects": sorted({s.defect for s in self.test if s.label}),
        }


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _find_mask(gt_dir: Path, defect: str, stem: str) -> Path | None:
    folder = gt_dir / defect
    for name in (f"{stem}_mask", stem):
        for suffix in (".png", ".bmp", ".tif", ".tiff", ".jpg"):
            p = folder / f"{name}{suffix}"
            if p.is_file():
                return p
    return None


def open_dataset(root: str | Path, holdout_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """Index a data folder.

    - MVTec layout: `train/good/*`, `test/<good|defect>/*`, `ground_truth/<defect>/<stem>[_mask].png`.
    - Folder layout: `good/*` and optionally `bad/*` (no masks); a seeded `holdout_fraction` of
      `good/` joins `bad/` as the test split.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if (root / "train").is_dir():
        return _open_mvtec(root)
    if (root / GOOD).is_dir():
        return _open_folder(root, holdout_fraction, seed)
    raise DataError(
        f"{root}: expected either the MVTec layout (train/good/, test/<good|defect>/, optional "
        f"ground_truth/<defect>/) or a plain folder with good/ (and bad/) inside"
    )


def _require_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}")
    files = list_images(folder)
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _open_mvtec(root: Path) -> ImageDataset:
    train = [Sample(p, 0) for p in _require_images(root / "train" / GOOD)]
    test: list[Sample] = []
    test_dir, gt_dir = root / "test", root / "ground_truth"
    if test_dir.is_dir():
        for sub in sorted(d for d in test_dir.iterdir() if d.is_dir()):
            for p in list_images(sub):
                if sub.name == GOOD:
                    test.append(Sample(p, 0))
                else:
                    test.append(Sample(p, 1, sub.name, _find_mask(gt_dir, sub.name, p.stem)))
    return ImageDataset(root, "mvtec", train, test)


def _open_folder(root: Path, holdout_fraction: float, seed: int) -> ImageDataset:
    good = _require_images(root / GOOD)
    order = np.random.default_rng(seed).permutation(len(good))
    n_hold = int(round(len(good) * holdout_fraction)) if (root / "bad").is_dir() else 0
    hold = {int(i) for i in order[:n_hold]}
    train = [Sample(p, 0) for i, p in enumerate(good) if i not in hold]
    test = [Sample(p, 0) for i, p in enumerate(good) if i in hold]
    if (root / "bad").is_dir():
        test += [Sample(p, 1, "bad") for p in list_images(root / "bad")]
    return ImageDataset(root, "folder", train, test)


def read_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray:
    """Ground-truth mask as bool (H, W); all-False for normal images and when there is no mask file."""
    if sample.mask_path is None:
        return np.zeros(shape, bool)
    m = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise DataError(f"{sample.mask_path}: cannot read mask")
    if m.shape != shape:
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return m > 127
