"""On-device benchmark of a bundle: every runtime x precision it holds, each in its own process.

For each case: artefact size, load time (Predictor construction, checksums included), latency
percentiles of the whole Predictor path (preprocess + run + postprocess) and of the bare model,
single-stream throughput (1000 / mean predict ms), the peak RSS of the measuring process and,
with labelled data, image / pixel AUROC through that runtime.

    >>> from edgead.benchmark import run_benchmark, format_table
    >>> report = run_benchmark("bundles/hazelnut", threads=[1, 2], data="data/hazelnut", n=200)
    >>> print(format_table(report))

Torch-free: imports numpy, OpenCV and, in each child process, one runtime. Each case runs in a
child (`python -m edgead.benchmark --worker SPEC OUT`): runtime thread pools sharing a process
slow each other down, and a child's ru_maxrss is that case's own peak memory.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import runtimes

from edgead import targets as target_table
from edgead.core import bundle as bundle_io
from edgead.core import speed
from edgead.core.bundle import artefact_bytes
from edgead.core.errors import UsageError
from edgead.core.machine import cpu_model, default_threads, machine_info  # noqa: F401 (re-exported)

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # holds edgead/ and runtimes/


DEFAULT_TIMEOUT = 900.0  # seconds per case: a hung runtime becomes a "failed" row, not a hung command
DEFAULT_TIMEOUT_WITH_DATA = 3600.0  # the case also evaluates the whole data set

#: what an evaluation adds to a row (image and signal tasks)
ACCURACY_KEYS = ("image_auroc", "pixel_auroc", "aupro", "sample_auroc", "point_auroc", "beat_auroc", "f1_max", "n_images",
                 "n_samples", "n_windows")


@dataclass(frozen=True)
class Case:
    """One measurement: a bundle target on its runtime with a thread count (None = runtime default)."""
    target: str
    runtime: str
    precision: str
    threads: int | None


# ------------------------------------------------------------------------------ planning

def plan(manifest: dict, wanted: Sequence[str] | None = None, threads: Sequence[int | None] = (1,),
         precisions: Sequence[str] | None = None,
         is_installed: Callable[[str], bool] = runtimes.available) -> tuple[list[Case], list[dict]]:
    """Cases to measure, and rows for what cannot be measured here (with the reason).

    Targets come from ``manifest["artefacts"]``; `wanted` limits the runtimes (None: every runtime
    the bundle has an artefact for, except torch), `precisions` the precisions."""
    for name in wanted or ():
        if name not in runtimes.BACKENDS:
            raise UsageError(f"unknown runtime {name!r} in --runtimes; choose from {', '.join(runtimes.BACKENDS)}")
    arts = manifest["artefacts"]
    by_runtime: dict[str, list[str]] = {}
    for target, art in arts.items():
        by_runtime.setdefault(target_table.runtime_of(target, art), []).append(target)
    order = list(wanted) if wanted else [r for r in runtimes.BACKENDS if r in by_runtime and r != "torch"]
    cases, skipped = [], []
    for rt in order:
        targets = [t for t in by_runtime.get(rt, [])
                   if precisions is None or arts[t].get("precision", "fp32") in precisions]
        if not targets:
            what = f"{'/'.join(precisions)} " if precisions else ""
            skipped.append(_row(None, rt, "/".join(precisions or ["-"]), None, "no artefact",
                                f"the bundle has no {what}{rt} artefact; export it with `edgead export`"))
            continue
        targets.sort(key=lambda t: (arts[t].get("precision", "fp32") != "fp32", t))  # FP32 first
        for t in targets:
            prec = arts[t].get("precision", "fp32")
            if not is_installed(rt):
                skipped.append(_row(t, rt, prec, None, "not installed",
                                    f"pip install 'edgead[{runtimes.EXTRAS.get(rt, rt)}]'", artefact_bytes(manifest, t)))
                continue
            cases += [Case(t, rt, prec, th) for th in threads]
    return cases, skipped


def _row(target, runtime, precision, threads, status, reason=None, nbytes=None) -> dict:
    return {"target": target, "runtime": runtime, "precision": precision, "threads": threads,
            "status": status, "reason": reason, "bytes": nbytes}


# ------------------------------------------------------------------------------ measuring (child side)

def percentiles(ms: Sequence[float]) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB (None where unsupported)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _runtime_details(pred) -> dict:
    """The runtime's distribution and version as imported here, plus providers / device."""
    out: dict = {}
    tflite = ["ai-edge-litert"] if "ai_edge_litert" in sys.modules else ["tflite-runtime"]
    dists = {"onnxruntime": ["onnxruntime", "onnxruntime-gpu"], "openvino": ["openvino"], "tflite": tflite}
    for d in dists.get(pred.runtime, []):
        try:
            out["runtime_version"] = f"{d} {importlib.metadata.version(d)}"
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    if hasattr(pred.backend, "providers"):
        out["providers"] = list(pred.backend.providers)
    if hasattr(pred.backend, "device"):
        out["device"] = str(pred.backend.device)
    return out


def time_calls(pred, model_call, predict_call, n: int, warmup: int) -> dict[str, list[float]]:
    """ms per call of the bare model and of the whole predict, interleaved (both see the same
    load on a shared machine), and each predict call's own time outside the runtime: its
    `pred.run` calls are timed inside it, so pre+post is never a difference of two medians
    (which can be negative)."""
    inside: list[float] = []
    run = pred.run

    def timed_run(x):
        t = time.perf_counter()
        try:
            return run(x)
        finally:
            inside.append(time.perf_counter() - t)

    for i in range(warmup):
        predict_call(i)
    model_ms, predict_ms, pre_post_ms = [], [], []
    pred.run = timed_run
    try:
        for i in range(n):
            t = time.perf_counter()
            model_call(i)
            model_ms.append((time.perf_counter() - t) * 1e3)
            inside.clear()
            t = time.perf_counter()
            predict_call(i)
            total = time.perf_counter() - t
            predict_ms.append(total * 1e3)
            pre_post_ms.append((total - sum(inside)) * 1e3)
    finally:
        del pred.run  # the class's method again
    return {"model_ms": model_ms, "predict_ms": predict_ms, "pre_post_ms": pre_post_ms}


def measure(bundle: str | Path, case: Case, spec: dict, n: int = 200, warmup: int = 20,
            data: str | Path | None = None, device=None) -> dict:
    """Measure one case in this process (run_benchmark calls it in a child per case). `spec`
    says what to time with (the task's `timing_inputs`)."""
    from edgead.tasks import for_path

    task = for_path(bundle)
    t = time.perf_counter()
    pred = task.predictor(bundle, threads=case.threads, device=device, target=case.target)
    load_ms = (time.perf_counter() - t) * 1e3
    timings = time_calls(pred, *task.timing_calls(pred, spec), n=n, warmup=warmup)
    row = _row(case.target, pred.runtime, pred.precision, case.threads, "ok")
    row.update(load_ms=load_ms, **{k: percentiles(v) for k, v in timings.items()},
               throughput_ips=1e3 / float(np.mean(timings["predict_ms"])), peak_rss_mb=peak_rss_mb(), **_runtime_details(pred))
    if data is not None:
        res = task.evaluate(pred, data)
        row.update({k: res[k] for k in ACCURACY_KEYS if k in res})
    return row


def _worker(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    case = Case(**spec["case"])
    row = measure(spec["bundle"], case, spec["timing"], spec["n"], spec["warmup"], spec.get("data"), spec.get("device"))
    Path(out_path).write_text(json.dumps(row))
    return 0


# ------------------------------------------------------------------------------ running (parent side)

def _child_env() -> dict:
    env = dict(os.environ, EDGEAD_QUIET="1")
    env["PYTHONPATH"] = os.pathsep.join([str(_PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _last_error_line(stderr: str) -> str:
    lines = [l.strip() for l in stderr.strip().splitlines() if l.strip()]
    for line in reversed(lines):  # the exception line of a traceback
        if not line.startswith(("File ", "^", "~")) and ("Error" in line or "Exception" in line or ":" in line):
            return line[:400]
    return lines[-1][:400] if lines else "no output"


def measure_in_child(bundle: str | Path, case: Case, timing: dict, n: int, warmup: int,
                     data: str | Path | None = None, device=None, timeout: float | None = None) -> dict:
    """Measure one case in a fresh Python process; a crash or timeout becomes a 'failed' row."""
    with tempfile.TemporaryDirectory(prefix="edgead-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "row.json"
        spec = {"bundle": str(bundle), "case": asdict(case), "n": n, "warmup": warmup,
                "data": str(data) if data is not None else None, "device": device, "timing": timing}
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "edgead.benchmark", "--worker", str(spec_path), str(out_path)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_child_env())
        except subprocess.TimeoutExpired:
            return _row(case.target, case.runtime, case.precision, case.threads, "failed",
                        f"timed out after {timeout:g} s")
        if p.returncode != 0 or not out_path.is_file():
            return _row(case.target, case.runtime, case.precision, case.threads, "failed",
                        f"exit code {p.returncode}: {_last_error_line(p.stderr)}")
        return json.loads(out_path.read_text())


def run_benchmark(bundle: str | Path, runtimes_wanted: Sequence[str] | None = None,
                  threads: Sequence[int | None] | None = None, data: str | Path | None = None,
                  n: int = 200, warmup: int = 20, precisions: Sequence[str] | None = None, device=None,
                  timeout: float | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Benchmark every runtime x precision of `bundle` (see the module docstring); returns the report.

    AUROCs are computed once per target (at the first thread count) when `data` is given."""
    if timeout is None:
        timeout = DEFAULT_TIMEOUT if data is None else DEFAULT_TIMEOUT_WITH_DATA
    if n < 1 or warmup < 0:
        raise ValueError(f"n must be >= 1 and warmup >= 0 (got n={n}, warmup={warmup})")
    from edgead.tasks import for_record

    bundle = Path(bundle)
    manifest = bundle_io.load_manifest(bundle, verify=True)
    task = for_record(manifest)
    threads = list(threads or default_threads())
    cases, skipped = plan(manifest, runtimes_wanted, threads, precisions)
    timing, timing_text = task.timing_inputs(manifest, data)
    started, machine = _dt.datetime.now().astimezone().isoformat(timespec="seconds"), machine_info()
    rows, evaluated = [], set()
    for case in cases:
        if log:
            log(f"measuring {case.target} ({case.runtime} {case.precision}, "
                f"{case.threads or 'default'} thread{'s' if case.threads != 1 else ''}) ...")
        with_data = data if case.target not in evaluated and data is not None and task.evaluable(data) else None
        row = measure_in_child(bundle, case, timing, n, warmup, with_data, device, timeout)
        row["bytes"] = artefact_bytes(manifest, case.target)
        evaluated.add(case.target)
        rows.append(row)
    _share_accuracy(rows)
    if device is None:  # speed.json holds CPU figures: what precision="auto" compares on the CPU
        _file_speed(bundle, rows, started, log)
    rows += skipped
    if hasattr(os, "getloadavg"):
        machine["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    return {"edgead_benchmark": 1, "date": started,
            "bundle": {"path": str(bundle), "model": manifest.get("model", {}).get("name"), "task": task.name,
                       "input": task.input_text(manifest["input"]),
                       "bytes": sum(int(f.get("bytes") or 0) for f in manifest.get("files", {}).values())},
            "settings": {"n": n, "warmup": warmup, "threads": threads, "data": str(data) if data else None,
                         "timing_images": timing_text, "device": device},
            "machine": machine, "rows": rows}


def _file_speed(bundle: Path, rows: list[dict], date: str, log: Callable[[str], None] | None) -> None:
    """This machine's median model-call times into the bundle's speed.json, so that
    precision="auto" picks INT8 here only where it was measured faster (edgead.core.speed)."""
    measured: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["status"] == "ok":
            measured.setdefault(r["target"], {})[speed.thread_key(r["threads"])] = round(r["model_ms"]["p50"], 4)
    if not measured:
        return
    try:
        path = speed.file_figures(bundle, measured, date)
    except OSError as e:  # a read-only bundle: the figures are in the report all the same
        if log:
            log(f"could not file the speed figures in {bundle} ({e}); precision=auto keeps export's choice here")
        return
    if log:
        log(f"speed figures filed in {path}: precision=auto picks by them on this machine")


def _share_accuracy(rows: list[dict]) -> None:
    """Copy a target's AUROCs (measured at its first thread count) to its other rows."""
    keys = ACCURACY_KEYS
    measured = {r["target"]: r for r in rows if any(k in r for k in keys)}
    for r in rows:
        src = measured.get(r["target"])
        if src is not None and r is not src and r["status"] == "ok":
            r.update({k: src.get(k) for k in keys})


# ------------------------------------------------------------------------------ the table

def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _pct(d: dict | None) -> str:
    return "-" if not d else f"{d['p50']:.2f} / {d['p90']:.2f} / {d['p99']:.2f}"


COLUMNS: list[tuple[str, Callable[[dict], str]]] = [
    ("target", lambda r: r["target"] or "-"),
    ("runtime", lambda r: r["runtime"]),
    ("prec", lambda r: r["precision"]),
    ("thr", lambda r: _f(r["threads"], "d") if r["threads"] else "-"),
    ("size MB", lambda r: _f(r["bytes"] / 1e6 if r.get("bytes") else None, ".2f")),
    ("load ms", lambda r: _f(r.get("load_ms"), ".0f")),
    ("predict ms p50/p90/p99", lambda r: _pct(r.get("predict_ms"))),
    ("model ms p50/p90/p99", lambda r: _pct(r.get("model_ms"))),
    ("pre+post ms", lambda r: _f(r["pre_post_ms"]["p50"], ".2f") if r.get("pre_post_ms") else "-"),
    ("img/s", lambda r: _f(r.get("throughput_ips"), ".1f")),
    ("peak RSS MB", lambda r: _f(r.get("peak_rss_mb"), ".0f")),
    ("AUROC", lambda r: _f(r.get("image_auroc", r.get("sample_auroc")), ".4f")),
    ("px AUROC", lambda r: _f(r.get("pixel_auroc"), ".4f")),
    ("status", lambda r: r["status"] if not r.get("reason") else f"{r['status']}: {r['reason']}"),
]
_RIGHT = {"thr", "size MB", "load ms", "pre+post ms", "img/s", "peak RSS MB", "img AUROC", "px AUROC"}


def format_table(report: dict) -> str:
    """The report as an aligned text table with a header naming the bundle, machine and settings."""
    m, s, b = report["machine"], report["settings"], report["bundle"]
    head = [f"edgead benchmark: {b['path']} ({b['model']}, input {b['input']}, bundle {b['bytes'] / 1e6:.1f} MB)",
            f"machine: {m['cpu']}{' / ' + m['board'] if m.get('board') else ''}, {m['usable_cores']}/{m['cores']} cores, "
            f"{m['memory_gb']} GB, {m['os']}, {m['arch']}"
            + (f", load average {m['load_avg'][0]:g} at start" if m.get("load_avg") else "")
            + (f", {m['load_avg_end'][0]:g} at end" if m.get("load_avg_end") else ""),
            f"timing: n={s['n']} after {s['warmup']} warm-up on {s['timing_images']}; predict = preprocess + "
            f"model + postprocess, model = the runtime alone"]
    cells = [[fn(r) for _, fn in COLUMNS] for r in report["rows"]]
    names = [c for c, _ in COLUMNS]
    widths = [max(len(x) for x in col) for col in zip(names, *cells)]

    def line(values):
        return "  ".join(v.rjust(w) if n in _RIGHT else v.ljust(w) for n, v, w in zip(names, values, widths)).rstrip()
    return "\n".join(head + ["", line(names)] + [line(c) for c in cells])


def parse_list(text: str | None, kind=str) -> list | None:
    """'a,b,c' -> [a, b, c] (None stays None); a bad item raises ValueError naming it."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        out = [kind(t) for t in items]
    except ValueError:
        raise ValueError(f"could not read {text!r} as a comma-separated list of {kind.__name__}") from None
    if kind is int and any(v < 1 for v in out):
        raise ValueError(f"thread counts must be >= 1, got {text!r}")
    return out


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2], sys.argv[3]))
    sys.exit("usage: edgead benchmark BUNDLE_DIR ... (this module's own entry is for its child processes)")
