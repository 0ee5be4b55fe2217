"""The one list of metrics a channel is scored with: each metric's name, direction and report label.

Everything else is derived from it: the metric log lines and the SageMaker metric definitions
(:mod:`costaware.metric_log`), the tuner's objectives (:mod:`costaware.tuning.config`), the choices
of ``early_stopping_metric`` (:mod:`costaware.hyperparameters`) and the report's metrics table
(:mod:`costaware.report`). A new metric is one :class:`Metric` here: with ``compute`` it is
computed from a channel's other metrics (the confusion counts, the costs, ...), so no other module
changes; without, :func:`costaware.metrics.channel_metrics` or the bias metrics compute it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Metric:
    name: str  # as in the log lines: validation:<name>=value
    direction: str  # "Maximize" | "Minimize": for the tuner and early stopping
    label: str  # the report's row
    kind: str = "number"  # the report's format: "number", or "cost" (money per row)
    early_stopping: bool = False  # a choice of early_stopping_metric
    needs_facet: bool = False  # only with facet_column (the fairness metrics)
    compute: Callable[[dict], float] | None = None  # from the channel's other metrics


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    if metric.direction not in ("Maximize", "Minimize"):
        raise ValueError(f"metric {metric.name!r}: direction {metric.direction!r}")
    if metric.name in _REGISTRY:
        raise ValueError(f"metric {metric.name!r} is registered already")
    _REGISTRY[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    del _REGISTRY[name]


def all_metrics() -> tuple[Metric, ...]:
    """In the order of the log lines, the metric definitions and the report."""
    return tuple(_REGISTRY.values())


def get(name: str) -> Metric:
    return _REGISTRY[name]


def early_stopping_names() -> tuple[str, ...]:
    return tuple(m.name for m in _REGISTRY.values() if m.early_stopping)


def complete(metrics: dict) -> dict:
    """``metrics`` with every registered ``compute`` metric added (a new dict)."""
    out = dict(metrics)
    for metric in _REGISTRY.values():
        if metric.compute is not None:
            out[metric.name] = metric.compute(out)
    return out


for _metric in (
    Metric("auc", "Maximize", "AUC", early_stopping=True),
    Metric("logloss", "Minimize", "log loss", early_stopping=True),
    Metric("brier", "Minimize", "Brier score", early_stopping=True),
    Metric("ece", "Minimize", "expected calibration error"),
    Metric("expected_cost", "Minimize", "cost per row, served rule", kind="cost",
           early_stopping=True),  # at the rule the model serves (the Bayes rule while training)
    Metric("savings", "Maximize", "savings, served rule", early_stopping=True),
    Metric("precision", "Maximize", "precision (served)"),
    Metric("recall", "Maximize", "recall (served)"),
    Metric("f1", "Maximize", "F1 (served)"),
    Metric("accuracy", "Maximize", "accuracy (served)"),
    # with a facet: distance from parity of DPPL and DI, and the combined objective
    Metric("dppl", "Minimize", "|DPPL| (served)", needs_facet=True),
    Metric("di", "Minimize", "|1 - DI| (served)", needs_facet=True),
    Metric("combined_objective", "Maximize", "combined objective", early_stopping=True,
           needs_facet=True),
):
    register(_metric)
