"""Window-KNN: a signal window's distance to the nearest normal window, the classic detector
that beats learned ones on beat-to-beat ECG and on short spikes (BENCHMARKS.md, issue 24).

The bank holds normalised training windows (as the network reads them): those at the hop's
offsets plus as many at random offsets, so that a test window finds a normal one in phase with
it; a window's score is its Euclidean distance to the nearest one, over the bank's typical
distance, and every point of the window gets it (the predictor averages the windows covering a
point). The search is one matrix product and a minimum inside the exported graph, as
PatchCore-lite's is for images. No training loop: fitting fills the bank."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .common import count_flops

BANK_FLOATS = 4_000_000  # 16 MB of float32 at most, however long the windows


@dataclass
class WindowKNNConfig:
    channels: int = 1
    length: int = 256  # window length in samples
    max_bank: int = 8192  # windows in the bank at most (fewer for long windows: BANK_FLOATS)
    bank_size: int = 0  # set by fit


class WindowKNN(nn.Module):
    input_name = "signal"
    outputs = ("point_score", "window_score")

    def __init__(self, config: WindowKNNConfig | None = None, pretrained: bool = False):  # nothing pretrained
        super().__init__()
        c = self.config = config or WindowKNNConfig()
        n = max(1, c.bank_size)
        self.register_buffer("bank", torch.zeros(n, c.channels * c.length))
        self.register_buffer("bank_sq", torch.zeros(n))
        self.register_buffer("scale", torch.ones(1))

    def set_bank(self, windows: torch.Tensor) -> None:
        flat = windows.reshape(len(windows), -1).float().contiguous()
        self.bank, self.bank_sq = flat, (flat * flat).sum(1)
        self.config.bank_size = len(flat)

    def distances(self, signal: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B,): Euclidean distance to the nearest bank window."""
        f = signal.reshape(signal.shape[0], -1)
        d2 = (f * f).sum(1, keepdim=True) - 2 * f @ self.bank.T + self.bank_sq
        # sqrt(d^2 + 1) as in PatchCore-lite: no infinite slope at 0 for INT8 and rounding
        return (d2.amin(1).clamp_min(0) + 1).sqrt()

    def forward(self, signal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.distances(signal) / self.scale
        return window[:, None].expand(-1, self.config.length), window


def config_for(channels: int, length: int) -> WindowKNNConfig:
    cap = min(WindowKNNConfig.max_bank, max(1, BANK_FLOATS // (channels * length)))
    return WindowKNNConfig(channels=channels, length=length, max_bank=cap)


def fit(model: WindowKNN, sample_batch: Callable[[np.random.Generator, int], np.ndarray],
        calibration: np.ndarray, seed: int = 0) -> dict:
    """Fill the bank with the normalised fit windows `calibration` (N, C, L) and windows drawn by
    `sample_batch(rng, n)` at random offsets (fixed-length samples have none: their draws are
    repeats, dropped), at most `max_bank` in all; the scale is the typical distance of a fit
    window to its nearest other bank window."""
    cfg = model.config
    rng = np.random.default_rng(seed)
    calib = np.ascontiguousarray(calibration, np.float32)
    if len(calib) > cfg.max_bank:
        calib = calib[np.sort(rng.choice(len(calib), cfg.max_bank, replace=False))]
    extra = sample_batch(rng, cfg.max_bank - len(calib)) if len(calib) < cfg.max_bank else calib[:0]
    bank = np.unique(np.concatenate([calib, np.asarray(extra, np.float32)]).reshape(-1, cfg.channels * cfg.length), axis=0)
    model.set_bank(torch.from_numpy(bank))
    with torch.no_grad():
        nearest = torch.cat([_nearest_other(model, torch.from_numpy(calib[i:i + 256])) for i in range(0, len(calib), 256)])
    model.scale.fill_(float(nearest.mean().clamp_min(1e-6)))
    return {"bank_size": int(len(bank)), "scale": float(model.scale), "bank_mb": round(bank.nbytes / 1e6, 2)}


def _nearest_other(model: WindowKNN, windows: torch.Tensor) -> torch.Tensor:
    """sqrt(d^2 + 1) to the nearest bank window other than the window itself (which is in the bank)."""
    f = windows.reshape(len(windows), -1)
    d2 = ((f * f).sum(1, keepdim=True) - 2 * f @ model.bank.T + model.bank_sq).clamp_min(0)
    d2 = torch.where(d2 <= 1e-6 * (f * f).sum(1, keepdim=True).clamp_min(1e-12), torch.inf, d2)
    return (d2.amin(1).nan_to_num(posinf=0.0) + 1).sqrt()


def complexity(model: WindowKNN) -> dict:
    c = model.config
    x = torch.zeros(1, c.channels, c.length)
    return {"params": 0, "flops_per_window": count_flops(model, x), "bank_entries": c.bank_size,
            "bank_mb": round(model.bank.numel() * 4 / 1e6, 2)}


Config = WindowKNNConfig
Model = WindowKNN
