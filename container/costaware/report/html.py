"""Evaluation charts (PNG) and one self-contained HTML report, written to ``/opt/ml/output/data/``,
for any number of classes K.

Everything is drawn from the training result's fixed-size summaries (:class:`costaware.metrics.classification.
Summary`, :class:`costaware.decisions.rules.ShiftHistogram`, the K x K tables of
:func:`costaware.metrics.multiclass_metrics.class_metrics`), never from per-row arrays, so the report of a job on
several hosts costs what one host's does and shows exactly the numbers training computed. One
page for every K (the summary, the metrics table from :mod:`costaware.metrics.registry`, the bias
table, each channel's notes and charts); only the charts, a few table rows and the notes are K's
own (:class:`TwoClassPage`, :class:`ManyClassPage`). With two classes, per channel:

* ``roc-<channel>.png``: the ROC curve of the calibrated probability (from its per-class
  histogram), with the served decisions' operating point;
* ``cost-vs-shift-<channel>.png``: the cost per row of every rule ``decide 1 iff z >= delta``
  (``z`` = a row's log-odds distance from its Bayes boundary; ``delta = 0`` is the Bayes rule),
  against deciding 1 or 0 for everyone, with the served rule and the cheapest on this channel;
* ``margins-by-class-<channel>.png`` (and ``margins-by-facet-<channel>.png`` with a facet): how
  far the rows are from their decision boundary, by true class (by facet);
* ``reliability-<channel>.png``: the reliability diagram (mean probability against observed rate
  per bin, with the bins' row counts);
* ``confusion-<channel>.png``: the served decisions' confusion matrix with each cell's cost;
* ``contributions-<channel>.png``: each feature's mean |TreeSHAP contribution| to the margin on
  the channel's rows (the top :data:`TOP_FEATURES`), per facet when there is one.

With K >= 3 classes, per channel: ``confusion-<channel>.png``, the K x K confusion matrix of the
served decisions (count, share of rows and cost per row of each cell), and
``reliability-<channel>.png``, the one-vs-rest reliability of each class's probability (bins of
0.1, from ``reliability_per_class``).

Then ``report.html``, which embeds them by relative file name and needs no network (no scripts, no
CDN, inline CSS); all its text is escaped. Charts are drawn on :class:`matplotlib.figure.Figure`
objects with the Agg canvas under matplotlib's default style (a user's ``matplotlibrc`` does not
change them) with math text off; the same inputs give byte-identical files.
"""

from __future__ import annotations

import html
import json
import math
import os
import re

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot; no windows, ever

import numpy as np  # noqa: E402
from matplotlib import style as mpl_style  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..metrics import registry as metric_registry  # noqa: E402
from ..decisions.rules import SHIFT_BINS, SHIFT_RANGE, ShiftHistogram  # noqa: E402
from ..metrics.classification import AUC_BINS  # noqa: E402

DPI = 100
DISPLAY_BINS = 80  # histogram bars over the shown range of z

# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
CLASS_COLOURS = {0: "#0072B2", 1: "#D55E00"}
FACET_COLOURS = {"a": "#009E73", "d": "#CC79A7"}
SERVED_COLOUR = "#000000"
BAYES_COLOUR = "#E69F00"
MIN_COLOUR = "#56B4E9"

RC = {
    "text.parse_math": False,
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.9,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


BINARY_CLASSES = ("0", "1")


def write_report(output_dir: str, channels: list, title: str, summary: dict,
                 facet_name: str = "", feature_names: list[str] | None = None,
                 classes: tuple[str, ...] = BINARY_CLASSES) -> list[str]:
    """Write the charts of the module docstring for each :class:`costaware.training.evaluation.
    ChannelResult` of a job with ``classes`` (their names; K = their number) and ``report.html``;
    returns the files written. Two channels whose names map to one file name are refused."""
    os.makedirs(output_dir, exist_ok=True)
    slugs = {}
    for ch in channels:
        slug = file_slug(ch.name)
        if slug in slugs.values():
            raise ValueError(f"two channels map to the same file names: {ch.name!r}")
        slugs[ch.name] = slug
    page = (TwoClassPage(facet_name, feature_names) if len(classes) == 2
            else ManyClassPage(tuple(classes)))
    written: list[str] = []
    images: dict[str, list[tuple[str, str]]] = {}
    with mpl_style.context("default"), matplotlib.rc_context(RC):
        for ch in channels:
            slug = slugs[ch.name]
            images[slug] = []
            for file_name, caption, draw in page.charts(ch, slug):
                fig = draw(ch)
                path = os.path.join(output_dir, file_name)
                fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
                written.append(path)
                images[slug].append((file_name, caption))
    path = os.path.join(output_dir, "report.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(_html(title, summary, channels, slugs, images, facet_name, page))
    written.append(path)
    return written


def job_summary(result, settings) -> dict:
    """The report's summary of a :class:`costaware.training.pipeline.TrainingResult`: what the job decided
    with (costs, loss weights, held-out rows, calibrator, rule), for any K."""
    policy, weighting = result.policy, result.weighting
    if settings.multiclass:
        head = {"classes": ", ".join(policy.class_names),
                "cost matrix C[true][decided]": [list(row) for row in policy.matrix],
                "cost columns": ", ".join(f"C[{i}][{j}]: {name}" for (i, j), name in policy.cost_columns),
                "class loss weights": dict(zip(policy.class_names, weighting.weights))}
        calibrator = ("softmax(z)" if result.calibrator_choice is not None
                      and result.calibrator_choice.name == "identity" else
                      f"softmax(z / {policy.calibrator.temperature:.4g} + b), b = "
                      + ", ".join(f"{b:+.4g}" for b in policy.calibrator.bias))
        rule = _favourable_rule_text(policy.rule)
    else:
        head = {"objective": settings.objective, **policy.costs.as_dict(),
                "cost columns": ", ".join(f"{cell}: {name}" for cell, name in policy.cost_columns),
                "loss weights": f"clip(regret / {weighting.scale:.6g}, {1 / weighting.cap:g}, "
                                f"{weighting.cap:g}) ** {weighting.exponent:g}"}
        calibrator = _two_class_calibrator_text(policy.calibrator)
        rule = policy.rule.describe()
    head["cost columns"] = head["cost columns"] or "none (class costs for every row)"
    choice = result.calibrator_choice
    summary = {**head, "held-out rows": result.held_out,
               "served model": ("trained on train (the validation channel held out)"
                                if settings.calibration_data == "validation" else
                                "the average of the fold models" if result.served_model ==
                                "fold_average" else "refit on every fit row"),
               "calibrator": f"{calibrator}, fitted on {policy.calibrator.rows} held-out rows",
               **({"calibrator's choice": choice.describe()} if choice is not None else {}),
               "decision rule": rule,
               "rounds kept": result.best_iteration + 1}
    if settings.facet_column:
        summary["facet (d)"] = f"{settings.facet_column} in {settings.facet_values_or_threshold}"
    return summary


def _two_class_calibrator_text(calibrator) -> str:
    described = calibrator.to_dict()
    if described["method"] == "identity":
        return "identity: sigmoid of the margin"
    if described["method"] == "isotonic":
        return f"isotonic in the margin, {len(calibrator.knot_margins)} steps"
    return (f"Platt on the margin, slope {calibrator.slope:.4g}, intercept "
            f"{calibrator.intercept:.4g}")


def _favourable_rule_text(rule) -> str:
    """A K-class rule (:class:`costaware.decisions.multiclass.FavourableShift` or None) in words."""
    if rule is None:
        return "argmin(P @ C)"
    return (f"argmin(P @ C) with the favourable classes' costs lowered by {rule.delta_a:+.4g} "
            f"(facet a), {rule.delta_d:+.4g} (facet d): |DPPL| <= {rule.max_abs_dppl:g} on "
            "held-out rows" + ("" if rule.held_out_dppl is None
                               else f" (DPPL {rule.held_out_dppl:+.4f} there)"))


def file_slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._")
    return slug or "channel"


def new_figure(width: float, height: float, left: float = 0.75, right: float = 0.2,
            bottom: float = 0.6, top: float = 0.4) -> Figure:
    """A figure with fixed margins in inches (a layout engine would cost a quarter of the time)."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height)
    return fig


def _placeholder(ax, message: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11,
            transform=ax.transAxes)


def _title(ch, what: str) -> str:
    return f"{what} \u2014 {ch.name} ({_scored(ch)})"


def _scored(ch) -> str:
    return "out-of-fold" if ch.scored_by == "out-of-fold" else "the model"


def _shift_text(ch) -> str:
    m = ch.metrics
    if "shift_a" in m:
        return f"served: shifts a {m['shift_a']:+.3g}, d {m['shift_d']:+.3g}"
    if "shift" in m:
        return f"served: shift {m['shift']:+.3g}"
    return "served: Bayes rule (shift 0)"


# ---------------------------------------------------------------------------------------------------
# Charts


def _roc_chart(ch) -> Figure:
    fig = new_figure(5.2, 5.0)
    ax = fig.add_subplot()
    ax.set_title(_title(ch, "ROC"))
    negatives, positives = ch.summary.score_bins
    n0, n1 = negatives.sum(), positives.sum()
    if n0 == 0 or n1 == 0:
        _placeholder(ax, f"ROC undefined on {ch.name}: only class {int(n1 > 0)} present")
        return fig
    # from the highest bin down: decide 1 for every row at or above the bin
    tpr = np.concatenate([[0.0], np.cumsum(positives[::-1]) / n1])
    fpr = np.concatenate([[0.0], np.cumsum(negatives[::-1]) / n0])
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="chance")
    ax.plot(fpr, tpr, color=CLASS_COLOURS[0], lw=1.8,
            label=f"calibrated probability (AUC {ch.metrics['auc']:.4f})")
    c = ch.metrics["confusion_matrix"]
    x = c["fp"] / max(c["fp"] + c["tn"], 1)
    y = c["tp"] / max(c["tp"] + c["fn"], 1)
    ax.plot([x], [y], marker="o", ms=9, mfc="none", mec=SERVED_COLOUR, mew=2.0, ls="none",
            label=f"served decisions (FPR {x:.3f}, TPR {y:.3f})", zorder=5)
    _unit_square(ax, "false positive rate (share of class 0 decided 1)",
                 "true positive rate (share of class 1 decided 1)", "lower right")
    return fig


def _unit_square(ax, xlabel: str, ylabel: str, legend: str) -> None:
    """Limits just around [0, 1]², equal aspect, labels and legend (the ROC and reliability charts)."""
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc=legend)


def _shown_range(rows: np.ndarray) -> tuple[int, int]:
    """Bins of z that hold rows (the inner ones), widened a little: what the charts show."""
    inner = np.flatnonzero(rows[1:-1]) + 1
    if not inner.size:
        return 1, SHIFT_BINS
    lo, hi = int(inner[0]), int(inner[-1])
    pad = max(5, (hi - lo) // 10)
    return max(1, lo - pad), min(SHIFT_BINS, hi + pad)


def _cost_chart(ch) -> Figure:
    fig = new_figure(7.6, 4.9, bottom=1.3)
    ax = fig.add_subplot()
    ax.set_title(_title(ch, "Cost per row against the shift of the decision boundary"))
    h: ShiftHistogram = ch.shifts
    n = h.rows.sum()
    if n == 0:
        _placeholder(ax, f"No rows on {ch.name}")
        return fig
    edges = ShiftHistogram.edges()
    total = h.total_cost() / n
    lo, hi = _shown_range(h.rows.sum(axis=(0, 1)))
    shown = slice(lo - 1, hi + 1)
    ax.step(edges[shown], total[shown], where="post", color="0.15", lw=1.6,
            label="all rows: decide 1 iff z >= shift")
    if h.rows[1].sum() > 0 and h.rows[0].sum() > 0:
        per_facet = h.facet_cost()
        rows = h.rows.sum(axis=(1, 2))
        for facet, k in (("a", 0), ("d", 1)):
            ax.step(edges[shown], per_facet[k][shown] / rows[k], where="post",
                    color=FACET_COLOURS[facet], lw=1.0, alpha=0.85,
                    label=f"facet {facet} rows only (n={int(rows[k]):,})")
    all_1, all_0 = ch.metrics["cost_all_1"] / n, ch.metrics["cost_all_0"] / n
    ax.axhline(all_1, color=CLASS_COLOURS[1], ls="--", lw=1.1, label=f"decide 1 for all: {all_1:.4g}")
    ax.axhline(all_0, color=CLASS_COLOURS[0], ls="--", lw=1.1, label=f"decide 0 for all: {all_0:.4g}")
    best = int(np.argmin(total))
    zero = SHIFT_BINS // 2
    ax.plot([edges[best]], [total[best]], marker="v", ms=8, color=MIN_COLOUR, mec="0.2", ls="none",
            zorder=5, label=f"cheapest here: {total[best]:.4g} at shift {edges[best]:+.3g}")
    ax.plot([0.0], [total[zero]], marker="D", ms=7, color=BAYES_COLOUR, mec="white", ls="none",
            zorder=5, label=f"Bayes rule (shift 0): {total[zero]:.4g}")
    ax.axvline(0.0, color=BAYES_COLOUR, ls=":", lw=1.2)
    served = ch.metrics["expected_cost"]
    for key in ("shift", "shift_a", "shift_d"):
        if key in ch.metrics:
            ax.axvline(ch.metrics[key], color=SERVED_COLOUR, lw=1.2)
    ax.plot([], [], color=SERVED_COLOUR, lw=1.2, label=f"{_shift_text(ch)}: {served:.4g} per row")
    ax.set_xlim(edges[lo - 1], edges[hi])
    ax.set_xlabel("shift of the Bayes boundary, in log-odds (z = logit p - logit p*)")
    ax.set_ylabel("realised cost per row")
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncols=2,
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    return fig


def _z_bars(ax, rows: np.ndarray, lo: int, hi: int, colour: str, label: str) -> None:
    edges = ShiftHistogram.edges()
    counts = rows[lo:hi + 1]
    groups = np.array_split(np.arange(len(counts)), min(DISPLAY_BINS, len(counts)))
    left = np.array([edges[lo - 1 + g[0]] for g in groups] + [edges[lo - 1 + groups[-1][-1] + 1]])
    share = np.array([counts[g].sum() for g in groups]) / max(rows.sum(), 1)
    ax.stairs(share, left, fill=True, color=colour, alpha=0.3)
    ax.stairs(share, left, color=colour, lw=1.5, label=label)


def _outside(rows: np.ndarray, lo: int, hi: int) -> str:
    below, above = rows[:lo].sum(), rows[hi + 1:].sum()
    parts = []
    if below:
        parts.append(f"{int(below):,} rows further below")
    if above:
        parts.append(f"{int(above):,} further above")
    return f" ({', '.join(parts)})" if parts else ""


def _class_chart(ch) -> Figure:
    fig = new_figure(7.0, 4.4)
    ax = fig.add_subplot()
    ax.set_title(_title(ch, "Distance from the decision boundary"))
    by_class = ch.shifts.rows.sum(axis=0)  # (label, bins)
    if by_class.sum() == 0:
        _placeholder(ax, f"No rows on {ch.name}")
        return fig
    lo, hi = _shown_range(by_class.sum(axis=0))
    for cls in (0, 1):
        k = int(by_class[cls].sum())
        if k:
            _z_bars(ax, by_class[cls], lo, hi, CLASS_COLOURS[cls],
                    f"class {cls} (n={k:,}){_outside(by_class[cls], lo, hi)}")
    _finish_z_axes(ax, ch, "class's")
    return fig


def _facet_chart(ch, facet_name: str) -> Figure:
    fig = new_figure(7.0, 4.4)
    ax = fig.add_subplot()
    ax.set_title(_title(ch, f"Distance from the boundary by facet ({facet_name or 'facet'})"))
    by_facet = ch.shifts.rows.sum(axis=1)  # (facet, bins)
    lo, hi = _shown_range(by_facet.sum(axis=0))
    facets = np.asarray(ch.summary.facets).reshape(2, 2, 2)
    for name, k in (("a", 0), ("d", 1)):
        rows = int(by_facet[k].sum())
        decided = facets[k, :, 1].sum() / rows if rows else float("nan")
        who = "sensitive" if name == "d" else "others"
        _z_bars(ax, by_facet[k], lo, hi, FACET_COLOURS[name],
                f"facet {name} ({who}, n={rows:,}): {decided:.1%} decided 1")
    _finish_z_axes(ax, ch, "facet's")
    return fig


def _finish_z_axes(ax, ch, whose: str) -> None:
    ax.axvline(0.0, color=BAYES_COLOUR, ls="--", lw=1.3, label="Bayes boundary (z = 0)")
    for key in ("shift", "shift_a", "shift_d"):
        if key in ch.metrics:
            ax.axvline(ch.metrics[key], color=SERVED_COLOUR, lw=1.3,
                       label=f"served {key.replace('_', ' ')} {ch.metrics[key]:+.3g}")
    top = max((np.max(p.get_data().values, initial=0.0) for p in ax.patches), default=0.0)
    ax.set_ylim(0, top / 0.62 if top > 0 else 1.0)
    ax.set_xlabel("z = logit(probability) - logit(the row's Bayes threshold); decide 1 at z >= 0")
    ax.set_ylabel(f"share of the {whose} rows")
    ax.legend(loc="upper left")


def _reliability_chart(ch) -> Figure:
    fig = new_figure(5.6, 5.4)
    ax = fig.add_subplot()
    ax.set_title(_title(ch, "Reliability"))
    rows, sum_p, sum_y = np.asarray(ch.summary.calibration).T
    if rows.sum() == 0:
        _placeholder(ax, f"No rows on {ch.name}")
        return fig
    kept = rows > 0
    mean_p, rate = sum_p[kept] / rows[kept], sum_y[kept] / rows[kept]
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="perfect calibration")
    sizes = 20 + 280 * rows[kept] / rows.max()
    ax.scatter(mean_p, rate, s=sizes, color=CLASS_COLOURS[1], alpha=0.7, edgecolors="0.2",
               label="bins of 0.1 (area: rows)", zorder=4)
    ax.plot(mean_p, rate, color=CLASS_COLOURS[1], lw=1.0)
    for x, y, r in zip(mean_p, rate, rows[kept]):
        ax.annotate(f"{int(r):,}", (x, y), textcoords="offset points", xytext=(6, -10), fontsize=7.5)
    m = ch.metrics
    ax.plot([], [], ls="none", label=f"ECE {m['ece']:.4f}, Brier {m['brier']:.4f}, log loss "
                                     f"{m['logloss']:.4f}")
    _unit_square(ax, "mean calibrated probability in the bin",
                 "observed share of class 1 in the bin", "lower right")
    return fig


TOP_FEATURES = 15


def _contribution_chart(ch, names: list[str], facet_name: str) -> Figure:
    summary = ch.contributions
    overall = np.asarray(summary["all"] or [0.0] * len(names))
    top = np.argsort(-overall, kind="stable")[:TOP_FEATURES][::-1]
    fig = new_figure(6.4, 1.2 + 0.32 * len(top), left=2.2, bottom=0.55, top=0.45)
    ax = fig.add_subplot()
    y = np.arange(len(top))
    if summary.get("a") is not None and summary.get("d") is not None:
        for offset, (group, who) in zip((-0.2, 0.2), (("a", "facet a"), ("d", "facet d"))):
            ax.barh(y + offset, np.asarray(summary[group])[top], height=0.38,
                    color=FACET_COLOURS[group], label=f"{who} ({facet_name})")
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.barh(y, overall[top], height=0.7, color=CLASS_COLOURS[1])
    ax.set_yticks(y, [names[j] for j in top], fontsize=8)
    ax.set_xlabel("mean |contribution| to the margin (log-odds)")
    ax.set_title(f"{ch.name}: {summary['rows']:,} rows", fontsize=10)
    return fig


def _confusion_chart(ch, counts: np.ndarray, cell_costs: np.ndarray, classes: tuple,
                     cell_names: list | None = None) -> Figure:
    """The served decisions' K x K confusion matrix ``[true][decided]``: each cell's count, share
    of the rows and cost per row (its cost over all the channel's rows)."""
    k = len(classes)
    if k == 2:
        fig = new_figure(5.2, 4.8, left=0.95, top=0.7, bottom=0.65)
    else:
        size = 1.2 + 1.3 * k
        fig = new_figure(size + 1.2, size, left=1.5, top=0.7, bottom=1.3)
    ax = fig.add_subplot()
    m = ch.metrics
    n = m["rows"]
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    for i in range(k):
        for j in range(k):
            count = counts[i, j]
            per = cell_costs[i, j] / n if n else float("nan")
            dark = counts.max() and count > 0.6 * counts.max()
            name = f"{cell_names[i][j]}\n" if cell_names else ""
            ax.text(j, i, f"{name}{count:,}\n{count / n if n else 0:.1%} of rows\ncost {per:.4g}"
                    "\nper row", ha="center", va="center", fontsize=9.5 if k == 2 else 8.5,
                    color="white" if dark else "black")
    ax.set_xticks(range(k), [f"decided {c}" for c in classes],
                  **({} if k == 2 else {"rotation": 30, "ha": "right"}))
    ax.set_yticks(range(k), [f"class {c}" for c in classes])
    ax.set_xlabel("decision")
    ax.set_ylabel("true class")
    ax.grid(False)
    ax.set_title(f"Confusion \u2014 {ch.name}: {n:,} rows, {m['expected_cost']:.4g} per row, "
                 f"savings {num_text(m['savings'])}", fontsize=10)
    return fig


CLASS_CYCLE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
               "#000000")  # Okabe-Ito, for K classes


def _class_reliability_chart(ch, classes: tuple) -> Figure:
    """Each class's one-vs-rest reliability: mean ``p_k`` against the share of class k per bin."""
    fig = new_figure(5.8, 5.4)
    ax = fig.add_subplot()
    ax.set_title(_title(ch, "Reliability"))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="perfect calibration")
    for c, name in enumerate(classes):
        rows, sum_p, hits = np.asarray(ch.metrics["reliability_per_class"][c], float).T
        kept = rows > 0
        ax.plot(sum_p[kept] / rows[kept], hits[kept] / rows[kept], marker="o",
                color=CLASS_CYCLE[c % len(CLASS_CYCLE)], lw=1.2, label=f"{name}")
    m = ch.metrics
    ax.plot([], [], ls="none", label=f"log loss {m['logloss']:.4f}, Brier {m['brier']:.4f}")
    _unit_square(ax, "mean probability of the class in the bin",
                 "observed share of the class in the bin", "upper left")
    return fig


# ---------------------------------------------------------------------------------------------------
# What differs by K: the charts, a few rows of the tables, the notes


class TwoClassPage:
    """Two classes: one logistic margin decided by a shift of its Bayes boundary."""

    metrics_intro = ("<p>Each row is decided by the served rule at its own costs (the class costs for "
                     "rows without cost columns) on its calibrated probability. Cost per row is the "
                     "realised cost of the decisions divided by the rows; savings = 1 - cost / the "
                     "cheaper of deciding 1 or 0 for every row. A channel whose rows fitted the "
                     "calibrator or the rule says so: its figures are not a held-out estimate.</p>")
    classes = BINARY_CLASSES

    def __init__(self, facet_name: str, feature_names: list[str] | None):
        self.facet_name, self.feature_names = facet_name, feature_names

    def charts(self, ch, slug: str) -> list[tuple]:
        """``(file name, caption, draw(channel) -> Figure)`` of each chart of ``ch``."""
        charts = [(f"roc-{slug}.png", "ROC curve", _roc_chart),
                  (f"cost-vs-shift-{slug}.png", "Cost per row of each shift of the decision "
                   "boundary", _cost_chart),
                  (f"margins-by-class-{slug}.png", "Distance from the decision boundary by "
                   "true class", _class_chart)]
        if ch.summary.facets is not None:
            charts.append((f"margins-by-facet-{slug}.png", "Distance from the decision "
                           "boundary by facet", lambda c: _facet_chart(c, self.facet_name)))
        charts += [(f"reliability-{slug}.png", "Reliability diagram", _reliability_chart),
                   (f"confusion-{slug}.png", "Confusion matrix of the served decisions",
                    self._confusion)]
        if getattr(ch, "contributions", None) and self.feature_names:
            charts.append((f"contributions-{slug}.png", "What the model leans on: mean "
                           "|contribution| per feature (TreeSHAP)",
                           lambda c: _contribution_chart(c, self.feature_names, self.facet_name)))
        return charts

    def _confusion(self, ch) -> Figure:
        keys = (("tn", "fp"), ("fn", "tp"))
        counts, costs = ch.metrics["confusion_matrix"], ch.metrics["cost_per_cell"]
        return _confusion_chart(ch, np.array([[counts[k] for k in row] for row in keys]),
                                np.array([[costs[k] for k in row] for row in keys]),
                                self.classes, [[k.upper() for k in row] for row in keys])

    def calibration_table(self, channels: list) -> str:
        return _reliability_table(channels)

    def class_rows(self) -> list[tuple]:
        return [("class 1 rows", lambda ch: num_text(ch.metrics["positives"]), True)]

    def everyone_rows(self) -> list[tuple]:
        """The cost per row of one decision for every row."""
        return [(f"cost per row, decide {c} for all",
                 lambda ch, c=c: _cost(ch.metrics[f"cost_all_{c}"] / ch.metrics["rows"]), True)
                for c in ("1", "0")]

    def decision_rows(self) -> list[tuple]:
        return [(f"{k.upper()} (served)", lambda ch, k=k: num_text(ch.metrics["confusion_matrix"][k]),
                 True) for k in ("tp", "fp", "fn", "tn")]

    def bias_intro(self, channels: list) -> str:
        return ""

    def bias_rows(self, channels: list) -> list[list]:
        return []

    def notes(self, ch) -> list[str]:
        """What a reader of this channel's charts should know first."""
        notes = []
        n, positives = ch.metrics["rows"], ch.metrics["positives"]
        if positives in (0, n):
            notes.append(f"Only class {int(positives == n)} is present on this channel ({n:,} rows): "
                         "the ROC curve and AUC are undefined, and the reliability diagram shows one "
                         "class.")
        if ch.summary.facets is not None:
            rows = np.asarray(ch.summary.facets).reshape(2, -1).sum(axis=1)
            for facet, k in (("a", 0), ("d", 1)):
                if rows[k] == 0:
                    notes.append(f"Facet {facet} is empty on this channel: bias metrics that compare "
                                 "the facets are undefined.")
        return notes


class ManyClassPage:
    """K >= 3 classes: K softmax probabilities decided by the least expected cost."""

    metrics_intro = ("<p>Each row is decided by the served rule on its calibrated probabilities. Cost per "
                     "row: the realised cost of the decisions over the rows; savings = 1 - cost / the "
                     "cost of deciding the single cheapest class for every row; AUC: the mean of each "
                     "class's one-vs-rest AUC. A channel whose rows fitted the calibrator says so: its "
                     "figures are not a held-out estimate.</p>")

    def __init__(self, classes: tuple[str, ...]):
        self.classes = classes

    def charts(self, ch, slug: str) -> list[tuple]:
        return [(f"confusion-{slug}.png", "Confusion matrix of the served decisions",
                 lambda c: _confusion_chart(c, np.array(c.metrics["confusion"]),
                                            np.array(c.metrics["cell_costs"]), self.classes)),
                (f"reliability-{slug}.png", "Reliability of each class's probability "
                 "(one-vs-rest)", lambda c: _class_reliability_chart(c, self.classes))]

    def calibration_table(self, channels: list) -> str:
        return ""  # each class's reliability is drawn in the channel's charts

    def class_rows(self) -> list[tuple]:
        return []

    def everyone_rows(self) -> list[tuple]:
        return [(f"cost per row, decide {name} for all",
                 lambda ch, j=j: _cost(ch.metrics["cost_all"][j] / ch.metrics["rows"]), True)
                for j, name in enumerate(self.classes)]

    def decision_rows(self) -> list[tuple]:
        return [(f"recall of {name}", lambda ch, j=j: num_text(ch.metrics["recall_per_class"][j]),
                 True) for j, name in enumerate(self.classes)]

    def bias_intro(self, channels: list) -> str:
        favourable = ", ".join(map(str, channels[0].bias["favourable"]))
        return (f" Observed and decided classes are collapsed to favourable ({escape(favourable)}) or "
                "not; below them, each class's one-vs-rest DPPL and DI of the decisions.")

    def bias_rows(self, channels: list) -> list[list]:
        return [[(escape(f"{which} of deciding {name}"), False)]
                + [(escape(format_value(ch.bias["per_class"][name][which])), True) for ch in channels]
                for name in self.classes for which in ("DPPL", "DI")]

    def notes(self, ch) -> list[str]:
        """An empty facet (the bias section says why its metrics are undefined)."""
        undefined = (ch.bias or {}).get("undefined")
        return [f"{undefined[:1].upper()}{undefined[1:]}."] if undefined else []


# ---------------------------------------------------------------------------------------------------
# HTML


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
.note { background: #fff6dd; border-left: 4px solid #e69f00; padding: 0.4em 0.8em; margin: 0.5em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def escape(x) -> str:
    return html.escape(str(x), quote=True)


def format_value(v) -> str:
    """A summary/bias value as text: 6 significant digits for floats, ``n/a`` for None."""
    if v is None:
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.6g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str, sort_keys=isinstance(v, dict))
    return str(v)


def num_text(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{float(v):.{digits}f}"


def _cost(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.6g}"


def html_table(header: list[str], rows: list[list[tuple[str, bool]]]) -> str:
    """``rows`` of (already escaped text, numeric?) cells."""
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>" for text, numeric in row)
            + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _metrics_table(channels: list, page) -> str:
    spec = [
        ("scored by", lambda ch: _scored(ch), False),
        ("fitted on these rows", lambda ch: ", ".join(ch.fitted_on) or "nothing", False),
        ("rows", lambda ch: num_text(ch.metrics["rows"]), True),
        *page.class_rows(),
    ]
    # every registered metric of K classes a channel has (metric_registry owns the list and labels)
    for metric in metric_registry.logged_for(len(page.classes)):
        if any(metric.name in ch.metrics for ch in channels):
            show = _cost if metric.kind == "cost" else num_text
            spec.append((metric.label, lambda ch, m=metric.name, show=show:
                         show(ch.metrics[m]) if m in ch.metrics else "n/a", True))
    spec += page.everyone_rows()
    names = []
    for ch in channels:
        names += [k for k in ch.alternatives if k not in names]
    for alt in names:
        label = "Bayes rule" if alt == "bayes" else "probability >= 0.5"
        spec += [(f"cost per row, {label}", lambda ch, a=alt: _cost(ch.alternatives[a]["expected_cost"])
                  if a in ch.alternatives else "n/a", True),
                 (f"savings, {label}", lambda ch, a=alt: num_text(ch.alternatives[a]["savings"])
                  if a in ch.alternatives else "n/a", True)]
    spec += page.decision_rows()
    header = ["metric"] + [escape(ch.name) for ch in channels]
    rows = [[(escape(name), False)] + [(escape(fn(ch)), numeric) for ch in channels]
            for name, fn, numeric in spec]
    return html_table(header, rows)


def _reliability_table(channels: list) -> str:
    header = ["probability bin"] + [f"{escape(ch.name)}: rows / mean probability / observed rate"
                                    for ch in channels]
    bins = len(channels[0].metrics["reliability"]) if channels else 0
    rows = []
    for b in range(bins):
        lo, hi = channels[0].metrics["reliability"][b]["bin"]
        cells = [(escape(f"[{lo:.1f}, {hi:.1f})"), False)]
        for ch in channels:
            r = ch.metrics["reliability"][b]
            cells.append((escape(f"{r['rows']:,} / {num_text(r['mean_probability'])} / "
                             f"{num_text(r['observed_rate'])}"), True))
        rows.append(cells)
    return html_table(header, rows)


def _bias_table(channels: list, facet_name: str, page) -> str:
    with_bias = [ch for ch in channels if ch.bias]
    if not with_bias:
        return ""
    names: list[str] = []
    for ch in with_bias:
        for k in ch.bias["post_training"]:
            if k not in names:
                names.append(k)
    intro = (f"<p>SageMaker Clarify post-training bias metrics of the served decisions, facet "
             f"<code>{escape(facet_name or '(unnamed)')}</code>: facet <i>d</i> is the sensitive group, "
             "facet <i>a</i> everyone else. <i>n/a</i>: the metric is undefined on that channel."
             f"{page.bias_intro(with_bias)}</p>")
    header = ["metric"] + [escape(ch.name) for ch in with_bias]
    rows = [[(escape(name), False)] + [(escape(format_value(ch.bias["post_training"].get(name))), True)
                                   for ch in with_bias] for name in names]
    return intro + "\n" + html_table(header, rows + page.bias_rows(with_bias))


def _html(title: str, summary: dict, channels: list, slugs: dict, images: dict,
          facet_name: str, page) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<h1>{escape(title)}</h1>"]
    if summary:
        parts.append("<h2>Summary</h2>")
        parts.append(html_table(["", "value"], [[(escape(k), False), (escape(format_value(v)), False)]
                                            for k, v in summary.items()]))
    parts.append("<h2>Metrics per channel</h2>")
    parts.append(page.metrics_intro)
    parts.append(_metrics_table(channels, page))
    calibration = page.calibration_table(channels)
    if calibration:
        parts += ["<h2>Calibration</h2>", calibration]
    bias = _bias_table(channels, facet_name, page)
    if bias:
        parts.append("<h2>Bias metrics</h2>")
        parts.append(bias)
    for ch in channels:
        slug = slugs[ch.name]
        parts.append(f'<h2 id="channel-{escape(slug)}">Channel: {escape(ch.name)}</h2>')
        for note in page.notes(ch):
            parts.append(f'<p class="note">{escape(note)}</p>')
        if ch.fitted_on:
            parts.append(f'<p class="note">Fitted on these rows: {escape(", ".join(ch.fitted_on))}; '
                         f"scored by {escape(_scored(ch))}.</p>")
        parts.append('<div class="charts">')
        for file_name, caption in images[slug]:
            parts.append(f'<figure><img src="{escape(file_name)}" alt="{escape(caption)} \u2014 {escape(ch.name)}">'
                         f"<figcaption>{escape(caption)}</figcaption></figure>")
        parts.append("</div>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


__all__ = ["write_report", "format_value", "AUC_BINS", "SHIFT_RANGE"]
