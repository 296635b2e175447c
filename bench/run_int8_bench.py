"""INT8 vs FP32 benchmark: for HetNet-lite runs (trained with defaults) on the shared image sets,
export FP32 + gated INT8 for ONNX Runtime, OpenVINO and TFLite, then measure per runtime and
precision: artefact size, median latency at 1 and 2 threads (one runtime per process, see
latency.py), image/pixel AUROC and AUPRO. Prints markdown for BENCHMARKS.md and writes
bench/results/int8_hetnet.json.

usage: python bench/run_int8_bench.py [--data DIR ...] [--runs DIR] [--out DIR] [--calib-size N]

A run is taken from RUNS/hetnet_<data name> when it holds run.json, else trained into OUT."""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from edgead import targets as target_table

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "images"
DEFAULT_DATA = [SHARED / "hazelnut_toy", SHARED / "magnetic_tile"]
TARGETS = {t.runtime: t.name for t in target_table.TARGETS.values()}  # runtime -> target


def latency(bundle: Path, runtime: str, threads: int, precision: str) -> float:
    out = subprocess.run([sys.executable, str(HERE / "latency.py"), str(bundle), runtime, str(threads), "50", precision],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["model_ms"]


def run_for(data: Path, runs: Path, out: Path) -> Path:
    from edgead.tasks.image.train import train

    for folder in (runs / f"hetnet_{data.name}", out / f"hetnet_{data.name}"):
        if (folder / "run.json").is_file():
            return folder
    train(data, out / f"hetnet_{data.name}", model="hetnet")
    return out / f"hetnet_{data.name}"


def bench_one(data: Path, run: Path, bundle: Path, calib_size: int) -> dict:
    from edgead.core.bundle import artefact_bytes
    from edgead.tasks.image.evaluate import evaluate
    from edgead.export import ExportError, export

    row: dict = {"data": data.name, "run": str(run), "runtimes": {}}
    export(run, bundle, list(TARGETS.values()))  # FP32 first: a refused INT8 export writes nothing
    for rt, target in TARGETS.items():
        t = time.time()
        try:
            export(run, bundle, [target], int8=True, calib_size=calib_size)
            error = None
        except ExportError as e:
            error = str(e)
        entry = {"export_s": round(time.time() - t, 1), "error": error}
        manifest = json.loads((bundle / "edgead.json").read_text()) if (bundle / "edgead.json").is_file() else {}
        for precision, key in (("fp32", target), ("int8", f"{target}_int8")):
            art = manifest.get("artefacts", {}).get(key)
            if art is None:
                continue
            ev = evaluate(bundle, data, runtime=rt, precision=precision)
            entry[precision] = {
                "bytes": artefact_bytes(manifest, key),
                "image_auroc": ev["image_auroc"], "pixel_auroc": ev["pixel_auroc"], "aupro": ev["aupro"],
                "ms_1t": latency(bundle, rt, 1, precision), "ms_2t": latency(bundle, rt, 2, precision),
            }
            if precision == "int8":
                gate = art["gate"]
                entry[precision]["gate"] = {k: gate[k] for k in ("chosen", "drop", "score_shift", "limits")}
        row["runtimes"][rt] = entry
        print(json.dumps({rt: entry}), flush=True)
    return row


def markdown(results: list[dict]) -> str:
    lines = ["| data | runtime | precision | size MB | ms (1 thread) | ms (2 threads) | image AUROC | pixel AUROC | AUPRO | INT8 gate |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results:
        for rt, e in row["runtimes"].items():
            for p in ("fp32", "int8"):
                if p not in e:
                    if p == "int8" and e.get("error"):
                        lines.append(f"| {row['data']} | {rt} | int8 | refused by the gate: {e['error'][:160]} |||||||")
                    continue
                m = e[p]
                gate = ""
                if p == "int8":
                    g = m["gate"]
                    drop = "n/a" if g["drop"] is None else f"{g['drop']:.4f}"
                    gate = f"drop {drop}, shift {g['score_shift']:.3f}; {g['chosen']}"
                lines.append(f"| {row['data']} | {rt} | {p} | {m['bytes'] / 1e6:.2f} | {m['ms_1t']:.2f} | {m['ms_2t']:.2f} | "
                             f"{m['image_auroc']:.4f} | {m['pixel_auroc']:.4f} | {m['aupro']:.4f} | {gate} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="*", default=[str(d) for d in DEFAULT_DATA])
    p.add_argument("--runs", default=str(HERE / "work"), help="where default-trained runs hetnet_<data> may already be")
    p.add_argument("--out", default=str(HERE / "work" / "int8"), help="bundles (and runs trained here)")
    p.add_argument("--calib-size", type=int, default=200)
    a = p.parse_args()
    results = []
    for data in map(Path, a.data):
        if not data.is_dir():
            print(f"skip {data}: absent", file=sys.stderr)
            continue
        out = Path(a.out)
        run = run_for(data, Path(a.runs), out)
        results.append(bench_one(data, run, out / f"hetnet_{data.name}_bundle", a.calib_size))
    meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", *sys.argv])}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "int8_hetnet.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
