"""The image side of the `edgead` command line: its own flags, and train / eval / predict."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgead.core.errors import DataError, UsageError
from edgead.core.thresholds import print_false_alarms
from edgead.core.output_names import named_inputs
from edgead.tasks.base import FileScores

EXIT_OK = 0
DEFAULT_IMAGE_SIZE = 256


def add_arguments(command: str, g: argparse._ArgumentGroup) -> None:
    if command == "train":
        g.add_argument("--image-size", type=int, default=None, help=f"network input size in pixels (default {DEFAULT_IMAGE_SIZE})")
        g.add_argument("--resize", choices=["letterbox", "stretch"], default=None,
                       help="letterbox keeps the aspect ratio and pads; stretch squashes to a square "
                            "(default: the model's own: stretch for padim and uniad, else letterbox)")
        g.add_argument("--val", default=None, help="labelled validation folder: adds F1-adaptive thresholds")
        g.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                       help="a model setting, repeatable (e.g. --set max_bank=8192 for patchcore); "
                            "an unknown key lists the model's settings")
    if command in ("predict", "eval"):
        g.add_argument("--product", default=None, help="unified models: the product in the images, for its own "
                       "thresholds (default: the product-agnostic ones; onenip needs it)")
    if command == "eval":
        g.add_argument("--save-maps", default=None, help="folder for heat-map overlays (PNG)")
        g.add_argument("--report", default=None, metavar="DIR",
                       help="write an evaluation report to DIR: report.html with score histograms, ROC and PRO "
                            "curves, per-defect AUROC, false alarms and misses at the threshold, a gallery of "
                            "the worst images, and images.csv (needs matplotlib: pip install 'edgead[report]')")
        g.add_argument("--geometry", choices=["network", "original"], default=None,
                       help="where pixel metrics are computed: the network input's valid region (default), or "
                            "the original image's geometry with its long side capped at 256 px (comparable "
                            "across tools)")


def settings(pairs: list[str] | None) -> dict:
    """["max_bank=8192", "attenuation=false"] -> {"max_bank": 8192, "attenuation": False}."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set max_bank=8192")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_train(a: argparse.Namespace) -> int:
    from edgead.tasks.image.train import train

    cfg = train(a.data, a.out, model=a.model, epochs=a.epochs, image_size=DEFAULT_IMAGE_SIZE if a.image_size is None else a.image_size,
                seed=a.seed, holdout=a.holdout, resize=a.resize, val=a.val, threads=a.threads,
                overrides=settings(a.set))
    if cfg is None:  # another rank than 0 under torchrun: rank 0 reports
        return EXIT_OK
    th = cfg["thresholds"]["image"]
    print(f"trained {a.model} in {cfg['train']['seconds']} s on {cfg['train']['n_fit']} images "
          f"({cfg['train']['n_holdout']} held out for thresholds); image threshold "
          f"{th['values'][th['active']]:.4g} ({th['active']}); run written to {a.out}")
    print_false_alarms(th, "images")
    return EXIT_OK


def eval_options(a: argparse.Namespace) -> dict:
    """This task's own `edgead eval` flags, as keyword arguments of its evaluate()."""
    return {"save_maps": a.save_maps, "geometry": a.geometry or "network", "product": a.product, "report": a.report}


def expand(paths: list[str]) -> list[Path]:
    return [f for f, _ in expand_named(paths)]


def expand_named(paths: list[str]) -> list[tuple[Path, Path]]:
    """Image files of `paths` (files, and folders searched recursively), each with a name for its
    outputs that mirrors its place under the folder given (unique even for same-named inputs)."""
    from edgead.tasks.image.data import IMAGE_SUFFIXES

    return named_inputs(paths, IMAGE_SUFFIXES)


def predict_options(a: argparse.Namespace) -> dict:
    return {"product": a.product}


def input_files(paths: list[str]) -> list[tuple[Path, Path]]:
    named = expand_named(paths)
    if not named:
        raise DataError(f"no images found in {' '.join(paths)}")
    return named


def score_file(pred, path: Path, name: Path, maps: Path | None = None, product: str | None = None) -> FileScores:
    """One image: its JSON row and plain line; with `maps`, its heat-map overlay (PNG) there."""
    from edgead.tasks.image.preprocess import read_image

    img = read_image(path)
    res = pred.result(*pred.analyse(img, product), path=str(path), product=product)
    if maps is not None:
        from edgead.tasks.image.visualize import save_overlay

        save_overlay(Path(maps) / name.with_suffix(".png"), img, res)
    verdict = "ANOMALY" if res.is_anomalous else "ok     "
    return FileScores([res.to_json()], f"{verdict} score={res.score:.3f} raw={res.raw_score:.4g}  {path}")
