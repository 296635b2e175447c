"""One model for several products (UniAD-lite, OneNIP-lite): the neighbour mask, the product set, per-product
thresholds through the bundle, per-product evaluation and the errors a user meets."""
import json
import math
import shutil

import cv2
import numpy as np
import pytest
import torch

from edgead.cli import main
from edgead.core.errors import UsageError
from edgead.export import export
from edgead.models import onenip, synthetic, uniad
from edgead.tasks.image.data import open_dataset
from edgead.tasks.image.evaluate import evaluate
from edgead.tasks.image.evaluate import test_samples as samples_to_score  # not collected as a test
from edgead.tasks.image.predictor import Predictor
from edgead.tasks.image.preprocess import read_image
from edgead.tasks.image.split import recorded_split


@pytest.fixture(scope="module")
def product_set(small_mvtec, tmp_path_factory):
    """Two products under one root: the hazelnut sample, and the same images colour-inverted
    (another look, so that the two products' scores differ)."""
    root = tmp_path_factory.mktemp("line")
    shutil.copytree(small_mvtec, root / "hazel")
    for src in small_mvtec.rglob("*.*"):
        dst = root / "inverted" / src.relative_to(small_mvtec)
        dst.parent.mkdir(parents=True, exist_ok=True)
        img = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(dst), img if "ground_truth" in src.parts else 255 - img)
    return root


@pytest.fixture(scope="module")
def unified_run(product_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "uniad"
    assert main(["train", "--model", "uniad", "--data", str(product_set / "hazel"), "--data", str(product_set / "inverted"),
                 "--out", str(out), "--image-size", "96", "--set", "steps=40"]) == 0
    return out


def test_neighbour_mask_gives_no_attention_weight_to_a_token_own_window():
    cfg = uniad.UniADConfig(grid_h=6, grid_w=7, neighbour=3, width=32, heads=4)
    model = uniad.UniADLite(cfg, pretrained=False)
    x = torch.randn(2, 42, 32)
    for attention in (model.decoder[0].read, model.decoder[0].cross):
        w = attention.weights(x, x, model.bias)  # (batch, heads, query, key)
        for q, (i, j) in [(0, (0, 0)), (17, (2, 3)), (41, (5, 6))]:
            near = [a * 7 + b for a in range(6) for b in range(7) if abs(a - i) <= 1 and abs(b - j) <= 1]
            far = [k for k in range(42) if k not in near]
            assert w[:, :, q, near].max() < 1e-7  # its own 3 x 3 window, itself included
            assert w[:, :, q, far].sum(-1).min() > 1 - 1e-6
    # without the bias the same weights do fall on the window: the check above can fail
    assert model.decoder[0].cross.weights(x, x, None)[:, :, 17, 17].min() > 1e-4


def test_product_set_trains_one_model_with_thresholds_per_product(unified_run, product_set):
    cfg = json.loads((unified_run / "run.json").read_text())
    assert cfg["train"]["data"]["products"] == ["hazel", "inverted"]
    split = recorded_split(cfg)
    per = cfg["thresholds"]["products"]
    assert set(per) == {"hazel", "inverted"}
    pred = Predictor(unified_run)
    for product in ("hazel", "inverted"):
        holdout = [s.path for s in split.holdout if s.product == product]
        assert holdout and all(product in p.parts for p in holdout)
        raw = [r.raw_score for r in pred.predict(holdout)]  # its own held-out normals, scored again here
        k = min(len(raw), math.ceil((len(raw) + 1) * 0.99))  # the order statistic of rank ceil((n + 1) q)
        assert per[product]["image"]["values"]["normal_quantile"] == pytest.approx(sorted(raw)[k - 1], rel=1e-5)
    assert per["hazel"]["image"]["values"] != per["inverted"]["image"]["values"]


def test_per_product_thresholds_round_trip_through_the_bundle(unified_run, product_set, tmp_path):
    bundle = tmp_path / "b"
    export(unified_run, bundle, ["onnx"])
    run, dev = Predictor(unified_run), Predictor(bundle, runtime="onnxruntime")
    assert dev.products == ["hazel", "inverted"]
    image = read_image(sorted((product_set / "inverted/test").rglob("*.jpg"))[0])
    for product in ("hazel", "inverted", None):
        a, b = run.predict(image, product=product), dev.predict(image, product=product)
        assert b.score == pytest.approx(a.score, abs=1e-4) and b.is_anomalous == a.is_anomalous
    by_product = {p: dev.predict(image, product=p).score for p in ("hazel", "inverted")}
    assert by_product["hazel"] != pytest.approx(by_product["inverted"], abs=1e-3)
    raw = dev.predict(image).raw_score
    dev.set_threshold(raw)  # a manual threshold without a product applies to every product
    for product in ("hazel", "inverted", None):
        got = dev.predict(image, product=product)
        assert got.is_anomalous and got.score == pytest.approx(0.5)


def test_unknown_product_is_a_clear_error(unified_run, tiny_run, small_mvtec, capsys):
    image = sorted((small_mvtec / "test").rglob("*.jpg"))[0]
    with pytest.raises(UsageError, match=r"unknown product 'bolt'; this model knows: hazel, inverted"):
        Predictor(unified_run).predict(image, product="bolt")
    assert main(["predict", str(unified_run), str(image), "--product", "bolt"]) == 2
    assert "unknown product 'bolt'" in capsys.readouterr().err
    assert main(["predict", str(tiny_run), str(image), "--product", "hazel"]) == 2
    assert "trained on one product; leave it out" in capsys.readouterr().err


def test_eval_reports_each_product_and_their_mean(unified_run, product_set):
    res = evaluate(unified_run, product_set)
    assert set(res["products"]) == {"hazel", "inverted"}
    for product in ("hazel", "inverted"):  # each product's figures are what that product alone gives
        alone = evaluate(unified_run, product_set / product)
        assert res["products"][product]["image_auroc"] == pytest.approx(alone["image_auroc"])
        assert res["products"][product]["aupro"] == pytest.approx(alone["aupro"])
        for k in ("false_alarms", "misses"):  # at that product's own threshold
            assert res["products"][product][k] == alone[k]
    assert res["image_auroc"] == pytest.approx(np.mean([res["products"][p]["image_auroc"] for p in ("hazel", "inverted")]))


def test_a_token_grid_too_small_for_the_mask_is_refused(small_mvtec, tmp_path, capsys):
    """At 64 px the 4 x 4 grid would leave central tokens nothing outside their 5 x 5 window."""
    assert main(["train", "--model", "uniad", "--data", str(small_mvtec), "--out", str(tmp_path / "r"),
                 "--image-size", "64", "--set", "steps=1"]) == 2
    assert "4 x 4 token grid is too small for a 5 x 5 neighbour mask" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_one_product_models_refuse_a_product_set(product_set, tmp_path, capsys):
    assert main(["train", "--model", "padim", "--data", str(product_set), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 products (hazel, inverted) and padim trains one product per run" in err and "--model uniad" in err
    assert not (tmp_path / "r").exists()


def test_product_folders_are_found_under_a_root(product_set):
    ds = open_dataset(product_set)
    assert ds.layout == "products" and ds.products == ["hazel", "inverted"]
    assert {s.product for s in ds.train} == {"hazel", "inverted"}
    assert all(s.path.is_relative_to(product_set / s.product) for s in ds.train + ds.test)


def test_eval_of_one_product_folder_never_scores_its_training_images(small_mvtec, tmp_path):
    """Folder-layout products with a non-zero seed: evaluating one product's folder reads that
    product's part of the recorded test split instead of re-splitting good/ with seed 0."""
    root = tmp_path / "line"
    for product in ("a", "b"):
        for src in small_mvtec.rglob("*.jpg"):
            kind = "good" if "good" in src.parts else "bad"
            dst = root / product / kind / f"{src.parent.name}_{src.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    run = tmp_path / "run"
    assert main(["train", "--model", "uniad", "--data", str(root / "a"), "--data", str(root / "b"), "--out", str(run),
                 "--image-size", "96", "--seed", "5", "--set", "steps=2"]) == 0
    record = json.loads((run / "run.json").read_text())
    split = recorded_split(record)
    trained_on = {s.path for s in split.fit + split.holdout}
    assert trained_on & {s.path for s in open_dataset(root / "a").test}  # what re-splitting with seed 0 would score
    scored, _, said = samples_to_score(record, root / "a")
    assert said == "product a of the test split recorded at training"
    assert [s.path for s in scored] == [s.path for s in split.test if s.product == "a"]
    assert not trained_on & {s.path for s in scored}
    assert evaluate(run, root / "a")["n_images"] == len(scored)


def test_several_data_folders_must_be_sibling_products(small_mvtec, tmp_path, capsys):
    shutil.copytree(small_mvtec, tmp_path / "x" / "bolt")
    shutil.copytree(small_mvtec, tmp_path / "y" / "nut")
    assert main(["train", "--model", "uniad", "--data", str(tmp_path / "x" / "bolt"), "--data", str(tmp_path / "y" / "nut"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "side by side in one folder" in capsys.readouterr().err


def test_int8_validation_measures_each_product(unified_run, product_set):
    """The gate's figures include each product's own AUROC (the same as eval's), so a product that
    INT8 hurts cannot hide behind the pooled figure."""
    from edgead.tasks.image.validation import LABELLED, ValidationSet, compare, score

    record = json.loads((unified_run / "run.json").read_text())
    pred = Predictor(unified_run)
    ref = score(pred, ValidationSet(LABELLED, "test split", recorded_split(record).test))
    per = evaluate(unified_run, product_set)["products"]
    for product in ("hazel", "inverted"):
        assert ref.metrics[f"{product}.image_auroc"] == pytest.approx(per[product]["image_auroc"])
    worse = dict(ref.metrics, **{"inverted.image_auroc": ref.metrics["inverted.image_auroc"] - 0.2})
    cand = type(ref)(ref.raw, ref.normalised, ref.anomalous, ref.labels, worse)
    assert compare(LABELLED, ref, cand)["drop"] == pytest.approx(0.2)


def test_product_set_flags_that_do_not_apply_are_usage_errors(product_set, tmp_path, capsys):
    assert main(["train", "--model", "uniad", "--data", str(product_set), "--val", str(product_set / "hazel"),
                 "--out", str(tmp_path / "r"), "--image-size", "96"]) == 2
    assert "--val is for one product" in capsys.readouterr().err
    assert main(["train", "--model", "mmae", "--data", "a.txt", "--data", "b.txt", "--out", str(tmp_path / "s")]) == 2
    assert "--data is given 2 times; signal models train on one data set" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- OneNIP-lite


@pytest.fixture(scope="module")
def prompted_run(product_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "onenip"
    assert main(["train", "--model", "onenip", "--data", str(product_set / "hazel"), "--data", str(product_set / "inverted"),
                 "--out", str(out), "--image-size", "96", "--set", "steps=40", "--set", "synthetic_per_product=8"]) == 0
    return out


def test_onenip_reads_the_test_image_around_a_token_and_the_prompt_everywhere():
    """A decoder token ignores the test image inside its own 3 x 3 window (it cannot copy itself),
    sees the test image outside it, and sees the prompt at its own place."""
    cfg = onenip.OneNIPConfig(grid_h=6, grid_w=7, neighbour=3, width=32, heads=4)
    model = onenip.OneNIPLite(cfg, pretrained=False).eval()
    layer, gen = model.decoder[0], torch.Generator().manual_seed(0)
    memory, prompt = torch.randn(1, 42, 32, generator=gen), torch.randn(1, 42, 32, generator=gen)
    near = [a * 7 + b for a in range(1, 4) for b in range(2, 5)]  # the 3 x 3 window of token 17 = (2, 3)

    def token17(mem, look):
        with torch.no_grad():
            return layer(prompt, mem, look, model.pos, model.bias)[0, 17]

    base = token17(memory, prompt)
    inside, outside, prompted = memory.clone(), memory.clone(), prompt.clone()
    inside[0, near] += 5 * torch.randn(9, 32, generator=gen)
    outside[0, 40] += 5 * torch.randn(32, generator=gen)
    prompted[0, 17] += 5 * torch.randn(32, generator=gen)
    assert torch.allclose(token17(inside, prompt), base, atol=1e-5)
    assert not torch.allclose(token17(outside, prompt), base, atol=1e-3)
    assert not torch.allclose(token17(memory, prompted), base, atol=1e-3)


def test_onenip_prompts_are_each_product_s_recorded_image(prompted_run, product_set):
    from edgead.models import load_run

    model, record = load_run(prompted_run)
    prompts = record["train"]["log"]["prompt_images"]
    assert [p.split("/")[0] for p in prompts] == ["hazel", "inverted"]
    spec = Predictor(prompted_run).spec
    from edgead.tasks.image.preprocess import preprocess

    with torch.no_grad():
        for g, rel in enumerate(prompts):
            x = torch.from_numpy(preprocess(read_image(product_set / rel), spec)[0][None])
            assert torch.allclose(model.encode(model.tokens(x))[0], model.prompts[g], atol=1e-4)


def test_onenip_scores_each_image_against_the_named_product(prompted_run, product_set, tmp_path, capsys):
    from edgead.models import load_run

    model, _ = load_run(prompted_run)
    pred = Predictor(prompted_run)
    assert pred.channels == ["hazel", "inverted"] and pred.products == ["hazel", "inverted"]
    image = read_image(sorted((product_set / "inverted/test").rglob("*.jpg"))[0])
    from edgead.tasks.image.preprocess import preprocess

    x = preprocess(image, pred.spec)[0]
    with torch.no_grad():
        both = model(torch.from_numpy(x[None]))[0].numpy()  # (products, h, w)
    for i, product in enumerate(("hazel", "inverted")):
        assert np.allclose(pred.raw_map(x, product), both[i], atol=1e-5)
    assert not np.allclose(both[0], both[1], atol=1e-3)  # the prompt matters
    bundle = tmp_path / "b"
    export(prompted_run, bundle, ["onnx"])
    dev = Predictor(bundle, runtime="onnxruntime")
    manifest = json.loads((bundle / "edgead.json").read_text())
    assert manifest["outputs"]["anomaly_map_products"] == ["hazel", "inverted"]
    for product in ("hazel", "inverted"):
        assert dev.predict(image, product=product).raw_score == pytest.approx(
            pred.predict(image, product=product).raw_score, rel=1e-4)
    with pytest.raises(UsageError, match="needs the product: one of hazel, inverted"):
        dev.predict(image)
    path = str(sorted((product_set / "inverted/test").rglob("*.jpg"))[0])
    assert main(["predict", str(bundle), path]) == 2
    assert "--product NAME" in capsys.readouterr().err
    assert main(["predict", str(bundle), path, "--product", "bolt"]) == 2
    assert "unknown product 'bolt'" in capsys.readouterr().err
    assert main(["predict", str(bundle), path, "--product", "inverted"]) == 0


def test_onenip_eval_of_a_product_folder_it_was_not_trained_on_needs_the_product(prompted_run, product_set, tmp_path, capsys):
    shutil.copytree(product_set / "inverted", tmp_path / "new_batch")
    assert main(["eval", str(prompted_run), "--data", str(tmp_path / "new_batch")]) == 2
    assert "needs the product" in capsys.readouterr().err
    res = evaluate(prompted_run, tmp_path / "new_batch", product="inverted")
    whole = evaluate(prompted_run, product_set)["products"]["inverted"]
    # the copy's test split is all of its test folder, the same images as the recorded split's
    assert res["image_auroc"] == pytest.approx(whole["image_auroc"])


def test_synthetic_anomalies_change_exactly_their_mask():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, 3, 48, 64)).astype(np.float32)
    groups = np.array([0, 0, 0, 1, 1, 1])
    fake, masks, sources = synthetic.synthesize(images, groups, per_product=6, seed=1)
    assert fake.shape == (12, 3, 48, 64) and masks.shape == (12, 48, 64)
    assert list(groups[sources]) == [0] * 6 + [1] * 6  # each made of its own product's images
    for x, m, i in zip(fake, masks, sources):
        changed = np.abs(x - images[i]).max(0) > 0
        assert not changed[~m].any() and changed[m].mean() > 0.99
        assert synthetic.AREA[0] * 0.5 <= m.mean() <= synthetic.AREA[1] * 1.5
