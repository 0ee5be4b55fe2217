"""Tuning: the SageMaker tuning-job request (botocore's own validation, the objective found in a real
training log), the SDK snippet, the Gaussian copula and the case study's synthetic rows, a small
``costaware tune`` (multi-objective, resumed) and a small ``costaware sweep``."""

import csv
import json
import re
import subprocess
import sys
import types
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from costaware.metrics import log_lines as metric_log
from costaware.tuning import config, runner
from costaware.tuning.copula import GaussianCopula, norm_cdf, norm_ppf, spearman

from support import (REALISTIC_TUNER_OPTIONS, REPO, costaware_cli, csv_text, service_constraint_errors,
                     synthetic, write_tree)

PREPARE = REPO / "local_test" / "prepare_german_credit.py"
GERMAN_STATICS = {"label_column": "credit_risk", "facet_column": "foreign_worker",
                  "facet_values_or_threshold": "[1]", "facet_is_feature": "true",
                  "cost_fp": "5", "cost_fn": "1"}
def request(**overrides):
    opts = config.TunerOptions(**{**REALISTIC_TUNER_OPTIONS, "statics": dict(GERMAN_STATICS), **overrides})
    return config.build(opts)[0]


# --- the tuning-job request -------------------------------------------------------------------

def _operation():
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model("CreateHyperParameterTuningJob")


def test_request_passes_botocore_validation():
    from botocore.validate import ParamValidator

    shape = _operation().input_shape
    params = request()
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()
    strict = []
    service_constraint_errors(params, shape, "", strict)
    assert strict == []
    config_ = params["HyperParameterTuningJobConfig"]
    assert config_["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize", "MetricName": "validation:combined_objective"}
    ranges = {r["Name"]: r for kind in config_["ParameterRanges"].values() for r in kind}
    assert ranges["eta"]["ScalingType"] == "Logarithmic" and ranges["max_depth"]["ScalingType"] == "Linear"
    assert ranges["num_round"] in config_["ParameterRanges"]["IntegerParameterRanges"]
    assert "fairness_penalty" in ranges  # searched because a facet is set
    definition = params["TrainingJobDefinition"]
    assert all(isinstance(v, str) for v in definition["StaticHyperParameters"].values())
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == metric_log.metric_definitions()
    assert [c["ContentType"] for c in definition["InputDataConfig"]] == ["text/csv"] * 3


def test_placeholders_pass_botocore_but_not_the_service_patterns():
    """botocore checks types, required members and minimums, not patterns: the placeholders are
    well-formed enough to print and validate, and obviously not real."""
    from botocore.validate import ParamValidator

    shape = _operation().input_shape
    params, placeholders = config.build(config.TunerOptions(statics=dict(GERMAN_STATICS)))
    assert set(placeholders) == {"image_uri", "role_arn", "s3_train", "s3_validation", "s3_output"}
    assert not ParamValidator().validate(params, shape).has_errors()
    strict = []
    service_constraint_errors(params, shape, "", strict)
    assert any("RoleArn" in e for e in strict)
    assert "<ACCOUNT_ID>" in params["TrainingJobDefinition"]["RoleArn"]


def test_a_categorical_range_a_static_and_a_bad_one():
    params = request(ranges=("grow_policy=depthwise,lossguide", "alpha=off"),
                     statics={**GERMAN_STATICS, "num_round": "50"}, objective="auc")
    ranges = params["HyperParameterTuningJobConfig"]["ParameterRanges"]
    assert ranges["CategoricalParameterRanges"] == [
        {"Name": "grow_policy", "Values": ["depthwise", "lossguide"]}]
    names = {r["Name"] for kind in ranges.values() for r in kind}
    assert "alpha" not in names and "num_round" not in names  # off, and fixed by a static
    assert params["TrainingJobDefinition"]["StaticHyperParameters"]["num_round"] == "50"
    with pytest.raises(config.ConfigError, match="needs a facet"):
        config.build(config.TunerOptions(objective="validation:dppl"))
    assert "fairness_penalty" not in {r.name for r in config.resolve_ranges({})}
    with pytest.raises(config.ConfigError, match="LOW > 0"):
        request(ranges=("eta=0:0.5:Logarithmic",))
    with pytest.raises(config.ConfigError, match="unknown hyperparameter 'max_depht'"):
        request(statics={**GERMAN_STATICS, "max_depht": "3"})
    with pytest.raises(config.ConfigError, match="leaks"):
        request(objective="test:auc")


def test_sdk_snippet_builds_the_same_job():
    """Run the snippet against stand-ins for the SageMaker SDK classes and compare with the request."""
    params = request()
    seen = {}

    def recorder(name):
        def make(*args, **kwargs):
            seen.setdefault(name, []).append((args, kwargs))
            return types.SimpleNamespace(name=name, args=args, kwargs=kwargs,
                                         fit=lambda *a, **k: seen.setdefault("fit", (a, k)))
        return make

    modules = {"sagemaker": types.ModuleType("sagemaker")}
    for module, names in {"sagemaker.estimator": ["Estimator"], "sagemaker.inputs": ["TrainingInput"],
                          "sagemaker.tuner": ["HyperparameterTuner", "IntegerParameter",
                                              "ContinuousParameter", "CategoricalParameter"]}.items():
        modules[module] = types.ModuleType(module)
        for name in names:
            setattr(modules[module], name, recorder(name))
    saved = {k: sys.modules.get(k) for k in modules}
    sys.modules.update(modules)
    try:
        exec(compile(config.sdk_snippet(params), "<snippet>", "exec"), {})
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    (_, est), = [(a, k) for a, k in seen["Estimator"]]
    definition = params["TrainingJobDefinition"]
    statics = dict(definition["StaticHyperParameters"])
    assert statics.pop("_tuning_objective_metric") == "validation:combined_objective"
    assert est["hyperparameters"] == statics and est["role"] == REALISTIC_TUNER_OPTIONS["role_arn"]
    (_, tuner), = seen["HyperparameterTuner"]
    objective = params["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert (tuner["objective_metric_name"], tuner["objective_type"]) == (objective["MetricName"],
                                                                         objective["Type"])
    assert tuner["metric_definitions"] == definition["AlgorithmSpecification"]["MetricDefinitions"]
    sdk_ranges = {name: (r.name, r.args, r.kwargs.get("scaling_type"))
                  for name, r in tuner["hyperparameter_ranges"].items()}
    for kind, entries in params["HyperParameterTuningJobConfig"]["ParameterRanges"].items():
        for e in entries:
            cls, args, scaling = sdk_ranges.pop(e["Name"])
            assert cls == kind.replace("ParameterRanges", "Parameter")
            assert [float(a) for a in args] == [float(e["MinValue"]), float(e["MaxValue"])]
            assert scaling == e["ScalingType"]
    assert not sdk_ranges
    inputs, fit_kwargs = seen["fit"]
    assert set(inputs[0]) == {"train", "validation", "test"}
    assert fit_kwargs["job_name"] == REALISTIC_TUNER_OPTIONS["job_name"]


def test_cli_prints_the_request_and_the_snippet():
    args = ["tuner-config", "--objective", "auc", "--max-jobs", "20", "--max-parallel", "4"]
    out = costaware_cli(*args, "--static", "cost_fp=5", "--role-arn", REALISTIC_TUNER_OPTIONS["role_arn"])
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["HyperParameterTuningJobConfig"]["ResourceLimits"] == {
        "MaxNumberOfTrainingJobs": 20, "MaxParallelTrainingJobs": 4}
    assert "--image-uri" in out.stderr and "--role-arn" not in out.stderr  # placeholders named
    snippet = costaware_cli(*args, "--sdk")
    assert snippet.returncode == 0 and "HyperparameterTuner(" in snippet.stdout
    bad = costaware_cli("tuner-config", "--objective", "combined")
    assert bad.returncode == 2 and "needs a facet" in bad.stderr


# --- the case study's data -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def german_tree(tmp_path_factory):
    """The case study's tree: 100 synthetic foreign workers relabelled bad, facet as a feature."""
    base = tmp_path_factory.mktemp("gc") / "ml"
    done = subprocess.run([sys.executable, str(PREPARE), str(base), "--synthetic", "100", "--seed",
                           "3", "facet_is_feature=true", "num_round=5"],
                          check=True, capture_output=True, text=True)
    assert "104 of 137 foreign workers bad (75.9%), 296 of 963 others (30.7%)" in done.stdout
    return base


def test_objective_regex_finds_the_metric_in_a_real_training_log(german_tree, tmp_path):
    """A job launched from the request: hyperparameters as SageMaker writes them (statics + one
    value per range, strings), the real entry point, the objective read back with its regex."""
    params = request()
    definition = params["TrainingJobDefinition"]
    metric = params["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    regex = next(d["Regex"] for d in definition["AlgorithmSpecification"]["MetricDefinitions"]
                 if d["Name"] == metric)
    hyperparameters = dict(definition["StaticHyperParameters"])
    for kind, entries in params["HyperParameterTuningJobConfig"]["ParameterRanges"].items():
        for e in entries:
            hyperparameters[e["Name"]] = e.get("MinValue") or e["Values"][0]
    tree = runner.read_tree(str(german_tree))
    directory = runner.make_trial_dir(tree, str(tmp_path / "job"), hyperparameters)
    run = runner.run_training(directory, timeout=120)
    assert run.ok, run.log[-2000:]
    values = [float(v) for v in re.findall(regex, run.log)]
    evaluation = json.loads((tmp_path / "job" / "output" / "data" / "evaluation.json").read_text())
    kept = evaluation["channels"]["validation"]["served"]["combined_objective"]
    assert len(values) == 10 + 1 and values[-1] == pytest.approx(kept, rel=1e-6)  # rounds + final
    cloudwatch = run.log.replace("\t", "#011")
    assert float(re.findall(regex, cloudwatch)[-1]) == values[-1]


def test_synthetic_rows_are_accepted_foreign_workers_relabelled_bad(german_tree):
    frames = [pd.read_csv(german_tree / "input" / "data" / c / f"{c}.csv")
              for c in ("train", "validation", "test")]
    frame = pd.concat(frames)
    assert len(frame) == 1100 and [len(f) for f in frames] == [660, 220, 220]
    original = pd.read_csv(REPO / "local_test" / "data" / "south_german_credit.asc", sep=r"\s+")
    accepted = original[(original.foreign_worker == 1) & (original.credit_risk == 1)]
    merged = frame.merge(original.drop_duplicates(), how="left", indicator=True)
    new = merged[merged["_merge"] == "left_only"]
    assert len(new) >= 95  # a sample could coincide with a real row
    assert (new.foreign_worker == 1).all() and (new.credit_risk == 0).all()
    for column in ("status", "purpose", "savings", "housing", "job"):
        assert set(new[column]) <= set(accepted[column])
    for column in ("duration", "amount", "age"):
        assert accepted[column].min() <= new[column].min() <= new[column].max() <= accepted[column].max()


# --- the copula -----------------------------------------------------------------------------------

def _table(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    cov = [[1, 0.7, -0.4, 0.5], [0.7, 1, -0.2, 0.3], [-0.4, -0.2, 1, 0.0], [0.5, 0.3, 0.0, 1]]
    z = rng.multivariate_normal(np.zeros(4), cov, n)
    return np.column_stack([np.exp(z[:, 0]), np.digitize(z[:, 1], [-0.5, 0.3, 1.2]),
                            (z[:, 2] > 0.4).astype(float), 10 + 3 * z[:, 3] ** 3])


def test_normal_functions():
    assert norm_ppf(np.array([0.975]))[0] == pytest.approx(1.959963984540054, abs=1e-12)
    x = np.linspace(-4, 4, 17)
    assert np.allclose(norm_ppf(norm_cdf(x)), x, atol=1e-9)
    assert norm_cdf(np.array([1.0]))[0] == pytest.approx(NormalDist().cdf(1.0))


def test_copula_reproduces_marginals_and_rank_correlation():
    data = _table()
    discrete = [False, True, True, False]
    copula = GaussianCopula.fit(data, discrete=discrete)
    sample = copula.sample(20000, seed=1)
    assert sample.shape == (20000, 4)
    for j in (1, 2):  # discrete: observed values only, in their observed shares
        values, counts = np.unique(data[:, j], return_counts=True)
        assert set(np.unique(sample[:, j])) <= set(values)
        shares = np.array([(sample[:, j] == v).mean() for v in values])
        assert np.abs(shares - counts / len(data)).max() < 0.015
    for j in (0, 3):  # continuous: same quantiles, never outside the observed range
        qs = [0.1, 0.25, 0.5, 0.75, 0.9]
        spread = np.quantile(data[:, j], 0.9) - np.quantile(data[:, j], 0.1)
        assert np.abs(np.quantile(sample[:, j], qs) - np.quantile(data[:, j], qs)).max() < 0.05 * spread
        assert data[:, j].min() <= sample[:, j].min() and sample[:, j].max() <= data[:, j].max()
    observed, synthetic_ = spearman(data), spearman(sample)
    assert abs(synthetic_[0, 3] - observed[0, 3]) < 0.04  # both continuous
    assert np.abs(synthetic_ - observed).max() < 0.1  # ties in discrete columns attenuate a little
    assert np.sign(synthetic_[0, 2]) == np.sign(observed[0, 2]) == -1


def test_copula_with_few_rows_constant_columns_and_a_seed():
    rng = np.random.default_rng(5)
    data = np.column_stack([rng.integers(1, 5, 12), np.full(12, 7.0), rng.normal(size=(12, 20))])
    copula = GaussianCopula.fit(data)  # 22 columns, 12 rows: singular correlation, made definite
    assert np.all(np.linalg.eigvalsh(copula.correlation) > 0)
    sample = copula.sample(50, seed=2)
    assert (sample[:, 1] == 7).all()
    assert np.array_equal(sample, copula.sample(50, seed=2))
    with pytest.raises(ValueError):
        GaussianCopula.fit(np.array([[1.0, np.nan], [2.0, 3.0]]))


# --- costaware tune and costaware sweep -----------------------------------------------------------

def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_tune_multi_objective_then_resume(german_tree, tmp_path):
    work = tmp_path / "study"
    base = ["tune", "--tree", german_tree, "--work", work, "--objective", "multi", "--jobs", "2",
            "--range", "num_round=3:8", "--seed", "1"]
    first = costaware_cli(*base, "--trials", "3")
    assert first.returncode == 0, first.stdout + first.stderr
    rows = _rows(work / "trials.csv")
    assert [r["trial"] for r in rows] == ["baseline", "0", "1", "2"]
    assert all(r["state"] == "COMPLETE" for r in rows)
    assert sum(r["chosen"] == "True" for r in rows) == 1
    assert (work / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = json.loads((work / "best.json").read_text())
    assert (Path(best["model_dir"]) / "metadata.json").exists() and best["trial"] in (0, 1, 2)
    # trials write no report (the tuner's default), and best.json does not pass that on
    assert not (Path(best["model_dir"]).parent / "output" / "data" / "report.html").exists()
    assert "report" not in best["hyperparameters"]
    # the objective came from the trial's log, and is the kept model's value
    trial = rows[1]
    evaluation = json.loads((work / trial["dir"] / "output" / "data" / "evaluation.json").read_text())
    kept = evaluation["channels"]["validation"]["served"]
    for name in ("auc", "dppl", "expected_cost"):
        assert float(trial[f"validation:{name}"]) == pytest.approx(kept[name], rel=1e-6)
    cm = kept["confusion_matrix"]
    assert float(trial["validation_decided_1"]) == pytest.approx((cm["tp"] + cm["fp"]) / kept["rows"], abs=1e-6)  # CSV keeps 6 decimals
    hyper = json.loads((work / trial["dir"] / "input" / "config" / "hyperparameters.json").read_text())
    assert hyper["num_round"] == trial["num_round"] and hyper["facet_is_feature"] == "true"
    assert 3 <= int(hyper["num_round"]) <= 8

    again = costaware_cli(*base, "--trials", "5")
    assert again.returncode == 2 and "--resume" in again.stderr
    other = costaware_cli(*base, "--trials", "5", "--resume", "--objective", "auc")
    assert other.returncode == 2 and "differs" in other.stderr
    resumed = costaware_cli(*base, "--trials", "5", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = _rows(work / "trials.csv")
    assert [r["trial"] for r in rows] == ["baseline", "0", "1", "2", "3", "4"]
    assert "5 complete" in resumed.stdout and "this run: 2 trials" in resumed.stdout
    import optuna

    study = optuna.load_study(study_name="costaware", storage=f"sqlite:///{work / 'study.db'}")
    assert len(study.trials) == 5 and len(study.directions) == 3


def test_sweep_prices_every_ratio_with_the_trees_costs(tmp_path):
    x, y = synthetic(600, seed=4)
    tree = write_tree(tmp_path / "ml", {"cost_fp": "1", "cost_fn": "5", "num_round": "8",
                                        "max_depth": "3"},
                      {"train": {"t.csv": csv_text(y[:360], x[:360])},
                       "validation": {"v.csv": csv_text(y[360:480], x[360:480])},
                       "test": {"t.csv": csv_text(y[480:], x[480:])}})
    work = tmp_path / "sweep"
    done = costaware_cli("sweep", "--tree", tree, "--work", work, "--ratios", "1,5", "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(work / "sweep.csv")
    assert [float(r["ratio"]) for r in rows] == [1.0, 5.0]
    assert [r["tree_ratio"] for r in rows] == ["False", "True"]  # 5:1 is the tree's own ratio
    assert (work / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    for r in rows:
        evaluation = json.loads((work / r["dir"] / "output" / "data" / "evaluation.json").read_text())
        test = evaluation["channels"]["test"]["served"]
        cm = test["confusion_matrix"]
        # the model's own decisions, priced with the tree's matrix (FP 1, FN 5), whatever it trained on
        assert (int(r["test_fp"]), int(r["test_fn"])) == (cm["fp"], cm["fn"])
        assert float(r["test_cost_per_decision"]) == pytest.approx((cm["fp"] + 5 * cm["fn"]) / test["rows"])
        if r["tree_ratio"] == "True":
            assert float(r["test_cost_per_decision"]) == pytest.approx(test["expected_cost"])


def test_a_choice_worse_than_the_baseline_says_so():
    from costaware.tuning.local import against_baseline

    goal = config.objective("cost", has_facet=False)
    base = {"state": "COMPLETE", "metrics": {"validation:expected_cost": 13380.0}}
    worse = {"metrics": {"validation:expected_cost": 14110.0}}
    better = {"metrics": {"validation:expected_cost": 13000.0}}
    assert against_baseline(worse, base, goal) == (
        "worse than the untuned baseline: validation:expected_cost 1.411e+04 against the "
        "baseline's 1.338e+04")
    assert against_baseline(better, base, goal) is None
    multi = config.objective("multi", has_facet=True)
    base = {"state": "COMPLETE", "metrics": {"validation:auc": 0.8, "validation:dppl": 0.1,
                                             "validation:expected_cost": 1.0}}
    mixed = {"metrics": {"validation:auc": 0.7, "validation:dppl": 0.05,
                         "validation:expected_cost": 1.0}}
    assert against_baseline(mixed, base, multi) is None  # better on |DPPL|: a trade-off
    dominated = {"metrics": {"validation:auc": 0.7, "validation:dppl": 0.2,
                             "validation:expected_cost": 1.1}}
    assert against_baseline(dominated, base, multi).startswith("worse than the untuned baseline")


# --- what every combination of tree and options does (issue #21) ---------------------------------

def _binary_tree(base, hyperparameters, validation=True, facet=False, row_costs=False):
    """A small learnable tree (train, test, optionally validation); ``facet``: feature 5 (0/1)
    is a facet; ``row_costs``: column 6 holds a per-row cost."""
    x, y = synthetic(400, seed=4)
    if facet:
        x[:, 4] = (x[:, 4] > 0.3).astype(int)
    if row_costs:
        x = np.column_stack([x, np.round(np.abs(x[:, 0]) * 3 + 1, 3)])
    channels = {"train": {"t.csv": csv_text(y[:240], x[:240])},
                "test": {"t.csv": csv_text(y[320:], x[320:])}}
    if validation:
        channels["validation"] = {"v.csv": csv_text(y[240:320], x[240:320])}
    else:  # the validation rows train too
        channels["train"] = {"t.csv": csv_text(y[:320], x[:320])}
    return write_tree(base, {"num_round": "5", "max_depth": "3", "cross_fit_folds": "3",
                             **hyperparameters}, channels)


def _one_line_refusal(done, *words):
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def test_sweep_varies_a_two_by_two_cost_matrix_in_that_form(tmp_path):
    tree = _binary_tree(tmp_path / "ml", {"cost_matrix": "[[0, 1], [5, 0]]"})
    work = tmp_path / "sweep"
    done = costaware_cli("sweep", "--tree", tree, "--work", work, "--ratios", "2", "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(work / "sweep.csv")
    assert [float(r["ratio"]) for r in rows] == [2.0, 5.0]
    assert [r["tree_ratio"] for r in rows] == ["False", "True"]
    for r in rows:
        hyper = json.loads((work / r["dir"] / "input" / "config" / "hyperparameters.json")
                           .read_text())
        assert json.loads(hyper["cost_matrix"]) == [[0, 1], [float(r["ratio"]), 0]]
        assert not {"cost_fp", "cost_fn", "cost_tp", "cost_tn"} & set(hyper)
        test = json.loads((work / r["dir"] / "output" / "data" / "evaluation.json")
                          .read_text())["channels"]["test"]["served"]
        cm = test["confusion_matrix"]  # priced with the tree's matrix: FP 1, FN 5
        assert float(r["test_cost_per_decision"]) == pytest.approx(
            (cm["fp"] + 5 * cm["fn"]) / test["rows"])
    # a static cost would be overwritten by every ratio: refused
    _one_line_refusal(costaware_cli("sweep", "--tree", tree, "--work", tmp_path / "other", "--static",
                          "cost_fn=3"), "--static cost_fn")


def test_sweep_refuses_more_than_two_classes_up_front(tmp_path):
    tree = write_tree(tmp_path / "ml", {"classes": '["a", "b", "c"]',
                                        "cost_matrix": "[[0, 1, 2], [1, 0, 1], [4, 1, 0]]"},
                      {"train": {"t.csv": "0,1\n1,2\n2,3\n"}, "test": {"t.csv": "0,1\n1,2\n2,3\n"}})
    work = tmp_path / "sweep"
    _one_line_refusal(costaware_cli("sweep", "--tree", tree, "--work", work), "3 classes")
    assert not list(work.glob("ratio-*"))  # nothing started
    # a test channel the pricing cannot read: its file and line, before anything trains
    bad = write_tree(tmp_path / "bad", {}, {"train": {"t.csv": "0,1\n1,2\n"},
                                            "test": {"t.csv": "0,1\n7,2\n"}})
    _one_line_refusal(costaware_cli("sweep", "--tree", bad, "--work", tmp_path / "bad-sweep"), "t.csv")
    assert not list((tmp_path / "bad-sweep").glob("ratio-*"))


def test_sweep_with_a_facet_and_a_bound(tmp_path):
    tree = _binary_tree(tmp_path / "ml", {"cost_fp": "1", "cost_fn": "5", "facet_column": "5",
                                          "facet_values_or_threshold": "[1]",
                                          "facet_is_feature": "true", "max_abs_dppl": "0.1"},
                        facet=True)
    work = tmp_path / "sweep"
    done = costaware_cli("sweep", "--tree", tree, "--work", work, "--ratios", "1", "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    for r in _rows(work / "sweep.csv"):
        test = json.loads((work / r["dir"] / "output" / "data" / "evaluation.json")
                          .read_text())["channels"]["test"]["served"]
        cm = test["confusion_matrix"]  # the model's own (bounded) decisions, priced alike
        assert (int(r["test_fp"]), int(r["test_fn"])) == (cm["fp"], cm["fn"])


def test_tune_without_a_validation_channel_tunes_on_out_of_fold_metrics(tmp_path):
    """(With per-row costs too: each row's cost of a false negative in column 6.)"""
    tree = _binary_tree(tmp_path / "ml", {"cost_fp": "1", "cost_fn": "5", "cost_fn_column": "6"},
                        validation=False, row_costs=True)
    work = tmp_path / "study"
    done = costaware_cli("tune", "--tree", tree, "--work", work, "--objective", "cost", "--trials", "2",
               "--jobs", "2", "--range", "num_round=3:6", "--range", "max_depth=2,3",
               "--seed", "1", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(work / "trials.csv")
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3  # the baseline and two trials
    assert "validation:expected_cost" not in rows[0]
    for row in rows:
        # the kept round's out-of-fold line (train: without a validation channel), not the
        # final in-sample one
        log = (work / row["dir"] / "train.log").read_text()
        kept = json.loads((work / row["dir"] / "output" / "data" / "evaluation.json")
                          .read_text())["rounds"]["kept"]
        line = re.search(rf"^\[{kept - 1}\]\t.*$", log, re.M).group(0)
        value = float(re.search(r"train:expected_cost=(\S+)", line).group(1))
        assert float(row["held_out:expected_cost"]) == pytest.approx(value, rel=1e-7)
    assert re.search(r"baseline \(the tree's hyperparameters\): auc=\S+ expected_cost=\S+",
                     done.stdout)
    best = json.loads((work / "best.json").read_text())
    assert best["objective"] == ["held_out:expected_cost"]
    assert isinstance(best["tuned"]["max_depth"], int)  # a categorical of numbers stays numbers


def test_tune_refuses_a_one_value_range_and_names_a_bad_static(tmp_path):
    tree = _binary_tree(tmp_path / "ml", {})
    base = ["tune", "--tree", tree, "--work", tmp_path / "study", "--trials", "2",
            "--objective", "auc"]
    _one_line_refusal(costaware_cli(*base, "--range", "num_round=10"), "--static num_round=10")
    done = costaware_cli(*base, "--static", "max_depht=3")
    _one_line_refusal(done, "--static max_depht=3", "unknown hyperparameter 'max_depht'")
    assert "the tree's hyperparameters" not in done.stderr
    _one_line_refusal(costaware_cli(*base, "--static", "max_depth=deep"), "--static max_depth=deep")
    assert not (tmp_path / "study" / "baseline").exists()  # nothing trained
    with pytest.raises(config.ConfigError, match="one value"):
        config.parse_range("grow_policy=lossguide")


def test_tune_stops_at_its_baseline_with_trainings_reason_for_a_channel_in_pipe_mode(tmp_path):
    """The trials run the real ``train`` on the tree's inputdataconfig.json: an input mode training
    refuses ends the study at its baseline run, with training's one line."""
    tree = _binary_tree(tmp_path / "ml", {})
    config = tree / "input" / "config" / "inputdataconfig.json"
    entries = json.loads(config.read_text())
    entries["validation"]["TrainingInputMode"] = "Pipe"
    config.write_text(json.dumps(entries))
    done = costaware_cli("tune", "--tree", tree, "--work", tmp_path / "study", "--trials", "2",
                         "--objective", "auc", "--range", "max_depth=2,3")
    _one_line_refusal(done, "the baseline run (the tree's own hyperparameters) failed: "
                      "inputdataconfig.json: channel 'validation': TrainingInputMode Pipe is not "
                      "supported")
    assert sorted(p.name for p in (tmp_path / "study").iterdir() if p.is_dir()) == ["baseline"]


def test_an_objective_the_trainings_would_not_log_is_refused(tmp_path):
    with pytest.raises(config.ConfigError, match="fairness_metrics lists DI"):
        request(objective="validation:di")
    with pytest.raises(config.ConfigError, match="fairness_metrics lists DPPL"):
        request(objective="validation:dppl", statics={**GERMAN_STATICS, "fairness_metrics": "DI"})
    with pytest.raises(config.ConfigError, match="fairness_metrics lists DI"):  # one value of a range
        request(objective="validation:di", ranges=("fairness_metrics=DI,DPPL,DCA",))
    job = request(objective="validation:di", statics={**GERMAN_STATICS,
                                                      "fairness_metrics": "DPPL,DI"})
    assert job["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"][
        "MetricName"] == "validation:di"
    _one_line_refusal(costaware_cli("tuner-config", "--objective", "validation:di", "--static",
                          "facet_column=f", "--static", "facet_values_or_threshold=[1]"),
                      "validation:di", "fairness_metrics")
    # the local tuner, on a tree with a facet (nothing trains)
    tree = _binary_tree(tmp_path / "ml", {"facet_column": "5", "facet_values_or_threshold": "[1]",
                                          "facet_is_feature": "true"}, facet=True)
    base = ["tune", "--tree", tree, "--work", tmp_path / "study", "--trials", "2"]
    _one_line_refusal(costaware_cli(*base, "--objective", "validation:di"), "fairness_metrics")
    _one_line_refusal(costaware_cli(*base, "--objective", "multi", "--static", "fairness_metrics=DI"),
                      "validation:dppl", "fairness_metrics")
    plain = _binary_tree(tmp_path / "plain", {})
    _one_line_refusal(costaware_cli("tune", "--tree", plain, "--work", tmp_path / "s2", "--trials", "2",
                          "--objective", "combined"), "needs a facet")
    assert not (tmp_path / "study" / "baseline").exists()  # nothing trained
    assert not (tmp_path / "s2" / "baseline").exists()


ONLY_COST_FN = [f"{p}=off" for p in ("num_round", "eta", "max_depth", "min_child_weight", "gamma",
                                     "subsample", "colsample_bytree", "lambda", "alpha",
                                     "fairness_penalty")]


def _tune_cost_fn(tree, work, values: str, trials: int):
    """``costaware tune --objective combined`` over ``cost_fn`` alone (every other range off, so
    every trial grows the same trees): a cost_fn of 1,000,000 against cost_fp 5 decides every
    applicant good. One job: optuna reseeds the sampler of parallel trials."""
    ranges = [arg for spec in ONLY_COST_FN + [f"cost_fn={values}"] for arg in ("--range", spec)]
    return costaware_cli("tune", "--tree", tree, "--work", work, "--objective", "combined",
                         "--trials", trials, "--jobs", "1", "--sampler", "random", "--seed", "2",
                         "--no-baseline", "--quiet", *ranges)


def test_tune_combined_leaves_out_trials_that_decide_alike_for_everyone(german_tree, tmp_path):
    """A trial that approves everyone is at parity by construction (|DPPL| 0) and so scores best on
    the combined objective: it is excluded from the choice, and the table and the summary say so;
    when every trial is such, the tuning says so in one line and exits 2."""
    work = tmp_path / "study"
    done = _tune_cost_fn(german_tree, work, "1,1000000", 4)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(work / "trials.csv")
    alike = [r for r in rows if float(r["validation_decided_1"]) == 1.0]
    deciding = [r for r in rows if 0.0 < float(r["validation_decided_1"]) < 1.0]
    assert alike and deciding and len(alike) + len(deciding) == len(rows) == 4
    # the premise: the one that approves everyone scores best
    assert max(float(r["validation:combined_objective"]) for r in alike) > \
        max(float(r["validation:combined_objective"]) for r in deciding)
    assert {r["chosen"] for r in alike} == {"False"}
    assert sum(r["chosen"] == "True" for r in deciding) == 1
    assert {r["excluded"] for r in alike} == {
        "decides 1 for every validation row: its |DPPL| is 0 by construction"}
    assert {r["excluded"] for r in deciding} == {""}
    best = json.loads((work / "best.json").read_text())
    assert best["trial"] == int(next(r["trial"] for r in deciding if r["chosen"] == "True"))
    assert best["hyperparameters"]["cost_fn"] == "1"
    numbers = ", ".join(r["trial"] for r in alike)
    assert f"excluded from the choice: trial{'s' if len(alike) > 1 else ''} {numbers} (decides 1 " \
        "for every validation row" in done.stdout

    every = _tune_cost_fn(german_tree, tmp_path / "alike", "1000000,2000000", 2)
    _one_line_refusal(every, "every trial decides the same for every validation row")
    assert len(_rows(tmp_path / "alike" / "trials.csv")) == 2
    assert not (tmp_path / "alike" / "best.json").exists()


@pytest.mark.parametrize("entry, words", [
    ({"TrainingInputMode": "Pipe"}, "channel 'test': TrainingInputMode Pipe is not supported"),
    ({"ContentType": 5}, "channel 'test': ContentType must be a string"),
])
def test_sweep_refuses_a_channel_config_training_refuses_with_its_line(tmp_path, entry, words):
    """The sweep reads the validation and test channels itself to price the runs: it checks their
    inputdataconfig.json entries with training's own check first, so it refuses what training
    refuses, in training's words, before any run starts."""
    tree = _binary_tree(tmp_path / "ml", {"cost_fp": "1", "cost_fn": "5"})
    config = tree / "input" / "config" / "inputdataconfig.json"
    entries = json.loads(config.read_text())
    entries["test"].update(entry)
    config.write_text(json.dumps(entries))
    work = tmp_path / "sweep"
    done = costaware_cli("sweep", "--tree", tree, "--work", work, "--ratios", "2", "--jobs", "1")
    _one_line_refusal(done, f"costaware sweep: {tree}: inputdataconfig.json: {words}")
    assert not list(work.glob("ratio-*"))  # nothing trained
