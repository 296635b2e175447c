"""`edgead export`: a trained run -> a bundle with ONNX / OpenVINO / TFLite artefacts, for
every task. The task supplies a real sample input; each artefact is run on it right after
conversion and its named outputs compared with torch's; the difference and the input used are
written into the manifest. Every artefact of one export is written in one bundle transaction,
and only after all of them passed."""
from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from edgead import __version__, targets
from edgead.core import bundle as bundle_io
from edgead.core.errors import ExportError
from edgead.core.records import (PATH_KEYS, Manifest, RunRecord, device_train_record, same_model, scrub_paths,
                                 train_of)

OPSET = 18
PARITY_ATOL = 1e-3  # of the raw outputs, FP32 artefacts, relative to their largest magnitude


def base_manifest(cfg: RunRecord, task) -> Manifest:
    return {
        "task": task.name,
        "model": {"name": cfg["model"]["name"], "config": cfg["model"]["config"]},
        "input": cfg["input"],
        "input_name": cfg.get("input_name", task.input_name),
        "post": cfg["post"],
        "outputs": {**cfg.get("outputs", {}), **task.manifest_outputs()},  # + what the run recorded (map channels)
        "thresholds": cfg["thresholds"],
        "edgead_version": __version__,
        "weights_sha256": cfg["weights_sha256"],
        "provenance": {"train": device_train_record(cfg.get("train", {})), "complexity": cfg.get("complexity", {}),
                       "metrics": cfg.get("metrics")},
    }


# ------------------------------------------------------------------------------ converters

def _input_name(model) -> str:
    return getattr(model, "input_name", "image")


def _outputs(model) -> list[str]:
    return list(getattr(model, "outputs", ["anomaly_map"]))


def onnx_file(model, x, path: Path) -> Path:
    import torch

    with torch.no_grad():
        torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=[_input_name(model)],
                          output_names=_outputs(model), opset_version=OPSET, dynamo=True,
                          external_data=False, verbose=False)
    return path


def named_outputs(model):
    """`model` wrapped so that TFLite's signature names its input and outputs as the task does
    (LiteRT names a dict's outputs by its keys; a tuple would become output_0, output_1)."""
    import torch

    class Named(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def named(self, *args, **kwargs):
            out = self.m(*args, **kwargs)
            return dict(zip(_outputs(self.m), out if isinstance(out, tuple) else (out,)))

    wrapped = Named(model)
    forward = lambda *a, **k: wrapped.named(*a, **k)  # noqa: E731 - a signature of its own
    forward.__signature__ = inspect.Signature([inspect.Parameter(_input_name(model), inspect.Parameter.POSITIONAL_OR_KEYWORD)])
    wrapped.forward = forward
    return wrapped


def tflite_file(model, x, path: Path) -> Path:
    import litert_torch
    import torch

    litert_torch.convert(named_outputs(model.eval()).eval(), sample_kwargs={_input_name(model): torch.from_numpy(x)}).export(str(path))
    return path


def to_onnx(model, x, workdir: Path) -> tuple[dict[str, Path], dict]:
    return {"model.onnx": onnx_file(model, x, workdir / "model.onnx")}, {"opset": OPSET}


def to_openvino(model, x, workdir: Path) -> tuple[dict[str, Path], dict]:
    from runtimes.openvino_backend import compile_from_onnx

    xml = compile_from_onnx(onnx_file(model, x, workdir / "for_openvino.onnx"), workdir / "model.xml")
    return {"model.xml": xml, "model.bin": xml.with_suffix(".bin")}, {}


def to_tflite(model, x, workdir: Path) -> tuple[dict[str, Path], dict]:
    return {"model.tflite": tflite_file(model, x, workdir / "model.tflite")}, {}


def convert(model, x: np.ndarray, target: str, workdir: Path) -> tuple[dict[str, Path], dict]:
    """Write one target's files into workdir; returns ({name in bundle: path}, artefact meta)."""
    t = targets.get(target)
    files, meta = globals()[t.converter](model, x, workdir)
    meta = {"runtime": t.runtime, "file": t.main, **({"extra_files": list(t.files[1:])} if len(t.files) > 1 else {}), **meta}
    return files, meta


def parity(runtime: str, artefact: Path, x: np.ndarray, reference: dict[str, np.ndarray],
           input_name: str = "image") -> float:
    """Max abs difference between the artefact's outputs and torch's, on input x, by name."""
    import runtimes

    out = runtimes.load(runtime, artefact, threads=1).run({input_name: x})
    diffs = []
    for name, ref in reference.items():
        if name not in out:
            raise ExportError(f"{artefact.name}: has no output named {name!r} (it has {sorted(out)}); "
                              "the converter lost the output names")
        if out[name].shape != ref.shape:
            raise ExportError(f"{artefact.name}: output {name!r} shape {out[name].shape} != torch's {ref.shape}")
        got = out[name]
        if not np.array_equal(np.isfinite(got), np.isfinite(ref)):  # NaN - x is NaN, and NaN > tolerance is False
            bad = int((np.isfinite(got) != np.isfinite(ref)).sum())
            raise ExportError(f"{artefact.name}: output {name!r} is NaN or infinite at {bad} of {got.size} values where "
                              "torch's is not (or the reverse); not writing it")
        diffs.append(float(np.abs(np.nan_to_num(got) - np.nan_to_num(ref)).max()))
    return max(diffs)


# ------------------------------------------------------------------------------ export

def export(run_dir: str | Path, out: str | Path, targets_wanted: list[str], sample_image: np.ndarray | None = None,
           int8: bool = False, calib: str | Path | None = None, calib_size: int | None = None,
           max_drop: float = 0.01, max_shift: float = 0.05, val: str | Path | None = None,
           log: Callable[[str], None] | None = None) -> Manifest:
    """Export `targets_wanted` of a run into bundle `out` (created or extended; one atomic write).

    With `int8`, each target also gets an INT8 artefact "<target>_int8", calibrated on `calib`
    (default: the run's own fitted samples; `calib_size` of them) and gated on accuracy against
    FP32 on the validation data (`val`, default: the run's recorded test split when it has
    anomalies, else its held-out normals): AUROC may drop by `max_drop` at most, normalised
    scores may move by `max_shift` on average; else ExportError names the values. An FP32
    artefact already in the bundle (from the same weights) is reused, not converted again.
    A bundle made from other weights is never mixed with this run's artefacts."""
    import torch

    from edgead.models import load_run
    from edgead.tasks import for_record

    log = log or (lambda msg: None)
    wanted = targets.parse(list(targets_wanted))  # the CLI's checks, for Python callers too
    out = Path(out)
    bundle_io.check_writable(out)
    model, cfg = load_run(run_dir)
    task = for_record(cfg)
    existing = _existing(out, cfg, run_dir)
    x, parity_input = task.sample_input(cfg, sample_image)
    with torch.no_grad():
        raw = model(torch.from_numpy(x))
    reference = {n: t.numpy() for n, t in zip(model.outputs, raw if isinstance(raw, tuple) else (raw,))}
    ref_max = max(float(np.abs(r).max()) for r in reference.values())
    session = None
    with _workdir() as tmp:
        staged: dict[str, tuple[dict[str, Path], dict]] = {}  # written once everything passed
        for target in wanted:
            fp32 = _reusable(existing, out, target) if int8 else None
            if fp32 is not None:
                files, meta = fp32
                log(f"{target}: reusing the FP32 artefact already in the bundle")
            else:
                started = time.perf_counter()
                files, meta = _convert_checked(model, x, target, Path(tmp) / target, reference, ref_max)
                meta["parity_input"] = parity_input
                log(f"{target}: converted in {time.perf_counter() - started:.1f} s; max |diff| vs torch "
                    f"{meta['max_abs_diff_vs_torch']:.2g} on {parity_input}")
                staged[target] = (files, meta)
            if int8:
                if session is None:
                    session = _int8_session(cfg, task, calib, calib_size, val)
                    log(f"INT8: calibrating on {_calibration_text(session.data.calib_info)}; gate: AUROC drop <= "
                        f"{max_drop}, score shift <= {max_shift}")
                key, q_files, q_meta = _quantize(session, target, files[meta["file"]], Path(tmp) / f"{target}_int8",
                                                 max_drop, max_shift, log)
                log(f"{key}: chose '{q_meta['gate']['chosen']}'")
                q_meta["speed"] = _time_pair(meta["runtime"], files[meta["file"]], q_files[q_meta["file"]], x,
                                             _input_name(model), target, log)
                staged[key] = (q_files, q_meta)
        private = [train_of(cfg).get("data", {}).get(k) for k in PATH_KEYS] + [calib, val, run_dir]
        for meta in (m for _, m in staged.values()):
            meta["weights_sha256"] = cfg["weights_sha256"]
        staged = {k: (f, scrub_paths(m, private)) for k, (f, m) in staged.items()}
        bundle_io.update_bundle(out, base_manifest(cfg, task), {k: ({n: str(p) for n, p in f.items()}, m)
                                                                 for k, (f, m) in staged.items()},
                                weights_sha256=cfg["weights_sha256"])
    return bundle_io.load_manifest(out)


WORKDIR_PREFIX = "edgead-export-"
WORKDIR_LOCK = ".in-use"


@contextmanager
def _workdir():
    """A temporary work folder, locked while this export uses it; work folders of killed
    exports (whose lock nobody holds) are removed first. No clean-up where fcntl is missing."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is not None:
        for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
            try:
                fd = os.open(d / WORKDIR_LOCK, os.O_RDONLY)
            except OSError:
                continue  # not ours, or being created
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass  # a running export holds it
            finally:
                os.close(fd)
    with tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX) as tmp:
        fd = os.open(Path(tmp) / WORKDIR_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield tmp
        finally:
            os.close(fd)


def _existing(out: Path, cfg: RunRecord, run_dir) -> Manifest | None:
    """The bundle already at `out` (verified), refused if it was made from other weights."""
    if not (out / bundle_io.MANIFEST).is_file():
        return None
    manifest = bundle_io.load_manifest(out, verify=True)
    if not same_model(manifest, cfg):
        raise ExportError(f"{out} holds artefacts exported from another run (other weights than {run_dir}); "
                          "mixing them would pair one model's artefacts with another's thresholds. "
                          "Export into a new folder, or delete the old bundle first")
    return manifest


def _reusable(existing: Manifest | None, out: Path, target: str) -> tuple[dict[str, Path], dict] | None:
    art = (existing or {}).get("artefacts", {}).get(target)
    if not art or art.get("precision", "fp32") != "fp32":
        return None
    names = bundle_io.artefact_files(art)
    return {n: out / n for n in names}, dict(art)


def _convert_checked(model, x, target: str, work: Path, reference: dict, ref_max: float) -> tuple[dict, dict]:
    work.mkdir()
    try:
        files, meta = convert(model, x, target, work)
    except ImportError as e:
        raise ExportError(f"exporting to {target} needs the export tools: pip install 'edgead[export]' ({e})") from e
    diff = parity(meta["runtime"], files[meta["file"]], x, reference, _input_name(model))
    if diff > PARITY_ATOL * max(1.0, ref_max):
        raise ExportError(f"{target} artefact differs from torch by {diff:.3g} (max abs on the raw outputs); "
                          "not writing it")
    meta.update({"precision": "fp32", "max_abs_diff_vs_torch": diff})
    return files, meta


def _int8_session(cfg: RunRecord, task, calib, calib_size: int | None, val):
    try:
        from quant.int8 import Int8Session
    except ImportError as e:
        raise ExportError(f"INT8 export needs the quantization tools: pip install 'edgead[export]' ({e})") from e
    return Int8Session(cfg, task.int8_data(cfg, calib, calib_size, val), task.predictor_class())


def _calibration_text(info: dict) -> str:
    """"200 images from hazelnut (training images)": the task's calibration record in words."""
    count = next((f"{v} {k[2:]}" for k, v in info.items() if k.startswith("n_")), "inputs")
    return f"{count} from {info.get('source', 'the training data')}"


def _attempt_line(key: str, log: Callable[[str], None]) -> Callable[[dict], None]:
    """One line per INT8 candidate the gate measured: what was tried, its drop and shift, the verdict."""
    def line(attempt: dict) -> None:
        if attempt.get("failed"):
            figures = attempt["failed"]
        else:
            figures = ", ".join(f"{k} {attempt[k]:.4f}" for k in ("drop", "score_shift") if attempt.get(k) is not None)
        ok = attempt.get("excess") is not None and attempt["excess"] <= 1.0
        log(f"{key}: tried '{attempt['name']}': {figures or 'measured'} -> {'within' if ok else 'over'} the limits")
    return line


def _time_pair(runtime: str, fp32_file: Path, int8_file: Path, x: np.ndarray, input_name: str, target: str,
               log: Callable[[str], None], calls: int = 20) -> dict | None:
    """Median ms of one model call, FP32 and INT8, interleaved on this machine (the runtime's own
    thread count, as a Predictor uses by default): what precision="auto" picks by here. A
    failure to time only costs that choice (FP32 is then picked), not the export."""
    import runtimes

    from edgead.core.speed import export_entry

    try:
        pair = [runtimes.load(runtime, f) for f in (fp32_file, int8_file)]
        feed = {input_name: x}
        ms: list[list[float]] = [[], []]
        for i in range(calls + 3):
            for backend, times in zip(pair, ms):
                started = time.perf_counter()
                backend.run(feed)
                if i >= 3:  # warm-up calls are not counted
                    times.append((time.perf_counter() - started) * 1e3)
    except Exception as e:  # noqa: BLE001 - any runtime failure here is reported, never fatal
        log(f"{targets.get(target).int8_key}: could not be timed against FP32 ({type(e).__name__}: {e}); "
            "precision=auto will pick FP32")
        return None
    fp32_ms, int8_ms = (float(np.median(t)) for t in ms)
    log(f"{targets.get(target).int8_key}: {int8_ms:.2f} ms per model call vs FP32 {fp32_ms:.2f} ms on this machine")
    entry = export_entry(int8_ms)
    entry["fp32"] = {"target": target, **export_entry(fp32_ms)}
    return entry


def _quantize(session, target: str, fp32_file: Path, workdir: Path, max_drop: float,
              max_shift: float, log: Callable[[str], None] = lambda msg: None) -> tuple[str, dict, dict]:
    from quant.gate import GateFailed

    workdir.mkdir()
    try:
        files, meta = session.quantize(target, fp32_file, workdir, max_drop=max_drop, max_shift=max_shift,
                                       on_attempt=_attempt_line(targets.get(target).int8_key, log))
    except GateFailed as e:
        raise ExportError(str(e)) from e
    except ImportError as e:
        raise ExportError(f"INT8 for {target} needs the quantization tools: pip install 'edgead[export]' ({e})") from e
    return targets.get(target).int8_key, files, meta
