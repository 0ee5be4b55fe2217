"""Champion or challenger (``compare``): two variants' captured decisions compared by realized cost.

The maths against scipy's own tests and by hand; the job on captures written by hand (every cost
known), on captures of two real trained models (a shadow, split traffic, a replay), on bad input,
and through ``costaware compare``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from costaware.comparison import difference, facets
from costaware.comparison.job import UNTIMED, compare_main, parser
from costaware.comparison.variants import NOT_TWINS
from costaware.monitoring.decided_rows import bias_cells
from support import (BIN, answered_records, capture_record, ground_truth_record, run_train,
                     write_jsonl, write_tree)
from support import CREDIT_FEATURES as FEATURES
from support import CREDIT_HYPERPARAMETERS as HYPERPARAMETERS
from support import credit_population as population


# ------------------------------------------------------------------------------------ the maths

def test_paired_difference_is_scipys_paired_t_interval():
    rng = np.random.default_rng(0)
    a = rng.exponential(2.0, 300)
    b = a + rng.normal(-0.3, 1.0, 300)
    result = difference.paired_difference(a, b)
    ci = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert result["difference"] == pytest.approx(np.mean(b - a))
    assert result["interval"] == pytest.approx([ci.low, ci.high])
    # P(T < -t): the one-sided p-value of "the challenger costs more"
    assert result["probability_challenger_cheaper"] == pytest.approx(
        stats.ttest_rel(b, a, alternative="greater").pvalue)


def test_unpaired_difference_is_welchs_interval():
    rng = np.random.default_rng(1)
    a, b = rng.exponential(2.0, 250), rng.exponential(1.5, 400)
    result = difference.unpaired_difference(a, b)
    ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert result["interval"] == pytest.approx([ci.low, ci.high])
    assert result["rows"] == 650
    assert result["champion"]["mean"] == pytest.approx(a.mean())


def test_the_anytime_interval_is_wider_and_shrinks_as_labels_come():
    radii = [difference.sequence_radius(n, 1.0) for n in (100, 1000, 10000, 100000)]
    assert all(x > y for x, y in zip(radii, radii[1:]))
    for n, r in zip((100, 1000, 10000, 100000), radii):
        assert r > 1.96 / math.sqrt(n)  # wider than one look's
    assert difference.sequence_radius(0, 1.0) == math.inf


def test_labels_needed_is_where_the_interval_would_exclude_the_difference():
    rng = np.random.default_rng(2)
    result = difference.paired_difference(rng.normal(1, 2, 200), rng.normal(0.9, 2, 200))
    action = difference.recommend(result)
    assert action["action"] == "wait" and action["more_labels"] > 0
    needed = result["rows"] + action["more_labels"]
    target = abs(result["difference"])
    assert difference.difference_radius(result, rows_scale=needed / result["rows"]) < target
    assert difference.difference_radius(result, rows_scale=(needed - 2) / result["rows"]) >= target


@pytest.mark.parametrize("shift, action", [(-1.0, "promote"), (1.0, "keep")])
def test_a_clear_difference_is_promote_or_keep(shift, action):
    rng = np.random.default_rng(3)
    a = rng.exponential(3.0, 2000)
    result = difference.paired_difference(a, a + shift + rng.normal(0, 0.5, 2000))
    assert difference.recommend(result)["action"] == action


def test_a_saving_too_small_to_matter_is_keep():
    rng = np.random.default_rng(4)
    a = rng.exponential(3.0, 5000)
    result = difference.paired_difference(a, a - 0.05 + rng.normal(0, 0.2, 5000))
    assert difference.recommend(result)["action"] == "promote"
    assert difference.recommend(result, min_saving=0.5)["action"] == "keep"


def test_identical_decisions_are_keep_not_a_wait_forever():
    a = np.random.default_rng(6).exponential(2.0, difference.MIN_LABELS)
    action = difference.recommend(difference.paired_difference(a, a))
    assert action["action"] == "keep"
    assert "-0" not in action["reason"]  # no saving at all: "at most 0"


@pytest.mark.parametrize("paired", [True, False])
def test_a_few_decisions_without_spread_are_no_recommendation(paired):
    """Eight pairs decided alike have no spread and a radius of 0: no certainty from that
    (benchmarks/bench_compare.py found wrong actions at such early looks)."""
    a = np.array([1.0, 0.0, 5.0, 0.0, 1.0, 0.0, 5.0, 0.0])
    result = (difference.paired_difference(a, a) if paired
              else difference.unpaired_difference(np.zeros(150), np.ones(8)))
    action = difference.recommend(result)
    assert action["action"] == "wait", action
    assert f"no recommendation rests on fewer than {difference.MIN_LABELS}" in action["reason"]
    fewest = 8
    total = result["rows"]
    assert action["more_labels"] >= total * difference.MIN_LABELS / fewest - total


def test_rare_large_differences_need_cochrans_labels_before_a_recommendation():
    """Two decisions in 150 differ, by 1,000: g1 = 8.6, and a mean of them is near normal only
    from 25 g1^2 = 1,850 values on; before that, no recommendation, however narrow the sequence."""
    differences = np.zeros(150)
    differences[[7, 90]] = -1000.0
    g1 = difference.skewness(differences)
    centred = differences - differences.mean()
    assert g1 == pytest.approx(np.mean(centred ** 3) / np.mean(centred ** 2) ** 1.5)
    result = difference.paired_difference(np.full(150, 1000.0), 1000.0 + differences)
    action = difference.recommend(result)
    need = math.ceil(25 * g1 * g1)
    assert action["action"] == "wait" and f"fewer than {need}" in action["reason"]
    assert action["more_labels"] >= need - 150
    assert difference.labels_for_normal_mean(0.5) == difference.MIN_LABELS


def test_a_challenger_cheaper_overall_but_costlier_for_the_facet_is_flagged():
    rng = np.random.default_rng(5)
    n = 10000
    sensitive = rng.random(n) < 0.3
    label = (rng.random(n) < 0.4).astype(np.int64)
    champion_decision = np.where(rng.random(n) < 0.8, label, 1 - label)
    challenger_decision = champion_decision.copy()
    # the challenger is better for facet a, worse for facet d (refuses more of its good cases)
    fix = (~sensitive) & (rng.random(n) < 0.5)
    challenger_decision[fix] = label[fix]
    spoil = sensitive & (label == 1) & (rng.random(n) < 0.25)
    challenger_decision[spoil] = 0
    costs = np.array([[0.0, 1.0], [3.0, 0.0]])
    a = costs[label, champion_decision]
    b = costs[label, challenger_decision]
    overall = difference.paired_difference(a, b)
    assert overall["difference"] < 0
    per_facet = facets.facet_differences(a, b, sensitive, sensitive, paired=True)
    assert per_facet["d"]["interval"][0] > 0
    bias = facets.bias_changes(bias_cells(sensitive, label, champion_decision, (1,)),
                               bias_cells(sensitive, label, challenger_decision, (1,)),
                               paired=True)
    assert bias["DPPL"]["interval"][0] > 0  # fewer favourable decisions for facet d
    found = facets.flags(overall, per_facet, bias)
    assert any("costlier for facet d" in f for f in found)
    assert any(f.startswith("DPPL moved away from parity") for f in found)
    # the same challenger when it is not cheaper overall raises no flag
    assert facets.flags(difference.paired_difference(b, a), per_facet, bias) == []


# --------------------------------------------------------------------- captures and the job


def _train(base, drop=(), **changes):
    write_tree(base, {**HYPERPARAMETERS, **changes},
               {"train": {"t.csv": population(1500, 1).drop(columns=list(drop)).to_csv(index=False)},
                "test": {"x.csv": population(600, 2).drop(columns=list(drop)).to_csv(index=False)}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base / "model"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A champion, and a worse challenger (two rounds of depth-1 trees: little of the signal)."""
    root = tmp_path_factory.mktemp("compare")
    return (_train(root / "champion"),
            _train(root / "challenger", num_round="2", max_depth="1", eta="0.3"))


def bodies(frame: pd.DataFrame) -> list[str]:
    return [",".join(f"{v:g}" for v in row)
            for row in frame[FEATURES + ["amount"]].to_numpy(dtype=float)]


def capture(tmp, name: str, records: list):
    return write_jsonl(tmp / name / "ep" / name / "2026" / "12" / "06" / "06" / "a.jsonl",
                       records).parents[5]


def truth(tmp, keys, labels, name="truth"):
    return write_jsonl(tmp / name / "g.jsonl",
                       [ground_truth_record(k, y) for k, y in zip(keys, labels)]).parent


def run(tmp, champion_capture, challenger_capture, truth_dir, champion_model, challenger_model,
        *extra) -> tuple[int, dict | None]:
    out = tmp / "out"
    code = compare_main(["--champion", str(champion_capture), "--challenger",
                         str(challenger_capture), "--ground-truth", str(truth_dir),
                         "--champion-model", str(champion_model), "--challenger-model",
                         str(challenger_model), "--output", str(out), *extra],
                        env={"SAGEMAKER_BASE_DIR": str(tmp / "ml")})
    result = (json.loads((out / "comparison.json").read_text())
              if (out / "comparison.json").exists() else None)
    return code, result


def hand_records(rows, prefix="k", start=0):
    return [capture_record(body.encode(), "text/csv",
                           json.dumps({"score": s, "decision": d}).encode(),
                           "application/jsonlines", f"{prefix}{i}", f"2026-12-06T06:00:{i + start:02d}Z")
            for i, (body, s, d) in enumerate(rows)]


# x0..x3, group, amount: fp costs 1 (decided 1, label 0), fn costs the amount (decided 0, label 1)
REQUESTS = ["0,0,0,0,0,10", "0,0,0,0,1,20", "0,0,0,0,0,30", "0,0,0,0,1,40", "0,0,0,0,0,50",
            "0,0,0,0,1,60"]
LABELS = [1, 1, 0, 0, 0, 1]
CHAMPION_DECIDES = [1, 0, 1, 0, 1, 0]  # costs 0, 20, 1, 0, 1, 60
CHALLENGER_DECIDES = [1, 1, 0, 0, 1, 1]  # costs 0, 0, 0, 0, 1, 0


def hand_shadow(tmp, champion_records=None):
    """The champion's and its shadow's captures of REQUESTS, decided as above."""
    a = capture(tmp, "AllTraffic", champion_records or hand_records(
        [(r, 0.5, d) for r, d in zip(REQUESTS, CHAMPION_DECIDES)]))
    b = capture(tmp, "Shadow", hand_records(
        [(r, 0.5, d) for r, d in zip(REQUESTS, CHALLENGER_DECIDES)]))
    return a, b


def edited_baseline(model, path, **changes):
    """``model``'s baseline constraints.json at ``path`` with its model spec changed (a
    hand-edited baseline, or one from another version); the policy's facet rule dropped."""
    document = json.loads((model / "baseline" / "constraints.json").read_text())
    document["costaware"]["model"].update(changes)
    document["costaware"]["model"]["decision_policy"].pop("facet", None)
    path.write_text(json.dumps(document))
    return path


def test_a_shadow_comparison_on_hand_priced_captures_is_the_hand_computed_difference(models,
                                                                                     tmp_path):
    champion_model, challenger_model = models
    a, b = hand_shadow(tmp_path)
    code, result = run(tmp_path, a, b, truth(tmp_path, [f"k{i}" for i in range(6)], LABELS),
                       champion_model, challenger_model)
    assert code == 0
    champion_cost = np.array([0, 20, 1, 0, 1, 60.0])
    challenger_cost = np.array([0, 0, 0, 0, 1, 0.0])
    d = challenger_cost - champion_cost
    assert result["design"] == "paired"
    assert result["champion"]["realized_cost"]["mean"] == pytest.approx(82 / 6)
    assert result["challenger"]["realized_cost"]["mean"] == pytest.approx(1 / 6)
    assert result["difference"]["difference"] == pytest.approx(d.mean())
    se = d.std(ddof=1) / math.sqrt(6)
    assert result["difference"]["se"] == pytest.approx(se)
    half = stats.t.ppf(0.975, 5) * se
    assert result["difference"]["interval"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert result["difference"]["probability_challenger_cheaper"] == pytest.approx(
        stats.t.cdf(-d.mean() / se, 5))
    # six decisions cannot settle it; the job says how many more it expects, and that the
    # interval may be too narrow
    assert result["recommendation"]["action"] == "wait"
    assert result["caveats"][0].startswith("the 95% interval may be too narrow: 6 pairs")
    assert result["recommendation"]["more_labels"] > 0
    assert result["facets"]["d"]["rows"] == 3  # group 1: rows 2, 4 and 6
    assert result["facets"]["d"]["difference"] == pytest.approx(np.mean([-20, 0, -60]))
    # the chart over time, overall and per facet
    assert (tmp_path / "out" / "report.html").read_text().count("<svg") == 3
    last = result["facets"]["d"]["over_time"][-1]
    assert last["rows"] == 3 and last["difference"] == pytest.approx(np.mean([-20, 0, -60]))


def split_traffic(tmp_path):
    """The first three requests went to the champion (A), the last three to the challenger (B)."""
    a = capture(tmp_path, "A", hand_records(
        [(r, 0.5, d) for r, d in zip(REQUESTS[:3], CHAMPION_DECIDES[:3])], prefix="a"))
    b = capture(tmp_path, "B", hand_records(
        [(r, 0.5, d) for r, d in zip(REQUESTS[3:], CHALLENGER_DECIDES[3:])], prefix="b"))
    return a, b, [f"a{i}" for i in range(3)] + [f"b{i}" for i in range(3)]


def test_split_traffic_is_compared_unpaired_on_hand_priced_captures(models, tmp_path):
    champion_model, _ = models
    a, b, keys = split_traffic(tmp_path)
    code, result = run(tmp_path, a, b, truth(tmp_path, keys, LABELS), champion_model,
                       champion_model)
    assert code == 0
    assert result["design"] == "unpaired"
    ca, cb = np.array([0, 20, 1.0]), np.array([0, 1, 0.0])  # B decided rows 4-6: 0, 1, 0
    ci = stats.ttest_ind(cb, ca, equal_var=False).confidence_interval(0.95)
    assert result["difference"]["difference"] == pytest.approx(cb.mean() - ca.mean())
    assert result["difference"]["interval"] == pytest.approx([ci.low, ci.high])
    counts = result["counts"]["ground_truth"]["counts"]
    assert counts["ground truth records matching the champion's captures only"] == 3


@pytest.fixture(scope="module")
def shadow(models, tmp_path_factory):
    """1,200 requests decided by both real models (a shadow), their ground truth."""
    tmp = tmp_path_factory.mktemp("shadow")
    champion_model, challenger_model = models
    frame = population(1200, 7)
    ids = [f"r{i}" for i in range(len(frame))]
    a = capture(tmp, "AllTraffic", answered_records(str(champion_model), bodies(frame), ids=ids))
    b = capture(tmp, "Shadow", answered_records(str(challenger_model), bodies(frame), ids=ids))
    return a, b, truth(tmp, ids, frame["label"]), frame


def test_a_worse_shadow_is_kept_and_a_better_one_promoted(models, shadow, tmp_path):
    champion_model, challenger_model = models
    a, b, labels, _ = shadow
    code, result = run(tmp_path, a, b, labels, champion_model, challenger_model)
    assert code == 0 and result["design"] == "paired"
    assert result["difference"]["rows"] == 1200
    assert result["difference"]["interval"][0] > 0, result["difference"]
    assert result["recommendation"]["action"] == "keep", result["recommendation"]
    assert result["difference"]["probability_challenger_cheaper"] < 0.01
    # the roles swapped: the better model is the challenger
    code, swapped = run(tmp_path, b, a, labels, challenger_model, champion_model)
    assert swapped["recommendation"]["action"] == "promote"
    assert swapped["difference"]["difference"] == pytest.approx(
        -result["difference"]["difference"])
    # over time: the last point is the whole comparison
    assert result["over_time"][-1]["rows"] == 1200
    assert result["over_time"][-1]["difference"] == pytest.approx(
        result["difference"]["difference"])


def test_a_replay_scores_the_challenger_as_its_shadow_did(models, shadow, tmp_path):
    champion_model, challenger_model = models
    a, b, labels, _ = shadow
    _, live = run(tmp_path, a, b, labels, champion_model, challenger_model)
    code, replay = run(tmp_path, a, tmp_path / "unused", labels, champion_model, challenger_model,
                       "--replay", "--labels-independent-of-decision")
    assert code == 0, (tmp_path / "ml" / "output" / "message").read_text()
    assert replay["design"] == "replay"
    assert replay["difference"]["difference"] == pytest.approx(live["difference"]["difference"])
    assert replay["recommendation"]["action"] == live["recommendation"]["action"]


def test_a_replay_is_refused_unless_the_label_does_not_depend_on_the_decision(models, shadow,
                                                                             tmp_path):
    champion_model, challenger_model = models
    a, _, labels, frame = shadow
    code, _ = run(tmp_path, a, tmp_path, labels, champion_model, challenger_model, "--replay")
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert code == 1 and "valid only where the label does not depend on the decision" in message
    # outcomes seen only after an approval (decision 0 here: no alarm), as in credit
    records = [json.loads(line) for line in
               next(a.rglob("*.jsonl")).read_text().splitlines()]
    seen = [r["eventMetadata"]["inferenceId"] for r in records
            if json.loads(r["captureData"]["endpointOutput"]["data"])["decision"] == 0]
    label_of = dict(zip([f"r{i}" for i in range(len(frame))], frame["label"]))
    only_approved = truth(tmp_path, seen, [label_of[k] for k in seen], name="approved")
    code, _ = run(tmp_path, a, tmp_path, only_approved, champion_model, challenger_model,
                  "--replay", "--labels-independent-of-decision")
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert code == 1 and "the share of labelled rows differs by the champion's decision" in message
    # a shadow comparison on those labels reports, and makes no recommendation
    _, b, _, _ = shadow
    code, result = run(tmp_path, a, b, only_approved, champion_model, challenger_model)
    assert code == 0 and result["recommendation"]["action"] == "none"
    assert "labels come more often after some" in result["recommendation"]["reason"]


def test_bad_input_is_counted_and_stated_never_a_crash(models, tmp_path):
    champion_model, challenger_model = models
    good = hand_records([(r, 0.5, d) for r, d in zip(REQUESTS, CHAMPION_DECIDES)])
    broken = ["not json", json.dumps({"captureData": {}}),
              json.dumps(capture_record(b"1,2", "text/csv", b'{"score":0.5,"decision":1}',
                                        "application/jsonlines", "w", "2026-12-06T06:10:00Z"))]
    a = capture(tmp_path, "A", good + broken)
    (tmp_path / "empty").mkdir()
    labels = truth(tmp_path, [f"k{i}" for i in range(6)] + ["nobody"], LABELS + [1])
    # a variant with no captures: stated, a wait, exit 0
    code, result = run(tmp_path, a, tmp_path / "empty", labels, champion_model, challenger_model)
    assert code == 0
    assert result["recommendation"]["action"] == "wait"
    assert result["recommendation"]["reason"].startswith("the challenger has no captured decisions")
    champion_counts = result["counts"]["champion"]["counts"]
    assert champion_counts["capture lines that are not a capture record"] == 1
    assert champion_counts["capture records without both input and output (capture both)"] == 1
    assert champion_counts["request bodies that could not be decoded"] == 1
    assert result["counts"]["challenger"]["counts"]["capture files"] == 0
    truth_counts = result["counts"]["ground_truth"]["counts"]
    assert truth_counts["ground truth records matching no captured decision of either variant"] == 1
    # labels for one variant only (the challenger's ids never labelled): stated
    b = capture(tmp_path, "B", hand_records(
        [(r, 0.5, d) for r, d in zip(REQUESTS, CHALLENGER_DECIDES)], prefix="other"))
    code, result = run(tmp_path, a, b, labels, champion_model, challenger_model)
    assert code == 0 and result["design"] == "unpaired"
    assert result["recommendation"]["reason"].startswith(
        "no ground truth matched the challenger's 6 captured decisions yet")
    json.dumps(result, allow_nan=False)  # strict JSON: no NaN from an empty variant


@pytest.mark.parametrize("change, fragment", [
    ({"--champion": "missing"}, "--champion "),
    ({"--ground-truth": "missing"}, "--ground-truth "),
    ({"--champion-model": "missing"}, "holds no model"),
    ({"--start-time": "yesterday"}, "is not an ISO 8601 time"),
    # a replay decides the same requests twice: paired, never Welch's under a "replay" label
    ({"--replay": "", "--labels-independent-of-decision": "", "--design": "unpaired"},
     "--replay is paired"),
    # a window that holds nothing is the user's slip, not "no captured decisions"
    ({"--start-time": "2026-12-07T00:00:00Z", "--end-time": "2026-12-06T00:00:00Z"},
     "--start-time 2026-12-07T00:00:00Z is not before --end-time 2026-12-06T00:00:00Z"),
])
def test_a_job_that_cannot_run_says_why_in_one_line(models, tmp_path, change, fragment):
    champion_model, challenger_model = models
    (tmp_path / "c").mkdir()
    args = {"--champion": str(tmp_path / "c"), "--challenger": str(tmp_path / "c"),
            "--ground-truth": str(tmp_path / "c"), "--champion-model": str(champion_model),
            "--challenger-model": str(challenger_model), "--output": str(tmp_path / "out")}
    args.update({k: (str(tmp_path / v) if v == "missing" else v) for k, v in change.items()})
    code = compare_main([x for kv in args.items() for x in kv if x],
                        env={"SAGEMAKER_BASE_DIR": str(tmp_path / "ml")})
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert code == 1 and fragment in message and "\n" not in message


def test_models_that_read_different_requests_are_refused(models, tmp_path):
    champion_model, _ = models
    other = _train(tmp_path / "other", drop=["x3"])  # one feature fewer
    (tmp_path / "c").mkdir()
    code, _ = run(tmp_path, tmp_path / "c", tmp_path / "c", tmp_path / "c", champion_model, other)
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert code == 1 and "the two models read different request columns" in message


def test_the_cli_runs_the_job_from_a_baseline_and_prints_the_recommendation(models, shadow,
                                                                            tmp_path):
    champion_model, challenger_model = models
    a, b, labels, _ = shadow
    done = subprocess.run(
        [os.path.join(BIN, "costaware"), "compare", "--champion", str(a), "--challenger", str(b),
         "--ground-truth", str(labels), "--champion-model", str(champion_model / "baseline"),
         "--challenger-model", str(challenger_model / "baseline" / "constraints.json"),
         "--output", str(tmp_path / "out"), "--end-time", "2026-12-06T06:10:00Z"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert result["difference"]["rows"] == 600  # one request a second: ten minutes of them
    # half the decisions that settled it (keep) leave it open, with an estimate of what is missing
    more = result["recommendation"]["more_labels"]
    assert f"costaware compare (paired): WAIT: about {more} more labelled decisions" in done.stdout
    assert "Traceback" not in done.stderr


def test_the_arguments_default_to_a_processing_jobs_paths():
    args = parser().parse_args([])
    assert args.champion == "/opt/ml/processing/input/champion"
    assert args.output == "/opt/ml/processing/output"


def test_a_usage_error_is_the_jobs_one_line_exit_message(tmp_path):
    with pytest.raises(SystemExit) as stopped:
        compare_main(["--min-saving", "-1"], env={"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert stopped.value.code == 2
    message = (tmp_path / "output" / "message").read_text()
    assert message == "compare: argument --min-saving: '-1' is not a finite number >= 0"


def test_a_forced_paired_design_without_twins_says_so(models, tmp_path):
    champion_model, _ = models
    a, b, keys = split_traffic(tmp_path)
    code, result = run(tmp_path, a, b, truth(tmp_path, keys, LABELS), champion_model,
                       champion_model, "--design", "paired")
    assert code == 0 and result["design"] == "paired"
    assert result["recommendation"]["action"] == "wait"
    assert result["recommendation"]["reason"].startswith(
        "no labelled request was decided by both variants")


def test_three_classes_with_a_per_row_cost_cell_in_records_of_several_rows(tmp_path):
    """K = 3, a row's own cost cell, three rows per request: the shadow pairs row j of a record
    with row j of its twin; the difference is the hand-priced one; a replay gives the same."""
    from support import WINE_CLASSES, wine_frame

    frame = wine_frame()
    frame["loss"] = np.round(np.random.default_rng(3).uniform(6, 18, len(frame)), 1)
    matrix = [[0, 2, 3], [2, 0, 1], ["loss", 3, 0]]
    common = {"label_column": "cultivar", "classes": json.dumps(WINE_CLASSES),
              "cost_matrix": json.dumps(matrix), "report": "false", "cross_fit_folds": "3",
              "eta": "0.3"}
    trained = []
    for name, rounds, depth in (("champion", "15", "3"), ("challenger", "2", "1")):
        base = write_tree(tmp_path / name, {**common, "num_round": rounds, "max_depth": depth},
                          {"train": {"t.csv": frame.iloc[:120].to_csv(index=False)}})
        done = run_train(base)
        assert done.returncode == 0, done.stderr[-2000:]
        trained.append(base / "model")
    rows = frame.iloc[120:177]  # 57 rows: 19 requests of 3
    lines = [",".join(f"{v:g}" for v in row)
             for row in rows.drop(columns=["cultivar"]).to_numpy(float)]
    requests = ["\n".join(lines[i:i + 3]) for i in range(0, len(lines), 3)]
    ids = [f"q{i}" for i in range(len(requests))]
    captured = [answered_records(str(model), requests, ("text/csv",), ids=ids)
                for model in trained]
    a, b = capture(tmp_path, "AllTraffic", captured[0]), capture(tmp_path, "Shadow", captured[1])
    labels = list(rows["cultivar"])
    truth_dir = write_jsonl(tmp_path / "truth" / "g.jsonl", [
        ground_truth_record(key, ",".join(labels[3 * i:3 * i + 3]))
        for i, key in enumerate(ids)]).parent
    code, result = run(tmp_path, a, b, truth_dir, *trained)
    assert code == 0 and result["design"] == "paired"
    assert result["difference"]["rows"] == 57

    def hand_priced(records) -> np.ndarray:
        decided = [line.split(",")[0] for r in records
                   for line in r["captureData"]["endpointOutput"]["data"].splitlines()]
        out = []
        for (_, row), decision in zip(rows.iterrows(), decided):
            cost = matrix[WINE_CLASSES.index(row["cultivar"])][WINE_CLASSES.index(decision)]
            out.append(row["loss"] if cost == "loss" else cost)
        return np.array(out, dtype=float)

    champion_cost, challenger_cost = hand_priced(captured[0]), hand_priced(captured[1])
    assert result["champion"]["realized_cost"]["mean"] == pytest.approx(champion_cost.mean())
    assert result["difference"]["difference"] == pytest.approx(
        (challenger_cost - champion_cost).mean())
    code, replay = run(tmp_path, a, tmp_path, truth_dir, *trained, "--replay",
                       "--labels-independent-of-decision")
    assert code == 0
    assert replay["difference"]["difference"] == pytest.approx(result["difference"]["difference"])


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A model reading ``amount`` as a feature, not as a cost column."""
    return _train(tmp_path_factory.mktemp("plain"), cost_fn_column="")


def test_a_challenger_without_the_cost_column_is_priced_at_the_champions_row_costs(models, plain,
                                                                                   tmp_path):
    """The challenger reads ``amount`` as a feature, the champion as each row's cost of a missed
    positive: the challenger's decisions are priced at the champion's per-row costs all the same."""
    champion_model, _ = models
    assert "amount" in json.loads((plain / "metadata.json").read_text())["feature_names"]
    a, b, keys = split_traffic(tmp_path)
    code, result = run(tmp_path, a, b, truth(tmp_path, keys, LABELS), champion_model, plain)
    assert code == 0, (tmp_path / "ml" / "output" / "message").read_text()
    # B decided rows 4-6 (labels 0, 0, 1) as 0, 1, 1: costs 0, fp 1, and 0; decided 0, row 6
    # costs its amount (60), not the class cost 5
    assert result["challenger"]["realized_cost"]["mean"] == pytest.approx(1 / 3)
    b2 = capture(tmp_path, "B2", hand_records([(r, 0.5, 0) for r in REQUESTS[3:]], prefix="b"))
    code, result = run(tmp_path, a, b2, truth(tmp_path, keys, LABELS, name="t2"),
                       champion_model, plain)
    assert result["challenger"]["realized_cost"]["mean"] == pytest.approx(60 / 3)


def test_a_replay_decides_at_the_challengers_own_cost_columns(models, plain, shadow, tmp_path):
    """The champion has no cost column, the challenger has one: replayed, the challenger decides
    each request at the request's own cost, as it did when it served it (its shadow's capture)."""
    cost_model, _ = models
    a, _, labels, frame = shadow
    ids = [f"r{i}" for i in range(len(frame))]
    champion = capture(tmp_path, "Plain", answered_records(str(plain), bodies(frame), ids=ids))
    _, live = run(tmp_path, champion, a, labels, plain, cost_model)
    code, replay = run(tmp_path, champion, tmp_path, labels, plain, cost_model, "--replay",
                       "--labels-independent-of-decision")
    assert code == 0 and live["design"] == "paired"
    assert replay["challenger"]["realized_cost"]["mean"] == pytest.approx(
        live["challenger"]["realized_cost"]["mean"])
    assert replay["difference"]["difference"] == pytest.approx(live["difference"]["difference"])


@pytest.mark.parametrize("challenger", ["same", "inside"])
def test_a_variant_compared_with_itself_is_refused(models, tmp_path, challenger):
    """The same capture folder twice (or the endpoint's folder, holding the challenger's) would
    be read as two models deciding alike: a keep with no doubt left."""
    champion_model, challenger_model = models
    a, _ = hand_shadow(tmp_path)
    b = a if challenger == "same" else a / "AllTraffic"
    code, result = run(tmp_path, a, b, truth(tmp_path, [f"k{i}" for i in range(6)], LABELS),
                       champion_model, challenger_model)
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert code == 1 and result is None
    assert "the same capture" in message and "\n" not in message


def test_the_labels_a_wait_needs_are_the_scarcer_variants():
    """Split traffic, 50 champion and 8 challenger decisions: the challenger must reach
    MIN_LABELS, so about 100 / 8 times the labels so far, not 100 / 50."""
    result = difference.unpaired_difference(np.zeros(50), np.ones(8))
    action = difference.recommend(result)
    assert action["action"] == "wait" and "8 challenger decisions so far" in action["reason"]
    assert action["more_labels"] >= 58 * difference.MIN_LABELS / 8 - 58


def test_ids_with_a_hash_in_records_of_several_rows_are_matched_to_their_ground_truth(models,
                                                                                     tmp_path):
    champion_model, challenger_model = models

    def records(decides):
        out = []
        for i in range(3):
            rows = REQUESTS[2 * i:2 * i + 2]
            answers = "\n".join(json.dumps({"score": 0.5, "decision": d})
                                 for d in decides[2 * i:2 * i + 2])
            out.append(capture_record("\n".join(rows).encode(), "text/csv", answers.encode(),
                                      "application/jsonlines", f"q#{i}",
                                      f"2026-12-06T06:00:0{i}Z"))
        return out

    a = capture(tmp_path, "AllTraffic", records(CHAMPION_DECIDES))
    b = capture(tmp_path, "Shadow", records(CHALLENGER_DECIDES))
    labels = write_jsonl(tmp_path / "truth" / "g.jsonl", [
        ground_truth_record(f"q#{i}", f"{LABELS[2 * i]},{LABELS[2 * i + 1]}")
        for i in range(3)]).parent
    code, result = run(tmp_path, a, b, labels, champion_model, challenger_model)
    assert code == 0 and result["difference"]["rows"] == 6
    assert result["difference"]["difference"] == pytest.approx((1 - 82) / 6)
    counts = result["counts"]["ground_truth"]["counts"]
    assert counts["ground truth records matching no captured decision of either variant"] == 0


def test_a_pair_whose_champion_record_has_no_time_is_charted_at_its_twins(models, tmp_path):
    champion_model, challenger_model = models
    untimed = hand_records([(r, 0.5, d) for r, d in zip(REQUESTS, CHAMPION_DECIDES)])
    for record in untimed:
        del record["eventMetadata"]["inferenceTime"]
    a, b = hand_shadow(tmp_path, untimed)
    keys = [f"k{i}" for i in range(6)]
    code, result = run(tmp_path, a, b, truth(tmp_path, keys, LABELS), champion_model,
                       challenger_model)
    assert code == 0 and result["design"] == "paired"
    assert result["over_time"][-1]["rows"] == 6
    assert result["over_time"][-1]["difference"] == pytest.approx(
        result["difference"]["difference"])
    # split traffic: the champion's untimed decisions are left out of the chart, and counted
    code, result = run(tmp_path, a, b, truth(tmp_path, keys, LABELS, name="t2"),
                       champion_model, challenger_model, "--design", "unpaired")
    assert result["counts"]["champion"]["counts"][UNTIMED] == 6
    last = result["over_time"][-1]  # the challenger's six, none of the champion's
    assert last["rows"] == 6 and last["difference"] is None


def test_a_challenger_without_a_facet_is_judged_at_the_champions(models, tmp_path):
    """Both variants' decisions are judged at the champion's facet (as at its costs): a
    challenger trained without one is exactly the one whose bias needs a look."""
    champion_model, challenger_model = models
    unfaceted = edited_baseline(challenger_model, tmp_path / "unfaceted.json", facet_column=None)
    a, b = hand_shadow(tmp_path)
    code, result = run(tmp_path, a, b, truth(tmp_path, [f"k{i}" for i in range(6)], LABELS),
                       champion_model, unfaceted)
    assert code == 0, (tmp_path / "ml" / "output" / "message").read_text()
    assert result["facets"]["d"]["rows"] == 3
    assert result["facets"]["d"]["difference"] == pytest.approx(np.mean([-20, 0, -60]))
    assert "DPPL" in result["bias"]


@pytest.mark.parametrize("name", ["model.tar.gz", "metadata.json"])
def test_a_model_named_by_its_file_is_read_from_its_folder(models, tmp_path, name):
    import tarfile

    champion_model, challenger_model = models
    folder = tmp_path / "model"
    folder.mkdir()
    if name == "model.tar.gz":
        with tarfile.open(folder / name, "w:gz") as tar:
            for part in ("metadata.json", "xgboost-model.ubj"):
                tar.add(challenger_model / part, arcname=part)
    else:
        for part in ("metadata.json", "xgboost-model.ubj"):
            (folder / part).write_bytes((challenger_model / part).read_bytes())
    a, b, keys = split_traffic(tmp_path)
    code, result = run(tmp_path, a, b, truth(tmp_path, keys, LABELS), champion_model,
                       folder / name)
    assert code == 0, (tmp_path / "ml" / "output" / "message").read_text()
    assert result["difference"]["rows"] == 6


def test_a_baseline_whose_facet_cannot_be_read_is_refused_in_one_line(models, tmp_path):
    """A hand-edited baseline, or one from another version, whose facet values this version
    cannot apply: the job's one-line reason, never a traceback."""
    champion_model, challenger_model = models
    broken = edited_baseline(challenger_model, tmp_path / "constraints.json",
                             facet_values="over sixty")
    a, b, keys = split_traffic(tmp_path)
    code, result = run(tmp_path, a, b, truth(tmp_path, keys, LABELS), champion_model, broken)
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert code == 1 and str(broken) in message and "facet" in message
    assert "\n" not in message


def test_an_inference_time_out_of_range_is_no_time_not_a_crash(models, tmp_path):
    """Year 1 at +05:00 is before year 1 in UTC: no time (counted), never a traceback."""
    champion_model, challenger_model = models
    records = hand_records([(r, 0.5, d) for r, d in zip(REQUESTS, CHAMPION_DECIDES)])
    records[0]["eventMetadata"]["inferenceTime"] = "0001-01-01T00:00:00+05:00"
    a, b = hand_shadow(tmp_path, records)
    labels = truth(tmp_path, [f"k{i}" for i in range(6)], LABELS)
    code, result = run(tmp_path, a, b, labels, champion_model, challenger_model)
    assert code == 0 and result["difference"]["rows"] == 6
    assert result["counts"]["champion"]["counts"][UNTIMED] == 1
    code, _ = run(tmp_path, a, b, labels, champion_model, challenger_model,
                  "--start-time", "0001-01-01T00:00:00+05:00")
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert code == 1 and "is not an ISO 8601 time" in message


def test_a_facet_the_requests_do_not_carry_is_stated_not_silently_left_out(models, tmp_path):
    champion_model, challenger_model = models
    # "region" is not a feature: requests do not carry it
    outside = edited_baseline(champion_model, tmp_path / "outside.json", facet_column="region")
    a, b = hand_shadow(tmp_path)
    code, result = run(tmp_path, a, b, truth(tmp_path, [f"k{i}" for i in range(6)], LABELS),
                       outside, challenger_model)
    assert code == 0 and "facets" not in result
    assert any("facet column region" in c for c in result["caveats"]), result["caveats"]


def test_a_replayed_request_the_challenger_cannot_decide_is_counted_not_a_crash(models, plain,
                                                                                tmp_path):
    """The champion reads ``amount`` as a feature and served a negative one; the challenger
    reads it as the request's cost of a missed positive, and refuses it: that request has no
    twin, counted, never a traceback."""
    cost_model, _ = models
    rows = [(r, 0.5, d) for r, d in zip(REQUESTS, CHAMPION_DECIDES)]
    rows[1] = ("0,0,0,0,1,-20", 0.5, 0)
    a = capture(tmp_path, "Plain", hand_records(rows))
    code, result = run(tmp_path, a, tmp_path, truth(tmp_path, [f"k{i}" for i in range(6)], LABELS),
                       plain, cost_model, "--replay", "--labels-independent-of-decision")
    assert code == 0, (tmp_path / "ml" / "output" / "message").read_text()
    assert result["difference"]["rows"] == 5
    counts = result["counts"]["champion"]["counts"]
    assert counts["replayed requests the challenger refuses (no twin: not compared)"] == 1


def test_a_challenger_capture_holding_the_champions_records_is_refused(models, shadow, tmp_path):
    """A copy of the champion's capture given as the challenger's: the same records (each
    eventId is a fresh UUID per captured record, so a real shadow's never equal its twin's), the
    same answers; read as a comparison it would be a keep with no doubt left."""
    import shutil

    champion_model, challenger_model = models
    a, b, labels, _ = shadow
    copy = shutil.copytree(a, tmp_path / "copy")
    code, result = run(tmp_path, a, copy, labels, champion_model, challenger_model)
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert code == 1 and result is None
    assert "holds the champion's own records" in message
    # a shadow of another model whose records happen to share eventIds is compared as before
    code, result = run(tmp_path, a, b, labels, champion_model, challenger_model)
    assert code == 0 and result["design"] == "paired"


def test_an_id_reused_for_different_requests_in_split_traffic_is_no_pair(models, tmp_path):
    """Split traffic whose callers reuse inference ids (a customer's id): the champion's k0-k2
    and the challenger's k0-k2 are different requests, not a shadow's twins: never paired, and
    the ambiguity of their labels stated."""
    champion_model, _ = models
    a = capture(tmp_path, "A", hand_records(
        [(r, 0.5, d) for r, d in zip(REQUESTS[:3], CHAMPION_DECIDES[:3])]))
    b = capture(tmp_path, "B", hand_records(
        [(r, 0.5, d) for r, d in zip(REQUESTS[3:], CHALLENGER_DECIDES[3:])]))
    code, result = run(tmp_path, a, b, truth(tmp_path, ["k0", "k1", "k2"], LABELS[:3]),
                       champion_model, champion_model)
    assert code == 0 and result["design"] == "unpaired"
    counts = result["counts"]["ground_truth"]["counts"]
    assert counts["labelled requests decided by both variants (pairs)"] == 0
    assert counts[NOT_TWINS] == 3
    assert any("3 request keys" in c for c in result["caveats"]), result["caveats"]


def test_the_command_line_does_not_import_the_comparison_to_build_its_parser():
    """``costaware metrics`` (any command) builds every subcommand's parser: compare's arguments
    are light, its job (numpy, scipy.stats, the capture reader) is imported only to run it."""
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import sys; from costaware import cli; cli.main(['metrics']); "
         "print('costaware.comparison.job' in sys.modules, 'scipy.stats' in sys.modules, "
         "file=sys.stderr)"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False False"


def test_a_full_output_volume_is_one_line_worded_for_a_processing_job(models, shadow, tmp_path,
                                                                     mounts):
    """The outputs on a 16 KiB volume: exit 1, and the reason names the processing job's volume
    (not training's model and checkpoints)."""
    champion_model, challenger_model = models
    a, b, labels, _ = shadow
    volume = mounts.tmpfs(tmp_path / "volume", "16k")
    code = compare_main(["--champion", str(a), "--challenger", str(b), "--ground-truth",
                         str(labels), "--champion-model", str(champion_model),
                         "--challenger-model", str(challenger_model), "--output", str(volume)],
                        env={"SAGEMAKER_BASE_DIR": str(tmp_path / "ml")})
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert code == 1
    assert message.startswith(f"compare: {volume}/")
    assert message.endswith("No space left on device: the processing job's outputs share its "
                            "storage volume; give it more (VolumeSizeInGB of its ClusterConfig)")
