"""Signal benchmark (issue 6): MMAE-lite on UCR ECG5000, MIT-BIH record 100 and a few NAB series.

Per data set: train with the stated settings, evaluate on the recorded test part (torch), and for
ECG5000 and MIT-BIH also export ONNX / OpenVINO / TFLite, evaluate each runtime, measure the
window-score parity with torch and the latency per window (one runtime per process).
Writes bench/results/signal_mmae.json and prints markdown for BENCHMARKS.md.

usage: python bench/run_signal_bench.py [--out DIR] [--only ecg5000,mitbih,nab] [--threads 1] [--reuse] [--markdown]"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgead import targets as target_table

HERE = Path(__file__).resolve().parent
SIGNALS = HERE.parent.parent / "shared" / "data" / "signals"
RUNTIMES = [(t.name, t.runtime) for t in target_table.TARGETS.values()]
NAB_SERIES = ["realKnownCause/nyc_taxi.csv", "realKnownCause/ambient_temperature_system_failure.csv",
              "realKnownCause/machine_temperature_system_failure.csv",
              "realKnownCause/ec2_request_latency_system_failure.csv",
              "realKnownCause/cpu_utilization_asg_misconfiguration.csv", "artificialWithAnomaly/art_daily_jumpsup.csv"]
SETS = {
    "ecg5000": {"data": SIGNALS / "ecg5000_train/ECG5000_TRAIN.txt", "train": {}, "export": True},
    "mitbih": {"data": SIGNALS / "mitbih_wfdb_sample/100", "train": {"rate": 120, "window": 256, "hop": 64},
               "export": True},
    "mitbih_w512": {"data": SIGNALS / "mitbih_wfdb_sample/100", "train": {"rate": 120, "window": 512, "hop": 128},
                    "export": False},  # twice the context (4.3 s) at 2.2x the FLOPs: torch only
}
NAB_TRAIN = {"window": 128, "hop": 32, "train_fraction": 0.3}
NAB_NORMS = ("window", "global")  # z-score per window hides level shifts; training mean/std keeps them


def latency(source: Path, runtime: str, threads: int, precision: str = "fp32") -> dict:
    out = subprocess.run([sys.executable, str(HERE / "signal_latency.py"), str(source), runtime, str(threads), "200",
                          precision if runtime != "torch" else "auto"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def parity(run: Path, bundle: Path, data: Path, runtime: str) -> float:
    """Max relative difference of window scores, runtime vs torch, on the data's test part."""
    from edgead.tasks.signal.evaluate import evaluate_signal
    from edgead.tasks.signal.predictor import SignalPredictor

    scores = {}
    for name, src, rt in (("torch", run, "torch"), (runtime, bundle, runtime)):
        pred = SignalPredictor(src, runtime=rt, precision="fp32")
        seen = []
        orig = pred.raw_scores

        def spy(x, orig=orig, seen=seen):
            p, w = orig(x)
            seen.append(w)
            return p, w

        pred.raw_scores = spy
        evaluate_signal(src, data, predictor=pred)
        scores[name] = np.concatenate(seen)
    ref, got = scores["torch"], scores[runtime]
    return float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12)))


def int8_rows(run: Path, bundle: Path, fp32: dict, max_drop: float = 0.01, max_shift: float = 0.05) -> dict:
    """INT8 per target through the product path (`edgead export --int8`'s session and accuracy
    gate: AUROC drop <= max_drop and normal score shift <= max_shift, repairs keep layers near the
    output in float), added to the FP32 bundle; the gate's record says what was tried."""
    import tempfile

    from edgead.core import bundle as bundle_io
    from edgead.core.bundle import artefact_bytes
    from edgead.core.run import read_run_config
    from edgead.tasks import get as get_task
    from quant.gate import GateFailed
    from quant.int8 import Int8Session

    cfg = read_run_config(run)
    task = get_task("signal")
    session = Int8Session(cfg, task.int8_data(cfg), task.predictor_class())
    manifest = json.loads((bundle / "edgead.json").read_text())
    out = {}
    for target, rt in RUNTIMES:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.time()
            try:
                files, meta = session.quantize(target, bundle / manifest["artefacts"][target]["file"], Path(tmp),
                                               max_drop=max_drop, max_shift=max_shift)
            except GateFailed as e:
                out[rt] = {"gate": "failed", "message": str(e), "attempts": e.record["attempts"]}
                print("int8", rt, "gate failed:", e, flush=True)
                continue
            bundle_io.add_artefacts(bundle, target + "_int8", {n: str(p) for n, p in files.items()}, meta)
        g = meta["gate"]
        out[rt] = {"chosen": g["chosen"], "sample_auroc": g["int8"]["sample_auroc"], "drop": g["drop"],
                   "score_shift": g["score_shift"], "seconds": round(time.time() - t, 1),
                   "attempts": [{k: a.get(k) for k in ("name", "drop", "score_shift")} for a in g["attempts"]],
                   "bytes": artefact_bytes(json.loads((bundle / "edgead.json").read_text()), target + "_int8"),
                   "latency": latency(bundle, rt, 1, "int8")}
        print("int8", rt, json.dumps(out[rt]), flush=True)
    return out


def bench_set(name: str, data: Path, train_kw: dict, out: Path, threads: int, export_targets: bool,
              reuse: bool = False) -> dict:
    from edgead.core.bundle import artefact_bytes
    from edgead.export import export
    from edgead.tasks.signal.evaluate import evaluate_signal
    from edgead.tasks.signal.train import train_signal

    run, bundle = out / f"mmae_{name}", out / f"mmae_{name}_bundle"
    t = time.time()
    if reuse and (run / "run.json").is_file():
        cfg = json.loads((run / "run.json").read_text())
        t = time.time() - cfg["train"]["seconds"]
    else:
        cfg = train_signal(data, run, threads=threads, **train_kw)
    row = {"data": name, "source": str(data), "train_settings": train_kw, "train_s": round(time.time() - t, 1),
           "split": cfg["train"]["split"], "complexity": cfg["complexity"], "steps": cfg["model"]["config"]["steps"],
           "torch": evaluate_signal(run, data)}
    print(name, json.dumps(row["torch"]), flush=True)
    if not export_targets:
        return row
    if not (reuse and (bundle / "edgead.json").is_file()):
        export(run, bundle, [t for t, _ in RUNTIMES])
    manifest = json.loads((bundle / "edgead.json").read_text())
    row["bundle_bytes"] = {t: artefact_bytes(manifest, t) for t in manifest["artefacts"]}
    row["latency"] = {"torch": latency(run, "torch", 1)}
    for target, rt in RUNTIMES:
        row[rt] = evaluate_signal(bundle, data, runtime=rt, precision="fp32")
        row[rt]["window_score_max_rel_diff_vs_torch"] = parity(run, bundle, data, rt)
        row["latency"][rt] = latency(bundle, rt, 1)
        print(name, rt, row[rt]["window_score_max_rel_diff_vs_torch"], row["latency"][rt], flush=True)
    try:
        row["int8"] = int8_rows(run, bundle, row)
    except Exception as e:  # the INT8 tools are optional; say what failed
        row["int8"] = {"error": f"{type(e).__name__}: {e}"}
        print("int8 failed:", row["int8"]["error"], flush=True)
    return row


def _f(v, fmt=".3f") -> str:
    return "—" if v is None else format(v, fmt)


def markdown(report: dict) -> str:
    """Tables for BENCHMARKS.md from a report."""
    rows = report["rows"]
    out = ["| data | split (test part) | sample AUROC | point AUROC | F1-max | beat AUROC | train s |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        t, sp = r["torch"], r["split"]
        if sp["kind"] == "samples":
            split = f"{sp['n_fit']}+{sp['n_holdout']} normal train (seed {sp['seed']}); test {sp['n_test']}"
        else:
            split = f"first {sp['train_fraction']:.0%} trains; test {sp['n'] - sp['train_end']} samples"
        out.append(f"| {r['data']} | {split} | {_f(t.get('sample_auroc'))} | {_f(t.get('point_auroc'))} | "
                   f"{_f(t.get('f1_max'))} | {_f(t.get('beat_auroc'))} | {r['train_s']} |")
    out += ["", "| data | runtime | precision | sample AUROC | max rel. diff of window scores vs torch | "
            "model ms / window | score_windows ms | stream push ms (1 window) | artefact MB |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "latency" not in r:
            continue
        lt = r["latency"]["torch"]
        out.append(f"| {r['data']} | torch | fp32 | {_f(r['torch']['sample_auroc'])} | — | {lt['model_ms']:.2f} | "
                   f"{lt['window_ms']:.2f} | {lt['push_ms']:.2f} | — |")
        for target, rt in RUNTIMES:
            e, lt = r[rt], r["latency"][rt]
            out.append(f"| {r['data']} | {rt} | fp32 | {_f(e['sample_auroc'])} | "
                       f"{e['window_score_max_rel_diff_vs_torch']:.1e} | {lt['model_ms']:.2f} | {lt['window_ms']:.2f} | "
                       f"{lt['push_ms']:.2f} | {r['bundle_bytes'][target] / 1e6:.2f} |")
            q = r.get("int8", {}).get(rt)
            if q and "latency" in q:
                out.append(f"| {r['data']} | {rt} | int8 ({q['chosen']}) | {_f(q['sample_auroc'])} "
                           f"(drop {q['drop']:+.4f}, shift {q['score_shift']:.3f}) | — | {q['latency']['model_ms']:.2f} | "
                           f"{q['latency']['window_ms']:.2f} | {q['latency']['push_ms']:.2f} | {q['bytes'] / 1e6:.2f} |")
            elif q:
                out.append(f"| {r['data']} | {rt} | int8 | gate failed: {q.get('message', q)} | | | | | |")
    return "\n".join(out)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores visible, Python {platform.python_version()}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="/tmp/edgead_signal_bench")
    p.add_argument("--only", default="ecg5000,mitbih,nab")
    p.add_argument("--threads", type=int, default=1, help="training threads")
    p.add_argument("--reuse", action="store_true", help="keep runs and bundles already in --out (re-measure only)")
    p.add_argument("--markdown", action="store_true", help="only print the tables of bench/results/signal_mmae.json")
    a = p.parse_args()
    if a.markdown:
        print(markdown(json.loads((HERE / "results/signal_mmae.json").read_text())))
        return
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.only.split(","):
        if name == "nab":
            for series in NAB_SERIES:
                path = SIGNALS / "nab/data" / series
                for norm in NAB_NORMS if path.is_file() else ():
                    rows.append(bench_set(f"nab_{Path(series).stem}_{norm}", path, {**NAB_TRAIN, "norm": norm},
                                          out, a.threads, False, a.reuse))
            continue
        s = SETS[name]
        if not Path(str(s["data"]) + ("" if Path(s["data"]).suffix else ".hea")).exists():
            print(f"skip {name}: {s['data']} absent", file=sys.stderr)
            continue
        rows.append(bench_set(name, s["data"], s["train"], out, a.threads, s["export"], a.reuse))
    report = {"machine": machine(), "load_average_at_end": list(os.getloadavg()),
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    path = res / "signal_mmae.json"
    if path.is_file():  # keep the rows of data sets not re-run this time
        done = {r["data"] for r in rows}
        kept = [r for r in json.loads(path.read_text())["rows"] if r["data"] not in done]
        report["rows"] = sorted(kept + rows, key=lambda r: r["data"])
    path.write_text(json.dumps(report, indent=1))
    print(markdown(report))


if __name__ == "__main__":
    main()
