"""All image models in one table: for each model and shared image set, train with defaults,
export FP32 and gated INT8 for ONNX Runtime, OpenVINO and TFLite, then measure accuracy
(FP32 through ONNX Runtime; INT8 as measured by the gate on the same test split), parameters,
FLOPs, bundle size and median model latency per runtime and precision (one runtime per
process, see latency.py). Also the FADeR-lite ablation: the same data and seed without the
attenuation MLPs. Writes bench/results/image_models.json and prints markdown for BENCHMARKS.md.

usage: python bench/run_models_bench.py [--models hetnet patchcore pbas fader] [--data DIR ...]
                                        [--work DIR] [--threads 2] [--no-ablation]

Runs, bundles and INT8 refusals (<bundle>_refused.json) already in WORK are reused (delete them
to start over)."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from run_int8_bench import DEFAULT_DATA, TARGETS, latency

HERE = Path(__file__).resolve().parent
MODELS = ["hetnet", "patchcore", "pbas", "fader"]
METRICS = ("image_auroc", "pixel_auroc", "aupro")


def trained(model: str, data: Path, run: Path, overrides: dict | None = None) -> dict:
    from edgead.tasks.image.train import train

    if not (run / "run.json").is_file():
        train(data, run, model=model, overrides=overrides)
    return json.loads((run / "run.json").read_text())


def exported(run: Path, bundle: Path, calib_size: int) -> dict:
    """FP32 + INT8 of every target; a refused INT8 is recorded with the gate's message."""
    from edgead.export import ExportError, export

    manifest_file, refused_file = bundle / "edgead.json", bundle.with_name(bundle.name + "_refused.json")
    arts = json.loads(manifest_file.read_text())["artefacts"] if manifest_file.is_file() else {}
    refused = json.loads(refused_file.read_text()) if refused_file.is_file() else {}
    missing = [t for t in TARGETS.values() if t not in arts]
    if missing:
        export(run, bundle, missing)
    for target in TARGETS.values():
        if f"{target}_int8" not in arts and target not in refused:
            try:
                export(run, bundle, [target], int8=True, calib_size=calib_size)
            except ExportError as e:
                refused[target] = str(e)
    refused_file.write_text(json.dumps(refused))
    return {"manifest": json.loads(manifest_file.read_text()), "refused": refused}


def bench_one(model: str, data: Path, work: Path, calib_size: int, threads: int) -> dict:
    from edgead.core.bundle import artefact_bytes
    from edgead.tasks.image.evaluate import evaluate

    run, bundle = work / f"{model}_{data.name}", work / f"{model}_{data.name}_bundle"
    cfg = trained(model, data, run)
    out = exported(run, bundle, calib_size)
    manifest = out["manifest"]
    ev = evaluate(bundle, data, runtime="onnxruntime", precision="fp32")
    row = {"model": model, "data": data.name, "train_s": cfg["train"]["seconds"], "complexity": cfg["complexity"],
           "fp32": {k: ev[k] for k in METRICS}, "runtimes": {}}
    for rt, target in TARGETS.items():
        entry = {}
        for precision, key in (("fp32", target), ("int8", f"{target}_int8")):
            art = manifest["artefacts"].get(key)
            if art is None:
                entry[precision] = {"refused": out["refused"].get(target, "absent")}
                continue
            entry[precision] = {"bytes": artefact_bytes(manifest, key), "ms": latency(bundle, rt, threads, precision)}
            if precision == "int8":
                gate = art["gate"]
                entry[precision].update({"gate": {k: gate[k] for k in ("chosen", "drop", "score_shift")},
                                         **{k: gate["int8"][k] for k in ("image_auroc", "pixel_auroc")}})
        row["runtimes"][rt] = entry
    print(json.dumps(row), flush=True)
    return row


def ablation(data: Path, work: Path) -> dict:
    from edgead.tasks.image.evaluate import evaluate

    row = {"data": data.name}
    for name, overrides in (("with", None), ("without", {"attenuation": False})):
        run = work / f"fader_{data.name}" if overrides is None else work / f"fader_noatt_{data.name}"
        cfg = trained("fader", data, run, overrides)
        ev = evaluate(run, data)
        row[name] = {**{k: ev[k] for k in METRICS}, "student_params": cfg["complexity"]["student_params"]}
    print(json.dumps({"ablation": row}), flush=True)
    return row


def _mb(b: int) -> str:
    return f"{b / 1e6:.2f}"


def markdown(results: list[dict], ablations: list[dict]) -> str:
    lines = ["| model | data | image AUROC | pixel AUROC | AUPRO | params (M) | GFLOPs | train s | "
             "size MB fp32 / int8 (ORT) | ORT ms fp32 / int8 | OpenVINO ms fp32 / int8 | TFLite ms fp32 / int8 | INT8 AUROC img / px (ORT) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["complexity"]
        params = c.get("teacher_params", 0) + c.get("student_params", 0) + c.get("bank_params", 0)
        cells = []
        for rt in TARGETS:
            e = r["runtimes"][rt]
            cells.append(" / ".join(f"{e[p]['ms']:.1f}" if "ms" in e[p] else "refused" for p in ("fp32", "int8")))
        ort = r["runtimes"]["onnxruntime"]
        size = " / ".join(_mb(ort[p]["bytes"]) if "bytes" in ort[p] else "refused" for p in ("fp32", "int8"))
        q = ort["int8"]
        int8_acc = f"{q['image_auroc']:.3f} / {q['pixel_auroc']:.3f}" if "image_auroc" in q else "refused"
        f = r["fp32"]
        lines.append(f"| {r['model']} | {r['data']} | {f['image_auroc']:.3f} | {f['pixel_auroc']:.3f} | {f['aupro']:.3f} | "
                     f"{params / 1e6:.2f} | {c['total_flops'] / 1e9:.2f} | {r['train_s']:.0f} | {size} | {' | '.join(cells)} | {int8_acc} |")
    if ablations:
        lines += ["", "| FADeR-lite | data | image AUROC | pixel AUROC | AUPRO | decoder params |", "|---|---|---|---|---|---|"]
        for a in ablations:
            for name in ("with", "without"):
                m = a[name]
                lines.append(f"| {name} attenuation | {a['data']} | {m['image_auroc']:.3f} | {m['pixel_auroc']:.3f} | "
                             f"{m['aupro']:.3f} | {m['student_params']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--data", nargs="*", default=[str(d) for d in DEFAULT_DATA])
    p.add_argument("--work", default=str(HERE / "work" / "models"))
    p.add_argument("--calib-size", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-ablation", action="store_true")
    p.add_argument("--results", default=str(HERE / "results" / "image_models.json"), help="JSON to write")
    a = p.parse_args()
    work = Path(a.work)
    results, ablations = [], []
    for data in map(Path, a.data):
        if not data.is_dir():
            print(f"skip {data}: absent", file=sys.stderr)
            continue
        for model in a.models:
            results.append(bench_one(model, data, work, a.calib_size, a.threads))
        if "fader" in a.models and not a.no_ablation:
            ablations.append(ablation(data, work))
    meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", *sys.argv]), "threads": a.threads}
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    Path(a.results).write_text(json.dumps({"meta": meta, "results": results, "ablation": ablations}, indent=1))
    print(markdown(results, ablations))


if __name__ == "__main__":
    main()
