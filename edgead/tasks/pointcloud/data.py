"""Point-cloud data sets in the MVTec layout: `train/good/` normal scans, `test/<good|defect>/`
scans, and per-point ground truth `ground_truth/<defect>/<stem>.npy` (a bool array with one entry
per point of the scan, in the scan's order; organised scans count their invalid pixels too).
MVTec 3D-AD's own layout is read too: scans in `<split>/<kind>/xyz/*.tiff`, masks in
`test/<defect>/gt/<stem>.png` (one pixel per point of the organised scan)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgead.core.errors import DataError
from edgead.core.fingerprint import fingerprint
from edgead.core.output_names import named_inputs
from edgead.tasks.pointcloud.io import DEPTH_PNG, SUFFIXES, is_scan

GOOD = "good"
MARKER = "SYNTHETIC.json"  # written by `edgead synth3d`: the set's anomalies are synthetic
NOT_SCANS = ("ground_truth", "gt", "renders")  # masks (edgead, MVTec 3D-AD) and synth3d's pictures


@dataclass(frozen=True)
class CloudSample:
    path: Path
    label: int  # 0 normal, 1 anomalous
    kind: str  # "good" or the defect folder's name
    mask_path: Path | None = None


@dataclass
class CloudDataset:
    root: Path
    train: list[CloudSample]
    test: list[CloudSample]


def scans(folder: Path) -> list[Path]:
    """The scans of one class folder (MVTec 3D-AD keeps them in its xyz/ subfolder)."""
    folder = folder / "xyz" if (folder / "xyz").is_dir() else folder
    return sorted(p for p in folder.iterdir() if p.is_file() and is_scan(p)) if folder.is_dir() else []


def scan_files(paths: list[str]) -> list[tuple[Path, Path]]:
    """Scan files of `paths` (a file given is read whatever it is; in folders, scans outside the
    folders of masks and pictures, PNGs only as depth images with intrinsics), with unique
    output names."""
    given = {Path(p) for p in paths}
    return [(f, rel) for f, rel in named_inputs(paths, SUFFIXES + (DEPTH_PNG,), skip=NOT_SCANS)
            if f in given or is_scan(f)]


def _mask_of(root: Path, folder: Path, scan: Path) -> Path | None:
    for mask in (root / "ground_truth" / folder.name / (scan.stem + ".npy"), folder / "gt" / (scan.stem + ".png")):
        if mask.is_file():
            return mask
    return None


def open_clouds(root: str | Path) -> CloudDataset:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    train = [CloudSample(p, 0, GOOD) for p in scans(root / "train" / GOOD)]
    if not train and not (root / "test").is_dir():
        raise DataError(f"{root}: expected train/good/ with normal scans ({', '.join(SUFFIXES)}) and optionally "
                        "test/<good|defect>/ with ground_truth/<defect>/<stem>.npy point masks (MVTec layout); "
                        "`edgead synth3d` writes one from normal scans")
    test = []
    folders = sorted(p for p in (root / "test").iterdir() if p.is_dir()) if (root / "test").is_dir() else []
    for folder in folders:
        for p in scans(folder):
            if folder.name == GOOD:
                test.append(CloudSample(p, 0, GOOD))
            else:
                test.append(CloudSample(p, 1, folder.name, _mask_of(root, folder, p)))
    return CloudDataset(root, train, test)


def read_point_mask(sample: CloudSample, n_points: int) -> np.ndarray:
    """(n_points,) bool ground truth: all False for a normal scan."""
    if sample.mask_path is None:
        return np.zeros(n_points, bool)
    if sample.mask_path.suffix.lower() == ".png":  # MVTec 3D-AD: the organised scan's pixels, row by row
        from edgead.core.opencv import cv2

        img = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DataError(f"{sample.mask_path}: not a readable PNG mask")
        m = (img > 0).ravel()
    else:
        try:
            m = np.load(sample.mask_path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{sample.mask_path}: not a readable .npy point mask ({e})") from e
    if m.shape != (n_points,):
        raise DataError(f"{sample.mask_path}: {m.shape} mask entries for a scan of {n_points} points; it must have "
                        "one entry per point, in the scan's order")
    return m.astype(bool)


def recorded_scans(run, what: str) -> tuple[Path, dict[str, list[Path]]]:
    """The run's training scans ({"fit": [...], "holdout": [...]}) from its data folder; DataError
    when the folder is gone or its scans changed since training (their fingerprint differs)."""
    from edgead.core.records import train_of

    train = train_of(run)
    root = Path(train["data"]["source"])
    split = train["split"]
    rels = split["fit"] + split["holdout"]
    if not root.is_dir():
        raise DataError(f"the run's data folder {root} is not there any more, which {what} needs; restore it or "
                        "pass the scans explicitly (see --help)")
    if split.get("fingerprint") and fingerprint(root, rels) != split["fingerprint"]:
        raise DataError(f"{root} changed since training (its scans differ from the ones the run recorded), so {what} "
                        "cannot use them; restore the data, retrain, or pass the scans explicitly")
    return root, {k: [root / r for r in split[k]] for k in ("fit", "holdout")}
