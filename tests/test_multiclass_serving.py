"""More than two classes end to end: the real ``train`` on scikit-learn's wine data (three
cultivars, named), the saved policy, and the real ``serve`` in JSON, JSON Lines and CSV."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import numpy as np
import pytest
import requests

from costaware.model import artifact
from costaware.model import inference
from costaware.decisions import multiclass
from costaware.metrics import multiclass_metrics

from support import (BIN, HEADER, REPO, WINE_CLASSES, WINE_MATRIX, Server, csv_body, failure_reason,
                     run_train, wine_frame, write_tree)

@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    base = tmp_path_factory.mktemp("wine") / "ml"
    frame = wine_frame()
    write_tree(base, {"num_round": "25", "max_depth": "3", "eta": "0.3",
                      "label_column": "cultivar", "classes": json.dumps(WINE_CLASSES),
                      "cost_matrix": json.dumps(WINE_MATRIX), "cross_fit_folds": "4",
                      "early_stopping_rounds": "8"},
               {"train": {"t.csv": frame.iloc[:110].to_csv(index=False)},
                "validation": {"v.csv": frame.iloc[110:140].to_csv(index=False)},
                "test": {"x.csv": frame.iloc[140:].to_csv(index=False)}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base, frame.iloc[140:], result.stdout + result.stderr


@pytest.fixture(scope="module")
def model(wine):
    return artifact.load(str(wine[0] / "model"), nthread=1)


@pytest.fixture(scope="module")
def server(wine, tmp_path_factory):
    srv = Server(str(wine[0] / "model"), tmp_path_factory.mktemp("logs"), workers=1)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def test_training_logs_every_round_and_saves_the_confusion_matrix(wine):
    base, test_rows, log = wine
    assert "training 3 classes (barolo, grignolino, barbera)" in log
    rounds = [line for line in log.splitlines() if line.startswith("[") and "validation:" in line
              and not line.startswith("[final]")]
    assert rounds and all("validation:logloss=" in r and "validation:auc=" in r
                          and "\tvalidation, not published: recall_barolo " in r
                          and ", recall_barbera " in r for r in rounds)
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    served = evaluation["channels"]["test"]["served"]
    confusion = np.array(served["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == len(test_rows)
    assert np.allclose(served["cell_costs"], confusion * np.array(WINE_MATRIX))
    assert served["cost"] == pytest.approx(float((confusion * np.array(WINE_MATRIX)).sum()))
    assert evaluation["channels"]["validation"]["scored_by"] == "out-of-fold"
    assert evaluation["policy"]["classes"] == WINE_CLASSES
    data = base / "output" / "data"
    page = (data / "report.html").read_text()
    for channel in ("train", "validation", "test"):
        for chart in ("confusion", "reliability"):
            assert (data / f"{chart}-{channel}.png").stat().st_size > 5000
            assert f'src="{chart}-{channel}.png"' in page
    assert "recall of barbera" in page and "[[0.0, 2.0, 3.0], [2.0, 0.0, 1.0], [12.0, 3.0, 0.0]]" in page


def test_decisions_are_the_cheapest_expected_cost(model, wine):
    rows = wine[1].drop(columns="cultivar").to_numpy(np.float64)
    result = inference.predict(model, rows)
    p = result["probabilities"]
    assert p.shape == (len(rows), 3) and np.allclose(p.sum(axis=1), 1.0)
    expected = p @ np.array(WINE_MATRIX, float)
    assert np.allclose(result["expected_costs"], expected)
    assert list(result["decision"]) == [WINE_CLASSES[j] for j in expected.argmin(axis=1)]
    # the served decisions are mostly right on held-out wine
    truth = wine[1]["cultivar"].tolist()
    assert np.mean([d == t for d, t in zip(result["decision"], truth)]) > 0.85


@pytest.mark.parametrize("accept", ["application/json", "application/jsonlines", "text/csv"])
def test_every_format_carries_per_class_probabilities_and_costs(server, model, wine, accept):
    rows = wine[1].drop(columns="cultivar").to_numpy(np.float64)[:12]
    response = requests.post(server.url + "/invocations", data=csv_body(rows),
                             headers={"Content-Type": "text/csv", "Accept": accept}, timeout=30)
    assert response.status_code == 200, response.text
    want = inference.predict(model, rows)
    if accept == "text/csv":
        lines = response.text.split("\n")
        assert len(lines) == len(rows)
        for i, line in enumerate(lines):
            cells = line.split(",")  # decision, 3 probabilities, 3 expected costs, costs, rule
            assert len(cells) == 9
            assert cells[0] == want["decision"][i] and cells[7:] == ["model", "bayes"]
            assert np.allclose([float(c) for c in cells[1:4]], want["probabilities"][i], rtol=1e-13)
            assert np.allclose([float(c) for c in cells[4:7]], want["expected_costs"][i],
                               rtol=1e-13)
        return
    body = (response.json()["predictions"] if accept == "application/json"
            else [json.loads(line) for line in response.text.split("\n")])
    for i, row in enumerate(body):
        assert list(row) == list(inference.MULTICLASS_FIELDS)
        assert list(row["probabilities"]) == WINE_CLASSES
        assert row["decision"] == want["decision"][i]
        assert [row["probabilities"][c] for c in WINE_CLASSES] == pytest.approx(
            want["probabilities"][i].tolist(), rel=1e-13)
        assert [row["expected_costs"][c] for c in WINE_CLASSES] == pytest.approx(
            want["expected_costs"][i].tolist(), rel=1e-13)
    if accept == "application/json":
        assert response.json()["policy"]["cost_matrix"] == WINE_MATRIX


def test_large_batches_format_like_single_rows(server, wine):
    rows = np.tile(wine[1].drop(columns="cultivar").to_numpy(np.float64), (5, 1))  # > 64 rows
    one = [requests.post(server.url + "/invocations", data=csv_body(rows[i:i + 1]),
                         headers={"Content-Type": "text/csv", "Accept": "application/jsonlines"},
                         timeout=30).text for i in range(3)]
    batch = requests.post(server.url + "/invocations", data=csv_body(rows),
                          headers={"Content-Type": "text/csv", "Accept": "application/jsonlines"},
                          timeout=30)
    assert batch.status_code == 200
    assert batch.text.split("\n")[:3] == one


def test_a_requests_cost_matrix_changes_decisions_not_probabilities(server, model, wine):
    rows = wine[1].drop(columns="cultivar").to_numpy(np.float64)
    matrix = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]  # 0-1 loss: the most probable class
    response = requests.post(server.url + "/invocations", data=csv_body(rows),
                             headers={"Content-Type": "text/csv",
                                      HEADER: f"trace=7, cost_matrix={json.dumps(matrix)}"},
                             timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    own = inference.predict(model, rows)
    got = [[r["probabilities"][c] for c in WINE_CLASSES] for r in body["predictions"]]
    assert np.allclose(got, own["probabilities"], rtol=1e-13)
    assert [r["decision"] for r in body["predictions"]] == \
        [WINE_CLASSES[j] for j in own["probabilities"].argmax(axis=1)]
    assert {r["costs"] for r in body["predictions"]} == {"request"}
    assert body["policy"]["cost_matrix"] == matrix
    assert response.headers[HEADER] == "cost_matrix=[[0,1,1],[1,0,1],[1,1,0]],rule=bayes," \
                                       "costs_source=request"


@pytest.mark.parametrize("header, fragment", [
    ("cost_matrix=[[0,1],[1,0]]", "cost_matrix: 2 x 2, but there are 3 classes"),
    ("cost_matrix=[[0,1,1],[1,0,-1],[1,1,0]]", "C[1][2] is -1"),
    ("cost_matrix=[[0,1,1],[1,0,1],[1,1", "cost_matrix: not JSON"),
    # what follows the matrix is part of its value, up to the next key=value: training's parser
    # refuses the same text
    ("cost_matrix=[[0,1,1],[1,0,1],[1,1,0]]x", "cost_matrix: not JSON (Extra data"),
    ("cost_matrix=[[0,1,1],[1,0,1],[1,1,0]]]", "cost_matrix: not JSON (Extra data"),
    ("cost_matrix=[[0,1,1],[1,0,1],[1,1,0]],[9,9,9]]", "cost_matrix: not JSON (Extra data"),
    ("trace=1,cost_matrix=[[0,1,1],[1,0,1],[1,1,0]] x;reasons=2", "cost_matrix: not JSON"),
    ("cost_matrix=[[0,1,1],[1,0,1],[1,1,0]],cost_matrix=[[0,1,1],[1,0,1],[1,1,0]]",
     "cost_matrix is given twice"),
    ("cost_matrix=[[0,1,1],[1,0,1],[1,1,0]];cost_matrix=[[0,2,2],[1,0,1],[1,1,0]]",
     "cost_matrix is given twice"),
    ("cost_matrix", "cost_matrix has no value"),
    ("cost_matrix=" + "[" * 3000 + "]" * 3000, "cost_matrix: lists nested too deeply"),
    ("cost_fp=3", "'cost_fp': this model has 3 classes"),
    ("cost_matrix=[[5,5,5],[5,5,5],[0,0,0]]", "deciding class 0 costs no more"),
])
def test_bad_overrides_are_refused_with_one_line(server, wine, header, fragment):
    rows = wine[1].drop(columns="cultivar").to_numpy(np.float64)[:2]
    response = requests.post(server.url + "/invocations", data=csv_body(rows),
                             headers={"Content-Type": "text/csv", HEADER: header}, timeout=30)
    assert response.status_code == 400
    assert fragment in response.json()["error"] and "\n" not in response.json()["error"]


def test_binary_fields_are_not_offered(server, wine):
    rows = wine[1].drop(columns="cultivar").to_numpy(np.float64)[:2]
    response = requests.post(server.url + "/invocations", data=csv_body(rows),
                             headers={"Content-Type": "text/csv",
                                      "Accept": "application/json;fields=score,decision"},
                             timeout=30)
    assert response.status_code == 406
    assert "field 'score' is not in this model's responses" in response.json()["error"]
    chosen = requests.post(server.url + "/invocations", data=csv_body(rows),
                           headers={"Content-Type": "text/csv",
                                    "Accept": "application/jsonlines;fields=decision,probabilities"},
                           timeout=30)
    assert chosen.status_code == 200
    assert list(json.loads(chosen.text.split("\n")[0])) == ["decision", "probabilities"]


@pytest.mark.parametrize("hyperparameters, label, fragment", [
    ({"classes": json.dumps(WINE_CLASSES)}, "merlot",
     "t.csv: line 4, column 1 ('cultivar') (label): 'merlot' is not one of the classes "
     '["barolo", "grignolino", "barbera"]'),
    ({"cost_matrix": "[[0,1,1],[1,0,1]]"}, None, "hyperparameter 'cost_matrix': row 0 has 3 values"),
    ({"classes": json.dumps(WINE_CLASSES), "cost_matrix": "[[0,1],[1,0]]"}, None,
     "hyperparameter 'cost_matrix': 2 x 2, but there are 3 classes"),
    ({"classes": json.dumps(WINE_CLASSES), "cost_fn_column": "ash"}, None,
     "hyperparameter 'cost_fn_column' with 3 classes"),
])
def test_training_refuses_bad_classes_and_matrices_with_one_line(tmp_path, hyperparameters, label,
                                                                 fragment):
    frame = wine_frame().iloc[:60].copy()
    if label:
        frame.loc[2, "cultivar"] = label
    write_tree(tmp_path, {"label_column": "cultivar", "num_round": "3", **hyperparameters},
               {"train": {"t.csv": frame.to_csv(index=False)}})
    result = run_train(tmp_path)
    assert result.returncode != 0
    reason = failure_reason(tmp_path)
    assert fragment in reason and "\n" not in reason.strip(), reason


def test_integer_labels_by_default_with_the_matrix_size(tmp_path):
    frame = wine_frame().iloc[:90].copy()
    frame["cultivar"] = frame["cultivar"].map({c: i for i, c in enumerate(WINE_CLASSES)})
    write_tree(tmp_path, {"label_column": "cultivar", "num_round": "5", "cross_fit_folds": "3",
                          "cost_matrix": json.dumps(WINE_MATRIX)},
               {"train": {"t.csv": frame.to_csv(index=False)}})
    result = run_train(tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    model = artifact.load(str(tmp_path / "model"), nthread=1)
    out = inference.predict(model, frame.drop(columns="cultivar").to_numpy(np.float64)[:5])
    assert out["decision"].dtype.kind == "i" and set(out["decision"]) <= {0, 1, 2}
    assert model.policy.classes == (0, 1, 2)


def test_a_two_by_two_matrix_is_the_binary_costs(tmp_path):
    from support import csv_text, synthetic

    x, y = synthetic(400, d=4, seed=2)
    channels = {"train": {"t.csv": csv_text(y[:300], x[:300])},
                "validation": {"v.csv": csv_text(y[300:], x[300:])}}
    common = {"num_round": "8", "max_depth": "3"}
    by_matrix = write_tree(tmp_path / "matrix", {**common, "cost_matrix": "[[0.5, 3], [20, 1]]"},
                           channels)
    by_cells = write_tree(tmp_path / "cells", {**common, "cost_tn": "0.5", "cost_fp": "3",
                                               "cost_fn": "20", "cost_tp": "1"}, channels)
    for base in (by_matrix, by_cells):
        result = run_train(base)
        assert result.returncode == 0, result.stderr[-2000:]
    a, b = (artifact.load(str(base / "model"), nthread=1) for base in (by_matrix, by_cells))
    assert a.policy == b.policy
    assert (by_matrix / "model" / "xgboost-model.ubj").read_bytes() == \
        (by_cells / "model" / "xgboost-model.ubj").read_bytes()
    out_a, out_b = (inference.predict(m, x[300:]) for m in (a, b))
    assert np.array_equal(out_a["score"], out_b["score"])
    assert np.array_equal(out_a["decision"], out_b["decision"])


def test_metrics_equal_scikit_learn():
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, log_loss,
                                 roc_auc_score)

    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 500)
    p = rng.dirichlet(np.ones(4), 500)
    p[np.arange(500), y] += 0.5
    p /= p.sum(axis=1, keepdims=True)
    matrix = rng.uniform(1, 5, (4, 4))
    np.fill_diagonal(matrix, 0)
    decision, _ = multiclass.bayes_decisions(p, matrix)
    m = multiclass_metrics.channel_metrics(y, p, decision, matrix)
    assert m["logloss"] == pytest.approx(log_loss(y, p))
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, decision))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, decision))
    assert m["expected_cost"] == pytest.approx(matrix[y, decision].mean())
    best_constant = min(matrix[y, j].sum() for j in range(4))
    assert m["savings"] == pytest.approx(1 - matrix[y, decision].sum() / best_constant)


def test_bias_on_the_favourable_classes_end_to_end(tmp_path):
    from costaware.metrics import clarify as fairness

    frame = wine_frame()
    # a facet that leans on the data: high-alcohol wines more often in region 1
    rng = np.random.default_rng(3)
    frame["region"] = (frame["alcohol"] + rng.normal(0, 0.6, len(frame)) > 13.0).astype(int)
    write_tree(tmp_path, {"num_round": "15", "max_depth": "3", "label_column": "cultivar",
                          "classes": json.dumps(WINE_CLASSES), "cost_matrix": json.dumps(WINE_MATRIX),
                          "cross_fit_folds": "4", "facet_column": "region",
                          "facet_values_or_threshold": "[1]",
                          "label_values_or_threshold": '["barolo"]',
                          "fairness_metrics": "DPPL,DI"},
               {"train": {"t.csv": frame.iloc[:110].to_csv(index=False)},
                "validation": {"v.csv": frame.iloc[110:140].to_csv(index=False)},
                "test": {"x.csv": frame.iloc[140:].to_csv(index=False)}})
    result = run_train(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "validation:dppl=" in log and "validation:combined_objective=" in log
    evaluation = json.loads((tmp_path / "output" / "data" / "evaluation.json").read_text())
    section = evaluation["channels"]["test"]["bias"]
    assert section["favourable"] == ["barolo"]
    assert set(section["per_class"]) == set(WINE_CLASSES)
    # recompute from the served decisions of the saved model on the test rows
    model = artifact.load(str(tmp_path / "model"), nthread=1)
    test = frame.iloc[140:]
    decided = inference.predict(model, test.drop(columns=["cultivar", "region"])
                                .to_numpy(np.float64))["decision"]
    sensitive = test["region"].to_numpy() == 1
    favourable = np.asarray(decided) == "barolo"
    assert section["post_training"]["DPPL"] == pytest.approx(fairness.dppl(favourable, sensitive))
    assert section["per_class"]["barbera"]["DPPL"] == pytest.approx(
        fairness.dppl(np.asarray(decided) == "barbera", sensitive))
    assert evaluation["channels"]["test"]["served"]["dppl"] == pytest.approx(
        abs(fairness.dppl(favourable, sensitive)))


@pytest.fixture(scope="module")
def bounded(tmp_path_factory):
    """Wine with a facet ('region', leaning on alcohol) and a bound of 0.05 on the favourable
    ('barolo') rate, one shift per facet: the tree, its rows and the training log."""
    base = tmp_path_factory.mktemp("bounded") / "ml"
    frame = wine_frame()
    rng = np.random.default_rng(3)
    frame["region"] = (frame["alcohol"] + rng.normal(0, 0.6, len(frame)) > 13.0).astype(int)
    common = {"num_round": "15", "max_depth": "3", "label_column": "cultivar",
              "classes": json.dumps(WINE_CLASSES), "cost_matrix": json.dumps(WINE_MATRIX),
              "cross_fit_folds": "4", "facet_column": "region",
              "facet_values_or_threshold": "[1]", "label_values_or_threshold": '["barolo"]'}
    write_tree(base, {**common, "max_abs_dppl": "0.05", "group_thresholds": "true"},
               {"train": {"t.csv": frame.iloc[:140].to_csv(index=False)},
                "test": {"x.csv": frame.iloc[140:].to_csv(index=False)}})
    result = run_train(base)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    return base, frame, log


def test_a_bound_on_the_favourable_rate_end_to_end(bounded, tmp_path_factory):
    from costaware.metrics import clarify as fairness

    base, frame, log = bounded
    (line,) = [x for x in log.splitlines() if x.startswith("decision rule: favourable")]
    held_dppl = float(line.split("DPPL ")[1].split()[0])
    assert abs(held_dppl) <= 0.05
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    assert evaluation["policy"]["rule"]["kind"] == "constrained"
    train = evaluation["channels"]["train"]
    assert "bayes" in train and train["fitted_on_these_rows"][-1] == "rule"
    # the rows held out (all of train, out of fold) meet the bound; the Bayes rule did not
    assert abs(train["bayes"]["dppl"]) > 0.05
    model = artifact.load(str(base / "model"), nthread=1)
    assert model.metadata["request_columns"][-1] == "region"  # requests carry the facet
    test = frame.iloc[140:]
    rows = test.drop(columns="cultivar").to_numpy(np.float64)  # features, then the facet
    served = inference.predict(model, rows)
    assert set(served["rule"]) == {"constrained"}
    favourable = np.asarray(served["decision"]) == "barolo"
    sensitive = test["region"].to_numpy() == 1
    assert evaluation["channels"]["test"]["bias"]["post_training"]["DPPL"] == pytest.approx(
        fairness.dppl(favourable, sensitive))
    srv = Server(str(base / "model"), tmp_path_factory.mktemp("logs"), workers=1)
    try:
        srv.wait_ready()
        response = requests.post(srv.url + "/invocations", data=csv_body(rows),
                                 headers={"Content-Type": "text/csv"}, timeout=30)
        assert response.status_code == 200, response.text
        assert [r["decision"] for r in response.json()["predictions"]] == list(served["decision"])
        refused = requests.post(srv.url + "/invocations", data=csv_body(rows[:2]),
                                headers={"Content-Type": "text/csv",
                                         HEADER: "cost_matrix=[[0,1,1],[1,0,1],[1,1,0]]"},
                                timeout=30)
        assert refused.status_code == 400
        assert "fitted under |DPPL| <= 0.05" in refused.json()["error"]
        no_facet = requests.post(srv.url + "/invocations", data=csv_body(rows[:2, :-1]),
                                 headers={"Content-Type": "text/csv"}, timeout=30)
        assert no_facet.status_code == 400
    finally:
        srv.stop()


def test_reasons_for_the_chosen_class_against_the_runner_up(server, model, wine):
    import xgboost as xgb

    rows = wine[1].drop(columns="cultivar").to_numpy(np.float64)[:8]
    response = requests.post(server.url + "/invocations", data=csv_body(rows),
                             headers={"Content-Type": "text/csv", HEADER: "reasons=2"},
                             timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()["predictions"]
    want = inference.predict(model, rows)
    contributions = model.booster.predict(
        xgb.DMatrix(rows, feature_names=model.feature_names), pred_contribs=True)
    for i, row in enumerate(body):
        assert list(row) == list(inference.MULTICLASS_FIELDS + inference.CLASS_REASON_FIELDS)
        costs = want["expected_costs"][i]
        j = WINE_CLASSES.index(row["decision"])
        r = min((c for c in range(3) if c != j), key=lambda c: (costs[c], c))
        assert row["runner_up"] == WINE_CLASSES[r]
        assert row["cost_gap"] == pytest.approx(costs[r] - costs[j]) and row["cost_gap"] >= 0
        signed = contributions[i, j, :-1] - contributions[i, r, :-1]
        top = sorted((f for f in range(len(signed)) if signed[f] > 0),
                     key=lambda f: (-signed[f], f))[:2]
        assert [x["feature"] for x in row["reasons"]] == [model.feature_names[f] for f in top]
        assert [x["contribution"] for x in row["reasons"]] == pytest.approx(
            [float(signed[f]) for f in top], rel=1e-6)


def test_the_cost_matrix_override_is_read_by_trainings_parser(server, model, wine):
    """A value training accepts is served at, among other attributes on either side; the
    response says the matrix it decided at."""
    rows = wine[1].drop(columns="cultivar").to_numpy(np.float64)[:5]
    matrix = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    for header in (f"cost_matrix={json.dumps(matrix)};reasons=1", "trace=a=b, cost_matrix = "
                   "[[0,1,1],[1,0,1],[1,1,0]] ,user=x"):
        response = requests.post(server.url + "/invocations", data=csv_body(rows),
                                 headers={"Content-Type": "text/csv", HEADER: header}, timeout=30)
        assert response.status_code == 200, (header, response.text)
        assert response.json()["policy"]["cost_matrix"] == matrix
    # the same texts as training reads them: the trailing garbage the server refuses, training
    # refuses too
    with pytest.raises(multiclass.CostMatrixError, match="Extra data"):
        multiclass.parse_cost_matrix("[[0,1,1],[1,0,1],[1,1,0]]x", 3)


TRICKY = ["a,b", 'c"d', "é ü"]  # CSV's own characters, and text beyond ASCII


def _trained_with_classes(base, classes: list) -> tuple:
    frame = wine_frame()
    frame["cultivar"] = frame["cultivar"].map(dict(zip(WINE_CLASSES, classes)))
    write_tree(base, {"num_round": "6", "max_depth": "2", "label_column": "cultivar",
                      "classes": json.dumps(classes), "cost_matrix": json.dumps(WINE_MATRIX),
                      "cross_fit_folds": "3"},
               {"train": {"t.csv": frame.iloc[:140].to_csv(index=False)}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return str(base / "model"), frame.iloc[140:].drop(columns="cultivar").to_numpy(np.float64)


def _read_back(cells: list[str], like: list):
    """CSV cells as the JSON values ``like`` has them: numbers as numbers, lists as JSON."""
    out = []
    for cell, value in zip(cells, like):
        if isinstance(value, list):
            out.append(json.loads(cell))
        elif isinstance(value, (int, float)):
            out.append(type(value)(cell))
        else:
            out.append(cell)
    return out


@pytest.mark.parametrize("classes", [TRICKY, [3, 5, 7]], ids=["text", "integers"])
def test_csv_answers_read_back_as_the_json_answers(classes, tmp_path):
    """Every class label, in every place an answer shows one (``decision``, ``runner_up``, the
    policy's ``classes``) is the label itself, of its own type; a CSV answer read with Python's
    csv module holds the JSON answer's values, for a few rows and for a batch of more than 64
    (formatted the vectorised way)."""
    model_dir, rows = _trained_with_classes(tmp_path / "ml", classes)
    srv = Server(model_dir, tmp_path, workers=1)
    try:
        srv.wait_ready()
        for batch in (rows[:5], np.tile(rows, (3, 1))):
            answers = {}
            for accept in ("application/json", "text/csv"):
                response = requests.post(srv.url + "/invocations", data=csv_body(batch),
                                         headers={"Content-Type": "text/csv", "Accept": accept,
                                                  HEADER: "reasons=2"}, timeout=30)
                assert response.status_code == 200, response.text
                answers[accept] = response
            body = answers["application/json"].json()
            assert body["policy"]["classes"] == classes
            predictions = body["predictions"]
            for row in predictions:
                assert row["decision"] in classes and row["runner_up"] in classes
                assert row["runner_up"] != row["decision"]
                assert isinstance(row["cost_gap"], float)
            read = list(csv.reader(io.StringIO(answers["text/csv"].text)))
            assert len(read) == len(predictions)
            for cells, row in zip(read, predictions):
                want = [row["decision"]]
                want += [row[field][str(c)] for field in ("probabilities", "expected_costs")
                         for c in classes]
                want += [row[field] for field in ("costs", "rule", "reasons", "runner_up",
                                                  "cost_gap")]
                assert _read_back(cells, want) == want
    finally:
        srv.stop()
    # the command line answers a model of three classes as the server does
    out = subprocess.run([str(BIN / "costaware"), "predict", "--model-dir", model_dir,
                          "--input", "-", "--accept", "application/jsonlines",
                          "--custom-attributes", "reasons=2"],
                         input=csv_body(rows[:5]), capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    assert [json.loads(line) for line in out.stdout.decode("utf-8").splitlines()] == \
        predictions[:5]  # the batch's first rows are rows[:5]


def test_the_command_line_answers_more_than_two_classes(wine, model):
    """``costaware predict`` on a model of three classes: its fields, not the binary ones."""
    rows = wine[1].drop(columns="cultivar").to_numpy(np.float64)[:6]
    path = wine[0] / "rows.csv"
    path.write_bytes(csv_body(rows))
    out = subprocess.run([str(BIN / "costaware"), "predict", "--model-dir",
                          str(wine[0] / "model"), "--input", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    want = inference.predict(model, rows)
    assert [a["decision"] for a in answers] == list(want["decision"])
    assert [list(a) for a in answers] == [list(inference.MULTICLASS_FIELDS)] * len(rows)
    assert np.allclose([[a["probabilities"][c] for c in WINE_CLASSES] for a in answers],
                       want["probabilities"], rtol=1e-13)


def test_with_a_bound_cost_gap_is_negative_where_the_bound_moved_the_decision(bounded):
    """The runner-up is the cheapest decision other than the served one. By the Bayes rule the
    served decision is the cheapest, so ``cost_gap >= 0``; where the fairness bound moved a row's
    decision off the cheapest, the runner-up is that cheapest one and ``cost_gap < 0``: what the
    bound costs that row in expectation. docs/explainability.md says so."""
    base, frame, _ = bounded
    model = artifact.load(str(base / "model"), nthread=1)
    rows = frame.drop(columns="cultivar").to_numpy(np.float64)
    result = inference.explain(model, rows, inference.predict(model, rows), 1)
    expected = result["expected_costs"]
    decided = np.array([WINE_CLASSES.index(d) for d in result["decision"]])
    runner = np.array([WINE_CLASSES.index(r) for r in result["runner_up"]])
    cheapest = expected.argmin(axis=1)
    moved = decided != cheapest
    assert moved.any() and not moved.all()  # the bound moved some rows, not all
    others = expected.copy()
    others[np.arange(len(rows)), decided] = np.inf
    assert np.array_equal(runner, others.argmin(axis=1))
    gap = np.asarray(result["cost_gap"], dtype=np.float64)
    assert np.allclose(gap, expected[np.arange(len(rows)), runner]
                       - expected[np.arange(len(rows)), decided], rtol=1e-12)
    assert np.array_equal(gap < 0, moved)
    assert np.array_equal(runner[moved], cheapest[moved])
    doc = " ".join((REPO / "docs" / "explainability.md").read_text().split())
    assert "`cost_gap = E[r] - E[j] >= 0`" not in doc
    assert ("with a fairness bound (`max_abs_dppl`) a row whose decision the bound moved off the "
            "cheapest has `cost_gap < 0`") in doc


# --------------------------------------------- a cell of the matrix read per row (issue #23)

# Selling a barbera as a barolo costs each bottle its own refund; the other cells are class costs.
REFUND_MATRIX = [[0, 2, 3], [2, 0, 1], ["refund", 3, 0]]


@pytest.fixture(scope="module")
def refunds(tmp_path_factory):
    """The wine model trained with one cell of its 3 x 3 matrix read from each row's column."""
    base = tmp_path_factory.mktemp("refunds") / "ml"
    frame = wine_frame()
    frame["refund"] = np.random.default_rng(3).uniform(0.5, 40, len(frame)).round(2)
    write_tree(base, {"num_round": "12", "max_depth": "3", "eta": "0.3",
                      "label_column": "cultivar", "classes": json.dumps(WINE_CLASSES),
                      "cost_matrix": json.dumps(REFUND_MATRIX)},
               {"train": {"t.csv": frame.iloc[:110].to_csv(index=False)},
                "validation": {"v.csv": frame.iloc[110:140].to_csv(index=False)}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base, frame.iloc[140:]


def _own_matrices(refund: np.ndarray, class_matrix) -> np.ndarray:
    """Each row's own 3 x 3 matrix: the class costs with C[2][0] its refund."""
    own = np.tile(np.asarray(class_matrix, dtype=np.float64), (len(refund), 1, 1))
    own[:, 2, 0] = refund
    return own


def test_a_cell_read_per_row_is_trained_and_served_at_each_rows_own_matrix(refunds, tmp_path):
    base, test = refunds
    model = artifact.load(str(base / "model"), nthread=1)
    assert model.policy.cost_columns == (((2, 0), "refund"),)
    assert model.metadata["request_columns"][-1] == "refund"
    # the named cell's class cost (rows that do not carry it): 1 off the diagonal
    assert model.policy.matrix == ((0, 2, 3), (2, 0, 1), (1, 3, 0))
    # the metrics are at each row's own costs: deciding j for every validation row costs
    # sum_i C_i[y_i][j]
    validation = wine_frame().iloc[110:140]
    frame_refund = np.random.default_rng(3).uniform(0.5, 40, len(wine_frame())).round(2)[110:140]
    truth = validation["cultivar"].map(WINE_CLASSES.index).to_numpy()
    own = _own_matrices(frame_refund, model.policy.matrix)[np.arange(30), truth]
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    served = evaluation["channels"]["validation"]["served"]
    assert served["cost_all"] == pytest.approx(own.sum(axis=0).tolist(), rel=1e-12)
    features = test.drop(columns=["cultivar", "refund"]).to_numpy(np.float64)
    rows = np.column_stack([features, test["refund"].to_numpy()])
    with_costs = np.arange(len(rows)) % 3 != 0
    half = [row if own else row[:-1] for row, own in zip(rows.tolist(), with_costs)]
    names = list(model.metadata["request_columns"])
    keyed = [dict(zip(names, row)) for row in half]
    srv = Server(str(base / "model"), tmp_path, workers=1)
    try:
        srv.wait_ready()
        answers = {
            "csv": requests.post(srv.url + "/invocations", timeout=30,
                                 data="\n".join(",".join(map(repr, r)) for r in half),
                                 headers={"Content-Type": "text/csv",
                                          "Accept": "application/jsonlines"}),
            "json": requests.post(srv.url + "/invocations", timeout=30,
                                  data=json.dumps({"instances": keyed}),
                                  headers={"Content-Type": "application/json",
                                           "Accept": "application/jsonlines"}),
            "override": requests.post(srv.url + "/invocations", timeout=30,
                                      data=json.dumps({"instances": keyed}),
                                      headers={"Content-Type": "application/json",
                                               "Accept": "application/jsonlines",
                                               HEADER: "cost_matrix=[[0,1,1],[1,0,1],[5,1,0]]"}),
        }
    finally:
        srv.stop()
    for form, class_matrix in (("csv", model.policy.matrix), ("json", model.policy.matrix),
                               ("override", [[0, 1, 1], [1, 0, 1], [5, 1, 0]])):
        response = answers[form]
        assert response.status_code == 200, (form, response.text)
        got = [json.loads(line) for line in response.text.split("\n")]
        p = np.array([[r["probabilities"][c] for c in WINE_CLASSES] for r in got])
        # E[i, j] = sum_k p[i, k] C_i[k][j] at each row's own matrix (the override replaces the
        # class costs only: a row's own cell stays)
        refund = np.where(with_costs, rows[:, -1], class_matrix[2][0])
        want = np.einsum("nk,nkj->nj", p, _own_matrices(refund, class_matrix))
        assert np.allclose([[r["expected_costs"][c] for c in WINE_CLASSES] for r in got], want,
                           rtol=1e-12), form
        assert [r["decision"] for r in got] == [WINE_CLASSES[j] for j in want.argmin(axis=1)], form
        source = "request" if form == "override" else "model"
        assert [r["costs"] for r in got] == ["row" if own else source for own in with_costs]
    # a dear refund moves a row's decision off barolo: the per-row cell decides
    served = inference.predict(model, rows, with_costs)
    at_class = inference.predict(model, rows[:, :-1])
    changed = served["decision"] != at_class["decision"]
    assert changed.any() and (at_class["decision"][changed] == "barolo").all()


def test_a_bad_per_row_cost_is_refused_naming_row_and_column(refunds, tmp_path):
    base, test = refunds
    srv = Server(str(base / "model"), tmp_path, workers=1)
    row = test.drop(columns=["cultivar"]).to_numpy(np.float64)[0].tolist()
    try:
        srv.wait_ready()
        response = requests.post(srv.url + "/invocations", timeout=30,
                                 data=",".join(map(repr, row[:-1] + [-2.0])),
                                 headers={"Content-Type": "text/csv"})
    finally:
        srv.stop()
    assert response.status_code == 400
    assert response.json()["error"] == \
        "line 1, column 14 (refund): -2; costs must be numbers >= 0"


@pytest.mark.parametrize("matrix, value, message", [
    (REFUND_MATRIX, -1.0, "line {line}, column 15 ('refund') (cost_matrix C[2][0]): -1; costs must "
                          "be numbers >= 0"),
    # a barbera whose right decision costs 9, more than its mistakes' mean (12 + 3) / 2
    ([[0, 2, 3], [2, 0, 1], [12, 3, "refund"]], 9.0,
     "line {line}: the row's right decision (class 2) costs more than its mistakes on average "
     "(regret -1.5); training weights each row by that regret, which must be >= 0"),
])
def test_a_bad_per_row_cost_in_training_names_file_line_and_column(tmp_path, matrix, value,
                                                                   message):
    base = tmp_path / "ml"
    frame = wine_frame().iloc[:60].copy()
    frame["refund"] = 3.0
    row = int(np.flatnonzero(frame["cultivar"].to_numpy() == "barbera")[1])
    frame.loc[frame.index[row], "refund"] = value
    write_tree(base, {"num_round": "3", "label_column": "cultivar",
                      "classes": json.dumps(WINE_CLASSES), "cost_matrix": json.dumps(matrix),
                      "calibration_data": "cross_fit"},
               {"train": {"t.csv": frame.to_csv(index=False)}})
    result = run_train(base)
    assert result.returncode != 0
    assert failure_reason(base).endswith("t.csv: " + message.format(line=row + 2))


@pytest.mark.parametrize("which", ["refunds", "bounded"])
def test_three_class_requests_answered_together_equal_each_alone(which, request):
    """Three classes, with per-row cost cells (some rows carrying them, some not) or a facet and
    a bound: requests answered together (the server's rows of several requests predicted in one
    call, invocation.respond_together) get the bytes each gets alone, in every format, with
    reasons, and a refused one among them."""
    from costaware.serving.invocation import Call, Invocations, respond, respond_together

    base, frame = request.getfixturevalue(which)[:2]
    invocations = Invocations.load(str(base / "model"), nthread=1)
    names = list(invocations.model.metadata["request_columns"])
    rows = frame.iloc[-12:][names].to_numpy(np.float64)
    if which == "refunds":  # every third row without its own refund
        bodies = [",".join(map(repr, row if i % 3 else row[:-1])).encode()
                  for i, row in enumerate(rows.tolist())]
    else:
        bodies = [csv_body(rows[i:i + 1 + i % 3]) for i in range(len(rows))]
    accepts = ["application/json", "text/csv", "application/jsonlines;verbose"]
    calls = [Call(invocations, body, "text/csv", accepts[i % 3],
                  "reasons=2" if i % 4 == 0 else None) for i, body in enumerate(bodies)]
    calls.append(Call(invocations, b"1,2\n", "text/csv", None, None))
    together = respond_together(calls)
    for call, reply in zip(calls, together):
        alone = respond(invocations, call.body, call.content_type, call.accept, call.attributes)
        assert (reply.status, reply.headers, reply.body) == (alone.status, alone.headers,
                                                             alone.body)
    assert [reply.status for reply in together] == [200] * len(bodies) + [400]
    assert together[0].timing["batch"] == len(bodies)
