"""Atomic folder writes: build in a temporary sibling, fsync, swap into place, under a lock;
leftovers of an interrupted write are cleaned (or restored) by the next one."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock
    fcntl = None


def write_json(path: Path, data: dict) -> None:
    with open(path, "x", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def replace_json(path: Path, data: dict) -> None:
    """Write one JSON file in place of the old one: a reader sees the old or the new file whole."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.unlink(missing_ok=True)  # a leftover of a killed writer with the same id
    try:
        write_json(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


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


_RENAME_EXCHANGE = 2  # renameat2 flag (Linux >= 3.15)
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def swap_into_place(tmp: Path, out: Path) -> None:
    """Make the finished `tmp` the folder at `out`. Where the OS can swap two paths atomically,
    `out` never stops existing (a reader sees the old or the new folder, never none); elsewhere
    the old folder is moved aside, the new one renamed in, and the old one deleted (or moved
    back if the rename fails; `recover` restores it after a crash in between)."""
    if out.exists() and _exchange(tmp, out):
        fsync_dir(out.parent)
        shutil.rmtree(tmp, ignore_errors=True)  # now the old content
        return
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


def recover(out: Path) -> None:
    """Clean what an interrupted write left beside `out` (call it holding `out`'s lock): a
    half-built `.NAME.tmp-*` folder is deleted; a `.NAME.old-*` copy is put back if `out` is
    gone (killed between the two renames), else deleted."""
    if not out.parent.is_dir():
        return
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    olds = sorted(out.parent.glob(f".{out.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not out.exists():
        os.rename(olds.pop(), out)
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


_held = threading.local()  # the folders this thread holds locked (for re-entry)


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock for writing `out` across processes (flock on its parent folder,
    which leaves no lock file behind), so that two writers never interleave; re-entrant within
    a thread. No-op where fcntl is missing (Windows)."""
    out = Path(out).absolute()
    key = str(out.parent)
    held = _held.__dict__.setdefault("folders", set())
    if key in held:
        yield
        return
    if fcntl is None:  # best effort where there is no lock: clean up, but writers are not serialised
        recover(out)
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # per open file: other threads' and processes' opens wait
        held.add(key)
        try:
            recover(out)
            yield
        finally:
            held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
    with locked(out):
        check_replaceable(out, marker)  # again: another writer may have finished meanwhile
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
