"""edgead's signal models against the classic detectors signal users already have, side by side
on exactly edgead's split and windows (issue 24).

For each data set, `edgead train` of each of edgead's signal models (mmae, windowknn) with their
defaults (plus --train KEY=VALUE) fixes the split, the model rate, the windows and their
normalisation. Each peer is fitted on the same normalised windows of the same fit part, and scored
through edgead's own SignalPredictor and evaluation (a peer's window score stands for every point
of the window, and points average the windows covering them, as edgead's models' do), so every
figure is computed by one piece of code:
- 1-NN: Euclidean distance to the nearest fit window, each window z-normalised per channel;
- KNN (k = 5), LOF (k = 20), IsolationForest: pyod, on the flattened normalised windows;
- matrix profile: stumpy's distance of each z-normalised window to its nearest fit subsequence
  at any offset (the AB-join; summed over channels); recordings only.

    pip install -e '.[bench]'     # stumpy, pyod (scikit-learn comes with dev)
    python bench/compare_signal_peers.py [--only ecg5000,mitbih100,...] [--models mmae,windowknn]
                                         [--train KEY=VALUE ...] [--tag NAME]

Writes bench/results/signal_peers[_TAG].json and prints the markdown table of BENCHMARKS.md."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIGNALS = HERE.parent.parent / "shared" / "data" / "signals"
NAB = SIGNALS / "nab" / "data"
DATASETS = {
    "ecg5000": SIGNALS / "ecg5000_train" / "ECG5000_TRAIN.txt",
    "mitbih100": SIGNALS / "mitbih_wfdb_sample" / "100",
    "nab_nyc_taxi": NAB / "realKnownCause" / "nyc_taxi.csv",
    "nab_ambient_temperature": NAB / "realKnownCause" / "ambient_temperature_system_failure.csv",
    "nab_machine_temperature": NAB / "realKnownCause" / "machine_temperature_system_failure.csv",
    "nab_ec2_request_latency": NAB / "realKnownCause" / "ec2_request_latency_system_failure.csv",
    "nab_cpu_utilization_asg": NAB / "realKnownCause" / "cpu_utilization_asg_misconfiguration.csv",
    "nab_art_daily_jumpsup": NAB / "artificialWithAnomaly" / "art_daily_jumpsup.csv",
    "sktime_mitdb": SIGNALS / "sktime" / "mitdb.csv",
    "sktime_yahoo": SIGNALS / "sktime" / "yahoo.csv",
    "aeon_kdd135": SIGNALS / "aeon" / "KDD-TSAD_135" / "135_UCR_Anomaly_InternalBleeding16_TEST.csv",
}
METRICS = ("sample_auroc", "point_auroc", "f1_max", "beat_auroc")


# ------------------------------------------------------------------------------ detectors

def znorm(w: np.ndarray) -> np.ndarray:
    mu, sd = w.mean(axis=-1, keepdims=True), w.std(axis=-1, keepdims=True)
    return (w - mu) / np.maximum(sd, 1e-8)


class OneNN:
    name = "1-NN (z-normalised Euclidean)"

    def fit(self, windows: np.ndarray, fit_series: np.ndarray | None) -> None:
        from sklearn.neighbors import NearestNeighbors

        self.nn = NearestNeighbors(n_neighbors=1).fit(znorm(windows).reshape(len(windows), -1))

    def score(self, windows: np.ndarray) -> np.ndarray:
        return self.nn.kneighbors(znorm(windows).reshape(len(windows), -1))[0][:, 0]


class PyOD:
    def __init__(self, name: str, make):
        self.name, self.make = name, make

    def fit(self, windows: np.ndarray, fit_series: np.ndarray | None) -> None:
        self.model = self.make().fit(windows.reshape(len(windows), -1))

    def score(self, windows: np.ndarray) -> np.ndarray:
        return self.model.decision_function(windows.reshape(len(windows), -1))


class MatrixProfile:
    """Each test window's distance to its nearest fit subsequence at any offset: the AB-join
    matrix profile of the test part against the fit part (stumpy.stump), summed over channels,
    read at the windows' starts (the predictor asks for its windows in order: the regular ones,
    then the tail window)."""

    name = "matrix profile (stumpy AB-join)"

    def fit(self, windows: np.ndarray, fit_series: np.ndarray | None) -> None:
        if fit_series is None:
            raise NotImplementedError("fixed-length samples have no offsets to search")
        self.series = np.ascontiguousarray(fit_series, np.float64)

    def prepare(self, test: np.ndarray, length: int, hop: int) -> None:
        import stumpy

        from edgead.tasks.signal.preprocess import window_starts

        test = np.ascontiguousarray(test, np.float64)
        self.profile = sum(stumpy.stump(test[:, c], length, self.series[:, c], ignore_trivial=False)[:, 0].astype(float)
                           for c in range(test.shape[1]))
        regular, tail = window_starts(len(test), length, hop)
        self.starts = list(regular) + ([tail] if tail is not None else [])

    def score(self, windows: np.ndarray) -> np.ndarray:
        starts, self.starts = self.starts[: len(windows)], self.starts[len(windows):]
        return self.profile[starts]


def peers() -> list:
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF

    return [OneNN(), PyOD("KNN (k = 5)", lambda: KNN(n_neighbors=5)), PyOD("LOF (k = 20)", lambda: LOF(n_neighbors=20)),
            PyOD("IsolationForest", lambda: IForest(random_state=0)), MatrixProfile()]


class DetectorBackend:
    """A peer behind the runtime interface, so that edgead's SignalPredictor and evaluation
    score it exactly as they score MMAE-lite."""

    name = "peer"
    output_names = ["point_score", "window_score"]
    input_shapes: dict = {}

    def __init__(self, detector, length: int):
        self.detector, self.length, self.seconds = detector, length, 0.0

    def run(self, feeds: dict) -> dict:
        t = time.perf_counter()
        s = np.asarray(self.detector.score(next(iter(feeds.values()))), np.float32)
        self.seconds += time.perf_counter() - t
        return {"point_score": np.repeat(s[:, None], self.length, 1), "window_score": s}


# ------------------------------------------------------------------------------ one data set

def fit_part(config: dict, data: Path):
    """The normalised fit windows, and the fit and test parts of the series (None for samples),
    as training cut them."""
    from edgead.tasks.signal.data import SampleSet, load_signal, split_samples
    from edgead.tasks.signal.preprocess import SignalSpec, cut_windows, normalize, resample, window_starts

    spec = SignalSpec.from_json(config["input"])
    split = config["train"]["split"]
    names = list(spec.channel_names) if split["kind"] == "series" else None
    d = load_signal(data, None, split.get("normal_class", "1"), names)
    if isinstance(d, SampleSet):
        fit = split_samples(d.labels, split["train_fraction"], split["holdout"], split["seed"])["fit"]
        return normalize(d.values[fit], spec), None, None
    x = resample(d.values, d.rate, spec.rate)
    fit = x[: split["fit_end"]]
    windows = normalize(cut_windows(fit, window_starts(len(fit), spec.length, spec.hop)[0], spec.length), spec)
    return windows, fit, x[split["train_end"]:]


def edgead_row(name: str, data: Path, run: Path, model: str, train_kw: dict) -> tuple[dict, dict]:
    """Train `model` with edgead's defaults (and `train_kw`) and evaluate it: its row and run record."""
    from edgead.tasks.signal.evaluate import evaluate_windows
    from edgead.tasks.signal.predictor import SignalPredictor
    from edgead.tasks.signal.train import train_signal

    t = time.perf_counter()
    cfg = train_signal(data, run, model=model, **train_kw)
    fit_s = time.perf_counter() - t
    spec = cfg["input"]
    t = time.perf_counter()
    res = evaluate_windows(SignalPredictor(run), data)[0]
    n = res.get("n_points") or res.get("n_samples", 0) * spec["length"]
    row = {"data": name, "detector": f"{model} (edgead)", "fit_s": round(fit_s, 1), "points": int(n),
           "ms_per_10k_points": round(1e7 * (time.perf_counter() - t) / n, 1), "window": spec["length"],
           "hop": spec["hop"], "rate": spec.get("rate"), "norm": spec["norm"], **{k: res.get(k) for k in METRICS}}
    return row, cfg


def peer_rows(name: str, data: Path, run: Path, n: int) -> list[dict]:
    """Every peer on the split and windows of the edgead run `run`."""
    from edgead.core.run import read_run_config
    from edgead.tasks.signal.evaluate import evaluate_windows
    from edgead.tasks.signal.predictor import SignalPredictor

    config = read_run_config(run)
    spec = config["input"]
    windows, series, test = fit_part(config, data)
    rows = []
    for det in peers():
        try:
            t = time.perf_counter()
            det.fit(windows, series)
            fit_s = time.perf_counter() - t
        except NotImplementedError:
            continue
        backend = DetectorBackend(det, spec["length"])
        t = time.perf_counter()
        if hasattr(det, "prepare"):  # the matrix profile is computed over the whole test part at once
            det.prepare(test, spec["length"], spec["hop"])
        got = evaluate_windows(SignalPredictor.from_backend(config, backend, target="peer"), data)[0]
        rows.append({"data": name, "detector": det.name, "fit_s": round(fit_s, 2),
                     "ms_per_10k_points": round(1e7 * (time.perf_counter() - t) / n, 1), **{k: got.get(k) for k in METRICS}})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def compare(name: str, data: Path, work: Path, models: list[str], train_kw: dict, with_peers: bool) -> list[dict]:
    """edgead's `models`, then the peers on the first model's split and windows (the same for every
    model: both come from the data and the defaults)."""
    from edgead.core.errors import DataError

    rows, first = [], None
    for model in models:
        try:
            row, cfg = edgead_row(name, data, work / model / name, model, train_kw)
        except DataError as e:  # e.g. a recording too short for the default window: say so in the table
            row, cfg = {"data": name, "detector": f"{model} (edgead): {e}", "fit_s": None, "ms_per_10k_points": None,
                        **{k: None for k in METRICS}}, None
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if cfg is not None and first is None:
            first = (work / model / name, row)
    if with_peers and first is not None:
        run, row = first
        rows += peer_rows(name, data, run, row["points"])
    return rows


def markdown(rows: list[dict]) -> str:
    f = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    out = ["| data | detector | sample / window AUROC | point AUROC | F1-max | beat AUROC | fit s | ms / 10k points |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['data']} | {r['detector']} | {f(r['sample_auroc'])} | {f(r['point_auroc'])} | "
                   f"{f(r['f1_max'])} | {f(r['beat_auroc'])} | {r['fit_s']} | {r['ms_per_10k_points']} |")
    return "\n".join(out)


def setting(pair: str) -> tuple[str, object]:
    key, _, value = pair.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--only", default=",".join(DATASETS))
    p.add_argument("--models", default="mmae,windowknn", help="edgead's signal models to compare")
    p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE", help="train_signal keyword")
    p.add_argument("--no-peers", action="store_true", help="edgead's models only")
    p.add_argument("--tag", default="")
    p.add_argument("--work", default=str(HERE / "work" / "signal_peers"))
    a = p.parse_args()
    train_kw = dict(setting(s) for s in a.train)
    rows = []
    for name in a.only.split(","):
        data = DATASETS[name]
        if not (data.exists() or data.with_suffix(".hea").exists()):
            print(f"skip {name}: {data} is absent", file=sys.stderr)
            continue
        rows += compare(name, data, Path(a.work) / (a.tag or "default"), a.models.split(","), train_kw,
                        not a.no_peers)
    from edgead.core.machine import machine_info

    out = HERE / "results" / f"signal_peers{'_' + a.tag if a.tag else ''}.json"
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "train": train_kw,
                               "rows": rows}, indent=1))
    print(markdown(rows))


if __name__ == "__main__":
    main()
