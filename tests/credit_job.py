"""The multi-host tests' credit-like job (moved from tests/test_multihost.py, bodies unchanged):
its hyperparameters, its generated channels, one /opt/ml tree per host, and what one host computes
for a saved model on the union of every host's rows. Also used by tests/test_external_memory.py."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from support import write_tree
from union_metrics import Rows, row_costs
from union_metrics import recompute as recompute_union

from costaware.decisions.costs import CostMatrix


# Calibrated on the validation channel, with the empirical rule: every number the job reports can
# be recomputed from the saved model (cross-fitting's fold models are not saved: see
# test_cross_fitting_on_two_hosts).
HYPERPARAMETERS = {
    "num_round": 25, "max_depth": 4, "eta": 0.2, "label_column": "default",
    "cost_fn_column": "amount", "cost_fp": 1, "cost_fn": 3,
    "facet_column": "group_flag", "facet_values_or_threshold": "[1]",
    "fairness_metrics": "DPPL,DI", "nthread": 1, "calibration_data": "validation",
    "decision_rule": "empirical", "report": "false",  # the image test's two hosts write one
    # fine histograms: the hosts' merged quantile sketch then gives one host's cuts, and the
    # models can be compared closely (with 256 bins their AUCs differed by up to 0.006 here)
    "max_bin": 1024,
}
FEATURES = [f"x{i}" for i in range(6)]
COLUMNS = ["default", *FEATURES, "amount", "group_flag"]


def credit_rows(n: int, seed: int) -> np.ndarray:
    """A learnable credit-like table: label, 6 features, a loan amount, a binary facet."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    facet = (rng.random(n) < 0.3).astype(float)
    amount = np.round(rng.lognormal(0, 0.5, n), 3)
    logit = x @ np.linspace(1.2, -0.8, len(FEATURES)) + 0.8 * facet - 0.7
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    x[rng.random(x.shape) < 0.02] = np.nan  # missing values travel too
    return np.column_stack([y, np.round(x, 4), amount, facet])


def to_csv(rows: np.ndarray) -> str:
    lines = [",".join(COLUMNS)]
    lines += [",".join("" if np.isnan(v) else f"{v:.6g}" for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def parsed(rows: np.ndarray) -> np.ndarray:
    """The rows as the training job reads them back from CSV text."""
    return pd.read_csv(io.StringIO(to_csv(rows))).to_numpy(dtype=np.float64)


DATA = {name: parsed(credit_rows(n, seed))
        for name, n, seed in (("train", 2400, 1), ("validation", 900, 2), ("test", 600, 3))}


def blocks(rows: np.ndarray, n: int) -> list[np.ndarray]:
    return [rows[i * len(rows) // n:(i + 1) * len(rows) // n] for i in range(n)]


def host_trees(tmp: Path, hosts: list[str], distribution: str, hyperparameters: dict,
               shards: dict | None = None, data: dict | None = None) -> list[Path]:
    """One /opt/ml tree per host. ``shards``: channel -> one array (or None) per host; ``data``:
    channel -> rows (:data:`DATA` by default)."""
    trees = []
    for index, host in enumerate(hosts):
        base = tmp / host
        channels = {}
        for name, rows in (DATA if data is None else data).items():
            if distribution == "FullyReplicated":
                part = rows
            else:
                part = (shards or {}).get(name, blocks(rows, len(hosts)))[index]
            channels[name] = {} if part is None else {f"part-{index}.csv": to_csv(part)}
        write_tree(base, hyperparameters, channels)
        config = base / "input" / "config"
        entries = json.loads((config / "inputdataconfig.json").read_text())
        for entry in entries.values():
            entry["S3DistributionType"] = distribution
        (config / "inputdataconfig.json").write_text(json.dumps(entries))
        (config / "resourceconfig.json").write_text(json.dumps(
            {"current_host": host, "hosts": list(reversed(hosts)), "network_interface_name": "lo"}))
        trees.append(base)
    return trees


def metric_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r"\bvalidation:auc=", line)]


def union_rows() -> dict:
    costs = CostMatrix(fp=HYPERPARAMETERS["cost_fp"], fn=HYPERPARAMETERS["cost_fn"])
    return {name: Rows(rows[:, 1:1 + len(FEATURES)], rows[:, 0].astype(np.int8),
                       row_costs(costs, len(rows), {"fn": rows[:, -2]}), rows[:, -1] == 1)
            for name, rows in DATA.items()}


def recompute(model_dir: Path, calibrate_on: str | None = "validation") -> dict:
    """What one host computes for the saved model on all the rows."""
    return recompute_union(model_dir, union_rows(), calibrate_on)
