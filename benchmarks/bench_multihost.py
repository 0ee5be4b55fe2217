"""Multi-instance training throughput: 1 host against 2 hosts on this machine.

Each host is the toolkit's real ``train`` in its own process with its own /opt/ml tree (as in
tests/test_multihost.py); the 2-host runs use ShardedByS3Key halves of the same rows and meet
through XGBoost's tracker on 127.0.0.1. Timed end to end (start of the processes to the last exit:
reading Parquet, the hosts meeting, boosting, gathering the validation margins every round, the
final evaluation and the report). Three ways, best of ``--repeat`` each, run in turn:

* 1 host, all cores (``nthread`` 0): the baseline;
* 2 hosts, ``nthread`` = cores / 2: the same cores split between two hosts;
* 2 hosts, all cores each: oversubscribed, what two SageMaker instances would be on one machine.

Prints train rows per second and the ratio to the baseline. On one machine two hosts share its
cores and memory bandwidth, so the ratio shows the overhead of distribution (histograms summed
over the network every tree level, margins gathered every round), not the speed-up of two
instances; see docs/multi-host.md for what to expect on real multi-instance jobs.

    python benchmarks/bench_multihost.py [--rows 400000] [--features 30] [--rounds 50]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hosts import hosts_of, run_hosts  # noqa: E402

PARQUET = "application/x-parquet"


def write_hosts(base: Path, frames: dict, n: int, settings: dict) -> list[Path]:
    hosts = hosts_of(n)
    trees = []
    for k, host in enumerate(hosts):
        tree = base / f"{n}-{host}"
        config = tree / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(settings))
        (config / "inputdataconfig.json").write_text(json.dumps(
            {name: {"ContentType": PARQUET, "S3DistributionType": "ShardedByS3Key"}
             for name in frames}))
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": host,
                                                                "hosts": hosts}))
        for name, frame in frames.items():
            directory = tree / "input" / "data" / name
            directory.mkdir(parents=True)
            rows = len(frame)
            frame.iloc[k * rows // n:(k + 1) * rows // n].to_parquet(directory / "part.parquet")
        trees.append(tree)
    return trees


def timed(trees: list[Path], n: int) -> float:
    started = time.perf_counter()
    results = run_hosts(trees, hosts_of(n), timeout=3600)
    seconds = time.perf_counter() - started
    for code, log in results:
        if code != 0:
            sys.exit(f"a host failed:\n{log[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=400_000, help="train rows (validation: a quarter)")
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    total = args.rows + args.rows // 4
    x, y = make_classification(n_samples=total, n_features=args.features, n_informative=10,
                               weights=[0.9], random_state=0)
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"f{i}" for i in range(args.features)])
    frame.insert(0, "label", y)
    frames = {"train": frame.iloc[:args.rows], "validation": frame.iloc[args.rows:]}
    base_settings = {"num_round": args.rounds, "max_depth": 6, "eta": 0.3, "cost_fn": 5,
                     "label_column": "label"}
    ways = [("1 host, nthread 0 (all cores)", 1, 0),
            (f"2 hosts, nthread {max(1, cores // 2)} each", 2, max(1, cores // 2)),
            ("2 hosts, nthread 0 each (oversubscribed)", 2, 0)]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for index, (_, n, nthread) in enumerate(ways):
            trees[index] = write_hosts(Path(tmp) / str(index), frames, n,
                                       {**base_settings, "nthread": nthread})
        best = {index: float("inf") for index in trees}
        for _ in range(args.repeat):
            for index, (_, n, _) in enumerate(ways):
                best[index] = min(best[index], timed(trees[index], n))
    print(f"{args.rows} train rows, {args.rows // 4} validation rows, {args.features} features, "
          f"{args.rounds} rounds, depth 6; {cores} cores; best of {args.repeat}, end to end")
    baseline = args.rows / best[0]
    for index, (label, _, _) in enumerate(ways):
        rate = args.rows / best[index]
        print(f"  {label:<42} {best[index]:7.1f} s  {rate:10,.0f} train rows/s  "
              f"{rate / baseline:5.2f}x")


if __name__ == "__main__":
    main()
