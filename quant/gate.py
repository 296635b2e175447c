"""The INT8 accuracy gate: try quantized candidates in order until one is within the limits.

Generic: a runtime module yields `Candidate`s lazily (the default quantization first, then its
repairs, e.g. layers kept in FP32), and `measure` scores a candidate into named values (e.g.
the AUROC drop and the score shift against FP32). The first candidate whose values are all
within their `limits` wins; if none is, `GateFailed` names the values and limits of the best
attempt, so a bad INT8 model is never shipped silently."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Candidate:
    """One quantized artefact on disk."""

    name: str  # what was tried, e.g. "all layers INT8"
    files: dict[str, Path]  # name in the bundle -> file
    main: str  # which of `files` the runtime loads
    settings: dict = field(default_factory=dict)  # JSON-able: how it was made

    @property
    def path(self) -> Path:
        return self.files[self.main]


class GateFailed(RuntimeError):
    """No candidate was within the limits; `record` holds every attempt."""

    def __init__(self, message: str, record: dict):
        super().__init__(message)
        self.record = record


def excess(values: Mapping[str, float | None], limits: Mapping[str, float]) -> float:
    """Largest value / limit over the limited values that were measured (<= 1 passes); infinite
    when the candidate could not be measured (`values["failed"]` says why, e.g. NaN scores)."""
    if values.get("failed"):
        return float("inf")
    ratios = [values[k] / lim if lim > 0 else (0.0 if values[k] <= 0 else float("inf"))
              for k, lim in limits.items() if values.get(k) is not None]
    return max(ratios, default=0.0)


def run_gate(candidates: Iterable[Candidate], measure: Callable[[Candidate], dict], limits: Mapping[str, float],
             what: str = "INT8 model", history: list[dict] | None = None,
             on_attempt: Callable[[dict], None] | None = None) -> tuple[Candidate, dict]:
    """Measure candidates in order; return the first within `limits` and the gate record.

    `measure(candidate)` returns a dict of values (larger is worse) including every key of
    `limits` (None: not measurable on this data, not checked). `history`, if given, is the list
    the attempts are appended to while the gate runs, so a candidate generator can read it;
    `on_attempt` is called with each attempt's record as it is appended."""
    for k, lim in limits.items():
        if not lim >= 0:
            raise ValueError(f"limit {k} must be >= 0, got {lim!r}")
    tried: list[dict] = history if history is not None else []
    for cand in candidates:
        values = measure(cand)
        ratio = excess(values, limits)
        tried.append({"name": cand.name, "settings": cand.settings, **values, "excess": ratio if ratio < float("inf") else None})
        if on_attempt is not None:
            on_attempt(tried[-1])
        if ratio <= 1.0:
            return cand, {"passed": True, "limits": dict(limits), "chosen": cand.name, "attempts": tried}
    record = {"passed": False, "limits": dict(limits), "chosen": None, "attempts": tried}
    if not tried:
        raise GateFailed(f"{what}: no candidate quantized any weights (each kept every layer with weights in FP32, "
                         "so it would be no smaller than FP32); ship FP32", record)
    best = min(tried, key=lambda t: float("inf") if t["excess"] is None else t["excess"])
    over = ", ".join(f"{k} {best[k]:.4f} > {lim}" for k, lim in limits.items()
                     if best.get(k) is not None and best[k] > lim)
    names = "; ".join(f"{t['name']}: " + (t["failed"] if t.get("failed") else
                                          ", ".join(f"{k} {t[k]:.4f}" for k in limits if t.get(k) is not None))
                      for t in tried)
    raise GateFailed(
        f"{what}: INT8 accuracy is not within bounds ({over or 'no candidate could be measured'}) even at best, after {len(tried) - 1} "
        f"repair(s) [{names}]; the INT8 artefact was not written. Calibrate with more or more typical "
        "normal images (--calib), allow a larger loss (--max-drop / --max-shift) or ship FP32.", record)
