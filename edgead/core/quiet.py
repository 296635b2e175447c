"""Third-party output out of the user's way: converters and quantizers print progress, warnings
and C++ log lines by the hundred. While `quiet(log)` is active, everything written to the
process's stdout and stderr (Python's and native code's: file descriptors 1 and 2) goes to the
log file, and `say()` still reaches the terminal: edgead's own lines stay readable."""
from __future__ import annotations

import io
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TextIO

Say = Callable[[str], None]


def _fd(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None  # a stream without a descriptor (pytest's capsys, a notebook)


def _say_to(stream: TextIO, fd: int | None) -> tuple[Say, Callable[[], None]]:
    """A say() writing where `stream` wrote before the redirection, and its closer."""
    if fd not in (1, 2):  # not a process descriptor: redirecting fds does not move it
        return (lambda msg: print(msg, file=stream, flush=True)), (lambda: None)
    out = os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8",
                    errors="replace")
    return (lambda msg: print(msg, file=out, flush=True)), out.close


@contextmanager
def quiet(log: Path | None, verbose: bool = False) -> Iterator[Say]:
    """Send stdout and stderr (fds 1 and 2) to `log` (truncated) for the duration; yields say().
    With `verbose` or no `log`, nothing is redirected and say() prints to stdout."""
    if verbose or log is None:
        yield lambda msg: print(msg, flush=True)
        return
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # first: a bad path leaks nothing
    say, close = _say_to(sys.stdout, _fd(sys.stdout))
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield say
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)
        close()
