"""Names for files written per input (overlays, point-score CSVs): mirror the input's place
under the folder given, and never let two inputs write the same file."""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path


def named_inputs(paths: list[str], suffixes: Collection[str], skip: Collection[str] = ()) -> list[tuple[Path, Path]]:
    """Files of `paths` (files as given; folders searched recursively for `suffixes`, leaving out
    sub-folders named in `skip`), each with a unique output name that mirrors its place under
    the folder given."""
    out: list[tuple[Path, Path]] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [(f, f.relative_to(p)) for f in sorted(p.rglob("*"))
                    if f.is_file() and f.suffix.lower() in suffixes and not set(skip) & set(f.relative_to(p).parts)]
        else:
            out.append((p, Path(p.name)))
    return unique_names(out)


def unique_names(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """[(input, output name)] with repeated names made unique: "~2", "~3"... before the suffix."""
    seen: dict[str, int] = {}
    out = []
    for f, rel in pairs:
        key = rel.with_suffix("").as_posix().casefold()  # case-insensitive file systems (macOS, Windows)
        seen[key] = seen.get(key, 0) + 1
        out.append((f, rel if seen[key] == 1 else rel.with_name(f"{rel.stem}~{seen[key]}{rel.suffix}")))
    return out
