"""Serving benchmark: the real ``serve`` against in-process prediction on the same model.

    python benchmarks/bench_serving.py [--model-dir DIR] [--workers N] [--requests N] [--seconds S]

Prints, in one run:

* single-row ``application/json`` requests/s and p50/p99 latency at concurrency 8 (threads, one
  keep-alive ``http.client`` connection each), beside the real limit: XGBoost's own
  ``Booster.inplace_predict`` on one row at a time in this process, one thread, the booster loaded
  with nthread=1 as the server's workers load it (and, for reference, costaware's
  ``inference.predict`` the same way: calibration, costs, decision and expected costs on top);
* rows/s for a 6 MiB CSV batch (``Accept: text/csv``, all seven fields) beside the raw
  parse-and-predict time (``pandas.read_csv`` + ``Booster.inplace_predict`` in-process);
* the ratios against the targets: server rate >= 0.3 x the raw one-row rate; 6 MiB batch time
  <= 2 x raw parse-and-predict.

Without ``--model-dir`` it trains the breast-cancer demo model into a temporary directory with the
real training entry point. Bounded: at most ``--requests`` single-row requests and ``--seconds``
seconds of single-row measurement (in-process and server phases alternate over ``--rounds``
rounds), plus ``--batch-repeats`` interleaved batch pairs. Each side is reported at its best round
with the median beside it, because a shared machine's bursts of load would otherwise decide the
ratios. Not a test: the figures depend on the machine (the client shares its CPUs with the server).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH_BYTES = 6 * 1024 * 1024


def train_demo_model(base_dir: str) -> str:
    subprocess.run([sys.executable, os.path.join(REPO, "local_test", "prepare_breast_cancer.py"),
                    base_dir], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["costaware", "train", "--base-dir", base_dir], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(base_dir, "model")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: str, port: int, workers: int, log_path: str) -> subprocess.Popen:
    env = dict(os.environ, COSTAWARE_MODEL_DIR=model_dir, COSTAWARE_BIND_HOST="127.0.0.1",
               SAGEMAKER_BIND_TO_PORT=str(port), SAGEMAKER_MODEL_SERVER_WORKERS=str(workers))
    log = open(log_path, "wb")
    proc = subprocess.Popen(["serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with status {proc.returncode}; see {log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("serve did not answer /ping within 60 s")


def stop_server(proc: subprocess.Popen | None) -> None:
    """SIGTERM (serve drains and exits), SIGKILL after 30 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load_rows(model_dir: str, base_dir: str | None) -> np.ndarray:
    """The test channel next to the model (label first), else random rows of the right width."""
    base_dir = base_dir or os.path.dirname(os.path.abspath(model_dir))
    path = os.path.join(base_dir, "input", "data", "test", "test.csv")
    if os.path.exists(path):
        return np.loadtxt(path, delimiter=",")[:, 1:]
    with open(os.path.join(model_dir, "metadata.json"), encoding="utf-8") as handle:
        n = len(json.load(handle)["feature_names"])
    return np.random.default_rng(0).normal(size=(200, n))


def serve_demo(model_dir: str | None, tmp: str, workers: int):
    """The model (``model_dir``, or the demo trained into ``tmp``), its request rows, and the real
    ``serve`` started on it: ``(model_dir, rows, port, proc)``."""
    base_dir = None
    if not model_dir:
        base_dir = os.path.join(tmp, "ml")
        model_dir = train_demo_model(base_dir)
    rows = load_rows(model_dir, base_dir)
    port = free_port()
    proc = start_server(model_dir, port, workers, os.path.join(tmp, "serve.log"))
    return model_dir, rows, port, proc


def in_process_single_row(predict, rows: np.ndarray, seconds: float, limit: int) -> float:
    """One-row calls of ``predict`` per second, one thread."""
    singles = [rows[i:i + 1] for i in range(len(rows))]
    for row in singles[:50]:
        predict(row)
    count, start = 0, time.perf_counter()
    while count < limit and time.perf_counter() - start < seconds:
        predict(singles[count % len(singles)])
        count += 1
    return count / (time.perf_counter() - start)


def raw_predict(model):
    """XGBoost's own one-call prediction: the limit any server on this model works towards."""
    booster = model.booster
    return lambda rows: booster.inplace_predict(rows, predict_type="margin", missing=np.nan)


def costaware_predict(model):
    from costaware.model import inference
    return lambda rows: inference.predict(model, rows)


def server_single_row(port: int, rows: np.ndarray, concurrency: int, seconds: float,
                      limit: int) -> tuple[float, np.ndarray, int]:
    bodies = [json.dumps({"instances": [row]}).encode() for row in rows.tolist()]
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    lock = threading.Lock()
    issued = [0]
    start_gate = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker(k: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for body in bodies[:5]:  # warm up the connection and the worker
            conn.request("POST", "/invocations", body, headers)
            conn.getresponse().read()
        start_gate.wait()
        i = k
        while True:
            with lock:
                if issued[0] >= limit or time.perf_counter() > stop_at[0]:
                    break
                issued[0] += 1
            body = bodies[i % len(bodies)]
            i += concurrency
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/invocations", body, headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies[k].append(time.perf_counter() - t0)
            errors[k] += not ok
        conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + 3600
    start_gate.wait()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    all_latencies = np.array([x for per in latencies for x in per])
    return len(all_latencies) / elapsed, all_latencies, sum(errors)


def csv_batch(rows: np.ndarray, size: int) -> tuple[bytes, int]:
    lines = [",".join(repr(v) for v in row) for row in rows.tolist()]
    out, total, i = [], 0, 0
    while True:
        line = lines[i % len(lines)]
        if total + len(line) + 1 > size:
            break
        out.append(line)
        total += len(line) + 1
        i += 1
    return ("\n".join(out) + "\n").encode(), len(out)


def raw_parse_predict(model, body: bytes) -> float:
    """One in-process parse-and-predict of a CSV body, the plain way: pandas + XGBoost."""
    import pandas as pd

    t0 = time.perf_counter()
    features = pd.read_csv(io.BytesIO(body), header=None, dtype=np.float64).to_numpy()
    model.booster.inplace_predict(features, predict_type="margin", missing=np.nan)
    return time.perf_counter() - t0


def server_batch(conn: http.client.HTTPConnection, body: bytes) -> tuple[float, int]:
    """One batch request's round trip (send, server work, receive) and the lines it answered."""
    headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
    t0 = time.perf_counter()
    conn.request("POST", "/invocations", body, headers)
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - t0
    if response.status != 200:
        raise SystemExit(f"batch request failed: {response.status} {payload[:300]!r}")
    return elapsed, payload.count(b"\n") + 1


def server_breakdown(log_path: str, n_rows: int) -> dict:
    """Fastest read/parse/predict/encode/latency of the batch requests, from the access log."""
    keys = ("read_ms", "parse_ms", "predict_ms", "encode_ms", "latency_ms")
    found = {key: [] for key in keys}
    with open(log_path, "rb") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("logger") == "access" and entry.get("rows") == n_rows:
                for key in keys:
                    if key in entry:
                        found[key].append(entry[key])
    return {key: float(np.min(values)) for key, values in found.items() if values}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="a trained model directory (default: train the demo)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20000, help="cap on single-row requests")
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="time for the single-row comparison, split over the rounds")
    parser.add_argument("--rounds", type=int, default=4, help="alternating single-row rounds")
    parser.add_argument("--batch-repeats", type=int, default=7)
    args = parser.parse_args()

    from costaware.model import artifact

    tmp = tempfile.mkdtemp(prefix="costaware-bench-")
    proc = None
    try:
        model_dir, rows, port, proc = serve_demo(args.model_dir, tmp, args.workers)
        model = artifact.load(model_dir, nthread=1)

        # The machine may be shared: in-process and server phases alternate, and each side is
        # reported at its best round (and its median), so a burst of load elsewhere flatters
        # neither side of a ratio.
        local_rates, ours_rates, server_rounds = [], [], []
        for _ in range(args.rounds):
            local_rates.append(in_process_single_row(raw_predict(model), rows,
                                                     args.seconds / args.rounds, args.requests))
            ours_rates.append(in_process_single_row(costaware_predict(model), rows,
                                                    args.seconds / args.rounds / 2, args.requests))
            server_rounds.append(server_single_row(port, rows, args.concurrency,
                                                   args.seconds / args.rounds,
                                                   args.requests // args.rounds))
        best = max(server_rounds, key=lambda r: r[0])
        rate, latencies = best[0], best[1]
        errors = sum(r[2] for r in server_rounds)
        local_rate = max(local_rates)

        body, n_rows = csv_batch(rows, BATCH_BYTES)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        server_batch(conn, body)  # warm-up
        raw_times, served_times = [], []
        for _ in range(args.batch_repeats):
            raw_times.append(raw_parse_predict(model, body))
            elapsed, lines = server_batch(conn, body)
            served_times.append(elapsed)
            if lines != n_rows:
                raise SystemExit(f"batch answered {lines} lines for {n_rows} rows")
        conn.close()
        raw, served = min(raw_times), min(served_times)
        breakdown = server_breakdown(os.path.join(tmp, "serve.log"), n_rows)

        single_ratio = rate / local_rate
        batch_ratio = served / raw
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (other "
              f"processes included); server: {args.workers} workers, "
              f"COSTAWARE_WORKER_THREADS={os.environ.get('COSTAWARE_WORKER_THREADS', '1')}, "
              f"XGBoost nthread=1 per worker; model: {model.booster.num_boosted_rounds()} rounds, "
              f"{len(model.feature_names)} features")
        print(f"single row, application/json (best of {args.rounds} alternating rounds; median "
              "in brackets)")
        print(f"  in-process Booster.inplace_predict: {local_rate:7.0f} predictions/s  "
              f"[{np.median(local_rates):.0f}]  (1 thread: the baseline)")
        print(f"  in-process inference.predict:  {max(ours_rates):7.0f} predictions/s  "
              f"[{np.median(ours_rates):.0f}]  (1 thread, for reference)")
        print(f"  server, concurrency {args.concurrency}:       {rate:7.0f} requests/s     "
              f"[{np.median([r[0] for r in server_rounds]):.0f}]  "
              f"p50 {np.percentile(latencies, 50) * 1000:.2f} ms  "
              f"p99 {np.percentile(latencies, 99) * 1000:.2f} ms  "
              f"({sum(len(r[1]) for r in server_rounds)} requests, {errors} errors)")
        print(f"6 MiB CSV batch ({len(body) / 2**20:.2f} MiB, {n_rows} rows, Accept text/csv, "
              f"all fields; best of {args.batch_repeats}, median in brackets)")
        print(f"  raw read_csv + inplace_predict: {raw * 1000:7.1f} ms [{np.median(raw_times) * 1000:.1f}]"
              f"  {n_rows / raw:>9,.0f} rows/s")
        print(f"  server round trip:       {served * 1000:7.1f} ms "
              f"[{np.median(served_times) * 1000:.1f}]  {n_rows / served:>9,.0f} rows/s")
        if breakdown:
            print("  inside the server (fastest): " + "  ".join(
                f"{key[:-3]} {value:.1f}" for key, value in breakdown.items()) + " ms")
        print("targets")
        print(f"  server / raw one-row rate           = {single_ratio:.2f}  (target >= 0.30)  "
              f"{'MET' if single_ratio >= 0.3 else 'MISSED'}  [medians: "
              f"{np.median([r[0] for r in server_rounds]) / np.median(local_rates):.2f}]")
        print(f"  6 MiB batch / raw parse+predict     = {batch_ratio:.2f}  (target <= 2.00)  "
              f"{'MET' if batch_ratio <= 2.0 else 'MISSED'}  [medians: "
              f"{np.median(served_times) / np.median(raw_times):.2f}]")
        return 0
    finally:
        stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
