"""The image's real ``train`` entry point on temporary /opt/ml trees: outputs, log lines, failures."""

import gzip
import io
import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from costaware.errors import InputError
from costaware.model import artifact
from costaware.sagemaker import training_job
from costaware.model import inference
from costaware.metrics import log_lines as metric_log

from support import BIN, csv_text, failure_reason, run_train, synthetic, write_tree

X, Y = synthetic(400, seed=1)
TRAIN = csv_text(Y[:300], X[:300])
VALID = csv_text(Y[300:], X[300:])
FAST = {"num_round": "5", "max_depth": "2"}


def test_breast_cancer_outputs(breast_cancer_tree):
    base = breast_cancer_tree
    assert (base / "output" / "success").exists() and not (base / "output" / "failure").exists()
    files = sorted(p.name for p in (base / "model").iterdir())
    assert files == ["baseline", "metadata.json", "xgboost-model.ubj"]
    assert sorted(p.name for p in (base / "model" / "baseline").iterdir()) == \
        ["constraints.json", "statistics.json"]
    meta = json.loads((base / "model" / "metadata.json").read_text())
    assert meta["feature_names"] == [f"f{i}" for i in range(30)]
    assert meta["request_columns"] == meta["feature_names"]  # no cost columns, no facet
    policy = meta["decision_policy"]
    assert policy["costs"] == {"cost_fp": 1287.67, "cost_fn": 252000.0, "cost_tp": 35280.0, "cost_tn": 0.0}
    assert policy["rule"] == {"kind": "bayes"} and policy["cost_columns"] == {}
    calibrator = policy["calibrator"]
    assert calibrator["rows"] == 340 + 86  # out of fold
    assert meta["held_out"].startswith("out-of-fold margins of 5 fold models over train and validation")
    assert meta["served_model"] == "fold_average"
    # the calibrator the evidence chose, over the 5 cross-fitting folds (isotonic needs 1,000
    # rows): Platt, unless another saves more than one paired s.e. plus one unseen mistake of
    # the costliest kind per held-out row (a missed cancer, $216,720, over 426 rows)
    choice = json.loads((base / "output" / "data" / "evaluation.json").read_text()
                        )["calibrator_choice"]
    assert choice["chosen"] == calibrator["method"] and choice["folds"] == 5
    assert choice["rows"] == 426 and set(choice["candidates"]) == {"identity", "platt"}
    identity = choice["candidates"]["identity"]
    assert identity["unseen_mistake_per_row"] == pytest.approx((252000 - 35280) / 426)
    earns = identity["cost_gain_over_default"] > (identity["cost_gain_se"]
                                                  + identity["unseen_mistake_per_row"])
    assert choice["chosen"] == ("identity" if earns else "platt")
    assert f"calibrator: {choice['chosen']} (Platt scaling unless" in (base / "train.log").read_text()
    assert set(meta["versions"]) >= {"costaware", "xgboost", "numpy", "python"}
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    assert set(evaluation["channels"]) == {"train", "validation", "test"}
    assert evaluation["channels"]["validation"]["scored_by"] == "out-of-fold"
    assert evaluation["channels"]["validation"]["fitted_on_these_rows"] == ["calibrator", "rule", "round"]
    assert evaluation["channels"]["test"]["fitted_on_these_rows"] == []
    for channel in evaluation["channels"].values():
        for key in ("served", "probability_0.5"):
            m = channel[key]
            cm = m["confusion_matrix"]
            assert cm["tp"] + cm["fp"] + cm["fn"] + cm["tn"] == m["rows"]
            assert m["expected_cost"] == pytest.approx(m["expected_cost_total"] / m["rows"])
            assert {"auc", "logloss", "brier", "ece", "savings", "precision", "recall", "f1",
                    "accuracy", "reliability"} <= set(m)
            assert sum(b["rows"] for b in m["reliability"]) == m["rows"]


def test_served_decisions_beat_deciding_the_same_for_everyone_on_test(breast_cancer_tree):
    """The demo's split: the served Bayes decisions cost less than biopsying every patient (the
    cheaper uniform decision) and than the cost-blind p >= 0.5, and miss no cancer."""
    test = json.loads((breast_cancer_tree / "output" / "data" / "evaluation.json").read_text())["channels"]["test"]
    served = test["served"]
    assert served["savings"] > 0
    assert served["expected_cost_total"] < served["cost_all_1"] < served["cost_all_0"]
    assert served["expected_cost"] < test["probability_0.5"]["expected_cost"]
    assert served["confusion_matrix"]["fn"] == 0


def test_metric_definitions_parse_the_real_log(breast_cancer_tree):
    log = (breast_cancer_tree / "train.log").read_text()
    definitions = metric_log.published_definitions()
    assert definitions == metric_log.metric_definitions(), "regenerate: python -m costaware.metrics.log_lines"
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
        assert values[-1] == pytest.approx(evaluation["channels"][channel]["served"][name], rel=1e-6)
        if channel == "validation":
            assert len(values) == rounds + 1  # every round, and once more at the end
    # CloudWatch shows a tab as #011: the regexes must still match
    line = next(l for l in log.splitlines() if l.startswith("[3]"))
    cloudwatch = line.replace("\t", "#011")
    auc = next(d for d in definitions if d["Name"] == "validation:auc")
    assert re.search(auc["Regex"], cloudwatch).group(1) == re.search(auc["Regex"], line).group(1)
    # the log says which rows fitted what
    assert "[final] validation: scored by the fold models (out of fold); fitted on these rows: " \
           "calibrator, rule, round\n" in log  # the demo tree stops early
    assert "[final] test: scored by the model; nothing was fitted on these rows" in log


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
    """Two cost columns (a loss given default and the lost interest), gzip CSV and Parquet."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame.insert(2, "default", Y)
    frame["loss"] = rng.uniform(100, 10000, 400).round(2)
    frame["interest"] = (frame["loss"] * rng.uniform(0.02, 0.1, 400)).round(2)
    buffer = io.StringIO()
    frame.iloc[:300].to_csv(buffer, index=False)
    parquet = io.BytesIO()
    frame.iloc[300:].to_parquet(parquet)
    base = write_tree(tmp_path, {**FAST, "label_column": "default", "cost_fn_column": "loss",
                                 "cost_fp_column": '"interest"', "cost_fn": "5000", "cost_fp": "300"},
                      {"train": {"part-0.csv.gz": gzip.compress(buffer.getvalue().encode())},
                       "validation": {"v.parquet": parquet.getvalue()}},
                      {"validation": "application/x-parquet"})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    meta = json.loads((base / "model" / "metadata.json").read_text())
    assert meta["feature_names"] == [f"x{i}" for i in range(X.shape[1])]  # label and costs out
    assert meta["request_columns"] == meta["feature_names"] + ["interest", "loss"]  # fp, fn order
    assert meta["decision_policy"]["cost_columns"] == {"fp": "interest", "fn": "loss"}
    ev = json.loads((base / "output" / "data" / "evaluation.json").read_text())["channels"]["validation"]
    m = ev["served"]
    # realised costs at each row's own costs: FN = loss, FP = interest
    val = frame.iloc[300:]
    assert m["cost_per_cell"]["tp"] == 0 and m["cost_per_cell"]["tn"] == 0
    assert m["cost_all_0"] == pytest.approx(val.loss[val.default == 1].sum())
    assert m["cost_all_1"] == pytest.approx(val.interest[val.default == 0].sum())


def test_without_validation_cross_fits_the_train_channel(tmp_path):
    base = write_tree(tmp_path, {**FAST, "cost_fp": "1", "cost_fn": "4"}, {"train": {"t.csv": TRAIN}})
    result = run_train(base)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "held out: out-of-fold margins of 5 fold models over train;" in result.stdout
    assert "[0]\ttrain:auc=" in result.stdout  # the watched rows: train's, out of fold
    ev = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    assert set(ev["channels"]) == {"train"} and ev["policy"]["calibrator"]["rows"] == 300


def test_calibration_on_the_validation_channel(tmp_path):
    base = write_tree(tmp_path, {**FAST, "calibration_data": "validation", "decision_rule": "empirical"},
                      {"train": {"t.csv": TRAIN}, "validation": {"v.csv": VALID}})
    result = run_train(base)
    assert result.returncode == 0, result.stderr[-2000:]
    ev = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    assert ev["policy"]["calibrator"]["rows"] == 100 and ev["policy"]["rule"]["kind"] == "empirical"
    assert ev["channels"]["validation"]["scored_by"] == "model"
    assert ev["channels"]["validation"]["fitted_on_these_rows"] == ["calibrator", "rule"]
    assert ev["channels"]["train"]["fitted_on_these_rows"] == ["trees"]
    assert "decision rule: the Bayes boundary shifted by" in result.stdout



def test_a_one_class_test_channel_saves_the_model_with_undefined_metrics_as_null(tmp_path):
    """AUC and savings of a test channel with no positive row are undefined: null in the model's
    metadata and evaluation.json (JSON has no NaN), not a job lost after training."""
    negatives = Y == 0
    test = csv_text(Y[negatives][:40], X[negatives][:40])
    base = write_tree(tmp_path, FAST, {"train": {"t.csv": TRAIN}, "validation": {"v.csv": VALID},
                                       "test": {"t.csv": test}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    metadata = json.loads((base / "model" / "metadata.json").read_text())
    assert metadata["metrics"]["test"]["auc"] is None
    assert isinstance(metadata["metrics"]["validation"]["auc"], float)
    ev = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    assert ev["channels"]["test"]["served"]["auc"] is None


def test_a_facet_that_is_a_feature_of_a_headerless_file_is_asked_for_once(tmp_path):
    """facet_column 3 counts the label: the facet is feature f2. A rule with one shift per facet
    reads it from the features; requests must not carry it a second time."""
    x = X.copy()
    x[:, 2] = (x[:, 2] > 0).astype(float)
    settings = {**FAST, "facet_column": "3", "facet_values_or_threshold": "[1]",
                "facet_is_feature": "true", "max_abs_dppl": "0.1", "group_thresholds": "true"}
    base = write_tree(tmp_path, settings, {"train": {"t.csv": csv_text(Y[:300], x[:300])},
                                           "validation": {"v.csv": csv_text(Y[300:], x[300:])}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    metadata = json.loads((base / "model" / "metadata.json").read_text())
    assert metadata["request_columns"] == ["f0", "f1", "f2", "f3", "f4"]
    assert metadata["decision_policy"]["facet"]["column"] == "f2"
    model = artifact.load(str(base / "model"))
    assert model.policy.rule.per_facet
    threshold = inference.predict(model, x[300:].astype(np.float64))["threshold"]
    sensitive = x[300:, 2] == 1  # each facet at its own threshold, read from feature f2
    assert len(set(threshold[sensitive])) == 1 and len(set(threshold[~sensitive])) == 1
    assert threshold[sensitive][0] != threshold[~sensitive][0]

def test_a_regret_that_rounds_below_zero_is_zero_not_a_negative_weight(tmp_path):
    """cost_fn 0.3 and a cost_tp column holding 0.1 + 0.2 = 0.30000000000000004: the regret is
    -5.6e-17 in floating point, which once ended the job with XGBoost's "Weights must be positive
    values"; it is rounding, so the row weighs as a zero regret (the floor of the weights)."""
    frame = FRAME.assign(hit=np.where(FRAME.index < 50, 0.1 + 0.2, 0.0))
    base = write_tree(tmp_path, {**FAST, **NAMED, "cost_tp_column": "hit", "cost_fn": "0.3",
                                 "cost_weight_exponent": "1"},
                      _train_csv(_header_csv(frame)))
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Weights must be positive" not in result.stdout + result.stderr


def test_early_stopping_on_held_out_log_loss_and_the_round_0_warning(tmp_path):
    # constant features: no tree can split, so no round after the first improves anything
    noise = csv_text(np.random.default_rng(5).integers(0, 2, 300), np.ones((300, 3)))
    base = write_tree(tmp_path, {"num_round": "60", "eta": "0.3", "early_stopping_rounds": "5"},
                      {"train": {"t.csv": noise}})
    result = run_train(base)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning: early stopping kept round 0 only" in result.stdout
    meta = json.loads((base / "model" / "metadata.json").read_text())
    assert meta["best_iteration"] == 0 and meta["rounds_trained"] == 6
    # the out-of-fold rows chose the round as well as fitting the calibrator and the rule
    channels = json.loads((base / "output" / "data" / "evaluation.json").read_text())["channels"]
    assert channels["train"]["fitted_on_these_rows"] == ["trees", "calibrator", "rule", "round"]


def _train_csv(rows: str) -> dict:
    return {"train": {"t.csv": rows}}


def _config(text: str):
    """Overwrite inputdataconfig.json with ``text``."""
    return lambda base: (base / "input" / "config" / "inputdataconfig.json").write_text(text)


def _pipe_mode(base):
    """What SageMaker lays out for a Pipe-mode train channel: the mode in inputdataconfig.json, a
    FIFO per pass named <channel>_<epoch>, and no channel directory (nothing opens the FIFO: the
    job is refused before any data is read)."""
    _config('{"train": {"ContentType": "text/csv", "TrainingInputMode": "Pipe"}}')(base)
    data = base / "input" / "data"
    shutil.rmtree(data / "train")
    os.mkfifo(data / "train_0")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _header_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


FRAME = pd.DataFrame(X[:300], columns=[f"x{i}" for i in range(X.shape[1])]).assign(
    default=Y[:300], loan=np.linspace(100, 5000, 300).round(2),
    sex=np.where(X[:300, 2] > 0, 2, 1))
NAMED = {"label_column": "default"}
PARQUET = {"train": "application/x-parquet"}
GZ = gzip.compress(TRAIN.encode())

# (id, hyperparameters, channels, content types, fragment of the failure reason[, setup(base)])
BAD = [
    ("no train channel", {}, {"validation": {"v.csv": VALID}}, None, "the 'train' channel is required"),
    ("empty channel", {}, {"train": {"empty.csv": ""}}, None, "holds no data files: only empty files (empty.csv)"),
    ("non-numeric", {}, _train_csv(TRAIN + "1,2,abc,3,4,5\n"), None, "t.csv: line 301, column 3: 'abc' is not a number"),
    ("label 2", {}, _train_csv(TRAIN + "2,1,1,1,1,1\n"), None, "t.csv: line 301, column 1 (label): 2"),
    ("single class", {}, _train_csv(csv_text(np.zeros(20), X[:20])), None, "all 20 rows have label 0; training"),
    ("validation single class", {}, {"train": {"t.csv": TRAIN}, "validation": {"v.csv": csv_text(np.ones(9), X[:9])}},
     None, "validation channel"),
    ("validation columns", {}, {"train": {"t.csv": TRAIN}, "validation": {"v.csv": csv_text(Y[:9], X[:9, :4])}},
     None, "columns differ from the train channel (4 feature columns, train has 5)"),
    ("unknown hyperparameter", {"max_depht": "3"}, _train_csv(TRAIN), None, "unknown hyperparameter 'max_depht'"),
    ("bad value", {"eta": "fast"}, _train_csv(TRAIN), None, "hyperparameter 'eta': 'fast' is not a valid float"),
    ("negative cost", {"cost_fn": "-5"}, _train_csv(TRAIN), None, "hyperparameter 'cost_fn': '-5' is out of range"),
    ("equal decisions", {"cost_fp": "2", "cost_tn": "3"}, _train_csv(TRAIN), None, "'cost_fp' (2) must exceed 'cost_tn' (3)"),
    ("unknown channel", {}, {"train": {"t.csv": TRAIN}, "extra": {"e.csv": TRAIN}}, None, "unknown channel(s) extra"),
    ("cost column", {"cost_fn_column": "9"}, _train_csv(TRAIN), None, "no cost_fn column '9'"),
    ("content type", {}, _train_csv(TRAIN), {"train": "application/x-image"},
     "content type 'application/x-image' is not supported (use text/csv, application/x-parquet, "
     "text/libsvm or application/x-recordio-protobuf)"),
    ("ragged csv", {}, _train_csv(TRAIN + "1,2,3,4,5,6,7\n"), None, "t.csv: line 301 has 7 values where line 1 has 6"),
    ("infinite", {}, _train_csv(TRAIN + "1,inf,1,1,1,1\n"), None, "line 301, column 2: infinite value"),
    ("beyond float32", {}, _train_csv(TRAIN + "1,1,-1e39,1,1,1\n"), None,
     "line 301, column 3: -1e+39 is beyond float32's range"),
    # --- configuration files ---
    ("channel entry not an object", {}, _train_csv(TRAIN), None,
     "inputdataconfig.json: channel 'train' must be a JSON object", _config('{"train": "text/csv"}')),
    ("ContentType not a string", {}, _train_csv(TRAIN), None,
     "channel 'train': ContentType must be a string such as \"text/csv\", not 5",
     _config('{"train": {"ContentType": 5}}')),
    ("declared channel missing", {}, _train_csv(TRAIN), None, "input/data/validation does not exist",
     _config('{"train": {}, "validation": {}}')),
    ("Pipe input mode", {}, _train_csv(TRAIN), None,
     "inputdataconfig.json: channel 'train': TrainingInputMode Pipe is not supported: Pipe streams "
     "the channel as one FIFO (input/data/train_0) and costaware reads a channel's files; use File, "
     "or FastFile to stream the files from S3 without the download", _pipe_mode),
    ("unknown input mode", {}, {"train": {"t.csv": TRAIN}, "validation": {"v.csv": VALID}}, None,
     "inputdataconfig.json: channel 'validation': TrainingInputMode \"Fast\"; valid: File, FastFile",
     _config('{"train": {}, "validation": {"TrainingInputMode": "Fast"}}')),
    # --- channel directories and files ---
    ("directories only", {}, {"train": {"part/.keep": ""}}, None,
     "holds no data files: only hidden, marker or special files, which are skipped: part/.keep (hidden)"),
    ("empty subdirectory only", {}, {"train": {}}, None, "holds no data files: only 1 directory without files",
     lambda base: (base / "input" / "data" / "train" / "sub").mkdir(parents=True)),
    ("gzip truncated", {}, {"train": {"t.csv.gz": GZ[: len(GZ) // 2]}}, None,
     "t.csv.gz: cannot be read as CSV: Compressed file ended before the end-of-stream marker"),
    ("UTF-16", {}, _train_csv(TRAIN.encode("utf-16")), None, "t.csv: UTF-16 text (it starts with a UTF-16 byte-order mark)"),
    ("semicolon separated", {}, _train_csv(TRAIN.replace(",", ";")), None,
     "no feature columns besides the label (the first line holds '0;0.345584;"),
    ("files with different columns", {}, {"train": {"a.csv": TRAIN, "b.csv": csv_text(Y, X[:, :4])}}, None,
     "train/b.csv: columns differ from"),
    ("header only", NAMED, _train_csv("x0,x1,default\n"), None, "holds no data rows (1 file(s) with a header line only)"),
    ("duplicate header names", NAMED, _train_csv(_header_csv(FRAME).replace("x3", "x1", 1)), None,
     "t.csv: line 1: the header names column 'x1' twice (columns 2 and 4)"),
    ("empty label cell", {}, _train_csv(TRAIN + ",1,2,3,4,5\n"), None, "line 301, column 1 (label): missing"),
    ("label missing from validation header", NAMED,
     {"train": {"t.csv": _header_csv(FRAME)}, "validation": {"v.csv": _header_csv(FRAME.drop(columns="default"))}},
     None, "v.csv: no label column 'default'"),
    ("parquet string column", NAMED, {"train": {"t.parquet": _parquet(FRAME.assign(x4="high"))}}, PARQUET,
     "t.parquet: row 1, column 5 ('x4'): 'high' is not a number"),
    ("parquet datetime column", NAMED, {"train": {"t.parquet": _parquet(FRAME.assign(day=pd.Timestamp("2024-01-01")))}},
     PARQUET, "column 9 ('day') holds datetime64"),
    ("parquet files with different columns", NAMED,
     {"train": {"a.parquet": _parquet(FRAME), "b.parquet": _parquet(FRAME.drop(columns="x4"))}}, PARQUET,
     "train/b.parquet: columns differ from "),
    ("parquet corrupt", {}, {"train": {"t.parquet": b"PAR1" + b"\0" * 64 + b"PAR1"}}, PARQUET, "t.parquet: cannot be read as Parquet"),
    ("cost column with NaN", {**NAMED, "cost_fn_column": "loan"},
     _train_csv(_header_csv(FRAME.assign(loan=FRAME.loan.where(FRAME.index != 7)))), None,
     "t.csv: line 9, column 7 ('loan') (cost_fn): missing; costs must be numbers >= 0"),
    ("cost column negative", {**NAMED, "cost_fp_column": "loan"},
     _train_csv(_header_csv(FRAME.assign(loan=FRAME.loan.where(FRAME.index != 3, -2.5)))), None,
     "t.csv: line 5, column 7 ('loan') (cost_fp): -2.5; costs must be numbers >= 0"),
    ("cost column text", {**NAMED, "cost_fn_column": "loan"},
     _train_csv(_header_csv(FRAME.assign(loan=FRAME.loan.astype(object).where(FRAME.index != 4, "abc")))),
     None, "t.csv: line 6, column 7 ('loan'): 'abc' is not a number"),
    ("two cost cells in one column", {**NAMED, "cost_fn_column": "loan", "cost_tp_column": "loan"},
     _train_csv(_header_csv(FRAME)), None,
     "hyperparameters 'cost_fn_column' and 'cost_tp_column' name the same column ('loan')"),
    ("cost of a hit above a miss", {**NAMED, "cost_tp_column": "loan", "cost_fn": "1000"},
     _train_csv(_header_csv(FRAME)), None,
     "t.csv: line 57: column 7 ('loan') (cost_tp) (1001.34) exceeds cost_fn (the class cost, no "
     "column) (1000): the correct decision would cost more than the mistake"),
    # --- fairness configuration against the data ---
    ("facet column missing", {**NAMED, "facet_column": "gender", "facet_values_or_threshold": "[2]"},
     _train_csv(_header_csv(FRAME)), None, "t.csv: no facet column 'gender'"),
    ("facet values match no row", {**NAMED, "facet_column": "sex", "facet_values_or_threshold": "[9]"},
     _train_csv(_header_csv(FRAME)), None, "facet 'sex' with facet_values_or_threshold [9]: no row is in the sensitive group d"),
    ("facet is the label", {**NAMED, "facet_column": "default", "facet_values_or_threshold": "[1]"},
     _train_csv(_header_csv(FRAME)), None, "the facet column is the label column ('default')"),
    ("text facet with a threshold", {**NAMED, "facet_column": "sex", "facet_values_or_threshold": "1"},
     _train_csv(_header_csv(FRAME.assign(sex=np.where(FRAME.sex == 2, "F", "M")))), None,
     "facet 'sex' holds text ('F'), but facet_values_or_threshold 1 is a threshold"),
    ("label values match nothing", {**NAMED, "label_values_or_threshold": "[7]"}, _train_csv(_header_csv(FRAME)), None,
     "all 300 rows have label 0 (label_values_or_threshold [7] matches no row)"),
    # --- hyperparameters ---
    ("num_round 0", {"num_round": "0"}, _train_csv(TRAIN), None, "hyperparameter 'num_round': '0' is out of range [1, 100000]"),
    ("alias given twice", {"eta": "0.1", "learning_rate": "0.2"}, _train_csv(TRAIN), None,
     "hyperparameter 'eta' given twice (as 'eta' and 'learning_rate')"),
    ("a removed hyperparameter", {"decision_threshold": "1.5"}, _train_csv(TRAIN), None,
     "hyperparameter 'decision_threshold' no longer exists: decisions are made by expected cost"),
    ("validation calibration without validation", {"calibration_data": "validation"},
     _train_csv(TRAIN), None, "'calibration_data' is 'validation' but the job has no validation channel"),
    ("checkpoint_frequency negative", {"checkpoint_frequency": "-1"}, _train_csv(TRAIN), None,
     "hyperparameter 'checkpoint_frequency': '-1' is out of range [0, 100000]"),
    ("facet without values", {**NAMED, "facet_column": "sex"}, _train_csv(_header_csv(FRAME)), None,
     "'facet_values_or_threshold' is required with 'facet_column'"),
]


def test_bad_inputs_are_many_and_distinct():
    assert len(BAD) >= 25
    assert len({case[0] for case in BAD}) == len({case[4] for case in BAD}) == len(BAD)


# Through the real `train` process (exit status, output/failure, the traceback in the log): one
# case of each kind of reason; every case, in this process, below.
THROUGH_THE_PROCESS = ("no train channel", "non-numeric", "bad value", "parquet corrupt",
                       "cost column negative", "declared channel missing", "facet column missing",
                       "Pipe input mode")


@pytest.mark.parametrize("case", [c for c in BAD if c[0] in THROUGH_THE_PROCESS],
                         ids=lambda case: case[0])
def test_bad_input_writes_a_one_line_failure(tmp_path, case):
    _, hyperparameters, channels, content_types, fragment, *setup = case
    base = write_tree(tmp_path, {**FAST, **hyperparameters}, channels, content_types)
    for step in setup:
        step(base)
    result = run_train(base)
    assert result.returncode != 0
    reason = failure_reason(base)
    assert fragment in reason
    assert "\n" not in reason.strip() and len(reason) < 1024
    assert "Traceback" not in reason
    assert "Traceback" in result.stdout + result.stderr  # the traceback goes to the log
    assert not (base / "model" / "metadata.json").exists()


@pytest.mark.parametrize("case", BAD, ids=[case[0] for case in BAD])
def test_bad_input_is_a_one_line_reason(tmp_path, case):
    """What ``train`` writes to output/failure for each bad input: the one line that
    ``training_job.main`` makes of the input error ``training_job.run`` raises (the process test
    above shows the line reaches the file), here without a process start per case."""
    _, hyperparameters, channels, content_types, fragment, *setup = case
    base = write_tree(tmp_path, {**FAST, **hyperparameters}, channels, content_types)
    for step in setup:
        step(base)
    with pytest.raises(InputError) as raised:
        training_job.run(str(base), log=lambda line: None)
    reason = training_job.one_line(raised.value)
    assert fragment in reason
    assert "\n" not in reason and len(reason) < 1024
    assert not (base / "model" / "metadata.json").exists()


CONFIG = "input/config/"
CONFIG_CASES = [
    ("hyperparameters.json", "{not json",
     CONFIG + "hyperparameters.json is not valid JSON: Expecting property name enclosed in double "
     "quotes at line 1, column 2"),
    ("hyperparameters.json", '["eta", "0.1"]', CONFIG + "hyperparameters.json must hold a JSON object, not an array"),
    ("hyperparameters.json", b"{\"eta\": \"0.1\xff\"}",
     CONFIG + "hyperparameters.json is not UTF-8 text: invalid start byte at byte 12"),
    ("inputdataconfig.json", '{"train": {"ContentType": "text/csv"}',
     CONFIG + "inputdataconfig.json is not valid JSON: Expecting ',' delimiter at line 1, column 38"),
    ("inputdataconfig.json", '["train"]', CONFIG + "inputdataconfig.json must hold a JSON object, not an array"),
    ("resourceconfig.json", "", CONFIG + "resourceconfig.json is not valid JSON: Expecting value at line 1, column 1"),
    ("resourceconfig.json", "null", CONFIG + "resourceconfig.json must hold a JSON object, not null"),
    ("resourceconfig.json", "{}", CONFIG + "resourceconfig.json: 'hosts' must be a non-empty list of host names, not null"),
    ("resourceconfig.json", '{"hosts": ["algo-1"], "current_host": "algo-2"}',
     CONFIG + "resourceconfig.json: 'current_host' \"algo-2\" is not one of the hosts [\"algo-1\"]"),
] + [(name, None, CONFIG + f"{name} is missing: SageMaker writes hyperparameters.json, "
      "inputdataconfig.json, resourceconfig.json into {base}/input/config; a local tree needs all "
      "three (see local_test/test_dir)")
     for name in ("hyperparameters.json", "inputdataconfig.json", "resourceconfig.json")]


@pytest.mark.parametrize("with_output_dir", [False, True], ids=["hand-made tree", "output/ exists"])
@pytest.mark.parametrize("name,text,reason", CONFIG_CASES,
                         ids=[f"{c[0]}: {'missing' if c[1] is None else repr(c[1])[:24]}" for c in CONFIG_CASES])
def test_bad_or_missing_config_file_is_a_one_line_reason(tmp_path, name, text, reason, with_output_dir):
    """costaware's ``train`` checks the files the toolkit reads before costaware is imported: without
    it a missing or broken file ended in the toolkit's traceback, or, with no output/ directory, in
    exit 0 and no failure file at all."""
    base = write_tree(tmp_path, FAST, _train_csv(TRAIN))
    path = base / "input" / "config" / name
    if text is None:
        path.unlink()
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    if with_output_dir:
        (base / "output").mkdir()
    result = run_train(base)
    expected = f"{base}/" + reason.replace("{base}", str(base))
    assert result.returncode == 1
    assert failure_reason(base) == expected
    assert result.stderr.strip() == f"costaware: training failed: {expected}"
    assert not (base / "model" / "metadata.json").exists()


def test_train_on_path_is_costawares_entry_point():
    """pip installs costaware after sagemaker-training, whose console script of the same name it
    replaces: the ``train`` the tests (and the image) run must be costaware's."""
    script = (BIN / "train").read_text()
    assert "costaware.sagemaker.entry" in script and "sagemaker_training" not in script


def test_config_problem_reads_what_sagemaker_writes(tmp_path):
    """The three files exactly as SageMaker writes them (values strings, extra keys) pass the check."""
    from costaware.config_files import first_problem

    base = write_tree(tmp_path, {"eta": "0.1", "sagemaker_job_name": '"job-1"'}, _train_csv(TRAIN))
    (base / "input" / "config" / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "current_instance_type": "ml.m5.xlarge", "hosts": ["algo-1"],
         "network_interface_name": "eth0", "instance_groups": []}))
    assert first_problem(str(base / "input" / "config")) is None


TRAIN_LINES = TRAIN.splitlines(keepends=True)
HEADER = _header_csv(FRAME)  # 8 columns: x0..x4, default, loan, sex
HEADER_LINES = HEADER.splitlines(keepends=True)
QUOTED = HEADER.replace("\n", ',"a, b"\n').replace('loan,sex,"a, b"', 'loan,sex,note', 1)
QUOTED_LINES = QUOTED.splitlines(keepends=True)
RAGGED_CASES = [
    ("short row, no header", {}, {"train": {"t.csv": TRAIN + "1,0.3\n"}}, "t.csv: line 301 has 2 values where line 1 has 6"),
    ("long row, no header", {}, {"train": {"t.csv": "".join(TRAIN_LINES[:1] + [TRAIN_LINES[1].replace("\n", ",7\n")] + TRAIN_LINES[2:])}},
     "t.csv: line 2 has 7 values where line 1 has 6"),
    ("short row under a header", NAMED, {"train": {"t.csv": "".join(HEADER_LINES[:4] + ["1,2,3\n"] + HEADER_LINES[4:])}},
     "t.csv: line 5 has 3 values where the header has 8"),
    ("long row under a header", NAMED, {"train": {"t.csv": "".join(HEADER_LINES[:9] + ["0,1,2,3,4,0,5,1,9\n"] + HEADER_LINES[9:])}},
     "t.csv: line 10 has 9 values where the header has 8"),
    ("gzip", {}, {"train": {"part.csv.gz": gzip.compress("".join(TRAIN_LINES[:100] + ["1,2\n"] + TRAIN_LINES[100:]).encode())}},
     "part.csv.gz: line 101 has 2 values where line 1 has 6"),
    ("second of several files", {}, {"train": {"a.csv": TRAIN, "b.csv": TRAIN + "0,1,2,3,4\n", "c.csv": TRAIN}},
     "b.csv: line 301 has 5 values where line 1 has 6"),
    ("cut off mid-write", {}, {"train": {"t.csv": TRAIN + "1,0.3"}},
     "t.csv: line 301 has 2 values where line 1 has 6 (the last line, with no line break after it: "
     "was the file cut off while it was written?)"),
    ("quoted commas, short row", NAMED, {"train": {"t.csv": "".join(QUOTED_LINES[:20] + ['1,"x, y"\n'] + QUOTED_LINES[20:])}},
     "t.csv: line 21 has 2 values where the header has 9"),
]


@pytest.mark.parametrize("hyperparameters,channels,reason",
                         [case[1:] for case in RAGGED_CASES], ids=[case[0] for case in RAGGED_CASES])
def test_ragged_rows_are_refused_naming_file_line_and_both_counts(tmp_path, hyperparameters, channels, reason):
    """pandas reads a short row as missing values at its end: a file cut off mid-write would be
    trained on silently. Training refuses it with one line (serving refuses the same); the
    first case through the real ``train`` process, the others in this one."""
    base = write_tree(tmp_path, {**FAST, **hyperparameters}, channels)
    if reason == RAGGED_CASES[0][-1]:
        result = run_train(base)
        assert result.returncode == 1
        said = failure_reason(base)
    else:
        with pytest.raises(InputError) as raised:
            training_job.run(str(base), log=lambda line: None)
        said = training_job.one_line(raised.value)
    assert said == f"{base}/input/data/train/{reason}; every row needs the same number of values"
    assert not (base / "model" / "metadata.json").exists()


def test_quoted_commas_and_blank_lines_are_not_ragged(tmp_path):
    """Commas inside quotes are not separators, and a quoted field may span lines."""
    multiline = QUOTED.replace('"a, b"', '"a,\nb"', 3)
    base = write_tree(tmp_path, {**FAST, **NAMED, "facet_column": "note", "facet_values_or_threshold": '["a, b"]'},
                      {"train": {"t.csv": QUOTED.replace('"a, b"', '"c, d"', 100)}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    from costaware.data.csv_rows import first_ragged_line

    path = tmp_path / "m.csv"
    path.write_text(multiline)
    assert first_ragged_line(str(path)) is None


def test_text_labels_and_facets_with_value_lists(tmp_path):
    """Clarify's categorical labels and facets: text values named in *_values_or_threshold."""
    frame = FRAME.assign(default=np.where(FRAME.default == 1, "bad", "good"),
                         sex=np.where(FRAME.sex == 2, "F", "M"))
    base = write_tree(tmp_path, {**FAST, **NAMED, "label_values_or_threshold": '["bad"]',
                                 "facet_column": "sex", "facet_values_or_threshold": '["F"]'},
                      _train_csv(_header_csv(frame)))
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    meta = json.loads((base / "model" / "metadata.json").read_text())
    assert "sex" not in meta["feature_names"] and meta["rows"]["train"] == 300
    ev = json.loads((base / "output" / "data" / "evaluation.json").read_text())["channels"]["train"]
    assert ev["served"]["confusion_matrix"]["tp"] + ev["served"]["confusion_matrix"]["fn"] \
        == int((FRAME.default == 1).sum())
    assert "bias" in ev


def test_report_false_writes_the_model_and_evaluation_without_the_charts(tmp_path):
    """``report=false``: the model, evaluation.json and the log line saying so; no report.html
    and no chart. The default writes them (the same tree, the other half)."""
    written = {}
    for report in ("false", "true"):
        base = write_tree(tmp_path / report, {**FAST, "report": report}, _train_csv(TRAIN))
        lines = []
        training_job.run(str(base), log=lines.append)
        data = base / "output" / "data"
        assert (base / "model" / "metadata.json").exists() and (data / "evaluation.json").exists()
        written[report] = sorted(p.name for p in data.iterdir())
        said = [line for line in lines if line.startswith("report: ")]
        assert said == (["report: not written (hyperparameter report is false)"] if report == "false"
                        else [f"report: {len(written[report]) - 2} files in {data}"]), lines
    assert written["false"] == ["baseline", "evaluation.json"]  # the monitoring baseline's copy
    assert "report.html" in written["true"] and any(n.endswith(".png") for n in written["true"])


def test_fastfile_channels_train_exactly_like_file_channels(tmp_path):
    """FastFile gives the channel as files, as File does (streamed from S3 as they are read rather
    than downloaded first): the same model and evaluation, from inputdataconfig.json entries
    written as SageMaker writes them (every key; an absent mode is File)."""
    channels = {"train": {"t.csv": TRAIN}, "validation": {"v.csv": VALID}}
    outputs = []
    for mode in ("File", "FastFile", None):
        base = write_tree(tmp_path / str(mode), FAST, channels)
        entry = {"ContentType": "text/csv", "S3DistributionType": "FullyReplicated",
                 "RecordWrapperType": "None", **({"TrainingInputMode": mode} if mode else {})}
        _config(json.dumps({name: entry for name in channels}))(base)
        training_job.run(str(base), log=lambda line: None)
        outputs.append(((base / "model" / artifact.BOOSTER_FILE).read_bytes(),
                        (base / "output" / "data" / "evaluation.json").read_text()))
    assert outputs[0] == outputs[1] == outputs[2]
    assert json.loads(outputs[1][1])["channels"]["validation"]["served"]["rows"] == 100
