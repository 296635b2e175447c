"""The `edgead` command line: train | export | predict | eval | benchmark | demo, and the tasks'
own commands (synth3d)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from edgead.core.errors import DataError, EdgeadError, UsageError
from edgead.models import DEFAULT_MODEL

EXIT_OK, EXIT_FAILED_ITEMS, EXIT_USAGE = 0, 1, 2
_OWNED: dict[str, dict[str, tuple[str, str]]] = {}  # command -> dest -> (task, flag)
REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "examples" / "data" / "hazelnut_toy"


THRESHOLD_HELP = ("the threshold instead of the trained one (image; window for signals; cloud for point clouds): "
                  "raw:X a raw score, score:Y a normalised score (0.5 = the trained threshold, e.g. score:0.6 "
                  "flags fewer parts; each product moves by its own scale), or a bare raw score X")


def _override(text: str):
    """argparse type of --threshold: a bad value is a usage error (exit 2) saying what is accepted."""
    from edgead.core.thresholds import Override

    try:
        return Override.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _models_help() -> str:
    from edgead.models import MODELS

    width = max(len(m.task) for m in MODELS.values())
    return "\n".join(f"  {name:<10} {m.task:<{width}} {m.why}" for name, m in MODELS.items())


def _foreign_flags(a: argparse.Namespace, task) -> None:
    """A flag of another task's models is a usage error naming the flag and this task."""
    what = f"model {a.model}" if a.command == "train" else getattr(a, "source", None) or getattr(a, "bundle", "")
    for dest, (owner, flag) in _OWNED[a.command].items():
        if owner != task.name and getattr(a, dest, None) is not None:
            raise UsageError(f"{flag} is for {owner} models, but {what} is a {task.name} one; leave it out "
                             f"(see `edgead {a.command} --help`)")


def _predictor(task, source: str, a: argparse.Namespace):
    """The task's predictor for `source` with the flags every scoring command has."""
    device = getattr(a, "device", None)
    pred = task.predictor(source, runtime=a.runtime, threads=a.threads, precision=a.precision,
                          **({"device": device} if device else {}))
    if a.threshold is not None:
        pred.set_threshold(a.threshold)
    return pred


def cmd_train(a: argparse.Namespace) -> int:
    from edgead.tasks import for_model

    task = for_model(a.model)
    _foreign_flags(a, task)
    return task.cli_train(a)


def cmd_eval(a: argparse.Namespace) -> int:
    from edgead.tasks import for_path

    task = for_path(a.source)
    _foreign_flags(a, task)
    pred = _predictor(task, a.source, a)
    res = {**task.evaluate(pred, a.data, **task.eval_options(a)), "chosen": pred.choice.reason}
    if a.json:
        print(json.dumps(res))
    else:
        per = res.pop("products", None)
        width = max(map(len, res))
        for k, v in res.items():
            print(f"{k:>{width}}: {v:.4f}" if isinstance(v, float) else f"{k:>{width}}: {v}")
        if per:
            print(_product_table(per))
    return EXIT_OK


def _product_table(per: dict) -> str:
    """Per-product figures of a unified model's evaluation, one line each."""
    keys = ("n_images", "image_auroc", "pixel_auroc", "aupro")
    width = max(len("product"), *map(len, per))
    fmt = lambda v: f"{v:>11.4f}" if isinstance(v, float) else f"{'-' if v is None else v:>11}"  # noqa: E731
    lines = [f"{'product':<{width}} " + " ".join(f"{k:>11}" for k in keys)]
    lines += [f"{p:<{width}} " + " ".join(fmt(m.get(k)) for k in keys) for p, m in per.items()]
    return "\n".join(lines)


def cmd_predict(a: argparse.Namespace) -> int:
    from edgead.tasks import for_path

    task = for_path(a.bundle)
    _foreign_flags(a, task)
    if a.engine == "ray":
        return cmd_predict_ray(a, task)
    ray_only = [f for f, given in (("--out", a.out is not None), ("--workers", a.workers is not None),
                                    ("--address", a.address is not None), ("--format", a.format is not None)) if given]
    if ray_only:
        raise UsageError(f"{ray_only[0]} is for --engine ray (results written as files); locally, predict prints "
                         "them: redirect them, e.g. edgead predict ... --json > results.jsonl")
    pred = _predictor(task, a.bundle, a)
    options = task.predict_options(a)
    task.check_predict(pred, **options)
    named = task.input_files(a.paths)
    maps = Path(a.save_maps) if a.save_maps else None
    print(f"edgead predict: scoring with {pred.choice.reason}", file=sys.stderr, flush=True)
    by = pred.scored_by()
    failed = 0
    for path, name in named:
        try:
            res = task.score_file(pred, path, name, maps, **options)
        except (DataError, ValueError, OSError) as e:
            failed += 1
            print(json.dumps({"path": str(path), "error": str(e)}) if a.json else f"ERROR {path}: {e}", flush=True)
            continue
        if a.json:
            print("\n".join(json.dumps({**row, **by}) for row in res.rows), flush=True)
        else:
            print(res.line, flush=True)
    if failed:
        print(f"edgead: {failed} of {len(named)} inputs could not be scored", file=sys.stderr)
        return EXIT_FAILED_ITEMS
    return EXIT_OK


def beside(out: str | Path, suffix: str) -> Path:
    """The file OUT<suffix> next to the output folder OUT (its parent created if need be)."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent / (out.name + suffix)


def cmd_predict_ray(a: argparse.Namespace, task) -> int:
    """`edgead predict --engine ray`: the archive scored by Predictor actors on a Ray cluster."""
    from edgead.core.quiet import quiet
    from edgead.engines.ray_scoring import ArchiveJob, score_archive

    if a.out is None:
        raise UsageError("--engine ray writes its results to files: give --out DIR")
    job = ArchiveJob(bundle=a.bundle, paths=list(a.paths), out=Path(a.out), fmt=a.format or "jsonl", workers=a.workers,
                     address=a.address, runtime=a.runtime, precision=a.precision, threads=a.threads or 1,
                     threshold=a.threshold, maps=bool(a.save_maps), device=a.device, options=task.predict_options(a))
    log = beside(job.out, ".ray.log")  # Ray's own output, beside the results
    with quiet(log) as say:
        summary = score_archive(job, log=say)
    print(f"{summary.line()}; Ray's own output is in {log}")
    return EXIT_FAILED_ITEMS if summary.failed else EXIT_OK


def cmd_slim(a: argparse.Namespace) -> int:
    from edgead.core.bundle import artefact_bytes, load_manifest, slim

    keep = [t.strip() for v in a.target for t in v.split(",") if t.strip()]
    out = slim(a.bundle, a.out, keep)
    m = load_manifest(out)
    print(f"wrote {out}: {', '.join(f'{t} ({artefact_bytes(m, t) / 1e6:.1f} MB)' for t in keep)}; copy the folder "
          "to the device")
    return EXIT_OK


def cmd_export(a: argparse.Namespace) -> int:
    from edgead import targets as target_table
    from edgead.core.bundle import artefact_bytes
    from edgead.core.quiet import quiet
    from edgead.export import export

    targets = target_table.parse(a.target)
    log = beside(a.out, ".export.log")  # not in the bundle: it names local folders
    started = time.perf_counter()
    try:
        with quiet(log, verbose=a.verbose) as say:
            manifest = export(a.run, a.out, targets, int8=a.int8, calib=a.calib, calib_size=a.calib_size,
                              max_drop=a.max_drop, max_shift=a.max_shift, val=a.val, log=say)
    except BaseException:
        if not a.verbose:
            print(f"edgead export: the converters' own output is in {log}", file=sys.stderr)
        raise
    keys = [k for t in targets for k in (t, target_table.get(t).int8_key) if k in manifest["artefacts"]]
    for key in keys:
        art = manifest["artefacts"][key]
        print(f"{key}: {art['file']}, {artefact_bytes(manifest, key) / 1e6:.1f} MB, {art['precision']}")
    print(f"bundle written to {a.out} in {time.perf_counter() - started:.0f} s"
          + ("" if a.verbose else f"; the converters' own output is in {log}"))
    return EXIT_OK


def cmd_benchmark(a: argparse.Namespace) -> int:
    from edgead.benchmark import format_table, parse_list, run_benchmark

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

    from edgead import targets as target_table
    from edgead.core.quiet import quiet
    from edgead.export import export
    from edgead.tasks.image.cli import expand
    from edgead.tasks.image.evaluate import evaluate
    from edgead.tasks.image.predictor import Predictor
    from edgead.tasks.image.train import train

    if a.data is None and not DEMO_DATA.is_dir():
        raise UsageError(f"the demo's sample images ship with the source checkout ({DEMO_DATA.relative_to(REPO)}), "
                         "not with the installed package: run `make demo` in a clone of edgead, or pass "
                         "--data DIR (an MVTec-layout folder: train/good, test/<good|defect>)")
    data = Path(a.data) if a.data else DEMO_DATA
    out = Path(a.out)
    print(f"[1/4] training {a.model} on {data}/train/good (normal images only)", flush=True)
    cfg = train(data, out / "run", model=a.model, epochs=a.epochs)
    print(f"      {cfg['train']['seconds']} s; complexity {cfg['complexity']}", flush=True)
    print(f"[2/4] evaluating on {data}/test; heat-map overlays in {out / 'maps'}", flush=True)
    print("      " + json.dumps(evaluate(out / "run", data, save_maps=out / "maps")), flush=True)
    pairs = [(t.name, t.runtime) for t in target_table.TARGETS.values() if runtimes.available(t.runtime)]
    targets = [t for t, _ in pairs]
    print(f"[3/4] exporting {', '.join(targets)} to {out / 'bundle'}", flush=True)
    with quiet(beside(out / "bundle", ".export.log")) as say:
        export(out / "run", out / "bundle", targets, log=lambda msg: say("      " + msg))
    print("[4/4] the same test images on every runtime, through the torch-free Predictor", flush=True)
    images = expand([str(data / "test")])
    for rt in ["torch"] + [rt for _, rt in pairs]:
        pred = Predictor(out / "run" if rt == "torch" else out / "bundle", runtime=rt)
        res = pred.predict(images)
        flagged = sum(r.is_anomalous for r in res)
        print(f"      {rt:>12}: {flagged}/{len(res)} flagged, first scores {[round(r.score, 3) for r in res[:4]]}", flush=True)
    print(f"done: run, bundle and overlays in {out}/")
    return EXIT_OK


def _task_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Each task's own flags of `command`, in a group per task; remembers which task owns each."""
    from edgead.tasks import all_tasks

    for task in all_tasks():
        group = parser.add_argument_group(f"{task.name} models only")
        before = {a.dest for a in parser._actions}
        task.add_arguments(command, group)
        for action in parser._actions:
            if action.dest not in before:
                _OWNED[command][action.dest] = (task.name, action.option_strings[0])


def build_parser() -> argparse.ArgumentParser:
    _OWNED.update({"train": {}, "eval": {}, "predict": {}})
    from edgead import __version__

    p = argparse.ArgumentParser(prog="edgead", description="Anomaly detection and localisation for edge devices.")
    p.add_argument("--version", action="version", version=f"edgead {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on normal samples (images, signals, point clouds)", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train on DATA/train/good (MVTec layout) or DATA/good;\na unified model (uniad, onenip) also "
                       "takes several product folders.\n\nmodels, and when to pick each:\n" + _models_help())
    t.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (see above; default {DEFAULT_MODEL})")
    t.add_argument("--data", required=True, action="append", help="data folder; repeat it (or pass a folder of product "
                   "folders) to train one unified image model on several products")
    t.add_argument("--out", required=True, help="run folder to write")
    t.add_argument("--epochs", type=int, default=None, help="passes over the training data (default: the model's own)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--holdout", type=float, default=0.15, help="fraction of normal samples held out for thresholds")
    t.add_argument("--threads", type=int, default=None)
    _task_arguments("train", t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="metrics of a run or bundle on labelled data")
    e.add_argument("source", help="run folder or bundle folder")
    e.add_argument("--data", required=True)
    e.add_argument("--runtime", default="auto")
    e.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--device", default=None, help="runtime device, e.g. cuda or tensorrt (onnxruntime), GPU (openvino); "
                   "falls back to the CPU with a warning where the runtime lacks it")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--threshold", type=_override, default=None, metavar="raw:X|score:Y",
                   help=THRESHOLD_HELP)
    _task_arguments("eval", e)
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
    x.add_argument("-v", "--verbose", action="store_true", help="show the converters' and quantizers' own output "
                   "(by default it goes to OUT.export.log beside the bundle)")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("predict", help="score images, signals or point clouds with a bundle")
    r.add_argument("bundle", help="bundle folder (or a run folder, on torch)")
    r.add_argument("paths", nargs="+", help="image, signal or point-cloud files, or folders of them")
    r.add_argument("--runtime", default="auto")
    r.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--device", default=None, help="runtime device, e.g. cuda or tensorrt (onnxruntime), GPU (openvino); "
                   "falls back to the CPU with a warning where the runtime lacks it")
    r.add_argument("--json", action="store_true", help="one JSON line per input, with the target, runtime and "
                   "precision that scored it")
    r.add_argument("--threshold", type=_override, default=None, metavar="raw:X|score:Y",
                   help=THRESHOLD_HELP)
    r.add_argument("--save-maps", default=None, help="folder for heat-map overlays (PNG); signals: point scores (CSV); "
                   "with --engine ray, any value writes them under --out DIR/maps")
    ray = r.add_argument_group("scoring an archive on a Ray cluster (pip install 'edgead[ray]')")
    ray.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local: score here, one line per input (default); ray: Predictor actors on a Ray cluster, "
                          "results written to --out")
    ray.add_argument("--out", default=None, metavar="DIR", help="--engine ray: folder for results.jsonl (or "
                     "results.parquet) and maps/")
    ray.add_argument("--format", choices=["jsonl", "parquet"], default=None, help="--engine ray: results file format "
                     "(default jsonl)")
    ray.add_argument("--workers", type=int, default=None, help="--engine ray: Predictor actors, one CPU each "
                     "(default: the cluster's CPUs)")
    ray.add_argument("--address", default=None, help="--engine ray: the cluster, e.g. auto or ray://host:10001 "
                     "(default: a local Ray started for the job)")
    _task_arguments("predict", r)
    r.set_defaults(func=cmd_predict)

    sl = sub.add_parser("slim", help="a copy of a bundle with only the targets a device needs")
    sl.add_argument("bundle", help="bundle folder")
    sl.add_argument("--target", action="append", required=True, help="target(s) to keep, e.g. tflite or tflite_int8; "
                    "repeat or comma-separate")
    sl.add_argument("--out", required=True, help="new bundle folder")
    sl.set_defaults(func=cmd_slim)

    b = sub.add_parser("benchmark", help="size, load time, latency, memory and AUROC of a bundle on each runtime")
    b.add_argument("bundle", help="bundle folder")
    b.add_argument("--runtimes", default=None, help="comma-separated, e.g. onnxruntime,openvino,tflite (default: all in the bundle)")
    b.add_argument("--threads", default=None, help="comma-separated thread counts, e.g. 1,2,4 (default: 1 and all cores)")
    b.add_argument("--precisions", default=None, help="comma-separated, e.g. fp32,int8 (default: all in the bundle)")
    b.add_argument("--data", default=None, help="labelled data (MVTec or good/ + bad/): time its images and add AUROCs")
    b.add_argument("--n", type=int, default=200, help="timed runs per case")
    b.add_argument("--warmup", type=int, default=20, help="untimed runs first")
    b.add_argument("--device", default=None, help="runtime device, e.g. cuda or tensorrt (onnxruntime), GPU (openvino)")
    b.add_argument("--timeout", type=float, default=None, help="seconds allowed per case (default 900, "
                   "or 3600 with --data); a case that takes longer is a failed row")
    b.add_argument("--json", default=None, metavar="OUT", help="also write the report (with the machine's description) here")
    b.set_defaults(func=cmd_benchmark)

    d = sub.add_parser("demo", help="train, evaluate and export on the hazelnut sample of the source checkout")
    d.add_argument("--data", default=None, help=f"data folder (default: {DEMO_DATA})")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--model", default=DEFAULT_MODEL, help=f"an image model (default {DEFAULT_MODEL})")
    d.add_argument("--epochs", type=int, default=None, help="for models with a training loop (default: the model's own)")
    d.set_defaults(func=cmd_demo)

    from edgead.tasks import all_tasks

    for task in all_tasks():
        task.add_commands(sub)
    return p


def _one_line(e: BaseException) -> str:
    """The message of an error on one line (OS errors name their file)."""
    if isinstance(e, OSError) and e.filename is not None and not isinstance(e, EdgeadError):
        return f"{e.filename}: {e.strerror or e}"
    return " ".join(str(e).split("\n")).strip() or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from runtimes import BackendError

    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `edgead predict ... | head -1`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        print(f"edgead {args.command}: output closed before the end (broken pipe)", file=sys.stderr)
        return EXIT_FAILED_ITEMS
    except (EdgeadError, BackendError, OSError, ImportError, ValueError) as e:
        print(f"edgead {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("edgead: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
