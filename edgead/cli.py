"""The `edgead` command line: train | export | predict | eval | benchmark | demo."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED_ITEMS, EXIT_USAGE = 0, 1, 2
REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "examples" / "data" / "hazelnut_toy"


def _models_help() -> str:
    from .models import MODELS

    return "\n".join(f"  {name:<10} {why}" for name, (_, why) in MODELS.items())


def cmd_train(a: argparse.Namespace) -> int:
    from . import signal_cli
    from .train import train

    if signal_cli.is_signal_model(a.model):
        return signal_cli.cmd_train(a)
    cfg = train(a.data, a.out, model=a.model, epochs=a.epochs, image_size=a.image_size, seed=a.seed,
                holdout=a.holdout, resize=a.resize, val=a.val, threads=a.threads, overrides=_settings(a.set))
    th = cfg["thresholds"]["image"]
    print(f"trained {a.model} in {cfg['train']['seconds']} s on {cfg['train']['n_fit']} images "
          f"({cfg['train']['n_holdout']} held out for thresholds); image threshold "
          f"{th['values'][th['active']]:.4g} ({th['active']}); run written to {a.out}")
    return EXIT_OK


def _settings(pairs: list[str]) -> dict:
    """["max_bank=8192", "attenuation=false"] -> {"max_bank": 8192, "attenuation": False}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set max_bank=8192")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_eval(a: argparse.Namespace) -> int:
    from . import signal_cli
    from .evaluate import evaluate

    if signal_cli.task_of(a.source) == "signal":
        return signal_cli.cmd_eval(a)
    res = evaluate(a.source, a.data, runtime=a.runtime, precision=a.precision, threads=a.threads, save_maps=a.save_maps)
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>12}: {v:.4f}" if isinstance(v, float) else f"{k:>12}: {v}")
    return EXIT_OK


def _expand(paths: list[str]) -> list[Path]:
    from .data.images import IMAGE_SUFFIXES

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def cmd_predict(a: argparse.Namespace) -> int:
    from . import signal_cli
    from .predictor import Predictor
    from .preprocess import ImageReadError, read_image

    if signal_cli.task_of(a.bundle) == "signal":
        return signal_cli.cmd_predict(a)
    pred = Predictor(a.bundle, runtime=a.runtime, threads=a.threads, precision=a.precision)
    files = _expand(a.paths)
    if not files:
        raise ValueError(f"no images found in {' '.join(a.paths)}")
    failed = 0
    for f in files:
        try:
            img = read_image(f)
            res = pred.result(*pred.analyse(img), path=str(f))
        except (ImageReadError, ValueError) as e:
            failed += 1
            print(json.dumps({"path": str(f), "error": str(e)}) if a.json else f"ERROR {e}", flush=True)
            continue
        if a.save_maps:
            from .visualize import save_overlay

            save_overlay(Path(a.save_maps) / (f.stem + ".png"), img, res)
        if a.json:
            print(json.dumps(res.to_json()), flush=True)
        else:
            print(f"{'ANOMALY' if res.is_anomalous else 'ok     '} score={res.score:.3f} raw={res.raw_score:.4g}  {f}", flush=True)
    if failed:
        print(f"edgead: {failed} of {len(files)} images could not be scored", file=sys.stderr)
        return EXIT_FAILED_ITEMS
    return EXIT_OK


def cmd_export(a: argparse.Namespace) -> int:
    from .bundle import artefact_bytes
    from .export import export

    targets = [t for spec in a.target for t in spec.split(",") if t]
    manifest = export(a.run, a.out, targets, int8=a.int8, calib=a.calib, calib_size=a.calib_size,
                      max_drop=a.max_drop, max_shift=a.max_shift, val=a.val)
    for t in targets:
        art = manifest["artefacts"][t]
        print(f"{t:>8}: {art['file']} ({artefact_bytes(manifest, t) / 1e6:.1f} MB, {art['precision']}, "
              f"max |diff| vs torch {art['max_abs_diff_vs_torch']:.2g})")
        if a.int8:
            q = manifest["artefacts"][f"{t}_int8"]
            g = q["gate"]
            drop = "n/a (no anomalies)" if g["drop"] is None else f"{g['drop']:.4f}"
            print(f"{t + '_int8':>13}: {q['file']} ({artefact_bytes(manifest, f'{t}_int8') / 1e6:.1f} MB, int8, AUROC drop {drop}, "
                  f"score shift {g['score_shift']:.4f}; {g['chosen']})")
    print(f"bundle written to {a.out}")
    return EXIT_OK


def cmd_benchmark(a: argparse.Namespace) -> int:
    from .benchmark import format_table, parse_list, run_benchmark

    report = run_benchmark(a.bundle, parse_list(a.runtimes), parse_list(a.threads, int), a.data, a.n, a.warmup,
                           parse_list(a.precisions), a.device, a.timeout,
                           log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(report))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(report, indent=1))
        print(f"report written to {a.json}")
    return EXIT_FAILED_ITEMS if any(r["status"] == "failed" for r in report["rows"]) else EXIT_OK


def cmd_demo(a: argparse.Namespace) -> int:
    import runtimes

    from .evaluate import evaluate
    from .export import export
    from .predictor import Predictor
    from .train import train

    data = Path(a.data) if a.data else DEMO_DATA
    out = Path(a.out)
    print(f"[1/4] training hetnet on {data}/train/good (normal images only)", flush=True)
    cfg = train(data, out / "run", model="hetnet", epochs=a.epochs)
    print(f"      {cfg['train']['seconds']} s; complexity {cfg['complexity']}", flush=True)
    print(f"[2/4] evaluating on {data}/test; heat-map overlays in {out / 'maps'}", flush=True)
    print("      " + json.dumps(evaluate(out / "run", data, save_maps=out / "maps")), flush=True)
    pairs = [(t, rt) for t, rt in (("onnx", "onnxruntime"), ("openvino", "openvino"), ("tflite", "tflite")) if runtimes.available(rt)]
    targets = [t for t, _ in pairs]
    print(f"[3/4] exporting {', '.join(targets)} to {out / 'bundle'}", flush=True)
    export(out / "run", out / "bundle", targets)
    print("[4/4] the same test images on every runtime, through the torch-free Predictor", flush=True)
    images = _expand([str(data / "test")])
    for rt in ["torch"] + [rt for _, rt in pairs]:
        pred = Predictor(out / "run" if rt == "torch" else out / "bundle", runtime=rt)
        res = pred.predict(images)
        flagged = sum(r.is_anomalous for r in res)
        print(f"      {rt:>12}: {flagged}/{len(res)} flagged, first scores {[round(r.score, 3) for r in res[:4]]}", flush=True)
    print(f"done: run, bundle and overlays in {out}/")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from . import signal_cli

    p = argparse.ArgumentParser(prog="edgead", description="Anomaly detection and localisation for edge devices.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on normal images", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train on DATA/train/good (MVTec layout) or DATA/good.\n\nmodels, and when to pick each:\n" + _models_help())
    t.add_argument("--model", default="hetnet", help="model name (see above)")
    t.add_argument("--data", required=True, help="data folder")
    t.add_argument("--out", required=True, help="run folder to write")
    t.add_argument("--epochs", type=int, default=None, help="passes over the training images (default: the model's own)")
    t.add_argument("--image-size", type=int, default=256)
    t.add_argument("--resize", choices=["letterbox", "stretch"], default="letterbox",
                   help="letterbox keeps the aspect ratio (default); stretch squashes to a square")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--holdout", type=float, default=0.15, help="fraction of normal images held out for thresholds")
    t.add_argument("--val", default=None, help="labelled validation folder: adds F1-adaptive thresholds")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model setting, repeatable (e.g. --set max_bank=8192 for patchcore); "
                        "an unknown key lists the model's settings")
    signal_cli.add_train_options(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="metrics of a run or bundle on labelled data")
    e.add_argument("source", help="run folder or bundle folder")
    e.add_argument("--data", required=True)
    e.add_argument("--runtime", default="auto")
    e.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--save-maps", default=None, help="folder for heat-map overlays (PNG)")
    e.add_argument("--data-kind", default=None, help="signal data: ucr, wfdb, nab, csv or npy (default: from the file)")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="export a run to a bundle for ONNX Runtime, OpenVINO or TFLite")
    x.add_argument("run", help="run folder from `edgead train`")
    x.add_argument("--target", action="append", required=True,
                   help="onnx, openvino or tflite; repeat (or comma-separate) for several")
    x.add_argument("--out", required=True, help="bundle folder (created, or extended with new targets)")
    x.add_argument("--int8", action="store_true",
                   help="also write an INT8 artefact per target (<target>_int8), gated on accuracy")
    x.add_argument("--calib", default=None, help="INT8 calibration images: a data set or any folder of normal "
                   "images (default: the run's training images)")
    x.add_argument("--calib-size", type=int, default=None, help="number of calibration images (default 200)")
    x.add_argument("--max-drop", type=float, default=0.01,
                   help="largest accepted INT8 loss of image or pixel AUROC vs FP32 (default 0.01 = 1 point)")
    x.add_argument("--max-shift", type=float, default=0.05, help="largest accepted mean change of the normalised "
                   "score (0.5 = threshold) of normal images vs FP32 (default 0.05)")
    x.add_argument("--val", default=None, help="INT8 validation data (default: the run's test split if it has "
                   "anomalies, else normal images held out from training)")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("predict", help="score images with a bundle")
    r.add_argument("bundle", help="bundle folder (or a run folder, on torch)")
    r.add_argument("paths", nargs="+", help="image files or folders")
    r.add_argument("--runtime", default="auto")
    r.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--json", action="store_true", help="one JSON line per image")
    r.add_argument("--save-maps", default=None, help="folder for heat-map overlays (PNG); signals: point scores (CSV)")
    r.add_argument("--data-kind", default=None, help="signal files: ucr, wfdb, nab, csv or npy (default: from the file)")
    r.set_defaults(func=cmd_predict)

    b = sub.add_parser("benchmark", help="size, load time, latency, memory and AUROC of a bundle on each runtime")
    b.add_argument("bundle", help="bundle folder")
    b.add_argument("--runtimes", default=None, help="comma-separated, e.g. onnxruntime,openvino,tflite (default: all in the bundle)")
    b.add_argument("--threads", default=None, help="comma-separated thread counts, e.g. 1,2,4 (default: 1 and all cores)")
    b.add_argument("--precisions", default=None, help="comma-separated, e.g. fp32,int8 (default: all in the bundle)")
    b.add_argument("--data", default=None, help="labelled data (MVTec or good/ + bad/): time its images and add AUROCs")
    b.add_argument("--n", type=int, default=200, help="timed runs per case")
    b.add_argument("--warmup", type=int, default=20, help="untimed runs first")
    b.add_argument("--device", default=None, help="runtime device, e.g. cuda or tensorrt (onnxruntime), GPU (openvino)")
    b.add_argument("--timeout", type=float, default=None, help="seconds allowed per case")
    b.add_argument("--json", default=None, metavar="OUT", help="also write the report (with the machine's description) here")
    b.set_defaults(func=cmd_benchmark)

    d = sub.add_parser("demo", help="train, evaluate and export on the embedded hazelnut sample")
    d.add_argument("--data", default=None, help=f"data folder (default: {DEMO_DATA})")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--epochs", type=int, default=None)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .bundle import BundleError
    from .data.images import DataError
    from .export import ExportError
    from .preprocess import ImageReadError
    from .run import RunError

    try:
        return args.func(args)
    except (DataError, ImageReadError, RunError, BundleError, ExportError, FileExistsError, FileNotFoundError, ImportError, ValueError) as e:
        print(f"edgead {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("edgead: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
