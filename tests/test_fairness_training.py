"""Fairness in training: bias metrics against smclarify on the model's own predictions, the
per-round fairness lines, the parity penalty and the constrained thresholds."""

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from costaware.model import artifact
from costaware.config import hyperparameters
from costaware.metrics import log_lines as metric_log
from costaware.training import pipeline as training
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.data.channel_files import Dataset
from costaware.errors import DataError
from costaware.training.objective import parity_penalty, parity_penalty_grad_hess

from support import REPO, Case, Server, clarify, run_train, same

pytestmark = pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")
PREPARE = REPO / "local_test" / "prepare_german_credit.py"


def german_tree(base, **hyperparameters):
    """South German Credit trained by the real ``train`` (no report: no test here reads it)."""
    args = [f"{k}={v}" for k, v in {"num_round": "30", "report": "false",
                                    **hyperparameters}.items()]
    subprocess.run([sys.executable, str(PREPARE), str(base), *args], check=True, capture_output=True)
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def unconstrained(tmp_path_factory):
    base = tmp_path_factory.mktemp("gc") / "ml"
    log = german_tree(base)
    return base, log


def _validation(base, channel="test"):
    frame = pd.read_csv(base / "input" / "data" / channel / f"{channel}.csv")
    model = artifact.load(str(base / "model"))
    features = frame[model.feature_names].to_numpy(np.float32)
    return frame, model, model.probability(features)


def _decide(model, p, sensitive=None):
    return model.policy.decide(p, RowCosts.constant(model.policy.costs, len(p)), sensitive)[0]


def test_bias_section_matches_smclarify_on_the_models_predictions(unconstrained):
    base, _ = unconstrained
    frame, model, score = _validation(base)
    assert "foreign_worker" not in model.feature_names  # measured only, by default
    y = frame["credit_risk"].to_numpy() == 1
    s = frame["foreign_worker"].to_numpy() == 1
    yhat = _decide(model, score) == 1
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    section = evaluation["channels"]["test"]["bias"]  # the model's own decisions on test
    assert section["facet_rows"] == {"a": int((~s).sum()), "d": int(s.sum())}
    case = Case(y=y, yhat=yhat, s=s, facet=frame["foreign_worker"].to_numpy())
    compared = 0
    for name, ours in section["post_training"].items():
        kind, ref = clarify(name, case)
        ours = float(ours) if isinstance(ours, str) else ours  # "inf" in JSON
        assert (kind == "error" and ours is None) or same(ours, ref), name
        compared += 1
    for name, ours in section["pre_training"].items():
        kind, ref = clarify(name, case)
        assert (kind == "error" and ours is None) or same(ours, ref), name
        compared += 1
    assert compared >= 17


def test_fairness_metric_lines(unconstrained):
    base, log = unconstrained
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    for d in metric_log.metric_definitions():
        channel, name = d["Name"].split(":")
        if name not in ("dppl", "di", "combined_objective"):
            continue
        values = [float(v) for v in re.findall(d["Regex"], log)]
        if name == "di":
            assert not values  # logged only when asked for (fairness_metrics)
            continue
        assert values, d["Name"]
        assert values[-1] == pytest.approx(evaluation["channels"][channel]["served"][name], rel=1e-6)
    final = evaluation["channels"]["validation"]["served"]
    assert final["dppl"] == pytest.approx(abs(evaluation["channels"]["validation"]["bias"]["post_training"]["DPPL"]))
    assert final["combined_objective"] == pytest.approx((3 * final["auc"] + 1 - final["dppl"]) / 4)


def test_constrained_rules(tmp_path, unconstrained):
    """Fitted on the held-out rows under |DPPL| <= 0.02: the bound holds on them (exactly, on the
    validation channel when it is the held-out set), costs at least the cheapest free shift there
    (decision_rule empirical), and one shift per facet is never dearer than one for both."""
    base, _ = unconstrained
    bound = 0.02
    runs = {}
    for name, extra in (("single", {}), ("group", {"group_thresholds": "true"}),
                        ("single-validation", {"calibration_data": "validation"}),
                        ("group-validation", {"calibration_data": "validation",
                                              "group_thresholds": "true"}),
                        ("free-validation", {"calibration_data": "validation",
                                             "decision_rule": "empirical"})):
        run_base = tmp_path / name
        log = german_tree(run_base, **({"max_abs_dppl": str(bound)} if "free" not in name else {}),
                          **extra)
        runs[name] = (run_base, log, json.loads((run_base / "output" / "data" / "evaluation.json")
                                                .read_text())["channels"]["validation"])
    for name in ("single", "group"):  # cross-fitted: the bound holds on the out-of-fold rows
        held = re.search(r"\(held-out DPPL ([-+0-9.e]+)\)", runs[name][1])
        assert held and abs(float(held.group(1))) <= bound + 1e-12, runs[name][1][-2000:]
    free = runs["free-validation"][2]["served"]
    single, group = runs["single-validation"][2], runs["group-validation"][2]
    for result in (single, group):
        assert abs(result["bias"]["post_training"]["DPPL"]) <= bound + 1e-12
        assert result["served"]["expected_cost"] >= free["expected_cost"] - 1e-12
    assert group["served"]["expected_cost"] <= single["served"]["expected_cost"] + 1e-12
    group_base = runs["group-validation"][0]
    meta = json.loads((group_base / "model" / "metadata.json").read_text())["decision_policy"]
    assert meta["rule"]["kind"] == "constrained" and set(meta["rule"]["shift"]) == {"a", "d"}
    assert meta["rule"]["max_abs_dppl"] == bound
    assert meta["facet"] == {"column": "foreign_worker", "values_or_threshold": [1], "is_feature": False}
    # the saved policy reproduces the validation decisions with the facet
    frame, model, score = _validation(group_base, "validation")
    s = frame["foreign_worker"].to_numpy() == 1
    decisions = _decide(model, score, s)
    kind, ref = clarify("DPPL", Case(y=frame["credit_risk"].to_numpy() == 1, yhat=decisions == 1, s=s))
    assert same(group["bias"]["post_training"]["DPPL"], ref)
    with pytest.raises(ValueError, match="every row needs its facet"):
        _decide(model, score)
    _serve_with_facet(group_base, frame, model, decisions, tmp_path)


def _serve_with_facet(base, frame, model, decisions, log_dir):
    """The real server decides each row with its facet's threshold; the facet comes last."""
    import requests
    server = Server(str(base / "model"), log_dir, workers=1)
    try:
        server.wait_ready()
        rows = frame[model.feature_names + ["foreign_worker"]].to_numpy(float)
        body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
        answer = requests.post(server.url + "/invocations", data=body,
                               headers={"Content-Type": "text/csv"}, timeout=30)
        assert answer.status_code == 200, answer.text
        got = answer.json()
        predictions = got["predictions"] if isinstance(got, dict) else got
        assert [p["decision"] for p in predictions] == decisions.tolist()
        s = frame["foreign_worker"].to_numpy() == 1
        costs = RowCosts.constant(model.policy.costs, len(s))
        assert np.allclose([p["threshold"] for p in predictions],
                           model.policy.rule.thresholds(costs, s))
        assert {p["rule"] for p in predictions} == {"constrained"}
        keyed = [dict(zip(model.feature_names, map(float, row))) for row in rows[:2, :-1]]
        missing = requests.post(server.url + "/invocations", json={"instances": keyed}, timeout=30)
        assert missing.status_code == 400 and "foreign_worker" in missing.json()["error"]
        short = "\n".join(",".join(repr(float(v)) for v in row[:-1]) for row in rows[:2])
        refused = requests.post(server.url + "/invocations", data=short,
                                headers={"Content-Type": "text/csv"}, timeout=30)
        assert refused.status_code == 400, refused.text
    finally:
        server.stop()


def _synthetic_biased(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.random(n) < 0.3
    x = rng.normal(size=(n, 4))
    x[:, 0] += np.where(s, -1.0, 0.5)  # a proxy of the facet
    logit = 1.2 * x[:, 0] + 0.5 * x[:, 1] - 0.3
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return x.astype(np.float32), y, s.astype(float) + 1  # facet coded 1 = a, 2 = d


def _train_in_process(penalty):
    x, y, facet = _synthetic_biased()
    settings = hyperparameters.parse({"facet_column": "facet", "facet_values_or_threshold": "[2]",
                                      "fairness_penalty": str(penalty), "num_round": "40",
                                      "cost_fp": "1", "cost_fn": "2", "max_depth": "3"})
    data = Dataset(x, y, ["x0", "x1", "x2", "x3"], RowCosts.constant(CostMatrix(1, 2), len(y)),
                   "mem", True, facet=facet)
    result = training.train(settings, data, log=lambda line: None)
    margin = result.booster.inplace_predict(x, predict_type="margin")
    return result, result.policy.probability(margin), facet == 2


def test_parity_penalty_narrows_the_gap():
    gaps = {}
    for penalty in (0.0, 20.0):
        result, p, s = _train_in_process(penalty)
        gaps[penalty] = abs(p[~s].mean() - p[s].mean())
    assert gaps[20.0] < 0.5 * gaps[0.0], gaps


@pytest.mark.parametrize("seed", range(3))
def test_parity_penalty_derivatives_match_finite_differences(seed):
    rng = np.random.default_rng(seed)
    n = 40
    margin = rng.normal(scale=2, size=n)
    s = rng.random(n) < 0.4
    grad, hess = parity_penalty_grad_hess(margin, s, 3.0)
    h = 1e-5
    for i in range(n):
        up, down = margin.copy(), margin.copy()
        up[i] += h
        down[i] -= h
        numeric = (parity_penalty(up, s, 3.0) - parity_penalty(down, s, 3.0)) / (2 * h)
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
        second = (parity_penalty_grad_hess(up, s, 3.0)[0][i] - parity_penalty_grad_hess(down, s, 3.0)[0][i]) / (2 * h)
        assert hess[i] == pytest.approx(second, rel=1e-4, abs=1e-8)


def test_multiclass_labels_collapsed_by_clarifys_rule(tmp_path):
    from support import write_tree
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3))
    grade = np.clip(np.round(x[:, 0] + 3 + rng.normal(scale=0.5, size=300)), 1, 5).astype(int)
    facet = (rng.random(300) < 0.3).astype(int)
    frame = pd.DataFrame({"grade": grade, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "sex": facet})
    base = write_tree(tmp_path, {"label_column": "grade", "label_values_or_threshold": "[4, 5]",
                                 "facet_column": "sex", "facet_values_or_threshold": "[1]",
                                 "num_round": "5"},
                      {"train": {"t.csv": frame.iloc[:200].to_csv(index=False)},
                       "validation": {"v.csv": frame.iloc[200:].to_csv(index=False)}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    ev = json.loads((base / "output" / "data" / "evaluation.json").read_text())["channels"]["validation"]
    cm = ev["served"]["confusion_matrix"]
    assert cm["tp"] + cm["fn"] == int(np.isin(grade[200:], [4, 5]).sum())
    assert ev["bias"]["pre_training"]["CI"] == pytest.approx(
        ((facet[200:] == 0).sum() - (facet[200:] == 1).sum()) / 100)


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    """South German Credit with fairness_metrics DI,DCA (DPPL not listed, DI first), a bound
    fitted on the out-of-fold rows, and a test channel without a row in facet d."""
    base = tmp_path_factory.mktemp("listed") / "ml"
    args = ["num_round=20", "fairness_metrics=DI,DCA", "max_abs_dppl=0.1"]
    subprocess.run([sys.executable, str(PREPARE), str(base), *args], check=True, capture_output=True)
    test_csv = base / "input" / "data" / "test" / "test.csv"
    frame = pd.read_csv(test_csv)
    frame[frame["foreign_worker"] != 1].to_csv(test_csv, index=False)
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    return base, result.stdout + result.stderr, evaluation


def test_a_test_channel_without_facet_d_has_undefined_bias_metrics(listed):
    """Issue #21, 8: the job no longer fails; the log, evaluation.json and the report say why the
    test channel's bias metrics are missing."""
    base, log, evaluation = listed
    assert ("warning: test channel: facet 'foreign_worker' with facet_values_or_threshold [1]: no "
            "row is in the sensitive group d (facet d is empty): its bias metrics") in log
    test = evaluation["channels"]["test"]
    assert test["bias"]["facet_rows"]["d"] == 0 and test["bias"]["post_training"]["DPPL"] is None
    assert "facet d has no row on this channel" in test["bias"]["undefined"]
    assert test["served"]["combined_objective"] is None and test["served"]["auc"] > 0.5
    assert "Facet d is empty on this channel" in (base / "output" / "data" / "report.html").read_text()


def test_every_logged_metric_has_a_definition_and_the_objective_is_on_dppl(listed):
    """Issue #21, 10: every channel:name= in a real log has a published regex (DCA is listed
    here, and the rule's shift is logged); combined_objective is on |DPPL| whatever
    fairness_metrics lists first; dppl is not logged when not listed."""
    base, log, evaluation = listed
    published = {d["Name"] for d in metric_log.published_definitions()}
    logged = set(re.findall(r"\b(train|validation|test):(\w+)=", log))
    assert logged and {f"{c}:{n}" for c, n in logged} <= published
    assert re.search(r"\tvalidation, not published: dca [-+0-9.e]+", log)
    assert "validation:dppl=" not in log and "validation:di=" in log
    served = evaluation["channels"]["validation"]["served"]
    dppl = abs(evaluation["channels"]["validation"]["bias"]["post_training"]["DPPL"])
    assert served["combined_objective"] == pytest.approx((3 * served["auc"] + 1 - dppl) / 4)
    # the held-out DPPL the bound was fitted to, beside the test figures
    rule = evaluation["policy"]["rule"]
    held = float(re.search(r"\(held-out DPPL ([-+0-9.e]+)\)", log).group(1))
    assert rule["held_out_dppl"] == pytest.approx(held, abs=1e-4) and abs(held) <= 0.1 + 1e-12
    assert "on the held-out rows it was fitted on" in (base / "output" / "data" / "report.html").read_text()


def _facet_datasets(test_facet):
    x, y, facet = _synthetic_biased(n=900)
    costs = RowCosts.constant(CostMatrix(1, 2), len(y))

    def part(rows, facet_values):
        return Dataset(x[rows], y[rows], ["x0", "x1", "x2", "x3"], costs.subset(rows), "mem", True,
                       facet=facet_values)

    train, validation = part(slice(0, 600), facet[:600]), part(slice(600, 800), facet[600:800])
    return train, validation, part(slice(800, 900), np.full(100, test_facet))


def test_a_test_channel_without_facet_a_is_measured_and_held_out_rows_still_need_both():
    settings = {"facet_column": "facet", "facet_values_or_threshold": "[2]", "num_round": "8",
                "cost_fp": "1", "cost_fn": "2", "calibration_data": "validation"}
    train, validation, test = _facet_datasets(2.0)  # every test row in facet d
    lines = []
    result = training.train(hyperparameters.parse(settings), train, validation, test,
                            log=lines.append)
    assert any("test channel" in l and "every row is in the sensitive group d (facet a is "
               "empty)" in l for l in lines)
    assert "facet a has no row" in result.channels["test"].bias["undefined"]
    assert np.isnan(result.channels["test"].metrics["dppl"])
    # a bound is fitted on the validation rows: there both facets are still required
    one_facet = _facet_datasets(2.0)[2]
    with pytest.raises(DataError) as info:
        training.train(hyperparameters.parse({**settings, "max_abs_dppl": "0.1"}), train,
                       one_facet, None, log=lines.append)
    assert ("validation channel: facet 'facet' with facet_values_or_threshold [2]: every row is "
            "in the sensitive group d; max_abs_dppl 0.1 is fitted on these rows, which needs rows "
            "in both facets") == str(info.value)
