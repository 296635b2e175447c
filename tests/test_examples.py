"""The device examples run on real sample images: a video made from them, a watched folder, the
standalone benchmark script copied alone (torch blocked)."""
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import pytest
from sklearn.metrics import roc_auc_score

from conftest import EXAMPLE_ENV, EXAMPLES, blocking, run_example
from edgead.tasks.image.data import open_dataset
from edgead.tasks.image.predictor import Predictor


def image_auroc(bundle, runtime, data):
    """Image AUROC of the test split, computed here: sklearn on the public Predictor's raw scores."""
    test, pred = open_dataset(data).test, Predictor(bundle, runtime=runtime)
    return roc_auc_score([s.label for s in test], [pred.predict(s.path).raw_score for s in test])


@pytest.fixture(scope="module")
def video(small_mvtec, tmp_path_factory):
    """A 6-frame 160x120 MJPG video of good and defective hazelnuts (non-square: letterboxed)."""
    path = tmp_path_factory.mktemp("video") / "line.avi"
    frames = sorted((small_mvtec / "test/good").glob("*.jpg"))[:3] + sorted((small_mvtec / "test/colour").glob("*.jpg"))[:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    assert writer.isOpened(), "this OpenCV cannot write MJPG"
    for f in frames:
        writer.write(cv2.resize(cv2.imread(str(f)), (160, 120)))
    writer.release()
    return path


def decoded_frames(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(frame)


def test_camera_inspect_scores_video_frames_like_the_predictor(tiny_bundle, video, tmp_path):
    shots = tmp_path / "shots"
    r = run_example("camera_inspect.py", tiny_bundle, "--video", video, "--no-display", "--json",
                    "--runtime", "onnxruntime", "--save", shots, "--max-frames", 4)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    assert [l["frame"] for l in lines] == [0, 1, 2, 3]
    want = Predictor(tiny_bundle, runtime="onnxruntime").predict(decoded_frames(video)[:4], color_order="BGR")
    for got, ref in zip(lines, want):
        assert got["raw_score"] == pytest.approx(ref.raw_score, rel=1e-5)
        assert got["is_anomalous"] == ref.is_anomalous and got["fps"] > 0
    saved = sorted(shots.glob("*.jpg"))
    assert [p.name for p in saved] == [f"frame_{i:06d}.jpg" for i in range(4)]
    assert cv2.imread(str(saved[0])).shape == (120, 160, 3)
    assert "4 frames" in r.stderr


def test_camera_inspect_runs_to_the_end_of_the_video_and_reports_bad_sources(tiny_bundle, video, tmp_path):
    r = run_example("camera_inspect.py", tiny_bundle, "--video", video, "--no-display")
    assert r.returncode == 0, r.stderr
    assert len([l for l in r.stdout.splitlines() if l.startswith("frame")]) == 6
    r = run_example("camera_inspect.py", tiny_bundle, "--video", tmp_path / "missing.mp4", "--no-display")
    assert r.returncode == 2 and "missing.mp4: no such file" in r.stderr


def _scores(bundle, files):
    pred = Predictor(bundle, runtime="onnxruntime")
    return {f.name: pred.predict(f).score for f in files}


def test_folder_watch_once_moves_anomalous_and_survives_unreadable_files(tiny_bundle, small_mvtec, tmp_path):
    goods = sorted((small_mvtec / "test/good").glob("*.jpg"))
    defects = sorted((small_mvtec / "test/colour").glob("*.jpg"))
    scores = _scores(tiny_bundle, goods + defects)
    low = min(goods, key=lambda f: scores[f.name])
    high = max(defects, key=lambda f: scores[f.name])
    assert scores[high.name] > scores[low.name], "the tiny model should rank some defect above some good part"
    threshold = (scores[high.name] + scores[low.name]) / 2
    inbox, rejects = tmp_path / "inbox", tmp_path / "rejects"
    inbox.mkdir()
    shutil.copy(low, inbox / "good.jpg")
    shutil.copy(high, inbox / "defect.jpg")
    (inbox / "broken.jpg").write_bytes(high.read_bytes()[:200])  # truncated upload
    (inbox / "notes.txt").write_text("not an image")
    r = run_example("folder_watch.py", tiny_bundle, inbox, "--once", "--runtime", "onnxruntime",
                    "--threshold", threshold, "--move-anomalous", rejects)
    assert r.returncode == 0, r.stderr
    log = {Path(e["path"]).name: e for e in map(json.loads, (inbox / "edgead_scores.jsonl").read_text().splitlines())}
    assert set(log) == {"good.jpg", "defect.jpg", "broken.jpg"}
    assert log["broken.jpg"]["error"].startswith("ImageReadError: ") and (inbox / "broken.jpg").exists()
    assert log["broken.jpg"]["error"].endswith("broken.jpg: cannot decode image (corrupt, empty or unsupported format)")
    assert log["defect.jpg"]["is_anomalous"] and log["defect.jpg"]["moved_to"] == str(rejects / "defect.jpg")
    assert not log["good.jpg"]["is_anomalous"] and "moved_to" not in log["good.jpg"]
    assert log["defect.jpg"]["score"] == pytest.approx(scores[high.name], abs=1e-6)
    assert (rejects / "defect.jpg").is_file() and not (inbox / "defect.jpg").exists() and (inbox / "good.jpg").exists()


def test_folder_watch_scores_files_dropped_while_it_runs(tiny_bundle, small_mvtec, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    log = tmp_path / "scores.jsonl"
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "folder_watch.py"), str(tiny_bundle), str(inbox),
                             "--runtime", "onnxruntime", "--interval", "0.2", "--max-files", "2", "--tag",
                             "--threshold", "0", "--log", str(log), "--quiet"], env=EXAMPLE_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # let it start polling
        src = sorted((small_mvtec / "test/colour").glob("*.jpg"))[:2]
        data = src[0].read_bytes()
        with open(inbox / "a.jpg", "wb") as fh:  # a slow copy: half now, the rest later
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(0.1)
            fh.write(data[len(data) // 2:])
        shutil.copy(src[1], inbox / "b.jpg")
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    entries = [json.loads(l) for l in log.read_text().splitlines()]
    assert sorted(Path(e["path"]).name for e in entries) == ["a.jpg", "b.jpg"]
    assert all("error" not in e and e["is_anomalous"] for e in entries)  # threshold 0: everything is flagged
    assert sorted(p.name for p in inbox.iterdir()) == ["a.anomaly.jpg", "b.anomaly.jpg"]


BLOCK_TORCH = blocking("torch") + textwrap.dedent("""
    import runpy
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def test_benchmark_device_script_copied_alone_without_torch(tiny_bundle, small_mvtec, tmp_path):
    script = shutil.copy(EXAMPLES / "benchmark_device.py", tmp_path / "benchmark_device.py")
    r = subprocess.run([sys.executable, "-c", BLOCK_TORCH, script, str(tiny_bundle), "--runtimes", "onnxruntime",
                        "--threads", "1", "--n", "4", "--warmup", "1", "--data", str(small_mvtec)],
                       capture_output=True, text=True, env=EXAMPLE_ENV, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    reports = list(tmp_path.glob("benchmark-*.json"))
    assert len(reports) == 1
    row = json.loads(reports[0].read_text())["rows"][0]
    assert row["status"] == "ok" and row["runtime"] == "onnxruntime"
    assert row["image_auroc"] == pytest.approx(image_auroc(tiny_bundle, "onnxruntime", small_mvtec), abs=1e-9)
    assert "onnxruntime" in r.stdout and "AUROC" in r.stdout


def test_benchmark_measure_is_torch_free(tiny_bundle, small_mvtec):
    code = blocking("torch") + textwrap.dedent(f"""
        from edgead.benchmark import Case, measure
        row = measure({str(tiny_bundle)!r}, Case("tflite", "tflite", "fp32", 1),
                      {{"size": [96, 128]}}, n=3, warmup=1, data={str(small_mvtec)!r})
        assert "torch" not in sys.modules
        print(row["image_auroc"], row["model_ms"]["p50"])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=EXAMPLE_ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    auroc, ms = map(float, r.stdout.split())
    assert auroc == pytest.approx(image_auroc(tiny_bundle, "tflite", small_mvtec), abs=1e-9) and ms > 0
