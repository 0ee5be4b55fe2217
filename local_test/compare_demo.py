"""The champion-or-challenger demo: two credit models behind one endpoint, as a shadow and as
split traffic, served by the real ``serve`` with data capture on, and ``compare`` on what they
decided, in the image when one is given, as a SageMaker processing job runs it.

1. South German Credit (``local_test/data``), as in the monitoring demo
   (``local_test/monitoring_demo.py``): each applicant's own loss if accepted and bad, refusing
   a good one costs 1; facet ``foreign_worker``; 50% train, 20% test, 30% the traffic's pool.
2. Two models from the same rows: the **champion** a quick scorecard (five depth-1 trees), the
   **challenger** the monitoring demo's model (60 depth-4 trees).
3. Both served (``serve``, one worker each) with capture on: variant ``AllTraffic`` (champion)
   and ``Shadow`` or ``B`` (challenger).
4. **Shadow**: ``--requests`` applicants drawn from the pool, each sent to both variants with the
   same inference id (as SageMaker copies a request to its shadow). **Split traffic**: as many
   again, each sent to one variant at random (half each). Ground truth for every applicant.
5. ``compare`` on each (``--image``: ``podman run IMAGE compare`` with
   ``/opt/ml/processing/{input,output}``; else the ``compare`` installed here, the same code), and
   once more with ``--replay``, which a credit model's comparison refuses unless told the label
   does not depend on the decision (it does: a refused applicant's outcome is never seen).

Each compare sees the first ``n`` labelled decisions for several ``n``: the recommendation as the
labels come in.

    python local_test/compare_demo.py [--work DIR] [--image IMAGE] [--requests 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from monitoring_demo import (BIN, HYPERPARAMETERS, PROCESSING, _engine, _free_port,  # noqa: E402
                             _wait, split, train)

CHAMPION = {**HYPERPARAMETERS, "num_round": "5", "max_depth": "1"}
LOOKS = (250, 500, 1000, 2000)


@contextlib.contextmanager
def serving(base: str, work: str, variant: str):
    """The real ``serve`` of ``base``'s model on 127.0.0.1, capturing as ``variant``."""
    port = _free_port()
    env = dict(os.environ, SM_MODEL_DIR=os.path.join(base, "model"),
               SAGEMAKER_BIND_TO_PORT=str(port), COSTAWARE_BIND_HOST="127.0.0.1",
               SAGEMAKER_MODEL_SERVER_WORKERS="1",
               COSTAWARE_DATA_CAPTURE_DIR=os.path.join(work, "capture"),
               COSTAWARE_ENDPOINT_NAME="german-credit", COSTAWARE_VARIANT_NAME=variant)
    with open(os.path.join(work, f"serve-{variant}.log"), "w") as log:
        server = subprocess.Popen([os.path.join(BIN, "serve")], env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url, server)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=60)


def send(session, url: str, body: str, key: str) -> None:
    answer = session.post(f"{url}/invocations", data=body, headers={
        "Content-Type": "text/csv", "Accept": "application/jsonlines",
        "X-Amzn-SageMaker-Inference-Id": key})
    answer.raise_for_status()


def traffic(champion: str, challenger: str, work: str, pool, n: int, seed: int) -> None:
    """The shadow's and the split traffic's requests through both servers; their ground truth."""
    with open(os.path.join(champion, "model", "metadata.json"), encoding="utf-8") as handle:
        columns = json.load(handle)["request_columns"]
    rng = np.random.default_rng(seed)
    session = requests.Session()
    truth = {"shadow": [], "split": []}
    with serving(champion, work, "AllTraffic") as a, serving(challenger, work, "Shadow") as shadow:
        for i, index in enumerate(rng.choice(len(pool), n)):
            row = pool.iloc[index]
            body = ",".join(f"{row[c]:g}" for c in columns)
            key = f"shadow-{i}"
            send(session, a, body, key)
            send(session, shadow, body, key)
            truth["shadow"].append((key, int(row["credit_risk"])))
    with serving(champion, work, "A") as a, serving(challenger, work, "B") as b:
        for i, index in enumerate(rng.choice(len(pool), n)):
            row = pool.iloc[index]
            key = f"split-{i}"
            send(session, a if rng.random() < 0.5 else b,
                 ",".join(f"{row[c]:g}" for c in columns), key)
            truth["split"].append((key, int(row["credit_risk"])))
    for design, labels in truth.items():
        directory = os.path.join(work, "groundtruth", design)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "labels.jsonl"), "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"groundTruthData": {"data": str(y), "encoding": "CSV"},
                                          "eventMetadata": {"eventId": key},
                                          "eventVersion": "0"}) + "\n" for key, y in labels)


def labels_up_to(work: str, design: str, n: int) -> str:
    """A ground-truth directory holding the first ``n`` labels (the labels come in over time)."""
    source = os.path.join(work, "groundtruth", design, "labels.jsonl")
    target = os.path.join(work, "groundtruth-looks", f"{design}-{n}")
    os.makedirs(target, exist_ok=True)
    with open(source, encoding="utf-8") as handle:
        lines = handle.readlines()[:n]
    with open(os.path.join(target, "labels.jsonl"), "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return target


def compare(work: str, image: str | None, inputs: dict, name: str, *flags) -> tuple[int, dict | str]:
    """One ``compare`` as a processing job runs it: each input mounted under
    /opt/ml/processing/input/, the output under /opt/ml/processing/output."""
    out = os.path.join(work, "compared", name)
    os.makedirs(out, exist_ok=True)
    if image:
        engine, run_args, containers_conf = _engine()
        command = [engine, "run", "--rm", *run_args.split(), "-v", f"{out}:{PROCESSING}/output",
                   "-v", f"{out}:/opt/ml/output"]
        for key, host in inputs.items():
            command += ["-v", f"{host}:{PROCESSING}/input/{key}:ro"]
        command += [image, "compare", *flags]
        env = {**os.environ, **({"CONTAINERS_CONF": containers_conf} if containers_conf else {})}
    else:
        command = [os.path.join(BIN, "compare"), "--output", out, *flags]
        for key, host in inputs.items():
            command += [f"--{key.replace('_', '-')}", host]
        env = {**os.environ, "SAGEMAKER_BASE_DIR": os.path.join(out, "ml")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        return done.returncode, done.stderr.strip().splitlines()[-1]
    with open(os.path.join(out, "comparison.json"), encoding="utf-8") as handle:
        return 0, json.load(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", help="a directory for everything (default: a new one in /tmp)")
    parser.add_argument("--image", help="run `compare` in this image ($DOCKER, else docker or "
                                        "podman, with local_test/engine.sh's settings)")
    parser.add_argument("--requests", type=int, default=2000, help="applicants per design")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="costaware-compare-")
    shutil.rmtree(os.path.join(work, "capture"), ignore_errors=True)
    train_rows, test_rows, pool = split(args.seed)
    champion = train(os.path.join(work, "champion"), train_rows, test_rows, CHAMPION)
    challenger = train(os.path.join(work, "challenger"), train_rows, test_rows)
    traffic(champion, challenger, work, pool, args.requests, args.seed)
    capture = os.path.join(work, "capture", "german-credit")
    models = {"champion_model": os.path.join(champion, "model"),
              "challenger_model": os.path.join(challenger, "model")}
    where = f"in {args.image}" if args.image else "here"
    print(f"\n`compare` {where}; challenger minus champion, realized cost per decision:\n")
    print("| design | labels | champion | challenger | difference (95% interval) | "
          "P(challenger cheaper) | recommendation |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for design, variants in (("shadow", ("AllTraffic", "Shadow")), ("split", ("A", "B"))):
        for n in [n for n in LOOKS if n <= args.requests]:
            code, result = compare(work, args.image, {
                "champion": os.path.join(capture, variants[0]),
                "challenger": os.path.join(capture, variants[1]),
                "ground_truth": labels_up_to(work, design, n), **models}, f"{design}-{n}")
            if code:
                sys.exit(f"compare failed: {result}")
            d, r = result["difference"], result["recommendation"]
            more = f" ({r['more_labels']:,} more)" if r["action"] == "wait" else ""
            print(f"| {design} ({result['design']}) | {n:,} | "
                  f"{result['champion']['realized_cost']['mean']:.4f} | "
                  f"{result['challenger']['realized_cost']['mean']:.4f} | "
                  f"{d['difference']:+.4f} ({d['interval'][0]:+.4f} to {d['interval'][1]:+.4f}) | "
                  f"{d['probability_challenger_cheaper']:.3f} | {r['action']}{more} |")
    code, refused = compare(work, args.image, {
        "champion": os.path.join(capture, "AllTraffic"),
        "ground_truth": os.path.join(work, "groundtruth", "shadow"), **models}, "replay",
        "--replay")
    print(f"\n--replay without --labels-independent-of-decision: exit {code}: {refused}")
    print(f"reports: {work}/compared/*/report.html")


if __name__ == "__main__":
    main()
