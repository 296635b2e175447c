"""FADeR-lite, PBAS-lite and PatchCore-lite: the same train -> export -> INT8 -> Predictor path as
HetNet-lite, with no special case anywhere, plus the pieces that make each model what it is."""
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import runtimes
from edgead import targets
from edgead.cli import main
from edgead.tasks.image.data import open_dataset
from edgead.export import export
from edgead.models import MODELS, fader, patchcore, pbas
from edgead.tasks.image.predictor import Predictor
from edgead.tasks.image.preprocess import read_image

IMAGE_MODELS = ["patchcore", "pbas", "fader", "padim", "uniad", "onenip", "pradot"]
EPOCHS = {"patchcore": None, "pbas": 60, "fader": 20, "padim": None, "uniad": 40, "onenip": 40, "pradot": None}  # enough for maps that survive INT8
SIZE = {"uniad": 96, "onenip": 96}  # their neighbour mask needs a 6 x 6 token grid; the others train at 64 px
RUNTIMES = [t.runtime for t in targets.TARGETS.values() if runtimes.available(t.runtime)]
TARGET = {r: targets.for_runtime(r).name for r in RUNTIMES}


@pytest.fixture(scope="module", params=IMAGE_MODELS)
def model_bundle(request, small_mvtec, tmp_path_factory):
    """(model, run, bundle): trained briefly at 64 px, exported to every runtime here in FP32,
    plus a gated INT8 ONNX artefact."""
    from edgead.tasks.image.train import train

    name = request.param
    run = tmp_path_factory.mktemp("runs") / name
    train(small_mvtec, run, model=name, epochs=EPOCHS[name], image_size=SIZE.get(name, 64))
    bundle = tmp_path_factory.mktemp("bundles") / name
    export(run, bundle, [TARGET[r] for r in RUNTIMES])
    export(run, bundle, ["onnx"], int8=True, calib_size=24)
    return name, run, bundle


@pytest.fixture(scope="module")
def images(small_mvtec):
    return [read_image(s.path) for s in open_dataset(small_mvtec).test]


def test_every_runtime_matches_torch(model_bundle, images):
    name, run, bundle = model_bundle
    manifest = json.loads((bundle / "edgead.json").read_text())
    assert manifest["model"]["name"] == name
    ref = Predictor(run).predict(images)
    for rt in RUNTIMES:
        assert manifest["artefacts"][TARGET[rt]]["max_abs_diff_vs_torch"] < 1e-3
        got = Predictor(bundle, runtime=rt, precision="fp32", threads=1).predict(images)
        for r, g in zip(ref, got):
            # abs: PBAS-lite's score is a logit and can sit near 0, where a relative bound means nothing
            assert g.raw_score == pytest.approx(r.raw_score, rel=1e-4, abs=1e-4), (name, rt)
            assert np.abs(g.anomaly_map - r.anomaly_map).max() <= 1e-3
            assert g.is_anomalous == r.is_anomalous


@pytest.mark.skipif("tflite" not in RUNTIMES, reason="TFLite runtime not installed")
def test_tflite_attention_candidate_only_for_attention_graphs(model_bundle):
    """Every image graph can be read by the TFLite INT8 repairs (PaDiM-lite's float16 constants
    bring ops the quantizer has no name for), and only the Transformers' get the attention candidate."""
    from quant.tflite_int8 import unweighted_ops_of_attention_graphs

    name, _, bundle = model_bundle
    assert bool(unweighted_ops_of_attention_graphs(bundle / "model.tflite")) == (name in ("uniad", "onenip"))


def test_int8_passes_the_gate_and_runs_in_the_predictor(model_bundle, images, small_mvtec):
    name, _, bundle = model_bundle
    art = json.loads((bundle / "edgead.json").read_text())["artefacts"]["onnx_int8"]
    gate = art["gate"]
    fp32 = Predictor(bundle, runtime="onnxruntime", precision="fp32").predict(images)
    int8 = Predictor(bundle, runtime="onnxruntime", precision="int8").predict(images)
    assert len(int8) == len(fp32) and all(np.isfinite(r.score) for r in int8)
    # what the gate promises, measured here on its validation images (the test split), not read back
    labels = np.array([s.label for s in open_dataset(small_mvtec).test])
    drop = roc_auc_score(labels, [r.raw_score for r in fp32]) - roc_auc_score(labels, [r.raw_score for r in int8])
    delta = np.abs(np.array([r.score for r in int8]) - np.array([r.score for r in fp32]))
    shift = max(delta[labels == 0].mean(), delta[labels == 1].mean())
    assert drop <= 0.01 and shift <= 0.05, (name, drop, shift, gate["chosen"])
    assert np.corrcoef([r.raw_score for r in fp32], [r.raw_score for r in int8])[0, 1] > 0.9


def test_train_help_names_every_model_on_its_own_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    for name in MODELS:
        assert sum(line.split()[:1] == [name] for line in lines) == 1, name


def test_unknown_model_is_a_usage_error(small_mvtec, tmp_path, capsys):
    assert main(["train", "--model", "nope", "--data", str(small_mvtec), "--out", str(tmp_path / "r")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_model_settings(small_mvtec, tmp_path, capsys):
    run = tmp_path / "pc"
    assert main(["train", "--model", "patchcore", "--data", str(small_mvtec), "--out", str(run), "--image-size", "64",
                 "--set", "max_bank=7", "--set", "coreset_ratio=0.5"]) == 0
    cfg = json.loads((run / "run.json").read_text())["model"]["config"]
    assert cfg["max_bank"] == 7 and cfg["coreset_ratio"] == 0.5 and cfg["bank_size"] == 7
    capsys.readouterr()
    assert main(["train", "--model", "patchcore", "--data", str(small_mvtec), "--out", str(tmp_path / "x"),
                 "--set", "bank=1"]) == 2
    err = capsys.readouterr().err
    assert "patchcore has no setting 'bank'" in err and "max_bank" in err and not (tmp_path / "x").exists()
    assert main(["train", "--model", "patchcore", "--data", str(small_mvtec), "--out", str(tmp_path / "x"),
                 "--set", "max_bank"]) == 2
    assert main(["train", "--model", "patchcore", "--data", str(small_mvtec), "--out", str(tmp_path / "x"),
                 "--epochs", "3"]) == 2
    assert "no training loop" in capsys.readouterr().err and not (tmp_path / "x").exists()


# PatchCore-lite


def brute_force_k_centre(x: torch.Tensor, first: int, k: int) -> list[int]:
    picked = [first]
    for _ in range(k - 1):
        d = torch.cdist(x, x[picked]).min(1).values
        picked.append(int(d.argmax()))
    return picked


def test_coreset_is_greedy_k_centre_and_prefixes_are_coresets():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    got = patchcore.greedy_coreset(x, 20, projection_dim=64, gen=torch.Generator().manual_seed(0))
    assert got.tolist() == brute_force_k_centre(x, int(got[0]), 20)
    again = patchcore.greedy_coreset(x, 5, projection_dim=64, gen=torch.Generator().manual_seed(0))
    assert again.tolist() == got[:5].tolist()


def test_bank_respects_its_cap_and_the_graph_finds_the_nearest_entry():
    model = patchcore.PatchCoreLite(patchcore.PatchCoreConfig(max_bank=10), pretrained=False)
    images = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)  # 192 patches: 10 % > cap
    log = patchcore.fit(model, images)
    assert log["n_patches"] == 192 and log["bank_size"] == len(model.bank) == model.config.bank_size == 10
    x = torch.from_numpy(images[:1])
    f = model.features(x).permute(0, 2, 3, 1).reshape(-1, model.bank.shape[1])
    expected = torch.sqrt(torch.cdist(f, model.bank).min(1).values ** 2 + 1)
    assert torch.allclose(model(x).flatten(), expected, rtol=1e-4, atol=1e-4)


# PBAS-lite


def test_synthesised_features_sit_k_mean_radii_outside_their_centre():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 6, generator=gen)
    true = centres.repeat(5, 1) + 0.3 * torch.randn(20, 6, generator=gen)
    fake, r = pbas.synthesise(true, centres, k=0.25)
    nearest = centres[(torch.nn.functional.normalize(true, dim=1) @ torch.nn.functional.normalize(centres, dim=1).T).argmax(1)]
    assert torch.allclose((fake - true).norm(dim=1), torch.full((20,), 0.25 * float(r)), rtol=1e-5)
    assert ((fake - nearest).norm(dim=1) > (true - nearest).norm(dim=1)).all()
    assert float(r) == pytest.approx(float((true - nearest).norm(dim=1).mean()), rel=1e-5)


# FADeR-lite


def test_fader_mask_is_deterministic_and_excised_cells_get_a_local_mean_hint():
    model = fader.FADeRLite(fader.FADeRConfig(), pretrained=False).eval()
    f = torch.randn(1, fader.C, 8, 8, generator=torch.Generator().manual_seed(0))
    f[..., 3, 3] *= 10  # a salient cell
    model.saliency_threshold.fill_(2.0)
    model.saliency_softness.fill_(0.01)
    m = model.mask(f)
    assert torch.equal(m, model.mask(f)) and m[0, 0, 3, 3] > 0.99 and m[0, 0, 0, 0] < 0.5
    hint = torch.nn.functional.avg_pool2d(f, 7, 1, 3, count_include_pad=False)
    assert torch.allclose(model.excise(f)[..., 3, 3], hint[..., 3, 3], atol=1e-3)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model(x), model(x))


def test_attenuation_targets_fall_with_reconstruction_error():
    err = torch.ones(1, 1, 4, 4)
    err[..., 0, 0] = 5.0
    t = fader.gate_target(err, (4, 4))
    assert t[0, 0, 1, 1] == pytest.approx(1.0) and t[0, 0, 0, 0] == pytest.approx(np.exp(-4.0), rel=1e-5)
    assert ((t > 0) & (t <= 1)).all()


def test_fader_without_attenuation_has_plain_skips():
    with_att = fader.FADeRLite(fader.FADeRConfig(attenuation=True), pretrained=False)
    without = fader.FADeRLite(fader.FADeRConfig(attenuation=False), pretrained=False)
    assert with_att.unet.att0 is not None and without.unet.att0 is None
    n = lambda m: sum(p.numel() for p in m.unet.parameters())  # noqa: E731
    assert n(with_att) > n(without)


# PaDiM-lite


@pytest.mark.parametrize("storage, rel", [("float32", 1e-4), ("float16", 2e-3)])
def test_padim_graph_is_the_low_rank_mahalanobis_distance_of_each_location(storage, rel):
    """Checked against an independent computation: numpy's eigendecomposition of each location's
    covariance, and the PPCA distance written out term by term. Directions stored in float16
    (the default) stay within 0.2 % of it."""
    from edgead.models import padim

    cfg = padim.PaDiMConfig(stride=16, rank=4, eps=0.01, directions_dtype=storage)
    model = padim.PaDiMLite(cfg, pretrained=False)
    images = np.random.default_rng(0).normal(size=(12, 3, 64, 64)).astype(np.float32)
    log = padim.fit(model, images)
    assert log["grid"] == [4, 4] and model.config.grid_h == 4 and log["rank"] == 4
    x = torch.from_numpy(images[:2] * 1.5)
    with torch.no_grad():
        train = model.grid(torch.from_numpy(images)).double().numpy()
        test = model.grid(x).double().numpy()
        got = model(x)[:, 0].numpy()
    c = train.shape[1]
    for (i, j) in [(0, 0), (1, 2), (3, 3)]:
        xs = train[:, :, i, j]
        mu = xs.mean(0)
        cov = np.cov(xs, rowvar=False) + 0.01 * np.eye(c)
        lam, vec = np.linalg.eigh(cov)
        u, top, rest = vec[:, -4:], lam[-4:], lam[:-4].mean()
        for n in range(2):
            z = test[n, :, i, j] - mu
            p = u.T @ z
            d2 = (p ** 2 / top).sum() + (z @ z - p @ p) / rest
            assert got[n, i, j] == pytest.approx(np.sqrt(d2 + 1), rel=rel)


def test_padim_runs_that_do_not_record_their_directions_storage_load_them_in_float32():
    """Runs from before float16 storage was the default keep their float32 directions."""
    from edgead.models import build

    config = {"backbone": "lite0", "stride": 16, "rank": 4, "eps": 0.01, "grid_h": 2, "grid_w": 2}
    assert build({"model": {"name": "padim", "config": config}}).directions.dtype == torch.float32
    now = {**config, "directions_dtype": "float16"}
    assert build({"model": {"name": "padim", "config": now}}).directions.dtype == torch.float16


def test_padim_size_and_backbone_setting(small_mvtec, tmp_path):
    """`--set backbone=lite2` trains on EfficientNet-Lite2 features (192 channels at 64 px)."""
    assert main(["train", "--model", "padim", "--data", str(small_mvtec), "--out", str(tmp_path / "p"),
                 "--image-size", "64", "--set", "backbone=lite2", "--set", "rank=8"]) == 0
    cfg = json.loads((tmp_path / "p" / "run.json").read_text())
    assert cfg["model"]["config"]["backbone"] == "lite2"
    assert cfg["input"]["resize"] == "stretch"  # the model's own default: statistics per place in the frame
    from safetensors.numpy import load_file

    w = load_file(str(tmp_path / "p" / "weights.safetensors"))
    assert w["directions"].shape == (16, 192, 8) and w["mean"].shape == (1, 192, 4, 4)
    assert w["directions"].dtype == np.float16
    res = Predictor(tmp_path / "p").predict(sorted((small_mvtec / "test/colour").glob("*"))[0])
    assert res.anomaly_map.shape == (128, 128)
