"""Signal data sets (numpy only; `wfdb` is imported only to read WFDB records).

Two shapes of data:
- `SampleSet`: fixed-length samples with a class each, e.g. UCR heartbeats (N, C, L).
- `Series`: one long recording (T, C) with optional point labels and annotated beats:
  WFDB records (beats from `.atr`, N vs non-N), NAB CSV series (labelled windows from
  `labels/combined_windows.json`), generic CSV and numpy files.

`load_signal(path, kind=None)` detects the kind from the file (see `detect_kind`)."""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgead.core.errors import DataError
from edgead.tasks.signal.preprocess import fill_gaps, resample_factors

KINDS = ("ucr", "wfdb", "nab", "csv", "npy")
# WFDB beat annotation symbols (PhysioNet's "beat" codes); everything else ('+', '~', '|', ...) is not a beat.
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
LABEL_COLUMNS = ("label", "labels", "is_anomaly", "anomaly")
TIME_COLUMNS = ("timestamp", "time", "date", "datetime")


@dataclass
class SampleSet:
    """Fixed-length samples: values (N, C, L) float32, class names, labels 0 normal / 1 anomalous."""

    values: np.ndarray
    classes: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int64
    source: str
    kind: str = "ucr"
    rate: float | None = None
    normal_class: str = "1"

    def fingerprint(self) -> str:
        return _fingerprint(self.values, self.kind)

    def summary(self) -> dict:
        counts = {str(c): int(n) for c, n in zip(*np.unique(self.classes, return_counts=True))}
        return {"source": self.source, "kind": self.kind, "shape": list(self.values.shape),
                "normal_class": self.normal_class, "class_counts": counts}


@dataclass
class Series:
    """One recording: values (T, C) float32 at `rate` Hz (None: unknown, index-based)."""

    values: np.ndarray
    source: str
    kind: str
    rate: float | None = None
    channel_names: list[str] = field(default_factory=list)
    point_labels: np.ndarray | None = None  # (T,) uint8, 1 = anomalous
    beats: np.ndarray | None = None  # (B,) sample indices of annotated beats
    beat_labels: np.ndarray | None = None  # (B,) 0 = N, 1 = any other beat type
    beat_symbols: list[str] | None = None
    missing: np.ndarray | None = None  # (T,) bool: samples that were missing (NaN, empty) and filled

    def fingerprint(self) -> str:
        return _fingerprint(self.values, self.kind)

    def summary(self) -> dict:
        d = {"source": self.source, "kind": self.kind, "samples": int(len(self.values)),
             "channels": self.channel_names, "rate": self.rate}
        if self.point_labels is not None:
            d["anomalous_points"] = int(self.point_labels.sum())
        if self.beats is not None:
            d["beats"] = int(len(self.beats))
            d["non_normal_beats"] = int(self.beat_labels.sum())
        return d


def _fingerprint(values: np.ndarray, kind: str) -> str:
    h = hashlib.sha256(kind.encode())
    h.update(str(values.shape).encode())
    h.update(np.ascontiguousarray(values, np.float32).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------ detection

def _wfdb_base(path: Path) -> Path | None:
    """'rec', 'rec.hea', 'rec.dat' or 'rec.atr' -> 'rec' if rec.hea exists beside it."""
    base = path.with_suffix("") if path.suffix.lower() in (".hea", ".dat", ".atr", ".qrs") else path
    return base if base.with_suffix(".hea").is_file() else None


def nab_root(path: Path) -> Path | None:
    """The NAB folder holding `data/` and `labels/combined_windows.json` above a CSV, if any."""
    for parent in path.resolve().parents:
        if (parent / "labels" / "combined_windows.json").is_file() and (parent / "data").is_dir():
            return parent
    return None


def detect_kind(path: str | Path) -> str:
    """ucr (.txt/.ts/.arff), wfdb (a record with its .hea), nab (a CSV inside a NAB tree), csv, npy."""
    p = Path(path)
    if _wfdb_base(p) is not None:
        return "wfdb"
    if not p.exists():
        raise DataError(f"signal data {p} does not exist (give a file: UCR .txt/.ts/.arff, a WFDB "
                        "record such as data/100 or data/100.hea, a CSV or a .npy)")
    if p.is_dir():
        raise DataError(f"{p} is a folder; give one signal file (UCR .txt/.ts/.arff, WFDB record, CSV, .npy)")
    suffix = p.suffix.lower()
    if suffix in (".ts", ".arff", ".txt", ".tsv"):
        return "ucr"
    if suffix == ".csv":
        return "nab" if nab_root(p) is not None else "csv"
    if suffix in (".npy", ".npz"):
        return "npy"
    raise DataError(f"{p}: cannot tell the kind of signal data from {suffix or 'no suffix'}; "
                    f"pass --data-kind (one of {', '.join(KINDS)})")


def load_signal(path: str | Path, kind: str | None = None, normal_class: str = "1",
                channels: list[str] | None = None) -> SampleSet | Series:
    """Load signal data of `kind` (detected when None). `channels` picks columns / leads by name or index."""
    p = Path(path)
    kind = kind or detect_kind(p)
    if kind not in KINDS:
        raise DataError(f"unknown data kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind != "wfdb" and not p.is_file():
        raise DataError(f"signal file {p} does not exist")
    if kind == "ucr":
        return load_ucr(p, normal_class)
    if kind == "wfdb":
        return load_wfdb(p, channels)
    if kind == "nab":
        return load_nab(p)
    if kind == "csv":
        return load_csv(p, channels)
    return load_npy(p, channels)


def load_with_channels(path: str | Path, kind: str | None, names: list[str]) -> tuple[SampleSet | Series, bool]:
    """The file with the channels `names` (a model's) when it has them, else all of its channels;
    the flag says whether the named channels were found."""
    try:
        return load_signal(path, kind, channels=names or None), True
    except DataError as e:
        if "no channel" not in str(e):
            raise
        return load_signal(path, kind), False


# ------------------------------------------------------------------------------ UCR

def _class_name(v: str) -> str:
    v = v.strip()
    try:
        f = float(v)
        return str(int(f)) if f.is_integer() else v
    except ValueError:
        return v


def _to_floats(parts: list[str], where: str) -> list[float]:
    try:
        return [float(v) for v in parts]
    except ValueError as e:
        raise DataError(f"{where}: not a number ({e})") from e


def load_ucr(path: Path, normal_class: str = "1") -> SampleSet:
    """UCR/UEA univariate or multivariate samples: .txt (class first), .ts (sktime), .arff (class last)."""
    suffix = path.suffix.lower()
    rows: list[list[list[float]]] = []
    classes: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    if suffix == ".ts":
        started = False
        for i, line in enumerate(lines, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if s.startswith("@"):
                started = started or s.lower().startswith("@data")
                continue
            if not started:
                continue
            *dims, cls = s.split(":")
            rows.append([_to_floats(d.split(","), f"{path}:{i}") for d in dims])
            classes.append(_class_name(cls))
    elif suffix == ".arff":
        started = False
        for i, line in enumerate(lines, 1):
            s = line.strip()
            if not s or s.startswith("%"):
                continue
            if s.lower().startswith("@data"):
                started = True
                continue
            if s.startswith("@") or not started:
                if s.lower().startswith("@attribute") and "relational" in s.lower():
                    raise DataError(f"{path}: relational (multivariate) ARFF is not supported; use the .ts file")
                continue
            *vals, cls = s.split(",")
            rows.append([_to_floats(vals, f"{path}:{i}")])
            classes.append(_class_name(cls))
    else:
        for i, line in enumerate(lines, 1):
            parts = line.replace(",", " ").split()
            if not parts:
                continue
            classes.append(_class_name(parts[0]))
            rows.append([_to_floats(parts[1:], f"{path}:{i}")])
    if not rows:
        raise DataError(f"{path}: no samples found (expected UCR format: one sample per line)")
    lengths = {len(d) for r in rows for d in r}
    if max(lengths) < 2:
        raise DataError(f"{path}: lines hold one value each, which is a series, not UCR samples (class, values...); "
                        "pass --data-kind csv")
    if len(lengths) != 1 or len({len(r) for r in rows}) != 1:
        raise DataError(f"{path}: samples have different lengths {sorted(lengths)[:5]}; "
                        "only equal-length UCR data sets are supported")
    values = np.asarray(rows, np.float32)
    if not np.isfinite(values).all():
        raise DataError(f"{path}: samples contain missing or infinite values")
    cls = np.asarray(classes)
    if normal_class not in set(classes):
        raise DataError(f"{path}: normal class {normal_class!r} not found; classes are "
                        f"{sorted(set(classes))} (pick one with --normal-class)")
    return SampleSet(values, cls, (cls != normal_class).astype(np.int64), str(path), "ucr", None, normal_class)


# ------------------------------------------------------------------------------ WFDB

def load_wfdb(path: Path, channels: list[str] | None = None) -> Series:
    """A WFDB record (.hea + .dat) in physical units, with beats from its .atr annotations if present."""
    base = _wfdb_base(Path(path))
    if base is None:
        raise DataError(f"{path}: no WFDB header {Path(path).with_suffix('.hea')} found")
    try:
        import wfdb
    except ImportError as e:
        raise ImportError(f"reading WFDB records needs the wfdb package: pip install wfdb ({e})") from e
    try:
        rec = wfdb.rdrecord(str(base))
    except Exception as e:  # wfdb raises many kinds
        raise DataError(f"{base}: cannot read WFDB record ({e})") from e
    values = np.asarray(rec.p_signal, np.float32)
    names = list(rec.sig_name or [f"ch{i}" for i in range(values.shape[1])])
    idx = _pick_channels(names, channels, str(base))
    values, names = values[:, idx], [names[i] for i in idx]
    s = _series(values, str(base), "wfdb", float(rec.fs), names)
    if base.with_suffix(".atr").is_file():
        try:
            ann = wfdb.rdann(str(base), "atr")
        except Exception as e:
            raise DataError(f"{base}.atr: cannot read annotations ({e})") from e
        keep = [i for i, sym in enumerate(ann.symbol) if sym in BEAT_SYMBOLS and 0 <= ann.sample[i] < len(values)]
        s.beats = np.asarray(ann.sample, np.int64)[keep]
        s.beat_symbols = [ann.symbol[i] for i in keep]
        s.beat_labels = np.array([sym != "N" for sym in s.beat_symbols], np.int64)
    return s


def _pick_channels(names: list[str], wanted: list[str] | None, where: str) -> list[int]:
    if not wanted:
        return list(range(len(names)))
    out = []
    for w in wanted:
        if w in names:
            out.append(names.index(w))
        elif str(w).isdigit() and int(w) < len(names):
            out.append(int(w))
        else:
            raise DataError(f"{where}: no channel {w!r}; channels are {names}")
    return out


def _series(values: np.ndarray, source: str, kind: str, rate: float | None, names: list[str]) -> Series:
    """A Series with its missing samples filled as the predictor fills them (preprocess.fill_gaps),
    remembering which were missing."""
    filled, missing = fill_gaps(values, source)
    return Series(filled, source, kind, rate, names, missing=missing)


# ------------------------------------------------------------------------------ CSV / NAB / numpy

def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path}: empty CSV")
    first = rows[0]
    if any(not _is_number(c) for c in first):
        return [c.strip() for c in first], rows[1:]
    return [f"col{i}" for i in range(len(first))], rows


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_csv(path: Path, channels: list[str] | None = None) -> Series:
    """A CSV with a header (or none): numeric columns are channels; `label`/`is_anomaly` gives point
    labels; time-like and non-numeric columns are ignored."""
    header, rows = _read_csv(path)
    if not rows:
        raise DataError(f"{path}: CSV has a header but no rows")
    width = len(header)
    if any(len(r) != width for r in rows):
        bad = next(i for i, r in enumerate(rows) if len(r) != width)
        raise DataError(f"{path}: row {bad + 2} has {len(rows[bad])} fields, the header has {width}")
    lower = [h.lower() for h in header]
    label_col = next((lower.index(c) for c in LABEL_COLUMNS if c in lower), None)
    numeric = [j for j in range(width) if j != label_col and lower[j] not in TIME_COLUMNS
               and _is_number(rows[0][j])]
    if not numeric:
        raise DataError(f"{path}: no numeric value column (header: {header})")
    names = [header[j] for j in numeric]
    pick = _pick_channels(names, channels, str(path))
    cols = [numeric[i] for i in pick]
    try:
        values = np.array([[float(r[j]) if r[j].strip() else np.nan for j in cols] for r in rows], np.float32)
    except ValueError as e:
        raise DataError(f"{path}: non-numeric value in a value column ({e})") from e
    s = _series(values, str(path), "csv", None, [names[i] for i in pick])
    if label_col is not None:
        s.point_labels = np.array([float(r[label_col] or 0) > 0 for r in rows], np.uint8)
    return s


def load_nab(path: Path) -> Series:
    """A NAB series (timestamp,value) with point labels from the labelled anomaly windows."""
    header, rows = _read_csv(path)
    lower = [h.lower() for h in header]
    if "timestamp" not in lower or "value" not in lower:
        raise DataError(f"{path}: a NAB CSV needs 'timestamp' and 'value' columns (header: {header})")
    ti, vi = lower.index("timestamp"), lower.index("value")
    try:
        times = np.array([r[ti].strip().replace(" ", "T") for r in rows], "datetime64[ms]")
        values = np.array([[float(r[vi])] for r in rows], np.float32)
    except ValueError as e:
        raise DataError(f"{path}: bad timestamp or value ({e})") from e
    s = _series(values, str(path), "nab", None, ["value"])
    root = nab_root(path)
    if root is not None:
        key = path.resolve().relative_to((root / "data").resolve()).as_posix()
        windows = json.loads((root / "labels" / "combined_windows.json").read_text(encoding="utf-8"))
        if key not in windows:
            raise DataError(f"{path}: not listed in {root / 'labels/combined_windows.json'} (key {key!r})")
        labels = np.zeros(len(rows), np.uint8)
        for start, end in windows[key]:
            a, b = (np.datetime64(t.strip().replace(" ", "T"), "ms") for t in (start, end))
            labels[(times >= a) & (times <= b)] = 1
        s.point_labels = labels
    return s


def load_npy(path: Path, channels: list[str] | None = None) -> Series:
    """A .npy (T,) or (T, C) array, or a .npz with `values` (or its first array) and optional `labels`."""
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{path}: cannot read (object arrays are refused: no pickle) ({e})") from e
    labels = None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if not keys:
            raise DataError(f"{path}: empty .npz")
        values = data["values"] if "values" in keys else data[keys[0]]
        labels = data["labels"] if "labels" in keys else None
    else:
        values = data
    values = np.asarray(values, np.float32)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise DataError(f"{path}: expected a (T,) or (T, C) array, got shape {values.shape}")
    names = [f"ch{i}" for i in range(values.shape[1])]
    pick = _pick_channels(names, channels, str(path))
    s = _series(values[:, pick], str(path), "npy", None, [names[i] for i in pick])
    if labels is not None:
        labels = np.asarray(labels).ravel()
        if len(labels) != len(values):
            raise DataError(f"{path}: 'labels' has {len(labels)} entries for {len(values)} samples")
        s.point_labels = (labels > 0).astype(np.uint8)
    return s


# ------------------------------------------------------------------------------ splits and rates

def split_samples(labels: np.ndarray, train_fraction: float, holdout: float, seed: int) -> dict[str, np.ndarray]:
    """Seeded split of fixed-length samples: a `train_fraction` of the normal ones for training
    (of which a `holdout` fraction is kept for thresholds); the other normals and all anomalous
    samples are the test set. Returns index arrays `fit`, `holdout`, `test`."""
    if not 0 < train_fraction < 1:
        raise DataError(f"train fraction must be in (0, 1), got {train_fraction}")
    normal = np.flatnonzero(labels == 0)
    order = normal[np.random.default_rng(seed).permutation(len(normal))]
    n_train = int(round(len(normal) * train_fraction))
    n_hold = max(3, int(round(n_train * holdout)))
    if n_train - n_hold < 4:
        raise DataError(f"only {len(normal)} normal samples: too few to train (need about 10 at least)")
    train = order[:n_train]
    test = np.setdiff1d(np.arange(len(labels)), train)
    return {"fit": np.sort(train[n_hold:]), "holdout": np.sort(train[:n_hold]), "test": test}


def split_series(n: int, train_fraction: float, holdout: float, length: int) -> dict[str, int]:
    """Contiguous split of a recording of n samples: [0, fit_end) trains, [fit_end, train_end)
    sets thresholds, [train_end, n) is the test part."""
    if not 0 < train_fraction < 1:
        raise DataError(f"train fraction must be in (0, 1), got {train_fraction}")
    train_end = int(round(n * train_fraction))
    fit_end = train_end - max(int(round(train_end * holdout)), 2 * length)
    if fit_end < 2 * length or n - train_end < length:
        raise DataError(f"a recording of {n} samples is too short for windows of {length} with a "
                        f"{train_fraction:.0%} training part; use a shorter --window or a longer recording")
    return {"fit_end": fit_end, "train_end": train_end, "n": n}


def at_rate(s: Series, rate: float | None, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Point labels (n,) and beat indices of a series moved to `rate`, for its n resampled samples.
    Resampled sample k sits at source position k down / up (the filter is centred), so it takes
    the nearest source sample's label, and a beat moves to the nearest resampled sample."""
    up, down = resample_factors(s.rate, rate)
    labels = beats = None
    if s.point_labels is not None:
        src = np.minimum((2 * np.arange(n, dtype=np.int64) * down + up) // (2 * up), len(s.point_labels) - 1)
        labels = s.point_labels[src]
    if s.beats is not None:
        beats = np.minimum((2 * np.asarray(s.beats, np.int64) * up + down) // (2 * down), n - 1)
    return labels, beats
