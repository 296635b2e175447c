"""Atomic folder writes: build in a temporary sibling, fsync, rename into place."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def write_json(path: Path, data: dict) -> None:
    with open(path, "x", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished `tmp` to `out`; an old bundle (or empty folder) is moved aside first
    and deleted after, or moved back if the final rename fails."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _usual_file_modes(folder: Path) -> None:
    """Files as `open()` would make them (0666 minus umask); some writers (safetensors) use 0600."""
    umask = os.umask(0)
    os.umask(umask)
    for f in folder.iterdir():
        if f.is_file() and not f.is_symlink():
            os.chmod(f, 0o666 & ~umask)


def check_replaceable(out: str | os.PathLike, marker: str) -> Path:
    """`out` as an absolute path, if it is free or an edgead folder holding `marker`; call it
    before long work so that a refused output is refused at once."""
    out = Path(out).absolute()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / marker).is_file())):
        raise FileExistsError(f"refusing to replace {out}: it exists and is not an edgead folder "
                              f"(no {marker}); choose another output folder")
    return out


@contextmanager
def atomic_folder(out: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `out`, on error it is removed.

    An existing `out` is replaced only if it holds `marker` (i.e. it is ours) or is empty."""
    out = check_replaceable(out, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        yield tmp
        _usual_file_modes(tmp)
        fsync_dir(tmp)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
