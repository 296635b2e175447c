"""The signal side of the `edgead` command line: its own flags, and train / eval / predict.
Torch-free except training."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgead.core.errors import DataError, UsageError
from edgead.core.thresholds import print_false_alarms
from edgead.core.output_names import unique_names
from edgead.tasks.base import FileScores

EXIT_OK = 0
DATA_KIND_HELP = "signal data: ucr, wfdb, nab, csv or npy (default: from the file)"


def add_arguments(command: str, g: argparse._ArgumentGroup) -> None:
    if command in ("eval", "predict"):
        g.add_argument("--data-kind", default=None, help=DATA_KIND_HELP)
    if command == "predict":
        g.add_argument("--rate", type=float, default=None, metavar="HZ",
                       help="the sample rate of CSV / numpy recordings, which do not store one (default: the "
                            "model's rate, i.e. no resampling; WFDB records carry their own)")
    if command == "train":
        _add_train_arguments(g)


def _add_train_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--data-kind", default=None, help=DATA_KIND_HELP)
    g.add_argument("--window", type=int, default=None, help="window length in samples at the model rate (default: the "
                   "sample length for UCR data, else 256)")
    g.add_argument("--hop", type=int, default=None, help="samples between window starts (default: window / 4)")
    g.add_argument("--rate", type=float, default=None, help="model sample rate in Hz; the data is resampled (default: its own)")
    g.add_argument("--channels", default=None, help="comma-separated channel names or indices (default: all)")
    g.add_argument("--norm", choices=["window", "global", "none"], default=None,
                   help="normalisation: z-score per window (default for ECG: UCR, WFDB), training mean/std "
                   "(default for NAB, CSV, numpy series), or none")
    g.add_argument("--train-fraction", type=float, default=None, help="share of the normal samples (UCR, default 0.6) "
                   "or of the recording (default 0.5) used for training; the rest is the test part")
    g.add_argument("--normal-class", default=None, help="UCR class that is normal (default 1)")
    g.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the model's own)")


def cmd_train(a: argparse.Namespace) -> int:
    from edgead.tasks.signal.train import train_signal

    if len(a.data) > 1:
        raise UsageError(f"--data is given {len(a.data)} times; signal models train on one data set")
    cfg = train_signal(a.data[0], a.out, model=a.model, data_kind=a.data_kind, window=a.window, hop=a.hop, rate=a.rate,
                       channels=a.channels.split(",") if a.channels else None, norm=a.norm,
                       train_fraction=a.train_fraction, normal_class=a.normal_class or "1", steps=a.steps,
                       epochs=a.epochs, seed=a.seed, holdout=a.holdout, threads=a.threads)
    if cfg is None:  # another rank than 0 under torchrun: rank 0 reports
        return EXIT_OK
    th = cfg["thresholds"]["window"]
    c = cfg["complexity"]
    print(f"trained {a.model} in {cfg['train']['seconds']} s on {cfg['train']['n_fit']} windows "
          f"({cfg['train']['n_holdout']} held out for thresholds; {c['params']} parameters, "
          f"{c['flops_per_window'] / 1e6:.1f} MFLOPs per window); window threshold "
          f"{th['values'][th['active']]:.4g} ({th['active']}); run written to {a.out}")
    print_false_alarms(th, "windows")
    return 0


def eval_options(a: argparse.Namespace) -> dict:
    """This task's own `edgead eval` flags, as keyword arguments of its evaluate()."""
    return {"data_kind": a.data_kind}


def _rate(d, given: float | None, model_rate: float | None, path: str) -> float | None:
    """The recording's rate: its own (WFDB), else --rate, else the model's (no resampling)."""
    if given is not None and model_rate is None:
        raise DataError(f"the model was trained on fixed-length samples without a sample rate; leave out --rate {given:g}")
    if given is not None and d.rate is not None and given != d.rate:
        raise DataError(f"{path} records its own rate ({d.rate:g} Hz); leave out --rate {given:g}")
    return d.rate if d.rate is not None else given if given is not None else model_rate


def predict_options(a: argparse.Namespace) -> dict:
    return {"data_kind": a.data_kind, "rate": a.rate}


def input_files(paths: list[str]) -> list[tuple[Path, Path]]:
    """The files as given (a missing one is reported when it is scored), named by their file names."""
    return unique_names([(Path(p), Path(Path(p).name)) for p in paths])


def score_file(pred, path: Path, name: Path, maps: Path | None = None, data_kind: str | None = None,
               rate: float | None = None) -> FileScores:
    """One signal file (UCR samples, WFDB record, CSV, numpy): a JSON row per sample or window, and
    one plain line; with `maps`, its point scores (CSV) there."""
    from edgead.tasks.signal.data import SampleSet, load_with_channels

    d, _ = load_with_channels(str(path), data_kind, list(pred.spec.channel_names))
    if isinstance(d, SampleSet):
        s = pred.score_windows(d.values)
        rows = [{"path": str(path), "index": i, "raw_score": float(r), "score": round(float(n), 6),
                 "is_anomalous": bool(f), **({"fault": q} if q else {})}
                for i, (r, n, f, q) in enumerate(zip(s.window_score, s.score, s.is_anomalous, s.fault))]
    else:
        res = pred.predict(d.values, rate=_rate(d, rate, pred.spec.rate, str(path)), missing=d.missing)
        rows = [{"path": str(path), "end": w.start + pred.spec.length, **w.to_json()} for w in res.windows]
        if maps is not None:
            out = Path(maps) / name.with_name(name.stem + "_points.csv")
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(out, res.point_score, fmt="%.6g", header="point_score", comments="")
    return FileScores(rows, _summary(rows, path))


def _summary(rows: list[dict], path: Path) -> str:
    flagged = sum(r["is_anomalous"] for r in rows)
    faults = sorted({r["fault"] for r in rows if "fault" in r})
    top = max(rows, key=lambda r: r["raw_score"])
    where = f"index {top['index']}" if "index" in top else f"window at {top['start']}"
    state = "FAULT  " if faults else "ANOMALY" if flagged else "ok     "
    n_faults = sum("fault" in r for r in rows)
    extra = f", {n_faults} with a sensor fault ({', '.join(faults)})" if faults else ""
    return f"{state} {flagged}/{len(rows)} flagged{extra}, highest score {top['score']:.3f} ({where})  {path}"
