"""The real ``serve`` (gunicorn, 2 workers, 127.0.0.1, a free port) against a model trained by the
real training entry point; answers are checked against in-process ``inference.predict``."""

from __future__ import annotations

import http.client as http_client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid

import numpy as np
import pytest
import requests

from costaware.model import artifact
from costaware.model import inference
from costaware.decisions.costs import CostMatrix
from costaware.serving import codecs, policy_override

from support import (HEADER, PAYLOAD_MB, Server, assert_matches, csv_body, free_port,
                     parse_response)

FIELDS = inference.OUTPUT_FIELDS


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def trained(breast_cancer_tree):
    """The demo model trained once per session by the real ``train`` entry point (conftest.py),
    shared with the other tests that need it (read only), and its test rows without the label."""
    base = breast_cancer_tree
    rows = np.loadtxt(base / "input" / "data" / "test" / "test.csv", delimiter=",")[:, 1:]
    return str(base / "model"), rows


@pytest.fixture(scope="module")
def model(trained):
    return artifact.load(trained[0], nthread=1)


@pytest.fixture(scope="module")
def rows(trained):
    return trained[1]


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    srv = Server(trained[0], tmp_path_factory.mktemp("logs"), workers=2)
    try:
        srv.wait_ready()
        deadline = time.monotonic() + 30
        while len(srv.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.boot_workers = srv.workers()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


# ------------------------------------------------------------------------------------ helpers


def json_rows(features: np.ndarray) -> list:
    return [[None if math.isnan(v) else v for v in row] for row in features.tolist()]


def with_missing(rows: np.ndarray, n: int = 6) -> np.ndarray:
    features = rows[:n].copy()
    features[1, 3] = np.nan
    features[2, [0, 7, 29]] = np.nan
    return features


GOOD_ROWS = 3


def assert_still_good(http, server, model, rows):
    """The server answers a good request exactly as in-process prediction does."""
    response = http.post(server.url + "/invocations", data=csv_body(rows[:GOOD_ROWS]),
                         headers={"Content-Type": "text/csv", "Accept": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["policy"]["costs_source"] == "model"
    assert_matches(parse_response(response), inference.predict(model, rows[:GOOD_ROWS]))


# ------------------------------------------------------------------------------------ contract


def test_ping_answers_json(server, http):
    response = http.get(server.url + "/ping")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_execution_parameters(server, http):
    response = http.get(server.url + "/execution-parameters")
    assert response.status_code == 200
    assert response.json() == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD",
                               "MaxPayloadInMB": PAYLOAD_MB}


def _bodies(features: np.ndarray, names: list[str]) -> dict:
    keyed = [{name: v for name, v in zip(names, row) if v is not None}
             for row in json_rows(features)]
    return {
        "csv": ("text/csv", csv_body(features)),
        "csv-charset": ("text/csv; charset=utf-8", csv_body(features)),
        "csv-label-size": ("text/csv;label_size=0", csv_body(features)),
        "csv-crlf": ("text/csv", csv_body(features).replace(b"\n", b"\r\n")),
        "json-lists": ("application/json", json.dumps({"instances": json_rows(features)})),
        "json-keyed": ("application/json", json.dumps({"instances": keyed})),
        "json-features": ("application/json", json.dumps(
            {"instances": [{"features": r} for r in json_rows(features)]})),
        "jsonlines-lists": ("application/jsonlines",
                            "\n".join(json.dumps(r) for r in json_rows(features))),
        "jsonlines-keyed": ("application/jsonlines", "\n".join(json.dumps(r) for r in keyed)),
        "jsonl": ("application/jsonl", "\n".join(json.dumps(r) for r in json_rows(features)) + "\n"),
    }


INPUTS = ["csv", "csv-charset", "csv-label-size", "csv-crlf", "json-lists", "json-keyed",
          "json-features", "jsonlines-lists", "jsonlines-keyed", "jsonl"]
ACCEPTS = [None, "application/json", "application/jsonlines", "text/csv", "*/*"]


@pytest.mark.parametrize("accept", ACCEPTS, ids=lambda a: str(a))
@pytest.mark.parametrize("input_name", INPUTS)
def test_every_content_type_and_accept(server, http, model, rows, input_name, accept):
    features = with_missing(rows)
    content_type, body = _bodies(features, model.feature_names)[input_name]
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    response = http.post(server.url + "/invocations", data=body, headers=headers)
    assert response.status_code == 200, response.text
    want_type = accept if accept and accept != "*/*" else "application/json"
    assert response.headers["Content-Type"].split(";")[0] == want_type
    assert not response.text.endswith("\n")  # AssembleWith=Line adds the line end
    assert_matches(parse_response(response), inference.predict(model, features))
    assert "costs_source=model" in response.headers[HEADER]


@pytest.mark.parametrize("accept,fields", [
    ("application/json;fields=decision", ("decision",)),
    ("text/csv;fields=score,decision", ("score", "decision")),
    ("text/csv; fields=decision", ("decision",)),
    ('application/jsonlines;fields="expected_cost_if_0,expected_cost_if_1"',
     ("expected_cost_if_0", "expected_cost_if_1")),
    ("application/json;fields=threshold,score", ("threshold", "score")),
    ("application/xml;q=0.9, text/csv;fields=decision,score;q=0.5", ("decision", "score")),
])
def test_field_selection(server, http, model, rows, accept, fields):
    features = rows[:5]
    response = http.post(server.url + "/invocations", data=csv_body(features),
                         headers={"Content-Type": "text/csv", "Accept": accept})
    assert response.status_code == 200, response.text
    predictions = parse_response(response, fields)
    assert_matches(predictions, inference.predict(model, features), fields)
    if response.headers["Content-Type"].startswith("text/csv") and fields == ("decision",):
        assert set(response.text.split("\n")) <= {"0", "1"}


def _flipping_override(model, rows):
    """Costs under which some row's decision flips, and that row's index."""
    base = model.policy.costs
    costs = CostMatrix(fp=base.fp, fn=base.fn * 10, tp=base.tp, tn=base.tn)
    policy = model.policy.with_costs(costs)
    before = inference.predict(model, rows)["decision"]
    after = inference.predict(model, rows, policy=policy)["decision"]
    flipped = np.flatnonzero(before != after)
    assert len(flipped), "no row flips under the override; pick other costs"
    return costs, policy, int(flipped[0])


def test_custom_attributes_override_recomputes_decision(server, http, model, rows):
    costs, policy, index = _flipping_override(model, rows)
    features = rows[index:index + 1]
    attrs = f"trace_id=abc-123,cost_fn={costs.fn!r}"  # a foreign attribute is ignored
    plain = http.post(server.url + "/invocations", data=csv_body(features),
                      headers={"Content-Type": "text/csv"})
    overridden = http.post(server.url + "/invocations", data=csv_body(features),
                           headers={"Content-Type": "text/csv", HEADER: attrs})
    assert plain.status_code == overridden.status_code == 200, overridden.text
    before, after = plain.json(), overridden.json()
    assert before["predictions"][0]["decision"] != after["predictions"][0]["decision"]
    assert_matches(after["predictions"],
                   inference.predict(model, features, policy=policy, costs_source="request"))
    assert after["policy"]["costs_source"] == "request"
    assert after["policy"]["costs"] == costs.as_dict()
    assert after["policy"]["rule"] == {"kind": "bayes"}
    # deciding at the new costs' Bayes threshold, on the same calibrated probability
    assert after["predictions"][0]["threshold"] == pytest.approx(costs.bayes_threshold(), rel=1e-13)
    assert after["predictions"][0]["score"] == before["predictions"][0]["score"]
    assert after["predictions"][0]["costs"] == "request" and before["predictions"][0]["costs"] == "model"
    header = dict(part.split("=") for part in overridden.headers[HEADER].split(","))
    assert float(header["cost_fn"]) == costs.fn and float(header["cost_tp"]) == costs.tp
    assert header["rule"] == "bayes" and header["costs_source"] == "request"
    # the override did not leak into the next request
    again = http.post(server.url + "/invocations", data=csv_body(features),
                      headers={"Content-Type": "text/csv"})
    assert again.json() == before


def test_custom_attributes_full_matrix_and_csv_output(server, http, model, rows):
    costs = CostMatrix(fp=1.0, fn=20.0, tp=0.0, tn=0.0)
    policy = model.policy.with_costs(costs)
    features = rows[:40]
    response = http.post(server.url + "/invocations", data=csv_body(features),
                         headers={"Content-Type": "text/csv", "Accept": "text/csv",
                                  HEADER: "cost_fp=1; cost_fn=20; cost_tp=0; cost_tn=0"})
    assert response.status_code == 200, response.text
    assert_matches(parse_response(response),
                   inference.predict(model, features, policy=policy, costs_source="request"))
    assert response.headers[HEADER].startswith("cost_fp=1,cost_fn=20,cost_tp=0,cost_tn=0,")


def _batch(rows: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rows[rng.integers(0, len(rows), n)]
    features = picks * rng.uniform(0.8, 1.2, picks.shape)
    features[rng.random(features.shape) < 0.02] = np.nan
    return features


@pytest.mark.parametrize("accept", ["text/csv", "application/jsonlines", "application/json"])
def test_batch_of_1000_csv_rows_keeps_order(server, http, model, rows, accept):
    features = _batch(rows, 1000)
    body = csv_body(features)
    assert len(body) > codecs.SMALL_BODY  # the bulk (pandas) parser
    response = http.post(server.url + "/invocations", data=body,
                         headers={"Content-Type": "text/csv", "Accept": accept})
    assert response.status_code == 200, response.text
    if accept != "application/json":
        assert response.text.count("\n") == 999
    assert_matches(parse_response(response), inference.predict(model, features))


def test_batch_jsonlines_and_row_alone_print_identically(server, http, model, rows):
    features = _batch(rows, 300, seed=1)
    body = "\n".join(json.dumps(r) for r in json_rows(features))
    batch = http.post(server.url + "/invocations", data=body,
                      headers={"Content-Type": "application/jsonlines", "Accept": "text/csv"})
    assert batch.status_code == 200
    lines = batch.text.split("\n")
    assert len(lines) == 300
    for i in (0, 17, 299):
        alone = http.post(server.url + "/invocations", data=json.dumps(json_rows(features)[i]),
                          headers={"Content-Type": "application/jsonlines", "Accept": "text/csv"})
        assert alone.text == lines[i]  # same digits whatever the batch size


# ------------------------------------------------------------------------------------ bad input


def _big_csv_with_short_line(rows) -> bytes:
    lines = csv_body(_batch(rows, 400, seed=2)).split(b"\n")
    lines[299] = b",".join(lines[299].split(b",")[:29])
    return b"\n".join(lines)


CSV = {"Content-Type": "text/csv"}
JSON = {"Content-Type": "application/json"}
JSONL = {"Content-Type": "application/jsonlines"}
ROW = ",".join(["1.5"] * 30)
JROW = [1.5] * 30

BAD = [
    # id, headers, body, status, message
    ("csv-short-row", CSV, ",".join(["1"] * 29), 400, "line 1: 29 values, the model takes 30"),
    ("csv-long-second-line", CSV, f"{ROW}\n{ROW},2\n{ROW}", 400,
     "line 2: 31 values, the model takes 30"),
    ("csv-bulk-short-line-300", CSV, "BIG", 400, "line 300: 29 values, the model takes 30"),
    ("csv-not-a-number", CSV, "1,2,abc," + ROW[12:], 400,
     "line 1, column 3 (f2): 'abc' is not a number"),
    ("csv-header-line", CSV, ",".join(f"f{i}" for i in range(30)) + "\n" + ROW, 400,
     "line 1, column 1 (f0): 'f0' is not a number"),
    ("csv-inf", CSV, f"{ROW}\n1,2,3,4,-inf," + ROW[20:], 400,
     "line 2, column 5 (f4): -inf is infinite"),
    ("csv-beyond-float32", CSV, "1e39" + ROW[3:], 400, "line 1, column 1 (f0): 1e+39 is beyond"),
    ("csv-empty-line", CSV, f"{ROW}\n\n{ROW}", 400, "line 2: empty line"),
    ("csv-quoted", CSV, '"1.5",' + ROW[4:], 400, "quoted CSV fields are not supported"),
    ("csv-underscore", CSV, "1_000" + ROW[3:], 400, "'1_000' is not a number"),
    ("empty-body", CSV, "", 400, "the body is empty"),
    ("blank-body", JSON, "  \n ", 400, "the body is empty"),
    ("invalid-utf8", CSV, b"1.5,\xff\xfe" + ROW[5:].encode(), 400, "line 1: the body is not valid UTF-8"),
    ("json-invalid", JSON, '{"instances": [[1, 2,]]}', 400, "the body is not valid JSON"),
    ("json-top-level-list", JSON, json.dumps([JROW]), 400,
     'expected a JSON object {"instances": [ROW, ...]}, got a list'),
    ("json-instances-not-list", JSON, json.dumps({"instances": 3}), 400,
     "'instances' must be a list of rows, got a number"),
    ("json-instances-empty", JSON, json.dumps({"instances": []}), 400, "'instances' is empty"),
    ("json-short-row", JSON, json.dumps({"instances": [JROW, JROW[:29]]}), 400,
     "instances[1]: 29 values, the model takes 30"),
    ("json-string-value", JSON, json.dumps({"instances": [["1.5"] + JROW[1:]]}), 400,
     'instances[0], column 1 (f0): "1.5" is not a number'),
    ("json-boolean", JSON, json.dumps({"instances": [JROW[:4] + [True] + JROW[5:]]}), 400,
     "column 5 (f4): true is not a number"),
    ("json-unknown-feature", JSON, json.dumps({"instances": [{"f0": 1, "mean radius": 2}]}), 400,
     "instances[0]: unknown column 'mean radius'"),
    ("json-keyed-string", JSON, json.dumps({"instances": [{"f3": "x"}]}), 400,
     "instances[0], 'f3': \"x\" is not a number"),
    ("json-infinity-token", JSON, '{"instances": [[Infinity' + ", 1" * 29 + "]]}", 400,
     "instances[0], column 1 (f0): inf is infinite"),
    ("json-huge-integer", JSON, '{"instances": [[1' + "0" * 400 + ", 1" * 29 + "]]}", 400,
     "is beyond float32's range"),
    ("json-deeply-nested", JSON, "[" * 100000 + "]" * 100000, 400, "nested too deeply"),
    ("jsonlines-invalid-line-2", JSONL, json.dumps(JROW) + "\n{oops\n" + json.dumps(JROW), 400,
     "line 2: not valid JSON"),
    ("jsonlines-scalar-row", JSONL, "7", 400, "line 1: expected a list of 30 numbers"),
    ("jsonlines-blank-line", JSONL, json.dumps(JROW) + "\n\n" + json.dumps(JROW), 400,
     "line 2: empty line"),
    ("content-type-unknown", {"Content-Type": "application/x-parquet"}, ROW, 415,
     "Content-Type 'application/x-parquet' is not supported"),
    ("content-type-missing", {}, ROW, 415, "Content-Type is missing"),
    ("charset-latin1", {"Content-Type": "text/csv; charset=latin-1"}, ROW, 415,
     "charset 'latin-1' is not supported"),
    ("csv-label-size-1", {"Content-Type": "text/csv;label_size=1"}, ROW, 415,
     "label_size=1: inference takes features only"),
    ("content-encoding-gzip", {**CSV, "Content-Encoding": "gzip"}, ROW, 415,
     "Content-Encoding 'gzip' is not supported"),
    ("accept-unknown", {**CSV, "Accept": "application/xml"}, ROW, 406,
     "Accept 'application/xml': this server answers"),
    ("accept-unknown-field", {**CSV, "Accept": "text/csv;fields=probability"}, ROW, 406,
     "unknown field 'probability'"),
    ("accept-field-twice", {**CSV, "Accept": "text/csv;fields=score,score"}, ROW, 406,
     "names a field twice"),
    ("override-unknown-cost", {**CSV, HEADER: "cost_fx=3"}, ROW, 400, "unknown cost 'cost_fx'"),
    ("override-negative", {**CSV, HEADER: "cost_fn=-5"}, ROW, 400, "cost_fn='-5' is not a number >= 0"),
    ("override-not-a-number", {**CSV, HEADER: "cost_fp=cheap"}, ROW, 400,
     "cost_fp='cheap' is not a number"),
    ("override-fp-not-above-tn", {**CSV, HEADER: "cost_fp=2,cost_tn=2"}, ROW, 400,
     "cost_fp (2) must exceed cost_tn (2)"),
    ("override-fn-below-models-tp", {**CSV, HEADER: "cost_fp=1,cost_fn=20"}, ROW, 400,
     "cost_fn (20) must exceed cost_tp (35280, the model's)"),
    ("override-twice", {**CSV, HEADER: "cost_fn=5,cost_fn=6"}, ROW, 400, "cost_fn is given twice"),
    ("over-payload-limit", CSV, "OVER", 413, "over this server's limit of 1 MiB"),
    ("over-payload-limit-chunked", CSV, "OVER-CHUNKED", 413, "over this server's limit of 1 MiB"),
]


@pytest.mark.parametrize("name,headers,body,status,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input(server, http, model, rows, name, headers, body, status, message):
    if body == "BIG":
        body = _big_csv_with_short_line(rows)
    elif body == "OVER":
        body = b"1" * (PAYLOAD_MB * 1024 * 1024 + 1)
    elif body == "OVER-CHUNKED":
        body = iter([b"1,2\n" * 65536] * (PAYLOAD_MB * 4 + 1))  # no Content-Length: chunked
    response = http.post(server.url + "/invocations", data=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    payload = response.json()
    assert payload["status"] == status
    assert message in payload["error"], payload["error"]
    assert "\n" not in payload["error"]
    assert_still_good(http, server, model, rows)


@pytest.mark.parametrize("method,path,status,message", [
    ("GET", "/invocations", 405, "GET is not allowed on /invocations"),
    ("POST", "/ping", 405, "POST is not allowed on /ping"),
    ("GET", "/predict", 404, "no such path /predict"),
])
def test_wrong_method_or_path_is_json(server, http, model, rows, method, path, status, message):
    response = http.request(method, server.url + path)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert_still_good(http, server, model, rows)


def test_master_never_loads_xgboost(server):
    def maps(pid):
        with open(f"/proc/{pid}/maps") as handle:
            return handle.read()

    assert "xgboost" not in maps(server.pid)  # workers fork from a process without OpenMP threads
    assert all("xgboost" in maps(pid) for pid in server.workers())


def test_no_worker_imports_pandas_for_a_big_csv_request(server, model, rows):
    """A worker never imports pandas (scikit-learn, which imports it, is kept out of workers),
    and pyarrow's ``Array.to_numpy`` imports it: each worker's first CSV body over 16 KiB (Arrow's
    reader) paid that import, 0.2 to 0.9 s against a 6 MiB body's 25 ms parse. Arrow's columns are
    read from their buffers instead: once every worker answered a big body with missing cells (in
    prediction's numbers), no pandas library is mapped in any of them."""
    features = _batch(rows, 1600, seed=4)
    body = csv_body(features)
    assert 16 * 1024 < len(body) <= PAYLOAD_MB << 20 and np.isnan(features).any()
    expected = inference.predict(model, features)
    answered = set()
    for _ in range(40):  # new connections until every worker answered one
        response = requests.post(server.url + "/invocations", data=body,
                                 headers={"Content-Type": "text/csv",
                                          "Accept": "application/jsonlines"})
        assert response.status_code == 200, response.text
        assert_matches(parse_response(response), expected)
        answered = {entry["pid"] for entry in server.access_log() if entry.get("rows") == 1600}
        if answered >= server.workers():
            break
    assert answered >= server.workers()
    for pid in server.workers():
        with open(f"/proc/{pid}/maps") as handle:
            mapped = handle.read()
        assert "pyarrow" in mapped and "pandas" not in mapped


def test_bad_requests_killed_no_worker(server):
    # runs after the bad inputs (pytest keeps file order); gunicorn would have replaced a dead one
    assert server.workers() == server.boot_workers


def test_access_log_is_one_json_line_per_request(server, http):
    path = f"/no-such-path-{uuid.uuid4().hex}"
    http.get(server.url + path)
    http.post(server.url + "/invocations", data="x", headers=CSV)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        log = server.access_log()
        mine = [entry for entry in log if entry.get("path") == path]
        if mine and log[-1].get("error", "").startswith("line 1:"):
            break
        time.sleep(0.05)
    assert len(mine) == 1
    assert mine[0]["status"] == 404 and mine[0]["latency_ms"] >= 0 and mine[0]["method"] == "GET"
    bad = log[-1]
    assert bad["status"] == 400 and bad["error"] == "line 1: 1 values, the model takes 30"
    good = [e for e in log if e.get("path") == "/invocations" and e["status"] == 200]
    assert good and all({"rows", "parse_ms", "predict_ms", "encode_ms"} <= set(e) for e in good)


# ------------------------------------------------------------------------------------ lifecycle


def test_sigterm_drains_in_flight_request(trained, model, rows, tmp_path):
    srv = Server(trained[0], tmp_path, workers=1)
    try:
        srv.wait_ready()
        body = csv_body(rows[:50])
        half = len(body) // 2
        conn = http_client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
        conn.request("GET", "/ping")  # the worker now holds this kept-alive connection
        assert conn.getresponse().read() == b'{"status":"ok"}'
        sock = conn.sock
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                     b"Accept: text/csv\r\nConnection: close\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:half])
        time.sleep(0.5)  # the worker is now reading the body
        os.kill(srv.pid, signal.SIGTERM)
        time.sleep(0.5)
        assert srv.proc.poll() is None  # still draining
        sock.sendall(body[half:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
        conn.close()
        head, _, payload = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        lines = [dict(zip(FIELDS, line.split(","))) for line in payload.decode().split("\n")]
        expected = inference.predict(model, rows[:50])
        assert [int(x["decision"]) for x in lines] == expected["decision"].tolist()
        assert srv.proc.wait(timeout=20) == 0
        # and the server is gone: nothing listens on its port any more
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    finally:
        srv.stop()


def test_sigterm_while_the_workers_boot_lets_each_exit_on_its_own(trained, tmp_path):
    """A SIGTERM that comes while the workers still load the model: each worker exits by itself
    (it used to mark itself stopped, then run its loop for ever: the master killed it at the
    graceful timeout, and a master killed first left it running with no parent)."""
    srv = Server(trained[0], tmp_path, workers=2, COSTAWARE_GRACEFUL_TIMEOUT="20")
    try:
        deadline = time.monotonic() + 30
        while len(srv.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        booting = srv.workers()
        assert len(booting) == 2
        time.sleep(0.1)  # past gunicorn's own signal set-up, still importing and loading
        os.kill(srv.pid, signal.SIGTERM)
        assert srv.proc.wait(timeout=60) == 0
        exited = {int(line.split("pid: ")[1].split(")")[0]) for line in srv.stderr().splitlines()
                  if "Worker exiting (pid: " in line}
        assert booting <= exited, srv.stderr()
        assert not [pid for pid in booting if os.path.exists(f"/proc/{pid}")]
    finally:
        srv.stop()


def _bad_model_dir(case: str, model_dir: str, tmp_path) -> str:
    """A copy of the trained model directory broken in the way ``case`` says."""
    target = tmp_path / case
    if case == "missing":
        return str(tmp_path / "nowhere")
    if case == "empty":
        target.mkdir()
        return str(target)
    if case == "a-file":
        target.write_text("not a directory")
        return str(target)
    shutil.copytree(model_dir, target)
    booster, meta = target / artifact.BOOSTER_FILE, target / artifact.METADATA_FILE
    metadata = json.loads(meta.read_text())
    if case == "corrupt-booster":
        booster.write_bytes(b"{not a booster")
    elif case == "truncated-booster":
        booster.write_bytes(booster.read_bytes()[: booster.stat().st_size // 2])
    elif case == "no-booster":
        booster.unlink()
    elif case == "corrupt-metadata":
        meta.write_text(meta.read_text()[:40])
    elif case == "metadata-not-an-object":
        meta.write_text("[1, 2]")
    else:
        if case == "metadata-incomplete":
            del metadata["decision_policy"]
        elif case == "calibrator-not-finite":
            metadata["decision_policy"]["calibrator"] = {
                "method": "platt", "slope": "nan", "intercept": 0, "rows": 9,
                "covariance": [[0, 0], [0, 0]], "margin_range": [None, None]}
        elif case == "isotonic-knots-decreasing":
            metadata["decision_policy"]["calibrator"] = {
                "method": "isotonic", "knot_margins": [0, 1], "knot_log_odds": [1, 0]}
        elif case == "unknown-calibrator":
            metadata["decision_policy"]["calibrator"] = {"method": "spline"}
        elif case == "unknown-rule":
            metadata["decision_policy"]["rule"] = {"kind": "threshold"}
        elif case == "calibrator-not-an-object":
            metadata["decision_policy"]["calibrator"] = []
        elif case == "per-facet-rule-without-facet":
            metadata["decision_policy"]["rule"] = {"kind": "empirical", "shift": {"a": 0.1, "d": -0.2}}
            metadata["decision_policy"].pop("facet", None)
        elif case == "costs-leave-nothing-to-decide":
            metadata["decision_policy"]["costs"]["cost_tn"] = 1e9
        elif case == "newer-format-version":
            metadata["format_version"] = metadata["format_version"] + 1
        elif case == "no-format-version":
            del metadata["format_version"]
        elif case == "feature-count-mismatch":
            metadata["feature_names"] = metadata["feature_names"][:-1]
        meta.write_text(json.dumps(metadata))
    return str(target)


@pytest.mark.parametrize("case,reason", [
    ("missing", "does not exist"),
    ("a-file", "is not a directory"),
    ("empty", "metadata.json is missing: not a costaware model directory"),
    ("no-booster", "xgboost-model.ubj is missing: not a costaware model directory"),
    ("corrupt-booster", "cannot be loaded by XGBoost"),
    ("truncated-booster", "cannot be loaded by XGBoost"),
    ("corrupt-metadata", "metadata.json is not valid JSON"),
    ("metadata-not-an-object", "metadata.json does not hold a JSON object"),
    ("metadata-incomplete", "incomplete or invalid metadata (KeyError('decision_policy'))"),
    ("calibrator-not-finite", "calibrator: slope, intercept and covariance must be finite"),
    ("isotonic-knots-decreasing", "knot_log_odds as many non-decreasing finite numbers"),
    ("unknown-calibrator", "unknown calibrator 'spline'; known: platt, identity, isotonic"),
    ("unknown-rule", "unknown decision rule 'threshold'"),
    ("calibrator-not-an-object", "calibrator must be a JSON object"),
    ("per-facet-rule-without-facet", "decides each facet at its own shift but no facet is given"),
    ("costs-leave-nothing-to-decide", "cost_fp (1287.67) must exceed cost_tn (1e+09)"),
    ("newer-format-version", "this costaware"),
    ("no-format-version", "format_version None"),
    ("feature-count-mismatch", "takes 30 features but"),
    ("bad-port", "SAGEMAKER_BIND_TO_PORT='http' is not a whole number"),
])
def test_serve_fails_fast_with_one_line_reason(trained, tmp_path, case, reason):
    """Exits non-zero by itself with one line on stderr (the only line: no worker booted, as
    gunicorn would log it), and /ping never answers 200 meanwhile. (How soon it exits is not
    asserted: the 30 s wait only bounds a hang.)"""
    port = free_port()
    env = dict(os.environ, COSTAWARE_BIND_HOST="127.0.0.1", SAGEMAKER_BIND_TO_PORT=str(port))
    if case == "bad-port":
        env.update(COSTAWARE_MODEL_DIR=trained[0], SAGEMAKER_BIND_TO_PORT="http")
    else:
        env["COSTAWARE_MODEL_DIR"] = _bad_model_dir(case, trained[0], tmp_path)
    start = time.monotonic()
    proc = subprocess.Popen(["serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    pings = []
    while proc.poll() is None and time.monotonic() - start < 30:
        try:
            pings.append(requests.get(f"http://127.0.0.1:{port}/ping", timeout=0.5).status_code)
        except requests.RequestException:
            pings.append(None)
        time.sleep(0.02)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert 200 not in pings
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("serve: cannot start: ") and reason in lines[0], lines[0]


# ------------------------------------------------------------------------------------ units


# values at the formats' edges: zeros, the fixed/exponent bounds (1e-4, 1e15) and the values that
# round across them, a 15-digit carry (999999999999999.9), values whose shortest text needs 17
# digits, the smallest normal and denormal numbers, the largest float
EDGE_FLOATS = [0.0, -0.0, 1.0, 0.5, 2.0, 10.0, 1e-4, 9.999999999999999e-5, 9.9999999999999995e-5,
               1e-5, 1e15, 1e14, 1e16, 999999999999999.9, 99999999999999.99, 123456789012345.6,
               0.00012345678901234567, 0.99999999999999994, 1 - 2 ** -53, 1287.67, 1 / 3, 2 / 3,
               0.1, 0.30000000000000004, 1e-300, 2.2250738585072014e-308, 5e-324, 4.9e-322,
               1.7976931348623157e308, 12345678901234567890.0]


def test_float_format_is_the_same_alone_and_vectorised():
    """The vectorised formatter writes each value as the scalar one does: random values of every
    magnitude, the edges above and their negatives, random bit patterns (every finite double),
    numbers of 0 to 15 decimals, and the neighbours of each power of ten."""
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2 ** 63, 20000, dtype=np.int64).view(np.float64)
    powers = 10.0 ** rng.integers(-6, 17, 2000)
    values = np.concatenate([rng.random(2000), rng.random(500) * 1e6, -rng.random(100),
                             10 ** rng.uniform(-30, 20, 1000), EDGE_FLOATS,
                             -np.array(EDGE_FLOATS), bits[np.isfinite(bits)], -bits[:100],
                             [round(x, int(k)) for x, k in zip(rng.random(2000) * 1000,
                                                                rng.integers(0, 16, 2000))],
                             np.nextafter(powers, np.inf), np.nextafter(powers, 0)])
    matrix = codecs.format_float_column(values)
    vector = [bytes(row[row != 0]).decode() for row in matrix]
    assert vector == [codecs.format_float(v) for v in values.tolist()]
    assert all(float(text) == pytest.approx(v, rel=1e-14) for text, v in zip(vector, values))
    assert codecs.format_float(1287.67) == "1287.67" and codecs.format_float(2.0) == "2"
    assert [codecs.format_float(v) for v in (-0.0, 5e-324, 999999999999999.9, 1e-4)] == \
        ["0", "4.94065645841247e-324", "1e+15", "0.0001"]
    for bad in (np.nan, np.inf, -np.inf):  # no number of an answer is ever non-finite: refused
        with pytest.raises(ValueError, match="non-finite"):
            codecs.format_float_column(np.array([0.5, bad]))


def test_the_largest_floats_read_back_finite():
    """15 digits round the largest doubles up past the largest (1.79769313486232e+308 reads back
    as inf): those are written as the largest 15-digit number that does not, alone and in a
    column; every other double of the top exponents keeps its nearest 15 digits."""
    largest = np.finfo(np.float64).max
    below = [largest]
    for _ in range(40):
        below.append(np.nextafter(below[-1], 0.0))
    rng = np.random.default_rng(5)
    # random bit patterns of the top two exponents (0x7FE, 0x7FD): mantissa bits at random
    mantissas = rng.integers(0, 2 ** 52, 20000, dtype=np.int64)
    top = ((np.int64(0x7FE) << 52) | mantissas[:10000]).view(np.float64)
    next_top = ((np.int64(0x7FD) << 52) | mantissas[10000:]).view(np.float64)
    values = np.concatenate([below, [1.797693134862315e308, 1.79769313486231e308,
                                     1.7976931348623e308, 1e308], top, next_top])
    values = np.concatenate([values, -values])
    vector = [bytes(row[row != 0]).decode() for row in codecs.format_float_column(values)]
    assert vector == [codecs.format_float(v) for v in values.tolist()]
    assert codecs.format_float(largest) == "1.79769313486231e+308"
    assert codecs.format_float(-largest) == "-1.79769313486231e+308"
    for text, v in zip(vector, values.tolist()):
        back = float(text)
        assert math.isfinite(back) and back == pytest.approx(v, rel=1e-14), (v, text)
        if abs(v) < 1.79769313486231e308:  # below the clamp: the nearest 15 digits, as before
            assert text == "%.15g" % v


def test_accept_parsing():
    spec = codecs.output_spec("text/csv;fields=score,decision, application/json;q=0.1")
    assert (spec.kind, spec.fields) == ("csv", ("score", "decision"))
    assert codecs.output_spec(None).kind == "json"
    assert codecs.output_spec("text/*").kind == "csv"
    assert codecs.output_spec("application/xml;q=1, application/jsonl;q=0.2").kind == "jsonlines"


def test_override_parsing_keeps_unnamed_model_costs():
    base = CostMatrix(fp=1287.67, fn=252000.0, tp=35280.0, tn=0.0)
    assert policy_override.parse_costs(None, base) is None
    assert policy_override.parse_costs("trace=1,user=abc", base) is None
    assert policy_override.parse_costs(" cost_fn = 500000 ", base) == CostMatrix(
        fp=1287.67, fn=500000.0, tp=35280.0, tn=0.0)


def test_the_invocation_handler_answers_without_flask(model, rows):
    """``respond`` is the whole of ``/invocations`` as a plain function: headers and body in;
    status, headers and body out, refusals included; the body is read only once the headers
    pass."""
    from costaware.serving.invocation import Invocations, respond

    handler = Invocations(model)
    reply = respond(handler, csv_body(rows[:4]), "text/csv", "application/json",
                    "cost_fn=500000")
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    assert reply.headers[HEADER].startswith("cost_fp=") and "costs_source=request" in \
        reply.headers[HEADER]
    costs = policy_override.parse_costs("cost_fn=500000", model.policy.costs)
    policy = model.policy.with_costs(costs)
    assert_matches(json.loads(reply.body)["predictions"],
                   inference.predict(model, rows[:4], policy=policy, costs_source="request"))
    assert reply.rows == 4 and set(reply.timing) >= {"read_ms", "parse_ms", "predict_ms"}

    def unread() -> bytes:
        raise AssertionError("the body of a request refused by its headers was read")

    refused = respond(handler, unread, "text/csv", "text/csv", "cost_fx=1")
    assert refused.status == 400 and refused.headers == {"Content-Type": "application/json"}
    assert json.loads(refused.body) == {"error": refused.error, "status": 400}
    assert "unknown cost 'cost_fx'" in refused.error
    assert respond(handler, b"1,abc\n", "text/csv", None, None).status == 400


def test_a_bug_answers_500_json_and_the_next_request_is_fine(trained, model, rows, monkeypatch):
    from costaware.serving.app import create_app
    from costaware.serving.config import ServerSettings

    app = create_app(trained[0], ServerSettings.from_env({}))
    client = app.test_client()
    real_encode = codecs.encode

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(codecs, "encode", broken)
    response = client.post("/invocations", data=csv_body(rows[:2]), content_type="text/csv")
    assert response.status_code == 500
    assert response.get_json()["error"].startswith("internal error: RuntimeError")
    monkeypatch.setattr(codecs, "encode", real_encode)
    response = client.post("/invocations", data=csv_body(rows[:2]), content_type="text/csv")
    assert response.status_code == 200
    assert_matches(response.get_json()["predictions"], inference.predict(model, rows[:2]))


def test_every_negotiated_input_type_has_a_parser():
    """A media type in the negotiation table without a parser (or the reverse) is a mistake."""
    from costaware.serving import decoding, negotiation

    assert set(negotiation.INPUT_TYPES.values()) == set(decoding.PARSERS)
