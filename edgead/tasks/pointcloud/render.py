"""Pictures of point clouds for people (OpenCV, no GUI): the scan seen along its least-variance
axis, coloured by height along it, with marked points (a defect, or the anomalous points of a
prediction) in red, and the marked region enlarged beside it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SIZE = 480


def _raster(uv: np.ndarray, height: np.ndarray, marked: np.ndarray, size: int, outline: bool = False) -> np.ndarray:
    """Points seen from above, coloured by `height`; `marked` points in red, or (outline) only the
    red outline of their region, so that the colours inside stay readable."""
    from edgead.core.opencv import cv2

    lo, hi = uv.min(0), uv.max(0)
    scale = (size - 1) / max(float((hi - lo).max()), 1e-12)
    px = np.clip(((uv - lo) * scale).round().astype(int), 0, size - 1)
    h = (height - np.percentile(height, 1)) / max(float(np.ptp(np.percentile(height, [1, 99]))), 1e-12)
    colours = cv2.applyColorMap(np.clip(h * 255, 0, 255).astype(np.uint8)[:, None], cv2.COLORMAP_VIRIDIS)[:, 0]
    img = np.full((size, size, 3), 255, np.uint8)
    order = np.argsort(height)  # nearer the viewer drawn last
    img[px[order, 1], px[order, 0]] = colours[order]
    img = cv2.erode(img, np.ones((2, 2), np.uint8)) if len(uv) < size * size / 8 else img  # thicker dots on white
    if outline and marked.sum() >= 3:
        cv2.polylines(img, [cv2.convexHull(px[marked].astype(np.int32))], True, (0, 0, 255), 1, cv2.LINE_AA)
    else:
        for u, v in px[marked]:
            cv2.circle(img, (int(u), int(v)), 1, (0, 0, 255), -1)
    return img


def _relief(uv: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Height above the quadratic surface fitted to these points: bulges and dents stand out
    from the part's own curvature."""
    u, v = uv[:, 0] - uv[:, 0].mean(), uv[:, 1] - uv[:, 1].mean()
    a = np.c_[u * u, u * v, v * v, u, v, np.ones(len(uv))]
    return height - a @ np.linalg.lstsq(a, height, rcond=None)[0]


def save_render(path: str | os.PathLike, cloud, marked: np.ndarray | None = None, title: str = "") -> None:
    """A PNG of `cloud` with `marked` (N,) points in red; beside it, the marked region enlarged and
    coloured by its relief, the region outlined."""
    from edgead.core.opencv import cv2

    valid = cloud.valid
    pts = cloud.points[valid].astype(np.float64)
    mark = np.zeros(len(pts), bool) if marked is None else np.asarray(marked)[valid]
    centred = pts - pts.mean(0)
    axes = np.linalg.svd(centred[:: max(1, len(pts) // 20000)], full_matrices=False)[2]
    uv, height = centred @ axes[:2].T, centred @ axes[2]
    panels = [_raster(uv, height, mark, SIZE)]
    if mark.any():
        centre, radius = uv[mark].mean(0), np.abs(uv[mark] - uv[mark].mean(0)).max() * 3 + 1e-9
        near = (np.abs(uv - centre) <= radius).all(1)
        panels.append(_raster(uv[near], _relief(uv[near], height[near]), mark[near], SIZE, outline=True))
    img = np.concatenate(panels, 1)
    if title:
        cv2.putText(img, title, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not write the PNG")
