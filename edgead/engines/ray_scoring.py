"""Score a whole archive on a Ray cluster: Ray Data lists the inputs in blocks, a pool of
Predictor actors (one bundle load each, torch-free, one CPU each) scores them, and the driver
writes the rows in input order to `OUT/results.jsonl` (or `.parquet`): the same rows as
`edgead predict --json`, through the same `Task.score_file`. An input that cannot be read or
scored becomes an error row; the job goes on.

    edgead predict BUNDLE /data/archive --engine ray --out results/ [--workers 8] [--address auto]

On a cluster every node must see the bundle, the inputs and OUT at the same paths (shared
storage: the actors write maps there), and `edgead[ray]` with the bundle's runtime must be
installed on every node."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from edgead.core.atomic import atomic_folder, check_replaceable
from edgead.core.errors import EngineError, UsageError
from edgead.core.thresholds import Override

SUMMARY = "summary.json"  # also marks a folder as ours, so that a rerun may replace it
FORMATS = ("jsonl", "parquet")
BATCH = 16  # inputs per actor call: small enough to balance, large enough to amortise a call


@dataclass
class ArchiveJob:
    """What to score and how (the `edgead predict --engine ray` flags)."""

    bundle: str
    paths: list[str]
    out: Path
    fmt: str = "jsonl"
    workers: int | None = None  # actors (default: the cluster's CPUs)
    address: str | None = None  # None: a local Ray started (and stopped) for the job
    runtime: str = "auto"
    precision: str = "auto"
    threads: int = 1  # per actor: an actor per CPU scales better than threads per actor
    device: str | None = None  # the runtime's device (cuda, GPU, ...): None is the CPU
    threshold: Override | None = None
    maps: bool = False  # write each input's maps under OUT/maps
    options: dict = field(default_factory=dict)  # the task's own predict options (product, data kind, rate)


@dataclass
class ArchiveSummary:
    inputs: int
    rows: int
    failed: int
    seconds: float
    workers: int
    results: Path

    def line(self) -> str:
        rate = self.inputs / self.seconds if self.seconds > 0 else float("inf")
        failed = f", {self.failed} could not be scored (error rows)" if self.failed else ""
        return (f"scored {self.inputs} inputs ({self.rows} rows) in {self.seconds:.1f} s with {self.workers} "
                f"workers, {rate:.1f} inputs/s{failed}; results in {self.results}")


class Scorer:
    """A Ray actor: loads the bundle once, then scores batches of (index, path, name) rows."""

    def __init__(self, job: ArchiveJob, maps: str | None):
        from edgead.tasks import for_path

        self.task = for_path(job.bundle)
        self.pred = self.task.predictor(job.bundle, runtime=job.runtime, precision=job.precision, threads=job.threads,
                                        **({"device": job.device} if job.device else {}))
        if job.threshold is not None:
            self.pred.set_threshold(job.threshold)
        self.by = self.pred.scored_by()
        self.options, self.maps = job.options, Path(maps) if maps else None

    def __call__(self, batch: dict) -> dict:
        lines, failed = [], []
        for path, name in zip(batch["path"], batch["name"]):
            try:
                res = self.task.score_file(self.pred, Path(path), Path(name), self.maps, **self.options)
                lines.append("\n".join(json.dumps({**row, **self.by}) for row in res.rows))
                failed.append(False)
            except Exception as e:  # noqa: BLE001 - one bad input is an error row, never a failed job
                lines.append(json.dumps({"path": str(path), "error": _message(e)}))
                failed.append(True)
        return {"index": batch["index"], "lines": lines, "failed": failed}


def _message(e: Exception) -> str:
    from edgead.core.errors import DataError

    return str(e) if isinstance(e, (DataError, ValueError, OSError)) else f"{type(e).__name__}: {e}"


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise UsageError(f"--engine ray needs Ray Data: pip install 'edgead[ray]' ({e})") from None
    return ray


def score_archive(job: ArchiveJob, log: Callable[[str], None] = lambda msg: None) -> ArchiveSummary:
    """Score `job.paths` with `job.bundle` on Ray; results and maps written to `job.out` (one
    atomic folder: a half-done job never replaces a finished one)."""
    from edgead.tasks import for_path

    if job.fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {job.fmt!r}")
    if job.workers is not None and job.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {job.workers}")
    task = for_path(job.bundle)
    check = task.predictor(job.bundle, runtime=job.runtime, precision=job.precision, threads=1)  # fails fast, here
    task.check_predict(check, **job.options)
    if job.threshold is not None:
        check.set_threshold(job.threshold)
    named = task.input_files(job.paths)
    check_replaceable(job.out, SUMMARY)  # before Ray starts: a folder that is not ours is refused at once
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=job.address, num_cpus=None if job.address else (job.workers or os.cpu_count()),
                 include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if job.workers is not None and job.workers > cpus:  # the actor pool would wait for CPUs forever
            raise UsageError(f"--workers {job.workers}: the Ray cluster has {cpus} CPUs, and each actor takes one; "
                             f"ask for {cpus} or fewer, or add nodes")
        workers = job.workers or cpus
        t0 = time.perf_counter()
        with atomic_folder(job.out, SUMMARY) as tmp:
            log(f"scoring {len(named)} inputs with {workers} Predictor actors ({check.choice.reason})")
            scored = _scored(ray, job, named, workers, tmp / "maps" if job.maps else None, log)
            rows, failed = _write(scored, tmp / f"results.{job.fmt}", job.fmt)
            summary = ArchiveSummary(len(named), rows, failed, time.perf_counter() - t0, workers,
                                     job.out / f"results.{job.fmt}")
            (tmp / SUMMARY).write_text(json.dumps({**asdict(summary), "results": summary.results.name,
                                                   "bundle": str(job.bundle)}, indent=1))
    except ray.exceptions.RayError as e:  # an actor could not start or died: say so in one line
        raise EngineError(f"the Ray job failed ({_first_line(e)}); an actor needs the bundle, the inputs and OUT at "
                          "the same paths on every node, and edgead with the bundle's runtime installed there") from None
    finally:
        if started_here:
            ray.shutdown()
    return summary


def _first_line(e: BaseException) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


def _scored(ray, job: ArchiveJob, named: list, workers: int, maps: Path | None,
            log: Callable[[str], None]) -> Iterator[tuple[str, bool]]:
    """(JSON lines of one input, failed) in input order, as the actors finish them."""
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False  # our own progress lines below read well in a log file too
    items = [{"index": i, "path": str(p), "name": str(n)} for i, (p, n) in enumerate(named)]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), workers * 4)))
    ds = ds.map_batches(Scorer, fn_constructor_kwargs={"job": job, "maps": str(maps) if maps else None},
                        batch_size=BATCH, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
                        batch_format="numpy")
    done, next_report = 0, time.monotonic() + 10
    for batch in ds.iter_batches(batch_size=BATCH, batch_format="numpy"):
        for lines, failed in zip(batch["lines"], batch["failed"]):
            done += 1
            yield str(lines), bool(failed)
        if time.monotonic() >= next_report:
            log(f"  {done}/{len(named)} inputs scored")
            next_report = time.monotonic() + 10


def _write(scored: Iterator[tuple[str, bool]], path: Path, fmt: str) -> tuple[int, int]:
    """Write the rows; returns (rows, inputs that failed)."""
    rows = failed = 0
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for lines, bad in scored:
                f.write(lines + "\n")
                rows, failed = rows + lines.count("\n") + 1, failed + bad
        return rows, failed
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = []
    for lines, bad in scored:
        records += [json.loads(line) for line in lines.split("\n")]
        failed += bad
    pq.write_table(pa.Table.from_pylist(records), path)
    return len(records), failed
