"""Measured speed of a bundle's artefacts on one machine: what `precision="auto"` picks by.

Export times each FP32 / INT8 pair on the machine it runs on and records it in the artefacts'
manifest entries (`speed`); `edgead benchmark` files the figures of the machine it runs on in
`speed.json` beside the manifest. Figures count only on the machine they were measured on
(`machine_key`): INT8 that is 5x faster on one CPU can be slower on another. speed.json is
advice, not part of the verified bundle: it can only choose between two artefacts that both
passed export's checks, and a damaged one is ignored."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from edgead.core.machine import machine_key, usable_cores

SPEED_FILE = "speed.json"
INT8_MUST_TAKE = 0.95  # INT8 is chosen only when it takes less than this share of FP32's time
DEFAULT = "default"  # the runtime's own thread count (a Predictor's threads=None)

Figures = dict[str, dict[str, float]]  # target -> threads ("1", "2", "default") -> median ms of one model call


def thread_key(threads: int | None) -> str:
    return DEFAULT if threads is None else str(int(threads))


def export_entry(ms: float, threads: int | None = None) -> dict:
    """The `speed` record of a manifest artefact, measured by export on this machine."""
    return {"machine": machine_key(), "ms": {thread_key(threads): round(float(ms), 4)}, "source": "export"}


def figures(bundle_dir: str | os.PathLike | None, manifest: Mapping, machine: str | None = None) -> tuple[Figures, str]:
    """The figures that apply on `machine` (default: this one), and where they come from:
    export's where export ran here, overlaid per target by `edgead benchmark`'s (speed.json)
    where it was run here (a benchmark of some targets only keeps export's for the others)."""
    machine = machine or machine_key()
    found: Figures = {}
    for key, art in manifest.get("artefacts", {}).items():
        rec = art.get("speed") if isinstance(art, Mapping) else None
        pair = _get(rec, "fp32")  # an INT8 entry also holds its FP32 twin's time, measured beside it
        for target, timed in ((key, rec), (_get(pair, "target"), pair)):
            if isinstance(target, str) and _get(timed, "machine") == machine and isinstance(_get(timed, "ms"), Mapping):
                found.setdefault(target, {}).update({str(t): float(v) for t, v in timed["ms"].items() if _is_ms(v)})
    filed = read_file(bundle_dir).get(machine, {}) if bundle_dir is not None else {}
    found.update(filed)
    sources = [s for s, used in (("export", len(filed) < len(found)), ("edgead benchmark", bool(filed))) if used]
    return found, " and ".join(sources) + " on this machine"


def _count(key: str) -> str:
    """A thread key as a thread count: the runtime's default is taken as one thread per usable
    core (export times with the default, `edgead benchmark` with 1 and all cores)."""
    return str(usable_cores()) if key == DEFAULT else key


def _by_threads(ms: dict[str, float]) -> dict[str, float]:
    """Figures keyed by thread count (see `_count`)."""
    return {_count(t): v for t, v in ms.items() if t == DEFAULT or t.isdigit()}


def _get(record, key: str):
    return record.get(key) if isinstance(record, Mapping) else None


def _is_ms(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")


def read_file(bundle_dir: str | os.PathLike) -> dict[str, Figures]:
    """speed.json: machine key -> figures; {} when absent or not readable as such."""
    try:
        data = json.loads((Path(bundle_dir) / SPEED_FILE).read_text(encoding="utf-8"))
        machines = data["machines"]
        return {str(m): {str(t): {str(k): float(v) for k, v in by.items() if _is_ms(v)} for t, by in f.items()}
                for m, f in machines.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def file_figures(bundle_dir: str | os.PathLike, measured: Figures, date: str) -> Path:
    """Merge this machine's `measured` figures into speed.json (written atomically); other
    machines' figures are kept."""
    from edgead.core.atomic import locked, replace_json

    path = Path(bundle_dir) / SPEED_FILE
    with locked(Path(bundle_dir)):  # the lock bundle writes take: two benchmarks never lose each other's figures
        machines = read_file(bundle_dir)
        mine = machines.setdefault(machine_key(), {})
        for target, by_threads in measured.items():
            mine.setdefault(target, {}).update(by_threads)
        replace_json(path, {"edgead_speed": 1, "date": date, "machines": machines})
    return path


@dataclass(frozen=True)
class Verdict:
    int8: bool
    reason: str


def faster_int8(fp32: str, int8: str, found: Figures, source: str, threads: int | None) -> Verdict:
    """Whether INT8 `int8` beats FP32 `fp32` on this machine by the figures `found`, at the
    thread count asked for (else the most threads both were timed at). Unmeasured: FP32."""
    a, b = (_by_threads(found.get(key, {})) for key in (fp32, int8))
    common = [t for t in a if t in b]
    if not common:
        return Verdict(False, f"{fp32} (FP32): INT8 was not timed on this machine; run `edgead benchmark BUNDLE` here "
                              "to choose by measured speed, or ask for --precision int8")
    want = _count(thread_key(threads))
    t = want if want in common else max(common, key=int)
    f, q = a[t], b[t]
    figures_text = f"{q:.2f} ms INT8 vs {f:.2f} ms FP32 ({t} threads, {source})"
    if q < INT8_MUST_TAKE * f:
        return Verdict(True, f"{int8} (INT8): {figures_text}")
    return Verdict(False, f"{fp32} (FP32): INT8 is not faster here, {figures_text}")
