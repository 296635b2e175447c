"""`edgead predict --engine ray`: an archive scored by Predictor actors on a local Ray that this
test starts and stops itself gives the rows of the local `edgead predict --json`, in input order,
with unreadable inputs as error rows."""
import json
import shutil

import pytest

from edgead.cli import main

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'edgead[ray]' (make test installs it)")

GOLDEN_SIGNAL = __import__("pathlib").Path(__file__).parent / "golden" / "v1_signal"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(small_mvtec, tmp_path_factory):
    """Test images in two folders, plus one file that is not an image."""
    root = tmp_path_factory.mktemp("archive")
    shutil.copytree(small_mvtec / "test", root / "line1")
    (root / "line1" / "colour" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def local_rows(bundle, paths, capsys, *flags):
    code = main(["predict", str(bundle), *map(str, paths), "--json", *flags])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_ray_rows_equal_local_predict_rows(local_ray, tiny_bundle, archive, tmp_path, capsys):
    code, expected = local_rows(tiny_bundle, [archive], capsys, "--runtime", "onnxruntime")
    assert code == 1 and sum("error" in r for r in expected) == 1  # the broken file
    out = tmp_path / "results"
    assert main(["predict", str(tiny_bundle), str(archive), "--engine", "ray", "--workers", "2", "--out", str(out),
                 "--runtime", "onnxruntime", "--save-maps", "yes"]) == 1
    printed = capsys.readouterr().out
    got = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert got == expected  # same fields, same scores, same order
    assert f"scored {len(expected)} inputs" in printed and "1 could not be scored" in printed
    assert len(list((out / "maps").rglob("*.png"))) == len(expected) - 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == len(expected) and summary["failed"] == 1 and summary["workers"] == 2


def test_ray_parquet_and_a_normalised_threshold(local_ray, tiny_bundle, archive, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    _, expected = local_rows(tiny_bundle, [archive / "line1" / "good"], capsys, "--threshold", "score:0.55")
    out = tmp_path / "pq"
    assert main(["predict", str(tiny_bundle), str(archive / "line1" / "good"), "--engine", "ray", "--format",
                 "parquet", "--out", str(out), "--threshold", "score:0.55"]) == 0
    got = pq.read_table(out / "results.parquet").to_pylist()
    assert got == expected


def test_ray_scores_signal_files_too(local_ray, tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(GOLDEN_SIGNAL / "bundle", bundle)
    data = GOLDEN_SIGNAL / "toy_TRAIN.txt"
    _, expected = local_rows(bundle, [data], capsys)
    assert main(["predict", str(bundle), str(data), "--engine", "ray", "--workers", "1", "--out",
                 str(tmp_path / "r")]) == 0
    assert [json.loads(line) for line in (tmp_path / "r" / "results.jsonl").read_text().splitlines()] == expected


def test_ray_usage_errors(tiny_bundle, archive, tmp_path, capsys):
    assert main(["predict", str(tiny_bundle), str(archive), "--engine", "ray"]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    assert main(["predict", str(tiny_bundle), str(archive), "--out", str(tmp_path / "x")]) == 2
    assert "--out is for --engine ray" in capsys.readouterr().err
    assert main(["predict", str(tiny_bundle), str(archive), "--engine", "ray", "--workers", "0",
                 "--out", str(tmp_path / "y")]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    assert main(["predict", str(tiny_bundle), str(archive), "--engine", "ray", "--out", str(tmp_path / "taken")]) == 2
    assert "refusing to replace" in capsys.readouterr().err and (tmp_path / "taken" / "mine.txt").is_file()
