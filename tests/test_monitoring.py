"""After deployment: the baseline training writes beside the model, and the image's ``monitor``
(Model Monitor's bring-your-own contract) over data capture and ground truth: its files against
the documented schemas, figures against hand computation, drift flagged, bad input counted."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import jsonschema
import numpy as np
import pandas as pd
import pytest

from costaware.monitoring import checks
from costaware.monitoring.job import monitor_main, run_monitor

from support import (BIN, CLOUDWATCH_METRIC_SCHEMA, CONSTRAINTS_SCHEMA, STATISTICS_SCHEMA,
                     VIOLATIONS_SCHEMA, WINE_CLASSES, answered_records, capture_record,
                     ground_truth_record, run_train, wine_frame, write_jsonl, write_tree)
from support import CREDIT_FEATURES as FEATURES
from support import CREDIT_HYPERPARAMETERS as HYPERPARAMETERS
from support import credit_population as population


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("monitoring") / "ml"
    write_tree(base, HYPERPARAMETERS,
               {"train": {"t.csv": population(1500, 1).to_csv(index=False)},
                "test": {"x.csv": population(600, 2).to_csv(index=False)}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base


def request_bodies(frame: pd.DataFrame) -> list[str]:
    """One CSV request per row: the request columns (features, then the row's own cost)."""
    return [",".join(f"{v:g}" for v in row)
            for row in frame[FEATURES + ["amount"]].to_numpy(dtype=float)]


def monitor_env(base, tmp, capture, truth=None, **extra) -> dict:
    return {"dataset_source": str(capture), "output_path": str(tmp / "out"),
            "baseline_statistics": str(base / "model" / "baseline" / "statistics.json"),
            "baseline_constraints": str(base / "model" / "baseline" / "constraints.json"),
            "ground_truth_source": str(truth) if truth else "",
            "SAGEMAKER_BASE_DIR": str(tmp / "ml"), **extra}


def stream(base, tmp, frame: pd.DataFrame, labels=True, accepts=("application/jsonlines",),
           **env) -> dict:
    """Capture ``frame``'s rows as an endpoint would, with their ground truth; run the job."""
    records = answered_records(str(base / "model"), request_bodies(frame), accepts)
    capture = write_jsonl(tmp / "capture" / "ep" / "AllTraffic" / "2026" / "12" / "06" / "06"
                          / "a.jsonl", records).parents[5]
    truth = None
    if labels:
        truth = write_jsonl(tmp / "truth" / "2026" / "12" / "06" / "07" / "g.jsonl",
                            [ground_truth_record(f"id-{i}", y)
                             for i, y in enumerate(frame["label"])]).parents[4]
    result = run_monitor(monitor_env(base, tmp, capture, truth, **env))
    out = tmp / "out"
    result["statistics"] = json.loads((out / "statistics.json").read_text())
    result["file"] = json.loads((out / "constraint_violations.json").read_text())
    return result


def kinds(result) -> dict:
    found = {}
    for v in result["violations"]:
        found.setdefault(v["constraint_check_type"], set()).add(v["feature_name"])
    return found


def test_training_writes_a_baseline_in_model_monitors_schemas(trained):
    for where in ("model/baseline", "output/data/baseline"):
        statistics = json.loads((trained / where / "statistics.json").read_text())
        constraints = json.loads((trained / where / "constraints.json").read_text())
        jsonschema.validate(statistics, STATISTICS_SCHEMA)
        jsonschema.validate(constraints, CONSTRAINTS_SCHEMA)
    assert [f["name"] for f in statistics["features"]] == FEATURES + ["amount"]
    assert statistics["dataset"]["item_count"] == 1500
    roles = {f["name"]: f["costaware"]["role"] for f in constraints["features"]}
    assert roles == {**{n: "feature" for n in FEATURES}, "amount": "cost"}
    own = statistics["costaware"]
    assert own["scored_rows"] == 600 and "test channel" in own["source"]
    assert own["labelled"]["rows"] == 600 and len(own["labelled"]["confusion"]) == 2
    assert set(own["labelled"]["bias"]) >= {"DPPL", "DI", "AD"}
    # the baseline's realized cost is what the served model's decisions cost on the test rows
    from costaware.model import artifact, inference
    test = population(600, 2)
    model = artifact.load(str(trained / "model"))
    rows = test[FEATURES + ["amount"]].to_numpy(float)
    decision = inference.predict(model, rows, np.ones(len(rows), bool))["decision"]
    y = test["label"].to_numpy()
    cost = np.where((decision == 1) & (y == 0), 1.0, 0.0) + \
        np.where((decision == 0) & (y == 1), test["amount"].to_numpy(), 0.0)
    assert own["labelled"]["realized_cost"]["value"] == pytest.approx(cost.mean(), rel=1e-9)
    trivial = [np.where(y == 1, test["amount"], 0.0).mean(), np.where(y == 0, 1.0, 0.0).mean()]
    assert own["labelled"]["trivial_costs"] == pytest.approx(trivial, rel=1e-9)


def test_a_baseline_decided_in_blocks_of_rows_is_the_baseline_decided_at_once(trained, tmp_path,
                                                                              monkeypatch):
    """The scored rows are decided a block of rows at a time (their request rows in float64 were
    the peak of a large job's memory): blocks of 97 rows give the same files as one block."""
    from costaware.data import channel_files
    from costaware.decisions import costs as costs_module
    from costaware.monitoring.job import suggest_baseline

    data = trained / "input" / "data" / "test"
    whole = suggest_baseline(str(trained / "model"), str(data), str(tmp_path / "one"), "text/csv",
                             log=lambda line: None)
    monkeypatch.setattr(costs_module, "ROW_BLOCK", 97)

    def whole_files(*args, **kwargs):
        raise AssertionError("suggest-baseline read the channel's files whole")

    # (the channel read a batch at a time and joined, as training reads it)
    monkeypatch.setattr(channel_files, "load_channel", whole_files)
    blocked = suggest_baseline(str(trained / "model"), str(data), str(tmp_path / "blocks"),
                               "text/csv", log=lambda line: None)
    for one, other in zip(whole, blocked):
        assert json.loads(open(one).read()) == json.loads(open(other).read())
    statistics = json.loads(open(blocked[0]).read())
    assert statistics["costaware"]["labelled"]["rows"] == 600  # (600 rows: 7 blocks)


def test_the_same_population_raises_no_violation_and_the_files_follow_the_schemas(trained, tmp_path):
    result = stream(trained, tmp_path, population(800, 3),
                    accepts=("application/jsonlines", "text/csv", "application/json"),
                    publish_cloudwatch_metrics="Enabled", sagemaker_endpoint_name="ep",
                    sagemaker_monitoring_schedule_name="hourly")
    assert result["violations"] == [], result["violations"]
    jsonschema.validate(result["statistics"], STATISTICS_SCHEMA)
    jsonschema.validate(result["file"], VIOLATIONS_SCHEMA)
    jsonschema.validate(json.loads((tmp_path / "out" / "constraints.json").read_text()),
                        CONSTRAINTS_SCHEMA)
    counts = result["statistics"]["costaware"]["counts"]["counts"]
    assert counts["capture records in the window"] == 800
    assert counts["capture rows matched to ground truth"] == 800
    assert result["statistics"]["costaware"]["labelled"]["rows"] == 800
    metrics = [json.loads(line) for line in
               (tmp_path / "ml" / "output" / "metrics" / "cloudwatch" / "costaware-metrics.jsonl")
               .read_text().splitlines()]
    for metric in metrics:
        jsonschema.validate(metric, CLOUDWATCH_METRIC_SCHEMA)
        assert metric["Dimensions"] == [{"Name": "Endpoint", "Value": "ep"},
                                        {"Name": "MonitoringSchedule", "Value": "hourly"}]
    names = {m["MetricName"] for m in metrics}
    assert {"feature_baseline_drift_x0", "feature_non_null_x0", "score_baseline_drift_score",
            "realized_cost_per_decision", "savings", "cost_gap", "auc", "dppl"} <= names
    report = (tmp_path / "out" / "report.html").read_text()
    assert "<script" not in report and "Violations (0)" in report and "<svg" in report


def test_a_covariate_shift_is_flagged_on_that_feature_and_on_the_scores(trained, tmp_path):
    result = stream(trained, tmp_path, population(800, 4, shift=0.8), labels=False)
    found = kinds(result)
    assert found["baseline_drift_check"] == {"x0"}, result["violations"]
    assert "score" in found["score_drift_check"]
    violation = next(v for v in result["violations"] if v["feature_name"] == "x0")
    assert violation["value"] > violation["bound"] and "exceeds" in violation["description"]


def test_costs_that_grow_and_labels_that_drift(trained, tmp_path):
    frame = population(800, 5)
    frame["amount"] = frame["amount"] * 2
    frame["label"] = np.where(np.random.default_rng(0).random(800) < 0.5, 1, frame["label"])
    found = kinds(stream(trained, tmp_path, frame))
    assert found["cost_drift_check"] == {"amount"}
    assert "expected_cost_check" in found and "realized_cost_check" in found
    assert "cost_gap_check" in found and "log_loss_check" in found  # calibration has drifted


def test_realized_cost_of_a_known_window_is_the_hand_computed_one(trained, tmp_path):
    """Answers written by hand: each row's score, decision and cost are known, so every figure
    can be computed by hand."""
    rows = [  # x0..x3, group, amount; score, decision, label
        ("0,0,0,0,0,10", 0.9, 1, 1), ("0,0,0,0,1,20", 0.2, 0, 1), ("0,0,0,0,0,30", 0.6, 1, 0),
        ("0,0,0,0,1,40", 0.1, 0, 0), ("0,0,0,0,0,50", 0.3, 1, 0)]
    records = [capture_record(body.encode(), "text/csv",
                              json.dumps({"score": s, "decision": d}).encode(),
                              "application/jsonlines", f"k{i}", f"2026-12-06T06:00:0{i}Z")
               for i, (body, s, d, _) in enumerate(rows)]
    capture = write_jsonl(tmp_path / "c" / "ep" / "v" / "2026" / "12" / "06" / "06" / "a.jsonl",
                          records).parents[5]
    truth = write_jsonl(tmp_path / "t" / "g.jsonl",
                        [ground_truth_record(f"k{i}", y) for i, (*_, y) in enumerate(rows)]).parent
    run_monitor(monitor_env(trained, tmp_path, capture, truth))
    own = json.loads((tmp_path / "out" / "statistics.json").read_text())["costaware"]
    # C[true][decided]: fp = 1 (decided 1, label 0), fn = amount (decided 0, label 1)
    realized = [0, 20, 1, 0, 1]
    expected = [0.1 * 1, 0.2 * 20, 0.4 * 1, 0.1 * 40, 0.7 * 1]  # P(0) fp or P(1) amount
    labelled = own["labelled"]
    assert labelled["realized_cost"]["value"] == pytest.approx(np.mean(realized))
    assert own["unlabelled"]["expected_cost"]["value"] == pytest.approx(np.mean(expected))
    assert labelled["cost_gap"]["value"] == pytest.approx(np.mean(expected) - np.mean(realized))
    assert labelled["trivial_costs"] == pytest.approx([(10 + 20) / 5, 3 / 5])
    assert labelled["savings"] == pytest.approx(1 - np.mean(realized) / 0.6)
    trivial = np.array([0, 0, 1, 1, 1])  # everyone decided 1: a false positive costs 1
    influence = np.array(realized) / 0.6 - np.mean(realized) * trivial / 0.36  # the delta method
    assert labelled["savings_se"] == pytest.approx(np.std(influence, ddof=1) / np.sqrt(5))
    assert labelled["observed_base_rate"][1]["value"] == pytest.approx(0.4)
    assert labelled["confusion"] == [[1, 2], [1, 1]]
    assert own["unlabelled"]["base_rate"][1]["value"] == pytest.approx(np.mean([.9, .2, .6, .1, .3]))
    p = np.array([.9, .2, .6, .1, .3])
    y = np.array([1, 1, 0, 0, 0])
    assert labelled["log_loss"]["value"] == pytest.approx(-np.mean(np.log(np.where(y, p, 1 - p))))
    # groups: facet d = rows 2 and 4 (group 1): favourable decisions 0 of 2, facet a 3 of 3
    assert own["unlabelled"]["dppl"]["value"] == pytest.approx(1.0)


def test_bad_input_is_counted_never_a_crash(trained, tmp_path):
    good = answered_records(str(trained / "model"), request_bodies(population(4, 6)))
    wrong_width = capture_record(b"1,2,3", "text/csv", b'{"score":0.5,"decision":1}',
                                 "application/jsonlines", "w", "2026-12-06T06:10:00Z")
    bad_base64 = json.loads(json.dumps(good[0]))
    bad_base64["captureData"]["endpointInput"].update(encoding="BASE64", data="***")
    bad_base64["eventMetadata"]["inferenceId"] = "b64"
    no_output = json.loads(json.dumps(good[1]))
    del no_output["captureData"]["endpointOutput"]
    odd_answer = json.loads(json.dumps(good[2]))
    odd_answer["captureData"]["endpointOutput"]["data"] = '{"score":0.5}'
    outside = json.loads(json.dumps(good[3]))
    outside["eventMetadata"]["inferenceTime"] = "2026-12-07T00:00:00Z"
    repeated = json.loads(json.dumps(good[0]))  # the same inference id again
    capture = write_jsonl(tmp_path / "c" / "ep" / "v" / "x.jsonl",
                          ["{not json", '{"eventVersion": "0"}', wrong_width, bad_base64,
                           no_output, odd_answer, outside, *good[:2], repeated, ""]).parents[2]
    truth = write_jsonl(tmp_path / "t" / "g.jsonl",
                        [ground_truth_record("id-0", 1), ground_truth_record("id-0", 0),
                         ground_truth_record("id-1", "maybe"), ground_truth_record("nobody", 1),
                         "[]"]).parent
    result = run_monitor(monitor_env(trained, tmp_path, capture, truth,
                                     start_time="2026-12-06T00:00:00Z",
                                     end_time="2026-12-06T23:00:00Z"))
    counts = result["counts"]["counts"]
    assert counts == {
        "capture files": 1,
        "capture lines that are not a capture record": 2,
        "capture records in the window": 7,
        "capture records outside the window": 1,
        "request bodies that could not be decoded": 2,
        "capture records without both input and output (capture both)": 1,
        "response bodies that could not be read": 1,
        "capture records repeating a labelled id (label used for the first)": 1,
        "capture rows matched to ground truth": 1,
        "capture rows without ground truth": 1,
        "ground truth records": 2,
        "ground truth lines that are not a ground-truth record": 1,
        "ground truth records repeating an id (later ones not used)": 1,
        "ground truth labels that are not a class of the model": 1,
        "ground truth records without a capture record in the window": 1,
    }, counts
    first = result["counts"]["first_seen"]
    assert first["capture lines that are not a capture record"].endswith("x.jsonl:1")
    assert "x.jsonl:3: line 1: 3 values" in first["request bodies that could not be decoded"]
    assert "without its decision" in first["response bodies that could not be read"]
    assert result["rows"] == 3  # two good records and the repeated one


def test_a_window_without_data_is_a_violation_not_a_silent_pass(trained, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_monitor(monitor_env(trained, tmp_path, tmp_path / "empty"))
    assert [v["constraint_check_type"] for v in result["violations"]] == ["no_data_check"]
    assert "no captured rows" in result["violations"][0]["description"]
    jsonschema.validate(json.loads((tmp_path / "out" / "statistics.json").read_text()),
                        STATISTICS_SCHEMA)


@pytest.mark.parametrize("change, fragment", [
    ({"baseline_constraints": None}, "environment variable baseline_constraints is not set"),
    ({"dataset_format": '{"csv": {"header": "true"}}'}, "batch transform datasets are not supported"),
    ({"start_time": "yesterday"}, "start_time: 'yesterday' is not an ISO 8601 time"),
    ({"dataset_source": "/nonexistent"}, "dataset_source /nonexistent is not a directory"),
    ({"baseline_statistics": "CONSTRAINTS"}, "is not a costaware baseline"),
])
def test_the_monitor_entry_fails_in_one_line(trained, tmp_path, change, fragment):
    (tmp_path / "capture").mkdir()
    env = {**os.environ, **monitor_env(trained, tmp_path, tmp_path / "capture")}
    for key, value in change.items():
        if value is None:
            env.pop(key)
        elif value == "CONSTRAINTS":  # the statistics file where the constraints belong
            env["baseline_constraints"] = env["baseline_statistics"]
        else:
            env[key] = value
    done = subprocess.run([str(BIN / "monitor")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and fragment in done.stderr
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert fragment in message and "\n" not in message


def test_a_baseline_missing_what_the_monitor_reads_is_one_line(trained, tmp_path):
    """A baseline that parses but lacks a figure (hand-edited, another version's)."""
    statistics = json.loads((trained / "model" / "baseline" / "statistics.json").read_text())
    del statistics["features"][0]["numerical_statistics"]["common"]
    (tmp_path / "statistics.json").write_text(json.dumps(statistics))
    (tmp_path / "capture").mkdir()
    env = {**os.environ, **monitor_env(trained, tmp_path, tmp_path / "capture"),
           "baseline_statistics": str(tmp_path / "statistics.json")}
    done = subprocess.run([str(BIN / "monitor")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "do not hold what this costaware's monitor reads (KeyError: 'common')" in done.stderr


def model_archive(model_dir, directory):
    """``directory`` holding SageMaker's ``model.tar.gz`` of the model in ``model_dir``."""
    directory.mkdir()
    with tarfile.open(directory / "model.tar.gz", "w:gz") as tar:
        for name in ("xgboost-model.ubj", "metadata.json"):
            tar.add(model_dir / name, arcname=name)
    return directory


def test_suggest_baseline_from_a_model_archive(trained, tmp_path):
    archive_dir = model_archive(trained / "model", tmp_path / "model")
    data = tmp_path / "data"
    data.mkdir()
    population(500, 8).to_csv(data / "rows.csv", index=False)
    done = subprocess.run([str(BIN / "suggest-baseline"), "--model", str(archive_dir), "--data",
                           str(data), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    statistics = json.loads((tmp_path / "out" / "statistics.json").read_text())
    jsonschema.validate(statistics, STATISTICS_SCHEMA)
    jsonschema.validate(json.loads((tmp_path / "out" / "constraints.json").read_text()),
                        CONSTRAINTS_SCHEMA)
    assert statistics["dataset"]["item_count"] == 500
    assert statistics["costaware"]["labelled"]["rows"] == 500
    # and the monitor takes it as its baseline
    env = monitor_env(trained, tmp_path, write_jsonl(
        tmp_path / "c" / "x.jsonl", answered_records(str(trained / "model"),
                                                     request_bodies(population(50, 9)))).parent,
                      baseline_statistics=str(tmp_path / "out" / "statistics.json"),
                      baseline_constraints=str(tmp_path / "out" / "constraints.json"))
    env["output_path"] = str(tmp_path / "mon")
    assert run_monitor(env)["rows"] == 50


def test_three_classes_with_a_per_row_cost_cell_and_csv_answers(tmp_path):
    frame = wine_frame()
    frame["loss"] = np.round(np.random.default_rng(3).uniform(6, 18, len(frame)), 1)
    matrix = [[0, 2, 3], [2, 0, 1], ["loss", 3, 0]]
    base = write_tree(tmp_path / "ml", {"num_round": "15", "max_depth": "3", "eta": "0.3",
                                        "label_column": "cultivar",
                                        "classes": json.dumps(WINE_CLASSES),
                                        "cost_matrix": json.dumps(matrix), "report": "false",
                                        "cross_fit_folds": "3"},
                      {"train": {"t.csv": frame.iloc[:120].to_csv(index=False)},
                       "test": {"x.csv": frame.iloc[120:150].to_csv(index=False)}})
    done = run_train(base)
    assert done.returncode == 0, done.stderr[-2000:]
    stream_rows = frame.iloc[150:]
    bodies = [",".join(f"{v:g}" for v in row)
              for row in stream_rows.drop(columns=["cultivar"]).to_numpy(float)]
    records = answered_records(str(base / "model"), bodies, ("text/csv", "application/json"))
    short = json.loads(json.dumps(records[1]))  # a JSON answer without one class's probability
    answer = json.loads(short["captureData"]["endpointOutput"]["data"])
    del answer["predictions"][0]["probabilities"]["barbera"]
    short["captureData"]["endpointOutput"]["data"] = json.dumps(answer)
    short["eventMetadata"]["inferenceId"] = "short"
    capture = write_jsonl(tmp_path / "c" / "x.jsonl", records + [short]).parent
    truth = write_jsonl(tmp_path / "t" / "g.jsonl",
                        [ground_truth_record(f"id-{i}", c)
                         for i, c in enumerate(stream_rows["cultivar"])]).parent
    result = run_monitor(monitor_env(base, tmp_path, capture, truth))
    statistics = json.loads((tmp_path / "out" / "statistics.json").read_text())
    jsonschema.validate(statistics, STATISTICS_SCHEMA)
    labelled = statistics["costaware"]["labelled"]
    assert result["rows"] == len(stream_rows) == labelled["rows"]
    assert result["counts"]["counts"]["response bodies that could not be read"] == 1
    assert "without its probabilities ('barbera' missing)" in result["counts"]["first_seen"][
        "response bodies that could not be read"]
    assert np.array(labelled["confusion"]).shape == (3, 3)
    assert [s["name"] for s in statistics["costaware"]["scores"]] == \
        [f"probability_{c}" for c in WINE_CLASSES]
    # the barbera-as-barolo cell is each row's own loss: realized cost by hand
    y = [WINE_CLASSES.index(c) for c in stream_rows["cultivar"]]
    decided = []
    for record in records:
        body = record["captureData"]["endpointOutput"]["data"]
        if record["captureData"]["endpointOutput"]["observedContentType"] == "text/csv":
            decided.append(WINE_CLASSES.index(body.split(",")[0]))
        else:
            decided.append(WINE_CLASSES.index(json.loads(body)["predictions"][0]["decision"]))
    cost = [stream_rows["loss"].iloc[i] if (t, d) == (2, 0) else
            matrix[t][d] for i, (t, d) in enumerate(zip(y, decided))]
    assert labelled["realized_cost"]["value"] == pytest.approx(np.mean(cost))


def test_every_check_is_documented():
    text = checks.__doc__
    assert all(f"``{name}``" in text for name in checks.CHECKS)


def test_rows_decided_at_a_requests_override_are_counted(trained, tmp_path):
    """Per-row costs with a request's cost override: the override is a header, not in the
    capture, so those rows are counted and priced at the model's costs (said, not guessed)."""
    from costaware.model.artifact import load
    from costaware.serving.invocation import Invocations, respond

    invocations = Invocations(load(str(trained / "model"), nthread=1))
    # rows without their own cost: a request's override decides them ("costs": "request")
    bodies = [body.rsplit(",", 1)[0] for body in request_bodies(population(4, 12))]
    records = []
    for i, body in enumerate(bodies):
        attributes = "cost_fp=3" if i % 2 else None
        reply = respond(invocations, body.encode(), "text/csv", "application/jsonlines",
                        attributes)
        records.append(capture_record(body.encode(), "text/csv", reply.body,
                                      reply.headers["Content-Type"], f"o{i}",
                                      f"2026-12-06T06:00:0{i}Z"))
    capture = write_jsonl(tmp_path / "c" / "x.jsonl", records).parent
    result = run_monitor(monitor_env(trained, tmp_path, capture))
    assert result["rows"] == 4
    assert result["counts"]["counts"][
        "rows decided at a request's cost override (its costs are not captured: their realized "
        "cost is priced at the model's)"] == 2


def test_malformed_parts_and_answers_are_counted_not_raised(trained, tmp_path):
    """Records whose parts are not objects, answers whose score is null or missing, a ground
    truth whose data is not an object, numeric ids: counted (the shapes a fuzzer found)."""
    good = answered_records(str(trained / "model"), request_bodies(population(3, 11)))
    not_an_object = json.loads(json.dumps(good[0]))
    not_an_object["captureData"]["endpointInput"] = "1,2,3,4"
    null_score = json.loads(json.dumps(good[1]))
    null_score["captureData"]["endpointOutput"]["data"] = '{"score":null,"decision":1}'
    numeric = json.loads(json.dumps(good[2]))
    numeric["eventMetadata"]["inferenceId"] = 5
    capture = write_jsonl(tmp_path / "c" / "x.jsonl",
                          [not_an_object, null_score, numeric, numeric,
                           '{"captureData": "text", "eventMetadata": {}}']).parent
    truth = write_jsonl(tmp_path / "t" / "g.jsonl",
                        [{"groundTruthData": "1", "eventMetadata": {"eventId": "x"}},
                         ground_truth_record("5", 1)]).parent
    result = run_monitor(monitor_env(trained, tmp_path, capture, truth))
    counts = result["counts"]["counts"]
    assert counts["request bodies that could not be decoded"] == 1
    assert counts["response bodies that could not be read"] == 1
    assert counts["capture lines that are not a capture record"] == 1
    assert counts["ground truth lines that are not a ground-truth record"] == 1
    assert counts["capture rows matched to ground truth"] == 1  # id 5 once, as "5" in the truth
    assert counts["capture records repeating a labelled id (label used for the first)"] == 1
    assert "score are not numbers" in result["counts"]["first_seen"][
        "response bodies that could not be read"]


def test_a_window_without_positives_whose_decisions_cost_more_than_the_trivial_rule(trained, tmp_path):
    """No positive label: deciding 0 for everyone costs nothing, so savings is undefined; the
    savings check still fires, and its description says why there is no ratio (a crash before)."""
    rows = [("0,0,0,0,0,10", 0.9, 1 if i < 7 else 0) for i in range(10)]
    records = [capture_record(body.encode(), "text/csv",
                              json.dumps({"score": s, "decision": d}).encode(),
                              "application/jsonlines", f"n{i}", f"2026-12-06T06:00:0{i}Z")
               for i, (body, s, d) in enumerate(rows)]
    capture = write_jsonl(tmp_path / "c" / "x.jsonl", records).parent
    truth = write_jsonl(tmp_path / "t" / "g.jsonl",
                        [ground_truth_record(f"n{i}", 0) for i in range(10)]).parent
    result = run_monitor(monitor_env(trained, tmp_path, capture, truth))
    savings = [v for v in result["violations"] if v["constraint_check_type"] == "savings_check"]
    assert len(savings) == 1 and "costs nothing, so no savings ratio" in savings[0]["description"]


def test_content_types_that_are_not_text_and_deep_json_are_counted(trained, tmp_path):
    good = answered_records(str(trained / "model"), request_bodies(population(2, 13)))
    odd = json.loads(json.dumps(good[0]))
    odd["captureData"]["endpointInput"]["observedContentType"] = 5
    odd_answer = json.loads(json.dumps(good[1]))
    odd_answer["captureData"]["endpointOutput"]["observedContentType"] = ["text/csv"]
    capture = write_jsonl(tmp_path / "c" / "x.jsonl", [odd, odd_answer, "[" * 100000]).parent
    result = run_monitor(monitor_env(trained, tmp_path, capture))
    counts = result["counts"]["counts"]
    assert counts["request bodies that could not be decoded"] == 1
    assert counts["response bodies that could not be read"] == 1
    assert counts["capture lines that are not a capture record"] == 1


def test_a_truncated_model_archive_is_one_line(trained, tmp_path):
    archive_dir = model_archive(trained / "model", tmp_path / "model")
    whole = (archive_dir / "model.tar.gz").read_bytes()
    (archive_dir / "model.tar.gz").write_bytes(whole[:len(whole) // 2])
    done = subprocess.run([str(BIN / "suggest-baseline"), "--model", str(archive_dir), "--data",
                           str(tmp_path), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SAGEMAKER_BASE_DIR": str(tmp_path / "ml")})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "model.tar.gz cannot be read" in done.stderr


def test_a_full_output_volume_is_one_line_worded_for_a_processing_job(trained, tmp_path, mounts):
    """monitor's outputs on a 4 KiB volume: exit 1, the processing job's volume named."""
    volume = mounts.tmpfs(tmp_path / "volume", "4k")
    (tmp_path / "capture").mkdir()
    env = monitor_env(trained, tmp_path, tmp_path / "capture", output_path=str(volume))
    assert monitor_main(env=env) == 1
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert message.startswith(f"monitor: {volume}/")
    assert message.endswith("No space left on device: the processing job's outputs share its "
                            "storage volume; give it more (VolumeSizeInGB of its ClusterConfig)")
