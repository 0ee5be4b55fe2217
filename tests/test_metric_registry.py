"""One owner for metrics: a metric registered in costaware.metrics.registry, and nowhere else,
appears in the log lines, the metric definitions, the early-stopping choices, the tuner's
objectives, the report's metrics table and docs/metrics.md; and what is offered for a number of
classes is accepted for it (the metrics' values: tests/test_metric_invariants.py)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from sklearn.metrics import matthews_corrcoef

from costaware.config import hyperparameters
from costaware.metrics import log_lines as metric_log
from costaware.metrics import registry as metric_registry
from costaware.report import html as report
from costaware.cluster import SOLO
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.data.channel_files import Dataset
from costaware.decisions.rules import DecisionRule
from costaware.errors import HyperparameterError
from costaware.metrics.classification import channel_metrics, summarize
from costaware.training.channels import Channel
from costaware.training.evaluation import evaluate
from costaware.tuning import config as tuning_config

from conftest import REPO


def _mcc(metrics: dict) -> float:
    c = metrics["confusion_matrix"]
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


MCC = metric_registry.Metric("mcc", "Maximize", "Matthews correlation (served)",
                             "(tp tn - fp fn) / sqrt((tp + fp)(tp + fn)(tn + fp)(tn + fn))",
                             classes=metric_registry.BINARY, early_stopping=True, compute=_mcc)


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
    table = report._metrics_table([result], report.TwoClassPage("", None))
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


@pytest.mark.parametrize("k", [2, 3])
def test_the_published_definitions_are_the_registry_and_fit_sagemakers_limit(k):
    published = metric_log.published_definitions(k)
    assert published == metric_log.metric_definitions(k), "regenerate: python -m costaware.metrics.log_lines"
    assert len(published) <= 40
    logged = [m.name for m in metric_registry.logged_for(k)]
    assert [d["Name"] for d in published] == [f"{c}:{n}" for c in metric_log.CHANNELS for n in logged]
    if k > 2:
        assert metric_log.published_definitions(k + 5) == published  # every K >= 3 logs the same


def test_the_docs_metrics_table_is_the_registry():
    text = (REPO / "docs" / "metrics.md").read_text()
    assert metric_registry.markdown_table() in text, "regenerate with: costaware metrics"
    assert {m.name for m in metric_registry.all_metrics()} <= set(re.findall(r"^\| `(\w+)`", text, re.M))


def test_registry_refuses_a_duplicate_a_bad_direction_or_a_metric_without_its_meaning():
    with pytest.raises(ValueError, match="registered already"):
        metric_registry.register(metric_registry.Metric("auc", "Maximize", "AUC", "the AUC"))
    with pytest.raises(ValueError, match="direction"):
        metric_registry.register(metric_registry.Metric("x", "Up", "x", "x"))
    with pytest.raises(ValueError, match="a definition and the classes"):
        metric_registry.register(metric_registry.Metric("x", "Maximize", "x", ""))
    with pytest.raises(ValueError, match="a definition and the classes"):
        metric_registry.register(metric_registry.Metric("x", "Maximize", "x", "x", classes="K = 5"))
    with pytest.raises(ValueError, match="compute reads a binary channel's metrics"):
        metric_registry.register(metric_registry.Metric("x", "Maximize", "x", "x", compute=_mcc))
    assert "x" not in {m.name for m in metric_registry.all_metrics()}


def _k_settings(k: int) -> dict:
    """Hyperparameters of a job with ``k`` classes and a facet (so every metric is logged)."""
    facet = {"facet_column": "grp", "facet_values_or_threshold": "[1]"}
    if k == 2:
        return facet
    return {**facet, "classes": json.dumps(list(range(k))), "label_values_or_threshold": "[0]"}


@pytest.mark.parametrize("k", [2, 3])
def test_every_early_stopping_metric_offered_for_k_classes_is_accepted(mcc_registered, k):
    """The schema's choices hold every K's; a choice this K does not log is refused naming this
    K's own, and each of those is accepted."""
    choices = {p.name: p for p in hyperparameters.SCHEMA}["early_stopping_metric"].options()
    assert set(choices) == set(metric_registry.early_stopping_names())
    offered = metric_registry.early_stopping_names(k)
    for name in choices:
        given = {**_k_settings(k), "early_stopping_metric": name}
        if name in offered:
            assert hyperparameters.parse(given).early_stopping_metric == name
            continue
        with pytest.raises(HyperparameterError) as refused:
            hyperparameters.parse(given)
        message = str(refused.value)
        assert f"{name} is logged for K = 2 only; with {k} classes one of" in message
        listed = message.rsplit(" one of ", 1)[1].split(", ")
        assert listed == list(offered)
        for other in listed:
            assert hyperparameters.parse({**given, "early_stopping_metric": other})
    assert ("mcc" in offered) == (k == 2)


@pytest.mark.parametrize("k", [2, 3])
def test_every_tuning_objective_offered_for_k_classes_is_accepted(k):
    """A tuning objective is a validation metric the job's K logs; another K's is refused naming
    them, and each of those is accepted."""
    logged = {m.name for m in metric_registry.logged_for(k)}
    for metric in metric_registry.all_metrics():
        spec = f"validation:{metric.name}"
        if metric.name in logged:
            goal = tuning_config.objective(spec, has_facet=True, multiclass=k > 2)
            assert goal.metrics == (spec,) and goal.directions == (metric.direction,)
            continue
        with pytest.raises(tuning_config.ConfigError) as refused:
            tuning_config.objective(spec, has_facet=True, multiclass=k > 2)
        listed = str(refused.value).rsplit(" one of ", 1)[1].split(", ")
        assert listed == [f"validation:{m.name}" for m in metric_registry.logged_for(k)]


def _channels(k: int) -> tuple[Dataset, Dataset]:
    """Train and validation rows of ``k`` classes with a facet (column ``grp``)."""
    rng = np.random.default_rng(k)
    label = np.arange(120) % k
    features = (rng.normal(size=(120, 3)) + label[:, None] * np.array([1.0, 0.5, 0.0]))
    facet = (rng.random(120) < 0.5).astype(np.float64)
    costs = RowCosts.constant(CostMatrix(fp=1.0, fn=3.0), 120)
    rows = Dataset(features.astype(np.float32), label.astype(np.int8), ["f0", "f1", "f2"], costs,
                   "memory", True, facet=facet)
    return rows.take(slice(0, 80)), rows.take(slice(80, None))


@pytest.mark.parametrize("metric", metric_registry.early_stopping_names())
@pytest.mark.parametrize("k", [2, 3])
def test_every_early_stopping_choice_trains(k, metric):
    """In process: each choice of early_stopping_metric that K offers stops on a value the round
    lines log (training.train for any K, without the report)."""
    from costaware.training import pipeline as training

    assert metric in metric_registry.early_stopping_names(k)
    given = {**_k_settings(k), "num_round": "3", "max_depth": "2",
             "cross_fit_folds": "2", "early_stopping_rounds": "1", "early_stopping_metric": metric}
    settings = hyperparameters.parse(given)
    lines = []
    assert training.train(settings, *_channels(k), log=lines.append) is not None
    rounds = [line for line in lines if re.match(r"\[\d+\]\t", line)]
    assert len(rounds) >= 2 and all(
        re.search(rf"(validation|held_out):{metric}=[-+0-9.e]+(\t|$)", line) for line in rounds)


def test_the_command_line_prints_each_ks_definitions_and_the_table(capsys):
    from costaware import cli

    for argv, k in ((["metric-definitions"], 2), (["metric-definitions", "--classes", "4"], 4)):
        assert cli.main(argv) == 0
        assert json.loads(capsys.readouterr().out) == metric_log.metric_definitions(k)
    assert cli.main(["metric-definitions", "--classes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--classes 1: a model has 2 or more classes" in err
    assert cli.main(["metrics"]) == 0
    assert capsys.readouterr().out == metric_registry.markdown_table()
