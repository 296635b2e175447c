"""Flags that do not apply to a model's task are usage errors that name the flag and the task;
the manual threshold is settable from the CLI and the Predictor; `edgead demo` says where its
data lives."""
import json
import shutil
from pathlib import Path

import pytest

from edgead import cli
from edgead.cli import main

GOLDEN_SIGNAL = Path(__file__).parent / "golden" / "v1_signal"


@pytest.mark.parametrize("flags, flag", [(["--model", "hetnet", "--window", "64"], "--window"),
                                         (["--model", "patchcore", "--norm", "global"], "--norm"),
                                         (["--model", "mmae", "--val", "x"], "--val"),
                                         (["--model", "mmae", "--image-size", "64"], "--image-size"),
                                         (["--model", "mmae", "--resize", "stretch"], "--resize")])
def test_foreign_train_flags_are_usage_errors(flags, flag, tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err
    assert code == 2
    model = flags[1]
    task, other = ("signal", "image") if model == "mmae" else ("image", "signal")
    assert f"{flag} is for {other} models, but model {model} is a {task} one" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", ["--save-maps", "--report"])
def test_image_eval_flags_on_a_signal_run_are_usage_errors(tmp_path, capsys, flag):
    run = tmp_path / "run"
    shutil.copytree(GOLDEN_SIGNAL / "run", run)
    code = main(["eval", str(run), "--data", str(GOLDEN_SIGNAL / "toy_TRAIN.txt"), flag, str(tmp_path / "m")])
    assert code == 2 and f"{flag} is for image models" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_data_kind_on_an_image_bundle_is_a_usage_error(tiny_bundle, small_mvtec, capsys):
    img = sorted((small_mvtec / "test/good").glob("*"))[0]
    assert main(["predict", str(tiny_bundle), str(img), "--data-kind", "csv"]) == 2
    assert "--data-kind is for signal models" in capsys.readouterr().err


def test_predict_threshold_overrides_the_decision(tiny_bundle, small_mvtec, capsys):
    folder = small_mvtec / "test/colour"
    assert main(["predict", str(tiny_bundle), str(folder), "--json", "--runtime", "onnxruntime"]) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    raws = sorted(r["raw_score"] for r in rows)
    middle = (raws[len(raws) // 2 - 1] + raws[len(raws) // 2]) / 2
    assert main(["predict", str(tiny_bundle), str(folder), "--json", "--runtime", "onnxruntime",
                 "--threshold", str(middle)]) == 0
    manual = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [r["is_anomalous"] for r in manual] == [r["raw_score"] >= middle for r in rows]
    assert sum(r["is_anomalous"] for r in manual) == len(rows) - len(rows) // 2


def test_predict_normalised_threshold_moves_by_the_trained_span(tiny_bundle, small_mvtec, capsys):
    from edgead.core.thresholds import ThresholdSet

    folder = small_mvtec / "test/colour"
    image = ThresholdSet.from_json(json.loads((tiny_bundle / "edgead.json").read_text())["thresholds"]["image"])
    nz = image.normalizer()
    for arg, raw in (("score:0.6", nz.threshold + 0.1 * nz.span), ("score:0.35", nz.threshold - 0.15 * nz.span)):
        assert main(["predict", str(tiny_bundle), str(folder), "--json", "--runtime", "onnxruntime",
                     "--threshold", arg]) == 0
        rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
        assert [r["is_anomalous"] for r in rows] == [r["raw_score"] >= raw for r in rows], arg
        assert all((r["score"] >= 0.5) == r["is_anomalous"] for r in rows)
    assert main(["predict", str(tiny_bundle), str(folder), "--json", "--threshold", f"raw:{nz.threshold}"]) == 0
    by_raw = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [r["is_anomalous"] for r in by_raw] == [r["raw_score"] >= nz.threshold for r in by_raw]


@pytest.mark.parametrize("bad, says", [("score:1.5", "strictly between 0 and 1"), ("pixel:0.3", "expected raw:VALUE"),
                                       ("high", "expected raw:VALUE"), ("raw:nan", "expected raw:VALUE")])
def test_bad_threshold_values_are_usage_errors(tiny_bundle, small_mvtec, capsys, bad, says):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(tiny_bundle), str(small_mvtec / "test/colour"), "--threshold", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threshold" in err and says in err and "Traceback" not in err


def test_predictor_set_threshold_moves_the_normalisation(tiny_bundle, small_mvtec):
    from edgead.predictor import Predictor

    pred = Predictor(tiny_bundle, runtime="onnxruntime")
    img = sorted((small_mvtec / "test/colour").glob("*"))[0]
    raw = pred.predict(img).raw_score
    pred.set_threshold(raw)
    res = pred.predict(img)
    assert res.score == pytest.approx(0.5) and res.is_anomalous
    assert pred.image_thresholds.active == "manual"


def test_signal_threshold_from_the_cli(tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(GOLDEN_SIGNAL / "bundle", bundle)
    data = GOLDEN_SIGNAL / "toy_TRAIN.txt"
    assert main(["predict", str(bundle), str(data), "--json", "--threshold", "1e9"]) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert len(rows) == 60 and not any(r["is_anomalous"] for r in rows)
    assert main(["predict", str(bundle), str(data), "--json", "--threshold=-1e9"]) == 0
    assert all(json.loads(l)["is_anomalous"] for l in capsys.readouterr().out.splitlines())


def test_demo_without_the_source_checkout_says_where_the_data_is(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "DEMO_DATA", tmp_path / "not_installed" / "hazelnut_toy")
    monkeypatch.setattr(cli, "REPO", tmp_path)
    assert main(["demo", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "ship with the source checkout" in err and "--data DIR" in err
    assert not (tmp_path / "out").exists()
