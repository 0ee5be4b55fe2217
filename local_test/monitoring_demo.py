"""The monitoring demo: a credit model served with data capture on, a stream of real applicants
with a drift introduced at a known point, ground truth, and Model Monitor's job (`monitor`) on each
phase of the stream, in the image when one is given, as SageMaker runs it.

1. South German Credit (``local_test/data``), each applicant's own cost of being accepted and
   turning out bad (``loss``: 0.15% of the loan amount, about 5 on average against the classic
   matrix's 5), refusing a good one costs 1; facet ``foreign_worker``. 50% train, 20% test (the
   baseline's rows), 30% the stream's pool (never trained on).
2. ``costaware train``: the model and its baseline (``model/baseline/``).
3. The real ``serve`` on 127.0.0.1 with data capture on (``COSTAWARE_DATA_CAPTURE_DIR``), one
   applicant per request, each with its inference id.
4. Four phases of ``--records`` applicants drawn from the pool: as they come; longer loans (rows
   drawn with weights rising with ``duration``: a covariate shift); twice as many bad risks (the
   base rate); losses 1.5 times larger (costs that grow). Each phase its own seconds of
   ``inferenceTime``, so each is a monitoring window.
5. Ground truth for every applicant (Model Monitor's merge format), then ``monitor`` once per
   window with SageMaker's environment variables and paths (``--image``: ``podman run IMAGE
   monitor``; else the ``monitor`` installed here, the same code), and what it found.

    python local_test/monitoring_demo.py [--work DIR] [--image IMAGE] [--records 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from prepare_german_credit import load  # noqa: E402

BIN = os.path.dirname(sys.executable)
HYPERPARAMETERS = {"label_column": "credit_risk", "facet_column": "foreign_worker",
                   "facet_values_or_threshold": "[1]", "facet_is_feature": "true",
                   "cost_fp": "5", "cost_fn": "1", "cost_fp_column": "loss", "num_round": "60",
                   "eta": "0.1", "max_depth": "4", "seed": "1", "report": "false"}
PHASES = ("as they come", "longer loans", "twice as many bad risks", "losses x1.5")
PROCESSING = "/opt/ml/processing"


def split(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    frame = load()
    frame["loss"] = (frame["amount"] * 0.0015).round(4)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    a, b = int(0.5 * len(frame)), int(0.7 * len(frame))
    return (frame.iloc[order[:a]], frame.iloc[order[a:b]],
            frame.iloc[order[b:]].reset_index(drop=True))


def train(work: str, train_rows: pd.DataFrame, test_rows: pd.DataFrame,
          hyperparameters: dict = HYPERPARAMETERS) -> str:
    base = os.path.join(work, "ml")
    for channel, rows in (("train", train_rows), ("test", test_rows)):
        os.makedirs(os.path.join(base, "input", "data", channel), exist_ok=True)
        rows.to_csv(os.path.join(base, "input", "data", channel, f"{channel}.csv"), index=False)
    config = os.path.join(base, "input", "config")
    os.makedirs(config, exist_ok=True)
    for name, content in (("hyperparameters.json", hyperparameters),
                          ("inputdataconfig.json", {"train": {"ContentType": "text/csv"},
                                                    "test": {"ContentType": "text/csv"}}),
                          ("resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1"]})):
        with open(os.path.join(config, name), "w", encoding="utf-8") as handle:
            json.dump(content, handle)
    done = subprocess.run([os.path.join(BIN, "costaware"), "train", "--base-dir", base],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
    print(next(line for line in done.stdout.splitlines() if line.startswith("monitoring baseline")))
    return base


def phase_rows(pool: pd.DataFrame, phase: int, n: int, rng) -> pd.DataFrame:
    weights = np.ones(len(pool))
    if phase == 1:
        weights = pool["duration"].rank().to_numpy() ** 2
    elif phase == 2:  # bad risks drawn with the weight that doubles their share
        bad = (pool["credit_risk"] == 0).to_numpy()
        share = bad.mean()
        weights = np.where(bad, 2 * share / (1 - 2 * share) * (1 - share) / share, 1.0)
    rows = pool.iloc[rng.choice(len(pool), n, p=weights / weights.sum())].copy()
    if phase == 3:
        rows["loss"] = (rows["loss"] * 1.5).round(4)
    return rows


def serve_and_replay(base: str, work: str, pool: pd.DataFrame, n: int, seed: int):
    """The stream through the real server; each phase's [start, end) in whole seconds."""
    with open(os.path.join(base, "model", "metadata.json"), encoding="utf-8") as handle:
        columns = json.load(handle)["request_columns"]
    port = _free_port()
    env = dict(os.environ, SM_MODEL_DIR=os.path.join(base, "model"),
               SAGEMAKER_BIND_TO_PORT=str(port), COSTAWARE_BIND_HOST="127.0.0.1",
               SAGEMAKER_MODEL_SERVER_WORKERS="1",
               COSTAWARE_DATA_CAPTURE_DIR=os.path.join(work, "capture"),
               COSTAWARE_ENDPOINT_NAME="german-credit", COSTAWARE_VARIANT_NAME="AllTraffic")
    log = open(os.path.join(work, "serve.log"), "w")
    server = subprocess.Popen([os.path.join(BIN, "serve")], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, server)
        rng = np.random.default_rng(seed)
        windows, truth = [], []
        session = requests.Session()
        for phase in range(len(PHASES)):
            start = _next_second()
            rows = phase_rows(pool, phase, n, rng)
            for i, row in enumerate(rows.itertuples(index=False)):
                record = dict(zip(rows.columns, row))
                key = f"phase{phase}-{i}"
                body = ",".join(f"{record[c]:g}" for c in columns)
                answer = session.post(f"{url}/invocations", data=body,
                                      headers={"Content-Type": "text/csv",
                                               "Accept": "application/jsonlines",
                                               "X-Amzn-SageMaker-Inference-Id": key})
                answer.raise_for_status()
                truth.append({"groundTruthData": {"data": str(record["credit_risk"]),
                                                  "encoding": "CSV"},
                              "eventMetadata": {"eventId": key}, "eventVersion": "0"})
            windows.append((start, _next_second()))
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    now = datetime.now(timezone.utc)
    directory = os.path.join(work, "groundtruth", now.strftime("%Y/%m/%d/%H"))
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "labels.jsonl"), "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(t) + "\n" for t in truth)
    return windows


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, server) -> None:
    for _ in range(600):
        if server.poll() is not None:
            sys.exit("serve exited; see serve.log")
        try:
            if requests.get(f"{url}/ping", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    sys.exit("serve did not answer /ping")


def _next_second() -> str:
    """Wait for the next whole second (a window boundary no request shares) and name it."""
    time.sleep(1.05 - time.time() % 1)
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def monitor(work: str, base: str, window: tuple[str, str], name: str, image: str | None) -> dict:
    """One monitoring window, as a monitoring schedule runs it (SageMaker's variables and paths)."""
    out = os.path.join(work, "monitoring", name)
    os.makedirs(out, exist_ok=True)
    paths = {"capture": (os.path.join(work, "capture"), f"{PROCESSING}/endpointdata"),
             "baseline": (os.path.join(base, "model", "baseline"), f"{PROCESSING}/baseline"),
             "truth": (os.path.join(work, "groundtruth"), f"{PROCESSING}/groundtruth"),
             "out": (out, f"{PROCESSING}/resultdata")}
    inside = {k: v[1] if image else v[0] for k, v in paths.items()}
    env = {"dataset_format": json.dumps({"sagemakerCaptureJson": {
               "captureIndexNames": ["endpointInput", "endpointOutput"]}}),
           "dataset_source": inside["capture"], "output_path": inside["out"],
           "start_time": window[0], "end_time": window[1],
           "baseline_statistics": f"{inside['baseline']}/statistics.json",
           "baseline_constraints": f"{inside['baseline']}/constraints.json",
           "ground_truth_source": inside["truth"], "publish_cloudwatch_metrics": "Disabled",
           "sagemaker_endpoint_name": "german-credit",
           "sagemaker_monitoring_schedule_name": "demo"}
    if image:
        engine, run_args, containers_conf = _engine()
        command = [engine, "run", "--rm", *run_args.split()]
        for host, container in paths.values():
            command += ["-v", f"{host}:{container}"]
        for key, value in env.items():
            command += ["-e", f"{key}={value}"]
        command += [image, "monitor"]
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, **({"CONTAINERS_CONF": containers_conf}
                                                    if containers_conf else {})})
    else:
        done = subprocess.run([os.path.join(BIN, "monitor")], env={**os.environ, **env,
                              "SAGEMAKER_BASE_DIR": os.path.join(out, "ml")},
                              capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"monitor failed: {done.stderr.strip()}")
    with open(os.path.join(out, "constraint_violations.json"), encoding="utf-8") as handle:
        violations = json.load(handle)["violations"]
    with open(os.path.join(out, "statistics.json"), encoding="utf-8") as handle:
        statistics = json.load(handle)
    return {"violations": violations, "statistics": statistics,
            "report": os.path.join(out, "report.html")}


def _engine() -> tuple[str, str, str]:
    """The container engine and its settings on this host, as the local_test scripts pick them
    (local_test/engine.sh: DOCKER, DOCKER_RUN_ARGS, CONTAINERS_CONF); podman when no docker."""
    engine = os.environ.get("DOCKER") or ("docker" if shutil.which("docker") else "podman")
    script = (f'DOCKER="{engine}"; . "{HERE}/engine.sh"; '
              'printf "%s\n%s\n%s\n" "$DOCKER" "${DOCKER_RUN_ARGS:-}" "${CONTAINERS_CONF:-}"')
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    return out[0], out[1], out[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", help="a directory for everything (default: a new one in /tmp)")
    parser.add_argument("--image", help="run `monitor` in this image ($DOCKER, else docker or "
                                        "podman, with local_test/engine.sh's settings)")
    parser.add_argument("--records", type=int, default=400, help="applicants per phase")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="costaware-monitoring-")
    shutil.rmtree(os.path.join(work, "capture"), ignore_errors=True)
    train_rows, test_rows, pool = split(args.seed)
    base = train(work, train_rows, test_rows)
    windows = serve_and_replay(base, work, pool, args.records, args.seed)
    where = f"in {args.image}" if args.image else "here"
    print(f"\n{args.records} applicants per phase; `monitor` {where} on each phase's window:\n")
    print("| phase | rows | labelled | realized cost per decision | savings | violations |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k, (name, window) in enumerate(zip(PHASES, windows)):
        found = monitor(work, base, window, f"phase{k}", args.image)
        own = found["statistics"]["costaware"]
        labelled = own["labelled"]
        checks = sorted({f"{v['constraint_check_type']} ({v['feature_name']})"
                         for v in found["violations"]})
        cost = labelled.get("realized_cost", {}).get("value")
        print(f"| {name} | {own['counts']['rows']} | "
              f"{labelled.get('rows', 0)} | {cost:.3f} | {labelled.get('savings', 0):.3f} | "
              f"{', '.join(checks) or 'none'} |")
    print("\nwindows: " + "; ".join(f"{name} {a} to {b}" for name, (a, b) in zip(PHASES, windows)))
    print(f"reports: {work}/monitoring/phase*/report.html")


if __name__ == "__main__":
    main()
