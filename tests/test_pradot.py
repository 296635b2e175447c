"""PRADOT-lite: the transport plans, the local search over neighbouring cells, and what local
prototypes are for: a rearranged part."""
import numpy as np
import pytest
import torch

from edgead.models import pradot


def test_sinkhorn_plans_are_balanced_and_kmeans_plans_are_hard():
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(3, 40, 5, generator=gen, dtype=torch.float64)
    weight = torch.ones(3, 40, dtype=torch.float64)
    weight[:, 30:] = 0  # patches outside the grid carry nothing
    plan = pradot.sinkhorn(cost, weight, reg=0.05, iters=300)
    assert torch.allclose(plan.sum(2)[:, :30], torch.full((3, 30), 1 / 30, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(plan.sum(1), torch.full((3, 5), 1 / 5, dtype=torch.float64), atol=1e-6)
    assert (plan[:, 30:] == 0).all()
    hard = pradot._plan(cost, weight, pradot.PRADOTConfig(assign="kmeans"))
    assert (hard.sum(2)[:, :30] == 1).all() and (hard.argmax(2) == cost.argmin(2))[:, :30].all()


def test_local_search_finds_a_prototype_one_cell_away_at_the_grid_cost():
    cfg = pradot.PRADOTConfig(dim=4, per_cell=1, grid_h=3, grid_w=3, alpha=0.3)
    model = pradot.PRADOTLite(cfg, pretrained=False)
    e = torch.eye(4)
    protos = torch.zeros(1, 4, 3, 3)
    protos[0, :, :, :] = e[1].view(4, 1, 1)  # every cell expects direction 1 ...
    protos[0, :, 1, 2] = e[0]  # ... except the middle-right cell, which expects direction 0
    model.local_protos = protos
    u = torch.zeros(1, 4, 3, 3)
    u[0, :] = e[1].view(4, 1, 1)
    u[0, :, 1, 1] = e[0]  # direction 0 appears one cell left of where it belongs
    cost = model.local_cost(u)[0, 0]
    assert cost[1, 1] == pytest.approx(0.3 * 1 / np.sqrt(2))  # found next door: grid cost only
    assert cost[0, 0] == pytest.approx(0.0) and cost[2, 2] == pytest.approx(0.0)
    model.local_protos = torch.zeros(1, 4, 3, 3) + e[1].view(1, 4, 1, 1)  # nowhere: the feature cost
    assert model.local_cost(u)[0, 0, 1, 1] == pytest.approx(0.7 * 2)  # squared distance between unit axes


def two_part_images(n: int, seed: int, swapped: bool = False) -> np.ndarray:
    """(n, 3, 128, 128) float32 "parts" with a fixed layout: fine stripes in the top half, round
    dots in the bottom half, each with its own random phase and sensor noise. Swapped: the same
    two halves in each other's place (a logical anomaly: every patch is normal, not its place)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y, x = np.mgrid[0:64, 0:128]
        stripes = 0.5 + 0.4 * np.sin(2 * np.pi * (y + rng.uniform(0, 8)) / 8)
        dots = np.full((64, 128), 0.2)
        for _ in range(14):
            cv2.circle(dots, (int(rng.uniform(0, 128)), int(rng.uniform(0, 64))), 6, 0.9, -1)
        halves = [dots, stripes] if swapped else [stripes, dots]
        img = np.concatenate(halves, 0) + rng.normal(0, 0.03, (128, 128))
        out.append(np.repeat(img[None], 3, 0))
    return ((np.stack(out) - 0.45) / 0.25).astype(np.float32)  # about the backbone's input range


def test_local_prototypes_see_a_rearranged_part_that_global_ones_accept():
    """Every patch of a swapped part is a normal patch (the global prototypes' view) but not in
    its place (the local ones'). Relative to normal parts, local costs must rise more. Global
    costs rise too, at the seam and the borders, whose context changed."""
    model = pradot.PRADOTLite(pradot.PRADOTConfig(backbone="lite0"), pretrained=True)
    pradot.fit(model, two_part_images(24, seed=0))
    with torch.no_grad():
        u = model.embed(torch.from_numpy(two_part_images(8, seed=1)))
        v = model.embed(torch.from_numpy(two_part_images(8, seed=1, swapped=True)))
        rise_local = float(model.local_cost(v).mean() / model.local_cost(u).mean()) - 1
        rise_global = float(model.global_cost(v).mean() / model.global_cost(u).mean()) - 1
    assert rise_local > 1.5 * rise_global > 0, (rise_local, rise_global)  # measured 4.4 vs 2.4 (position-blind: equal)


def test_fewer_normal_patches_than_global_prototypes_still_fit():
    model = pradot.PRADOTLite(pradot.PRADOTConfig(backbone="lite0", n_global=64, epochs=1), pretrained=False)
    images = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)  # 2 x 4 x 4 = 32 patches
    log = pradot.fit(model, images)
    assert model.global_protos.shape[0] == 64 and log["grid"] == [4, 4]
    with torch.no_grad():
        assert torch.isfinite(model(torch.from_numpy(images))).all()
