"""The bundle format: a folder with ``edgead.json`` (the manifest) and artefact files.

Manifest layout (JSON, no pickle anywhere)::

    {"schema_version": 1, "edgead_version": "0.1.0", "task": ..., "model": {...},
     "input": {...}, "outputs": {...},
     "artefacts": {"onnx": {"file": "model.onnx", "sha256": ..., "bytes": ...,
                            "precision": "fp32", ...},
                   "openvino": {"file": "model.xml", "extra_files": ["model.bin"], ...}},
     "files": {"model.onnx": {"sha256": ..., "bytes": ...}, ...}}

``files`` lists every file in the bundle with its checksum; an artefact's ``file`` (and its
``extra_files``, such as OpenVINO's .bin) must be among them. Bundles are written into a
temporary sibling folder and renamed into place, so readers never see half a bundle.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from edgead import __version__
from edgead.core.atomic import fsync_dir as _fsync_dir, locked, swap_into_place as _swap_into_place, write_json as _write_json
from edgead.core.errors import BundleError
from edgead.core.records import MANIFEST_KEYS, MANIFEST_REQUIRED, SCHEMA_VERSION

MANIFEST = "edgead.json"
REQUIRED_KEYS = MANIFEST_REQUIRED
DIGEST = "manifest_sha256"  # of the manifest itself (optional in schema 1: bundles before it lack it)
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------- writing

def write_bundle(out_dir: str | os.PathLike, manifest: Mapping,
                 files: Mapping[str, str | os.PathLike]) -> Path:
    """Write a complete bundle at `out_dir` atomically and return its path.

    `files` maps names inside the bundle to source files. Each ``manifest["artefacts"]``
    entry names its ``file`` (and optional ``extra_files``) among them; checksums and sizes
    are filled in, other keys are kept. An existing bundle at `out_dir` is replaced only once
    the new one is complete; a non-empty folder that is not a bundle is never touched.
    """
    out = Path(out_dir).absolute()
    manifest = _prepare_manifest(manifest, files)
    sources = {_safe_name(n, "files"): Path(src) for n, src in files.items()}
    for name, src in sources.items():
        if not src.is_file():
            raise BundleError(f"cannot write bundle {str(out)!r}: source file {str(src)!r} "
                              f"(for {name!r}) does not exist")
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out):
        _check_target(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            os.chmod(tmp, 0o755)
            table = {}
            for name, src in sorted(sources.items()):
                dst = tmp / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                table[name] = _copy_file(src, dst)
            manifest["files"] = table
            for art in manifest["artefacts"].values():
                art.update(table[art["file"]])
            manifest[DIGEST] = manifest_digest(manifest)
            _write_json(tmp / MANIFEST, manifest)
            _fsync_dir(tmp)
            _swap_into_place(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def add_artefacts(bundle_dir: str | os.PathLike, target: str,
                  files: Mapping[str, str | os.PathLike], artefact_meta: Mapping | None = None,
                  manifest: Mapping | None = None) -> Path:
    """Add (or replace) one target's artefact files in a bundle, keeping the other targets.

    `artefact_meta` is the target's manifest entry (``file``, ``extra_files``, ``precision``
    ...); ``file`` may be left out when `files` has one entry. See `update_bundle`."""
    meta = dict(artefact_meta or {})
    if "file" not in meta:
        if len(files) != 1:
            raise BundleError(f"add_artefacts({target!r}): several files {sorted(files)} given; "
                              "say which one is the artefact with artefact_meta['file']")
        meta["file"] = next(iter(files))
    return update_bundle(bundle_dir, manifest, {target: (files, meta)})


def update_bundle(bundle_dir: str | os.PathLike, manifest: Mapping | None,
                  artefacts: Mapping[str, tuple[Mapping[str, str | os.PathLike], Mapping]],
                  weights_sha256: str | None = None) -> Path:
    """Add (or replace) several targets' artefacts in one atomic rewrite of the bundle.

    `artefacts` maps a target key to (its files {name in bundle: source}, its manifest entry).
    If the bundle does not exist yet, `manifest` is the base manifest to create it with; if it
    exists, the top-level keys of `manifest` (if given) update it. Other targets are kept.
    With `weights_sha256`, a bundle made from other weights is refused (checked under the lock,
    so two exports of different runs racing into one folder cannot mix)."""
    bundle = Path(bundle_dir).absolute()
    with locked(bundle):  # read and rewrite as one step: a concurrent writer's targets are kept
        return _update_locked(bundle, manifest, artefacts, weights_sha256)


def _update_locked(bundle: Path, manifest: Mapping | None, artefacts, weights_sha256: str | None) -> Path:
    if (bundle / MANIFEST).is_file():
        base = load_manifest(bundle, verify=True)
        if weights_sha256 and base.get("weights_sha256") not in (None, weights_sha256):
            raise BundleError(f"{str(bundle)!r} holds artefacts exported from another run (other weights); "
                              "export into a new folder, or delete the old bundle first")
        existing = {n: bundle / n for n in base.get("files", {})}
    elif manifest is None:
        raise BundleError(f"{str(bundle)!r} is not a bundle yet: pass manifest=... to create it "
                          "(or use write_bundle)")
    else:
        base, existing = {"artefacts": {}}, {}
    for key, value in (manifest or {}).items():
        if key not in ("artefacts", "files", "schema_version"):
            base[key] = copy.deepcopy(value)
    arts = base.setdefault("artefacts", {})
    union = dict(existing)
    for target, (files, meta) in artefacts.items():
        old_target = arts.pop(target, None)
        owned = {n: t for t, a in arts.items() for n in artefact_files(a)}
        clash = sorted(n for n in files if n in owned)
        if clash:
            raise BundleError(f"cannot add target {target!r} to {str(bundle)!r}: file(s) {clash} "
                              f"already belong to target(s) {sorted({owned[n] for n in clash})}; "
                              "use other file names")
        for n in set(artefact_files(old_target)) - set(owned) if old_target else ():
            union.pop(n, None)
        union.update(files)
        arts[target] = dict(meta)
    base.pop("files", None)
    return write_bundle(bundle, base, union)


def check_writable(out: str | os.PathLike) -> Path:
    """Refuse at once (before any long work) an output that is not a folder or not a bundle."""
    out = Path(out).absolute()
    _check_target(out)
    return out


def _prepare_manifest(manifest: Mapping, files: Mapping) -> dict:
    """Deep, JSON-checked copy of the caller's manifest with the fixed keys filled in."""
    try:
        m = json.loads(json.dumps(dict(manifest)))
    except (TypeError, ValueError) as exc:
        raise BundleError(f"bundle manifest is not JSON-serialisable: {exc}") from exc
    m["schema_version"] = SCHEMA_VERSION
    m.setdefault("edgead_version", __version__)
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        raise BundleError(f"bundle manifest lacks required key(s) {missing}")
    arts = m["artefacts"]
    if not isinstance(arts, dict) or not arts:
        raise BundleError("bundle manifest needs at least one entry in 'artefacts' "
                          "({target: {'file': name, ...}})")
    for target, art in arts.items():
        if not isinstance(art, dict) or "file" not in art:
            raise BundleError(f"manifest artefact {target!r} needs a 'file' entry")
        for name in artefact_files(art):
            if name not in files:
                raise BundleError(f"manifest artefact {target!r} refers to {name!r}, "
                                  f"which is not among the files given: {sorted(files)}")
    return m


def _check_target(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BundleError(f"cannot write bundle: {str(out)!r} exists and is not a folder")
    if out.is_dir() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise BundleError(f"refusing to replace {str(out)!r}: it holds files but no {MANIFEST}, "
                          "so it is not an edgead bundle; choose another output folder or "
                          "empty it yourself")


def _copy_file(src: Path, dst: Path) -> dict:
    """Copy src to dst, fsync it, and return its {"sha256", "bytes"} (hashing what was written)."""
    h, size = hashlib.sha256(), 0
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        for chunk in iter(lambda: fi.read(_CHUNK), b""):
            fo.write(chunk)
            h.update(chunk)
            size += len(chunk)
        fo.flush()
        os.fsync(fo.fileno())
    return {"sha256": h.hexdigest(), "bytes": size}


# ---------------------------------------------------------------------------- reading

def load_manifest(bundle_dir: str | os.PathLike, verify: bool = True) -> dict:
    """Read and check a bundle's manifest; with `verify`, check every file's size and sha256."""
    bundle = Path(bundle_dir)
    if bundle.name == MANIFEST and bundle.is_file():
        bundle = bundle.parent
    if not bundle.exists():
        raise BundleError(f"bundle folder {str(bundle)!r} does not exist: export a model first "
                          "or check the path")
    if not bundle.is_dir():
        raise BundleError(f"{str(bundle)!r} is a file, not a bundle folder")
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{str(bundle)!r} is not an edgead bundle: {MANIFEST} is missing; "
                          "re-export the bundle")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{str(path)!r} is not valid JSON ({exc}); re-export the bundle") from exc
    if not isinstance(m, dict):
        raise BundleError(f"{str(path)!r} should hold a JSON object; re-export the bundle")
    _check_schema(m, path)
    if DIGEST in m and m[DIGEST] != manifest_digest(m):
        raise BundleError(f"{str(path)!r} was edited after export (its {DIGEST} does not match its content: "
                          "a threshold, input statistic or file entry changed); re-export the bundle")
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        raise BundleError(f"{str(path)!r} lacks required key(s) {missing}; re-export the bundle")
    unknown = sorted(set(m) - set(MANIFEST_KEYS))
    if unknown:
        raise BundleError(f"{str(path)!r} has key(s) {unknown} that schema {SCHEMA_VERSION} does not define "
                          "(written by another tool, or edited by hand?); re-export the bundle")
    _check_entries(m, path)
    if verify:
        verify_files(bundle, m)
    return m


def _check_schema(m: dict, path: Path) -> None:
    v = m.get("schema_version")
    if v is None:
        raise BundleError(f"{str(path)!r} has no schema_version: it was not written by edgead")
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise BundleError(f"{str(path)!r} has an unknown schema_version {v!r}; "
                          f"this edgead reads schema {SCHEMA_VERSION}")
    if v > SCHEMA_VERSION:
        raise BundleError(f"bundle schema {v} is newer than this edgead supports "
                          f"({SCHEMA_VERSION}): upgrade edgead (bundle: {str(path.parent)!r})")


def _check_entries(m: dict, path: Path) -> None:
    files = m.setdefault("files", {})
    arts = m["artefacts"]
    if not isinstance(arts, dict) or not isinstance(files, dict):
        raise BundleError(f"{str(path)!r}: 'artefacts' and 'files' must be JSON objects")
    for name, entry in files.items():
        _safe_name(name, str(path))
        if not isinstance(entry, dict) or not {"sha256", "bytes"} <= entry.keys():
            raise BundleError(f"{str(path)!r}: file entry {name!r} needs sha256 and bytes")
    for target, art in arts.items():
        if not isinstance(art, dict) or not isinstance(art.get("file"), str):
            raise BundleError(f"{str(path)!r}: artefact {target!r} needs a 'file' entry")
        if art["file"].lower().endswith(".xml"):  # OpenVINO opens the .bin beside it by itself
            weights = art["file"][:-4] + ".bin"
            if weights not in artefact_files(art):
                raise BundleError(f"{str(path)!r}: artefact {target!r} does not list {weights!r}, which OpenVINO "
                                  f"opens beside {art['file']!r}; its checksum must be in the manifest; re-export the bundle")
        for name in artefact_files(art):
            _safe_name(name, str(path))
            if name not in files and name == art["file"] and "sha256" in art:
                files[name] = {"sha256": art["sha256"], "bytes": art.get("bytes")}
            if name not in files:
                raise BundleError(f"{str(path)!r}: artefact {target!r} file {name!r} has no "
                                  "checksum entry; re-export the bundle")


def verify_files(bundle_dir: str | os.PathLike, manifest: Mapping, keep: list[str] | tuple = ()) -> dict[str, bytes]:
    """Check that every file listed in the manifest exists with its recorded size and sha256,
    in one read of each; the bytes of the files named in `keep` are returned (see read_verified)."""
    return {name: content for name in manifest.get("files", {})
            if (content := _verified(Path(bundle_dir), manifest, name, keep=name in keep)) is not None}


def present_targets(bundle_dir: str | os.PathLike, manifest: Mapping) -> list[str]:
    """The artefacts whose files are all in the folder (a device copy may keep only one)."""
    bundle = Path(bundle_dir)
    return [t for t, a in manifest["artefacts"].items() if all((bundle / n).is_file() for n in artefact_files(a))]


def only_target(manifest: Mapping, target: str) -> dict:
    """The manifest with the files of `target` and of no artefact: what loading it must verify."""
    owned = {n for a in manifest["artefacts"].values() for n in artefact_files(a)}
    keep = set(artefact_files(manifest["artefacts"][target]))
    return {**manifest, "files": {n: e for n, e in manifest.get("files", {}).items() if n in keep or n not in owned}}


def without_absent(manifest: Mapping, present: list[str]) -> dict:
    """The manifest without the files of artefacts that are not in the folder."""
    absent = {n for t, a in manifest["artefacts"].items() if t not in present for n in artefact_files(a)}
    return {**manifest, "files": {n: e for n, e in manifest.get("files", {}).items() if n not in absent}}


def slim(bundle_dir: str | os.PathLike, out_dir: str | os.PathLike, keep: list[str]) -> Path:
    """A bundle at `out_dir` with only the `keep` targets of `bundle_dir` (what a device gets):
    their files verified, copied, and listed in a new manifest (the thresholds and input spec
    unchanged)."""
    import copy

    m = load_manifest(bundle_dir, verify=False)
    unknown = [t for t in keep if t not in m["artefacts"]]
    if unknown or not keep:
        raise BundleError(f"{bundle_dir}: no target(s) {unknown or keep}; it has {', '.join(m['artefacts'])}")
    bundle = Path(bundle_dir)
    names = [n for t in keep for n in artefact_files(m["artefacts"][t])]
    owned = {n for a in m["artefacts"].values() for n in artefact_files(a)}
    names += [n for n in m.get("files", {}) if n not in owned]
    verify_files(bundle, {**m, "files": {n: m["files"][n] for n in names}})
    new = copy.deepcopy({k: v for k, v in m.items() if k not in (DIGEST, "files")})
    new["artefacts"] = {t: new["artefacts"][t] for t in keep}
    return write_bundle(out_dir, new, {n: bundle / n for n in names})


def read_verified(bundle_dir: str | os.PathLike, manifest: Mapping, names: list[str]) -> dict[str, bytes]:
    """The bytes of `names`, read once and checked against the manifest: a runtime given these
    runs exactly what was verified (a file swapped after the check is never opened)."""
    return {name: _verified(Path(bundle_dir), manifest, name, keep=True) for name in names}


def _verified(bundle: Path, manifest: Mapping, name: str, keep: bool) -> bytes | None:
    entry = manifest.get("files", {}).get(name)
    owners = {n: t for t, a in manifest.get("artefacts", {}).items() for n in artefact_files(a)}
    what = f"file {name!r}" + (f" (target {owners[name]!r})" if name in owners else "")
    fix = "re-export the bundle"
    if entry is None:
        raise BundleError(f"bundle {str(bundle)!r}: {what} is not listed in {MANIFEST}; {fix}")
    p = bundle / name
    if any(q.is_symlink() for q in (p, *list(p.parents)[: len(PurePosixPath(name).parts) - 1])):
        raise BundleError(f"bundle {str(bundle)!r}: {what} is a symbolic link; a bundle holds regular files "
                          f"only (a link could point outside it); {fix}")
    if not p.is_file():
        raise BundleError(f"bundle {str(bundle)!r}: {what} is missing; {fix}")
    h, size, chunks = hashlib.sha256(), 0, []
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
            if keep:
                chunks.append(chunk)
    if entry.get("bytes") is not None and size != entry["bytes"]:
        kind = "truncated" if size < entry["bytes"] else "larger than recorded"
        raise BundleError(f"bundle {str(bundle)!r}: {what} is {kind} ({size} bytes, manifest "
                          f"says {entry['bytes']}); {fix}")
    if h.hexdigest() != entry["sha256"]:
        raise BundleError(f"bundle {str(bundle)!r}: {what} does not match its sha256 "
                          f"(modified or corrupted); {fix}")
    return b"".join(chunks) if keep else None


def manifest_digest(manifest: Mapping) -> str:
    """sha256 of the canonical JSON of the manifest without its own digest: any edit of a
    threshold, an input statistic or a file entry changes it."""
    body = {k: v for k, v in manifest.items() if k != DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


def artefact_path(bundle_dir: str | os.PathLike, manifest: Mapping, target: str) -> Path:
    """Path of `target`'s main artefact file (e.g. the .xml for "openvino")."""
    arts = manifest.get("artefacts", {})
    if target not in arts:
        have = ", ".join(sorted(arts)) or "none"
        raise BundleError(f"bundle {str(bundle_dir)!r} has no {target!r} artefact (it has: "
                          f"{have}); export it into this bundle with --target {target}")
    return Path(bundle_dir) / _safe_name(arts[target]["file"], str(bundle_dir))


def artefact_files(art: Mapping) -> list[str]:
    """The files of one artefact entry: its `file` and `extra_files`."""
    return [art["file"], *art.get("extra_files", [])]


def artefact_bytes(manifest: Mapping, target: str) -> int:
    """Bytes a device needs for `target`: its file plus extra files (e.g. OpenVINO's .bin)."""
    art = manifest["artefacts"][target]
    files = manifest.get("files", {})
    return sum(int(files.get(f, {}).get("bytes") or art.get("bytes") or 0) for f in artefact_files(art))


def _safe_name(name: str, where: str) -> str:
    """Reject names that would leave the bundle folder (absolute, '..', backslashes)."""
    parts = PurePosixPath(name).parts if isinstance(name, str) and name else ()
    if (not parts or "\\" in name or name.startswith("/") or ".." in parts
            or parts[0] == MANIFEST):
        raise BundleError(f"{where}: invalid file name {name!r} in bundle (must be a relative "
                          f"path inside the bundle, not {MANIFEST})")
    return name
