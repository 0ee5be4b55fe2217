"""Per-row costs through the real ``serve``: a model trained with cost columns, rows carrying their
own costs in every format, overrides, bad cost cells, and a fairness-constrained model's refusal."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import requests

from costaware.model import artifact
from costaware.model import inference
from costaware.decisions.costs import CostMatrix, RowCosts

from support import (BIN, HEADER, Server, assert_matches, csv_body, parse_response, run_train,
                     synthetic, write_tree)

FIELDS = inference.OUTPUT_FIELDS


def _frame(n: int, seed: int) -> pd.DataFrame:
    x, y = synthetic(n, d=4, seed=seed)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(x, columns=["income", "debt", "age", "tenure"])
    frame.insert(0, "default", y)
    frame["loss"] = rng.uniform(500, 20000, n).round(2)  # a missed default: the credit line lost
    frame["interest"] = (rng.uniform(0.03, 0.15, n) * frame["loss"]).round(2)  # a refused good loan
    frame["group"] = np.where(x[:, 2] > 0.3, 1, 0)
    return frame


@pytest.fixture(scope="module")
def costed(tmp_path_factory):
    """A model trained with two cost columns (fp: interest, fn: loss), and its test rows."""
    base = tmp_path_factory.mktemp("costed") / "ml"
    frame = _frame(900, 4)
    write_tree(base, {"num_round": "30", "max_depth": "3", "label_column": "default",
                      "cost_fn_column": "loss", "cost_fp_column": "interest",
                      "cost_fn": "8000", "cost_fp": "700"},
               {"train": {"t.csv": frame.iloc[:500].drop(columns="group").to_csv(index=False)},
                "validation": {"v.csv": frame.iloc[500:700].drop(columns="group").to_csv(index=False)}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return str(base / "model"), frame.iloc[700:]


@pytest.fixture(scope="module")
def model(costed):
    return artifact.load(costed[0], nthread=1)


@pytest.fixture(scope="module")
def server(costed, tmp_path_factory):
    srv = Server(costed[0], tmp_path_factory.mktemp("logs"), workers=1)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


FEATURES = ["income", "debt", "age", "tenure"]


def _rows(test: pd.DataFrame, with_costs: np.ndarray) -> np.ndarray:
    """Request rows as the model's layout says: features, then interest (fp) and loss (fn)."""
    rows = test[FEATURES + ["interest", "loss"]].to_numpy(dtype=np.float64).copy()
    rows[~with_costs, 4:] = np.nan
    return rows


def test_the_model_states_its_request_layout(model):
    assert model.metadata["request_columns"] == FEATURES + ["interest", "loss"]
    assert model.policy.cost_columns == (("fp", "interest"), ("fn", "loss"))


def _bodies(rows: np.ndarray, with_costs: np.ndarray) -> dict:
    names = FEATURES + ["interest", "loss"]

    def listed(i):
        values = rows[i].tolist() if with_costs[i] else rows[i, :4].tolist()
        return [None if np.isnan(v) else v for v in values]

    keyed = [{k: v for k, v in zip(names, listed(i))} for i in range(len(rows))]
    csv = "\n".join(",".join(repr(v) for v in listed(i)) for i in range(len(rows))).encode()
    return {
        "csv": ("text/csv", csv),
        "json-lists": ("application/json", json.dumps({"instances": [listed(i) for i in range(len(rows))]})),
        "json-keyed": ("application/json", json.dumps({"instances": keyed})),
        "jsonlines-lists": ("application/jsonlines", "\n".join(json.dumps(listed(i)) for i in range(len(rows)))),
        "jsonlines-keyed": ("application/jsonlines", "\n".join(json.dumps(r) for r in keyed)),
    }


@pytest.mark.parametrize("accept", ["application/json", "application/jsonlines", "text/csv"])
@pytest.mark.parametrize("form", ["csv", "json-lists", "json-keyed", "jsonlines-lists",
                                  "jsonlines-keyed"])
def test_rows_carry_their_own_costs_in_every_format(server, model, costed, form, accept):
    test = costed[1].iloc[:40]
    with_costs = np.arange(40) % 3 != 0  # every third row without: decided at the class costs
    rows = _rows(test, with_costs)
    content_type, body = _bodies(rows, with_costs)[form]
    response = requests.post(server.url + "/invocations", data=body,
                             headers={"Content-Type": content_type, "Accept": accept})
    assert response.status_code == 200, response.text
    predictions = parse_response(response)
    assert_matches(predictions, inference.predict(model, rows, with_costs))
    assert [p["costs"] for p in predictions] == ["row" if c else "model" for c in with_costs]
    # each row is decided by the Bayes rule at its own costs on its calibrated probability
    p = np.array([r["score"] for r in predictions])
    fn = np.where(with_costs, test.loss, 8000.0)
    fp = np.where(with_costs, test.interest, 700.0)
    costs = RowCosts(fp, fn, np.zeros(40), np.zeros(40))
    cost_if_1, cost_if_0 = costs.expected(p)
    assert [r["decision"] for r in predictions] == (cost_if_1 <= cost_if_0).astype(int).tolist()
    assert np.array([r["expected_cost_if_0"] for r in predictions]) == pytest.approx(cost_if_0, rel=1e-12)
    assert np.array([r["threshold"] for r in predictions]) == pytest.approx(fp / (fp + fn), rel=1e-12)


def test_a_rows_costs_change_its_decision_not_its_probability(server, costed):
    row = costed[1][FEATURES].iloc[[0]].to_numpy()[0].tolist()
    answers = []
    for loss in (1.0, 1e7):
        body = json.dumps({"instances": [dict(zip(FEATURES, row), interest=100.0, loss=loss)]})
        response = requests.post(server.url + "/invocations", data=body,
                                 headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        answers.append(response.json()["predictions"][0])
    assert answers[0]["score"] == answers[1]["score"]
    assert answers[0]["decision"] == 0 and answers[1]["decision"] == 1



def test_a_dominated_decision_is_served_and_a_reversed_rule_refused(server, costed):
    """With ``cost_tn=5`` from the request, a row whose false alarm costs nothing (interest 0)
    decides 1 whatever its probability (threshold 0); a row that also loses nothing when missed
    (loss 0) would decide 1 only when *unlikely* to default: refused, naming the row."""
    row = dict(zip(FEATURES, costed[1][FEATURES].iloc[0].tolist()))
    dominated = json.dumps({"instances": [dict(row, interest=0.0, loss=3.0)]})
    response = requests.post(server.url + "/invocations", data=dominated,
                             headers={"Content-Type": "application/json", HEADER: "cost_tn=5"})
    assert response.status_code == 200, response.text
    answer = json.loads(response.text)["predictions"][0]  # strict JSON: no NaN token
    assert answer["decision"] == 1 and answer["threshold"] == 0
    assert answer["expected_cost_if_1"] <= answer["expected_cost_if_0"]
    reversed_rule = json.dumps({"instances": [dict(row, interest=100.0, loss=3.0),
                                              dict(row, interest=0.0, loss=0.0)]})
    response = requests.post(server.url + "/invocations", data=reversed_rule,
                             headers={"Content-Type": "application/json", HEADER: "cost_tn=5"})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(
        "instances[1]: cost_tp (the request's class cost) (0) is not below column 6 (loss) (0) and "
        "cost_tn (the request's class cost) (5) is not below column 5 (interest) (0)"), response.json()["error"]

def test_an_override_changes_the_class_costs_and_rows_keep_their_own(server, model, costed):
    test = costed[1].iloc[:30]
    with_costs = np.arange(30) % 2 == 0
    rows = _rows(test, with_costs)
    _, body = _bodies(rows, with_costs)["csv"]
    response = requests.post(server.url + "/invocations", data=body,
                             headers={"Content-Type": "text/csv", HEADER: "cost_fn=90000"})
    assert response.status_code == 200, response.text
    policy = model.policy.with_costs(CostMatrix(fp=700, fn=90000))
    expected = inference.predict(model, rows, with_costs, policy=policy, costs_source="request")
    assert_matches(response.json()["predictions"], expected)
    assert [p["costs"] for p in response.json()["predictions"]] == \
        ["row" if c else "request" for c in with_costs]


@pytest.mark.parametrize("content_type,body,message", [
    ("text/csv", "0.1,0.2,0.3,0.4,50,-3", "line 1, column 6 (loss): -3; costs must be numbers >= 0"),
    ("text/csv", "0.1,0.2,0.3,0.4,50,", "line 1, column 6 (loss): missing; costs must be numbers >= 0"),
    ("text/csv", "0.1,0.2,0.3,0.4\n0.1,0.2,0.3,0.4,50", "line 2: 5 values, the model takes 4 (6 with "
                                                       "its costs: interest, loss)"),
    ("text/csv", "0.1,0.2,0.3,0.4,50,abc", "line 1, column 6 (loss): 'abc' is not a number"),
    ("application/json", json.dumps({"instances": [{"income": 1, "loss": 40}]}),
     "instances[0], column 5 (interest): missing; costs must be numbers >= 0"),
    ("application/json", json.dumps({"instances": [[0.1, 0.2, 0.3, 0.4, 0, 0]]}),
     "instances[0]: column 6 (loss) (0) equals cost_tp (the model's class cost) (0) and column 5 "
     "(interest) (0) equals cost_tn (the model's class cost) (0): both decisions cost the same"),
    ("application/jsonlines", json.dumps({"income": 1, "interest": 5, "loss": "lots"}),
     "line 1, 'loss': \"lots\" is not a number"),
])
def test_bad_cost_cells_get_a_400_naming_row_and_column(server, content_type, body, message):
    response = requests.post(server.url + "/invocations", data=body,
                             headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"], response.json()["error"]


@pytest.fixture(scope="module")
def constrained(tmp_path_factory):
    """A model whose rule was fitted under |DPPL| <= 0.05 (facet 'group', not a feature), one
    shift per facet: requests carry the facet after the features."""
    base = tmp_path_factory.mktemp("constrained") / "ml"
    frame = _frame(900, 5).drop(columns=["loss", "interest"])
    write_tree(base, {"num_round": "20", "max_depth": "3", "label_column": "default",
                      "cost_fn": "5", "cost_fp": "1", "facet_column": "group",
                      "facet_values_or_threshold": "[1]", "max_abs_dppl": "0.05",
                      "group_thresholds": "true"},
               {"train": {"t.csv": frame.iloc[:600].to_csv(index=False)},
                "validation": {"v.csv": frame.iloc[600:].to_csv(index=False)}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return str(base / "model"), frame


def test_a_constrained_model_refuses_overrides_and_needs_the_facet(constrained, tmp_path):
    model_dir, frame = constrained
    model = artifact.load(model_dir)
    assert model.policy.rule.kind == "constrained" and model.policy.rule.per_facet
    assert model.metadata["request_columns"] == FEATURES + ["group"]
    srv = Server(model_dir, tmp_path, workers=1)
    try:
        srv.wait_ready()
        rows = frame[FEATURES + ["group"]].to_numpy(dtype=float)[:20]
        plain = requests.post(srv.url + "/invocations", data=csv_body(rows),
                              headers={"Content-Type": "text/csv"})
        assert plain.status_code == 200, plain.text
        assert_matches(plain.json()["predictions"], inference.predict(model, rows))
        assert {p["rule"] for p in plain.json()["predictions"]} == {"constrained"}
        refused = requests.post(srv.url + "/invocations", data=csv_body(rows),
                                headers={"Content-Type": "text/csv", HEADER: "cost_fn=50"})
        assert refused.status_code == 400
        assert "decision rule was fitted under |DPPL| <= 0.05" in refused.json()["error"]
        no_facet = requests.post(srv.url + "/invocations", data=csv_body(rows[:, :4]),
                                 headers={"Content-Type": "text/csv"})
        assert no_facet.status_code == 400
        assert "line 1: 4 values, the model takes 5" in no_facet.json()["error"]
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def empirical(tmp_path_factory):
    """A model with a cost column (fn: loss) decided by the empirical rule (a shift fitted on the
    held-out rows), and its test rows."""
    base = tmp_path_factory.mktemp("empirical") / "ml"
    frame = _frame(900, 6)
    write_tree(base, {"num_round": "20", "max_depth": "3", "label_column": "default",
                      "cost_fn_column": "loss", "cost_fn": "8000", "cost_fp": "700",
                      "decision_rule": "empirical"},
               {"train": {"t.csv": frame.iloc[:700].drop(columns=["group", "interest"])
                          .to_csv(index=False)}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return str(base / "model"), frame.iloc[700:]


def test_an_override_leaves_rows_with_their_own_costs_as_they_were(empirical, tmp_path):
    """A request's class costs decide the rows without costs of their own, by the model's rule
    (here its empirical shift) at those costs; a row that carries its costs is answered exactly as
    without the override: same decision, threshold and rule."""
    model_dir, test = empirical
    model = artifact.load(model_dir, nthread=1)
    rule = model.policy.rule
    assert rule.kind == "empirical" and rule.shift_a != 0
    with_costs = np.arange(len(test)) % 2 == 0
    rows = test[FEATURES + ["loss"]].to_numpy(dtype=np.float64).copy()
    rows[~with_costs, 4] = np.nan
    # the shift decides some row with its own costs otherwise than the Bayes rule would
    own = inference.predict(model, rows, with_costs)
    p, loss = own["score"], test["loss"].to_numpy()
    bayes = (p * loss >= (1 - p) * 700).astype(int)
    assert (own["decision"] != bayes)[with_costs].any()
    body = csv_body_with_costs(rows, with_costs)
    srv = Server(model_dir, tmp_path, workers=1)
    try:
        srv.wait_ready()
        plain, overridden = (requests.post(srv.url + "/invocations", data=body, headers={
            "Content-Type": "text/csv", **extra}) for extra in ({}, {HEADER: "cost_fn=5"}))
    finally:
        srv.stop()
    assert plain.status_code == overridden.status_code == 200, overridden.text
    before, after = plain.json()["predictions"], overridden.json()["predictions"]
    for i in np.flatnonzero(with_costs):
        assert after[i] == before[i]
        assert after[i]["costs"] == "row" and after[i]["rule"] == "empirical"
    # the rows without their own costs: the same shift, at the request's costs
    policy = model.policy.with_costs(CostMatrix(fp=700, fn=5))
    assert policy.rule == rule
    assert_matches(after, inference.predict(model, rows, with_costs, policy, "request"))
    assert overridden.json()["policy"]["rule"] == rule.to_dict()
    assert "rule=empirical" in overridden.headers[HEADER]
    p_star = 700 / 705
    shifted = 1 / (1 + np.exp(-(np.log(p_star / (1 - p_star)) + rule.shift_a)))
    assert [after[i]["threshold"] for i in np.flatnonzero(~with_costs)] == \
        pytest.approx([shifted] * int((~with_costs).sum()), rel=1e-12)


def csv_body_with_costs(rows: np.ndarray, with_costs: np.ndarray) -> bytes:
    """A CSV body whose rows carry their trailing cost cells where ``with_costs`` says."""
    width = rows.shape[1]
    return "\n".join(",".join(repr(v) for v in (row if own else row[:width - 1]))
                     for row, own in zip(rows.tolist(), with_costs)).encode()


def _cli(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "costaware"), "predict", *args], input=stdin,
                          capture_output=True, timeout=120)


def test_the_command_line_decides_rows_at_their_own_costs(server, model, costed, tmp_path):
    """``costaware predict`` answers as the server does, rows with their costs included, in the
    format and with the custom attributes the server takes."""
    model_dir, test = costed
    with_costs = np.arange(12) % 3 != 0
    rows = _rows(test.iloc[:12], with_costs)
    for form, accept in (("csv", "text/csv"), ("json-keyed", "application/json"),
                         ("jsonlines-lists", "application/jsonlines")):
        content_type, body = _bodies(rows, with_costs)[form]
        path = tmp_path / f"rows.{form}"
        path.write_bytes(body.encode() if isinstance(body, str) else body)
        headers = {"Content-Type": content_type, "Accept": accept, HEADER: "cost_fn=90000"}
        served = requests.post(server.url + "/invocations", data=path.read_bytes(),
                               headers=headers)
        assert served.status_code == 200, served.text
        out = _cli("--model-dir", model_dir, "--input", str(path), "--content-type",
                   content_type, "--accept", accept, "--custom-attributes", "cost_fn=90000")
        assert out.returncode == 0, out.stderr.decode()
        assert out.stdout == served.content + b"\n"
    default = _cli("--model-dir", model_dir, "--input", str(tmp_path / "rows.csv"))
    assert default.returncode == 0, default.stderr.decode()
    answers = [json.loads(line) for line in default.stdout.decode().splitlines()]
    assert_matches(answers, inference.predict(model, rows, with_costs))
    assert [a["costs"] for a in answers] == ["row" if c else "model" for c in with_costs]


@pytest.mark.parametrize("case, fragment", [
    ("no model dir", "model directory {missing} does not exist"),
    ("model dir is a file", "model directory {input} does not exist"),
    ("no input", "{missing}: No such file or directory"),
    ("input is a directory", "{model_dir}: Is a directory"),
    ("quoted csv", "{input}: line 1: quoted CSV fields are not supported"),
    ("empty input", "{empty}: the body is empty"),
    ("unknown content type", "Content-Type 'text/plain' is not supported"),
    ("bad accept", "Accept 'application/xml': this server answers"),
    ("bad attributes", "X-Amzn-SageMaker-Custom-Attributes: cost_fn='5x' is not a number"),
    ("bad cost cell", "{input}: line 1, column 6 (loss): -3; costs must be numbers >= 0"),
])
def test_the_command_line_fails_with_one_line(costed, tmp_path, case, fragment):
    model_dir = costed[0]
    good = tmp_path / "rows.csv"
    good.write_text("0.1,0.2,0.3,0.4\n")
    paths = {"missing": str(tmp_path / "nowhere"), "input": str(good), "model_dir": model_dir,
             "empty": str(tmp_path / "empty.csv")}
    (tmp_path / "empty.csv").write_text("")
    model, source, extra = model_dir, str(good), []
    if case == "no model dir":
        model = paths["missing"]
    elif case == "model dir is a file":
        model = str(good)
    elif case == "no input":
        source = paths["missing"]
    elif case == "input is a directory":
        source = model_dir
    elif case == "quoted csv":
        good.write_text('"0.1",0.2,0.3,0.4\n')
    elif case == "empty input":
        source = paths["empty"]
    elif case == "unknown content type":
        extra = ["--content-type", "text/plain"]
    elif case == "bad accept":
        extra = ["--accept", "application/xml"]
    elif case == "bad attributes":
        extra = ["--custom-attributes", "cost_fn=5x"]
    elif case == "bad cost cell":
        good.write_text("0.1,0.2,0.3,0.4,50,-3\n")
    out = _cli("--model-dir", model, "--input", source, *extra)
    err = out.stderr.decode()
    assert out.returncode == 2, err
    assert err.startswith("costaware predict: ") and err.count("\n") == 1, err
    assert fragment.format(**paths) in err, err
    assert out.stdout == b""


def test_a_binary_cost_matrix_naming_columns_is_the_cost_column_hyperparameters(tmp_path):
    """``cost_matrix=[[0, "interest"], ["loss", 0]]`` spells ``cost_fp_column=interest,
    cost_fn_column=loss``: the same model bytes, policy and metrics (issue #23)."""
    frame = _frame(300, 9).drop(columns="group")
    models = {}
    for spelling, costs in (("columns", {"cost_fp_column": "interest", "cost_fn_column": "loss"}),
                            ("matrix", {"cost_matrix": '[[0, "interest"], ["loss", 0]]'})):
        base = tmp_path / spelling / "ml"
        write_tree(base, {"num_round": "8", "max_depth": "3", "label_column": "default", **costs},
                   {"train": {"t.csv": frame.iloc[:200].to_csv(index=False)},
                    "validation": {"v.csv": frame.iloc[200:].to_csv(index=False)}})
        result = run_train(base)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        metadata = json.loads((base / "model" / "metadata.json").read_text())
        evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
        models[spelling] = ((base / "model" / "xgboost-model.ubj").read_bytes(),
                            {k: v for k, v in metadata.items() if k != "hyperparameters"},
                            evaluation["channels"])
    assert models["matrix"] == models["columns"]
    assert models["matrix"][1]["request_columns"][-2:] == ["interest", "loss"]
