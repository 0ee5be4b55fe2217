"""The real toolkit ``train`` entry point on temporary /opt/ml trees: outputs, log lines, failures."""

import gzip
import io
import json
import re

import numpy as np
import pandas as pd
import pytest

from costaware import metric_log

from conftest import csv_text, failure_reason, run_train, synthetic, write_tree

X, Y = synthetic(400, seed=1)
TRAIN = csv_text(Y[:300], X[:300])
VALID = csv_text(Y[300:], X[300:])
FAST = {"num_round": "5", "max_depth": "2"}


def test_breast_cancer_outputs(breast_cancer_tree):
    base = breast_cancer_tree
    assert (base / "output" / "success").exists() and not (base / "output" / "failure").exists()
    files = sorted(p.name for p in (base / "model").iterdir())
    assert files == ["metadata.json", "xgboost-model.ubj"]
    meta = json.loads((base / "model" / "metadata.json").read_text())
    assert meta["feature_names"] == [f"f{i}" for i in range(30)]
    policy = meta["decision_policy"]
    assert policy["costs"] == {"cost_fp": 1287.67, "cost_fn": 252000.0, "cost_tp": 35280.0, "cost_tn": 0.0}
    assert policy["bayes_threshold"] == pytest.approx(1287.67 / (1287.67 + 252000 - 35280))
    assert policy["threshold_source"] == "empirical"
    assert policy["threshold"] == meta["thresholds"]["empirical"] == meta["thresholds"]["chosen"]
    assert set(meta["versions"]) >= {"costaware", "xgboost", "numpy", "python"}
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    assert set(evaluation["channels"]) == {"train", "validation", "test"}
    for channel in evaluation["channels"].values():
        for key in ("chosen_threshold", "threshold_0.5"):
            m = channel[key]
            cm = m["confusion_matrix"]
            assert cm["tp"] + cm["fp"] + cm["fn"] + cm["tn"] == m["rows"]
            assert m["expected_cost"] == pytest.approx(m["expected_cost_total"] / m["rows"])
            assert {"auc", "precision", "recall", "f1", "accuracy", "logloss"} <= set(m)
        assert channel["threshold_0.5"]["threshold"] == 0.5


def test_learned_threshold_costs_less_than_half_on_test(breast_cancer_tree):
    test = json.loads((breast_cancer_tree / "output" / "data" / "evaluation.json").read_text())["channels"]["test"]
    assert test["chosen_threshold"]["expected_cost"] < test["threshold_0.5"]["expected_cost"]


def test_metric_definitions_parse_the_real_log(breast_cancer_tree):
    log = (breast_cancer_tree / "train.log").read_text()
    definitions = metric_log.published_definitions()
    assert definitions == metric_log.metric_definitions(), "regenerate: python -m costaware.metric_log"
    assert len(definitions) <= 40
    evaluation = json.loads((breast_cancer_tree / "output" / "data" / "evaluation.json").read_text())
    rounds = len(re.findall(r"^\[\d+\]\t", log, flags=re.M))
    assert rounds >= 10
    fairness_only = {"dppl", "di", "combined_objective"}  # logged with a facet: see test_fairness_training
    for d in definitions:
        assert len(d["Name"]) <= 255 and len(d["Regex"]) <= 500
        pattern = re.compile(d["Regex"])
        assert pattern.groups == 1
        values = [float(v) for v in pattern.findall(log)]
        channel, name = d["Name"].split(":")
        if name in fairness_only:
            assert not values
            continue
        assert values, d["Name"]
        # the last value a tuner reads is the kept model's
        assert values[-1] == pytest.approx(evaluation["channels"][channel]["chosen_threshold"][name], rel=1e-6)
        if channel == "validation":
            assert len(values) == rounds + 1  # every round, and once more at the end
    # CloudWatch shows a tab as #011: the regexes must still match
    line = next(l for l in log.splitlines() if l.startswith("[3]"))
    cloudwatch = line.replace("\t", "#011")
    auc = next(d for d in definitions if d["Name"] == "validation:auc")
    assert re.search(auc["Regex"], cloudwatch).group(1) == re.search(auc["Regex"], line).group(1)


def test_metric_regex_reads_any_float_notation():
    regex = re.compile(next(d for d in metric_log.metric_definitions() if d["Name"] == "test:logloss")["Regex"])
    for text, value in (("1", 1.0), ("0.25", 0.25), ("1e-05", 1e-5), ("-3.5E+2", -350.0), (".5", 0.5)):
        assert float(regex.search(f"[final]\ttest:logloss={text}\t").group(1)) == value


def test_cli_metric_definitions(breast_cancer_tree):
    import subprocess, sys
    out = subprocess.run([sys.executable, "-m", "costaware.cli", "metric-definitions"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == metric_log.metric_definitions()


def test_header_csv_gzip_parquet_and_per_row_costs(tmp_path):
    rng = np.random.default_rng(0)
    amount = rng.uniform(100, 10000, 400).round(2)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame.insert(2, "default", Y)
    frame["loan_amount"] = amount
    buffer = io.StringIO()
    frame.iloc[:300].to_csv(buffer, index=False)
    parquet = io.BytesIO()
    frame.iloc[300:].to_parquet(parquet)
    base = write_tree(tmp_path, {**FAST, "label_column": "default", "cost_column": "loan_amount",
                                 "cost_fn": '"0.01"', "cost_fp": '"5"'},
                      {"train": {"part-0.csv.gz": gzip.compress(buffer.getvalue().encode())},
                       "validation": {"v.parquet": parquet.getvalue()}},
                      {"validation": "application/x-parquet"})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    meta = json.loads((base / "model" / "metadata.json").read_text())
    assert meta["feature_names"] == [f"x{i}" for i in range(X.shape[1])]  # label and cost column out
    ev = json.loads((base / "output" / "data" / "evaluation.json").read_text())["channels"]["validation"]
    m = ev["chosen_threshold"]
    # expected cost uses each row's amount: FN cost 0.01 * amount, FP cost 5
    val = frame.iloc[300:]
    assert m["confusion_matrix"]["fp"] * 5 <= m["expected_cost_total"] + 1e-6
    assert m["expected_cost_total"] <= m["confusion_matrix"]["fp"] * 5 + 0.01 * val.loan_amount[val.default == 1].sum() + 1e-6


def test_without_validation_uses_bayes_threshold(tmp_path):
    base = write_tree(tmp_path, {**FAST, "cost_fp": "1", "cost_fn": "4"}, {"train": {"t.csv": TRAIN}})
    result = run_train(base)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no validation channel: the decision threshold is the Bayes threshold 0.2" in result.stdout
    assert "train:auc=" in result.stdout
    meta = json.loads((base / "model" / "metadata.json").read_text())
    assert meta["decision_policy"]["threshold"] == pytest.approx(0.2)


def _train_csv(rows: str) -> dict:
    return {"train": {"t.csv": rows}}


BAD = [
    ("no train channel", {}, {"validation": {"v.csv": VALID}}, None, "the 'train' channel is required"),
    ("empty channel", {}, {"train": {"empty.csv": ""}}, None, "holds no data files"),
    ("non-numeric", {}, _train_csv(TRAIN + "1,2,abc,3,4,5\n"), None, "t.csv: line 301, column 3: 'abc' is not a number"),
    ("label 2", {}, _train_csv(TRAIN + "2,1,1,1,1,1\n"), None, "t.csv: line 301, column 1 (label): 2"),
    ("single class", {}, _train_csv(csv_text(np.zeros(20), X[:20])), None, "all 20 rows have label 0"),
    ("validation single class", {}, {"train": {"t.csv": TRAIN}, "validation": {"v.csv": csv_text(np.ones(9), X[:9])}},
     None, "validation channel"),
    ("validation columns", {}, {"train": {"t.csv": TRAIN}, "validation": {"v.csv": csv_text(Y[:9], X[:9, :4])}},
     None, "columns differ from the train channel (4 feature columns, train has 5)"),
    ("unknown hyperparameter", {"max_depht": "3"}, _train_csv(TRAIN), None, "unknown hyperparameter 'max_depht'"),
    ("bad value", {"eta": "fast"}, _train_csv(TRAIN), None, "hyperparameter 'eta': 'fast' is not a valid float"),
    ("negative cost", {"cost_fn": "-5"}, _train_csv(TRAIN), None, "hyperparameter 'cost_fn': '-5' is out of range"),
    ("equal decisions", {"cost_fp": "2", "cost_tn": "3"}, _train_csv(TRAIN), None, "'cost_fp' (2) must exceed 'cost_tn' (3)"),
    ("unknown channel", {}, {"train": {"t.csv": TRAIN}, "extra": {"e.csv": TRAIN}}, None, "unknown channel(s) extra"),
    ("cost column", {"cost_column": "9"}, _train_csv(TRAIN), None, "no cost column '9'"),
    ("content type", {}, _train_csv(TRAIN), {"train": "application/x-recordio-protobuf"}, "is not supported"),
    ("ragged csv", {}, _train_csv(TRAIN + "1,2,3,4,5,6,7\n"), None, "t.csv: cannot be read as CSV"),
    ("infinite", {}, _train_csv(TRAIN + "1,inf,1,1,1,1\n"), None, "line 301, column 2: infinite value"),
]


@pytest.mark.parametrize("hyperparameters,channels,content_types,fragment",
                         [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_writes_a_one_line_failure(tmp_path, hyperparameters, channels, content_types, fragment):
    base = write_tree(tmp_path, {**FAST, **hyperparameters}, channels, content_types)
    result = run_train(base)
    assert result.returncode != 0
    reason = failure_reason(base)
    assert fragment in reason
    assert "\n" not in reason.strip() and len(reason) < 1024
    assert "Traceback" not in reason
    assert "Traceback" in result.stdout + result.stderr  # the traceback goes to the log
    assert not (base / "model" / "metadata.json").exists()
