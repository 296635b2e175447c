"""The bad-input, fault and load corpus (issue 16): each case asserts its specific outcome:
the clear error, the refused write, the unchanged bundle, identical results under threads."""
import json
import multiprocessing as mp
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import runtimes
from edgead import targets
from edgead.cli import main
from edgead.core import bundle as bundle_io
from edgead.core.atomic import recover
from edgead.core.errors import BundleError, DataError
from edgead.predictor import Predictor

RUNTIMES = [t.runtime for t in targets.TARGETS.values() if runtimes.available(t.runtime)]
TARGET = {r: targets.for_runtime(r).name for r in RUNTIMES}


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    return out


def _images(small_mvtec, n=12):
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
            for p in sorted((small_mvtec / "test").rglob("*.jpg"))[:n]]


# ------------------------------------------------------------------------------ threads

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_one_predictor_shared_by_four_threads_gives_the_sequential_results(tiny_bundle, small_mvtec, runtime):
    pred = Predictor(tiny_bundle, runtime=runtime, threads=1, precision="fp32")
    images = _images(small_mvtec)
    sequential = [pred.predict(im).raw_score for im in images]
    got: dict[tuple[int, int], float] = {}

    def worker(w: int) -> None:
        for rep in range(3):
            for i in range(len(images)):
                j = (i + w * 3) % len(images)  # each thread in another order
                got[(w * 100 + rep, j)] = pred.predict(images[j]).raw_score

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(got) == 4 * 3 * len(images)
    wrong = [(k, v, sequential[k[1]]) for k, v in got.items() if v != sequential[k[1]]]
    assert not wrong, f"{len(wrong)} of {len(got)} threaded results differ, e.g. {wrong[:3]}"


# ------------------------------------------------------------------------------ the manifest is protected

def _edit(bundle: Path, change) -> None:
    m = json.loads((bundle / "edgead.json").read_text())
    change(m)
    (bundle / "edgead.json").write_text(json.dumps(m))


@pytest.mark.parametrize("what, change", [
    ("threshold", lambda m: m["thresholds"]["image"]["values"].update(
        normal_quantile=m["thresholds"]["image"]["values"]["normal_quantile"] * 1.1)),
    ("input mean", lambda m: m["input"].update(mean=[0.4, 0.5, 0.5])),
    ("file entry", lambda m: m["files"]["model.onnx"].update(bytes=m["files"]["model.onnx"]["bytes"] + 1)),
])
def test_an_edited_manifest_is_refused(bundle, small_mvtec, what, change, capsys):
    _edit(bundle, change)
    with pytest.raises(BundleError, match="was edited after export"):
        Predictor(bundle)
    img = sorted((small_mvtec / "test/good").glob("*"))[0]
    assert main(["predict", str(bundle), str(img)]) == 2
    assert "edgead.json' was edited after export" in capsys.readouterr().err


def test_openvino_weights_must_be_listed(bundle):
    def drop_bin(m):
        m["artefacts"]["openvino"].pop("extra_files")
        m.pop("manifest_sha256")
    _edit(bundle, drop_bin)
    with pytest.raises(BundleError, match="does not list 'model.bin', which OpenVINO opens beside 'model.xml'"):
        Predictor(bundle, runtime="openvino")


def test_symlinks_in_a_bundle_are_refused(bundle, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(bundle / "model.onnx", outside)
    (bundle / "model.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="'model.onnx' .* is a symbolic link"):
        Predictor(bundle, runtime="onnxruntime")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_runtime_runs_the_verified_bytes_not_the_file_on_disk(bundle, tiny_bundle, runtime):
    """Verified content is handed to the runtime: a file swapped after the check is never read."""
    m = bundle_io.load_manifest(bundle)
    art = m["artefacts"][TARGET[runtime]]
    content = bundle_io.read_verified(bundle, m, bundle_io.artefact_files(art))
    for name in content:
        (bundle / name).write_bytes(b"swapped after verification")
    backend = runtimes.load(runtime, bundle / art["file"], files=content)
    x = np.zeros((1, 3, 64, 64), np.float32)
    reference = Predictor(tiny_bundle, runtime=runtime, precision="fp32").run(x)
    np.testing.assert_array_equal(backend.run({"image": x})["anomaly_map"], reference["anomaly_map"])


def test_a_torch_artefact_is_never_loaded_from_a_bundle(bundle):
    def add_torch(m):
        m["artefacts"]["torch"] = dict(m["artefacts"]["onnx"], runtime="torch")
        m.pop("manifest_sha256")
    _edit(bundle, add_torch)
    with pytest.raises(BundleError, match="never loaded from one"):
        Predictor(bundle, target="torch")


# ------------------------------------------------------------------------------ bad input

def test_nan_and_inf_image_arrays_are_refused(tiny_bundle):
    pred = Predictor(tiny_bundle, runtime="onnxruntime")
    img = np.full((32, 32, 3), 0.5, np.float32)
    img[3, 4, 1] = np.nan
    img[5, 5, 0] = np.inf
    with pytest.raises(DataError, match="holds 2 NaN or infinite values"):
        pred.predict(img)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A valid PNG signature and IHDR that declares width x height, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_before_decoding(tiny_bundle, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 20000, 20000)
    assert main(["predict", str(tiny_bundle), str(bomb), "--json"]) == 1
    row = json.loads(capsys.readouterr().out)
    assert "declares 20000x20000 pixels (400 MP), more than the 100 MP limit" in row["error"]


# ------------------------------------------------------------------------------ writes

def _add_target(bundle: str, target: str, src: str, rounds: int) -> None:
    for i in range(rounds):
        bundle_io.add_artefacts(bundle, target, {f"{target}.bin": src}, {"precision": "fp32", "round": i},
                                manifest={"task": "image", "model": {}, "input": {}, "outputs": {}})


def test_two_writers_keep_each_others_targets(tmp_path):
    src = tmp_path / "payload"
    src.write_bytes(b"x" * 10_000)
    out = tmp_path / "b"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_target, args=(str(out), t, str(src), 8)) for t in ("onnx", "tflite")]
    [p.start() for p in procs]
    [p.join(120) for p in procs]
    assert [p.exitcode for p in procs] == [0, 0]
    m = bundle_io.load_manifest(out)
    assert sorted(m["artefacts"]) == ["onnx", "tflite"]
    assert {a["round"] for a in m["artefacts"].values()} == {7}
    assert not list(tmp_path.glob(".b.tmp-*")) and not list(tmp_path.glob(".b.old-*"))


def test_readers_never_fail_while_a_bundle_is_rewritten(bundle, tmp_path):
    """A writer rewrites the bundle 15 times, each time with a file of new content (so that a
    reader can pair the old manifest with the new file), while this process opens it 40 times."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
            "from pathlib import Path\n"
            "from edgead.core import bundle as b\n"
            f"for i in range(15):\n"
            f"    src = Path({str(tmp_path)!r}) / f'extra{{i}}.bin'\n"
            f"    src.write_bytes(bytes([i]) * 200_000)\n"
            f"    b.update_bundle({str(bundle)!r}, None, {{'extra': ({{'extra.bin': src}}, {{'file': 'extra.bin', 'runtime': 'none'}})}})\n")
    writer = subprocess.Popen([sys.executable, "-c", code])
    failures, opened = [], 0
    while writer.poll() is None or opened < 40:
        try:
            Predictor(bundle, runtime="onnxruntime")
        except BundleError as e:
            failures.append(str(e))
        opened += 1
    assert writer.wait(120) == 0
    assert bundle_io.load_manifest(bundle)["files"]["extra.bin"]["bytes"] == 200_000
    assert not failures, f"{len(failures)} of {opened} opens failed: {failures[:2]}"


def test_a_write_killed_between_its_renames_is_recovered(bundle, tmp_path):
    """A crash after moving the old bundle aside and before renaming the new one in leaves
    `.NAME.old-*` and `.NAME.tmp-*` behind and no bundle: the next write restores the old one."""
    old = tmp_path / f".{bundle.name}.old-abc"
    bundle.rename(old)
    half = tmp_path / f".{bundle.name}.tmp-xyz"
    half.mkdir()
    (half / "model.onnx").write_bytes(b"half")
    recover(bundle)
    assert (bundle / "edgead.json").is_file() and not old.exists() and not half.exists()
    bundle_io.load_manifest(bundle)


def test_train_refuses_a_foreign_out_folder_before_reading_any_data(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code = main(["train", "--data", str(tmp_path / "no_data_here"), "--out", str(out)])
    assert code == 2 and "refusing to replace" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_same_named_inputs_get_their_own_overlays(tiny_bundle, small_mvtec, tmp_path):
    a, b = tmp_path / "cam1", tmp_path / "cam2"
    a.mkdir(), b.mkdir()
    src = sorted((small_mvtec / "test/colour").glob("*.jpg"))
    shutil.copy(src[0], a / "frame.jpg")
    shutil.copy(src[1], b / "frame.jpg")
    maps = tmp_path / "maps"
    assert main(["predict", str(tiny_bundle), str(a), str(b), str(a / "frame.jpg"), "--save-maps", str(maps)]) == 0
    names = sorted(p.relative_to(maps).as_posix() for p in maps.rglob("*.png"))
    assert names == ["frame.png", "frame~2.png", "frame~3.png"]
    first, second = (cv2.imread(str(maps / n)) for n in names[:2])
    assert not np.array_equal(first, second)


# ------------------------------------------------------------------------------ manifests and provenance

def test_a_manifest_with_unknown_keys_or_of_the_wrong_shape_is_refused(bundle, small_mvtec, capsys):
    img = sorted((small_mvtec / "test/good").glob("*"))[0]

    def extra(m):
        m["backdoor"] = "x"
        m.pop("manifest_sha256")
    _edit(bundle, extra)
    assert main(["predict", str(bundle), str(img)]) == 2
    assert "has key(s) ['backdoor'] that schema 1 does not define" in capsys.readouterr().err
    (bundle / "edgead.json").write_text("[1, 2]")
    assert main(["predict", str(bundle), str(img)]) == 2
    assert "should hold a JSON object" in capsys.readouterr().err


def test_bundles_carry_no_absolute_training_paths(tiny_bundle, tiny_run, small_mvtec):
    text = (tiny_bundle / "edgead.json").read_text()
    assert str(small_mvtec) not in text and str(tiny_run) not in text
    m = json.loads(text)
    data = m["provenance"]["train"]["data"]
    assert data["root"] == small_mvtec.name and len(data["root_sha256"]) == 64


def test_eval_of_a_bundle_on_its_training_data_uses_the_recorded_split(tiny_bundle, tiny_run, small_mvtec):
    """The bundle keeps only a digest of the data path, enough to recognise the folder."""
    from edgead.tasks.image.evaluate import evaluate

    got = evaluate(tiny_bundle, small_mvtec, runtime="onnxruntime")
    assert got["evaluated_on"] == "the test split recorded at training"
    assert got["n_images"] == len(json.loads((tiny_run / "run.json").read_text())["train"]["split"]["test"])


# ------------------------------------------------------------------------------ signals

GOLDEN_SIGNAL = Path(__file__).parent / "golden" / "v1_signal"


@pytest.fixture(scope="module")
def signal_predictor():
    from edgead.signal_predictor import SignalPredictor

    return SignalPredictor(GOLDEN_SIGNAL / "bundle", runtime="onnxruntime")


def test_a_flat_or_clipped_lead_is_a_fault_not_normal(signal_predictor):
    from edgead.tasks.signal.data import load_signal

    beats = load_signal(GOLDEN_SIGNAL / "toy_TRAIN.txt", "ucr").values[:3, 0]
    flat = np.full(64, 0.3, np.float32)
    clipped = np.clip(beats[0], None, np.quantile(beats[0], 0.7))
    s = signal_predictor.score_windows(np.stack([beats[1], flat, clipped]))
    assert s.fault == [None, "flat", "saturated"]
    res = signal_predictor.predict(np.concatenate([beats[1], flat, beats[2]]))
    assert [w.fault for w in res.windows] == [None, "flat", None]
    assert res.windows[1].state == "fault" and res.windows[0].state in ("normal", "anomalous")


def test_missing_samples_follow_one_rule_for_files_and_arrays(signal_predictor, tmp_path):
    from edgead.tasks.signal.data import load_signal

    beats = load_signal(GOLDEN_SIGNAL / "toy_TRAIN.txt", "ucr").values[:3, 0]
    x = np.concatenate(beats).astype(np.float64)
    x[70:73] = np.nan  # three missing samples in the second window
    from_array = signal_predictor.predict(x)
    csv = tmp_path / "rec.csv"
    csv.write_text("value,other\n" + "\n".join(("" if np.isnan(v) else f"{v:.9g}") + ",0" for v in x) + "\n")
    d = load_signal(csv, channels=["value"])
    from_file = signal_predictor.predict(d.values, missing=d.missing)
    assert [w.fault for w in from_array.windows] == [w.fault for w in from_file.windows] == [None, "dropout", None]
    np.testing.assert_allclose([w.raw_score for w in from_array.windows], [w.raw_score for w in from_file.windows],
                               rtol=1e-5)
    stream = signal_predictor.stream()
    with pytest.raises(DataError, match="a stream needs finite samples"):
        stream.push(x)
    stream, streamed = signal_predictor.stream(), []
    for i in range(0, len(d.values), 17):  # the file's filled samples, marked, in odd chunks
        streamed += stream.push(d.values[i:i + 17], d.missing[i:i + 17]).windows
    streamed += stream.flush().windows
    assert [(w.start, w.fault) for w in streamed] == [(w.start, w.fault) for w in from_file.windows]


@pytest.mark.parametrize("rate, message", [(1e-7, "changes the length"), (float("inf"), "not a positive finite"),
                                           (0.0, "not a positive finite"), (-5.0, "not a positive finite"),
                                           (0.01, "changes the length")])
def test_absurd_sample_rates_are_refused_at_once(rate, message):
    """(1e-7 Hz used to raise ZeroDivisionError, inf OverflowError, and 0.01 Hz on 2,000 samples
    ran 500 s and 4 GB.)"""
    import time

    from edgead.signal_predictor import SignalPredictor

    cfg = json.loads((GOLDEN_SIGNAL / "bundle" / "edgead.json").read_text())
    cfg["input"]["rate"] = 100.0  # a model trained at 100 Hz
    pred = SignalPredictor.from_backend(cfg, runtimes.load("onnxruntime", GOLDEN_SIGNAL / "bundle" / "model.onnx"))
    t = time.perf_counter()
    with pytest.raises(DataError, match=message):
        pred.predict(np.sin(np.arange(2000) / 5.0), rate=rate)
    with pytest.raises(DataError, match=message):
        pred.stream(rate=rate)
    assert time.perf_counter() - t < 5


def test_rate_for_a_model_without_one_is_a_usage_error(tmp_path, capsys):
    csv = tmp_path / "rec.csv"
    csv.write_text("value\n" + "\n".join(str(np.sin(i / 5)) for i in range(300)) + "\n")
    assert main(["predict", str(GOLDEN_SIGNAL / "bundle"), str(csv), "--rate", "250"]) == 1
    assert "was trained on fixed-length samples without a sample rate; leave out --rate" in capsys.readouterr().out


def test_a_killed_exports_work_folder_is_removed_by_the_next(tiny_run, tmp_path):
    """A killed export leaves its work folder in the temp dir with nobody holding its lock."""
    import tempfile
    import uuid

    from edgead.export import WORKDIR_LOCK, WORKDIR_PREFIX, export

    stale = Path(tempfile.gettempdir()) / f"{WORKDIR_PREFIX}{uuid.uuid4().hex}"
    stale.mkdir()
    (stale / WORKDIR_LOCK).touch()
    (stale / "model.onnx").write_bytes(b"left by a killed export")
    try:
        export(tiny_run, tmp_path / "b", ["onnx"])
        assert not stale.exists()
    finally:
        shutil.rmtree(stale, ignore_errors=True)
