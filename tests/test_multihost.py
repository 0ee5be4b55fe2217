"""Multi-instance training: 2 and 3 hosts as separate ``train`` processes on 127.0.0.x.

Each host has its own ``/opt/ml`` tree, its own shard (``ShardedByS3Key``) or a full copy
(``FullyReplicated``) and a ``resourceconfig.json`` naming every host, as SageMaker writes it. The
hosts meet through XGBoost's tracker on the first host. The checks:

* every metric the job reports (expected cost, savings, precision/recall/F1/accuracy, DPPL, DI,
  the combined objective, AUC, log loss, Brier, ECE), the calibrator and the fitted decision rule
  equal what the public single-host functions compute for the saved model on the union of every
  host's rows (counts exactly, floats to 1e-8: see union_metrics.py);
* the model is as good as one host's on all the data: AUC within 0.002;
* only the first host writes the model and the evaluation; hosts without data drop out; a peer that
  never comes fails the job within the peer timeout, with a reason naming it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from support import failure_reason, run_train, write_tree
from hosts import free_port_pair, hosts_of, run_hosts, spawn_host

from costaware.model import artifact
from union_metrics import differences
from credit_job import (DATA, FEATURES, HYPERPARAMETERS, blocks, credit_rows, host_trees,
                        metric_lines, parsed, recompute, to_csv)

@pytest.fixture(scope="module")
def single_host(tmp_path_factory) -> Path:
    base = write_tree(tmp_path_factory.mktemp("single") / "ml", HYPERPARAMETERS,
                      {name: {"all.csv": to_csv(rows)} for name, rows in DATA.items()})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base


@pytest.mark.parametrize("n_hosts,distribution", [(2, "ShardedByS3Key"), (3, "ShardedByS3Key"),
                                                  (2, "FullyReplicated")])
def test_hosts_train_one_model_with_the_single_host_metrics(tmp_path, single_host, n_hosts,
                                                            distribution):
    hosts = hosts_of(n_hosts)
    trees = host_trees(tmp_path, hosts, distribution, HYPERPARAMETERS)
    results = run_hosts(trees, hosts)
    for (code, log), host in zip(results, hosts):
        assert code == 0, f"{host}:\n{log[-4000:]}"
    first, others = trees[0], trees[1:]
    assert (first / "model" / "metadata.json").exists()
    for base in others:  # only the first host writes the model and the evaluation
        assert not (base / "model").exists() or not any((base / "model").iterdir())
        assert not (base / "output" / "data" / "evaluation.json").exists()
    logs = [log for _, log in results]
    assert len(metric_lines(logs[0])) == HYPERPARAMETERS["num_round"] + 1  # + the [final] line
    assert all(not metric_lines(log) for log in logs[1:])
    for host, log in zip(hosts, logs):
        assert f"host {host}: rank {hosts.index(host)} of {n_hosts}" in log

    evaluation = json.loads((first / "output" / "data" / "evaluation.json").read_text())
    metadata = json.loads((first / "model" / "metadata.json").read_text())
    assert metadata["rows"] == {name: len(rows) for name, rows in DATA.items()}
    assert metadata["training_hosts"] == hosts
    expected = recompute(first / "model")
    assert differences(evaluation, expected) == []
    assert set(evaluation["channels"]) == set(DATA)
    assert "dppl" in evaluation["channels"]["test"]["served"]  # fairness compared too
    assert evaluation["policy"]["rule"]["kind"] == "empirical"

    # The model matches one host's on all the data.
    single = json.loads((single_host / "output" / "data" / "evaluation.json").read_text())
    for name in ("validation", "test"):
        ours = evaluation["channels"][name]["served"]["auc"]
        theirs = single["channels"][name]["served"]["auc"]
        assert abs(ours - theirs) <= 0.002, (name, ours, theirs)


@pytest.fixture(scope="module")
def single_host_cross_fit(tmp_path_factory) -> Path:
    settings = {k: v for k, v in HYPERPARAMETERS.items() if k != "calibration_data"}
    base = write_tree(tmp_path_factory.mktemp("single-cf") / "ml", settings,
                      {name: {"all.csv": to_csv(rows)} for name, rows in DATA.items()})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base


def test_cross_fitting_on_two_hosts(tmp_path, single_host_cross_fit):
    """The default: fold models over train and validation on every host, the folds drawn from the
    rows of all hosts, their average served. The saved model's train and test metrics are those
    of all the rows; the out-of-fold validation metrics cover every validation row."""
    settings = {k: v for k, v in HYPERPARAMETERS.items() if k != "calibration_data"}
    hosts = hosts_of(2)
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", settings)
    results = run_hosts(trees, hosts)
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:]
    assert "held out: out-of-fold margins of 5 fold models over train and validation" in results[0][1]
    evaluation = json.loads((trees[0] / "output" / "data" / "evaluation.json").read_text())
    assert evaluation["policy"]["calibrator"]["rows"] == len(DATA["train"]) + len(DATA["validation"])
    assert differences(evaluation, recompute(trees[0] / "model", None), ("train", "test")) == []
    validation = evaluation["channels"]["validation"]
    assert validation["scored_by"] == "out-of-fold"
    assert validation["served"]["rows"] == len(DATA["validation"])
    # the folds are one host's (every host's train rows take their turn, then every host's
    # validation rows), so the fold models, their average (the saved model) and their
    # out-of-fold margins match one host's, to the hosts' merged histogram cuts
    single = json.loads((single_host_cross_fit / "output" / "data" / "evaluation.json").read_text())
    for channel in ("test", "validation"):
        ours, theirs = (e["channels"][channel]["served"]["auc"] for e in (evaluation, single))
        assert abs(ours - theirs) <= 0.002, (channel, ours, theirs)


def test_the_fold_average_and_isotonic_on_two_hosts(tmp_path):
    """The fold models' average served and an isotonic calibrator fitted from every host's
    histogram: the saved model is 5 fold models' trees, and every train and test metric the job
    reports is what one host computes for the saved model and calibrator on all the rows."""
    settings = {**{k: v for k, v in HYPERPARAMETERS.items() if k != "calibration_data"},
                "served_model": "fold_average", "calibrator": "isotonic"}
    hosts = hosts_of(2)
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", settings)
    results = run_hosts(trees, hosts)
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:]
    evaluation = json.loads((trees[0] / "output" / "data" / "evaluation.json").read_text())
    assert evaluation["served_model"] == "fold_average"
    assert evaluation["calibrator_choice"]["chosen"] == "isotonic"
    assert evaluation["policy"]["calibrator"]["method"] == "isotonic"
    assert evaluation["policy"]["calibrator"]["rows"] == len(DATA["train"]) + len(DATA["validation"])
    model = artifact.load(str(trees[0] / "model"))
    assert model.booster.num_boosted_rounds() == 5 * (evaluation["rounds"]["kept"])
    assert differences(evaluation, recompute(trees[0] / "model", None), ("train", "test")) == []


def test_sampled_rounds_and_the_parity_penalty_on_three_hosts(tmp_path):
    """Row/column sampling (a booster per round) and the parity penalty, whose totals are summed
    over hosts every round: the reported numbers are still those of all the rows."""
    settings = {**HYPERPARAMETERS, "subsample": 0.8, "colsample_bytree": 0.8, "seed": 3,
                "fairness_penalty": 20.0}
    hosts = hosts_of(3)
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", settings)
    results = run_hosts(trees, hosts)
    assert [code for code, _ in results] == [0, 0, 0], results[0][1][-3000:]
    evaluation = json.loads((trees[0] / "output" / "data" / "evaluation.json").read_text())
    assert differences(evaluation, recompute(trees[0] / "model")) == []
    # the penalty works across hosts: the gap it penalises, mean_a p - mean_d p over all train
    # rows, shrinks against the same hosts' unpenalised model
    plain = host_trees(tmp_path / "plain", hosts, "ShardedByS3Key",
                       {**settings, "fairness_penalty": 0.0})
    assert [code for code, _ in run_hosts(plain, hosts)] == [0, 0, 0]

    sensitive = DATA["train"][:, -1] == 1

    def gap(model_dir):
        model = artifact.load(str(model_dir))
        features = DATA["train"][:, 1:1 + len(FEATURES)].astype(np.float32)
        score = model.policy.probability(model.margin(features))
        return abs(score[~sensitive].mean() - score[sensitive].mean())

    penalised, unpenalised = gap(trees[0] / "model"), gap(plain[0] / "model")
    assert penalised < 0.5 * unpenalised, (penalised, unpenalised)


def test_a_host_without_train_files_drops_out_as_in_the_built_in_container(tmp_path):
    hosts = hosts_of(3)
    shards = {name: [*blocks(rows, 2), None] for name, rows in DATA.items()}
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", HYPERPARAMETERS, shards)
    results = run_hosts(trees, hosts)
    assert [code for code, _ in results] == [0, 0, 0], results[-1][1][-3000:]
    idle_log = results[2][1]
    assert "127.0.0.3: the train channel gave this host no files" in idle_log
    assert "which runs on 127.0.0.1, 127.0.0.2" in idle_log
    assert not (trees[2] / "output" / "failure").exists()
    # the two hosts with data train together; the numbers are those of all the rows
    metadata = json.loads((trees[0] / "model" / "metadata.json").read_text())
    assert metadata["training_hosts"] == hosts[:2]
    evaluation = json.loads((trees[0] / "output" / "data" / "evaluation.json").read_text())
    assert differences(evaluation, recompute(trees[0] / "model")) == []


def test_a_validation_shard_without_files_is_an_empty_share(tmp_path):
    """Fewer validation files than hosts: a host holds no validation rows, the metrics still
    cover every validation row."""
    hosts = hosts_of(2)
    shards = {"validation": [DATA["validation"], None]}
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", HYPERPARAMETERS, shards)
    results = run_hosts(trees, hosts)
    assert [code for code, _ in results] == [0, 0], results[1][1][-3000:]
    assert "host 127.0.0.2: channel validation: 0 rows, 6 features" in results[1][1]
    evaluation = json.loads((trees[0] / "output" / "data" / "evaluation.json").read_text())
    assert differences(evaluation, recompute(trees[0] / "model")) == []
    assert evaluation["channels"]["validation"]["served"]["rows"] == len(DATA["validation"])


def test_bad_data_on_one_host_fails_every_host_with_its_reason(tmp_path):
    hosts = hosts_of(2)
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", HYPERPARAMETERS)
    bad = trees[1] / "input" / "data" / "train" / "part-1.csv"
    lines = bad.read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[2], "abc", 1)
    bad.write_text("\n".join(lines) + "\n")
    results = run_hosts(trees, hosts)
    assert [code for code, _ in results] == [1, 1]
    own = failure_reason(trees[1])
    assert "part-1.csv" in own and "line 6" in own and "abc" in own, own
    peer = failure_reason(trees[0])
    assert peer.startswith("host 127.0.0.2 failed: ") and "part-1.csv" in peer, peer
    assert not (trees[0] / "model" / "metadata.json").exists()


def test_a_peer_that_never_comes_fails_within_the_peer_timeout(tmp_path):
    hosts = hosts_of(2)
    trees = host_trees(tmp_path, hosts, "FullyReplicated", HYPERPARAMETERS)
    [(code, log)] = run_hosts(trees[:1], hosts, peer_timeout=4)
    assert code == 1, log[-3000:]
    reason = failure_reason(trees[0])
    assert "the training group of 2 hosts (127.0.0.1, 127.0.0.2)" in reason, reason
    assert "did not form within 4 s (COSTAWARE_PEER_TIMEOUT)" in reason, reason


def test_an_unresolvable_host_name_fails_with_the_name(tmp_path):
    hosts = ["127.0.0.1", "algo-never-resolves.invalid"]
    trees = host_trees(tmp_path, hosts, "FullyReplicated", HYPERPARAMETERS)
    [(code, log)] = run_hosts(trees[:1], hosts, peer_timeout=2)
    assert code == 1, log[-3000:]
    assert "'algo-never-resolves.invalid' (from resourceconfig.json) did not resolve" in \
        failure_reason(trees[0])


def _config(tmp_path, content) -> Path:
    (tmp_path / "resourceconfig.json").write_text(content if isinstance(content, str)
                                                  else json.dumps(content))
    return tmp_path


def test_host_config_reads_resourceconfig_sorted_with_port_and_timeout(tmp_path):
    from costaware.training.multihost import read_host_config

    assert read_host_config(str(tmp_path)) is None  # no resourceconfig.json: one local host
    config = read_host_config(str(_config(tmp_path, {"current_host": "algo-2",
                                                     "hosts": ["algo-2", "algo-10", "algo-1"]})),
                              env={"COSTAWARE_TRACKER_PORT": "9300", "COSTAWARE_PEER_TIMEOUT": "30"})
    assert config.hosts == ("algo-1", "algo-10", "algo-2") and config.current_host == "algo-2"
    assert (config.port, config.peer_timeout, config.multi_host) == (9300, 30.0, True)
    # one host: the variables are not read, so a bad one cannot fail a single-instance job
    single = read_host_config(str(_config(tmp_path, {"current_host": "algo-1", "hosts": ["algo-1"]})),
                              env={"COSTAWARE_TRACKER_PORT": "http"})
    assert (single.multi_host, single.port, single.peer_timeout) == (False, 9099, 600.0)


TWO = {"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}


@pytest.mark.parametrize("content,env,message", [
    ("{not json", {}, "resourceconfig.json is not valid JSON"),
    ({"current_host": "algo-1", "hosts": []}, {}, "'hosts' must be a non-empty list"),
    ({"current_host": "algo-1", "hosts": ["algo-1", ""]}, {}, "'hosts' must be a non-empty list"),
    ({"current_host": "algo-1", "hosts": ["algo-1", "algo-1"]}, {}, "lists a host twice"),
    ({"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}, {}, "'current_host' \"algo-3\" is not"),
    (TWO, {"COSTAWARE_TRACKER_PORT": "65535"}, "COSTAWARE_TRACKER_PORT='65535'"),
    (TWO, {"COSTAWARE_TRACKER_PORT": "http"}, "COSTAWARE_TRACKER_PORT='http'"),
    (TWO, {"COSTAWARE_PEER_TIMEOUT": "0"}, "COSTAWARE_PEER_TIMEOUT='0'"),
    (TWO, {"COSTAWARE_PEER_TIMEOUT": "nan"}, "COSTAWARE_PEER_TIMEOUT='nan'"),
])
def test_host_config_errors_name_the_file_or_variable(tmp_path, content, env, message):
    from costaware.errors import InputError
    from costaware.training.multihost import read_host_config

    with pytest.raises(InputError, match=re.escape(message)):
        read_host_config(str(_config(tmp_path, content)), env=env)


def test_an_unknown_s3_distribution_type_fails_the_job(tmp_path):
    base = write_tree(tmp_path / "ml", HYPERPARAMETERS, {"train": {"a.csv": to_csv(DATA["train"])}})
    config = base / "input" / "config" / "inputdataconfig.json"
    config.write_text(json.dumps({"train": {"ContentType": "text/csv",
                                            "S3DistributionType": "ShardedByRow"}}))
    result = run_train(base)
    assert result.returncode == 1
    assert failure_reason(base) == ("inputdataconfig.json: channel 'train': S3DistributionType "
                                    '"ShardedByRow"; valid: FullyReplicated, ShardedByS3Key')


def test_a_host_that_dies_while_training_fails_the_others_with_a_one_line_reason(tmp_path):
    hosts = hosts_of(2)
    settings = {**HYPERPARAMETERS, "num_round": 100000}
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", settings)
    port = free_port_pair()
    procs = [spawn_host(base, port, peer_timeout=60) for base in trees]
    try:
        deadline = time.monotonic() + 120
        log = ""
        while "validation:auc=" not in log and time.monotonic() < deadline:
            log += procs[0].stdout.readline()
        assert "validation:auc=" in log, log[-2000:]
        procs[1].kill()  # the second host dies mid-training
        procs[1].wait()
        rest, _ = procs[0].communicate(timeout=120)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert procs[0].returncode == 1, rest[-3000:]
    reason = failure_reason(trees[0])
    assert reason.startswith("host 127.0.0.1: lost the training group of 127.0.0.1, 127.0.0.2"), reason
    assert "\n" not in reason.strip() and "Stack trace" not in reason


def test_validation_files_on_a_host_without_train_files_fail_the_job(tmp_path):
    """That host would leave the job and its validation rows with it: refused, not ignored."""
    hosts = hosts_of(3)
    shards = {"train": [*blocks(DATA["train"], 2), None]}
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", HYPERPARAMETERS, shards)
    results = run_hosts(trees, hosts)
    assert [code for code, _ in results] == [1, 1, 1]
    for base in trees:
        assert failure_reason(base).startswith(
            "host 127.0.0.3 received validation files but no train files (ShardedByS3Key)")


def test_exact_tree_method_is_refused_on_several_hosts(tmp_path):
    hosts = hosts_of(2)
    trees = host_trees(tmp_path, hosts, "FullyReplicated", {**HYPERPARAMETERS, "tree_method": "exact"})
    [(code, _)] = run_hosts(trees[:1], hosts, peer_timeout=5)
    assert code == 1
    assert failure_reason(trees[0]).startswith("hyperparameter 'tree_method': exact is single-host")


def test_the_parity_penalty_summed_over_shards_equals_the_one_host_penalty():
    """Each host's gradients, with the totals reduced over hosts, are its rows' share of the
    single-host gradients."""
    from costaware.training.objective import parity_penalty_grad_hess

    rng = np.random.default_rng(0)
    margin = rng.normal(size=3000)
    sensitive = rng.random(3000) < 0.3
    whole = parity_penalty_grad_hess(margin, sensitive, 5.0)
    cuts = [0, 700, 700, 2000, 3000]  # three shards and an empty one
    shards = [slice(a, b) for a, b in zip(cuts, cuts[1:])]

    def totals(part):
        p = 1 / (1 + np.exp(-margin[part]))
        s = sensitive[part]
        return np.array([p[~s].sum(), (~s).sum(), p[s].sum(), s.sum()])

    summed = sum(totals(part) for part in shards)
    for part in shards:
        grad, hess = parity_penalty_grad_hess(margin[part], sensitive[part], 5.0,
                                              reduce=lambda _local: summed)
        np.testing.assert_allclose(grad, whole[0][part], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(hess, whole[1][part], rtol=1e-12, atol=1e-15)
    # without the reduction, a shard's gradients are not the single-host ones
    local, _ = parity_penalty_grad_hess(margin[shards[2]], sensitive[shards[2]], 5.0)
    assert not np.allclose(local, whole[0][shards[2]])


# --- three classes -------------------------------------------------------------------------------

CLASS_HYPERPARAMETERS = {
    "num_round": 12, "max_depth": 3, "eta": 0.3, "label_column": "default", "nthread": 1,
    "cost_matrix": "[[0,1,3],[2,0,1],[6,2,0]]", "calibration_data": "validation",
    "facet_column": "group_flag", "facet_values_or_threshold": "[1]",
    "label_values_or_threshold": "[2]", "fairness_metrics": "DPPL,DI", "fairness_penalty": 2.0,
    "max_abs_dppl": 0.1, "max_bin": 1024, "report": "false",
}


def class_rows(n: int, seed: int) -> np.ndarray:
    """``credit_rows`` with three classes: the label is the tercile of a noisy score."""
    rows = credit_rows(n, seed)
    score = np.nan_to_num(rows[:, 1:4]).sum(axis=1) + np.random.default_rng(seed).normal(size=n)
    rows[:, 0] = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    return parsed(rows)


@pytest.mark.parametrize("matrix,external", [
    ("[[0,1,3],[2,0,1],[6,2,0]]", False), ('[[0,1,3],[2,0,1],["amount",2,0]]', False),
    ('[[0,1,3],[2,0,1],["amount",2,0]]', True)],
    ids=["class costs", "a per-row cell", "a per-row cell, external memory"])
def test_three_classes_on_two_hosts_report_the_metrics_of_all_their_rows(tmp_path, monkeypatch,
                                                                         matrix, external):
    """A 3-class job on two hosts (ShardedByS3Key) with a facet, the fairness penalty and a
    bounded rule: every metric the job reports equals what one host computes for the saved model
    and policy on the union of the rows (from additive K x K summaries; the AUC from the gathered
    scores), and the calibrator is the one-host fit on all the validation rows. Also with a cell
    of the matrix read per row (class 2 decided 0 costs the row's loan amount): the loss weights,
    the bound and every metric at each row's own matrix, summed over the hosts. And with the
    channels' features left in their files (external memory, read in batches of
    150 rows)."""
    from costaware.metrics import bias
    from costaware.config import hyperparameters
    from costaware.metrics import multiclass_metrics
    from costaware.training.class_kinds import ManyClasses

    chosen = {**CLASS_HYPERPARAMETERS, "cost_matrix": matrix,
              "external_memory": "true" if external else "false"}
    monkeypatch.setenv("COSTAWARE_BATCH_ROWS", "150")
    settings = hyperparameters.parse({k: str(v) for k, v in chosen.items()})
    per_row = "amount" in matrix  # then the amount is a cost, not a feature

    data = {name: class_rows(n, seed) for name, n, seed in
            (("train", 1200, 1), ("validation", 600, 2), ("test", 400, 3))}
    hosts = hosts_of(2)
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", chosen, data=data)
    results = run_hosts(trees, hosts)
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:]
    evaluation = json.loads((trees[0] / "output" / "data" / "evaluation.json").read_text())
    model = artifact.load(str(trees[0] / "model"))
    policy = model.policy
    assert evaluation["policy"]["rule"]["kind"] == "constrained"

    def features(rows):
        return rows[:, 1:-2] if per_row else rows[:, 1:-1]  # x0..x5 (and the amount)

    def probability(rows):
        return policy.probability(model.margin(features(rows)))

    def cells(rows):
        return {(2, 0): rows[:, -2]} if per_row else None

    assert model.feature_names == [f"x{i}" for i in range(6)] + ([] if per_row else ["amount"])
    validation = data["validation"]
    label = validation[:, 0].astype(np.int64)
    chosen = evaluation["calibrator_choice"]["chosen"]
    refit = next(candidate for candidate in ManyClasses(settings).calibrator_candidates(len(label))
                 if candidate.name == chosen).fit(model.margin(features(validation)), label,
                                                  lambda values: np.asarray(values))
    assert refit.rows == policy.calibrator.rows == len(validation)
    assert np.allclose([refit.temperature, *refit.bias],
                       [policy.calibrator.temperature, *policy.calibrator.bias], rtol=1e-4)
    for name, rows in data.items():
        label, sensitive, p = rows[:, 0].astype(np.int64), rows[:, -1] == 1, probability(rows)
        decision, _ = policy.decide(p, sensitive, cells(rows))
        expected = multiclass_metrics.channel_metrics(label, p, decision, policy.cost_matrix,
                                                      cells=cells(rows))
        facets, _ = bias.collapsed_tables(label, decision, sensitive, (2,))
        expected.update(bias.per_round_with_objective(
            ["DPPL", "DI"], facets, None, expected["auc"], settings.objective_auc_weight,
            settings.objective_fairness_weight))
        served = evaluation["channels"][name]["served"]
        for key in ("rows", "confusion"):
            assert served[key] == expected[key], (name, key)
        for key, value in expected.items():
            assert np.allclose(served[key], value, rtol=1e-8, atol=1e-12), (name, key)


def test_sampled_rounds_with_a_host_whose_sample_holds_no_train_row(tmp_path):
    """Above ROUND_ROWS held-out rows every round reads a seeded sample of each host's rows. A host
    with few train rows can draw none of them; its sampled rows are then all validation rows, and
    it must still make the same collective calls as the other hosts (the metric line's watched
    rows are the validation rows on every host), or the hosts' sums no longer pair up."""
    from costaware import cluster as cluster_module
    from costaware.training import pipeline

    big = parsed(credit_rows(pipeline.ROUND_ROWS + 10_000, 5))
    train = {"host 0": big[:-10_000], "host 1": DATA["train"][:3]}
    validation = {"host 0": big[-10_000:], "host 1": DATA["validation"][:20]}
    total = sum(len(rows) for rows in (*train.values(), *validation.values()))

    class Second(cluster_module.Cluster):  # host 1's view of the sums, for round_sample alone
        rank = 1

        def sum(self, values):
            return np.array([float(total)])

    seed = next(seed for seed in range(200)
                if not pipeline.round_sample(3 + 20, seed, Second())[:3].any())
    settings = {**{k: v for k, v in HYPERPARAMETERS.items()
                   if k not in ("calibration_data", "decision_rule", "max_bin")},
                "num_round": 3, "max_depth": 2, "seed": seed}
    hosts = hosts_of(2)
    shards = {"train": list(train.values()), "validation": list(validation.values()),
              "test": [DATA["test"][:50], DATA["test"][50:100]]}
    trees = host_trees(tmp_path, hosts, "ShardedByS3Key", settings, shards)
    results = run_hosts(trees, hosts, timeout=240)
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    log = results[0][1]
    sampled = re.search(r"read a random sample of (\d+) of the held-out rows", log)
    assert sampled and 49_000 < int(sampled.group(1)) < 51_000  # every host's share, summed
    assert len(metric_lines(log)) == 3 + 1  # 3 rounds and the final validation line
