"""Archive scoring throughput: plain `edgead predict` against `--engine ray` with 1 and 2 local
workers, on the same archive and bundle, interleaved over rounds in one run. Writes
bench/results/ray_scoring.json and prints markdown rows for BENCHMARKS.md.

usage: python bench/ray_scoring.py [--copies 40] [--rounds 2] [--work bench/work/ray]

The archive is the shared hazelnut_toy images (512 x 512 JPEG) copied `--copies` times under
--work (git-ignored); the bundle is the default model (padim, 256 px) exported to OpenVINO and
ONNX Runtime. Each measurement is a fresh command, as a user runs it: start-up included."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "images" / "hazelnut_toy"
EDGEAD = [sys.executable, "-m", "edgead"]


def archive(work: Path, copies: int) -> Path:
    root = work / "archive"
    if root.is_dir():
        return root
    images = sorted(p for p in SHARED.rglob("*.jpg") if "ground_truth" not in p.parts)
    for c in range(copies):
        for i, p in enumerate(images):
            dst = root / f"batch{c:03d}" / f"{i:03d}.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst)
    return root


def bundle(work: Path) -> Path:
    out = work / "bundle"
    if not (out / "edgead.json").is_file():
        subprocess.run([*EDGEAD, "train", "--data", str(SHARED), "--out", str(work / "run")], check=True)
        subprocess.run([*EDGEAD, "export", str(work / "run"), "--target", "onnx,openvino", "--out", str(out)], check=True)
    return out


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr[-1500:]}")
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--copies", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--work", default=str(HERE / "work" / "ray"))
    p.add_argument("--runtime", default="openvino")
    a = p.parse_args()
    work = Path(a.work)
    root, b = archive(work, a.copies), bundle(work)
    n = sum(1 for _ in root.rglob("*.jpg"))
    cases = {"edgead predict (1 process)": [*EDGEAD, "predict", str(b), str(root), "--json", "--runtime", a.runtime]}
    for w in (1, 2):
        cases[f"--engine ray, {w} worker{'s' if w > 1 else ''}"] = [
            *EDGEAD, "predict", str(b), str(root), "--engine", "ray", "--workers", str(w), "--runtime", a.runtime,
            "--threads", "1", "--out", str(work / f"results_{w}")]
    seconds: dict[str, list[float]] = {k: [] for k in cases}
    scoring: dict[str, list[float]] = {k: [] for k in cases}  # Ray: from the actors' start to the last row
    for r in range(a.rounds):
        for name, cmd in cases.items():
            seconds[name].append(timed(cmd))
            if "--out" in cmd:
                summary = Path(cmd[cmd.index("--out") + 1]) / "summary.json"
                scoring[name].append(json.loads(summary.read_text())["seconds"])
            print(f"round {r + 1}: {name}: {n / seconds[name][-1]:.1f} images/s", file=sys.stderr, flush=True)
    rows = {k: {"seconds": v, "images_per_s": [n / s for s in v],
                "scoring_images_per_s": [n / s for s in scoring[k]]} for k, v in seconds.items()}
    from edgead.core.machine import machine_info

    result = {"date": time.strftime("%Y-%m-%d"), "images": n, "runtime": a.runtime, "machine": machine_info(),
              "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "ray_scoring.json").write_text(json.dumps(result, indent=1))
    print("| how | images/s, whole command (each round) | images/s once the actors run |\n|---|---|---|")
    for k, v in rows.items():
        steady = " / ".join(f"{x:.1f}" for x in v["scoring_images_per_s"]) or "same"
        print(f"| {k} | {' / '.join(f'{x:.1f}' for x in v['images_per_s'])} | {steady} |")


if __name__ == "__main__":
    main()
