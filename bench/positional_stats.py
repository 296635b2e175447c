"""Issue 17 lever study: compact per-location (positional) statistics of the shared patch
features, scored through edgead's own letterbox, post-processing and metrics.

Fits on `train/good` of each data set and evaluates its test split; features are computed
once per data set and every scorer is evaluated on them:
- full:  per-location full-covariance Gaussian on 100 random channels (the PaDiM-style reference)
- ppca-k: per-location probabilistic PCA (top-k eigenvectors + isotropic rest) on all channels
- stride 8 (the features' own grid) and stride 16 (2x2-averaged features)

usage: python bench/positional_stats.py [--data DIR ...] [--ranks 8 16 32] [--backbones lite0 ...]
       [--resize letterbox stretch] [--strides 8 16] [--json OUT]"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgead.core import metrics
from edgead.tasks.image.data import open_dataset, read_mask
from edgead.tasks.image.postprocess import PostSpec, process
from edgead.tasks.image.preprocess import InputSpec, mask_to_input, preprocess, read_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"


def features(paths, spec, feats, fit: bool):
    from edgead.models.common import batched, fitted_features

    xs, geoms = [], []
    for p in paths:
        x, g = preprocess(read_image(p), spec)
        xs.append(x)
        geoms.append(g)
    x = np.stack(xs)
    f = fitted_features(feats, x) if fit else batched(feats, x)
    return f, geoms


def gaussian_fit(f: torch.Tensor, rank: int | None, eps: float = 0.01):
    """Per location: mean, and either the full precision (rank None) or the top-`rank`
    eigenvectors with their eigenvalues and the mean of the rest (PPCA)."""
    n, c, h, w = f.shape
    x = f.permute(2, 3, 0, 1).reshape(h * w, n, c).double()
    mu = x.mean(1, keepdim=True)
    z = x - mu
    cov = z.transpose(1, 2) @ z / (n - 1) + eps * torch.eye(c, dtype=torch.float64)
    if rank is None:
        return {"mu": mu, "prec": torch.linalg.inv(cov), "hw": (h, w)}
    vals, vecs = torch.linalg.eigh(cov)  # ascending
    top, rest = vals[:, -rank:], vals[:, :-rank]
    return {"mu": mu, "U": vecs[:, :, -rank:], "lam": top, "sigma2": rest.mean(1, keepdim=True), "hw": (h, w)}


def blocks(f: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """(n, c, H, W) stride-8 features -> (H/2 * W/2 blocks, 4n, c), each centred on its own
    location's mean when given: the samples of one 2 x 2 block's statistics."""
    n, c, h, w = f.shape
    z = f - mean if mean is not None else f
    return z.reshape(n, c, h // 2, 2, w // 2, 2).permute(2, 4, 0, 3, 5, 1).reshape(h * w // 4, 4 * n, c)


def block_fit(f: torch.Tensor, rank: int, eps: float = 0.01):
    """Per stride-8 location its mean; per 2 x 2 block one PPCA of the centred features."""
    mean = f.double().mean(0, keepdim=True)
    z = blocks(f.double(), mean)
    cov = z.transpose(1, 2) @ z / (z.shape[1] - 1) + eps * torch.eye(f.shape[1], dtype=torch.float64)
    vals, vecs = torch.linalg.eigh(cov)
    return {"mean8": mean, "U": vecs[:, :, -rank:], "lam": vals[:, -rank:], "sigma2": vals[:, :-rank].mean(1, keepdim=True),
            "hw": f.shape[-2:]}


def block_score(model, f: torch.Tensor) -> np.ndarray:
    n, c, h, w = f.shape
    z = blocks(f.double(), model["mean8"])
    p = z @ model["U"]
    d2 = (p ** 2 / model["lam"][:, None, :]).sum(-1) + ((z ** 2).sum(-1) - (p ** 2).sum(-1)) / model["sigma2"]
    d = d2.clamp_min(0).sqrt().reshape(h // 2, w // 2, n, 2, 2).permute(2, 0, 3, 1, 4).reshape(n, h, w)
    return d.float().numpy()


def gaussian_score(model, f: torch.Tensor) -> np.ndarray:
    n, c, h, w = f.shape
    z = f.permute(2, 3, 0, 1).reshape(h * w, n, c).double() - model["mu"]
    if "prec" in model:
        d2 = torch.einsum("lnc,lcd,lnd->ln", z, model["prec"], z)
    else:
        p = z @ model["U"]  # (L, n, k)
        d2 = (p ** 2 / model["lam"][:, None, :]).sum(-1) + ((z ** 2).sum(-1) - (p ** 2).sum(-1)) / model["sigma2"]
    return d2.clamp_min(0).sqrt().T.reshape(n, h, w).float().numpy()


def size_mb(model) -> float:
    return sum(v.numel() for k, v in model.items() if k != "hw") * 4 / 1e6


def evaluate(maps: np.ndarray, geoms, samples, spec, post) -> dict:
    labels, scores, regions, masks = [], [], [], []
    for m, g, s in zip(maps, geoms, samples):
        region, score = process(m, g, spec.height, spec.width, post)
        labels.append(s.label)
        scores.append(score)
        if s.label == 0 or s.mask_path is not None:
            regions.append(region)
            masks.append(mask_to_input(read_mask(s, (g.orig_h, g.orig_w)), g))
    out = metrics.summarize(np.array(labels), np.array(scores), masks, regions)
    return {k: out[k] for k in ("image_auroc", "pixel_auroc", "aupro")}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="*", default=[str(SHARED / "hazelnut_toy"), str(SHARED / "magnetic_tile")])
    p.add_argument("--ranks", nargs="*", type=int, default=[8, 16, 32])
    p.add_argument("--json", default=None)
    p.add_argument("--backbones", nargs="*", default=["lite0"], help="lite0, lite1, lite2")
    p.add_argument("--scorers", nargs="*", default=["full", "ppca"], help="full, ppca, block (stride-8 means, one PPCA per 2 x 2 block)")
    p.add_argument("--resize", nargs="*", default=["letterbox"], help="letterbox, stretch")
    p.add_argument("--strides", nargs="*", type=int, default=[8, 16])
    a = p.parse_args()
    from edgead.models.common import PatchFeatures

    torch.manual_seed(0)
    post = PostSpec()
    rows = []
    for root, backbone, resize in [(r, b, z) for r in a.data for b in a.backbones for z in a.resize]:
        spec = InputSpec(resize=resize)
        ds = open_dataset(root)
        feats = PatchFeatures(pretrained=True, backbone=backbone).eval()
        t = time.time()
        train, _ = features([s.path for s in ds.train], spec, feats, fit=True)
        test, geoms = features([s.path for s in ds.test], spec, feats, fit=False)
        print(f"{Path(root).name} ({backbone}, {resize}): features in {time.time() - t:.0f} s, train {tuple(train.shape)}", flush=True)
        channels = torch.randperm(train.shape[1], generator=torch.Generator().manual_seed(0))[:100]
        variants = [("full, 100 random channels", 8, None, channels)] if "full" in a.scorers else []
        variants += [(f"ppca-{k}", s, k, None) for s in a.strides for k in a.ranks] if "ppca" in a.scorers else []
        variants += [(f"block-ppca-{k}", 8, k, None) for k in a.ranks] if "block" in a.scorers else []
        for name, stride, rank, chans in variants:
            tr, te = train, test
            if chans is not None:
                tr, te = tr[:, chans], te[:, chans]
            if stride == 16:
                tr, te = F.avg_pool2d(tr, 2), F.avg_pool2d(te, 2)
            t = time.time()
            if name.startswith("block"):
                model = block_fit(tr, rank)
                maps = block_score(model, te)
            else:
                model = gaussian_fit(tr, rank)
                maps = gaussian_score(model, te)
            row = {"data": Path(root).name, "backbone": backbone, "resize": resize, "scorer": name, "stride": stride, "mb": round(size_mb(model), 1),
                   **evaluate(maps, geoms, ds.test, spec, post), "seconds": round(time.time() - t, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
