"""Image preprocessing in numpy + OpenCV: the one function every path uses
(training, evaluation, calibration, the predictor), so all see identical input."""
from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path

def _pixel_limit(default: int = 100_000_000) -> int:
    text = os.environ.get("EDGEAD_MAX_IMAGE_PIXELS", "")
    return int(text) if text.isdigit() and int(text) > 0 else default


MAX_IMAGE_PIXELS = _pixel_limit()  # EDGEAD_MAX_IMAGE_PIXELS; also OpenCV's limit unless the host set its own
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))  # a second guard, for formats
# whose header `imagesize` cannot read; OpenCV reads it when it first decodes

from edgead.core.opencv import cv2  # noqa: E402 - after the limit above
import numpy as np  # noqa: E402

from edgead.core.errors import DataError, UsageError  # noqa: E402


class ImageReadError(DataError):
    """An image file could not be read or decoded."""


@dataclass(frozen=True)
class InputSpec:
    """What the network expects. Stored in run configs and bundle manifests."""

    height: int = 256
    width: int = 256
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # of RGB values scaled to [0, 1]
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    color_order: str = "RGB"  # channel order fed to the network
    resize: str = "letterbox"  # "letterbox" keeps aspect ratio and pads; "stretch" squashes
    interpolation: str = "area"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "InputSpec":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        spec = cls(**d)
        if spec.resize not in ("letterbox", "stretch"):
            raise DataError(f"input.resize must be 'letterbox' or 'stretch', got {spec.resize!r}")
        return spec


@dataclass(frozen=True)
class Geometry:
    """Where the original image lies inside the network input (to map results back)."""

    orig_h: int
    orig_w: int
    top: int
    left: int
    inner_h: int
    inner_w: int


_INTERP = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


def check_pixels(encoded: bytes, where: str) -> None:
    """Refuse an image whose header declares more than MAX_IMAGE_PIXELS pixels, before decoding
    it: a few hundred KB of PNG can declare gigabytes of pixels (a decompression bomb)."""
    import imagesize

    try:
        w, h = imagesize.get(io.BytesIO(encoded))
    except Exception:  # a header it cannot parse: OpenCV's own limit still applies
        return
    if w > 0 and h > 0 and w * h > MAX_IMAGE_PIXELS:
        raise ImageReadError(f"{where}: the image declares {w}x{h} pixels ({w * h / 1e6:.0f} MP), more than the "
                             f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP limit; set EDGEAD_MAX_IMAGE_PIXELS (or "
                             "edgead.tasks.image.preprocess.MAX_IMAGE_PIXELS) to allow larger images")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); raise ImageReadError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read the file ({e.strerror or e})") from e
    check_pixels(raw, str(path))
    data = np.frombuffer(raw, dtype=np.uint8)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as e:  # OpenCV's own limits (e.g. OPENCV_IO_MAX_IMAGE_PIXELS) raise
        raise ImageReadError(f"{path}: cannot decode image ({str(e).strip().splitlines()[-1]})") from e
    if img is None:
        raise ImageReadError(f"{path}: cannot decode image (corrupt, empty or unsupported format)")
    return as_rgb(img, color_order="BGR")


def as_rgb(image: np.ndarray, color_order: str = "RGB") -> np.ndarray:
    """Any gray / RGB / BGR / RGBA / BGRA array (uint8, uint16 or float in [0,1]) -> RGB uint8 (H, W, 3)."""
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype.kind == "f":
        if img.size and not np.isfinite(img).all():
            bad = int((~np.isfinite(img)).sum())
            raise DataError(f"the image array holds {bad} NaN or infinite values (a failed capture or conversion?); "
                            "pass a finite image")
        if img.size and (img.min() < 0 or img.max() > 1.0 + 1e-6):
            raise DataError("float images must hold values in [0, 1]; pass uint8 for 0..255 data")
        img = (img * 255.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(f"unsupported image dtype {img.dtype}; pass uint8, uint16 or float in [0, 1]")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise DataError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    if min(img.shape[:2]) < 2:
        raise DataError(f"image is too small: {img.shape[:2]}")
    order = color_order.upper()
    if order not in ("RGB", "BGR"):
        raise UsageError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if order == "BGR":
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def geometry_for(h: int, w: int, spec: InputSpec) -> Geometry:
    if spec.resize == "stretch":
        return Geometry(h, w, 0, 0, spec.height, spec.width)
    scale = min(spec.height / h, spec.width / w)
    ih, iw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (spec.height - ih) // 2, (spec.width - iw) // 2
    return Geometry(h, w, top, left, ih, iw)


def preprocess(image_rgb: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """RGB uint8 (H, W, 3) -> normalised float32 (3, spec.height, spec.width) and its geometry.

    Letterbox pads with the mean colour (0 after normalisation)."""
    img = as_rgb(image_rgb)
    h, w = img.shape[:2]
    g = geometry_for(h, w, spec)
    resized = cv2.resize(img, (g.inner_w, g.inner_h), interpolation=_INTERP[spec.interpolation])
    x = (resized.astype(np.float32) / 255.0 - np.float32(spec.mean)) / np.float32(spec.std)
    out = np.zeros((spec.height, spec.width, 3), np.float32)
    out[g.top : g.top + g.inner_h, g.left : g.left + g.inner_w] = x
    if spec.color_order.upper() == "BGR":
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out.transpose(2, 0, 1)), g


def preprocess_batch(images: list[np.ndarray], spec: InputSpec) -> tuple[np.ndarray, list[Geometry]]:
    pairs = [preprocess(im, spec) for im in images]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


def mask_to_input(mask: np.ndarray, g: Geometry) -> np.ndarray:
    """A ground-truth mask (orig resolution) -> bool mask on the valid region at network resolution."""
    m = cv2.resize((mask > 0).astype(np.uint8), (g.inner_w, g.inner_h), interpolation=cv2.INTER_NEAREST)
    return m > 0
