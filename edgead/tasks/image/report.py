"""`edgead eval --report DIR`: an evaluation as a folder a person opens in a browser.

report.html (self-contained: relative links, inline CSS, no script), its plots as PNG and
images.csv, built from the records eval scored (nothing is scored again). matplotlib is
imported inside the plotting functions only, on its Agg canvas without pyplot, so the predictor
path never needs it and a caller's own matplotlib backend is left alone."""
from __future__ import annotations

import csv
import html
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgead import __version__, targets
from edgead.core import metrics
from edgead.core.atomic import atomic_folder, check_replaceable
from edgead.core.errors import UsageError
from edgead.core.opencv import cv2
from edgead.core.thresholds import FalseAlarms, ThresholdSet, needed_for
from edgead.tasks.image.evaluate import ScoredImage, at_threshold, of_product, pixel_pairs, products_of
from edgead.tasks.image.preprocess import read_image
from edgead.tasks.image.visualize import HEAT_FLOOR, overlay

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from edgead.tasks.image.predictor import Predictor

MARKER = "report.html"  # what makes a folder a report (atomic_folder replaces only such folders)
GALLERY_ROWS = 8  # worst false alarms, worst misses
GALLERY_FALLBACK_ROWS = 4  # highest-scoring good / lowest-scoring defective images when none was wrong
THUMB_SIDE = 256
GALLERY_JPEG_QUALITY = 90  # photos: a tenth of the PNG's size
PRO_FPR_LIMIT = 0.3
CURVE_POINTS = 1000  # the PRO curve is drawn through this many FPRs (the exact one has millions of points)
GOOD_COLOUR, DEFECT_COLOUR = "#1f77b4", "#e4572e"
KIND_TEXT = {"normal_quantile": "set from held-out good images", "f1_adaptive": "best F1 on labelled validation images",
             "manual": "set by hand"}
CSV_COLUMNS = ("path", "product", "defect", "label", "raw_score", "score", "decision")
INSTALL_HINT = "pip install 'edgead[report]'"


# ------------------------------------------------------------------------ what the report is about
@dataclass(frozen=True)
class ReportHeader:
    """What was evaluated, on what and when: the page's first lines."""

    model: str
    weights: str  # sha256 prefix of the run's weights, or "" for old runs
    scored_by: str  # target, runtime and precision
    data: str
    evaluated_on: str
    pixel_geometry: str
    written: str

    @classmethod
    def of(cls, predictor: Predictor, data: str | Path, summary: dict) -> ReportHeader:
        sha = str(predictor.config.get("weights_sha256") or "")
        source = "training run" if predictor.target == targets.TORCH else f"bundle artefact {predictor.target}"
        return cls(model=str(predictor.config["model"]["name"]), weights=sha[:12],
                   scored_by=f"{source} on {predictor.runtime}, {predictor.precision}",
                   data=str(data), evaluated_on=str(summary.get("evaluated_on", "")),
                   pixel_geometry=str(summary.get("pixel_geometry", "")),
                   written=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))


def check_report_folder(out: str | Path) -> Path:
    """Refuse at once (before any scoring) what would fail at the end: no matplotlib, or an
    output folder that exists and is not a report."""
    require_matplotlib()
    return check_replaceable(out, MARKER)


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"--report draws its plots with matplotlib, which is not installed: {INSTALL_HINT}") from None


# ------------------------------------------------------------------------ the folder
def write_report(out: str | Path, records: list[ScoredImage], summary: dict, header: ReportHeader) -> Path:
    """Write the report folder atomically (a half-written report never replaces a good one, and
    only a report is replaced); the path of its report.html. `summary`: what evaluate returns."""
    require_matplotlib()
    with atomic_folder(out, MARKER) as tmp:
        write_csv(tmp / "images.csv", records)
        sections = [summary_section(summary, records), threshold_section(records, summary),
                    scores_section(tmp, records), curves_section(tmp, records, summary),
                    defects_section(tmp, records), gallery_section(tmp, records, Path(header.data))]
        (tmp / MARKER).write_text(page(header, records, sections), encoding="utf-8")
    return Path(out).absolute() / MARKER


def write_csv(path: Path, records: list[ScoredImage]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in records:
            w.writerow([str(r.sample.path), r.product, r.sample.defect, r.sample.label, f"{r.raw_score:.9g}",
                        "" if r.score is None else f"{r.score:.6f}", decision(r)])


def decision(r: ScoredImage) -> str:
    return "" if r.flagged is None else ("anomaly" if r.flagged else "ok")


# ------------------------------------------------------------------------ grouping
def is_product_set(records: list[ScoredImage]) -> bool:
    return products_of(records) != [""]


def has_thresholds(records: list[ScoredImage]) -> bool:
    return all(r.image_thresholds is not None for r in records)


def figures_of(summary: dict) -> dict[str, dict]:
    """Each product's figures (one product: the summary itself, under "")."""
    return summary.get("products") or {"": summary}


def product_label(product: str) -> str:
    return product or "all images"


# ------------------------------------------------------------------------ sections
def summary_section(summary: dict, records: list[ScoredImage]) -> str:
    keys = ("n_images", "image_auroc", "pixel_auroc", "aupro", "f1_max")
    names = ("images", "image AUROC", "pixel AUROC", "AUPRO (FPR ≤ 0.3)", "image F1-max")
    rows = [[product_label(p)] + [fmt(m.get(k)) for k in keys] for p, m in figures_of(summary).items()]
    if is_product_set(records):
        rows.append(["mean over products"] + [fmt(summary.get(k)) for k in keys])
    note = ("" if summary.get("aupro") is not None else
            "<p class=note>No pixel metrics: no test image has a ground-truth mask with defect pixels.</p>")
    return section("Summary", table(["product", *names], rows) + note)


def threshold_section(records: list[ScoredImage], summary: dict) -> str:
    """The confusion table at the shipped threshold, beside the false-alarm rate training expected."""
    title = "At the shipped threshold"
    if not has_thresholds(records):
        return section(title, "<p class=note>This model has no thresholds (it was not trained with "
                              "<code>edgead train</code>), so nothing was decided: no confusion table, and the plots "
                              "have no threshold line.</p>")
    rows = []
    for p, m in figures_of(summary).items():
        th = of_product(records, p)[0].image_thresholds
        rows.append([product_label(p), f"{th.threshold:.4g} ({th.active})", str(m.get("n_good", 0)),
                     count_and_rate(m.get("false_alarms"), m.get("false_alarm_rate")), expected_text(th),
                     str(m.get("n_defective", 0)), count_and_rate(m.get("misses"), m.get("miss_rate"))])
    per_product = table(["product", "threshold (raw, kind)", "good images", "false alarms (measured here)",
                         "expected false alarms on good parts (from training)", "defective images", "misses"], rows)
    return section(title, confusion_table(summary) + per_product + threshold_note(records))


def expected_text(th: ThresholdSet) -> str:
    """The false-alarm rate training expects of a normal_quantile threshold (thresholds.meta),
    to set beside the rate measured here; why there is none otherwise."""
    if th.active != "normal_quantile":
        return f"not estimated for a {th.active} threshold"
    record = th.meta.get("false_alarms")
    if not record:
        return "not recorded (a run from before this estimate)"
    fa = FalseAlarms.from_json(record)
    text = (f"{percent(fa.expected)} ({100 * fa.confidence:.0f} % interval {percent(fa.low)}–{percent(fa.high)}), "
            f"from {fa.n} held-out images")
    if not fa.enough:
        text += f"; too few for the {percent(fa.target)} asked for (that needs {needed_for(1.0 - fa.target)})"
    return text


def confusion_table(summary: dict) -> str:
    good, bad = summary.get("n_good", 0), summary.get("n_defective", 0)
    fa, miss = summary.get("false_alarms", 0), summary.get("misses", 0)
    rows = [["good", str(good - fa), f"{fa} false alarms"], ["defective", f"{miss} misses", str(bad - miss)]]
    return table(["actual \\ decision", "ok (passed)", "anomaly (flagged)"], rows, cls="confusion")


def threshold_note(records: list[ScoredImage]) -> str:
    kinds = sorted({r.image_thresholds.active for r in records})
    text = "; ".join(f"<code>{k}</code>: {KIND_TEXT.get(k, '')}" for k in kinds)
    each = " Each product is judged at its own threshold." if is_product_set(records) else ""
    return (f"<p class=note>Threshold kind — {text}.{each} A part is flagged when its raw score is at or above the "
            "threshold (normalised score ≥ 0.5). The expected rate is what training predicts for new good parts; "
            "the measured rate counts this test set's good images.</p>")


def scores_section(folder: Path, records: list[ScoredImage]) -> str:
    save(score_histogram(records), folder / "scores.png")
    return section("Score distributions", img("scores.png", "histograms of good and defective image scores"))


def curves_section(folder: Path, records: list[ScoredImage], summary: dict) -> str:
    parts = []
    roc = roc_plot(records, summary)
    parts.append(img("roc.png", "ROC curve") if save(roc, folder / "roc.png") else
                 "<p class=note>No ROC curve: it needs both good and defective images.</p>")
    pro = pro_plot(records, summary)
    parts.append(img("pro.png", "PRO curve") if save(pro, folder / "pro.png") else
                 "<p class=note>No PRO curve: no test image has a ground-truth mask with defect pixels.</p>")
    return section("Detection (ROC) and localisation (PRO)", f"<div class=pair>{''.join(parts)}</div>")


def defects_section(folder: Path, records: list[ScoredImage]) -> str:
    rows = defect_rows(records)
    if not rows:
        return section("Per defect type", "<p class=note>No defective images in the test set.</p>")
    chart = img("defects.png", "AUROC per defect type") if save(defect_chart(rows), folder / "defects.png") else ""
    cells = [[product_label(d.product), d.defect, str(d.n), str(d.n_good), fmt(d.auroc),
              "" if d.misses is None else str(d.misses)] for d in rows]
    return section("Per defect type", chart + table(
        ["product", "defect", "images", "good images", "image AUROC vs good", "misses"], cells)
        + "<p class=note>Each defect type's images against the good images (of the same product).</p>")


def gallery_section(folder: Path, records: list[ScoredImage], data: Path) -> str:
    (folder / "gallery").mkdir()
    scale = map_scale(records)
    blocks = []
    for name, title, rows in gallery_choices(records):
        figures = [gallery_row(folder, f"gallery/{name}_{i:02d}.jpg", r, scale, data) for i, r in enumerate(rows, 1)]
        body = f"<div class=gallery>{''.join(figures)}</div>" if figures else "<p class=note>None.</p>"
        blocks.append(f"<h3>{esc(title)}</h3>{body}")
    legend = (f"<p class=note>Each row: the original image | its heat map (tinted where the normalised map exceeds "
              f"{HEAT_FLOOR}, full colour from the pixel threshold 0.5 up; white outline: predicted defect) | the "
              "ground-truth mask.</p>")
    return section("Gallery", legend + "".join(blocks))


# ------------------------------------------------------------------------ gallery
def gallery_choices(records: list[ScoredImage]) -> list[tuple[str, str, list[ScoredImage]]]:
    """(file prefix, title, images): the worst false alarms and misses, or, where there are
    none, the good images closest to being flagged and the defective ones closest to passing."""
    good = sorted((r for r in records if r.sample.label == 0), key=rank_score, reverse=True)
    bad = sorted((r for r in records if r.sample.label == 1), key=rank_score)
    alarms = [r for r in good if r.flagged]
    misses = [r for r in bad if r.flagged is False]
    decided = has_thresholds(records)
    return [
        ("false_alarm", f"Worst false alarms ({min(len(alarms), GALLERY_ROWS)} of {len(alarms)})",
         alarms[:GALLERY_ROWS]) if alarms else
        ("good", "Highest-scoring good images" + (" (no good image was flagged)" if decided else ""),
         good[:GALLERY_FALLBACK_ROWS]),
        ("miss", f"Worst misses ({min(len(misses), GALLERY_ROWS)} of {len(misses)})", misses[:GALLERY_ROWS])
        if misses else
        ("defective", "Lowest-scoring defective images" + (" (no defective image was missed)" if decided else ""),
         bad[:GALLERY_FALLBACK_ROWS]),
    ]


def rank_score(r: ScoredImage) -> tuple[float, float]:
    """Normalised where there are thresholds (comparable across products), then raw (the
    normalised score is clipped to [0, 1], so many images can tie at 0 or 1)."""
    return (r.raw_score if r.score is None else r.score), r.raw_score


@dataclass(frozen=True)
class MapScale:
    """How a raw map becomes a normalised one (0.5 = pixel threshold); without pixel thresholds,
    the test set's range of map values."""

    low: float
    high: float

    def normalise(self, r: ScoredImage) -> np.ndarray:
        if r.pixel_thresholds is not None:
            return np.asarray(r.pixel_thresholds.normalize(r.region), np.float32)
        return np.clip((r.region - self.low) / max(self.high - self.low, 1e-12), 0, 1).astype(np.float32)


def map_scale(records: list[ScoredImage]) -> MapScale:
    return MapScale(min(float(r.region.min()) for r in records), max(float(r.region.max()) for r in records))


def gallery_row(folder: Path, name: str, r: ScoredImage, scale: MapScale, data: Path) -> str:
    image = thumbnail(read_image(r.sample.path))
    size = (image.shape[1], image.shape[0])
    level = cv2.resize(scale.normalise(r), size, interpolation=cv2.INTER_LINEAR)
    predicted = level >= 0.5 if r.pixel_thresholds is not None else None
    panels = [cv2.cvtColor(image, cv2.COLOR_RGB2BGR), overlay(image, level, predicted), truth_panel(r, size)]
    gap = np.full((image.shape[0], 8, 3), 255, np.uint8)
    row = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    if not cv2.imwrite(str(folder / name), row, [cv2.IMWRITE_JPEG_QUALITY, GALLERY_JPEG_QUALITY]):
        raise OSError(f"could not write {folder / name}")
    verdict = decision(r).upper() or "no decision"
    score = f"score {r.score:.3f} (raw {r.raw_score:.4g})" if r.score is not None else f"raw score {r.raw_score:.4g}"
    what = "good" if r.sample.label == 0 else f"defect: {r.sample.defect}"
    product = f" · product {r.product}" if r.product else ""
    return (f"<figure><img src=\"{esc(name)}\" alt=\"{esc(shown_path(r.sample.path, data))}\">"
            f"<figcaption><b>{esc(verdict)}</b> · {esc(score)} · {esc(what)}{esc(product)}<br>"
            f"<code>{esc(shown_path(r.sample.path, data))}</code></figcaption></figure>")


def thumbnail(image: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def truth_panel(r: ScoredImage, size: tuple[int, int]) -> np.ndarray:
    """The ground-truth mask in white on black; a labelled grey panel where there is none."""
    if r.mask is not None and r.mask.any():
        m = cv2.resize(r.mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_NEAREST)
        return cv2.cvtColor(m, cv2.COLOR_GRAY2BGR)
    text = "no mask" if r.mask is None else "no defect"
    panel = np.full((size[1], size[0], 3), 96 if r.mask is None else 24, np.uint8)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.7, 2)
    cv2.putText(panel, text, ((size[0] - tw) // 2, (size[1] + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                (235, 235, 235), 2, cv2.LINE_AA)
    return panel


def shown_path(path: Path, data: Path) -> str:
    """The image's path under the data folder where it is there (short), else as it is."""
    try:
        return Path(path).absolute().relative_to(data.absolute()).as_posix()
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------ per defect type
@dataclass(frozen=True)
class DefectRow:
    product: str
    defect: str
    n: int
    n_good: int
    auroc: float | None  # None: no good images of that product
    misses: int | None  # None: no thresholds


def defect_rows(records: list[ScoredImage]) -> list[DefectRow]:
    rows = []
    for p in products_of(records):
        mine = of_product(records, p)
        good = [r for r in mine if r.sample.label == 0]
        for defect in sorted({r.sample.defect for r in mine if r.sample.label == 1}):
            bad = [r for r in mine if r.sample.label == 1 and r.sample.defect == defect]
            both = good + bad
            auc = metrics.auroc([r.sample.label for r in both], [r.raw_score for r in both]) if good else None
            decided = at_threshold(bad)
            rows.append(DefectRow(p, defect, len(bad), len(good), auc, decided.get("misses")))
    return rows


# ------------------------------------------------------------------------ plots
def new_axes(width: float = 6.4, height: float = 4.4) -> tuple[Figure, Axes]:
    """A figure on matplotlib's Agg canvas (no pyplot: no global state, no display) and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    return fig, ax


def save(fig: Figure | None, path: Path) -> bool:
    """Write `fig` as PNG; False where there was nothing to plot."""
    if fig is None:
        return False
    fig.savefig(path, dpi=100)
    return True


@dataclass(frozen=True)
class ScoreAxis:
    """Which score the histogram shows: raw for one product, normalised (0.5 = each product's
    threshold) for a product set, whose products' raw scales differ."""

    normalised: bool
    threshold: float | None
    threshold_label: str
    xlabel: str
    title: str

    def value(self, r: ScoredImage) -> float:
        return r.score if self.normalised else r.raw_score


def score_axis(records: list[ScoredImage]) -> ScoreAxis:
    if not has_thresholds(records):
        return ScoreAxis(False, None, "", "raw image score", "Image scores (no thresholds in this model)")
    kinds = ", ".join(sorted({r.image_thresholds.active for r in records}))
    if is_product_set(records):
        return ScoreAxis(True, 0.5, f"each product's threshold ({kinds})",
                         "normalised image score (0.5 = each product's threshold)",
                         "Image scores, normalised per product (0.5 = each product's own threshold)")
    th = records[0].image_thresholds
    return ScoreAxis(False, th.threshold, f"threshold {th.threshold:.4g} ({th.active})", "raw image score",
                     "Image scores of good and defective test images")


def score_histogram(records: list[ScoredImage]) -> Figure:
    axis = score_axis(records)
    good = np.array([axis.value(r) for r in records if r.sample.label == 0])
    bad = np.array([axis.value(r) for r in records if r.sample.label == 1])
    edges = bin_edges(np.concatenate([good, bad]), int(np.clip(2 * np.sqrt(len(records)), 10, 40)), axis.threshold)
    fig, ax = new_axes(9.0, 4.4)
    for scores, colour, name in ((good, GOOD_COLOUR, "good"), (bad, DEFECT_COLOUR, "defective")):
        if scores.size:
            ax.hist(scores, bins=edges, color=colour, alpha=0.45, label=f"{name} ({scores.size})")
            ax.hist(scores, bins=edges, color=colour, histtype="step", linewidth=1.5)
    if axis.threshold is not None:
        ax.axvline(axis.threshold, color="black", linestyle="--", linewidth=1.5, label=axis.threshold_label)
    ax.set(xlabel=axis.xlabel, ylabel="images", title=axis.title)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper right")
    return fig


def bin_edges(values: np.ndarray, bins: int, threshold: float | None) -> np.ndarray:
    """Equal bins over `values`, shifted so that the threshold is an edge: no bar straddles it,
    so the bars left of the line are exactly the passed images."""
    low, high = float(values.min()), float(values.max())
    if threshold is None or not np.isfinite(threshold):
        return np.histogram_bin_edges(values, bins=bins)
    low, high = min(low, threshold), max(high, threshold)
    width = (high - low) / bins or 1.0
    below, above = int(np.ceil((threshold - low) / width)), int(np.ceil((high - threshold) / width))
    edges = threshold + width * np.arange(-below, above + 1)  # the threshold itself is exact (0 * width)
    return edges if edges[-1] >= high else np.append(edges, edges[-1] + width)


def roc_plot(records: list[ScoredImage], summary: dict) -> Figure | None:
    curves = [(p, of_product(records, p)) for p in products_of(records)]
    curves = [(p, rs) for p, rs in curves if len({r.sample.label for r in rs}) == 2]
    if not curves:
        return None
    fig, ax = new_axes(5.6, 5.0)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    if has_thresholds(records):
        ax.plot([], [], "o", markerfacecolor="white", markeredgecolor="black", markersize=8,
                label="shipped threshold" + (" (each product's)" if len(curves) > 1 else ""))
    for p, rs in curves:
        fpr, tpr = metrics.roc_curve([r.sample.label for r in rs], [r.raw_score for r in rs])
        auc = figures_of(summary).get(p, {}).get("image_auroc")
        line, = ax.plot(fpr, tpr, linewidth=2, label=f"{product_prefix(p)}AUROC {fmt(auc)}")
        decided = at_threshold(rs)
        if decided.get("false_alarm_rate") is not None and decided.get("miss_rate") is not None:
            ax.plot(decided["false_alarm_rate"], 1 - decided["miss_rate"], "o", color=line.get_color(),
                    markeredgecolor="black", markersize=8)
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.02), aspect="equal", title="ROC, image level",
           xlabel="false-positive rate (good images flagged)", ylabel="true-positive rate (defective images flagged)")
    ax.legend(loc="lower right")
    return fig


def pro_plot(records: list[ScoredImage], summary: dict) -> Figure | None:
    curves = []
    for p in products_of(records):
        maps, masks = pixel_pairs(of_product(records, p))
        if any(m.any() for m in masks) and not all(m.all() for m in masks):
            curves.append((p, *metrics.pro_curve(masks, maps, PRO_FPR_LIMIT, points=CURVE_POINTS)))
    if not curves:
        return None
    fig, ax = new_axes(5.6, 5.0)
    for p, fpr, pro in curves:
        ax.plot(fpr, pro, linewidth=2,
                label=f"{product_prefix(p)}AUPRO {fmt(figures_of(summary).get(p, {}).get('aupro'))}")
    ax.set(xlim=(0, PRO_FPR_LIMIT), ylim=(0, 1.02), title=f"Per-region overlap (PRO) up to FPR {PRO_FPR_LIMIT}",
           xlabel="false-positive rate (normal pixels)", ylabel="mean overlap with each defect region")
    ax.legend(loc="lower right")
    return fig


def defect_chart(rows: list[DefectRow]) -> Figure | None:
    shown = [d for d in rows if d.auroc is not None]
    if not shown:
        return None
    fig, ax = new_axes(7.5, 1.5 + 0.4 * len(shown))
    names = [f"{product_prefix(d.product)}{d.defect} ({d.n} images)" for d in shown]
    y = np.arange(len(shown))[::-1]
    ax.barh(y, [d.auroc for d in shown], color=DEFECT_COLOUR, alpha=0.8, height=0.55)
    for yi, d in zip(y, shown):  # the value inside its bar, or beside a short one
        inside = d.auroc > 0.15
        ax.text(d.auroc + (-0.01 if inside else 0.01), yi, f"{d.auroc:.3f}", va="center", fontsize=9,
                ha="right" if inside else "left", color="white" if inside else "black", fontweight="bold")
    ax.axvline(0.5, color="black", linestyle=":", linewidth=1)
    ax.text(0.5, len(shown) - 0.45, " chance", va="bottom", fontsize=8)
    ax.set_yticks(y, names)
    ax.set(xlim=(0, 1), ylim=(-0.6, len(shown) - 0.1), xlabel="image AUROC against the good images",
           title="Image AUROC per defect type")
    return fig


def product_prefix(product: str) -> str:
    return f"{product}: " if product else ""


# ------------------------------------------------------------------------ HTML
STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0 auto;
       max-width: 1150px; padding: 0 24px 48px; }
h1 { font-size: 24px; margin: 24px 0 8px; } h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 16px; margin-top: 20px; }
table { border-collapse: collapse; margin: 10px 0; } th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
th { background: #f3f3f3; } table.about th { width: 170px; } table.confusion td { text-align: center; }
img { max-width: 100%; height: auto; } .pair { display: flex; flex-wrap: wrap; gap: 16px; }
.pair img { max-width: 540px; } .gallery { display: flex; flex-wrap: wrap; gap: 8px 24px; }
figure { margin: 6px 0 12px; width: 540px; } figcaption { font-size: 13px; color: #444; }
.note { color: #555; font-size: 14px; } code { font-size: 13px; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
{about}
{sections}
<p class=note>Per image: <a href="images.csv">images.csv</a> ({columns}; label 1 = defective; score 0.5 = the
threshold). Written by edgead {version}.</p>
</body>
</html>
"""


def page(header: ReportHeader, records: list[ScoredImage], sections: list[str]) -> str:
    n_good = sum(r.sample.label == 0 for r in records)
    about = [("model", f"{header.model}" + (f" (weights sha256 {header.weights}…)" if header.weights else "")),
             ("scored by", header.scored_by),
             ("data", f"{header.data}: {len(records)} test images ({n_good} good, {len(records) - n_good} defective)"),
             ("images evaluated", header.evaluated_on),
             ("pixel metrics on", f"the {header.pixel_geometry} geometry"),
             ("written", header.written)]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in about)
    return PAGE.format(title=esc(f"edgead evaluation: {header.model} on {Path(header.data).name or header.data}"),
                       style=STYLE, about=f"<table class=about>{rows}</table>", sections="\n".join(sections),
                       columns=esc(", ".join(CSV_COLUMNS)), version=esc(__version__))


def section(title: str, body: str) -> str:
    return f"<section><h2>{esc(title)}</h2>{body}</section>"


def table(head: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{f' class={cls}' if cls else ''}><tr>{th}</tr>{body}</table>"


def img(src: str, alt: str) -> str:
    return f"<img src=\"{esc(src)}\" alt=\"{esc(alt)}\">"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt(value: object) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def percent(rate: float) -> str:
    return f"{100 * rate:.1f} %"


def count_and_rate(count: int | None, rate: float | None) -> str:
    if count is None:
        return "–"
    return f"{count}" + ("" if rate is None else f" ({percent(rate)})")


__all__ = ["ReportHeader", "check_report_folder", "write_report", "MARKER"]
