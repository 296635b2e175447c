"""Point clouds in and out, numpy only (the device path): PCD (ascii, binary, binary_compressed),
PLY (ascii and binary, the vertex positions), XYZ / CSV / TXT columns, NumPy arrays (N x 3, or
H x W x 3 organised), MVTec 3D-AD `xyz` TIFFs, and depth images (16-bit PNG or one-channel
TIFF) back-projected with the camera's intrinsics from an `intrinsics.json` beside them.
Invalid points (NaN, inf, or exactly 0, 0, 0) are kept in place, so that an organised scan keeps
its grid; `Cloud.valid` marks the others."""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgead.core.errors import DataError
from edgead.tasks.pointcloud import lzf

SUFFIXES = (".pcd", ".ply", ".xyz", ".csv", ".txt", ".npy", ".tiff", ".tif")
DEPTH_PNG = ".png"  # a scan only where an intrinsics file is found (else a mask or a picture)
INTRINSICS = "intrinsics.json"
INTRINSICS_LEVELS = 3  # the scan's folder and up to this many above it (e.g. the data set's root)
PCD_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("U", 1): "u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8",
             ("I", 1): "i1", ("I", 2): "<i2", ("I", 4): "<i4", ("I", 8): "<i8"}
PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
             "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
             "double": "f8", "float64": "f8"}


@dataclass
class Cloud:
    points: np.ndarray  # (N, 3) float32; invalid points stay (NaN or 0, 0, 0)
    grid: tuple[int, int] | None = None  # (H, W) of an organised scan: points are its pixels, row by row
    viewpoint: np.ndarray | None = None  # the sensor's position, when the file says (PCD's VIEWPOINT)
    source: str = ""

    @property
    def valid(self) -> np.ndarray:
        """(N,) bool: finite and not the (0, 0, 0) that some sensors write for "no return"."""
        p = self.points
        return np.isfinite(p).all(1) & (p != 0).any(1)

    def sensor(self) -> np.ndarray:
        """Where normals should face: the recorded viewpoint, else a virtual one far out along the
        scan's least-variance axis (its sign fixed by a rule, so that every scan of a part gets the
        same side): normals of one part then face the same way on the workstation and the device."""
        if self.viewpoint is not None:
            return np.asarray(self.viewpoint, np.float64)
        p = self.points[self.valid].astype(np.float64)
        centre = p.mean(0)
        sample = p[:: max(1, len(p) // 20000)] - centre
        axis = np.linalg.svd(sample, full_matrices=False)[2][-1]
        axis = axis if axis[np.argmax(np.abs(axis))] > 0 else -axis
        return centre + 10 * max(float(np.abs(sample).max()), 1e-9) * axis


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole depth camera: focal lengths and principal point in pixels, and the depth unit."""

    fx: float
    fy: float
    cx: float
    cy: float
    depth_scale: float = 0.001  # scene units per depth value (16-bit PNGs of RealSense, Kinect: millimetres)

    @classmethod
    def read(cls, path: Path) -> "Intrinsics":
        import json

        try:
            d = json.loads(path.read_text())
            k = cls(float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), float(d.get("depth_scale", 0.001)))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: not valid intrinsics ({e}); expected JSON with fx, fy, cx, cy in pixels and "
                            "optionally depth_scale (scene units per depth value, default 0.001)") from e
        if min(k.fx, k.fy, k.depth_scale) <= 0:
            raise DataError(f"{path}: fx, fy and depth_scale must be positive")
        return k


def intrinsics_for(path: Path) -> Path | None:
    """The intrinsics.json that applies to a depth image: in its folder or the nearest above."""
    for folder in list(Path(path).resolve().parents)[: INTRINSICS_LEVELS + 1]:
        if (folder / INTRINSICS).is_file():
            return folder / INTRINSICS
    return None


def is_scan(path: Path) -> bool:
    """A file edgead reads as a scan (a PNG only as a depth image with intrinsics)."""
    suffix = path.suffix.lower()
    return suffix in SUFFIXES or (suffix == DEPTH_PNG and intrinsics_for(path) is not None)


def depth_cloud(depth: np.ndarray, k: Intrinsics) -> Cloud:
    """(H, W) depth values -> the organised cloud in the camera's frame (0 or non-finite depth:
    no return, an invalid point)."""
    z = depth.astype(np.float64) * k.depth_scale
    z = np.where(np.isfinite(z) & (z > 0), z, 0)
    v, u = np.indices(depth.shape)
    xyz = np.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z], -1)
    return Cloud(xyz.reshape(-1, 3).astype(np.float32), depth.shape, np.zeros(3, np.float32))


def read_cloud(path: str | os.PathLike) -> Cloud:
    """Read one scan; DataError (what, where, how to fix) for anything unreadable or empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    readers = {".pcd": _read_pcd, ".ply": _read_ply, ".npy": _read_npy, ".tiff": _read_tiff, ".tif": _read_tiff,
               DEPTH_PNG: _read_depth}
    reader = readers.get(suffix, _read_columns if suffix in (".xyz", ".csv", ".txt") else None)
    if reader is None:
        raise DataError(f"{path}: unknown point-cloud format {suffix!r}; use one of {', '.join(SUFFIXES)} "
                        f"(or {DEPTH_PNG} depth images with an {INTRINSICS})")
    try:
        cloud = reader(path)
    except DataError:
        raise
    except (ValueError, KeyError, IndexError, struct.error, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable {suffix[1:].upper()} point cloud ({e})") from e
    if len(cloud.points) == 0:
        raise DataError(f"{path}: the cloud has no points")
    if not cloud.valid.any():
        raise DataError(f"{path}: none of its {len(cloud.points)} points is valid (all NaN, infinite or 0, 0, 0)")
    cloud.source = str(path)
    return cloud


def _header(raw: bytes, path: Path, last: str) -> tuple[dict[str, list[str]], int, list[str]]:
    """Key -> values of a text header ending at the line that starts with `last`; the offset of
    the data after it; the header's lines in order."""
    head, pos, lines = {}, 0, []
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise DataError(f"{path}: the header never ends (no {last} line); the file is truncated or not a point cloud")
        line = raw[pos:end].decode("ascii").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        head[key.upper()] = values
        lines.append(line)
        if key.lower() == last.lower():
            return head, pos, lines


def _read_pcd(path: Path) -> Cloud:
    raw = path.read_bytes()
    head, pos, _ = _header(raw, path, "DATA")
    fields = head.get("FIELDS", [])
    if not {"x", "y", "z"} <= set(fields):
        raise DataError(f"{path}: PCD fields {fields} lack x, y and z")
    n = len(fields)
    sizes, types = [int(s) for s in head.get("SIZE", ["4"] * n)], head.get("TYPE", ["F"] * n)
    counts = [int(c) for c in head.get("COUNT", ["1"] * n)]
    width, height = int(head["WIDTH"][0]), int(head.get("HEIGHT", ["1"])[0])
    points = int(head.get("POINTS", [str(width * height)])[0])
    if points != width * height:
        raise DataError(f"{path}: POINTS {points} is not WIDTH x HEIGHT = {width} x {height}")
    try:
        dtype = np.dtype([(f, PCD_TYPES[(t, s)], (c,)) if c > 1 else (f, PCD_TYPES[(t, s)])
                          for f, s, t, c in zip(fields, sizes, types, counts)])
    except KeyError as e:
        raise DataError(f"{path}: unsupported PCD field type/size {e}") from e
    kind = head["DATA"][0].lower()
    if kind == "ascii":
        table = np.loadtxt(raw[pos:].decode("ascii").splitlines(), dtype=np.float64, ndmin=2)
        if table.shape[0] != points:
            raise DataError(f"{path}: {table.shape[0]} rows of points, the header says {points}")
        columns = np.cumsum([0] + counts)
        xyz = np.stack([table[:, columns[fields.index(a)]] for a in "xyz"], 1)
    elif kind == "binary":
        if len(raw) - pos < dtype.itemsize * points:
            raise DataError(f"{path}: the file is truncated ({len(raw) - pos} bytes of points, {dtype.itemsize * points} expected)")
        table = np.frombuffer(raw, dtype, points, pos)
        xyz = np.stack([table[a] for a in "xyz"], 1)
    elif kind == "binary_compressed":
        packed, size = struct.unpack_from("<II", raw, pos)
        if size != dtype.itemsize * points:
            raise DataError(f"{path}: compressed block of {size} bytes, {dtype.itemsize * points} expected")
        data = lzf.decompress(raw[pos + 8 : pos + 8 + packed], size, str(path))
        offsets = np.cumsum([0] + [dtype[f].itemsize * points for f in fields])  # stored field by field
        xyz = np.stack([np.frombuffer(data, dtype[a].base, points, int(offsets[fields.index(a)])) for a in "xyz"], 1)
    else:
        raise DataError(f"{path}: unknown PCD DATA {kind!r} (ascii, binary or binary_compressed)")
    view = np.array([float(v) for v in head["VIEWPOINT"][:3]], np.float32) if "VIEWPOINT" in head else None
    return Cloud(xyz.astype(np.float32), (height, width) if height > 1 else None, view)


def _read_ply(path: Path) -> Cloud:
    raw = path.read_bytes()
    if not raw.startswith(b"ply"):
        raise DataError(f"{path}: not a PLY file (it does not start with 'ply')")
    _, pos, lines = _header(raw, path, "end_header")
    fmt = next((ln.split()[1] for ln in lines if ln.startswith("format")), "")
    elements, current = [], None
    for ln in lines:
        words = ln.split()
        if words[0] == "element":
            current = [words[1], int(words[2]), []]
            elements.append(current)
        elif words[0] == "property" and current is not None:
            if words[1] == "list":
                current[2].append((words[-1], None))
            else:
                current[2].append((words[-1], PLY_TYPES[words[1]]))
    vertex = next((e for e in elements if e[0] == "vertex"), None)
    if vertex is None or not {"x", "y", "z"} <= {p for p, _ in vertex[2]}:
        raise DataError(f"{path}: PLY has no vertex element with x, y and z")
    before = elements[: elements.index(vertex)]
    if any(t is None for e in before + [vertex] for _, t in e[2]):
        raise DataError(f"{path}: PLY list properties before or in the vertices are not supported; save the vertices first")
    if fmt == "ascii":
        rows = raw[pos:].decode("ascii").splitlines()
        start = sum(e[1] for e in before)
        table = np.loadtxt(rows[start : start + vertex[1]], dtype=np.float64, ndmin=2)
        names = [p for p, _ in vertex[2]]
        xyz = np.stack([table[:, names.index(a)] for a in "xyz"], 1)
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        order = "<" if fmt == "binary_little_endian" else ">"
        skip = sum(np.dtype([(p, order + t) for p, t in e[2]]).itemsize * e[1] for e in before)
        dtype = np.dtype([(p, order + t) for p, t in vertex[2]])
        if len(raw) - pos - skip < dtype.itemsize * vertex[1]:
            raise DataError(f"{path}: the file is truncated")
        table = np.frombuffer(raw, dtype, vertex[1], pos + skip)
        xyz = np.stack([table[a] for a in "xyz"], 1)
    else:
        raise DataError(f"{path}: unknown PLY format {fmt!r}")
    return Cloud(xyz.astype(np.float32))


def _read_columns(path: Path) -> Cloud:
    text = path.read_text(encoding="utf-8", errors="strict").replace(",", " ").replace(";", " ").splitlines()
    rows = [ln for ln in text if ln.strip() and not ln.lstrip().startswith("#")]
    try:
        float(rows[0].split()[0])
    except (ValueError, IndexError):
        rows = rows[1:]  # a header line
    table = np.loadtxt(rows, dtype=np.float64, ndmin=2)
    if table.shape[1] < 3:
        raise DataError(f"{path}: {table.shape[1]} columns; the first three must be x, y, z")
    return Cloud(table[:, :3].astype(np.float32))


def _read_npy(path: Path) -> Cloud:
    a = np.load(path, allow_pickle=False)
    if a.ndim == 2 and a.shape[1] >= 3:
        return Cloud(np.ascontiguousarray(a[:, :3], np.float32))
    if a.ndim == 3 and a.shape[2] >= 3:
        return Cloud(np.ascontiguousarray(a[..., :3].reshape(-1, 3), np.float32), (a.shape[0], a.shape[1]))
    raise DataError(f"{path}: array of shape {a.shape}; expected N x 3 points or an H x W x 3 organised scan")


def _read_tiff(path: Path) -> Cloud:
    from edgead.core.opencv import cv2

    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is not None and a.ndim == 2:
        return _read_depth(path, a)
    if a is None or a.ndim != 3 or a.shape[2] != 3:
        raise DataError(f"{path}: expected an H x W x 3 float TIFF of x, y, z (MVTec 3D-AD xyz/) or a one-channel "
                        f"depth TIFF with an {INTRINSICS}")
    return Cloud(np.ascontiguousarray(a[..., ::-1].reshape(-1, 3), np.float32), (a.shape[0], a.shape[1]))


def _read_depth(path: Path, depth: np.ndarray | None = None) -> Cloud:
    from edgead.core.opencv import cv2

    found = intrinsics_for(path)
    if found is None:
        raise DataError(f"{path}: a depth image needs the camera's intrinsics: put an {INTRINSICS} with fx, fy, cx, cy "
                        f"(pixels) and depth_scale (scene units per depth value) in its folder or one above it")
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if depth is None else depth
    if depth is None or depth.ndim != 2:
        raise DataError(f"{path}: expected a one-channel depth image (16-bit PNG or float TIFF)")
    return depth_cloud(depth, Intrinsics.read(found))


def write_pcd(path: str | os.PathLike, cloud: Cloud) -> None:
    """A binary PCD of x, y, z (organised scans keep WIDTH x HEIGHT), written atomically."""
    path = Path(path)
    h, w = cloud.grid or (1, len(cloud.points))
    vp = " ".join(f"{v:.9g}" for v in cloud.sensor())  # a virtual viewpoint is written down, so it never moves
    head = (f"# .PCD v0.7 - written by edgead\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
            f"WIDTH {w}\nHEIGHT {h}\nVIEWPOINT {vp} 1 0 0 0\nPOINTS {len(cloud.points)}\nDATA binary\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(head.encode("ascii") + np.ascontiguousarray(cloud.points, "<f4").tobytes())
    os.replace(tmp, path)
