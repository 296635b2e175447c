"""`edgead synth3d`: an MVTec-layout point-cloud data set made from normal scans of one part, for
training and for evaluation with synthetic defects (no labelled real 3-D defects can be had).

Normal "re-scans" are the given scans with fresh sensor noise (a fraction of the point spacing)
and a few dropped points; defective ones add one 3D-PNAS defect at each strength, and (never
seen in training) a spherical dent and a hole. The folder gets SYNTHETIC.json, which evaluation
reports, and PNG renders of one scan per defect kind."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgead.core.atomic import atomic_folder
from edgead.core.errors import UsageError
from edgead.core.progress import progress_bar
from edgead.tasks.pointcloud import synthesis
from edgead.tasks.pointcloud.data import MARKER
from edgead.tasks.pointcloud.features import spacing
from edgead.tasks.pointcloud.io import Cloud, read_cloud, write_pcd

SECOND = ("sphere_dent", "hole")  # the generator the detector never trains on


@dataclass
class SynthOptions:
    n_train: int = 12
    n_good: int = 6  # normal test scans
    n_defect: int = 6  # per defect kind
    strengths: tuple[str, ...] = tuple(synthesis.STRENGTHS)
    second: bool = True  # add the second generator's kinds
    noise: float = 0.1  # sensor noise, in point spacings
    dropout: float = 0.02  # fraction of points dropped per re-scan
    grid_step: int = 1  # keep every k-th row and column of organised scans
    max_points: int | None = None  # random subset of unorganised scans
    seed: int = 0


def thinned(cloud: Cloud, opt: SynthOptions, rng: np.random.Generator) -> Cloud:
    if cloud.grid is not None and opt.grid_step > 1:
        h, w = cloud.grid
        grid = cloud.points.reshape(h, w, 3)[:: opt.grid_step, :: opt.grid_step]
        return Cloud(np.ascontiguousarray(grid.reshape(-1, 3)), grid.shape[:2], cloud.viewpoint, cloud.source)
    if cloud.grid is None and opt.max_points and len(cloud.points) > opt.max_points:
        keep = np.sort(rng.permutation(len(cloud.points))[: opt.max_points])
        return Cloud(cloud.points[keep], None, cloud.viewpoint, cloud.source)
    return cloud


def rescan(cloud: Cloud, step: float, opt: SynthOptions, rng: np.random.Generator) -> Cloud:
    """The same part scanned again: Gaussian noise of `noise` spacings, `dropout` points lost."""
    pts = cloud.points + rng.normal(0, opt.noise * step, cloud.points.shape).astype(np.float32)
    pts[rng.random(len(pts)) < opt.dropout] = np.nan
    return Cloud(pts, cloud.grid, cloud.viewpoint, cloud.source)


def defect(cloud: Cloud, kind: str, seed: int) -> synthesis.Defect:
    if kind.startswith("pnas_"):
        return synthesis.pnas(cloud, synthesis.PnasSpec(strength=synthesis.STRENGTHS[kind[5:]]), seed)
    if kind == "sphere_dent":
        return synthesis.sphere_dent(cloud, synthesis.STRENGTHS["medium"], seed)
    return synthesis.hole(cloud, seed)


def make_dataset(scans: list[str | os.PathLike], out: str | os.PathLike, opt: SynthOptions | None = None) -> dict:
    """Write the data set to `out` (atomically); returns its description (also in SYNTHETIC.json)."""
    opt = opt or SynthOptions()
    unknown = [s for s in opt.strengths if s not in synthesis.STRENGTHS]
    if unknown:
        raise UsageError(f"unknown strength(s) {unknown}; choose from {', '.join(synthesis.STRENGTHS)}")
    rng = np.random.default_rng(opt.seed)
    bases = [thinned(read_cloud(p), opt, rng) for p in scans]
    for b in bases:  # fixed once, so that noise and defects never move a virtual viewpoint
        b.viewpoint = b.sensor().astype(np.float32)
    steps = [spacing(b.points[b.valid]) for b in bases]
    kinds = [f"pnas_{s}" for s in opt.strengths] + (list(SECOND) if opt.second else [])
    description = (f"3D-PNAS defects ({', '.join(opt.strengths)}) and, never trained on, {', '.join(SECOND)}, on re-scans "
                   f"of {', '.join(Path(p).name for p in scans)} (noise {opt.noise} spacings, dropout {opt.dropout})"
                   if opt.second else f"3D-PNAS defects ({', '.join(opt.strengths)}) on re-scans of "
                   f"{', '.join(Path(p).name for p in scans)}")
    jobs = ([("train/good", None, i) for i in range(opt.n_train)] + [("test/good", None, i) for i in range(opt.n_good)]
            + [(f"test/{k}", k, i) for k in kinds for i in range(opt.n_defect)])
    with atomic_folder(out, MARKER) as tmp:
        for n, (folder, kind, i) in enumerate(progress_bar(jobs, desc="synth3d")):
            b = n % len(bases)
            scan = rescan(bases[b], steps[b], opt, rng)
            name = f"{i:03d}"
            (tmp / folder).mkdir(parents=True, exist_ok=True)
            if kind is not None:
                d = defect(scan, kind, seed=opt.seed * 100_003 + n)
                scan = d.cloud
                (tmp / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                np.save(tmp / "ground_truth" / kind / f"{name}.npy", d.mask)
                if i == 0:
                    from edgead.tasks.pointcloud.render import save_render

                    save_render(tmp / "renders" / f"{kind}.png", scan, d.mask, title=f"{kind} ({int(d.mask.sum())} points)")
            write_pcd(tmp / folder / f"{name}.pcd", scan)
        info = {"description": description, "kinds": kinds, "options": {**opt.__dict__, "strengths": list(opt.strengths)},
                "strength_spacings": {s: synthesis.STRENGTHS[s] for s in opt.strengths},
                "sources": [Path(p).name for p in scans], "point_spacing": steps}
        (tmp / MARKER).write_text(json.dumps(info, indent=1))
    return info
