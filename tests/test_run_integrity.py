"""A run's artefacts stay tied to it: the image split is recorded and read back (never
re-derived with another seed), bundles never mix runs, and the export parity check says which
input it used and refuses data that changed since training."""
import json
import shutil

import pytest

from edgead.cli import main
from edgead.core.errors import DataError, ExportError
from edgead.export import export

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder_data(small_mvtec, tmp_path_factory):
    """The plain `good/` + `bad/` layout: a seeded share of good/ is the test split's normals."""
    root = tmp_path_factory.mktemp("folder_layout")
    (root / "good").mkdir()
    (root / "bad").mkdir()
    for f in sorted((small_mvtec / "train/good").glob("*")) + sorted((small_mvtec / "test/good").glob("*")):
        shutil.copy(f, root / "good" / f"{f.parent.parent.name}_{f.name}")
    for f in sorted((small_mvtec / "test/colour").glob("*")):
        shutil.copy(f, root / "bad" / f.name)
    return root


@pytest.fixture(scope="module")
def seed7_run(folder_data, tmp_path_factory):
    from edgead.train import train

    out = tmp_path_factory.mktemp("runs") / "seed7"
    train(folder_data, out, model="hetnet", epochs=1, image_size=64, seed=7)
    return out


def test_eval_never_scores_training_images_with_a_non_zero_seed(seed7_run, folder_data, tmp_path):
    run = json.loads((seed7_run / "run.json").read_text())
    trained_on = set(run["train"]["split"]["fit"]) | set(run["train"]["split"]["holdout"])
    maps = tmp_path / "maps"
    assert main(["eval", str(seed7_run), "--data", str(folder_data), "--json", "--save-maps", str(maps)]) == 0
    scored = {p.relative_to(maps).with_suffix("").as_posix() for p in maps.rglob("*.png")}
    good_scored = {s for s in scored if s.startswith("good/")}
    assert good_scored and not {s for s in trained_on if s.rsplit(".", 1)[0] in good_scored}
    assert len(scored) == len(run["train"]["split"]["test"])


def test_the_split_records_what_was_fitted_and_held_out(seed7_run, folder_data):
    run = json.loads((seed7_run / "run.json").read_text())
    split = run["train"]["split"]
    good = {f"good/{p.name}" for p in (folder_data / "good").iterdir()}
    assert set(split["fit"]) | set(split["holdout"]) | {t for t in split["test"] if t.startswith("good/")} == good
    assert not set(split["fit"]) & set(split["holdout"]) and len(split["fit"]) == run["train"]["n_fit"]


def test_calibration_uses_the_recorded_fit_images(seed7_run):
    from edgead.core.run import read_run_config
    from edgead.tasks.image.calibration import run_fit_images

    run = read_run_config(seed7_run)
    root = run["train"]["data"]["root"]
    got = sorted(p.relative_to(root).as_posix() for p in run_fit_images(run))
    assert got == sorted(run["train"]["split"]["fit"])


def test_exporting_another_run_into_a_bundle_is_refused(seed7_run, tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = (bundle / "edgead.json").read_text()
    with pytest.raises(ExportError, match="another run"):
        export(seed7_run, bundle, ["onnx"])
    assert (bundle / "edgead.json").read_text() == before
    assert main(["export", str(seed7_run), "--target", "onnx", "--out", str(bundle)]) == 2


def test_a_bundle_whose_artefacts_come_from_two_runs_is_refused(seed7_run, tiny_bundle, tmp_path):
    """Even if two racing exports mixed them, the predictor compares each artefact's weights."""
    from edgead.core import bundle as bundle_io
    from edgead.predictor import Predictor

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    m = json.loads((bundle / "edgead.json").read_text())
    m["artefacts"]["onnx"]["weights_sha256"] = json.loads((seed7_run / "run.json").read_text())["weights_sha256"]
    m["manifest_sha256"] = bundle_io.manifest_digest(m)
    (bundle / "edgead.json").write_text(json.dumps(m))
    with pytest.raises(bundle_io.BundleError, match="made from other weights"):
        Predictor(bundle, runtime="onnxruntime")


def test_export_says_which_input_the_parity_check_used(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "run.json").read_text())
    cfg["train"]["data"]["root"] = str(tmp_path / "gone")
    (run / "run.json").write_text(json.dumps(cfg))
    m = export(run, tmp_path / "bundle", ["onnx"])
    assert m["artefacts"]["onnx"]["parity_input"] == "synthetic mid-grey noise: the training data (gone) is not there any more"
    assert str(tmp_path) not in (tmp_path / "bundle" / "edgead.json").read_text()


def test_export_refuses_data_that_changed_since_training(tiny_run, small_mvtec, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_mvtec, data)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "run.json").read_text())
    cfg["train"]["data"]["root"] = str(data)
    (run / "run.json").write_text(json.dumps(cfg))
    first = data / "train/good" / cfg["train"]["split"]["fit"][0].split("/")[-1]
    first.write_bytes(first.read_bytes() + b"\0")  # one byte more: another file
    with pytest.raises(DataError, match="changed since training"):
        export(run, tmp_path / "bundle", ["onnx"])
    assert not (tmp_path / "bundle").exists()
