"""The point-cloud side of the `edgead` command line: train / eval / predict, and `synth3d`.
Torch-free except training."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgead.core.errors import DataError, UsageError
from edgead.core.machine import launched_processes
from edgead.core.thresholds import print_false_alarms
from edgead.tasks.base import FileScores
from edgead.tasks.pointcloud.data import scan_files
from edgead.tasks.pointcloud.io import SUFFIXES

EXIT_OK = 0


def add_arguments(command: str, g: argparse._ArgumentGroup) -> None:
    if command == "train":
        g.add_argument("--scales", default=None, help="comma-separated: neighbours per FPFH scale (fpfhcore, default "
                       "48,96) or ring radii in pixels (gridcore, default 2,4,6)")


def cmd_train(a: argparse.Namespace) -> int:
    from edgead.tasks.pointcloud.train import train_pointcloud

    if len(a.data) > 1:
        raise UsageError(f"--data is given {len(a.data)} times; point-cloud models train on one data set")
    if launched_processes() > 1:
        raise UsageError("point-cloud models fit a descriptor bank in one process (nothing to share across ranks); "
                         "run `edgead train` without torchrun")
    if a.epochs is not None:
        raise UsageError(f"{a.model} has no training loop, so --epochs does not apply; leave it out")
    scales = None
    if a.scales:
        try:
            scales = tuple(int(k) for k in a.scales.split(","))
        except ValueError as e:
            raise UsageError(f"--scales {a.scales!r}: expected whole numbers such as 16,32") from e
        least = 1 if a.model == "gridcore" else 4
        if min(scales) < least:
            raise UsageError(f"--scales {a.scales!r}: each scale must be at least {least} "
                             f"({'pixel' if least == 1 else 'neighbours'})")
    cfg = train_pointcloud(a.data[0], a.out, model=a.model, seed=a.seed, holdout=a.holdout, scales=scales, threads=a.threads)
    th = cfg["thresholds"]["cloud"]
    print(f"trained {a.model} in {cfg['train']['seconds']} s on {cfg['train']['n_fit']} scans "
          f"({cfg['train']['n_holdout']} held out for thresholds; bank of {cfg['complexity']['bank_entries']} "
          f"descriptors); cloud threshold {th['values'][th['active']]:.4g} ({th['active']}); run written to {a.out}")
    print_false_alarms(th, "scans")
    return EXIT_OK


def input_files(paths: list[str]) -> list[tuple[Path, Path]]:
    named = scan_files(paths)
    if not named:
        raise DataError(f"no point clouds ({', '.join(SUFFIXES)}) found in {' '.join(paths)}")
    return named


def score_file(pred, path: Path, name: Path, maps: Path | None = None) -> FileScores:
    """One scan: its JSON row and plain line; with `maps`, its point scores (CSV) and a picture
    of its anomalous points (PNG) there."""
    from edgead.tasks.pointcloud.io import read_cloud
    from edgead.tasks.pointcloud.render import save_render

    cloud = read_cloud(path)
    res = pred.predict(cloud)
    if maps is not None:
        out = Path(maps) / name.with_suffix("")
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(out.with_name(out.name + "_points.csv"), res.point_score, fmt="%.6g", header="point_score",
                   comments="")
        save_render(out.with_name(out.name + ".png"), cloud, res.anomalous_points,
                    title=f"score {res.score:.3f}, {int(res.anomalous_points.sum())} anomalous points")
    state = "ANOMALY" if res.is_anomalous else "ok     "
    return FileScores([{"path": str(path), **res.to_json()}],
                      f"{state} score={res.score:.3f} raw={res.raw_score:.4g} "
                      f"{int(res.anomalous_points.sum())}/{len(res.point_score)} points flagged  {path}")


def add_commands(sub) -> None:
    s = sub.add_parser("synth3d", help="an MVTec-layout point-cloud data set with synthetic defects (3D-PNAS) "
                       "from normal scans of one part")
    s.add_argument("scans", nargs="+", help="normal scans of one part (.pcd, .ply, .xyz, .csv, .npy, .tiff)")
    s.add_argument("--out", required=True, help="data set folder to write")
    s.add_argument("--train", type=int, default=12, help="normal training re-scans (default 12)")
    s.add_argument("--good", type=int, default=6, help="normal test re-scans (default 6)")
    s.add_argument("--defects", type=int, default=6, help="test scans per defect kind (default 6)")
    s.add_argument("--strengths", default="subtle,medium,strong", help="3D-PNAS strengths (default all three)")
    s.add_argument("--no-second", action="store_true", help="leave out the second generator (spherical dents, holes)")
    s.add_argument("--noise", type=float, default=0.1, help="sensor noise of the re-scans, in point spacings (default 0.1)")
    s.add_argument("--grid-step", type=int, default=1, help="keep every k-th row and column of organised scans")
    s.add_argument("--max-points", type=int, default=None, help="random subset of unorganised scans")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_synth3d)


def cmd_synth3d(a: argparse.Namespace) -> int:
    from edgead.tasks.pointcloud.synth import SynthOptions, make_dataset

    if min(a.train, a.good, a.defects) < 1 or a.grid_step < 1:
        raise UsageError("--train, --good, --defects and --grid-step must be at least 1")
    opt = SynthOptions(n_train=a.train, n_good=a.good, n_defect=a.defects,
                       strengths=tuple(s.strip() for s in a.strengths.split(",") if s.strip()), second=not a.no_second,
                       noise=a.noise, grid_step=a.grid_step, max_points=a.max_points, seed=a.seed)
    info = make_dataset(a.scans, a.out, opt)
    print(f"wrote {a.out}: {opt.n_train} training scans, {opt.n_good} good and {opt.n_defect} per defect kind "
          f"({', '.join(info['kinds'])}) for testing; renders in {Path(a.out) / 'renders'}. The anomalies are synthetic.")
    return EXIT_OK
