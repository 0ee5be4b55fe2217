"""The SageMaker tuner configuration and the local tuner with more than two classes."""

from __future__ import annotations

import csv
import json

import pytest

from costaware.metrics import log_lines as metric_log
from costaware.tuning import config

from support import (REALISTIC_TUNER_OPTIONS, WINE_CLASSES, WINE_MATRIX, costaware_cli, wine_frame,
                     write_tree)

STATICS = {"label_column": "cultivar", "classes": json.dumps(WINE_CLASSES),
           "cost_matrix": json.dumps(WINE_MATRIX), "facet_column": "region",
           "facet_values_or_threshold": "[1]", "label_values_or_threshold": '["barolo"]'}


def _request(objective: str, statics=None):
    opts = config.TunerOptions(**{**REALISTIC_TUNER_OPTIONS, "statics": dict(statics or STATICS),
                                  "objective": objective})
    return config.build(opts)[0]


@pytest.mark.parametrize("objective", ["validation:expected_cost", "validation:auc",
                                       "validation:combined_objective", "validation:logloss",
                                       "validation:balanced_accuracy", "validation:top_label_ece"])
def test_tuner_config_with_multiclass_metrics(objective):
    params = _request(objective)
    job = params["HyperParameterTuningJobConfig"]
    assert job["HyperParameterTuningJobObjective"]["MetricName"] == objective
    searched = {r["Name"] for kind in job["ParameterRanges"].values() for r in kind}
    # with a facet, a multi-class job trains the fairness penalty (on the favourable classes'
    # probability), as a binary one does: the tuner searches it
    assert "fairness_penalty" in searched and "eta" in searched
    definitions = params["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    assert definitions == metric_log.published_definitions(3)  # what a K >= 3 job logs
    assert objective in {d["Name"] for d in definitions} and len(definitions) <= 40


@pytest.mark.parametrize("objective", ["validation:f1", "validation:recall", "validation:ece"])
def test_a_two_class_objective_is_refused_for_a_multiclass_job(objective):
    with pytest.raises(config.ConfigError, match="a two-class metric; with more than two classes"):
        _request(objective)


def test_local_tuner_on_a_multiclass_tree(tmp_path):
    frame = wine_frame()
    frame["region"] = (frame["alcohol"] > 13.0).astype(int)
    tree = write_tree(tmp_path / "ml", {**STATICS, "num_round": "6", "max_depth": "3",
                                        "cross_fit_folds": "3"},
                      {"train": {"t.csv": frame.iloc[:120].to_csv(index=False)},
                       "validation": {"v.csv": frame.iloc[120:].to_csv(index=False)}})
    work = tmp_path / "study"
    done = costaware_cli("tune", "--tree", tree, "--work", work, "--objective", "cost", "--trials", "2",
               "--jobs", "2", "--range", "num_round=3:8", "--seed", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    with open(work / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3  # the baseline and two trials
    for row in rows[1:]:
        evaluation = json.loads((work / row["dir"] / "output" / "data" / "evaluation.json")
                                .read_text())
        kept = evaluation["channels"]["validation"]["served"]
        assert float(row["validation:expected_cost"]) == pytest.approx(kept["expected_cost"],
                                                                       rel=1e-6)
        assert float(row["validation:dppl"]) == pytest.approx(kept["dppl"], rel=1e-6, abs=1e-12)
    best = json.loads((work / "best.json").read_text())
    assert best["objective"] == ["validation:expected_cost"]
