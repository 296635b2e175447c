"""`edgead eval --report DIR`: the folder it writes, its images.csv against the Predictor, the
page as a browser shows it (headless Chromium), the overlay's floor, and the curves it plots."""
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgead.cli import main
from edgead.core import metrics
from edgead.core.thresholds import ThresholdSet
from edgead.predictor import Predictor
from edgead.tasks.image.data import Sample, open_dataset
from edgead.tasks.image.evaluate import ScoredImage, figures
from edgead.tasks.image.report import ReportHeader, write_report
from edgead.tasks.image.visualize import overlay

PROBE = """<script>
addEventListener("load", () => {
  for (const im of document.images) im.setAttribute("data-natural", im.naturalWidth + "x" + im.naturalHeight);
  document.body.setAttribute("data-probed", "yes");
});
</script>"""


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if path is None:
        pytest.skip("Chromium not installed: run `make browser` (Debian, as root)")
    return path


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Chromium, headless and offline-minded, on a local page."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tiny_run, small_mvtec, tmp_path_factory):
    """One `edgead eval --report` of the tiny run on its own test split: (folder, exit code, stdout)."""
    out = tmp_path_factory.mktemp("report") / "eval_report"
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main(["eval", str(tiny_run), "--data", str(small_mvtec), "--report", str(out)])
    return out, code, printed.getvalue()


def test_eval_report_writes_the_folder_and_says_where_it_is(report):
    out, code, stdout = report
    assert code == 0
    said = [line for line in stdout.splitlines() if "report" in line]
    assert len(said) == 1 and said[0].split(":", 1)[1].strip() == str(out / "report.html")
    for name in ("report.html", "images.csv", "scores.png", "roc.png", "pro.png", "defects.png"):
        assert (out / name).is_file(), name
    page = (out / "report.html").read_text()
    assert "http" not in page and "<script" not in page  # nothing fetched, nothing run
    assert "hetnet" in page and "torch, fp32" in page
    assert len(list((out / "gallery").iterdir())) >= 2
    assert sum(f.stat().st_size for f in out.rglob("*")) < 3_000_000


def test_images_csv_has_the_decisions_the_predictor_makes(report, tiny_run, small_mvtec):
    out, _, _ = report
    rows = read_csv(out / "images.csv")
    test = open_dataset(small_mvtec).test
    assert sorted(r["path"] for r in rows) == sorted(str(s.path) for s in test)
    predictor = Predictor(tiny_run)
    for row in rows:
        result = predictor.predict(row["path"])  # scored again here, one image at a time
        assert row["decision"] == ("anomaly" if result.is_anomalous else "ok"), row["path"]
        assert float(row["raw_score"]) == pytest.approx(result.raw_score, rel=1e-6)
        assert float(row["score"]) == pytest.approx(result.score, abs=1e-6)
        assert row["label"] == ("0" if row["defect"] == "good" else "1")


def test_report_renders_in_a_browser_with_every_image(report, tmp_path):
    out, _, _ = report
    page = (out / "report.html").read_text()
    probe = out / "_probe.html"  # a copy beside the report (its relative links resolve), with a script
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    try:
        r = browse(probe, tmp_path / "profile", "--run-all-compositor-stages-before-draw",
                   "--virtual-time-budget=5000", "--dump-dom")
    finally:
        probe.unlink()
    assert 'data-probed="yes"' in r.stdout, r.stderr[-2000:]
    sizes = re.findall(r'<img [^>]*data-natural="(\d+)x(\d+)"', r.stdout)
    assert len(sizes) == page.count("<img ") >= 6
    assert all(int(w) > 0 and int(h) > 0 for w, h in sizes), sizes  # a broken link has no natural size

    shot = tmp_path / "shot.png"
    r = browse(out / "report.html", tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1200,2000")
    pixels = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    assert pixels is not None, r.stderr[-2000:]
    assert pixels.shape == (2000, 1200) and pixels.std() > 20  # text, tables and plots, not a blank page


def test_a_report_replaces_a_report_but_nothing_else(tiny_run, small_mvtec, tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    assert main(["eval", str(tiny_run), "--data", str(small_mvtec), "--report", str(other)]) == 2
    assert "refusing to replace" in capsys.readouterr().err and (other / "mine.txt").read_text() == "keep me"

    out = tmp_path / "report"
    for _ in range(2):  # the second eval replaces the first report
        assert main(["eval", str(tiny_run), "--data", str(small_mvtec), "--report", str(out), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["report"] == str(out / "report.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "report"]  # no leftovers beside it


def test_report_without_matplotlib_is_one_clear_error(tiny_run, small_mvtec, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    assert main(["eval", str(tiny_run), "--data", str(small_mvtec), "--report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install 'edgead[report]'" in err
    assert not (tmp_path / "r").exists()


def test_the_predictor_path_imports_no_matplotlib():
    code = ("import sys; import edgead.predictor, edgead.tasks.image.evaluate, edgead.tasks.image.cli; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------ without a trained model
def test_overlay_tints_only_above_the_floor():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    level = np.zeros((40, 60), np.float32)
    level[:, :20], level[:, 20:40], level[:, 40:] = 0.39, 0.45, 0.9  # below the floor, fading in, above
    out = overlay(image, level).astype(int)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR).astype(int)
    change = np.abs(out - bgr).mean(axis=(0, 2))
    assert (out[:, :20] == bgr[:, :20]).all()  # untouched below 0.4
    assert 0 < change[20:40].mean() < change[40:].mean() and change[40:].mean() > 20


def test_curves_integrate_to_the_reported_areas():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # ties within and across classes
    fpr, tpr = metrics.roc_curve(labels, scores)
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.auroc(labels, scores), abs=1e-12)
    masks = np.zeros((4, 32, 32), bool)
    masks[0, 4:10, 4:12], masks[1, 20:30, 5:9], masks[1, 2:5, 25:30] = True, True, True
    maps = np.round(rng.random((4, 32, 32)) + masks * 0.5, 2).astype(np.float32)
    fpr, pro = metrics.pro_curve(masks, maps, 0.3)
    assert fpr[0] == pro[0] == 0 and fpr[-1] == pytest.approx(0.3) and (np.diff(fpr) >= 0).all()
    assert np.trapezoid(pro, fpr) / 0.3 == pytest.approx(metrics.aupro(masks, maps, 0.3), abs=1e-12)
    fpr50, pro50 = metrics.pro_curve(masks, maps, 0.3, points=50)  # resampled for a plot
    assert fpr50.size <= 60 and (np.diff(fpr50) >= 0).all() and fpr50[-1] == pytest.approx(0.3)
    assert np.interp(fpr50[1:], fpr, pro) == pytest.approx(pro50[1:], abs=1e-9)  # after the (0, 0) start


@pytest.mark.parametrize("labels", [[0], [1]], ids=["only good", "only defective"])
def test_report_of_one_class_says_what_it_cannot_show(tmp_path, labels):
    records = [r for r in synthetic_records(tmp_path / "data", [""]) if r.sample.label in labels]
    page = write_report(tmp_path / "report", records, figures(records), header(tmp_path / "data")).read_text()
    assert "No ROC curve" in page
    assert ("No defective images" in page) == (labels == [0])


def synthetic_records(folder: Path, products: list[str], with_thresholds: bool = True) -> list[ScoredImage]:
    """Scored images of a made-up product set (a square defect that scores high), with each
    product's thresholds from its own held-out normal scores, as training would set them."""
    rng = np.random.default_rng(2)
    records = []
    for k, product in enumerate(products):
        offset = 3.0 * k  # each product scores on its own scale
        held_out = list(rng.normal(1 + offset, 0.2, (40, 16, 16)).astype(np.float32))
        image_th = ThresholdSet.from_scores([m.max() for m in held_out])
        pixel_th = ThresholdSet.from_maps(held_out)
        for i in range(12):
            label = int(i >= 5)
            path = folder / product / ("good" if not label else "dent") / f"{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.full((48, 64, 3), 90 + 10 * i, np.uint8))
            region = rng.normal(1 + offset, 0.2, (16, 16)).astype(np.float32)
            mask = np.zeros((16, 16), bool)
            if label:
                mask[4:9, 5:10] = True
                region[mask] += 1.5 * (i - 4) / 7
            sample = Sample(path, label, "dent" if label else "good", None, product)
            records.append(ScoredImage(sample, product, float(region.max()), region, mask,
                                       image_th if with_thresholds else None, pixel_th if with_thresholds else None))
    return records


def header(data: Path) -> ReportHeader:
    return ReportHeader("uniad", "0123456789ab", "bundle artefact onnx on onnxruntime, fp32", str(data),
                        "all of the data's test split", "network", "2026-12-06 10:00 UTC")


def test_report_of_a_product_set_has_a_row_per_product(tmp_path):
    records = synthetic_records(tmp_path / "line", ["bolt", "nut"])
    page_path = write_report(tmp_path / "report", records, figures(records), header(tmp_path / "line"))
    page = page_path.read_text()
    for text in ("mean over products", "Each product is judged at its own threshold", "from 40 held-out images"):
        assert text in page
    assert page.count("<td>bolt</td>") >= 3 and page.count("<td>nut</td>") >= 3  # summary, threshold, defect rows
    rows = read_csv(tmp_path / "report" / "images.csv")
    assert {r["product"] for r in rows} == {"bolt", "nut"} and len(rows) == len(records)
    assert all(r["decision"] in ("ok", "anomaly") for r in rows)


def test_report_without_thresholds_says_why_it_has_no_decisions(tmp_path):
    records = synthetic_records(tmp_path / "data", [""], with_thresholds=False)
    page = write_report(tmp_path / "report", records, figures(records), header(tmp_path / "data")).read_text()
    assert "has no thresholds" in page and "ok (passed)" not in page
    assert "Highest-scoring good images" in page and "(no good image was flagged)" not in page
    rows = read_csv(tmp_path / "report" / "images.csv")
    assert all(r["decision"] == "" and r["score"] == "" for r in rows)
