#!/usr/bin/env python3
"""Score images dropped into a folder (a camera's FTP target, a shared drive) with an edgead bundle.

    python folder_watch.py bundles/hazelnut inbox/ --move-anomalous rejects/
    python folder_watch.py bundles/hazelnut inbox/ --tag --once          # score what is there, then exit

Appends one JSON line per file to the log (default INBOX/edgead_scores.jsonl). Anomalous images
are moved (--move-anomalous DIR) or renamed to NAME.anomaly.EXT (--tag). A file is scored once
its size has stopped changing (still being copied otherwise); unreadable files get an "error"
line and are retried only if they change. Files already there at start are scored too.
Polls the folder: no extra dependency.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

from edgead.predictor import Predictor
from edgead.tasks.image.data import IMAGE_SUFFIXES
from edgead.tasks.image.preprocess import read_image
from edgead.tasks.image.visualize import save_overlay

TAG = ".anomaly"


def candidates(folder: Path) -> dict[Path, tuple[int, int]]:
    """Image files directly in `folder` (not hidden, not tagged) -> (size, mtime_ns)."""
    out = {}
    for f in folder.iterdir():
        if f.name.startswith(".") or f.suffix.lower() not in IMAGE_SUFFIXES or f.stem.endswith(TAG):
            continue
        try:
            st = f.stat()
        except OSError:  # removed meanwhile
            continue
        if f.is_file():
            out[f] = (st.st_size, st.st_mtime_ns)
    return out


def free_name(path: Path) -> Path:
    """`path`, or path with _1, _2 ... if it exists."""
    i, p = 0, path
    while p.exists():
        i += 1
        p = path.with_name(f"{path.stem}_{i}{path.suffix}")
    return p


class Watcher:
    def __init__(self, pred: Predictor, a: argparse.Namespace):
        self.pred, self.a = pred, a
        self.log = Path(a.log) if a.log else Path(a.folder) / "edgead_scores.jsonl"
        self.seen: dict[Path, tuple[int, int]] = {}  # file -> (size, mtime) when handled
        self.last: dict[Path, tuple[int, int]] = {}  # file -> (size, mtime) at the previous poll
        self.count = 0

    def poll(self, settle: bool) -> int:
        """Score the new files that are complete; returns how many were handled."""
        now = candidates(Path(self.a.folder))
        ready = [f for f, stamp in sorted(now.items())
                 if self.seen.get(f) != stamp and (not settle or self.last.get(f) == stamp)]
        self.last = now
        self.seen = {f: s for f, s in self.seen.items() if f in now}  # forget moved / deleted files
        for f in ready:
            if self.a.max_files is not None and self.count >= self.a.max_files:
                break
            self.seen[f] = now[f]
            self.handle(f)
            self.count += 1
        return len(ready)

    def handle(self, f: Path) -> None:
        entry: dict = {"time": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "path": str(f)}
        try:
            img = read_image(f)
            res = self.pred.predict(img)
        except Exception as e:  # unreadable, truncated, or not an image: log it and go on
            entry["error"] = f"{type(e).__name__}: {e}"
            self.write(entry)
            return
        bad = res.score >= self.a.threshold
        entry.update(res.to_json(), is_anomalous=bad)
        if bad:
            if self.a.overlays:
                save_overlay(Path(self.a.overlays) / (f.stem + ".png"), img, res)
            try:
                if self.a.move_anomalous:
                    dest = Path(self.a.move_anomalous)
                    dest.mkdir(parents=True, exist_ok=True)
                    entry["moved_to"] = str(shutil.move(str(f), free_name(dest / f.name)))
                elif self.a.tag:
                    tagged = free_name(f.with_name(f.stem + TAG + f.suffix))
                    entry["tagged_as"] = str(f.rename(tagged))
            except OSError as e:
                entry["error"] = f"could not move or tag: {e}"
        self.write(entry)

    def write(self, entry: dict) -> None:
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        if not self.a.quiet:
            state = entry.get("error") or ("ANOMALY" if entry["is_anomalous"] else "ok")
            score = f"score={entry['score']:.3f}  " if "score" in entry else ""
            print(f"{state:7s}  {score}{entry['path']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="bundle folder from `edgead export`")
    p.add_argument("folder", help="folder to watch (top level only)")
    p.add_argument("--log", help="JSON-lines file to append to (default FOLDER/edgead_scores.jsonl)")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--move-anomalous", metavar="DIR", help="move anomalous images into DIR")
    act.add_argument("--tag", action="store_true", help=f"rename anomalous images to NAME{TAG}.EXT")
    p.add_argument("--overlays", metavar="DIR", help="save heat-map overlays of anomalous images")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="score at or above which an image is anomalous (0.5 = the bundle's threshold)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--once", action="store_true", help="score the files there now, then exit")
    p.add_argument("--max-files", type=int, default=None, help="exit after handling this many files")
    p.add_argument("--runtime", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true", help="log file only, nothing on stdout")
    a = p.parse_args(argv)
    if not Path(a.folder).is_dir():
        print(f"folder_watch.py: error: {a.folder} is not a folder", file=sys.stderr)
        return 2
    try:
        pred = Predictor(a.bundle, runtime=a.runtime, precision=a.precision, threads=a.threads)
    except (ValueError, OSError) as e:
        print(f"folder_watch.py: error: {e}", file=sys.stderr)
        return 2
    w = Watcher(pred, a)
    if a.once:
        w.poll(settle=False)
        return 0
    if not a.quiet:
        print(f"watching {a.folder} every {a.interval:g} s ({pred.runtime} {pred.precision}); Ctrl-C stops", flush=True)
    try:
        while a.max_files is None or w.count < a.max_files:
            w.poll(settle=True)
            time.sleep(a.interval)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
