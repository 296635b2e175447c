"""Progress bars for long work (tqdm; silent when stderr is not a terminal or EDGEAD_QUIET=1)."""
from __future__ import annotations

import os
from typing import Iterable, Sequence, TypeVar

T = TypeVar("T")


def progress_bar(it: Iterable[T], desc: str = "", total: int | None = None) -> Iterable[T]:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return it
    quiet = os.environ.get("EDGEAD_QUIET") == "1"
    return tqdm(it, desc=desc, total=total, disable=True if quiet else None, dynamic_ncols=True, leave=False)


def show_running_mean(bar: Iterable, step: int, every: int = 50, **series: Sequence[float]) -> None:
    """Every `every` steps, show the mean of each series' last `every` values on the bar."""
    if step % every == 0 and hasattr(bar, "set_postfix"):
        bar.set_postfix({k: f"{sum(v[-every:]) / max(1, len(v[-every:])):.4f}" for k, v in series.items()})
