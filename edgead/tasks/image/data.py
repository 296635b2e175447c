"""Image data sets: MVTec-AD layout (with masks) and a plain `good/` + `bad/` folder layout."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from edgead.core.opencv import cv2
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
    product: str = ""  # in a product set: the product folder, relative to the set's root


@dataclass
class ImageDataset:
    root: Path
    layout: str  # "mvtec", "folder", or "products" (several product folders under root)
    train: list[Sample]
    test: list[Sample]
    products: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        out = {
            "root": str(self.root),
            "layout": self.layout,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "n_test_anomalous": sum(s.label for s in self.test),
            "defects": sorted({s.defect for s in self.test if s.label}),
        }
        return {**out, "products": list(self.products)} if self.products else out


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


def open_dataset(root: str | Path, holdout_fraction: float = 0.2, seed: int = 0,
                 products: Sequence[str] | None = None) -> ImageDataset:
    """Index a data folder.

    - MVTec layout: `train/good/*`, `test/<good|defect>/*`, `ground_truth/<defect>/<stem>[_mask].png`.
    - Folder layout: `good/*` and optionally `bad/*` (no masks); a seeded `holdout_fraction` of
      `good/` joins `bad/` as the test split.
    - Product set: a folder of product folders, each in one of the layouts above (or only the
      `products` named, as relative paths); each sample knows its product.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if products:
        return _open_products(root, list(products), holdout_fraction, seed)
    if _is_product(root):
        return _open_mvtec(root) if (root / "train").is_dir() else _open_folder(root, holdout_fraction, seed)
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and _is_product(d))
    if len(found) == 1:  # a folder holding one product folder is that product
        return open_dataset(root / found[0], holdout_fraction, seed)
    if found:
        return _open_products(root, found, holdout_fraction, seed)
    raise DataError(
        f"{root}: expected the MVTec layout (train/good/, test/<good|defect>/, optional "
        f"ground_truth/<defect>/), a plain folder with good/ (and bad/) inside, or a folder of such product folders"
    )


def open_data(folders: str | Path | Sequence[str | Path], seed: int = 0) -> ImageDataset:
    """One data folder, or several product folders (`edgead train --data A --data B`) as one
    product set rooted at their parent: the products are named by their folders, so they must be
    distinct sibling folders."""
    if isinstance(folders, (str, Path)) or len(folders) == 1:
        return open_dataset(folders if isinstance(folders, (str, Path)) else folders[0], seed=seed)
    if not folders:
        raise DataError("no data folder given")
    paths = [Path(os.path.abspath(f)) for f in folders]
    for p in paths:
        if not p.is_dir():
            raise DataError(f"data folder {p} does not exist")
    parents = {p.parent for p in paths}
    names = [p.name for p in paths]
    if len(parents) > 1 or len(set(names)) < len(names):
        raise DataError(f"several --data folders must be distinct product folders side by side in one folder (products "
                        f"are named by their folders); got {', '.join(map(str, folders))}: move or link them into one folder")
    return open_dataset(parents.pop(), seed=seed, products=names)


def _is_product(folder: Path) -> bool:
    return (folder / "train").is_dir() or (folder / GOOD).is_dir()


def _open_products(root: Path, names: list[str], holdout_fraction: float, seed: int) -> ImageDataset:
    train: list[Sample] = []
    test: list[Sample] = []
    for name in names:
        folder = root / name
        if not _is_product(folder):
            raise DataError(f"{folder}: not a product folder (expected train/good/ or good/ inside)")
        ds = open_dataset(folder, holdout_fraction, seed)
        train += [replace(s, product=name) for s in ds.train]
        test += [replace(s, product=name) for s in ds.test]
    return ImageDataset(root, "products", train, test, names)


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
