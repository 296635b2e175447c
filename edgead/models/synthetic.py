"""Synthetic anomalies made from the normal training images themselves (no external texture set
exists offline): CutPaste (a patch of a normal image of the same product, colour-jittered, pasted
elsewhere) and Perlin-noise masks filled with another training image, flipped and jittered.
Both work on preprocessed float images (N, 3, H, W); the normalisation is per-channel affine, so
pasting and blending there equal pasting and blending in pixel space."""
from __future__ import annotations

import numpy as np

from edgead.core.perlin import perlin

AREA = (0.01, 0.12)  # fraction of the image a synthetic defect covers


def perlin_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A blobby binary mask: two octaves of Perlin noise above the quantile that leaves a random
    area in AREA."""
    cells = int(rng.integers(2, 7))
    noise = perlin(h, w, cells, rng) + 0.5 * perlin(h, w, 2 * cells, rng)
    return noise > np.quantile(noise, 1 - rng.uniform(*AREA))


def rect(h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(y, x, height, width) of a rectangle of random area in AREA and aspect in [0.3, 3.3]."""
    area = rng.uniform(*AREA) * h * w
    aspect = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
    ph = int(np.clip(np.sqrt(area * aspect), 2, h - 1))
    pw = int(np.clip(area / ph, 2, w - 1))
    return int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1)), ph, pw


def jitter(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-channel gain and offset (in standardised units) so that a pasted patch differs."""
    gain = rng.uniform(0.6, 1.4, (patch.shape[0], 1, 1))
    return (patch * gain + rng.uniform(-0.6, 0.6, (patch.shape[0], 1, 1))).astype(np.float32)


def cutpaste(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A jittered rectangle of `donor` (the same product) pasted at a random place of `image`."""
    _, h, w = image.shape
    y, x, ph, pw = rect(h, w, rng)
    sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    out, mask = image.copy(), np.zeros((h, w), bool)
    out[:, y : y + ph, x : x + pw] = jitter(donor[:, sy : sy + ph, sx : sx + pw], rng)
    mask[y : y + ph, x : x + pw] = True
    return out, mask


def perlin_paste(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`donor` (any training image), flipped and jittered, blended into a Perlin-noise region."""
    _, h, w = image.shape
    mask = perlin_mask(h, w, rng)
    texture = jitter(donor[:, ::-1, ::-1] if rng.random() < 0.5 else donor[:, :, ::-1], rng)
    opacity = rng.uniform(0.5, 1.0)
    out = np.where(mask[None], (1 - opacity) * image + opacity * texture, image).astype(np.float32)
    return out, mask


def synthesize(images: np.ndarray, groups: np.ndarray, per_product: int, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`per_product` anomalous images of each product (half CutPaste, half Perlin): (images
    (M, 3, H, W), masks (M, H, W) bool, source index (M,) of the normal image each was made from)."""
    rng = np.random.default_rng(seed)
    out, masks, sources = [], [], []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        for k in range(per_product):
            i = int(members[k % len(members)])
            if k % 2 == 0:
                x, m = cutpaste(images[i], images[int(rng.choice(members))], rng)
            else:
                x, m = perlin_paste(images[i], images[int(rng.integers(0, len(images)))], rng)
            out.append(x)
            masks.append(m)
            sources.append(i)
    return np.stack(out), np.stack(masks), np.array(sources)
