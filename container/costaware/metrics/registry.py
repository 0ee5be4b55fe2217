"""The one list of metrics a channel is scored with: each metric's name, direction, report label,
definition and the numbers of classes ``K`` it is logged for.

A name has one meaning: its ``definition`` holds for every ``K`` it is logged for, and a metric
whose definition is one class's (``recall``: of class 1) or one probability's (``ece``: of
``p(1)``) is logged for ``K = 2`` only; what ``K >= 3`` measures instead has its own name
(``balanced_accuracy``, ``top_label_ece``). A metric logged for every ``K`` equals, at ``K = 2``,
its binary definition (``tests/test_metric_invariants.py`` checks this for every registered
metric, with its definition or scikit-learn's value, row-order independence and, for the binary
summaries, the sum over hosts).

Everything else is derived from it: the metric log lines and the SageMaker metric definitions
(:mod:`costaware.metrics.log_lines`), the tuner's objectives (:mod:`costaware.tuning.config`), the choices
of ``early_stopping_metric`` (:mod:`costaware.config.hyperparameters`), the report's metrics table
(:mod:`costaware.report.html`) and the table of ``docs/metrics.md``
(:func:`markdown_table`). A new metric is one :class:`Metric` here: with ``compute`` it is
computed from a binary channel's other metrics (the confusion counts, the costs, ...), so no other
module changes; without, :func:`costaware.metrics.classification.channel_metrics`,
:func:`costaware.metrics.multiclass_metrics.channel_metrics` or the bias metrics compute it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# the numbers of classes a metric is logged for (the text is what docs and messages say)
EVERY_K, BINARY, MULTICLASS = "K >= 2", "K = 2", "K >= 3"


@dataclass(frozen=True)
class Metric:
    name: str  # as in the log lines: validation:<name>=value
    direction: str  # "Maximize" | "Minimize": for the tuner and early stopping
    label: str  # the report's row
    definition: str  # what it is, true for every K it is logged for
    classes: str = EVERY_K  # EVERY_K, BINARY or MULTICLASS: the K it is logged for
    kind: str = "number"  # the report's format: "number", or "cost" (money per row)
    early_stopping: bool = False  # a choice of early_stopping_metric
    needs_facet: bool = False  # only with facet_column (the fairness metrics)
    compute: Callable[[dict], float] | None = None  # from a binary channel's other metrics

    def logged_for(self, k: int) -> bool:
        """Whether a job with ``k`` classes logs it."""
        return {EVERY_K: k >= 2, BINARY: k == 2, MULTICLASS: k >= 3}[self.classes]


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    if metric.direction not in ("Maximize", "Minimize"):
        raise ValueError(f"metric {metric.name!r}: direction {metric.direction!r}")
    if metric.name in _REGISTRY:
        raise ValueError(f"metric {metric.name!r} is registered already")
    if metric.classes not in (EVERY_K, BINARY, MULTICLASS) or not metric.definition:
        raise ValueError(f"metric {metric.name!r}: a definition and the classes it is logged for "
                         f"({EVERY_K!r}, {BINARY!r} or {MULTICLASS!r})")
    if metric.compute is not None and metric.classes != BINARY:
        raise ValueError(f"metric {metric.name!r}: compute reads a binary channel's metrics "
                         f"(classes={BINARY!r})")
    _REGISTRY[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    del _REGISTRY[name]


def all_metrics() -> tuple[Metric, ...]:
    """In the order of the log lines, the metric definitions and the report."""
    return tuple(_REGISTRY.values())


def logged_for(k: int) -> tuple[Metric, ...]:
    """The metrics a job with ``k`` classes logs (those that ``needs_facet`` only with a facet)."""
    return tuple(m for m in _REGISTRY.values() if m.logged_for(k))


def get(name: str) -> Metric:
    return _REGISTRY[name]


def early_stopping_names(k: int | None = None) -> tuple[str, ...]:
    """The choices of ``early_stopping_metric`` for ``k`` classes (None: for any K, the schema's
    list; a job refuses a choice its K does not log, naming its own)."""
    return tuple(m.name for m in _REGISTRY.values()
                 if m.early_stopping and (k is None or m.logged_for(k)))


def complete(metrics: dict) -> dict:
    """A binary channel's ``metrics`` with every registered ``compute`` metric added (a new
    dict)."""
    out = dict(metrics)
    for metric in _REGISTRY.values():
        if metric.compute is not None:
            out[metric.name] = metric.compute(out)
    return out


def markdown_table() -> str:
    """The registry as the Markdown table of ``docs/metrics.md``."""
    lines = ["| name | logged for | direction | early stopping | definition |",
             "|---|---|---|---|---|"]
    for m in _REGISTRY.values():
        facet = " (with a facet)" if m.needs_facet else ""
        definition = m.definition.replace("|", r"\|")  # a bare bar would end the cell
        lines.append(f"| `{m.name}` | {m.classes}{facet} | {m.direction} | "
                     f"{'yes' if m.early_stopping else ''} | {definition} |")
    return "\n".join(lines) + "\n"


for _metric in (
    Metric("auc", "Maximize", "AUC",
           "macro one-vs-rest AUC: the mean over the classes k of the AUC of p_k separating "
           "class k from the others (Mann-Whitney, ties counted half; a class absent from the rows "
           "or alone in them is left out); at K = 2 the AUC of p(1). Exact up to 1,000,000 rows "
           "over every host; beyond, K = 2 from bins of logit p(1) (`metrics/classification.py`)",
           early_stopping=True),
    Metric("logloss", "Minimize", "log loss",
           "-mean_i log p_i(y_i), the probability of the true class clipped to "
           "[1e-15, 1 - 1e-15]", early_stopping=True),
    Metric("brier", "Minimize", "Brier score",
           "(1/2) mean_i sum_k (p_i(k) - [y_i = k])^2, in [0, 1]; at K = 2 mean_i (p_i(1) - y_i)^2",
           early_stopping=True),
    Metric("ece", "Minimize", "expected calibration error of p(1)",
           "the calibration error of p(1): sum_b |sum_{i in b} (p_i(1) - y_i)| / n over 10 "
           "equal-width bins b of p(1)", classes=BINARY),
    Metric("top_label_ece", "Minimize", "expected calibration error, top label",
           "the calibration error of the most probable class: sum_b |sum_{i in b} (max_k p_i(k) - "
           "[argmax_k p_i(k) = y_i])| / n over 10 equal-width bins b of max_k p_i(k)",
           classes=MULTICLASS),
    Metric("expected_cost", "Minimize", "cost per row, served rule",
           "the realised cost per row of the decisions served, sum_i C_i[y_i][d_i] / n (each row's "
           "own costs where cost columns give them; the Bayes rule while training)", kind="cost",
           early_stopping=True),
    Metric("savings", "Maximize", "savings, served rule",
           "1 - cost / min_j (cost of deciding j for every row), on the same rows (0: no better "
           "than one decision for everyone, which needs no model)", early_stopping=True),
    Metric("precision", "Maximize", "precision (served)",
           "tp / (tp + fp) of the decisions served, class 1 positive (0 if undefined)",
           classes=BINARY),
    Metric("recall", "Maximize", "recall (served)",
           "tp / (tp + fn): the recall of class 1 (0 if undefined)", classes=BINARY),
    Metric("f1", "Maximize", "F1 (served)", "2 tp / (2 tp + fp + fn) (0 if undefined)",
           classes=BINARY),
    Metric("accuracy", "Maximize", "accuracy (served)",
           "the share of rows decided their true class"),
    Metric("balanced_accuracy", "Maximize", "balanced accuracy (served)",
           "the mean over the classes present of each class's recall (its rows decided it / its "
           "rows)", classes=MULTICLASS),
    # with a facet: distance from parity of DPPL and DI, and the combined objective
    Metric("dppl", "Minimize", "|DPPL| (served)",
           "|DPPL| = |P(decided favourable | facet a) - P(decided favourable | facet d)|; "
           "favourable: class 1 at K = 2, the classes of label_values_or_threshold at K >= 3",
           needs_facet=True),
    Metric("di", "Minimize", "|1 - DI| (served)",
           "|1 - DI|, DI = P(decided favourable | facet d) / P(decided favourable | facet a)",
           needs_facet=True),
    Metric("combined_objective", "Maximize", "combined objective",
           "(objective_auc_weight auc + objective_fairness_weight (1 - dppl)) / (the sum of the "
           "two weights)", early_stopping=True, needs_facet=True),
):
    register(_metric)
