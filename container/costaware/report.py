"""Evaluation charts (PNG) and one self-contained HTML report, written to ``/opt/ml/output/data/``.

Per channel: ``roc-<channel>.png``, ``cost-vs-threshold-<channel>.png``,
``scores-by-class-<channel>.png``, ``scores-by-facet-<channel>.png`` (only with a facet) and
``confusion-<channel>.png``; then ``report.html``, which embeds them by relative file name and needs
no network (no scripts, no CDN, inline CSS). All text in the HTML is escaped.

The maths is not re-implemented here: the cost curve is :func:`costaware.costs.cost_curve`, realised
costs :func:`costaware.costs.realised_costs`, AUC and confusion counts :mod:`costaware.metrics`; the
ROC points are :func:`sklearn.metrics.roc_curve`.

Decision rule: ``decide 1 iff score >= t``. With ``group_thresholds`` (and a ``sensitive`` mask) the
model decides facet *a* at ``t_a`` and facet *d* at ``t_d``; the report then shows the metrics and the
confusion matrix both at the single chosen threshold and at the group thresholds.

Charts are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, never through
pyplot's global figure registry, under matplotlib's default style (a user's ``matplotlibrc`` does not
change the output) with math text off (a ``$`` in a facet name is printed as is). Output is
deterministic: the same inputs give byte-identical files.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot; no windows, ever

import numpy as np  # noqa: E402
import matplotlib.patches  # noqa: E402
from matplotlib import style as mpl_style  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from .costs import RowCosts, cost_curve, realised_costs  # noqa: E402
from .metrics import confusion, evaluate, rates  # noqa: E402

MAX_CURVE_POINTS = 2000
"""Cost and ROC curves are drawn through at most this many of their exact points (evenly spaced in
rank, so each segment spans about n/2000 rows); the markers are always computed exactly."""

DPI = 100
HIST_BINS = 50
COST_AXIS_LABEL = "expected cost per prediction"

# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
CLASS_COLOURS = {0: "#0072B2", 1: "#D55E00"}
FACET_COLOURS = {"a": "#009E73", "d": "#CC79A7"}
CHOSEN_COLOUR = "#000000"
BAYES_COLOUR = "#E69F00"
MIN_COLOUR = "#56B4E9"

_RC = {
    "text.parse_math": False,
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.9,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


@dataclass
class ChannelView:
    name: str                 # "train" | "validation" | "test"
    label: np.ndarray         # 0/1
    score: np.ndarray         # probability of class 1
    row_costs: RowCosts       # costaware.costs.RowCosts
    threshold: float          # the chosen decision threshold
    bayes_threshold: float
    sensitive: np.ndarray | None = None   # bool mask, True = facet d (sensitive group); None = no facet
    facet_name: str = ""      # e.g. "foreign_worker"
    group_thresholds: dict | None = None  # {"a": t_a, "d": t_d} when the model uses group-specific thresholds
    bias: dict | None = None   # Clarify metric name -> value (may contain None), shown as a table


@dataclass
class _Prepared:
    """A channel's arrays, validated, plus what several charts and the HTML share."""

    view: ChannelView
    slug: str
    label: np.ndarray          # bool, True = class 1
    score: np.ndarray          # float64
    sensitive: np.ndarray | None
    group_thresholds: dict | None   # {"a": t_a, "d": t_d} as given (a missing key means `threshold`)
    group_rule: bool                # group thresholds and a sensitive mask: decisions per group
    metrics: dict
    notes: list


def write_report(output_dir: str, channels: list[ChannelView], title: str, summary: dict) -> list[str]:
    """Writes, per channel, roc-<channel>.png, cost-vs-threshold-<channel>.png (expected cost per
    prediction against threshold, with vertical lines at the chosen and the Bayes threshold, and at the
    group thresholds when present), scores-by-class-<channel>.png (score histograms per true class, with
    the threshold marked), scores-by-facet-<channel>.png (only when sensitive is given: score
    distributions for facet a and facet d with their thresholds), confusion-<channel>.png (a 2x2
    annotated confusion matrix at the chosen threshold); and report.html tying them together: title, a
    summary table (from `summary`: flat dict of label -> value, e.g. costs, thresholds, hyperparameters),
    per-channel metrics (AUC, expected cost per prediction, confusion counts), the bias table when given,
    and the images embedded by relative file name. Returns the list of files written."""
    os.makedirs(output_dir, exist_ok=True)
    prepared = []
    slugs = set()
    for view in channels:
        p = _prepare(view)
        if p.slug in slugs:
            raise ValueError(f"two channels map to the same file names: {view.name!r}")
        slugs.add(p.slug)
        prepared.append(p)

    written: list[str] = []
    images: dict[str, list[tuple[str, str]]] = {}  # slug -> [(file name, caption)]
    with mpl_style.context("default"), matplotlib.rc_context(_RC):
        for p in prepared:
            charts = [
                (f"roc-{p.slug}.png", "ROC curve", _roc_chart),
                (f"cost-vs-threshold-{p.slug}.png", "Expected cost per prediction against threshold",
                 _cost_chart),
                (f"scores-by-class-{p.slug}.png", "Score distribution by true class", _class_chart),
            ]
            if p.sensitive is not None:
                charts.append((f"scores-by-facet-{p.slug}.png", "Score distribution by facet group",
                               _facet_chart))
            charts.append((f"confusion-{p.slug}.png", "Confusion matrix", _confusion_chart))
            images[p.slug] = []
            for file_name, caption, draw in charts:
                fig = draw(p)
                path = os.path.join(output_dir, file_name)
                fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
                written.append(path)
                images[p.slug].append((file_name, caption))

    path = os.path.join(output_dir, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(_html(title, summary, prepared, images))
    written.append(path)
    return written


# ---------------------------------------------------------------------------------------------------
# Preparation and metrics


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._")
    return slug or "channel"


def _prepare(view: ChannelView) -> _Prepared:
    label = np.asarray(view.label).reshape(-1) == 1
    score = np.asarray(view.score, dtype=np.float64).reshape(-1)
    n = label.size
    rc = view.row_costs
    if score.size != n or any(np.asarray(getattr(rc, k)).size != n for k in ("fp", "fn", "tp", "tn")):
        raise ValueError(f"channel {view.name!r}: label, score and row costs differ in length")
    sensitive = None
    if view.sensitive is not None:
        sensitive = np.asarray(view.sensitive).reshape(-1).astype(bool)
        if sensitive.size != n:
            raise ValueError(f"channel {view.name!r}: the sensitive mask has {sensitive.size} rows, "
                             f"not {n}")
    group = None
    if view.group_thresholds:
        group = {k: float(view.group_thresholds.get(k, view.threshold)) for k in ("a", "d")}

    notes = []
    n1 = int(label.sum())
    if n == 0:
        notes.append("This channel has no rows: no metric is defined and the charts are placeholders.")
    elif n1 in (0, n):
        notes.append(f"Only class {int(n1 == n)} is present ({n} rows): the ROC curve and AUC are "
                     "undefined, so the ROC chart is a placeholder.")
    if sensitive is not None and n:
        for facet, mask in (("a", ~sensitive), ("d", sensitive)):
            if not mask.any():
                notes.append(f"Facet {facet} is empty on this channel: its score distribution is not "
                             "drawn and facet-comparing bias metrics are undefined.")
    if group is not None and sensitive is None:
        notes.append("Group thresholds are given without a sensitive mask: they are marked on the cost "
                     "chart, but decisions at them cannot be evaluated.")

    p = _Prepared(view=view, slug=_slug(view.name), label=label, score=score, sensitive=sensitive,
                  group_thresholds=group, group_rule=group is not None and sensitive is not None,
                  metrics={}, notes=notes)
    p.metrics = _channel_metrics(p)
    return p


def _decide(p: _Prepared, threshold) -> np.ndarray:
    return p.score >= threshold


def _group_threshold_per_row(p: _Prepared) -> np.ndarray:
    return np.where(p.sensitive, p.group_thresholds["d"], p.group_thresholds["a"])


def _cost_per_prediction(p: _Prepared, decision: np.ndarray) -> float:
    n = p.label.size
    if n == 0:
        return float("nan")
    total = realised_costs(p.label.astype(np.int8), decision.astype(np.int8), p.view.row_costs).sum()
    return float(total / n)


def _share_at_least(score: np.ndarray, t: float) -> float:
    return float((score >= t).mean()) if score.size else float("nan")


def _channel_metrics(p: _Prepared) -> dict:
    v = p.view
    n = p.label.size
    y = p.label.astype(np.int8)
    if n:
        m = evaluate(y, p.score, v.threshold, v.row_costs)
    else:
        counts = confusion(y, y)
        m = {"auc": float("nan"), "logloss": float("nan"), "threshold": float(v.threshold),
             "confusion_matrix": counts, **rates(counts), "expected_cost": float("nan"), "rows": 0}
    out = {
        "rows": n,
        "positives": int(p.label.sum()),
        "auc": m["auc"],
        "logloss": m["logloss"],
        "threshold": float(v.threshold),
        "bayes_threshold": float(v.bayes_threshold),
        "expected_cost": m["expected_cost"],
        "expected_cost_bayes": _cost_per_prediction(p, _decide(p, v.bayes_threshold)),
        "confusion": m["confusion_matrix"],
        "precision": m["precision"],
        "recall": m["recall"],
        "accuracy": m["accuracy"],
    }
    if p.group_rule:
        decision = p.score >= _group_threshold_per_row(p)
        counts = confusion(y, decision)
        out["group"] = {
            "thresholds": dict(p.group_thresholds),
            "expected_cost": _cost_per_prediction(p, decision),
            "confusion": counts,
            **rates(counts),
        }
    if p.sensitive is not None:
        out["facets"] = {}
        for facet, mask in (("a", ~p.sensitive), ("d", p.sensitive)):
            k = int(mask.sum())
            info = {"rows": k, "decided_1_chosen": _share_at_least(p.score[mask], v.threshold)}
            if p.group_rule:
                info["decided_1_group"] = _share_at_least(p.score[mask], p.group_thresholds[facet])
            out["facets"][facet] = info
    return out


# ---------------------------------------------------------------------------------------------------
# Charts


def _figure(width: float, height: float, left: float = 0.75, right: float = 0.2, bottom: float = 0.6,
            top: float = 0.4, wspace: float = 0.2) -> Figure:
    """A figure with fixed margins in inches (a layout engine would cost a quarter of the time)."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace)
    return fig


def _placeholder(fig: Figure, ax, message: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11,
            transform=ax.transAxes)


def _chart_title(p: _Prepared, what: str) -> str:
    return f"{what} \u2014 {p.view.name}"


def _fmt_t(t: float) -> str:
    return f"{t:.4g}"


def _subsample(n: int, keep=()) -> np.ndarray:
    """Indices ``0..n-1`` thinned to about :data:`MAX_CURVE_POINTS`, evenly spaced, always with the
    ends and ``keep``."""
    if n <= MAX_CURVE_POINTS:
        return np.arange(n)
    idx = np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(np.int64)
    return np.unique(np.concatenate([idx, np.asarray(keep, dtype=np.int64)]))


def _roc_chart(p: _Prepared) -> Figure:
    fig = _figure(5.2, 5.0)
    ax = fig.add_subplot()
    n, n1 = p.label.size, int(p.label.sum())
    if n == 0 or n1 in (0, n):
        what = "no rows" if n == 0 else f"only class {int(n1 == n)} present ({n:,} rows)"
        _placeholder(fig, ax, f"ROC curve undefined on {p.view.name}:\n{what}")
        ax.set_title(_chart_title(p, "ROC curve"))
        return fig
    fpr, tpr, _ = roc_curve(p.label, p.score, drop_intermediate=True)
    keep = _subsample(fpr.size)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="chance")
    ax.plot(fpr[keep], tpr[keep], color=CLASS_COLOURS[0], lw=1.8,
            label=f"model (AUC {p.metrics['auc']:.4f})")

    def point(decision, colour, marker, size, name):
        # hollow markers of different sizes: nearby operating points stay distinguishable
        c = confusion(p.label, decision)
        x = c["fp"] / (c["fp"] + c["tn"])
        y = c["tp"] / (c["tp"] + c["fn"])
        ax.plot([x], [y], marker=marker, ms=size, mfc="none", mec=colour, mew=2.0, ls="none",
                label=f"{name} (FPR {x:.3f}, TPR {y:.3f})", zorder=5)

    v = p.view
    point(_decide(p, v.threshold), CHOSEN_COLOUR, "o", 8, f"chosen t={_fmt_t(v.threshold)}")
    point(_decide(p, v.bayes_threshold), BAYES_COLOUR, "D", 11, f"Bayes t={_fmt_t(v.bayes_threshold)}")
    if p.group_rule:
        g = p.group_thresholds
        point(p.score >= _group_threshold_per_row(p), FACET_COLOURS["d"], "s", 14,
              f"group t_a={_fmt_t(g['a'])}, t_d={_fmt_t(g['d'])}")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (share of class 0 decided 1)")
    ax.set_ylabel("true positive rate (share of class 1 decided 1)")
    ax.set_title(_chart_title(p, "ROC curve"))
    ax.legend(loc="lower right", markerscale=0.7)
    return fig


@dataclass
class _CostCurve:
    """Expected cost per prediction of every rule ``decide 1 iff score >= t``, a step function of t."""

    thresholds: np.ndarray   # one per rule, ascending (from cost_curve)
    cost: np.ndarray         # cost per prediction of each rule
    edges: np.ndarray        # thinned step function for drawing: rule keep[i] holds on [edges[i], edges[i+1]]
    steps: np.ndarray

    def steps_between(self, lo: float, hi: float) -> np.ndarray:
        """The drawn steps that show between ``lo`` and ``hi``."""
        return self.steps[(self.edges[:-1] < hi) & (self.edges[1:] > lo)]


def _cost_steps(score, label, row_costs, lo: float, hi: float) -> _CostCurve:
    """:func:`costaware.costs.cost_curve` divided by the rows, as steps: with the distinct scores
    ``u_1 < ... < u_m`` ascending, rule ``j`` (decide 1 for the scores above ``u_j``) holds for
    ``u_j < t <= u_{j+1}`` (``u_0 = lo``, ``u_{m+1} = hi``). Thinned to about
    :data:`MAX_CURVE_POINTS` steps, always keeping the cheapest rule."""
    thresholds, totals = cost_curve(score, label.astype(np.int8), row_costs)
    t, c = thresholds[::-1], totals[::-1] / score.size
    distinct = np.unique(score)
    if distinct.size + 1 != t.size:  # cost_curve cuts between distinct scores; anything else is a bug
        raise AssertionError("cost_curve returned an unexpected number of rules")
    left = np.concatenate([[lo], distinct])
    keep = _subsample(t.size, keep=[int(np.argmin(c))])
    return _CostCurve(t, c, np.concatenate([left[keep], [max(hi, float(distinct[-1]))]]), c[keep])


def _cost_chart(p: _Prepared) -> Figure:
    """Left: the whole curve; right: a zoom on the thresholds, where chosen, Bayes and minimum differ
    by amounts too small to see at full scale. One legend below both, with the exact values."""
    v = p.view
    n = p.label.size
    if n == 0:
        fig = _figure(7.0, 4.6)
        ax = fig.add_subplot()
        ax.set_title(_chart_title(p, "Expected cost against decision threshold"))
        _placeholder(fig, ax, f"No rows on {v.name}: no cost curve")
        return fig

    lo, hi = min(0.0, float(p.score.min())), max(1.0, float(p.score.max()))
    curves = [(_cost_steps(p.score, p.label, v.row_costs, lo, hi),
               dict(color="0.15", lw=1.6, zorder=3, label="all rows"))]
    if p.group_rule:
        for facet, mask in (("a", ~p.sensitive), ("d", p.sensitive)):
            k = int(mask.sum())
            if k:
                curves.append((_cost_steps(p.score[mask], p.label[mask], v.row_costs.subset(mask), lo, hi),
                               dict(color=FACET_COLOURS[facet], lw=1.1, alpha=0.85, zorder=2,
                                    label=f"facet {facet} rows only (n={k:,})")))
    t, c = curves[0][0].thresholds, curves[0][0].cost
    best = int(np.argmin(c))
    t_best, c_best = float(t[best]), float(c[best])

    # (threshold, cost per prediction, colour, line style, point marker, legend label)
    markers = [
        (v.threshold, _cost_per_prediction(p, _decide(p, v.threshold)), CHOSEN_COLOUR, "-", "o",
         f"chosen t={_fmt_t(v.threshold)}: {{cost:.4g}}"),
        (v.bayes_threshold, _cost_per_prediction(p, _decide(p, v.bayes_threshold)), BAYES_COLOUR, "--",
         "D", f"Bayes t={_fmt_t(v.bayes_threshold)}: {{cost:.4g}}"),
    ]
    group_cost = None
    if p.group_thresholds is not None:
        for facet in ("a", "d"):
            tf = p.group_thresholds[facet]
            cost = None
            if p.group_rule:
                # the cost within the facet at its own threshold, a point on that facet's curve
                mask = p.sensitive if facet == "d" else ~p.sensitive
                k = int(mask.sum())
                if k:
                    cost = float(realised_costs(p.label[mask].astype(np.int8),
                                                (p.score[mask] >= tf).astype(np.int8),
                                                v.row_costs.subset(mask)).sum() / k)
            markers.append((tf, cost, FACET_COLOURS[facet], ":", "s",
                            f"facet {facet} threshold t_{facet}={_fmt_t(tf)}"
                            + (": {cost:.4g} within the facet" if cost is not None else "")))
        if p.group_rule:
            group_cost = _cost_per_prediction(p, p.score >= _group_threshold_per_row(p))

    fig = _figure(10.5, 5.5, left=0.75, right=0.2, bottom=1.55, top=0.7, wspace=0.25)
    full, zoom = fig.subplots(1, 2)
    x_marks = [m[0] for m in markers] + [t_best]
    span = max(max(x_marks) - min(x_marks), 0.02 * (hi - lo))
    z_lo, z_hi = max(lo, min(x_marks) - 0.6 * span), min(hi, max(x_marks) + 0.6 * span)
    in_zoom = [curve.steps_between(z_lo, z_hi) for curve, _ in curves]
    in_zoom += [np.array([m[1]]) for m in markers if m[1] is not None]
    if group_cost is not None:
        in_zoom.append(np.array([group_cost]))
    y = np.concatenate(in_zoom)
    y_lo, y_hi = float(y.min()), float(y.max())
    y_pad = max(0.08 * (y_hi - y_lo), 1e-9 + 1e-3 * abs(y_hi))

    for ax in (full, zoom):
        for curve, style in curves:
            # a steps-post line, not ax.stairs: a StepPatch with 2,000 steps costs 0.3 s in autoscaling
            ax.plot(curve.edges, np.append(curve.steps, curve.steps[-1]), drawstyle="steps-post", **style)
        ax.plot([t_best], [c_best], marker="v", ms=8, color=MIN_COLOUR, mec="0.2", ls="none", zorder=4,
                label=f"lowest on this channel: {c_best:.4g} at t={_fmt_t(t_best)}")
        for threshold, cost, colour, ls, mk, label in markers:
            ax.axvline(threshold, color=colour, ls=ls, lw=1.6 if ls == ":" else 1.3, zorder=1,
                       label=None if cost is not None else label)
            if cost is not None:
                ax.plot([threshold], [cost], marker=mk, ms=7, color=colour, mec="white", mew=1.0,
                        ls=ls, zorder=5, label=label.format(cost=cost))
        if group_cost is not None:
            ax.axhline(group_cost, color=FACET_COLOURS["d"], ls=(0, (1, 3)), lw=1.2, zorder=1,
                       label=f"group thresholds, all rows: {group_cost:.4g}")
        ax.set_xlabel("decision threshold t (decide 1 iff score \u2265 t)")
    full.set_xlim(lo, hi)
    full.set_ylabel(COST_AXIS_LABEL)
    zoom.set_ylabel(COST_AXIS_LABEL)
    full.set_title("all thresholds")
    zoom.set_xlim(z_lo, z_hi)
    zoom.set_ylim(y_lo - y_pad, y_hi + y_pad)
    zoom.set_title("zoom on the marked thresholds")
    full.add_patch(matplotlib.patches.Rectangle((z_lo, y_lo - y_pad), z_hi - z_lo, y_hi - y_lo + 2 * y_pad,
                                                fill=False, ec="0.5", ls="--", lw=0.8, zorder=6))
    fig.suptitle(f"Expected cost per prediction against decision threshold \u2014 {v.name}",
                 fontsize=11, y=0.985)
    handles, labels = full.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=3, bbox_to_anchor=(0.5, 0.02), frameon=False)
    return fig


def _hist_edges(*scores: np.ndarray) -> np.ndarray:
    lo, hi = 0.0, 1.0
    for s in scores:
        if s.size:
            lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
    return np.linspace(lo, hi, HIST_BINS + 1)


def _share_hist(ax, values: np.ndarray, edges: np.ndarray, colour: str, label: str) -> None:
    counts, _ = np.histogram(values, bins=edges)
    share = counts / max(values.size, 1)
    ax.stairs(share, edges, fill=True, color=colour, alpha=0.3)
    ax.stairs(share, edges, color=colour, lw=1.5, label=label)


def _headroom(ax, share: float = 0.62) -> None:
    """y from 0, with the bars in the lower ``share`` of the axes: the legend goes above them."""
    top = max((np.max(patch.get_data().values, initial=0.0) for patch in ax.patches), default=0.0)
    ax.set_ylim(0, top / share if top > 0 else 1.0)


def _class_chart(p: _Prepared) -> Figure:
    fig = _figure(7.0, 4.4)
    ax = fig.add_subplot()
    v = p.view
    ax.set_title(_chart_title(p, "Score distribution by true class"))
    if p.label.size == 0:
        _placeholder(fig, ax, f"No rows on {v.name}")
        return fig
    edges = _hist_edges(p.score)
    for cls in (0, 1):
        mask = p.label if cls else ~p.label
        k = int(mask.sum())
        if k:
            _share_hist(ax, p.score[mask], edges, CLASS_COLOURS[cls], f"class {cls} (n={k:,})")
        else:
            ax.plot([], [], color=CLASS_COLOURS[cls], label=f"class {cls}: no rows")
    ax.axvline(v.threshold, color=CHOSEN_COLOUR, lw=1.4, label=f"chosen t={_fmt_t(v.threshold)}")
    ax.axvline(v.bayes_threshold, color=BAYES_COLOUR, ls="--", lw=1.4,
               label=f"Bayes t={_fmt_t(v.bayes_threshold)}")
    _finish_score_axes(ax, edges, "class's")
    return fig


def _facet_chart(p: _Prepared) -> Figure:
    fig = _figure(7.0, 4.4)
    ax = fig.add_subplot()
    v = p.view
    facet = v.facet_name or "facet"
    ax.set_title(_chart_title(p, f"Score distribution by facet ({facet})"))
    if p.label.size == 0:
        _placeholder(fig, ax, f"No rows on {v.name}")
        return fig
    edges = _hist_edges(p.score)
    for name, mask in (("a", ~p.sensitive), ("d", p.sensitive)):
        info = p.metrics["facets"][name]
        who = "sensitive" if name == "d" else "others"
        if info["rows"]:
            decided = f"{info['decided_1_chosen']:.1%} decided 1 at chosen t"
            if p.group_rule:
                decided += f", {info['decided_1_group']:.1%} at t_{name}"
            _share_hist(ax, p.score[mask], edges, FACET_COLOURS[name],
                        f"facet {name} ({who}, n={info['rows']:,}): {decided}")
        else:
            ax.plot([], [], color=FACET_COLOURS[name], label=f"facet {name} ({who}): no rows")
    if p.group_rule:
        for name in ("a", "d"):
            t = p.group_thresholds[name]
            ax.axvline(t, color=FACET_COLOURS[name], ls=":", lw=1.8,
                       label=f"facet {name} threshold t_{name}={_fmt_t(t)}")
    ax.axvline(v.threshold, color=CHOSEN_COLOUR, lw=1.4, label=f"chosen t={_fmt_t(v.threshold)}")
    _finish_score_axes(ax, edges, "group's")
    return fig


def _finish_score_axes(ax, edges: np.ndarray, whose: str) -> None:
    """Limits, labels and legend of a score-histogram chart (shares of ``whose`` rows per bin)."""
    ax.set_xlim(edges[0], edges[-1])
    _headroom(ax)
    ax.set_xlabel("score (predicted probability of class 1)")
    ax.set_ylabel(f"share of the {whose} rows per bin ({HIST_BINS} bins)")
    ax.legend(loc="upper right")


def _confusion_panel(ax, p: _Prepared, decision: np.ndarray, title: str) -> None:
    y = p.label
    n = y.size
    rc = p.view.row_costs
    # rows: actual 0, actual 1; columns: decided 0, decided 1 (scikit-learn's layout)
    cells = [[("TN", ~y & ~decision, rc.tn), ("FP", ~y & decision, rc.fp)],
             [("FN", y & ~decision, rc.fn), ("TP", y & decision, rc.tp)]]
    counts = np.array([[int(m.sum()) for _, m, _ in row] for row in cells])
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    for i, row in enumerate(cells):
        for j, (name, mask, cost) in enumerate(row):
            k = counts[i, j]
            share = k / n if n else float("nan")
            per = float(np.asarray(cost)[mask].sum() / n) if n else float("nan")
            dark = counts.max() and k > 0.6 * counts.max()
            ax.text(j, i, f"{name}\n{k:,}\n{share:.1%} of rows\ncost {per:.4g}\nper prediction",
                    ha="center", va="center", fontsize=9.5, color="white" if dark else "black")
    ax.set_xticks([0, 1], ["decided 0", "decided 1"])
    ax.set_yticks([0, 1], ["class 0", "class 1"])
    ax.set_xlabel("decision")
    ax.set_ylabel("true class")
    ax.grid(False)
    ax.set_title(title)


def _confusion_chart(p: _Prepared) -> Figure:
    v = p.view
    panels = [(_decide(p, v.threshold), f"at chosen t={_fmt_t(v.threshold)}")]
    if p.group_rule:
        g = p.group_thresholds
        panels.append((p.score >= _group_threshold_per_row(p),
                       f"at group thresholds t_a={_fmt_t(g['a'])}, t_d={_fmt_t(g['d'])}"))
    n = p.label.size
    if n == 0:
        fig = _figure(5.0, 4.6)
        ax = fig.add_subplot()
        ax.set_title(f"Confusion matrix \u2014 {v.name}")
        _placeholder(fig, ax, f"No rows on {v.name}")
        return fig
    fig = _figure(4.6 * len(panels) + 0.4, 4.6, left=0.95, top=0.75, bottom=0.65, wspace=0.3)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (decision, title) in zip(axes, panels):
        _confusion_panel(ax, p, decision, title)
    fig.suptitle(f"Confusion matrix \u2014 {v.name} ({n:,} rows)", fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------------
# HTML


_CSS = """
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


def _e(x) -> str:
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


def _num(v, digits: int = 4) -> str:
    """A metric in the per-channel table: fixed ``digits`` decimals; NaN as ``n/a``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{float(v):.{digits}f}"


def _cost(v) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    return f"{v:.6g}"


def _table(header: list[str], rows: list[list[tuple[str, bool]]]) -> str:
    """``rows`` of (already escaped text, numeric?) cells."""
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>" for text, numeric in row)
            + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _metrics_table(prepared: list[_Prepared]) -> str:
    any_group = any("group" in p.metrics for p in prepared)
    any_facet = any("facets" in p.metrics for p in prepared)
    spec = [
        ("rows", lambda m: _num(m["rows"])),
        ("class 1 rows", lambda m: _num(m["positives"])),
        ("AUC", lambda m: _num(m["auc"])),
        ("log loss", lambda m: _num(m["logloss"])),
        ("chosen threshold", lambda m: _cost(m["threshold"])),
        ("Bayes threshold", lambda m: _cost(m["bayes_threshold"])),
        ("expected cost per prediction (chosen threshold)", lambda m: _cost(m["expected_cost"])),
        ("expected cost per prediction (Bayes threshold)", lambda m: _cost(m["expected_cost_bayes"])),
    ]
    for k in ("tp", "fp", "fn", "tn"):
        spec.append((f"{k.upper()} (chosen threshold)", lambda m, k=k: _num(m["confusion"][k])))
    spec += [
        ("precision (chosen threshold)", lambda m: _num(m["precision"])),
        ("recall (chosen threshold)", lambda m: _num(m["recall"])),
        ("accuracy (chosen threshold)", lambda m: _num(m["accuracy"])),
    ]
    if any_group:
        def g(f):
            return lambda m: f(m["group"]) if "group" in m else "n/a"
        spec += [
            ("group threshold t_a", g(lambda gm: _cost(gm["thresholds"]["a"]))),
            ("group threshold t_d", g(lambda gm: _cost(gm["thresholds"]["d"]))),
            ("expected cost per prediction (group thresholds)", g(lambda gm: _cost(gm["expected_cost"]))),
        ]
        for k in ("tp", "fp", "fn", "tn"):
            spec.append((f"{k.upper()} (group thresholds)", g(lambda gm, k=k: _num(gm["confusion"][k]))))
        spec += [
            ("precision (group thresholds)", g(lambda gm: _num(gm["precision"]))),
            ("recall (group thresholds)", g(lambda gm: _num(gm["recall"]))),
        ]
    if any_facet:
        def f(facet, key, fmt):
            def cell(m):
                info = m.get("facets", {}).get(facet, {})
                return fmt(info[key]) if key in info else "n/a"
            return cell
        for facet in ("a", "d"):
            spec += [
                (f"facet {facet} rows", f(facet, "rows", _num)),
                (f"facet {facet} share decided 1 (chosen threshold)", f(facet, "decided_1_chosen", _num)),
            ]
            if any_group:
                spec.append((f"facet {facet} share decided 1 (group thresholds)",
                             f(facet, "decided_1_group", _num)))
    header = ["metric"] + [_e(p.view.name) for p in prepared]
    rows = [[(_e(name), False)] + [(_e(fn(p.metrics)), True) for p in prepared] for name, fn in spec]
    return _table(header, rows)


def _bias_table(prepared: list[_Prepared]) -> str:
    with_bias = [p for p in prepared if p.view.bias]
    if not with_bias:
        return ""
    names: list[str] = []
    for p in with_bias:
        for k in p.view.bias:
            if k not in names:
                names.append(k)
    facets = sorted({p.view.facet_name for p in with_bias if p.view.facet_name})
    intro = ("<p>SageMaker Clarify bias metrics, facet "
             + (", ".join(f"<code>{_e(x)}</code>" for x in facets) if facets else "(unnamed)")
             + ": facet <i>d</i> is the sensitive group, facet <i>a</i> everyone else. "
             "<i>n/a</i>: the metric is undefined on that channel; \u2014: not reported for it.</p>")
    header = ["metric"] + [_e(p.view.name) for p in with_bias]
    rows = [[(_e(name), False)] + [(_e(format_value(p.view.bias[name]) if name in p.view.bias else "\u2014"),
                                    True) for p in with_bias]
            for name in names]
    return intro + "\n" + _table(header, rows)


def _html(title: str, summary: dict, prepared: list[_Prepared], images: dict) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
    ]
    if summary:
        parts.append("<h2>Summary</h2>")
        parts.append(_table(["", "value"], [[(_e(k), False), (_e(format_value(v)), False)]
                                            for k, v in summary.items()]))
    parts.append("<h2>Metrics per channel</h2>")
    parts.append("<p>Decision rule: decide 1 iff score \u2265 threshold. Expected cost per prediction "
                 "is the realised cost of the decisions on the channel divided by its rows.</p>")
    parts.append(_metrics_table(prepared))
    bias = _bias_table(prepared)
    if bias:
        parts.append("<h2>Bias metrics</h2>")
        parts.append(bias)
    for p in prepared:
        parts.append(f'<h2 id="channel-{_e(p.slug)}">Channel: {_e(p.view.name)}</h2>')
        if p.view.sensitive is not None and p.view.facet_name:
            parts.append(f"<p>Facet: <code>{_e(p.view.facet_name)}</code></p>")
        for note in p.notes:
            parts.append(f'<p class="note">{_e(note)}</p>')
        parts.append('<div class="charts">')
        for file_name, caption in images[p.slug]:
            parts.append(f'<figure><img src="{_e(file_name)}" alt="{_e(caption)} \u2014 {_e(p.view.name)}">'
                         f"<figcaption>{_e(caption)}</figcaption></figure>")
        parts.append("</div>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
