"""OpenCV for the image path. A device install does not pull it in (`edgead[opencv]` does): a
Jetson's JetPack build or a camera app's `opencv-python` (with GUI) must not get a second,
clashing copy. Any cv2 >= 4.8 works; without one, this says how to get it."""
from __future__ import annotations

from edgead.core.errors import UsageError


class MissingOpenCV(UsageError, ImportError):
    """cv2 cannot be imported."""


try:
    import cv2  # noqa: F401 - re-exported
except ImportError as e:
    raise MissingOpenCV(
        f"edgead needs OpenCV (cv2) for images and masks, and it cannot be imported ({e}). Install it with "
        "pip install 'edgead[opencv]' (opencv-python-headless), or use the OpenCV the device already has "
        "(JetPack's, opencv-python): any version from 4.8 works") from e
