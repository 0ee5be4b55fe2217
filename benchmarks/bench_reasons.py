"""What reasons cost: requests with ``reasons=3`` against the same requests without.

On the demo's model (breast cancer, the 5 fold models' average: 530 trees, 30 features) through
the real ``serve`` (one gthread worker, XGBoost nthread 1), requests sent one at a time from one
client thread, the two kinds alternating in rounds so that a noisy neighbour hurts both alike:

* single rows, ``application/json``: ``reasons=3,reasons_for=all`` (every row explained) against
  no reasons. Target: a row with reasons costs at most 2x one without (latency ratio <= 2);
* 1,000-row CSV batches: ``reasons=3`` (the adverse decision, biopsy, only) against no reasons.

Prints median latencies (best round) and the ratios.

    python benchmarks/bench_reasons.py [--model-dir DIR] [--rounds 5] [--requests 200]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_serving import free_port, load_rows, start_server, stop_server, train_demo_model  # noqa: E402

HEADER = "X-Amzn-SageMaker-Custom-Attributes"


def _body(rows: np.ndarray) -> bytes:
    return ("\n".join(",".join(repr(v) for v in row) for row in rows.tolist())).encode()


def _latencies(port: int, bodies: list[bytes], headers: dict) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for body in bodies:
        start = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"status {response.status}")
        out.append(time.perf_counter() - start)
    conn.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = None
        model_dir = args.model_dir
        if not model_dir:
            base_dir = os.path.join(tmp, "ml")
            model_dir = train_demo_model(base_dir)
        rows = load_rows(model_dir, base_dir)
        port = free_port()
        os.environ.update(SAGEMAKER_MODEL_SERVER_WORKERS="1", COSTAWARE_WORKER_THREADS="1")
        proc = start_server(model_dir, port, 1, os.path.join(tmp, "serve.log"))
        try:
            singles = [_body(rows[i % len(rows)][None]) for i in range(args.requests)]
            batch = [_body(np.resize(rows, (1000, rows.shape[1])))] * 5
            plain = {"Content-Type": "text/csv", "Accept": "application/json"}
            kinds = {
                "single row": (singles, plain, {**plain, HEADER: "reasons=3,reasons_for=all"}),
                "1,000-row batch": (batch, {"Content-Type": "text/csv", "Accept": "text/csv"},
                                    {"Content-Type": "text/csv", "Accept": "text/csv",
                                     HEADER: "reasons=3"}),
            }
            results = {}
            for name, (bodies, without, with_reasons) in kinds.items():
                _latencies(port, bodies[:20], with_reasons)  # warm up both paths
                _latencies(port, bodies[:20], without)
                best = {"without": [], "with": []}
                for _ in range(args.rounds):
                    best["without"].append(statistics.median(_latencies(port, bodies, without)))
                    best["with"].append(statistics.median(_latencies(port, bodies, with_reasons)))
                results[name] = (min(best["without"]), min(best["with"]))
        finally:
            stop_server(proc)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; one worker, "
          f"one client thread; median latency, best of {args.rounds} rounds")
    for name, (without, with_reasons) in results.items():
        print(f"  {name:16s} without {without * 1000:8.2f} ms   with reasons "
              f"{with_reasons * 1000:8.2f} ms   ratio {with_reasons / without:.2f}")
    ratio = results["single row"][1] / results["single row"][0]
    print(f"target: a single row with reasons <= 2x one without: {ratio:.2f} "
          f"{'MET' if ratio <= 2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
