"""Heat-map overlays for a look (OpenCV only)."""
from __future__ import annotations

from pathlib import Path

from edgead.core.opencv import cv2
import numpy as np


HEAT_FLOOR = 0.4  # normalised map values up to here leave the image as it is (0.5 = the pixel threshold)
HEAT_FULL = 0.5  # ... and from here on the tint is at full strength


def overlay(image_rgb: np.ndarray, anomaly_map: np.ndarray, mask: np.ndarray | None = None,
            label: str | None = None, alpha: float = 0.6, floor: float = HEAT_FLOOR) -> np.ndarray:
    """BGR uint8 image: the normalised map (0.5 = threshold) as a JET tint over the image only
    where it rises above `floor`, fading in smoothly up to the threshold, so that the part stays
    visible elsewhere; the predicted mask outlined in white, and an optional caption."""
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    if anomaly_map.shape != bgr.shape[:2]:
        anomaly_map = cv2.resize(anomaly_map, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
    level = np.clip(anomaly_map, 0, 1)
    heat = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * tint_weight(level, floor))[..., None]
    out = np.rint(bgr * (1.0 - weight) + heat * weight).astype(np.uint8)
    if mask is not None and mask.any():
        m = mask.astype(np.uint8)
        if m.shape != bgr.shape[:2]:
            m = cv2.resize(m, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, bgr.shape[0] // 256))
    if label:
        scale = max(0.4, bgr.shape[1] / 640)
        cv2.putText(out, label, (5, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (5, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def tint_weight(level: np.ndarray, floor: float = HEAT_FLOOR) -> np.ndarray:
    """0 up to `floor`, 1 from HEAT_FULL on, a smoothstep between (no hard edge around a defect)."""
    if not 0.0 <= floor < HEAT_FULL:
        raise ValueError(f"the tint's floor must be in [0, {HEAT_FULL}), got {floor}")
    t = np.clip((np.asarray(level, np.float32) - floor) / (HEAT_FULL - floor), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def save_overlay(path: str | Path, image_rgb: np.ndarray, result) -> Path:
    """Write the overlay of a predictor Result as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    verdict = "ANOMALY" if result.is_anomalous else "ok"
    img = overlay(image_rgb, result.anomaly_map, result.mask, f"{verdict} {result.score:.2f}")
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")
    return path
