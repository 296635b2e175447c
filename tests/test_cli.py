"""The CLI contract: train / eval / predict on real sample images, exit codes and error messages."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from edgead.cli import main
from edgead.predictor import Predictor
from edgead.tasks.image.data import open_dataset


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgead.cli", *map(str, args)], capture_output=True, text=True)


def test_train_writes_a_complete_run(tiny_run):
    cfg = json.loads((tiny_run / "run.json").read_text())
    assert cfg["model"]["name"] == "hetnet"
    assert (tiny_run / "weights.safetensors").stat().st_size > 1_000_000
    image = cfg["thresholds"]["image"]
    holdout = [Path(cfg["train"]["data"]["root"]) / f for f in cfg["train"]["split"]["holdout"]]
    raw = [r.raw_score for r in Predictor(tiny_run).predict(holdout)]  # the held-out normals, scored again here
    k = min(len(raw), math.ceil((len(raw) + 1) * 0.99))  # the order statistic of rank ceil((n + 1) q)
    assert image["active"] == "normal_quantile" and image["values"]["normal_quantile"] == pytest.approx(
        sorted(raw)[k - 1], rel=1e-5)
    assert image["meta"]["false_alarms"]["expected"] == pytest.approx((len(raw) + 1 - k) / (len(raw) + 1))
    assert cfg["complexity"]["student_flops"] < cfg["complexity"]["teacher_flops"]
    umask = os.umask(0)
    os.umask(umask)
    for f in ("run.json", "weights.safetensors"):  # safetensors alone would write 0600
        assert (tiny_run / f).stat().st_mode & 0o777 == 0o666 & ~umask, f


def test_eval_json_keys_and_overlays(tiny_run, small_mvtec, tmp_path, capsys):
    assert main(["eval", str(tiny_run), "--data", str(small_mvtec), "--json", "--save-maps", str(tmp_path / "maps")]) == 0
    res = json.loads(capsys.readouterr().out)
    for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "n_images"):
        assert k in res
    test = open_dataset(small_mvtec).test
    raw = [r.raw_score for r in Predictor(tiny_run).predict([s.path for s in test])]
    assert res["n_images"] == 23 and res["image_auroc"] == pytest.approx(roc_auc_score([s.label for s in test], raw), abs=1e-9)
    pngs = list((tmp_path / "maps").rglob("*.png"))
    assert len(pngs) == 23 and cv2.imread(str(pngs[0])) is not None


def test_predict_reports_a_corrupt_file_and_scores_the_rest(tiny_run, small_mvtec, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for f in sorted((small_mvtec / "test/colour").glob("*.jpg"))[:2]:
        shutil.copy(f, folder)
    (folder / "zz_corrupt.jpg").write_bytes(b"\xff\xd8 broken")
    code = main(["predict", str(tiny_run), str(folder), "--json"])
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [("error" in l) for l in lines] == [False, False, True]
    assert lines[2]["error"] == f"{folder / 'zz_corrupt.jpg'}: cannot decode image (corrupt, empty or unsupported format)"
    assert {"score", "raw_score", "is_anomalous"} <= set(lines[0])


def test_missing_folder_exits_2_with_message(tmp_path):
    r = run_cli("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert r.returncode == 2 and f"edgead train: error: data folder {tmp_path / 'nowhere'} does not exist\n" in r.stderr
    assert not (tmp_path / "run").exists()


def test_empty_train_good_exits_2(tmp_path):
    (tmp_path / "d/train/good").mkdir(parents=True)
    r = run_cli("train", "--data", tmp_path / "d", "--out", tmp_path / "run")
    assert r.returncode == 2 and f"edgead train: error: {tmp_path / 'd/train/good'} holds no images (" in r.stderr


def test_unreadable_training_image_is_named(small_mvtec, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(small_mvtec, data)
    (data / "train/good/bad_file.jpg").write_bytes(b"garbage")
    r = run_cli("train", "--data", data, "--out", tmp_path / "run", "--image-size", "64")
    bad = data / "train/good/bad_file.jpg"
    assert r.returncode == 2 and f"edgead train: error: {bad}: cannot decode image (corrupt, empty or unsupported format)" in r.stderr
    assert not (tmp_path / "run").exists()


def test_eval_of_something_that_is_not_a_run_or_bundle(tmp_path, small_mvtec):
    r = run_cli("eval", tmp_path, "--data", small_mvtec)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (f"edgead eval: error: {tmp_path} is neither a run folder (no run.json) nor a bundle (no edgead.json); "
            "pass what `edgead train` or `edgead export` wrote") in r.stderr


def test_help_lists_models():
    r = run_cli("train", "--help")
    assert r.returncode == 0 and "  hetnet " in r.stdout and "  patchcore " in r.stdout


def test_eval_pixel_metrics_on_the_original_geometry(tiny_run, small_mvtec, capsys):
    """`--geometry original`: maps resized to each image's own size (long side capped at 256) with
    area interpolation, masks with nearest; re-measured here with OpenCV and sklearn."""
    from edgead.tasks.image.data import read_mask
    from edgead.tasks.image.preprocess import read_image

    assert main(["eval", str(tiny_run), "--data", str(small_mvtec), "--json", "--geometry", "original"]) == 0
    res = json.loads(capsys.readouterr().out)
    pred, maps, masks = Predictor(tiny_run), [], []
    for s in open_dataset(small_mvtec).test:
        img = read_image(s.path)
        if s.label == 0 or s.mask_path is not None:
            region = pred.analyse(img)[0]
            maps.append(cv2.resize(region, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA))
            masks.append(read_mask(s, img.shape[:2]))
    assert maps[0].shape == (128, 128) and res["pixel_geometry"] == "original"
    expected = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps]))
    assert res["pixel_auroc"] == pytest.approx(expected, abs=1e-6)
    assert main(["eval", str(tiny_run), "--data", str(small_mvtec), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pixel_geometry"] == "network"


def test_predict_json_says_which_artefact_runtime_and_precision_scored_it(tiny_bundle, small_mvtec, capsys):
    img = sorted((small_mvtec / "test" / "good").glob("*"))[0]
    assert main(["predict", str(tiny_bundle), str(img), "--json", "--runtime", "openvino", "--precision", "fp32",
                 "--device", "CPU"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (line["target"], line["runtime"], line["precision"]) == ("openvino", "openvino", "fp32")
    assert line["device"] == "CPU"


def test_eval_reports_false_alarms_and_misses_at_the_shipped_threshold(tiny_bundle, small_mvtec, capsys):
    from edgead.predictor import Predictor

    assert main(["eval", str(tiny_bundle), "--data", str(small_mvtec), "--json", "--runtime", "onnxruntime"]) == 0
    res = json.loads(capsys.readouterr().out)
    pred = Predictor(tiny_bundle, runtime="onnxruntime")
    images = sorted(p for p in (small_mvtec / "test").rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    flagged = {p: pred.predict(p).is_anomalous for p in images}
    good = [p for p in images if p.parent.name == "good"]
    bad = [p for p in images if p.parent.name != "good"]
    assert (res["n_good"], res["n_defective"]) == (len(good), len(bad))
    assert res["false_alarms"] == sum(flagged[p] for p in good)
    assert res["misses"] == sum(not flagged[p] for p in bad)
    assert res["false_alarm_rate"] == pytest.approx(res["false_alarms"] / len(good))
