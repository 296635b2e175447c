"""What machine this is: a human description for benchmark reports, and a key that says
whether speed figures measured elsewhere apply here (torch-free, no runtime imported)."""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from edgead import __version__

#: pip distributions whose versions describe the machine's software.
VERSIONED = ("numpy", "opencv-python-headless", "opencv-python", "onnxruntime", "onnxruntime-gpu",
             "openvino", "ai-edge-litert", "tflite-runtime")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return ""


def _field(text: str, key: str) -> str:
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k.strip() == key and v.strip():
            return v.strip()
    return ""


def _command(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """A human name for the CPU: x86 'model name', lscpu (Arm cores, e.g. Cortex-A72), macOS, platform."""
    info = _read("/proc/cpuinfo")
    return (_field(info, "model name") or _field(_command("lscpu"), "Model name")
            or (_command("sysctl", "-n", "machdep.cpu.brand_string").strip() if sys.platform == "darwin" else "")
            or _field(info, "Hardware") or _field(info, "Model") or platform.processor() or platform.machine())


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def launched_processes() -> int:
    """How many processes torchrun launched for this job (WORLD_SIZE; 1 when run plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def default_threads() -> list[int]:
    """1 thread and all usable cores."""
    return sorted({1, usable_cores()})


def machine_key() -> str:
    """Architecture, CPU and usable cores: speed figures count only where this is the same
    (INT8 can be 5x faster than FP32 on one CPU and slower on another)."""
    return f"{platform.machine()} | {cpu_model()} | {usable_cores()} cores"


def installed_versions(names: Iterable[str] = VERSIONED) -> dict[str, str]:
    """Versions of the installed distributions among `names` (metadata only, nothing imported)."""
    out = {"edgead": __version__, "python": platform.python_version()}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def machine_info() -> dict:
    """CPU, cores, memory, OS, architecture, board (Pi / Jetson) and software versions."""
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        mem_gb = None
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable_cores(), "memory_gb": mem_gb,
            "os": platform.platform(), "arch": platform.machine(), "versions": installed_versions(),
            "key": machine_key()}
    try:
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews latency
    except (AttributeError, OSError):
        pass
    board = _read("/proc/device-tree/model")
    if board:
        info["board"] = board
    return info
