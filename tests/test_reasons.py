"""Reasons for decisions: XGBoost's own TreeSHAP contributions, served with ``reasons=K``."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import requests
import xgboost as xgb

from costaware.model import artifact
from costaware.model import inference
from costaware.decisions import reasons

from support import HEADER, Server, csv_body


@pytest.fixture(scope="module")
def model(breast_cancer_tree):
    return artifact.load(str(breast_cancer_tree / "model"), nthread=1)


@pytest.fixture(scope="module")
def rows(model):
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, (40, len(model.feature_names))) * 2 + 1


@pytest.fixture(scope="module")
def server(breast_cancer_tree, tmp_path_factory):
    srv = Server(str(breast_cancer_tree / "model"), tmp_path_factory.mktemp("logs"), workers=1)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def _contributions(model, rows):
    data = xgb.DMatrix(rows, missing=np.nan, feature_names=model.feature_names)
    return model.booster.predict(data, pred_contribs=True)


def test_contributions_add_up_to_the_margin(model, rows):
    contributions = _contributions(model, rows)
    assert np.allclose(contributions.sum(axis=1), model.margin(rows), atol=1e-5)


def test_the_probability_never_falls_as_the_margin_rises(model):
    margins = np.linspace(-40, 40, 4001)
    p = model.policy.probability(margins)
    assert np.all(np.diff(p) >= 0)


def test_reasons_are_the_top_k_of_xgboosts_own_contributions(model, rows):
    result = inference.predict(model, rows)
    explained = inference.explain(model, rows, result, 3, "all")
    contributions = _contributions(model, rows)[:, :-1]
    for i in range(len(rows)):
        sign = 1.0 if result["decision"][i] == 1 else -1.0
        signed = contributions[i] * sign
        brute = sorted((j for j in range(len(signed)) if signed[j] > 0),
                       key=lambda j: (-signed[j], j))[:3]
        got = json.loads(explained["reasons"][i])
        assert [r["feature"] for r in got] == [model.feature_names[j] for j in brute]
        assert [r["contribution"] for r in got] == pytest.approx([signed[j] for j in brute],
                                                                 rel=1e-6)
        assert [r["value"] for r in got] == pytest.approx([rows[i, j] for j in brute])
        z = float(explained["boundary_log_odds"][i])
        assert (z >= 0) == (result["decision"][i] == 1)


def test_only_the_chosen_decisions_are_explained(model, rows):
    result = inference.predict(model, rows)
    ones = inference.explain(model, rows, result, 2, "1")
    zeros = inference.explain(model, rows, result, 2, "0")
    for i, d in enumerate(result["decision"]):
        assert (ones["reasons"][i] == "null") == (d != 1)
        assert (zeros["reasons"][i] == "null") == (d != 0)


def test_top_reasons_skip_features_that_push_the_other_way():
    signed = np.array([[0.5, -1.0, 0.5, 2.0, 0.0]])
    assert reasons.top_reasons(signed, 4) == [[3, 0, 2]]


@pytest.mark.parametrize("accept", ["application/json", "application/jsonlines", "text/csv"])
def test_served_reasons_in_every_format(server, model, rows, accept):
    response = requests.post(server.url + "/invocations", data=csv_body(rows[:10]),
                             headers={"Content-Type": "text/csv", "Accept": accept,
                                      HEADER: "reasons=3,reasons_for=all"}, timeout=30)
    assert response.status_code == 200, response.text
    want = inference.explain(model, rows[:10], inference.predict(model, rows[:10]), 3, "all")
    fields = inference.OUTPUT_FIELDS + inference.REASON_FIELDS
    if accept == "text/csv":
        table = list(csv.reader(io.StringIO(response.text)))
        assert len(table) == 10 and all(len(line) == len(fields) for line in table)
        got = [json.loads(line[fields.index("reasons")]) for line in table]
        zs = [float(line[fields.index("boundary_log_odds")]) for line in table]
    else:
        body = (response.json()["predictions"] if accept == "application/json"
                else [json.loads(line) for line in response.text.split("\n")])
        assert all(list(row) == list(fields) for row in body)
        got = [row["reasons"] for row in body]
        zs = [row["boundary_log_odds"] for row in body]
    assert got == [json.loads(t) for t in want["reasons"]]
    assert zs == pytest.approx([float(t) for t in want["boundary_log_odds"]], rel=1e-12)


def test_rows_without_the_option_carry_no_reasons(server, rows):
    response = requests.post(server.url + "/invocations", data=csv_body(rows[:3]),
                             headers={"Content-Type": "text/csv"}, timeout=30)
    assert list(response.json()["predictions"][0]) == list(inference.OUTPUT_FIELDS)
    adverse = requests.post(server.url + "/invocations", data=csv_body(rows[:20]),
                            headers={"Content-Type": "text/csv", HEADER: "reasons=2"}, timeout=30)
    for row in adverse.json()["predictions"]:  # by default only decision 1 (biopsy) is explained
        assert (row["reasons"] is None) == (row["decision"] != 1)


@pytest.mark.parametrize("header, fragment", [
    ("reasons=0", "reasons='0' must be a positive integer"),
    ("reasons=two", "reasons='two' must be a positive integer"),
    ("reasons=2,reasons=3", "reasons is given twice"),
    ("reasons_for=all", "reasons_for needs reasons=K"),
    ("reasons=2,reasons_for=most", "reasons_for='most' must be one of"),
])
def test_bad_reason_options_get_a_one_line_400(server, rows, header, fragment):
    response = requests.post(server.url + "/invocations", data=csv_body(rows[:2]),
                             headers={"Content-Type": "text/csv", HEADER: header}, timeout=30)
    assert response.status_code == 400
    assert fragment in response.json()["error"] and "\n" not in response.json()["error"]


def test_the_reason_fields_need_the_option(server, rows):
    response = requests.post(server.url + "/invocations", data=csv_body(rows[:2]),
                             headers={"Content-Type": "text/csv",
                                      "Accept": "application/json;fields=decision,reasons"},
                             timeout=30)
    assert response.status_code == 406
    assert "ask for them with the custom attribute reasons=K" in response.json()["error"]


def test_reason_texts_are_saved_and_served(tmp_path):
    from support import csv_text, run_train, synthetic, write_tree

    x, y = synthetic(400, d=4, seed=5)
    header = "label,income,debt,age,tenure\n"
    frame = header + csv_text(y, x)
    texts = {"debt": {"text": "Debt too high for the income", "code": "R02"},
             "income": "Income too low"}
    base = write_tree(tmp_path, {"num_round": "10", "max_depth": "3", "label_column": "label",
                                 "reason_texts": json.dumps(texts), "reasons_for": "all"},
                      {"train": {"t.csv": frame}})
    result = run_train(base)
    assert result.returncode == 0, result.stderr[-2000:]
    model = artifact.load(str(base / "model"), nthread=1)
    assert model.metadata["reason_texts"] == {"debt": texts["debt"],
                                              "income": {"text": "Income too low"}}
    explained = inference.explain(model, x, inference.predict(model, x), 4,
                                  model.metadata["reasons_for"])
    seen = [r for text in explained["reasons"] for r in json.loads(text)]
    assert seen and all(r["code"] == "R02" and r["text"] == texts["debt"]["text"]
                        for r in seen if r["feature"] == "debt")
    assert all("text" not in r for r in seen if r["feature"] in ("age", "tenure"))


@pytest.mark.parametrize("value, fragment", [
    ('{"salary": "Income too low"}', "'reason_texts': \"salary\" is not a feature (features: "
                                      "income, debt, age, tenure)"),
    ('["debt"]', "must be a JSON object from feature name to a reason text"),
    ('{"debt": {"text": "x", "why": 1}}', '"debt": give a text, or an object with "text"'),
    ('{"debt": ', "'reason_texts': not JSON"),
])
def test_bad_reason_texts_fail_with_one_line(tmp_path, value, fragment):
    from support import csv_text, failure_reason, run_train, synthetic, write_tree

    x, y = synthetic(100, d=4, seed=5)
    base = write_tree(tmp_path, {"num_round": "3", "label_column": "label", "reason_texts": value},
                      {"train": {"t.csv": "label,income,debt,age,tenure\n" + csv_text(y, x)}})
    assert run_train(base).returncode != 0
    reason = failure_reason(base)
    assert fragment in reason and "\n" not in reason.strip(), reason


# --- SageMaker Clarify online explainability: the documented ClarifyInferenceConfig ----------

CLARIFY = {  # docs/explainability.md: what Clarify reads from each output format
    "text/csv": {"ProbabilityIndex": 0},
    "application/jsonlines": {"ContentTemplate": '{"features":$features}',
                              "ProbabilityAttribute": "score"},
    "application/json": {"ProbabilityAttribute": "predictions[*].score"},
}


@pytest.mark.parametrize("accept", sorted(CLARIFY))
def test_the_documented_clarify_config_finds_the_probability(server, model, rows, accept):
    import jmespath

    config = CLARIFY[accept]
    if "ContentTemplate" in config:  # Clarify formats each record with the template
        body = "\n".join(config["ContentTemplate"].replace("$features", json.dumps(row))
                         for row in rows[:5].tolist()).encode()
        content_type = "application/jsonlines"
    else:
        body, content_type = csv_body(rows[:5]), "text/csv"
    for attributes in ("", "reasons=2"):  # reasons do not move the probability
        response = requests.post(server.url + "/invocations", data=body,
                                 headers={"Content-Type": content_type, "Accept": accept,
                                          HEADER: attributes}, timeout=30)
        assert response.status_code == 200, response.text
        if accept == "text/csv":
            found = [float(next(csv.reader([line]))[config["ProbabilityIndex"]])
                     for line in response.text.split("\n")]
        elif accept == "application/jsonlines":
            found = [jmespath.search(config["ProbabilityAttribute"], json.loads(line))
                     for line in response.text.split("\n")]
        else:
            found = jmespath.search(config["ProbabilityAttribute"], response.json())
        assert found == pytest.approx(model.probability(rows[:5]).tolist(), rel=1e-13)


# --- in the report: what the model leans on, per channel and per facet ------------------------

def test_mean_contributions_per_channel_and_facet(tmp_path):
    from support import csv_text, run_train, synthetic, write_tree

    x, y = synthetic(600, d=4, seed=8)
    facet = (x[:, 1] + np.random.default_rng(8).normal(0, 1, 600) > 0).astype(int)
    text = "label,income,debt,age,tenure,group\n" + csv_text(y, np.column_stack([x, facet]))
    lines = text.splitlines(keepends=True)
    base = write_tree(tmp_path, {"num_round": "10", "max_depth": "3", "label_column": "label",
                                 "facet_column": "group", "facet_values_or_threshold": "[1]"},
                      {"train": {"t.csv": "".join(lines[:401])},
                       "test": {"x.csv": lines[0] + "".join(lines[401:])}})
    result = run_train(base)
    assert result.returncode == 0, result.stderr[-2000:]
    model = artifact.load(str(base / "model"), nthread=1)
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    summary = evaluation["channels"]["test"]["mean_abs_contribution"]
    rows, in_d = x[400:], facet[400:] == 1
    size = np.abs(_contributions(model, rows)[:, :-1])
    assert summary["rows"] == 200
    for group, mask in (("all", np.ones(200, bool)), ("a", ~in_d), ("d", in_d)):
        assert list(summary[group]) == model.feature_names  # "group" is the facet, not a feature
        assert list(summary[group].values()) == pytest.approx(size[mask].mean(axis=0).tolist(),
                                                              rel=1e-5)
    data = base / "output" / "data"
    assert (data / "contributions-test.png").stat().st_size > 5000
    assert 'src="contributions-test.png"' in (data / "report.html").read_text()


def test_the_documented_endpoint_config_is_a_valid_request():
    import re

    import botocore.session
    from botocore.validate import ParamValidator

    from support import REPO
    from support import service_constraint_errors

    doc = (REPO / "docs" / "explainability.md").read_text()
    (code,) = re.findall(r"```python\n(sagemaker_client\.create_endpoint_config.*?)```", doc,
                         re.DOTALL)
    sent = {}

    class Client:
        def create_endpoint_config(self, **request):
            sent.update(request)

    exec(code, {"sagemaker_client": Client()})  # noqa: S102 - the docs' own example
    shape = (botocore.session.get_session().get_service_model("sagemaker")
             .operation_model("CreateEndpointConfig").input_shape)
    report = ParamValidator().validate(sent, shape)
    assert not report.has_errors(), report.generate_report()
    errors = []
    service_constraint_errors(sent, shape, "request", errors)
    assert errors == []
    inference_config = sent["ExplainerConfig"]["ClarifyExplainerConfig"]["InferenceConfig"]
    assert inference_config == CLARIFY["text/csv"]
    for config in CLARIFY.values():  # the table shows what the test applies
        for key, value in config.items():
            assert f"`{key}: {value if isinstance(value, int) else repr(value)}`" in doc, key


def test_the_docs_german_credit_tables_are_what_the_script_prints():
    import subprocess
    import sys

    from support import REPO

    done = subprocess.run([sys.executable, str(REPO / "local_test" / "german_reasons.py")],
                          capture_output=True, text=True, timeout=600, check=True)
    doc = (REPO / "docs" / "explainability.md").read_text()
    printed = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    shown = [line for line in doc.split("### South German Credit")[1].split("## In the report")[0]
             .splitlines() if line.startswith("| ")]
    assert printed == shown
    assert "140 of 200 test applicants refused" in done.stdout
    for feature, share in (("status", "77%"), ("savings", "40%"), ("employment_duration", "33%")):
        assert f"`{feature}` {share}" in doc
        assert any(line.split()[0] == feature and f"({share} of refusals)" in line
                   for line in done.stdout.splitlines() if line.startswith("  "))
