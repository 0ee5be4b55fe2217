"""Checks a multi-host job run in containers (local_test/train_multi_host.sh) against one host.

    python tests/image/check_multi_host.py SINGLE_TREE HOSTS_DIR N

SINGLE_TREE: the /opt/ml tree of a single-host run on the same data (the image test's step 3).
HOSTS_DIR: algo-1 … algo-N trees and logs. The data are headerless, label-first CSV with class
costs only (local_test/test_dir, calibrated out of fold). Exits non-zero with a reason on the first
failed check.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from union_metrics import Rows, differences, recompute, row_costs  # noqa: E402

from costaware.data import channel_files as data  # noqa: E402
from costaware.decisions.costs import CostMatrix  # noqa: E402

CHANNELS = ("train", "validation", "test")


def fail(message: str) -> None:
    sys.exit(f"FAIL: {message}")


def union_rows(hosts_dir: str, n: int, channel: str, costs: CostMatrix) -> Rows:
    """Every row of a channel in the job's order (hosts in sorted name order, as ranks are), read
    by the job's own reader; a FullyReplicated channel is one host's copy."""
    hosts = sorted(f"algo-{k}" for k in range(1, n + 1))
    config = json.load(open(os.path.join(hosts_dir, hosts[0], "input", "config",
                                         "inputdataconfig.json")))
    if config[channel].get("S3DistributionType") == "FullyReplicated":
        hosts = hosts[:1]
    parts = [data.load_channel(os.path.join(hosts_dir, host, "input", "data", channel),
                               "text/csv", data.DataOptions()) for host in hosts]
    label = np.concatenate([p.label for p in parts])
    return Rows(np.vstack([p.features for p in parts]), label, row_costs(costs, len(label)))


def main() -> None:
    single, hosts_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    first = os.path.join(hosts_dir, "algo-1")
    hyperparameters = json.load(open(os.path.join(first, "input", "config", "hyperparameters.json")))
    for k in range(2, n + 1):
        other = os.path.join(hosts_dir, f"algo-{k}")
        model_dir = os.path.join(other, "model")
        if os.path.isdir(model_dir) and os.listdir(model_dir):
            fail(f"algo-{k} wrote model files; only algo-1 may")
        if os.path.exists(os.path.join(other, "output", "data", "evaluation.json")):
            fail(f"algo-{k} wrote evaluation.json; only algo-1 may")
        if "validation:auc=" in open(os.path.join(hosts_dir, f"algo-{k}.log")).read():
            fail(f"algo-{k} logged metric lines; only algo-1 does")
    log = open(os.path.join(hosts_dir, "algo-1.log")).read()
    lines = log.count("validation:auc=")
    rounds = json.load(open(os.path.join(first, "model", "metadata.json")))["rounds_trained"]
    if lines != rounds + 1:
        fail(f"algo-1 logged {lines} validation metric lines, expected {rounds} rounds + [final]")
    for k in range(1, n + 1):
        if f"host algo-{k}: rank {k - 1} of {n} in the training group" not in \
                open(os.path.join(hosts_dir, f"algo-{k}.log")).read():
            fail(f"algo-{k} did not join the training group with rank {k - 1}")

    evaluation = json.load(open(os.path.join(first, "output", "data", "evaluation.json")))
    costs = CostMatrix(**{k: float(hyperparameters.get(f"cost_{k}", 1.0 if k in ("fp", "fn") else 0.0))
                          for k in ("fp", "fn", "tp", "tn")})
    channels = {name: union_rows(hosts_dir, n, name, costs) for name in CHANNELS}
    # cross-fitted: the fold models are not saved, so the out-of-fold validation numbers cannot
    # be recomputed; train and test are the saved model's, with the saved calibrator and rule
    expected = recompute(os.path.join(first, "model"), channels, calibrate_on=None)
    found = differences(evaluation, expected, ("train", "test"))
    if found:
        fail("the job's numbers differ from one host's on all the rows: " + "; ".join(found[:5]))
    rows = evaluation["channels"]["validation"]["served"]["rows"]
    if rows != len(channels["validation"].label):
        fail(f"the out-of-fold validation metrics cover {rows} rows, not every validation row")
    print("algo-1's train and test metrics equal one host's recomputation on every host's rows; "
          f"its out-of-fold validation metrics cover all {rows} validation rows")

    alone = json.load(open(os.path.join(single, "output", "data", "evaluation.json")))
    ours, theirs = (e["channels"]["test"]["served"] for e in (evaluation, alone))
    print(f"test: AUC {ours['auc']:.6f} on {n} hosts, {theirs['auc']:.6f} on one host; "
          f"expected cost {ours['expected_cost']:.2f} vs {theirs['expected_cost']:.2f}")
    if abs(ours["auc"] - theirs["auc"]) > 0.005:
        fail("test AUC differs from the single-host model's by more than 0.005")


if __name__ == "__main__":
    main()
