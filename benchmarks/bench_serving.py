"""Serving benchmark: the real ``serve`` against in-process prediction on the same model.

    python benchmarks/bench_serving.py [--model demo|small] [--model-dir DIR] [--workers N]
                                       [--seconds S] [--against DIR]
                                       [--profile] [--multi-model N]

Needs ``wrk`` (the HTTP load generator, Debian's package: ``apt-get install wrk``). Prints, in
one run:

* single-row ``application/json`` requests/s and p50/p99 latency from ``wrk`` in a separate
  process (one thread, ``--concurrency`` keep-alive connections, a different row each request),
  beside the real limit: XGBoost's own ``Booster.inplace_predict`` on one row at a time in this
  process, one thread, the booster loaded with nthread=1 as the server's workers load it (and, for
  reference, costaware's ``inference.predict`` the same way: calibration, costs, decision and
  expected costs on top), and the same C function ``inplace_predict`` calls with its proxy matrix
  kept between calls, as costaware calls it (``costaware.model.dense_margins``: no proxy made
  per call), a stricter limit;
* rows/s for a 6 MiB CSV batch (``Accept: text/csv``, all seven fields) beside the raw
  parse-and-predict time in-process (``pandas.read_csv`` or ``pyarrow.csv.read_csv`` on one
  thread, whichever is faster, + ``Booster.inplace_predict``), and the round trip of the first
  batch request a worker answers (its first body over 16 KiB) against the later ones';
* the ratios against issue #27's targets: server rate >= 0.3 x the raw one-row rate for the small
  model, 0.5 x for the demo's (a model given by ``--model-dir`` is held to 0.5); 6 MiB batch time
  <= 1.5 x raw parse-and-predict.

``--against DIR`` also starts ``serve`` from another version's code (``DIR``: its ``container``
directory, put first on ``PYTHONPATH``; e.g. ``git archive <commit> container | tar -x -C
/tmp/before`` and ``--against /tmp/before/container``) on the same model and gives it a turn in
every round, single-row and batch, beside this version: an A/B in one run, so that the load of a
shared machine weighs on both alike. Both must answer the batch with the same bytes (JSON), else
the run stops.

``--profile`` instead samples the workers' stacks with py-spy under wrk's load and prints the
share of their CPU time, and its microseconds a request, per layer: XGBoost, calibration and
decision, decoding, encoding, costaware's glue, the access log, Flask, gunicorn's parser, the
event loop.

``--multi-model N --profile``: where the time goes with one model in use, then with the N in
turn. ``--multi-model N`` instead measures issue #27's multi-model target, a model's overhead with N
models loaded within 10% of one: N copies of the model under one models root
(``root/model-000/model``...; the files ``artifact.MODEL_LAYOUT`` allows, copy ``i`` with its
class costs times ``1 + i / N``, so that each answers differently), one ``serve`` with
``SAGEMAKER_MULTI_MODEL=true`` that loads all N through ``POST /models``, then, alternating
rounds as above, single-row requests/s and p50/p99 from wrk on ``/models/model-000/invoke``
against wrk sending each request to the next of the N models, beside the raw in-process
one-row rate, and the 6 MiB CSV batch to the first model against the models in turn. It prints
both ratios against the target (>= 0.90 for the rate, <= 1.10 for the batch time), the workers'
resident memory (VmRSS summed) with 1 model loaded and with N, and checks: wrk's non-2xx count,
one request to each model (200, N different answers), and the answers of the first, middle and
last model equal, byte for byte, those of the same model served alone (exit status 1 if a check
fails).

Without ``--model-dir`` it trains a model of the breast-cancer demo's data into a temporary
directory with the real training entry point: ``--model demo`` the demo itself, ``small`` 100
trees of depth 4 (where the HTTP layer weighs most). In-process and server phases alternate over
``--rounds`` rounds of ``--seconds`` / rounds each, plus ``--batch-repeats`` interleaved batch
pairs. Each side is reported at its best round with the median beside it, because a shared
machine's bursts of load would otherwise decide the ratios. Not a test: the figures depend on the
machine (the client shares its CPUs with the server).
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


# the models the benchmark trains on the demo's data: the demo itself (defaults: 5 fold models'
# average), and the hard case, a small model whose prediction the HTTP layer outweighs
MODELS = {"demo": {}, "small": {"num_round": "100", "max_depth": "4", "served_model": "refit",
                                 "early_stopping_rounds": "0"}}
# issue #27's targets: the server's single-row rate against the raw one-row rate, by model (the
# smaller the model, the more the HTTP layer weighs), and a 6 MiB batch against parse-and-predict
SINGLE_ROW_TARGET = {"demo": 0.5, "small": 0.3}
BATCH_TARGET = 1.5


def train_demo_model(base_dir: str, overrides: dict | None = None) -> str:
    subprocess.run([sys.executable, os.path.join(REPO, "local_test", "prepare_breast_cancer.py"),
                    base_dir], check=True, stdout=subprocess.DEVNULL)
    if overrides:
        path = os.path.join(base_dir, "input", "config", "hyperparameters.json")
        with open(path, encoding="utf-8") as handle:
            settings = json.load(handle)
        settings.update(overrides)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(settings, handle)
    subprocess.run(["costaware", "train", "--base-dir", base_dir], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(base_dir, "model")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: str, port: int, workers: int, log_path: str,
                 **settings: str) -> subprocess.Popen:
    """The real ``serve`` on ``model_dir``, answering ``/ping``; ``settings``: more of its
    environment (``SAGEMAKER_MULTI_MODEL="true"``...)."""
    env = dict(os.environ, COSTAWARE_MODEL_DIR=model_dir, COSTAWARE_BIND_HOST="127.0.0.1",
               SAGEMAKER_BIND_TO_PORT=str(port), SAGEMAKER_MODEL_SERVER_WORKERS=str(workers),
               **settings)
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


def demo_model(model_dir: str | None, tmp: str, model: str = "demo") -> tuple[str, np.ndarray]:
    """The model (``model_dir``, or :data:`MODELS`' ``model`` trained into ``tmp``) and its
    request rows."""
    base_dir = None
    if not model_dir:
        base_dir = os.path.join(tmp, "ml")
        model_dir = train_demo_model(base_dir, MODELS[model])
    return model_dir, load_rows(model_dir, base_dir)


def start_other_server(code_dir: str, model_dir: str, workers: int, log_path: str
                       ) -> tuple[int, subprocess.Popen]:
    """``serve`` run from another version's code (``code_dir`` first on ``PYTHONPATH``)."""
    path = os.pathsep.join(filter(None, [os.path.abspath(code_dir),
                                         os.environ.get("PYTHONPATH")]))
    port = free_port()
    return port, start_server(model_dir, port, workers, log_path, PYTHONPATH=path)


def serve_demo(model_dir: str | None, tmp: str, workers: int, model: str = "demo"):
    """:func:`demo_model` and the real ``serve`` started on it:
    ``(model_dir, rows, port, proc)``."""
    model_dir, rows = demo_model(model_dir, tmp, model)
    port = free_port()
    proc = start_server(model_dir, port, workers, os.path.join(tmp, "serve.log"))
    return model_dir, rows, port, proc


def in_process_single_row(predict, rows: np.ndarray, seconds: float, limit: int,
                          rows_per_call: int = 1) -> float:
    """Calls of ``predict`` on ``rows_per_call`` rows (one by default) per second, one thread."""
    singles = [rows[i:i + rows_per_call] for i in range(len(rows) - rows_per_call + 1)]
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


def kept_proxy_predict(model):
    """The same C function with a proxy matrix kept between calls (what costaware calls:
    :mod:`costaware.model.dense_margins`, a loaded model's ``DenseMargins``): XGBoost's call
    without making a proxy each time."""
    from costaware.model import dense_margins
    return dense_margins.DenseMargins(model.booster)


def costaware_predict(model):
    from costaware.model import inference
    return lambda rows: inference.predict(model, rows)


# each request the next row of ``bodies`` to the next path of ``paths`` (round robin)
WRK_SCRIPT = """
bodies = {%s}
paths = {%s}
i = 0
p = 0
request = function()
  i = i %% #bodies + 1
  p = p %% #paths + 1
  return wrk.format("POST", paths[p], {["Content-Type"] = "application/json",
                    ["Accept"] = "application/json"}, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format("COSTAWARE %%d %%d %%d %%.1f %%.1f %%.1f\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk_single_row(port: int, rows: np.ndarray, concurrency: int, seconds: float, tmp: str,
                   paths: tuple[str, ...] = ("/invocations",)
                   ) -> tuple[float, float, float, int, int]:
    """Single-row ``application/json`` requests from ``wrk`` (one thread, ``concurrency``
    keep-alive connections), a separate process, to ``paths`` in turn: ``(requests/s, p50 s,
    p99 s, requests, errors)`` (errors: non-2xx answers and socket errors)."""
    if shutil.which("wrk") is None:
        raise SystemExit("bench_serving.py needs wrk, the HTTP load generator: apt-get install wrk")
    bodies = ",".join(json.dumps(json.dumps({"instances": [row]})) for row in rows.tolist())
    script = os.path.join(tmp, "single_row.lua")
    with open(script, "w", encoding="utf-8") as handle:
        handle.write(WRK_SCRIPT % (bodies, ",".join(json.dumps(path) for path in paths)))
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
                          "-s", script, f"http://127.0.0.1:{port}{paths[0]}"],
                         capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("COSTAWARE "))
    requests, errors, micros, p50, p99, _ = (float(v) for v in line.split()[1:])
    return requests / (micros / 1e6), p50 / 1e6, p99 / 1e6, int(requests), int(errors)


# Where a request's time goes: a sampled stack belongs to the layer of its innermost frame that
# one of these names (pieces of py-spy's "function (path:line)", paths from site-packages)
LAYERS = [
    # (DenseMargins calls XGBoost's C function through ctypes: py-spy sees its Python frame)
    ("XGBoost's prediction call (the model)", ("xgboost/", "costaware/model/dense_margins.py")),
    ("calibration, costs, the decision", ("costaware/decisions/", "costaware/model/")),
    ("decoding the request", ("costaware/serving/decoding.py", "costaware/serving/negotiation.py",
                              "costaware/serving/policy_override.py",
                              "costaware/serving/codecs.py")),
    ("encoding the answer", ("costaware/serving/encoding.py",)),
    ("costaware's request glue", ("costaware/serving/app.py", "costaware/serving/invocation.py")),
    ("the access log", ("logging/", "JsonLogger.", "_now (costaware/serving/server.py")),
    ("the direct way's request head and response (direct.py)", ("costaware/serving/direct.py",)),
    ("Flask and Werkzeug", ("flask/", "werkzeug/")),
    ("gunicorn's HTTP parser and WSGI environ", ("gunicorn/http/",)),
    ("writing the answer to the socket", ("_SelectorSocketTransport.write ",)),
]
OTHER_LAYER = "the event loop, the worker's front, reading the socket"
SPY_RATE = 100  # py-spy's samples a second


def worker_pids(proc: subprocess.Popen) -> list[str]:
    """The ``serve`` master's children: its gunicorn workers."""
    return subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                          text=True).stdout.split()


def layer_of(stack: list[str]) -> str:
    """The :data:`LAYERS` name of a sampled stack (frames root first, as py-spy's raw format)."""
    for frame in reversed(stack):
        for name, marks in LAYERS:
            if any(mark in frame for mark in marks):
                return name
    return OTHER_LAYER


def profile_workers(proc: subprocess.Popen, port: int, rows: np.ndarray, concurrency: int,
                    seconds: float, tmp: str, paths: tuple[str, ...] = ("/invocations",),
                    what: str = "") -> int:
    """py-spy samples every worker's stacks (100 a second, without pausing it) while wrk sends
    single-row requests (to ``paths`` in turn); prints the share of the workers' CPU samples per
    layer."""
    if shutil.which("py-spy") is None:
        raise SystemExit("bench_serving.py --profile needs py-spy (pip install py-spy; the bench "
                         "extra has it) and the right to ptrace the workers (root, or "
                         "kernel.yama.ptrace_scope 0)")
    workers = worker_pids(proc)
    outcome = {}
    load = threading.Thread(target=lambda: outcome.update(rate=wrk_single_row(
        port, rows, concurrency, seconds + 4, tmp, paths)))
    load.start()
    time.sleep(2)
    samples = [os.path.join(tmp, f"spy-{pid}.txt") for pid in workers]
    spies = [subprocess.Popen(["py-spy", "record", "--pid", pid, "--duration", str(round(seconds)),
                               "--rate", str(SPY_RATE), "--nonblocking", "--format", "raw",
                               "--output", out], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for pid, out in zip(workers, samples)]
    for spy in spies:
        spy.wait()
    load.join()
    counts = {name: 0 for name, _ in LAYERS} | {OTHER_LAYER: 0}
    for out in samples:
        if not os.path.exists(out):
            raise SystemExit(f"py-spy wrote no samples ({out}): can it ptrace the workers?")
        with open(out, encoding="utf-8") as handle:
            for line in handle:
                stack, _, n = line.rstrip("\n").rpartition(" ")
                counts[layer_of(stack.split(";"))] += int(n)
    total = sum(counts.values())
    rate, p50, p99, requests, errors = outcome["rate"]
    print(f"where a single-row request's time goes{what}: {len(workers)} workers, {total} CPU "
          f"samples, wrk {rate:.0f} requests/s while sampled ({errors} errors)")
    for name, n in sorted(counts.items(), key=lambda item: -item[1]):
        # CPU seconds in the layer (samples / 100 a second) over the requests sampled
        print(f"  {name:52s} {n / total:6.1%}  {n / SPY_RATE / (rate * round(seconds)) * 1e6:6.0f} "
              "us of CPU a request")
    return 0


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


def raw_parse_predict(model, body: bytes, reader: str) -> float:
    """One in-process parse-and-predict of a CSV body, the plain way: ``reader`` ``pandas``
    (``pandas.read_csv``) or ``arrow`` (``pyarrow.csv.read_csv`` on one thread, which the server
    uses), then ``Booster.inplace_predict``."""
    t0 = time.perf_counter()
    if reader == "pandas":
        import pandas as pd

        features = pd.read_csv(io.BytesIO(body), header=None, dtype=np.float64).to_numpy()
    else:
        import pyarrow.csv as pa_csv

        table = pa_csv.read_csv(io.BytesIO(body), read_options=pa_csv.ReadOptions(
            autogenerate_column_names=True, use_threads=False))
        features = np.column_stack([column.to_numpy() for column in table.columns])
    model.booster.inplace_predict(features, predict_type="margin", missing=np.nan)
    return time.perf_counter() - t0


READERS = ("pandas", "arrow")


def server_batch(conn: http.client.HTTPConnection, body: bytes, path: str = "/invocations"
                 ) -> tuple[float, int]:
    """One batch request's round trip (send, server work, receive) and the lines it answered."""
    headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
    t0 = time.perf_counter()
    conn.request("POST", path, body, headers)
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - t0
    if response.status != 200:
        raise SystemExit(f"batch request failed: {response.status} {payload[:300]!r}")
    return elapsed, payload.count(b"\n") + 1


def access_entries(log_path: str):
    """The access log's entries in ``serve``'s log (its other lines skipped)."""
    with open(log_path, "rb") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("logger") == "access":
                yield entry


def server_breakdown(log_path: str, n_rows: int) -> dict:
    """Fastest read/parse/predict/encode/latency of the batch requests, from the access log."""
    keys = ("read_ms", "parse_ms", "predict_ms", "encode_ms", "latency_ms")
    found = {key: [] for key in keys}
    for entry in access_entries(log_path):
        if entry.get("rows") == n_rows:
            for key in keys:
                if key in entry:
                    found[key].append(entry[key])
    return {key: float(np.min(values)) for key, values in found.items() if values}


# issue #27: with many models loaded, a model's single-row rate within 10% of the rate with one
# (and its 6 MiB batch no more than 10% slower)
MULTI_MODEL_TARGET = 0.90
MULTI_BATCH_TARGET = 1.10


def invoke_path(name: str) -> str:
    return f"/models/{name}/invoke"


def with_costs_scaled(policy: dict, factor: float) -> dict:
    """A saved decision policy (``metadata.json``'s ``decision_policy``) with every class cost
    times ``factor``: the Bayes decisions stay (the threshold ``(C_FP - C_TN) / (C_FP - C_TN +
    C_FN - C_TP)`` does not change), the expected costs and the costs echoed scale."""
    if "cost_matrix" in policy:  # K >= 3 classes
        return {**policy, "cost_matrix": [[c * factor for c in row]
                                          for row in policy["cost_matrix"]]}
    return {**policy, "costs": {cell: c * factor for cell, c in policy["costs"].items()}}


def model_copies(model_dir: str, root: str, n: int) -> list[str]:
    """``n`` model directories under ``root`` as SageMaker lays them out (``root/{name}/model``):
    the files of ``model_dir`` a model directory may hold (``artifact.MODEL_LAYOUT``), copy ``i``
    with its class costs times ``1 + i / n``, so that every model answers differently; their
    names."""
    from costaware.model.artifact import METADATA_FILE, MODEL_LAYOUT

    def copy_layout(source: str, target: str, layout: dict) -> None:
        os.makedirs(target)
        for entry, inside in layout.items():
            path = os.path.join(source, entry)
            if inside is not None and os.path.isdir(path):
                copy_layout(path, os.path.join(target, entry), inside)
            elif inside is None and os.path.isfile(path):
                shutil.copyfile(path, os.path.join(target, entry))

    names = [f"model-{i:03d}" for i in range(n)]
    for i, name in enumerate(names):
        copy = os.path.join(root, name, "model")
        copy_layout(model_dir, copy, MODEL_LAYOUT)
        with open(os.path.join(model_dir, METADATA_FILE), encoding="utf-8") as handle:
            metadata = json.load(handle)
        metadata["decision_policy"] = with_costs_scaled(metadata["decision_policy"], 1 + i / n)
        with open(os.path.join(copy, METADATA_FILE), "w", encoding="utf-8") as handle:
            json.dump(metadata, handle, indent=2)
    return names


def post(port: int, path: str, body: bytes, content_type: str = "application/json"
         ) -> tuple[int, bytes]:
    """One ``POST`` on its own connection: ``(status, body)``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body, {"Content-Type": content_type,
                                          "Accept": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def load_models(port: int, root: str, names: list[str]) -> None:
    """``POST /models`` for each of ``names`` (its directory under ``root``); exits on a refusal."""
    for name in names:
        wanted = {"model_name": name, "url": os.path.join(root, name, "model")}
        status, answer = post(port, "/models", json.dumps(wanted).encode())
        if status != 200:
            raise SystemExit(f"loading {name} failed: {status} {answer[:300]!r}")


def sample_answers(port: int, names: list[str], body: bytes) -> dict[str, tuple[int, bytes]]:
    """Each model's answer to one request: name -> ``(status, body)``."""
    return {name: post(port, invoke_path(name), body) for name in names}


def answers_alone(root: str, names: list[str], body: bytes, tmp: str
                  ) -> dict[str, tuple[int, bytes]]:
    """Each model's answer to ``body`` served alone (the single-model ``serve``, one worker)."""
    answers = {}
    for name in names:
        port, proc = free_port(), None
        try:
            proc = start_server(os.path.join(root, name, "model"), port, 1,
                                os.path.join(tmp, f"alone-{name}.log"))
            answers[name] = post(port, "/invocations", body)
        finally:
            stop_server(proc)
    return answers


def workers_rss_bytes(proc: subprocess.Popen) -> int:
    """The sum of the workers' resident memory (``VmRSS`` in ``/proc/{pid}/status``; pages
    the workers share counted in each)."""
    total = 0
    for pid in worker_pids(proc):
        with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
            total += next(int(line.split()[1]) * 1024 for line in handle
                          if line.startswith("VmRSS:"))
    return total


def models_served_by_worker(log_path: str) -> dict[int, set]:
    """pid -> the models a worker answered (200) on ``/models/{name}/invoke``, from the access
    log: a worker loads a model the first time it is asked for it."""
    served = {}
    for entry in access_entries(log_path):
        if (entry.get("status") == 200 and "model" in entry
                and str(entry.get("path", "")).endswith("/invoke")):
            served.setdefault(entry["pid"], set()).add(entry["model"])
    return served


def multi_model_rounds(port: int, model, names: list[str], rows: np.ndarray, args, tmp: str
                       ) -> tuple[list, list, list]:
    """Alternating rounds (which of the two server runs goes first alternates too): the raw
    in-process one-row rate, wrk on the first model, wrk over all ``names`` round robin."""
    local_rates, one_rounds, many_rounds = [], [], []
    seconds = args.seconds / args.rounds
    runs = [(one_rounds, (invoke_path(names[0]),)),
            (many_rounds, tuple(invoke_path(name) for name in names))]
    for r in range(args.rounds):
        local_rates.append(in_process_single_row(raw_predict(model), rows, seconds,
                                                 args.requests))
        for rounds, paths in runs if r % 2 == 0 else runs[::-1]:
            rounds.append(wrk_single_row(port, rows, args.concurrency, seconds, tmp, paths))
    return local_rates, one_rounds, many_rounds


def multi_model_batches(port: int, body: bytes, n_rows: int, names: list[str], repeats: int
                        ) -> tuple[list, list]:
    """The 6 MiB CSV batch's round trips, interleaved: to the first model, and to the models in
    turn."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    one_times, many_times = [], []
    try:
        server_batch(conn, body, invoke_path(names[0]))  # warm-up
        for k in range(repeats):
            for times, name in ((one_times, names[0]), (many_times, names[(k + 1) % len(names)])):
                elapsed, lines = server_batch(conn, body, invoke_path(name))
                if lines != n_rows:
                    raise SystemExit(f"batch to {name} answered {lines} lines for {n_rows} rows")
                times.append(elapsed)
    finally:
        conn.close()
    return one_times, many_times


def row_line(label: str, rounds: list) -> str:
    """A wrk side at its best round, median in brackets."""
    rate, p50, p99 = max(rounds, key=lambda r: r[0])[:3]
    return (f"  {label:32s} {rate:7.0f} requests/s  [{np.median([r[0] for r in rounds]):.0f}]  "
            f"p50 {p50 * 1000:.2f} ms  p99 {p99 * 1000:.2f} ms  "
            f"({sum(r[3] for r in rounds)} requests, {sum(r[4] for r in rounds)} errors)")


def verdict(ratio: float, target: float, at_least: bool) -> str:
    met = ratio >= target if at_least else ratio <= target
    return f"{ratio:.2f}  (target {'>=' if at_least else '<='} {target:.2f})  " + \
        ("MET" if met else "MISSED")


def bench_multi_model(args, tmp: str) -> int:
    """``--multi-model N``: one multi-model ``serve`` holding N copies of the model, a model's
    rate with 1 model in use against N (the module docstring); 1 if a check failed."""
    from costaware.model import artifact

    model_dir, rows = demo_model(args.model_dir, tmp, args.model)
    model = artifact.load(model_dir, nthread=1)
    root = os.path.join(tmp, "models")
    names = model_copies(model_dir, root, args.multi_model)
    port, log_path, proc = free_port(), os.path.join(tmp, "serve.log"), None
    try:
        proc = start_server(root, port, args.workers, log_path, SAGEMAKER_MULTI_MODEL="true",
                            COSTAWARE_MODELS_ROOT=root)
        # each worker loads a model at its first request for it: warm-ups before the memory
        warm_up = min(2.0, args.seconds / args.rounds)
        load_models(port, root, names[:1])
        warm_ups = [wrk_single_row(port, rows, args.concurrency, warm_up, tmp,
                                   (invoke_path(names[0]),))]
        rss = [workers_rss_bytes(proc)]
        load_models(port, root, names[1:])
        sample = json.dumps({"instances": rows[:1].tolist()}).encode()
        answers = sample_answers(port, names, sample)
        warm_ups.append(wrk_single_row(port, rows, args.concurrency, warm_up, tmp,
                                       tuple(invoke_path(name) for name in names)))
        rss.append(workers_rss_bytes(proc))
        served = models_served_by_worker(log_path)
        if args.profile:  # where the time goes, with one model in use and then all N
            for label, paths in ((" (1 model)", (invoke_path(names[0]),)),
                                 (f" ({len(names)} models in turn)",
                                  tuple(invoke_path(name) for name in names))):
                profile_workers(proc, port, rows, args.concurrency, args.seconds, tmp, paths,
                                label)
            return 0

        local_rates, one_rounds, many_rounds = multi_model_rounds(port, model, names, rows,
                                                                  args, tmp)
        body, n_rows = csv_batch(rows, BATCH_BYTES)
        batch_times = multi_model_batches(port, body, n_rows, names, args.batch_repeats)
    finally:
        stop_server(proc)
    # a server of its own for each model compared costs seconds: the first, middle and last
    alone = answers_alone(root, sorted({names[0], names[len(names) // 2], names[-1]}), sample, tmp)
    print_multi_model(args, model, names, rss, served, local_rates, one_rounds, many_rounds,
                      batch_times, len(body), n_rows)
    errors = sum(r[4] for r in warm_ups + one_rounds + many_rounds)
    return print_multi_model_checks(names, errors, answers, alone)


def print_multi_model(args, model, names, rss, served, local_rates, one_rounds, many_rounds,
                      batch_times, body_bytes, n_rows) -> None:
    n, mib = len(names), 2 ** 20
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (other "
          f"processes included); server: {args.workers} workers, SAGEMAKER_MULTI_MODEL=true, "
          f"{n} models loaded (copies, each its own class costs); model: "
          f"{model.booster.num_boosted_rounds()} rounds, {len(model.feature_names)} features")
    fewest = min((len(models) for models in served.values()), default=0)
    print(f"workers' resident memory (VmRSS summed): {rss[0] / mib:.1f} MiB with 1 model, "
          f"{rss[1] / mib:.1f} MiB with {n} (+{(rss[1] - rss[0]) / mib:.1f} MiB; each of the "
          f"{len(served)} workers had answered at least {fewest} of the {n} models)")
    print(f"single row, application/json on /models/{{name}}/invoke (best of {args.rounds} "
          "alternating rounds; median in brackets)")
    print(f"  in-process Booster.inplace_predict: {max(local_rates):7.0f} predictions/s  "
          f"[{np.median(local_rates):.0f}]  (1 thread)")
    print(row_line("server, 1 model:", one_rounds))
    print(row_line(f"server, {n} models round robin:", many_rounds))
    one_times, many_times = batch_times
    print(f"6 MiB CSV batch ({body_bytes / mib:.2f} MiB, {n_rows} rows, Accept text/csv; best of "
          f"{args.batch_repeats} interleaved, median in brackets)")
    for label, times in (("1 model", one_times), (f"{n} models in turn", many_times)):
        print(f"  {label:32s} {min(times) * 1000:7.1f} ms [{np.median(times) * 1000:.1f}]  "
              f"{n_rows / min(times):>9,.0f} rows/s")
    print("targets")
    one_rate = max(r[0] for r in one_rounds)
    many_rate = max(r[0] for r in many_rounds)
    median_rates = [np.median([r[0] for r in rounds]) for rounds in (one_rounds, many_rounds)]
    print(f"  {f'{n} models / 1 model single-row rate':40s} = "
          f"{verdict(many_rate / one_rate, MULTI_MODEL_TARGET, True)}  "
          f"[medians: {median_rates[1] / median_rates[0]:.2f}]")
    print(f"  {f'{n} models / 1 model 6 MiB batch time':40s} = "
          f"{verdict(min(many_times) / min(one_times), MULTI_BATCH_TARGET, False)}  "
          f"[medians: {np.median(many_times) / np.median(one_times):.2f}]")
    print(f"  {'1 model / raw one-row rate':40s} = {one_rate / max(local_rates):.2f}  "
          "(for reference)")


def print_multi_model_checks(names: list[str], errors: int, answers: dict, alone: dict) -> int:
    """wrk's ``errors`` (warm-ups included), each model's answer (200, all different) and the
    answers of the models served alone (the same bytes); 1 if a check failed."""
    refused = {name: status for name, (status, _) in answers.items() if status != 200}
    bodies = {payload for _, payload in answers.values()}
    differ = [name for name in alone if alone[name] != answers[name]]
    print("checks")
    print(f"  wrk: {errors} non-2xx answers or socket errors; one request to each model: "
          f"{len(refused)} not 200{' ' + str(refused) if refused else ''}; "
          f"{len(bodies)} different answers from {len(names)} models")
    print(f"  the answers of {', '.join(alone)} served alone: "
          + (f"DIFFER for {', '.join(differ)}" if differ else "the same bytes"))
    failed = errors or refused or differ or len(bodies) != len(names)
    print("  " + ("FAILED" if failed else "passed"))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="a trained model directory (default: train --model)")
    parser.add_argument("--model", choices=sorted(MODELS), default="demo",
                        help="what to train on the demo's data without --model-dir: the demo "
                        "(its defaults), or small: 100 trees of depth 4")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the table: where a single-row request's time goes in a "
                        "worker (py-spy samples under wrk's load, grouped by layer)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20000,
                        help="cap on in-process single-row calls a round")
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="time for the single-row comparison, split over the rounds")
    parser.add_argument("--rounds", type=int, default=4, help="alternating single-row rounds")
    parser.add_argument("--batch-repeats", type=int, default=7)
    parser.add_argument("--against", metavar="DIR",
                        help="also serve from another version's code (its container directory) "
                        "and give it a turn in every round: an A/B in one run")
    parser.add_argument("--multi-model", type=int, metavar="N",
                        help="instead of the table: a multi-model server holding N copies of the "
                        "model (each its own class costs), a model's rate with 1 in use against N")
    args = parser.parse_args()
    if args.multi_model is not None and args.multi_model < 2:
        parser.error("--multi-model takes N >= 2 models")
    if args.against and (args.profile or args.multi_model is not None):
        parser.error("--against compares the table's figures: without --profile or --multi-model")
    if args.against and not os.path.isdir(os.path.join(args.against, "costaware")):
        parser.error(f"--against {args.against}: no costaware package in that directory")

    from costaware.model import artifact

    tmp = tempfile.mkdtemp(prefix="costaware-bench-")
    if args.multi_model:
        try:
            return bench_multi_model(args, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    proc, other = None, None
    try:
        model_dir, rows, port, proc = serve_demo(args.model_dir, tmp, args.workers, args.model)
        model = artifact.load(model_dir, nthread=1)
        if args.profile:
            return profile_workers(proc, port, rows, args.concurrency, args.seconds, tmp)
        if args.against:
            other = start_other_server(args.against, model_dir, args.workers,
                                       os.path.join(tmp, "serve-against.log"))

        # The machine may be shared: in-process and server phases alternate, and each side is
        # reported at its best round (and its median), so a burst of load elsewhere flatters
        # neither side of a ratio.
        local_rates, ours_rates, server_rounds, eight_rates, other_rounds = [], [], [], [], []
        proxy_rates = []
        for r in range(args.rounds):
            local_rates.append(in_process_single_row(raw_predict(model), rows,
                                                     args.seconds / args.rounds, args.requests))
            proxy_rates.append(in_process_single_row(kept_proxy_predict(model), rows,
                                                     args.seconds / args.rounds / 2,
                                                     args.requests))
            eight_rates.append(in_process_single_row(raw_predict(model), rows,
                                                     args.seconds / args.rounds / 4, args.requests,
                                                     rows_per_call=8))
            ours_rates.append(in_process_single_row(costaware_predict(model), rows,
                                                    args.seconds / args.rounds / 2, args.requests))
            runs = [(server_rounds, port)] + ([(other_rounds, other[0])] if other else [])
            for rounds, server_port in runs if r % 2 == 0 else runs[::-1]:
                rounds.append(wrk_single_row(server_port, rows, args.concurrency,
                                             args.seconds / args.rounds, tmp))
        best = max(server_rounds, key=lambda r: r[0])
        rate, p50, p99 = best[:3]
        errors = sum(r[4] for r in server_rounds)
        local_rate = max(local_rates)

        body, n_rows = csv_batch(rows, BATCH_BYTES)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        # the worker's first body over 16 KiB (the single-row phase sent none): what a fresh
        # worker's first batch costs, against the later ones on the same connection (worker)
        first_batch, _ = server_batch(conn, body)
        sides = [(conn, [])]
        if other:
            sides.append((http.client.HTTPConnection("127.0.0.1", other[0], timeout=120), []))
            other_first, _ = server_batch(sides[1][0], body)  # its worker's first, as above
            if post(port, "/invocations", body, "text/csv") != \
                    post(other[0], "/invocations", body, "text/csv"):
                raise SystemExit(f"{args.against}'s server answers the batch differently")
        raw_times, served_times = {reader: [] for reader in READERS}, sides[0][1]
        for k in range(args.batch_repeats):
            for reader in READERS:
                raw_times[reader].append(raw_parse_predict(model, body, reader))
            for side_conn, times in sides if k % 2 == 0 else sides[::-1]:
                elapsed, lines = server_batch(side_conn, body)
                times.append(elapsed)
                if lines != n_rows:
                    raise SystemExit(f"batch answered {lines} lines for {n_rows} rows")
        for side_conn, _ in sides:
            side_conn.close()
        # the baseline: the faster reader, parse and predict
        fastest = min(READERS, key=lambda reader: min(raw_times[reader]))
        raw, served = min(raw_times[fastest]), min(served_times)
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
        print(f"  in-process, the same C call with a kept proxy: {max(proxy_rates):7.0f} "
              f"predictions/s  [{np.median(proxy_rates):.0f}]  (1 thread: what costaware calls)")
        print(f"  in-process Booster.inplace_predict of 8 rows: {max(eight_rates):7.0f} calls/s  "
              f"[{np.median(eight_rates):.0f}]  (what answering requests together draws on)")
        print(f"  in-process inference.predict:  {max(ours_rates):7.0f} predictions/s  "
              f"[{np.median(ours_rates):.0f}]  (1 thread, for reference)")
        print(f"  server (wrk, concurrency {args.concurrency}): {rate:7.0f} requests/s     "
              f"[{np.median([r[0] for r in server_rounds]):.0f}]  "
              f"p50 {p50 * 1000:.2f} ms  p99 {p99 * 1000:.2f} ms  "
              f"({sum(r[3] for r in server_rounds)} requests, {errors} errors)")
        print(f"6 MiB CSV batch ({len(body) / 2**20:.2f} MiB, {n_rows} rows, Accept text/csv, "
              f"all fields; best of {args.batch_repeats}, median in brackets)")
        for reader in READERS:
            best_raw = min(raw_times[reader])
            print(f"  raw {reader} read_csv + inplace_predict: {best_raw * 1000:7.1f} ms "
                  f"[{np.median(raw_times[reader]) * 1000:.1f}]  {n_rows / best_raw:>9,.0f} "
                  f"rows/s{'  (the baseline: the faster)' if reader == fastest else ''}")
        print(f"  server round trip:       {served * 1000:7.1f} ms "
              f"[{np.median(served_times) * 1000:.1f}]  {n_rows / served:>9,.0f} rows/s")
        print(f"  first batch request:     {first_batch * 1000:7.1f} ms  (its worker's first; "
              f"{first_batch / np.median(served_times):.2f}x the later ones' median)")
        if breakdown:
            print("  inside the server (fastest): " + "  ".join(
                f"{key[:-3]} {value:.1f}" for key, value in breakdown.items()) + " ms")
        if other:
            print_against(args.against, server_rounds, other_rounds, served_times, sides[1][1],
                          local_rates, raw_times[fastest])
            print(f"  its first batch request: {other_first * 1000:7.1f} ms  "
                  f"({other_first / np.median(sides[1][1]):.2f}x its later ones' median)")
        print("targets")
        target = SINGLE_ROW_TARGET["small" if args.model_dir is None and args.model == "small"
                                   else "demo"]
        print(f"  server / raw one-row rate           = {verdict(single_ratio, target, True)}  "
              f"[medians: {np.median([r[0] for r in server_rounds]) / np.median(local_rates):.2f}]")
        print(f"  server / kept-proxy one-row rate    = {rate / max(proxy_rates):.2f}  "
              f"[medians: {np.median([r[0] for r in server_rounds]) / np.median(proxy_rates):.2f}]"
              "  (against the faster call: no target)")
        print(f"  6 MiB batch / raw parse+predict     = "
              f"{verdict(batch_ratio, BATCH_TARGET, False)}  "
              f"[medians: {np.median(served_times) / np.median(raw_times[fastest]):.2f}]")
        return 0
    finally:
        stop_server(proc)
        if other:
            stop_server(other[1])
        shutil.rmtree(tmp, ignore_errors=True)


def print_against(code_dir: str, server_rounds: list, other_rounds: list, served_times: list,
                  other_times: list, local_rates: list, raw_times: list) -> None:
    """``--against``: the other version's single-row rate and batch time beside this one's
    (best, median in brackets), and both against the baseline, by medians."""
    print(f"against {code_dir} (the same rounds, taking turns with this version)")
    print(row_line("its server (wrk):", other_rounds))
    print(f"  its batch round trip:    {min(other_times) * 1000:7.1f} ms "
          f"[{np.median(other_times) * 1000:.1f}]")
    for label, rounds, times in (("this version", server_rounds, served_times),
                                 ("the other", other_rounds, other_times)):
        print(f"  {label:12s}: one-row rate / raw = "
              f"{np.median([r[0] for r in rounds]) / np.median(local_rates):.2f}, "
              f"batch / raw parse+predict = {np.median(times) / np.median(raw_times):.2f} "
              "(medians)")


if __name__ == "__main__":
    sys.exit(main())
