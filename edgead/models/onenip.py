"""OneNIP-lite: one normal image prompt per product guides the reconstruction.

UniAD-lite's encoder reads the test image's stride-16 feature tokens. The decoder's stream starts
from the encoded tokens of one normal **prompt** image of the same product and rebuilds the test
image's features: each layer reads the test image (neighbour-masked, so a token cannot copy
itself) and then the prompt (unmasked: the normal look of the very same place). Trained on
normal images with feature jitter and on synthetic anomalies (models.synthetic) whose clean
features are the target, it learns to restore defects from the prompt. A small supervised
refiner turns the per-channel reconstruction error into a defect probability; the map adds it
to the normalised reconstruction error.

The prompts are graph constants, encoded at fit time (one per product, from the normal image
nearest its product's mean), and the decoder runs for every product at once: the output
`anomaly_map` has one channel per product, and the predictor takes the product's channel. The
choice stays outside the graph because a one-hot choice inside it broke TFLite INT8
(../shared/METHODS.md); a second graph input would make every runtime, calibration set and
parity check carry two inputs for a few kilobytes of constants."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.progress import progress_bar, show_running_mean
from . import ddp
from .common import PatchFeatures, batched, optimizer_step
from .synthetic import synthesize
from . import uniad
from .uniad import (Attention, EncoderLayer, UniADConfig, check_grid, check_settings, feature_tokens, ffn, fitted_tokens,
                    head_optimizer, jitter_noise, neighbour_bias)

UNIFIED = True  # trains on several products at once (edgead train --data A --data B)
PROMPTED = True  # anomaly_map has one channel per product: predictions name the product
RESIZE = "stretch"  # the prompt and the test image must show the part at the same place


@dataclass
class OneNIPConfig(UniADConfig):
    """UniAD-lite's settings (the decoder may not read the test image's `neighbour` x
    `neighbour` tokens around a token; jitter applies to normal samples), and:"""

    refiner: int = 64  # channels of the supervised refiner
    refiner_weight: float = 100.0  # map = error / its normal level + refiner_weight * P(defect) (bench/onenip_fusion.py)
    synthetic: float = 0.5  # fraction of each training batch that carries a synthetic anomaly
    synthetic_per_product: int = 256  # synthetic anomalous images made of each product's normals
    prompts: int = 1  # set by fit: one per product, in the order of the run's product list


class PromptDecoderLayer(nn.Module):
    """The stream reads the test image (neighbour-masked), then the prompt, then an MLP."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.read, self.look, self.mlp = Attention(dim, heads), Attention(dim, heads), ffn(dim, hidden)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, s: torch.Tensor, memory: torch.Tensor, prompt: torch.Tensor, pos: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        s = self.norm1(s + self.read(s + pos, memory + pos, memory, bias))
        s = self.norm2(s + self.look(s + pos, prompt + pos, prompt))
        return self.norm3(s + self.mlp(s))


def refiner(channels: int, width: int) -> nn.Sequential:
    """|reconstruction - features| (n, C, h, w) -> defect logit (n, 1, h, w)."""
    return nn.Sequential(nn.Conv2d(channels, width, 1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 1, 3, padding=1))


class OneNIPLite(nn.Module):
    outputs = ("anomaly_map",)

    def __init__(self, config: OneNIPConfig | None = None, pretrained: bool = True):
        super().__init__()
        self.config = cfg = config or OneNIPConfig()
        check_settings("onenip", cfg)
        self.features = PatchFeatures(pretrained, cfg.backbone)
        c = self.features.channels
        self.embed, self.unembed = nn.Linear(c, cfg.width), nn.Linear(cfg.width, c)
        self.encoder = nn.ModuleList(EncoderLayer(cfg.width, cfg.heads, cfg.ffn) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(PromptDecoderLayer(cfg.width, cfg.heads, cfg.ffn) for _ in range(cfg.decoder_layers))
        self.refiner = refiner(c, cfg.refiner)
        self._grid_parameters(cfg.grid_h, cfg.grid_w)
        self.register_buffer("error_scale", torch.ones(()))

    def _grid_parameters(self, h: int, w: int) -> None:
        cfg = self.config
        cfg.grid_h, cfg.grid_w = h, w
        check_grid(h, w, cfg.neighbour)
        self.pos = nn.Parameter(torch.randn(1, h * w, cfg.width) * 0.02)
        self.register_buffer("bias", neighbour_bias(h, w, cfg.neighbour), persistent=False)
        self.register_buffer("prompts", torch.zeros(cfg.prompts, h * w, cfg.width))

    def tokens(self, image: torch.Tensor) -> torch.Tensor:
        return feature_tokens(self.features, image)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return uniad.encode(self, tokens)

    def decode(self, memory: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        s = prompt
        for layer in self.decoder:
            s = layer(s, memory, prompt, self.pos, self.bias)
        return self.unembed(s)

    def refine(self, diff: torch.Tensor) -> torch.Tensor:
        """(n, T, C) reconstruction - features -> defect logits (n, 1, h, w)."""
        cfg = self.config
        return self.refiner(diff.abs().transpose(1, 2).reshape(diff.shape[0], -1, cfg.grid_h, cfg.grid_w))

    def score(self, diff: torch.Tensor) -> torch.Tensor:
        """(n, T, C) -> map (n, 1, h, w): the error over its normal level plus the weighted refiner."""
        cfg = self.config
        # sqrt(err + 1) as in PatchCore-lite: no infinite slope at 0 for INT8 and rounding.
        err = (diff.square().sum(-1) + 1).sqrt().reshape(-1, 1, cfg.grid_h, cfg.grid_w) / self.error_scale
        return err + cfg.refiner_weight * torch.sigmoid(self.refine(diff))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        t = self.tokens(image)
        x = self.encode(t)
        (n, T, d), p, c = x.shape, self.prompts.shape[0], t.shape[-1]
        memory = x.unsqueeze(1).expand(n, p, T, d).reshape(n * p, T, d)
        prompt = self.prompts.unsqueeze(0).expand(n, p, T, d).reshape(n * p, T, d)
        target = t.unsqueeze(1).expand(n, p, T, c).reshape(n * p, T, c)
        return self.score(self.decode(memory, prompt) - target).reshape(n, p, self.config.grid_h, self.config.grid_w)


def grid_masks(masks: np.ndarray, h: int, w: int) -> torch.Tensor:
    """(M, H, W) bool pixel masks -> (M, 1, h, w) fraction of each token's cell that is defective."""
    m = torch.from_numpy(masks.astype(np.float32))[:, None]
    return F.adaptive_avg_pool2d(m, (h, w))


def dice_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    inter = (prob * target).sum((1, 2, 3))
    return (1 - (2 * inter + 1) / (prob.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)).mean()


def fit(model: OneNIPLite, images: np.ndarray, seed: int = 0, groups: np.ndarray | None = None) -> dict:
    """Train on normal images (N, 3, H, W) float32 of the products `groups` (N,) names; batches
    draw products uniformly. Then store each product's prompt and the error's normal level."""
    cfg = model.config
    n = len(images)
    groups = np.zeros(n, int) if groups is None else np.asarray(groups)
    products = np.unique(groups)
    clean, (h, w) = fitted_tokens(model.features, images)  # (n, T, C)
    cfg.prompts = len(products)
    if (h, w) != (cfg.grid_h, cfg.grid_w) or model.prompts.shape[0] != cfg.prompts:
        model._grid_parameters(h, w)
    fake, masks, sources = synthesize(images, groups, cfg.synthetic_per_product, seed)
    fake_tokens = batched(lambda x: feature_tokens(model.features, x), fake, desc="synthetic anomalies")
    fake_masks = grid_masks(masks, h, w)
    del fake, masks
    members = {int(g): np.flatnonzero(groups == g) for g in products}
    fakes_of = {int(g): np.flatnonzero(groups[sources] == g) for g in products}

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt, sched = head_optimizer(model, cfg)
    n_fake = int(round(cfg.batch_size * cfg.synthetic))
    model.train()
    rebuild = ddp.wrap(model, rebuild_and_refine)
    rec_losses, ref_losses = [], []
    bar = progress_bar(range(cfg.steps), desc="training onenip")
    for step in bar:
        picked = rng.integers(0, len(products), cfg.batch_size)
        normal = [int(rng.choice(members[int(products[g])])) for g in picked[n_fake:]]
        faulty = [int(rng.choice(fakes_of[int(products[g])])) for g in picked[:n_fake]]
        targets = torch.cat([clean[sources[faulty]], clean[normal]])
        observed = torch.cat([fake_tokens[faulty], clean[normal]])  # what a test image would show
        inputs = torch.cat([fake_tokens[faulty], clean[normal] + jitter_noise(clean[normal], cfg.jitter)])
        truth = torch.cat([fake_masks[faulty], torch.zeros(len(normal), 1, h, w)])
        shown = [int(i) for i in sources[faulty]] + normal  # the normal image behind each sample
        prompt_ids = [other_image(members[int(products[g])], i, rng) for g, i in zip(picked, shown)]
        share = ddp.share(len(targets))  # drawn as one process would; this rank's slice:
        targets, observed, inputs, truth, prompts = (ddp.local(t) for t in (targets, observed, inputs, truth,
                                                                             clean[prompt_ids]))
        recon, logits = rebuild(inputs, prompts, observed)
        rec_loss = (recon - targets).square().mean()
        ref_loss = F.binary_cross_entropy_with_logits(logits, truth) + dice_loss(torch.sigmoid(logits), truth)
        total = optimizer_step(opt, sched, (rec_loss + ref_loss) * share, clip=1.0)
        ref_losses.append(ddp.mean(ref_loss.detach() * share))
        rec_losses.append(total - ref_losses[-1])
        show_running_mean(bar, step, rec=rec_losses, refiner=ref_losses)
    model.eval()
    prompt_ids = store_prompts(model, clean, members)
    return {"final_loss": float(np.mean(rec_losses[-50:])), "refiner_loss": float(np.mean(ref_losses[-50:])),
            "steps": cfg.steps, "n_images": n, "products": len(products), "grid": [h, w],
            "synthetic_images": len(sources), "prompt_images": prompt_ids}


def rebuild_and_refine(model: OneNIPLite, inputs: torch.Tensor, prompts: torch.Tensor,
                       observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step's forward: tokens rebuilt with their prompts, and the refiner's logits
    of where the rebuilt tokens differ from what a test image would show."""
    recon = model.decode(model.encode(inputs), model.encode(prompts))
    return recon, model.refine((recon - observed).detach())  # jitter is a training device only


def other_image(members: np.ndarray, shown: int, rng: np.random.Generator) -> int:
    """A prompt for a sample made from image `shown`: another image of its product where there is
    one (a prompt equal to the target would teach the decoder to copy the prompt)."""
    others = members[members != shown]
    return int(rng.choice(others if len(others) else members))


@torch.no_grad()
def store_prompts(model: OneNIPLite, clean: torch.Tensor, members: dict[int, np.ndarray]) -> list[int]:
    """Encode each product's prompt (its fit image nearest the product's mean tokens) into the
    graph constants, and set the error's normal level: the mean of sqrt(err + 1) over the fit
    images, each rebuilt with its product's prompt. Returns the prompt images' indices."""
    chosen, levels = [], []
    for g, (_, idx) in enumerate(sorted(members.items())):
        own = clean[idx]
        best = int(idx[int((own - own.mean(0)).square().sum((1, 2)).argmin())])
        chosen.append(best)
        model.prompts[g] = model.encode(clean[best : best + 1])[0]
        for i in range(0, len(idx), 64):
            t = own[i : i + 64]
            diff = model.decode(model.encode(t), model.prompts[g : g + 1].expand(len(t), -1, -1)) - t
            levels.append((diff.square().sum(-1) + 1).sqrt().flatten())
    model.error_scale.fill_(float(torch.cat(levels).mean()))
    return chosen


def complexity(model: OneNIPLite, height: int, width: int) -> dict:
    return {**uniad.complexity(model, height, width), "prompt_constants": model.prompts.numel()}


Config = OneNIPConfig
Model = OneNIPLite
