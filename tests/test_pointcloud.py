"""Point clouds: the readers (against hand-made files), 3D-PNAS and the second generator, FPFH,
and synth3d -> train -> export -> the torch-free predictor on every runtime."""
import json
import struct

import numpy as np
import pytest

import runtimes
from edgead import targets
from edgead.cli import main
from edgead.core.errors import DataError
from edgead.export import export
from edgead.tasks.pointcloud import lzf, synthesis
from edgead.tasks.pointcloud.data import open_clouds, read_point_mask
from edgead.tasks.pointcloud.features import describe
from edgead.tasks.pointcloud.io import Cloud, read_cloud, write_pcd
from edgead.tasks.pointcloud.predictor import PointCloudPredictor

from conftest import shared_data
from test_torch_free import run_blocked

RUNTIMES = [t.runtime for t in targets.TARGETS.values() if runtimes.available(t.runtime)]
TARGET = {r: targets.for_runtime(r).name for r in RUNTIMES}


def surface(n: int = 3000, seed: int = 0) -> np.ndarray:
    """A gently curved, jittered sheet (a part's face), viewed from +z."""
    rng = np.random.default_rng(seed)
    uv = rng.uniform(-1, 1, (n, 2))
    z = 0.15 * np.sin(2 * uv[:, 0]) * np.cos(1.5 * uv[:, 1]) + rng.normal(0, 0.002, n)
    return np.c_[uv, z].astype(np.float32)


# ----------------------------------------------------------------------------- readers


def test_lzf_decodes_literals_and_overlapping_back_references():
    # 3 literal bytes "abc", then a back reference of length 5 at distance 3 (overlapping itself)
    block = bytes([2]) + b"abc" + bytes([(3 << 5) | 0, 2])
    assert lzf._decompress(block, 8, "t") == b"abcabcab"
    with pytest.raises(DataError, match="damaged"):
        lzf._decompress(block, 9, "t.pcd")
    with pytest.raises(DataError, match="damaged"):
        lzf._decompress(bytes([(1 << 5), 9]) + b"x", 4, "t.pcd")  # a reference before the start


def test_ascii_pcd_keeps_the_grid_and_marks_invalid_points(tmp_path):
    f = tmp_path / "a.pcd"
    f.write_text("# comment\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
                 "WIDTH 2\nHEIGHT 2\nVIEWPOINT 1 2 3 1 0 0 0\nPOINTS 4\nDATA ascii\n"
                 "1 2 3 9\nnan nan nan 9\n0 0 0 9\n4 5 6 9\n")
    c = read_cloud(f)
    assert c.grid == (2, 2) and c.viewpoint.tolist() == [1, 2, 3]
    assert c.valid.tolist() == [True, False, False, True]
    assert c.points[3].tolist() == [4, 5, 6]


def test_binary_pcd_with_other_fields_and_binary_ply_with_faces(tmp_path):
    pts = [(1.5, -2.0, 3.25), (0.5, 0.25, -1.0)]
    body = b"".join(struct.pack("<fffI", *p, 0xFF00FF) for p in pts)
    (tmp_path / "b.pcd").write_bytes(b"VERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT 1 1 1 1\n"
                                     b"WIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA binary\n" + body)
    assert read_cloud(tmp_path / "b.pcd").points.tolist() == [list(p) for p in pts]
    head = (b"ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty double x\nproperty double y\n"
            b"property double z\nproperty uchar red\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n")
    body = b"".join(struct.pack(">dddB", *p, 7) for p in pts) + struct.pack(">Biii", 3, 0, 1, 1)
    (tmp_path / "c.ply").write_bytes(head + body)
    assert read_cloud(tmp_path / "c.ply").points.tolist() == [list(p) for p in pts]


def test_binary_compressed_pcd_reads_the_shared_scan():
    c = read_cloud(shared_data("pointclouds/pcl_scans/table_scene_mug_stereo_textured.pcd"))
    assert c.grid == (480, 640) and len(c.points) == 307200
    assert int(c.valid.sum()) == 209280  # PCL's own count of finite points in this scan
    z = c.points[c.valid, 2]
    assert 0.5 < np.median(z) < 2.0  # a table top about a metre from the camera, not scrambled bytes


@pytest.mark.parametrize("content, match", [
    (b"", "header never ends"),
    (b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 3\nHEIGHT 1\nPOINTS 3\nDATA binary\n" + bytes(8),
     "truncated"),
    (b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 3\nHEIGHT 2\nPOINTS 3\nDATA ascii\n", "POINTS 3"),
    (b"VERSION 0.7\nFIELDS a b\nSIZE 4 4\nTYPE F F\nCOUNT 1 1\nWIDTH 1\nHEIGHT 1\nPOINTS 1\nDATA ascii\n1 2\n", "lack x, y and z"),
    (b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA ascii\nnan nan nan\n0 0 0\n",
     "none of its 2 points is valid"),
])
def test_bad_scans_are_clear_errors(tmp_path, content, match):
    f = tmp_path / "bad.pcd"
    f.write_bytes(content)
    with pytest.raises(DataError, match=match):
        read_cloud(f)


def test_bad_arrays_and_formats_are_clear_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(DataError, match=r"shape \(5,\); expected N x 3"):
        read_cloud(tmp_path / "flat.npy")
    (tmp_path / "x.obj").write_text("v 1 2 3\n")
    with pytest.raises(DataError, match="unknown point-cloud format '.obj'"):
        read_cloud(tmp_path / "x.obj")
    from edgead.tasks.pointcloud.predictor import as_cloud

    with pytest.raises(DataError, match="no valid points"):
        as_cloud(np.full((10, 3), np.nan))
    with pytest.raises(DataError, match="N x 3 or H x W x 3"):
        as_cloud(np.zeros((4, 2)))


# ----------------------------------------------------------------------------- synthesis and features


def test_pnas_is_deterministic_and_marks_exactly_the_moved_points():
    cloud = Cloud(surface(4000), viewpoint=np.array([0, 0, 5], np.float32))
    a, b = synthesis.pnas(cloud, synthesis.PnasSpec(sign=1), seed=7), synthesis.pnas(cloud, synthesis.PnasSpec(sign=1), seed=7)
    assert np.array_equal(a.cloud.points, b.cloud.points) and np.array_equal(a.mask, b.mask)
    moved = np.abs(a.cloud.points - cloud.points).max(1) > 0
    assert not moved[~a.mask].any() and moved[a.mask].mean() > 0.9  # the edge of the taper may stay put
    assert 0.01 <= a.mask.mean() <= 0.05
    assert (a.cloud.points[a.mask, 2] >= cloud.points[a.mask, 2] - 1e-6).all()  # a bulge towards the sensor
    other = synthesis.pnas(cloud, synthesis.PnasSpec(sign=1), seed=8)
    assert not np.array_equal(other.mask, a.mask)


def test_second_generator_dents_inwards_and_holes_remove_points():
    cloud = Cloud(surface(4000), viewpoint=np.array([0, 0, 5], np.float32))
    dent = synthesis.sphere_dent(cloud, 4.0, seed=1)
    assert (dent.cloud.points[dent.mask, 2] <= cloud.points[dent.mask, 2] + 1e-6).all()
    hole = synthesis.hole(cloud, seed=1)
    gone = ~hole.cloud.valid
    assert gone.any() and not (gone & hole.mask).any() and hole.mask.sum() == gone.sum()


def test_fpfh_does_not_change_when_the_part_is_turned():
    pts = surface(2000).astype(np.float64)
    view = np.array([0.0, 0.0, 5.0])
    a, _ = describe(pts, view, (16,))
    r = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    b, _ = describe(pts @ r.T, view @ r.T, (16,))
    c, _ = describe(pts + np.random.default_rng(1).normal(0, 0.01, pts.shape), view, (16,))
    # turned: only pairs on a bin edge move (float rounding); a little noise on the surface moves many
    assert np.abs(a - b).mean() < 0.02 * np.abs(a - c).mean()


def test_scans_without_a_viewpoint_get_one_side_for_every_defect():
    """A .npy or .ply has no sensor position: normals must still face one side, or "bulges" go
    either way and FPFH differs between scans of the same part."""
    cloud = Cloud(surface(4000))  # no viewpoint
    for seed in range(5):
        d = synthesis.pnas(cloud, synthesis.PnasSpec(sign=1), seed=seed)
        dz = d.cloud.points[d.mask, 2] - cloud.points[d.mask, 2]
        assert (dz >= -1e-6).all() and dz.max() > 0, seed
    turned = Cloud(surface(4000) * np.array([1, 1, -1], np.float32))  # the same sheet, upside down
    assert turned.sensor()[2] > 0 and cloud.sensor()[2] > 0  # one rule for the side, whatever the data


# ----------------------------------------------------------------------------- the whole path


@pytest.fixture(scope="module")
def cloud_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("pc")
    np.save(root / "part.npy", surface(3000))
    out = root / "set"
    assert main(["synth3d", str(root / "part.npy"), "--out", str(out), "--train", "4", "--good", "3",
                 "--defects", "3", "--strengths", "strong"]) == 0
    return out


@pytest.fixture(scope="module")
def cloud_bundle(cloud_set, tmp_path_factory):
    run = tmp_path_factory.mktemp("pcrun") / "run"
    assert main(["train", "--model", "fpfhcore", "--data", str(cloud_set), "--out", str(run), "--scales", "16,32"]) == 0
    bundle = tmp_path_factory.mktemp("pcbundle") / "b"
    export(run, bundle, [TARGET[r] for r in RUNTIMES])
    return run, bundle


def test_synth3d_writes_a_labelled_set_with_pictures(cloud_set):
    ds = open_clouds(cloud_set)
    assert len(ds.train) == 4 and {s.kind for s in ds.test} == {"good", "pnas_strong", "sphere_dent", "hole"}
    for s in ds.test:
        mask = read_point_mask(s, len(read_cloud(s.path).points))
        assert mask.any() == bool(s.label)
    assert sorted(p.name for p in (cloud_set / "renders").iterdir()) == ["hole.png", "pnas_strong.png", "sphere_dent.png"]
    assert json.loads((cloud_set / "SYNTHETIC.json").read_text())["kinds"] == ["pnas_strong", "sphere_dent", "hole"]


def test_every_runtime_gives_torch_s_point_scores(cloud_bundle, cloud_set):
    run, bundle = cloud_bundle
    scans = [s.path for s in open_clouds(cloud_set).test][:4]
    assert_every_runtime_scores_as_torch(run, bundle, [str(p) for p in scans])


def assert_every_runtime_scores_as_torch(run, bundle, scans: list[str]) -> None:
    ref = PointCloudPredictor(run).predict(scans)
    for rt in RUNTIMES:
        got = PointCloudPredictor(bundle, runtime=rt).predict(scans)
        for r, g in zip(ref, got):
            assert g.raw_score == pytest.approx(r.raw_score, rel=1e-4)
            assert np.allclose(g.point_score, r.point_score, atol=1e-3, equal_nan=True)
            assert g.is_anomalous == r.is_anomalous


def test_strong_defects_are_found_where_they_are(cloud_bundle, cloud_set):
    from edgead.tasks.pointcloud.evaluate import evaluate_pointcloud

    res = evaluate_pointcloud(cloud_bundle[1], cloud_set)
    assert res["kinds"]["pnas_strong"]["point_auroc"] > 0.8 and res["kinds"]["pnas_strong"]["cloud_auroc"] >= 0.8
    assert res["anomalies"].startswith("synthetic")
    assert res["false_alarms"] <= 1  # of the 3 good scans, at the shipped threshold


def test_point_cloud_predictor_and_cli_run_without_torch(cloud_bundle, cloud_set, tmp_path):
    bundle = cloud_bundle[1]
    scan = sorted((cloud_set / "test" / "pnas_strong").iterdir())[0]
    r = run_blocked(f"""
        from edgead.pointcloud_predictor import PointCloudPredictor
        res = PointCloudPredictor({str(bundle)!r}, runtime="onnxruntime").predict({str(scan)!r})
        from edgead.cli import main
        code = main(["predict", {str(bundle)!r}, {str(scan)!r}, "--json", "--save-maps", {str(tmp_path / "maps")!r}])
        assert "torch" not in sys.modules
        print(res.raw_score)
        sys.exit(code)
    """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    line = json.loads(lines[0])
    assert line["raw_score"] == pytest.approx(float(lines[1]), rel=1e-5) and line["n_points"] == len(read_cloud(scan).points)
    assert (tmp_path / "maps" / (scan.stem + ".png")).is_file()
    scores = np.loadtxt(tmp_path / "maps" / (scan.stem + "_points.csv"), skiprows=1)
    assert len(scores) == line["n_points"]


def test_predict_reports_a_corrupt_scan_and_goes_on(cloud_bundle, cloud_set, tmp_path, capsys):
    bad = tmp_path / "bad.pcd"
    bad.write_bytes(b"VERSION 0.7\nFIELDS x y z\n")
    good = sorted((cloud_set / "test" / "good").iterdir())[0]
    assert main(["predict", str(cloud_bundle[1]), str(bad), str(good)]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and "header never ends" in out and str(good) in out


def test_too_few_training_scans_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "d" / "train" / "good").mkdir(parents=True)
    np.save(tmp_path / "d" / "train" / "good" / "a.npy", surface(500))
    assert main(["train", "--model", "fpfhcore", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r")]) == 2
    assert "1 normal scans; at least 2 are needed" in capsys.readouterr().err


def test_organised_scans_keep_their_grid_and_holes_through_write_and_read(tmp_path):
    pts = surface(12).reshape(3, 4, 3).copy()
    pts[1, 2] = np.nan
    write_pcd(tmp_path / "o.pcd", Cloud(pts.reshape(-1, 3), (3, 4), np.array([0, 0, 1], np.float32)))
    head = (tmp_path / "o.pcd").read_bytes().split(b"DATA binary\n")[0].decode()
    assert "WIDTH 4" in head and "HEIGHT 3" in head
    back = read_cloud(tmp_path / "o.pcd")
    assert back.grid == (3, 4) and np.array_equal(back.points, pts.reshape(-1, 3), equal_nan=True)


def test_dense_scans_are_described_at_max_points_and_every_point_is_scored(cloud_set, tmp_path):
    from edgead.tasks.pointcloud.evaluate import evaluate_pointcloud
    from edgead.tasks.pointcloud.train import train_pointcloud

    run = tmp_path / "run"
    train_pointcloud(cloud_set, run, scales=(16, 32), max_points=1000)
    pred = PointCloudPredictor(run)
    scan = sorted((cloud_set / "test" / "pnas_strong").iterdir())[0]
    res = pred.predict(str(scan))
    cloud = read_cloud(scan)
    assert len(res.point_score) == len(cloud.points) and np.isfinite(res.point_score[cloud.valid]).all()
    assert len(np.unique(res.point_score[cloud.valid])) <= 1000 < int(cloud.valid.sum())
    assert evaluate_pointcloud(run, cloud_set)["kinds"]["pnas_strong"]["point_auroc"] > 0.8


def test_int8_is_smaller_and_within_the_gate_or_refused(cloud_bundle, tmp_path):
    """The bank search may not survive INT8; then the export says so and writes nothing. It must
    never ship FP32 layers under the name INT8 (what a repair that keeps every node gives)."""
    from edgead.core.errors import ExportError

    run, _ = cloud_bundle
    bundle = tmp_path / "b"
    try:
        export(run, bundle, ["onnx"], int8=True)
    except ExportError as e:
        assert "onnx_int8" in str(e) and not bundle.exists()
        return
    manifest = json.loads((bundle / "edgead.json").read_text())
    art = manifest["artefacts"]["onnx_int8"]
    assert (bundle / art["file"]).stat().st_size < 0.9 * (bundle / manifest["artefacts"]["onnx"]["file"]).stat().st_size
    assert art["gate"]["drop"] <= 0.01 and art["gate"]["score_shift"] <= 0.05


def test_benchmark_times_a_scan_of_a_data_set(cloud_set):
    from edgead.tasks.pointcloud.task import PointCloudTask

    spec, said = PointCloudTask().timing_inputs({}, cloud_set)
    assert read_cloud(spec["scan"]).points.shape[1] == 3 and "test/" in said


def test_mvtec_3d_ad_layout_and_xyz_tiffs(tmp_path):
    """MVTec 3D-AD keeps x, y, z as a 3-channel float TIFF in xyz/ (zeros where no point) and masks
    as PNGs in gt/; the reader must give x, y, z in that order, whatever OpenCV does with channels."""
    import cv2
    tifffile = pytest.importorskip("tifffile")

    grid = np.zeros((4, 5, 3), np.float32)
    grid[..., 0], grid[..., 1], grid[..., 2] = 1.0, 2.0, 3.0  # x, y, z differ, so an order swap shows
    grid[0, 0] = 0  # no point
    for split, kind in (("train", "good"), ("test", "crack")):
        (tmp_path / split / kind / "xyz").mkdir(parents=True)
        tifffile.imwrite(tmp_path / split / kind / "xyz" / "000.tiff", grid)
    (tmp_path / "test" / "crack" / "gt").mkdir()
    mask = np.zeros((4, 5), np.uint8)
    mask[2, 3] = 255
    cv2.imwrite(str(tmp_path / "test" / "crack" / "gt" / "000.png"), mask)
    ds = open_clouds(tmp_path)
    assert [s.path.name for s in ds.train] == ["000.tiff"] and ds.test[0].kind == "crack"
    cloud = read_cloud(ds.test[0].path)
    assert cloud.grid == (4, 5) and cloud.points[1].tolist() == [1.0, 2.0, 3.0] and not cloud.valid[0]
    m = read_point_mask(ds.test[0], 20)
    assert m.sum() == 1 and m[2 * 5 + 3]


def test_export_refuses_training_scans_that_changed(cloud_set, tmp_path):
    import shutil

    from edgead.tasks.pointcloud.train import train_pointcloud

    data = tmp_path / "set"
    shutil.copytree(cloud_set, data)
    run = tmp_path / "run"
    train_pointcloud(data, run, scales=(16, 32))
    first = data / json.loads((run / "run.json").read_text())["train"]["split"]["fit"][0]
    np.save(first, surface(3000, seed=9)) if first.suffix == ".npy" else write_pcd(first, Cloud(surface(3000, seed=9)))
    with pytest.raises(DataError, match="changed since training"):
        export(run, tmp_path / "b", ["onnx"])
    assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------- organised scans: GridCore


def organised_surface(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A depth camera's view of a curved part 3 units away: (h, w, 3), a few pixels with no return."""
    rng = np.random.default_rng(seed)
    v, u = np.meshgrid(np.linspace(-0.5, 0.5, h), np.linspace(-0.6, 0.6, w), indexing="ij")
    z = 3 + 0.1 * np.sin(3 * u) * np.cos(2 * v) + rng.normal(0, 0.0005, u.shape)
    pts = np.stack([u * z / 3, v * z / 3, z], -1).astype(np.float32)
    pts[rng.random(u.shape) < 0.01] = np.nan
    return pts


@pytest.fixture(scope="module")
def grid_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    np.save(root / "part.npy", organised_surface())
    out = root / "set"
    assert main(["synth3d", str(root / "part.npy"), "--out", str(out), "--train", "4", "--good", "3",
                 "--defects", "3", "--strengths", "strong", "--no-second"]) == 0
    return out


@pytest.fixture(scope="module")
def grid_bundle(grid_set, tmp_path_factory):
    run = tmp_path_factory.mktemp("gridrun") / "run"
    assert main(["train", "--model", "gridcore", "--data", str(grid_set), "--out", str(run)]) == 0
    bundle = tmp_path_factory.mktemp("gridbundle") / "b"
    export(run, bundle, [TARGET[r] for r in RUNTIMES])
    return run, bundle


def test_grid_descriptors_of_a_tilted_plane_say_flat_and_a_depth_jump_is_not_a_neighbour():
    """On a plane every chord is perpendicular to both normals (n.d = 0) and the normals agree
    (n_p.n_q = 1), whatever the tilt: each histogram peaks at those bins. A second plane 1 unit
    behind (a depth jump) must not count as neighbours, or the rows next to it would not look flat."""
    import torch

    from edgead.models.gridcore import BINS, GridCore

    v, u = np.meshgrid(np.linspace(-1, 1, 40), np.linspace(-1, 1, 48), indexing="ij")
    z = 4 - (0.3 * u - 0.2 * v) + (v > 0.3)  # tilted, with a step of 1 unit across the lower rows
    pts = np.stack([u, v, z], -1).transpose(2, 0, 1)[None].astype(np.float32)
    model = GridCore()
    desc, described, _ = model.describe(torch.from_numpy(pts))
    ok = described[0, 0].numpy().ravel() > 0
    assert ok.sum() > 500  # of the 28 x 36 points with a whole ring inside the grid
    d = desc[0].numpy().reshape(len(model.config.scales), 3, BINS, -1)[..., ok]
    assert (d[:, 0].argmax(1) == BINS // 2).all() and (d[:, 1].argmax(1) == BINS // 2).all()
    assert (d[:, 2].argmax(1) == BINS - 1).all()


def test_gridcore_runs_on_every_runtime_with_torch_s_scores(grid_bundle, grid_set):
    run, bundle = grid_bundle
    manifest = json.loads((bundle / "edgead.json").read_text())
    assert manifest["input"]["form"] == "grid" and manifest["input_name"] == "xyz"
    assert_every_runtime_scores_as_torch(run, bundle, [str(s.path) for s in open_clouds(grid_set).test])


def test_gridcore_finds_strong_defects_where_they_are(grid_bundle, grid_set):
    from edgead.tasks.pointcloud.evaluate import evaluate_pointcloud

    res = evaluate_pointcloud(grid_bundle[1], grid_set)
    assert res["point_auroc"] > 0.8 and res["cloud_auroc"] >= 0.8, res


def test_gridcore_predicts_without_torch_scipy_or_opencv(grid_bundle, grid_set):
    scan = sorted((grid_set / "test" / "pnas_strong").iterdir())[0]
    r = run_blocked(f"""
        import builtins
        real = builtins.__import__
        def no_scipy(name, *a, **k):
            if name in ("scipy", "cv2") or name.startswith("scipy."):
                raise ImportError(name + " blocked")
            return real(name, *a, **k)
        builtins.__import__ = no_scipy
        from edgead.pointcloud_predictor import PointCloudPredictor
        res = PointCloudPredictor({str(grid_bundle[1])!r}, runtime="onnxruntime").predict({str(scan)!r})
        assert "torch" not in sys.modules and "scipy" not in sys.modules and "cv2" not in sys.modules
        print(res.raw_score)
    """)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) == pytest.approx(PointCloudPredictor(grid_bundle[1], runtime="onnxruntime").predict(scan).raw_score, rel=1e-6)


def test_gridcore_refuses_unorganised_and_other_sized_scans(grid_bundle, cloud_set, tmp_path):
    pred = PointCloudPredictor(grid_bundle[1], runtime=RUNTIMES[0])
    with pytest.raises(DataError, match="unorganised cloud; this model takes 48 x 64 organised scans"):
        pred.predict(surface(500))
    with pytest.raises(DataError, match="a 24 x 64 organised scan; this model takes 48 x 64"):
        pred.predict(organised_surface(24, 64))
    code = main(["train", "--model", "gridcore", "--data", str(cloud_set), "--out", str(tmp_path / "r")])
    assert code == 2  # a usage / data error, not a traceback


def test_depth_images_are_back_projected_with_their_intrinsics(tmp_path):
    import cv2

    depth = np.full((6, 8), 1500, np.uint16)  # 1.5 m in millimetres
    depth[2, 3] = 0  # no return
    cv2.imwrite(str(tmp_path / "d.png"), depth)
    with pytest.raises(DataError, match="intrinsics.json"):
        read_cloud(tmp_path / "d.png")
    (tmp_path / "intrinsics.json").write_text(json.dumps({"fx": 500.0, "fy": 400.0, "cx": 4.0, "cy": 3.0}))
    c = read_cloud(tmp_path / "d.png")
    assert c.grid == (6, 8) and not c.valid[2 * 8 + 3] and c.valid.sum() == 47
    p = c.points.reshape(6, 8, 3)
    assert p[0, 0] == pytest.approx([(0 - 4) * 1.5 / 500, (0 - 3) * 1.5 / 400, 1.5])
    assert p[5, 7] == pytest.approx([(7 - 4) * 1.5 / 500, (5 - 3) * 1.5 / 400, 1.5])
    from edgead.tasks.pointcloud.data import scan_files

    (tmp_path / "renders").mkdir()
    cv2.imwrite(str(tmp_path / "renders" / "pic.png"), depth)
    assert [f.name for f, _ in scan_files([str(tmp_path)])] == ["d.png"]
    (tmp_path / "intrinsics.json").write_text('{"fx": 0, "fy": 1, "cx": 0, "cy": 0}')
    with pytest.raises(DataError, match="must be positive"):
        read_cloud(tmp_path / "d.png")
