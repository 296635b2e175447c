"""MMAE-lite's scores fused with a window nearest-neighbour distance, on runs that
bench/compare_signal_peers.py trained (issue 24): the bank is the fit part's normalised windows at
stride hop / DIV; each score is divided by its mean on the hold-out part; "nn" is the distance
alone, "sum" and "max" combine it with MMAE-lite's point scores.

usage: python bench/signal_fusion.py bench/work/signal_peers/default/mmae ecg5000,mitbih100,... [DIV] [K]
prints one JSON line per data set and mode"""
import json
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_signal_peers import DATASETS, METRICS
from edgead.core.run import read_run_config
from edgead.tasks.signal.data import SampleSet, load_signal, split_samples
from edgead.tasks.signal.evaluate import evaluate_windows
from edgead.tasks.signal.predictor import SignalPredictor
from edgead.tasks.signal.preprocess import SignalSpec, cut_windows, normalize, resample, window_starts
from sklearn.neighbors import NearestNeighbors

def parts(cfg, data, stride_div):
    spec = SignalSpec.from_json(cfg["input"]); split = cfg["train"]["split"]
    names = list(spec.channel_names) if split["kind"] == "series" else None
    d = load_signal(data, None, split.get("normal_class", "1"), names)
    if isinstance(d, SampleSet):
        sp = split_samples(d.labels, split["train_fraction"], split["holdout"], split["seed"])
        return normalize(d.values[sp["fit"]], spec), normalize(d.values[sp["holdout"]], spec)
    x = resample(d.values, d.rate, spec.rate)
    fit, hold = x[:split["fit_end"]], x[split["fit_end"]:split["train_end"]]
    stride = max(1, spec.hop // stride_div)
    bank = normalize(cut_windows(fit, window_starts(len(fit), spec.length, stride)[0], spec.length), spec)
    h = normalize(cut_windows(hold, window_starts(len(hold), spec.length, spec.hop)[0], spec.length), spec)
    return bank, h

class Fused:
    name = "peer"; output_names = ["point_score", "window_score"]; input_shapes = {}
    def __init__(self, mmae, nn, ds, mode, L, k):
        self.mmae, self.nn, self.ds, self.mode, self.L, self.k = mmae, nn, ds, mode, L, k
    def run(self, feeds):
        x = next(iter(feeds.values()))
        out = self.mmae.run(feeds)
        p = out["point_score"]
        d = self.nn.kneighbors(x.reshape(len(x), -1))[0].mean(1) / self.ds
        if self.mode == "nn":
            p = np.repeat(d[:, None], self.L, 1)
        elif self.mode == "sum":
            p = p + d[:, None]
        elif self.mode == "max":
            p = np.maximum(p, d[:, None])
        return {"point_score": p.astype(np.float32), "window_score": p.mean(1).astype(np.float32)}

work = Path(sys.argv[1]); names = sys.argv[2].split(","); div = int(sys.argv[3]) if len(sys.argv) > 3 else 4
k = int(sys.argv[4]) if len(sys.argv) > 4 else 1
for name in names:
    run = work / name
    cfg = read_run_config(run)
    bank, hold = parts(cfg, DATASETS[name], div)
    nn = NearestNeighbors(n_neighbors=k).fit(bank.reshape(len(bank), -1))
    ds = float(nn.kneighbors(hold.reshape(len(hold), -1))[0].mean(1).mean())
    base = SignalPredictor(run)
    for mode in ("nn", "sum", "max"):
        pred = SignalPredictor.from_backend(cfg, Fused(base.backend, nn, ds, mode, cfg["input"]["length"], k), target="x")
        res = evaluate_windows(pred, DATASETS[name])[0]
        print(json.dumps({"data": name, "mode": mode, "bank": len(bank), **{kk: (None if res.get(kk) is None else round(res[kk], 3)) for kk in METRICS}}), flush=True)
