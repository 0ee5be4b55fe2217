"""report.html for a model with more than two classes, drawn from the training result alone.

Per channel: the K x K confusion matrix of the served decisions (count, share of rows and cost per
row of each cell) and the one-vs-rest reliability of each class's probability (bins of 0.1; from
``reliability_per_class`` in the channel's metrics); a metrics table over the channels and, with a
facet, Clarify's metrics on the favourable classes and each class's one-vs-rest DPPL and DI.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot

import numpy as np  # noqa: E402
from matplotlib import style as mpl_style  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..metrics import registry as metric_registry  # noqa: E402
from .html import (CSS, DPI, RC, escape, file_slug, format_value, html_table,  # noqa: E402
                     new_figure, num_text)

COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
           "#000000")


def write_report(output_dir: str, result, title: str) -> list[str]:
    """Charts and report.html for a :class:`costaware.training.pipeline.TrainingResult`;
    returns the files written."""
    os.makedirs(output_dir, exist_ok=True)
    names = result.policy.class_names
    written, images = [], {}
    with mpl_style.context("default"), matplotlib.rc_context(RC):
        for ch in result.channels.values():
            slug = file_slug(ch.name)
            images[ch.name] = []
            for file_name, caption, draw in (
                    (f"confusion-{slug}.png", "Confusion matrix of the served decisions",
                     _confusion_chart),
                    (f"reliability-{slug}.png", "Reliability of each class's probability "
                     "(one-vs-rest)", _reliability_chart)):
                fig = draw(ch, names)
                path = os.path.join(output_dir, file_name)
                fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
                written.append(path)
                images[ch.name].append((file_name, caption))
    path = os.path.join(output_dir, "report.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(_html(title, result, images))
    written.append(path)
    return written


def _confusion_chart(ch, names) -> Figure:
    k = len(names)
    size = 1.2 + 1.3 * k
    fig = new_figure(size + 1.2, size, left=1.5, top=0.7, bottom=1.0)
    ax = fig.add_subplot()
    m = ch.metrics
    counts = np.array(m["confusion"])
    costs = np.array(m["cell_costs"])
    n = max(int(m["rows"]), 1)
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    for i in range(k):
        for j in range(k):
            dark = counts.max() and counts[i, j] > 0.6 * counts.max()
            ax.text(j, i, f"{counts[i, j]:,}\n{counts[i, j] / n:.1%}\ncost {costs[i, j] / n:.3g}",
                    ha="center", va="center", fontsize=8.5, color="white" if dark else "black")
    ax.set_xticks(range(k), [f"decided {c}" for c in names], rotation=30, ha="right")
    ax.set_yticks(range(k), list(names))
    ax.set_ylabel("true class")
    ax.grid(False)
    ax.set_title(f"Confusion \u2014 {ch.name}: {m['rows']:,} rows, {m['expected_cost']:.4g} per "
                 f"row, savings {num_text(m['savings'])}", fontsize=10)
    return fig


def _reliability_chart(ch, names) -> Figure:
    fig = new_figure(5.8, 5.4)
    ax = fig.add_subplot()
    ax.set_title(f"Reliability \u2014 {ch.name}")
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="perfect calibration")
    for c, name in enumerate(names):
        rows, sum_p, hits = np.asarray(ch.metrics["reliability_per_class"][c], float).T
        kept = rows > 0
        colour = COLOURS[c % len(COLOURS)]
        ax.plot(sum_p[kept] / rows[kept], hits[kept] / rows[kept], marker="o", color=colour,
                lw=1.2, label=f"{name}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean probability of the class in the bin")
    ax.set_ylabel("observed share of the class in the bin")
    m = ch.metrics
    ax.plot([], [], ls="none", label=f"log loss {m['logloss']:.4f}, Brier {m['brier']:.4f}")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _html(title: str, result, images: dict) -> str:
    policy = result.policy
    names = policy.class_names
    summary = {
        "classes": ", ".join(names),
        "cost matrix C[true][decided]": [list(row) for row in policy.matrix],
        "held-out rows": result.held_out,
        "class loss weights": dict(zip(names, result.weighting.weights)),
        "calibrator": f"softmax(z / {policy.calibrator.temperature:.4g} + b), b = "
                      + ", ".join(f"{b:+.4g}" for b in policy.calibrator.bias),
        "decision rule": ("argmin(P @ C)" if policy.rule is None else
                          f"argmin(P @ C) with the favourable classes' costs lowered by "
                          f"{policy.rule.delta_a:+.4g} (facet a), {policy.rule.delta_d:+.4g} "
                          f"(facet d): |DPPL| <= {policy.rule.max_abs_dppl:g} on held-out rows"
                          + ("" if policy.rule.held_out_dppl is None else
                             f" (DPPL {policy.rule.held_out_dppl:+.4f} there)")),
        "rounds kept": result.best_iteration + 1,
    }
    channels = list(result.channels.values())
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<h1>{escape(title)}</h1>", "<h2>Summary</h2>",
             html_table(["", "value"], [[(escape(k), False), (escape(format_value(v)), False)]
                                    for k, v in summary.items()]),
             "<h2>Metrics per channel</h2>",
             "<p>Each row is decided by the served rule on its calibrated probabilities. Cost per "
             "row: the realised cost of the decisions over the rows; savings = 1 - cost / the "
             "cost of deciding the single cheapest class for every row; AUC: the mean of each "
             "class's one-vs-rest AUC. A channel whose rows fitted the calibrator says so: its "
             "figures are not a held-out estimate.</p>"]
    # the metrics K classes log, labelled as metric_registry defines them
    shown = [(m.name, m.label) for m in metric_registry.logged_for(len(names))
             if any(m.name in ch.metrics for ch in channels)]
    header = ["metric"] + [escape(ch.name) for ch in channels]
    rows = [[(escape("scored by"), False)] + [(escape(ch.scored_by), False) for ch in channels],
            [(escape("fitted on these rows"), False)]
            + [(escape(", ".join(ch.fitted_on) or "nothing"), False) for ch in channels]]
    rows += [[(escape(label), False)] + [(escape(num_text(ch.metrics.get(key))), True) for ch in channels]
             for key, label in shown]
    rows += [[(escape(f"recall of {name}"), False)]
             + [(escape(num_text(ch.metrics["recall_per_class"][c])), True) for ch in channels]
             for c, name in enumerate(names)]
    parts.append(html_table(header, rows))
    biased = [ch for ch in channels if ch.bias]
    if biased:
        parts.append("<h2>Bias metrics</h2>")
        favourable = ", ".join(map(str, biased[0].bias["favourable"]))
        parts.append(f"<p>Clarify's metrics with observed and decided classes collapsed to "
                     f"favourable ({escape(favourable)}) or not; then each class's one-vs-rest DPPL "
                     "and DI of the decisions.</p>")
        parts += [f'<p class="note">{escape(ch.name)}: {escape(ch.bias["undefined"])}.</p>'
                  for ch in biased if ch.bias.get("undefined")]
        post = list(biased[0].bias["post_training"])
        rows = [[(escape(name), False)] + [(escape(format_value(ch.bias["post_training"].get(name))), True)
                                       for ch in biased] for name in post]
        rows += [[(escape(f"{which} of deciding {name}"), False)]
                 + [(escape(format_value(ch.bias["per_class"][name][which])), True) for ch in biased]
                 for name in names for which in ("DPPL", "DI")]
        parts.append(html_table(["metric"] + [escape(ch.name) for ch in biased], rows))
    for ch in channels:
        parts.append(f"<h2>Channel: {escape(ch.name)}</h2>")
        parts.append('<div class="charts">')
        for file_name, caption in images[ch.name]:
            parts.append(f'<figure><img src="{escape(file_name)}" alt="{escape(caption)}">'
                         f"<figcaption>{escape(caption)}</figcaption></figure>")
        parts.append("</div>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
