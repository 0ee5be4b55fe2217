"""One owner for metrics: a metric registered in costaware.metric_registry, and nowhere else,
appears in the log lines, the metric definitions, the early-stopping choices, the tuner's
objectives and the report's metrics table."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from sklearn.metrics import matthews_corrcoef

from costaware import hyperparameters, metric_log, metric_registry, report
from costaware.cluster import SOLO
from costaware.costs import CostMatrix, RowCosts
from costaware.data import Dataset
from costaware.decision import DecisionRule
from costaware.errors import HyperparameterError
from costaware.metrics import channel_metrics, summarize
from costaware.channels import Channel
from costaware.evaluation import evaluate
from costaware.tuning import config as tuning_config


def _mcc(metrics: dict) -> float:
    c = metrics["confusion_matrix"]
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


MCC = metric_registry.Metric("mcc", "Maximize", "Matthews correlation (served)",
                             early_stopping=True, compute=_mcc)


@pytest.fixture
def mcc_registered():
    metric_registry.register(MCC)
    try:
        yield MCC
    finally:
        metric_registry.unregister("mcc")


def _scored(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int8)
    p = 1 / (1 + np.exp(-(3 * (y - 0.5) + rng.normal(0, 1.3, n) - 1)))
    return y, p


def test_a_registered_metric_appears_everywhere_it_is_derived(mcc_registered):
    y, p = _scored()
    costs = RowCosts.constant(CostMatrix(fp=1.0, fn=5.0), len(y))
    decision = (p >= 1 / 6).astype(np.int8)
    metrics = channel_metrics(summarize(y, p, decision, costs))
    assert metrics["mcc"] == pytest.approx(matthews_corrcoef(y, decision), abs=1e-12)
    # the log line, and the published regex reads the value back from it
    line = metric_log.format_line("[7]", "validation", metrics)
    assert f"validation:mcc={metric_log.format_value(metrics['mcc'])}" in line.split("\t")
    definition = next(d for d in metric_log.metric_definitions() if d["Name"] == "validation:mcc")
    assert float(re.search(definition["Regex"], line).group(1)) == pytest.approx(metrics["mcc"], rel=1e-7)
    # early stopping may watch it, and in the direction the registry gives
    assert hyperparameters.parse({"early_stopping_metric": "mcc"}).early_stopping_metric == "mcc"
    schema = {p.name: p for p in hyperparameters.SCHEMA}
    assert "mcc" in schema["early_stopping_metric"].describe()["choices"]
    assert metric_log.directions()["mcc"] == "Maximize"
    # the tuner's objective
    objective = tuning_config.objective("validation:mcc", has_facet=False)
    assert objective.metrics == ("validation:mcc",) and objective.directions == ("Maximize",)
    # the report's metrics table, from training's own evaluation of a channel
    data = Dataset(np.zeros((len(y), 1), np.float32), y, ["x"], costs, "mem", False)
    result = evaluate(Channel("validation", data, None), p, DecisionRule(), hyperparameters.parse({}),
                       [], 0, SOLO, "model", [])
    table = report._metrics_table([result])
    row = re.search(r"<tr><td>Matthews correlation \(served\)</td><td class=\"num\">([^<]+)</td>", table)
    assert row and float(row.group(1)) == pytest.approx(result.metrics["mcc"], abs=1e-4)


def test_an_unregistered_metric_is_nowhere(mcc_registered):
    metric_registry.unregister("mcc")
    try:
        assert "validation:mcc" not in {d["Name"] for d in metric_log.metric_definitions()}
        with pytest.raises(HyperparameterError, match="'mcc' is not one of auc, logloss"):
            hyperparameters.parse({"early_stopping_metric": "mcc"})
    finally:
        metric_registry.register(MCC)  # the fixture unregisters it


def test_the_published_definitions_are_the_registry_and_fit_sagemakers_limit():
    published = metric_log.published_definitions()
    assert published == metric_log.metric_definitions()
    assert len(published) <= 40
    assert [d["Name"].split(":", 1)[1] for d in published[:len(metric_registry.all_metrics())]] == \
        [m.name for m in metric_registry.all_metrics()]


def test_registry_refuses_a_duplicate_or_a_bad_direction():
    with pytest.raises(ValueError, match="registered already"):
        metric_registry.register(metric_registry.Metric("auc", "Maximize", "AUC"))
    with pytest.raises(ValueError, match="direction"):
        metric_registry.register(metric_registry.Metric("x", "Up", "x"))
