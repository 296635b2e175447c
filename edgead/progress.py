"""Progress bars for long work (tqdm; silent when stderr is not a terminal or EDGEAD_QUIET=1)."""
from __future__ import annotations

import os
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_bar(it: Iterable[T], desc: str = "", total: int | None = None) -> Iterable[T]:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return it
    quiet = os.environ.get("EDGEAD_QUIET") == "1"
    return tqdm(it, desc=desc, total=total, disable=True if quiet else None, dynamic_ncols=True, leave=False)
