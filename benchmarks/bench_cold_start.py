"""Serve cold start: from starting ``serve`` to the first ``/ping`` 200, with a 1,000-tree model.

Trains a 1,000-round model (depth 4, synthetic data, costaware's own training in-process) into a
temporary model directory, then ``--runs`` times: start the real ``serve`` console script (gunicorn,
``SAGEMAKER_MODEL_SERVER_WORKERS`` workers, each loads the model before ``/ping`` says 200), poll
``/ping`` every 5 ms, record the time to the first 200, stop it with SIGTERM. Baselines measured in
the same run, the same number of times: a Python process that only imports xgboost
(``python -c "import xgboost"``, which imports scikit-learn too), and one that does what a worker
must do at the least: import XGBoost without scikit-learn (as ``serve`` does), the serving app,
and load the model (``costaware.model.artifact.load``). Prints medians (target: cold start < 3 s).

    python benchmarks/bench_cold_start.py [--runs 7] [--trees 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_serving import free_port, stop_server  # noqa: E402


def train_model(model_dir: str, trees: int) -> float:
    from costaware.model import artifact
    from costaware.config import hyperparameters
    from costaware.training import pipeline as training
    from costaware.decisions.costs import CostMatrix, RowCosts
    from costaware.data.channel_files import Dataset

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 20)).astype(np.float32)
    y = (rng.random(3000) < 1 / (1 + np.exp(-(x[:, 0] - x[:, 1] + 0.5 * x[:, 2])))).astype(np.int8)
    names = [f"f{i}" for i in range(x.shape[1])]
    settings = hyperparameters.parse({"num_round": str(trees), "max_depth": "4", "eta": "0.05",
                                      "cost_fn": "5", "calibration_data": "validation"})
    costs = RowCosts.constant(CostMatrix(1, 5), len(y))
    data = Dataset(x, y, names, costs, "synthetic", True)
    start = time.perf_counter()
    result = training.train(settings, data.take(slice(0, 2400)), data.take(slice(2400, None)),
                            log=lambda line: None)
    elapsed = time.perf_counter() - start
    artifact.save(model_dir, result.booster, names, result.policy, {"rounds_trained": trees})
    assert result.booster.num_boosted_rounds() == trees
    return elapsed


def cold_start(model_dir: str, workers: int | None, log_path: str) -> float:
    port = free_port()
    env = dict(os.environ, COSTAWARE_MODEL_DIR=model_dir, COSTAWARE_BIND_HOST="127.0.0.1",
               SAGEMAKER_BIND_TO_PORT=str(port))
    if workers:
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(workers)
    with open(log_path, "ab") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(["serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while time.perf_counter() - start < 60:
            if proc.poll() is not None:
                raise SystemExit(f"serve exited with status {proc.returncode}; see {log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/ping")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return time.perf_counter() - start
            except OSError:
                pass
            time.sleep(0.005)
        raise SystemExit(f"serve did not answer /ping 200 within 60 s; see {log_path}")
    finally:
        stop_server(proc)


def python_process(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--trees", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2,
                        help="SAGEMAKER_MODEL_SERVER_WORKERS (0: the server's default)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="costaware-cold-") as tmp:
        model_dir = os.path.join(tmp, "model")
        seconds = train_model(model_dir, args.trees)
        size = os.path.getsize(os.path.join(model_dir, "xgboost-model.ubj"))
        print(f"model: {args.trees} trees, depth 4, {size / 1e6:.1f} MB UBJSON "
              f"(trained in {seconds:.1f} s)")
        # what a worker must do at the least: XGBoost without scikit-learn (as serve imports it),
        # the app, the model
        load = ("import sys; sys.modules.setdefault('sklearn', None); "
                f"from costaware.model import artifact; import costaware.serving.app; "
                f"artifact.load({model_dir!r})")
        log_path = os.path.join(tmp, "serve.log")
        serve, bare, app = ("serve: start to first /ping 200", "python -c 'import xgboost'",
                            "python: app + model, XGBoost w/o sklearn")
        samples = {serve: [], bare: [], app: []}
        for _ in range(args.runs):  # in turn, so that load on the machine hits all alike
            samples[serve].append(cold_start(model_dir, args.workers or None, log_path))
            samples[bare].append(python_process("import xgboost"))
            samples[app].append(python_process(load))
        medians = {name: statistics.median(values) for name, values in samples.items()}
        for name, values in samples.items():
            print(f"{name:42s} median {medians[name]:6.2f} s  (min {min(values):.2f}, "
                  f"max {max(values):.2f}, {len(values)} runs)")
        cold = medians[serve]
        print(f"cold start {cold:.2f} s = {cold / medians[bare]:.2f}x importing xgboost, "
              f"{cold / medians[app]:.2f}x importing the app and loading the model in one process; "
              f"target < 3 s ({args.workers or 'default'} workers)")

if __name__ == "__main__":
    main()
