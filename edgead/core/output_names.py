"""Names for files written per input (overlays, point-score CSVs): mirror the input's place
under the folder given, and never let two inputs write the same file."""
from __future__ import annotations

from pathlib import Path


def unique_names(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """[(input, output name)] with repeated names made unique: "~2", "~3"... before the suffix."""
    seen: dict[str, int] = {}
    out = []
    for f, rel in pairs:
        key = rel.with_suffix("").as_posix().casefold()  # case-insensitive file systems (macOS, Windows)
        seen[key] = seen.get(key, 0) + 1
        out.append((f, rel if seen[key] == 1 else rel.with_name(f"{rel.stem}~{seen[key]}{rel.suffix}")))
    return out
