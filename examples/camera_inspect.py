#!/usr/bin/env python3
"""Inspect parts live from a camera or a video file with an edgead bundle.

    python camera_inspect.py bundles/hazelnut --camera 0                  # overlay window; q or Esc quits
    python camera_inspect.py bundles/hazelnut --video line.mp4 --no-display --save shots/ --anomalies-only

Prints one line per frame (score, label, FPS; --json for JSON lines) and, at the end, a summary.
Needs numpy, OpenCV, one runtime and edgead (torch-free). A window needs an OpenCV with GUI
support (opencv-python); the headless wheel works with --no-display.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

from edgead.predictor import Predictor
from edgead.tasks.image.preprocess import as_rgb
from edgead.tasks.image.visualize import overlay

WINDOW = "edgead"


def open_source(a: argparse.Namespace) -> cv2.VideoCapture:
    if a.video is not None and not Path(a.video).is_file():
        raise ValueError(f"--video {a.video}: no such file")
    cap = cv2.VideoCapture(a.video if a.video is not None else a.camera)
    if not cap.isOpened():
        what = f"video {a.video}" if a.video is not None else f"camera {a.camera}"
        raise ValueError(f"could not open {what} (check the index / path, permissions, or another app using it)")
    if a.video is None and a.width and a.height:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, a.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, a.height)
    return cap


def show(image_bgr) -> bool:
    """Display a frame; False when the user quits (q / Esc)."""
    try:
        cv2.imshow(WINDOW, image_bgr)
        key = cv2.waitKey(1) & 0xFF
    except cv2.error:
        raise RuntimeError("this OpenCV cannot open windows (the headless wheel?): install "
                           "opencv-python, or run with --no-display") from None
    return key not in (ord("q"), 27)


def run(a: argparse.Namespace) -> int:
    pred = Predictor(a.bundle, runtime=a.runtime, precision=a.precision, threads=a.threads)
    cap = open_source(a)
    save = Path(a.save) if a.save else None
    if save:
        save.mkdir(parents=True, exist_ok=True)
    frames = anomalies = 0
    start = time.perf_counter()
    try:
        while a.max_frames is None or frames < a.max_frames:
            ok, frame = cap.read()
            if not ok:
                break  # end of the video, or the camera stopped
            t = time.perf_counter()
            res = pred.predict(frame, color_order="BGR")
            ms = (time.perf_counter() - t) * 1e3
            frames += 1
            anomalies += res.is_anomalous
            fps = frames / (time.perf_counter() - start)
            label = "ANOMALY" if res.is_anomalous else "ok"
            if a.json:
                print(json.dumps({"frame": frames - 1, **res.to_json(), "predict_ms": round(ms, 2), "fps": round(fps, 2)}), flush=True)
            else:
                print(f"frame {frames - 1:5d}  {label:7s}  score={res.score:.3f}  {ms:6.1f} ms  {fps:5.1f} FPS", flush=True)
            want_save = save is not None and (res.is_anomalous or not a.anomalies_only)
            if a.display or want_save:
                vis = overlay(as_rgb(frame, "BGR"), res.anomaly_map, res.mask, f"{label} {res.score:.2f}  {fps:.1f} FPS")
                if want_save and not cv2.imwrite(str(save / f"frame_{frames - 1:06d}.jpg"), vis):
                    raise OSError(f"could not write to {save}")
                if a.display and not show(vis):
                    break
    except KeyboardInterrupt:
        pass
    finally:
        cap.release()
        if a.display:
            try:
                cv2.destroyAllWindows()
            except cv2.error:  # no GUI support: nothing was shown
                pass
    elapsed = time.perf_counter() - start
    print(f"{frames} frames, {anomalies} anomalous, {frames / elapsed if elapsed else 0:.1f} FPS "
          f"({pred.runtime} {pred.precision})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="bundle folder from `edgead export`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, help="camera index (0 = the first)")
    src.add_argument("--video", help="video file instead of a camera")
    p.add_argument("--runtime", default="auto", help="onnxruntime, openvino, tflite or auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--width", type=int, help="camera capture width (with --height)")
    p.add_argument("--height", type=int, help="camera capture height")
    p.add_argument("--no-display", dest="display", action="store_false", help="no window (headless devices)")
    p.add_argument("--save", help="folder for overlay frames (JPEG)")
    p.add_argument("--anomalies-only", action="store_true", help="with --save: only anomalous frames")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--json", action="store_true", help="one JSON line per frame")
    a = p.parse_args(argv)
    try:
        return run(a)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"camera_inspect.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
