"""A content fingerprint of a run's training files, so that later steps can tell the data changed."""
from __future__ import annotations

import hashlib
from pathlib import Path


def fingerprint(root: Path, rels: list[str]) -> str:
    """sha256 over each file's relative path and bytes, in sorted order."""
    h = hashlib.sha256()
    for rel in sorted(rels):
        h.update(rel.encode() + b"\0")
        try:
            h.update(hashlib.sha256((root / rel).read_bytes()).digest())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()
