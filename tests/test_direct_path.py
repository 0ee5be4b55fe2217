"""The direct way (serving/direct.py): a plainly formed invocation answered without gunicorn's
parser or Flask, and the requests that arrive together predicted in one call
(invocation.respond_together). Checked against the general way on the real server: the same
bytes, the same access lines, the same capture records."""

from __future__ import annotations

import json
import shutil
import socket
import time

import numpy as np
import pytest
import requests

from costaware.monitoring.capture import CaptureReader, Counts, jsonl_files
from costaware.monitoring.model_spec import ModelSpec
from costaware.serving import decoding, direct
from costaware.serving.invocation import Call, Invocations, respond, respond_together
from costaware.serving.request_error import RequestError

from support import Server, csv_body

PLAIN = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
         b"Content-Length: 3\r\n\r\n1,2")
# what gunicorn drops (a name with "_"): a request carrying it goes the general way, unchanged
GENERAL_ONLY = b"X-Costaware_Way: general\r\n"


@pytest.fixture(scope="module")
def model_dir(breast_cancer_tree):
    return str(breast_cancer_tree / "model")


@pytest.fixture(scope="module")
def rows(breast_cancer_tree):
    return np.loadtxt(breast_cancer_tree / "input" / "data" / "test" / "test.csv",
                      delimiter=",")[:, 1:]


def with_header(request: bytes, header: bytes) -> bytes:
    line_end = request.index(b"\r\n") + 2
    return request[:line_end] + header + request[line_end:]


def invocation(body: bytes, *headers: bytes, path: bytes = b"/invocations") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(headers)
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


# ------------------------------------------------------------------------------ which requests


def test_a_plain_request_is_read_as_gunicorn_reads_it():
    plain = direct.plain_request(with_header(
        PLAIN, b"X-Amzn-SageMaker-Custom-Attributes: \t reasons=2  \r\nACCEPT:text/csv\r\n"
               b"Connection: Close\r\nX-Empty:\r\n"))
    assert plain.path == "/invocations" and plain.body == b"1,2" and plain.close
    assert plain.headers.get("x-amzn-sagemaker-custom-attributes") == "reasons=2"
    assert plain.headers.get("Accept") == "text/csv"  # any case, as Werkzeug's headers
    assert plain.headers.get("X-Empty") == "" and plain.headers.get("Content-Encoding") is None
    assert not direct.plain_request(PLAIN).close


@pytest.mark.parametrize("change", [
    (b"POST /invocations HTTP/1.1", b"POST /invocations?x=1 HTTP/1.1"),  # a query
    (b"POST /invocations HTTP/1.1", b"POST /invo%63ations HTTP/1.1"),  # an escape
    (b"POST /invocations HTTP/1.1", b"POST /invocations HTTP/1.0"),
    (b"POST /invocations HTTP/1.1", b"PUT /invocations HTTP/1.1"),
    (b"POST /invocations HTTP/1.1", b"POST  /invocations HTTP/1.1"),
    (b"Host: x\r\n", b"Host: x\r\nX_Under: 1\r\n"),  # a name gunicorn drops
    (b"Host: x\r\n", b"Host: x\r\nHost: y\r\n"),  # twice
    (b"Host: x\r\n", b"Host: x\r\n folded\r\n"),  # obs-fold
    (b"Host: x\r\n", b"Host: \xe9\r\n"),  # not ASCII
    (b"Host: x\r\n", b"Host: a\x01b\r\n"),  # a control character
    (b"Host: x\r\n", b"Host: a\tb\r\n"),  # a tab inside a value
    (b"Host: x\r\n", b"Host x\r\n"),  # no colon
    (b"Host: x\r\n", b"Host : x\r\n"),  # a space before the colon
    (b"Host: x\r\n", b"Expect: 100-continue\r\n"),
    (b"Host: x\r\n", b"Transfer-Encoding: chunked\r\n"),
    (b"Host: x\r\n", b"Connection: upgrade\r\n"),
    (b"Content-Length: 3", b"Content-Length: +3"),
    (b"Content-Length: 3", b"Content-Length: 4"),  # not the body's length
    (b"Content-Length: 3\r\n", b""),  # no length
    (b"Host: x\r\n", b"Host: " + b"x" * 4000 + b"\r\n"),  # a long head
])
def test_anything_else_goes_the_general_way(change):
    assert direct.plain_request(PLAIN) is not None
    old, new = change
    assert direct.plain_request(PLAIN.replace(old, new, 1)) is None


# ------------------------------------------------------------------------------ the real server


def exchange(port: int, requests_: list[bytes], together: bool = False) -> list[bytes]:
    """Each request on its own kept-alive connection (one ``/ping`` on each first, so the server
    holds them all); ``together``: all sent before any answer is read. The raw responses, their
    ``Date`` line removed."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in requests_]
    try:
        for sock in socks:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b" 200 " in read_whole(sock)
        if together:
            for sock, request in zip(socks, requests_):
                sock.sendall(request)
            return [without_date(read_whole(sock)) for sock in socks]
        answers = []
        for sock, request in zip(socks, requests_):
            sock.sendall(request)
            answers.append(without_date(read_whole(sock)))
        return answers
    finally:
        for sock in socks:
            sock.close()


def read_whole(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed in the body: {head!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def read_pipelined(sock: socket.socket, n: int) -> list[bytes]:
    """``n`` responses read from one connection, the bytes of one recv split where a response
    ends (read_whole would take the next response's first bytes into the body)."""
    data, responses = b"", []
    while len(responses) < n:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(next(line.split(b":", 1)[1] for line in data[:head_end].split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            end = head_end + 4 + length
            if len(data) >= end:
                responses.append(data[:end])
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(responses)} responses"
        data += chunk
    assert not data, data[:200]
    return responses


def without_date(response: bytes) -> bytes:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"Date: ")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def access_lines(srv: Server, n: int) -> list[dict]:
    """The last ``n`` access lines of invocations, without their time, pid and latencies."""
    timing = {"time", "pid", "latency_ms", "read_ms", "parse_ms", "predict_ms", "encode_ms",
              "batch"}
    lines = [line for line in srv.access_log() if line["path"] != "/ping"][-n:]
    return [{k: v for k, v in line.items() if k not in timing} for line in lines]


def sample_requests(rows: np.ndarray) -> list[bytes]:
    """Answers and refusals of every kind /invocations gives."""
    row_json = json.dumps({"instances": rows[:3].tolist()}).encode()
    return [
        invocation(csv_body(rows[:1]), b"Content-Type: text/csv\r\n"),
        invocation(csv_body(rows[:5]), b"Content-Type: text/csv\r\nAccept: application/json\r\n"),
        invocation(row_json, b"Content-Type: application/json\r\n"),
        invocation(row_json, b"Content-Type: application/json\r\n"
                             b"Accept: application/jsonlines;verbose\r\n"),
        invocation(csv_body(rows[:2]), b"Content-Type: text/csv\r\n",
                   b"X-Amzn-SageMaker-Custom-Attributes: cost_fn=9,cost_fp=1\r\n"),
        invocation(csv_body(rows[:2]), b"Content-Type: text/csv\r\n",
                   b"X-Amzn-SageMaker-Custom-Attributes: reasons=2\r\nAccept: text/csv\r\n"),
        invocation(csv_body(rows[:1]), b"Content-Type: text/csv\r\n",
                   b"X-Amzn-SageMaker-Custom-Attributes: cost_fn=-1\r\n"),  # 400
        invocation(b"1,2\n", b"Content-Type: text/csv\r\n"),  # 400: too few values
        invocation(b"", b"Content-Type: text/csv\r\n"),  # 400: empty
        invocation(csv_body(rows[:1]), b"Content-Type: text/plain\r\n"),  # 415
        invocation(csv_body(rows[:1]), b"Content-Type: text/csv\r\nAccept: image/png\r\n"),  # 406
        invocation(csv_body(rows[:1]), b"Content-Type: text/csv\r\nContent-Encoding: gzip\r\n"),
        invocation(csv_body(rows[:1]), b"Content-Type:\r\n"),  # an empty media type
        invocation(csv_body(rows[:1])),  # none
        invocation(csv_body(rows[:1]), b"Content-Type: text/csv\r\n", path=b"/invocation"),  # 404
    ]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    srv = Server(model_dir, tmp_path_factory.mktemp("direct"), workers=1)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def test_both_ways_give_the_same_bytes_and_access_lines(server, rows):
    sent = sample_requests(rows)
    assert all(direct.plain_request(r) is not None for r in sent)
    assert all(direct.plain_request(with_header(r, GENERAL_ONLY)) is None for r in sent)
    directly = exchange(server.port, sent)
    direct_log = access_lines(server, len(sent))
    generally = exchange(server.port, [with_header(r, GENERAL_ONLY) for r in sent])
    general_log = access_lines(server, 2 * len(sent))[-len(sent):]
    statuses = sorted({int(answer.split()[1]) for answer in directly})
    assert statuses == [200, 400, 404, 406, 415]
    for mine, theirs, sent_request in zip(directly, generally, sent):
        assert mine == theirs, sent_request
    assert direct_log == general_log


def test_requests_arriving_together_are_answered_as_each_alone(server, rows):
    """Sent on 12 connections before any answer is read: the rows of several are predicted in
    one call (the access log's ``batch``), and each answer is the one it gets alone, a refusal
    among them included."""
    sent = [invocation(csv_body(rows[i:i + 1 + i % 3]), b"Content-Type: text/csv\r\n")
            for i in range(10)]
    sent += [invocation(b"1,2\n", b"Content-Type: text/csv\r\n"),
             invocation(csv_body(rows[:2]), b"Content-Type: text/csv\r\n",
                        b"X-Amzn-SageMaker-Custom-Attributes: cost_fn=9,cost_fp=1\r\n")]
    alone = exchange(server.port, sent)
    batches = []
    for _ in range(5):
        assert exchange(server.port, sent, together=True) == alone
        batches += [line.get("batch", 1) for line in server.access_log()[-len(sent):]]
    assert max(batches) > 1, batches


def test_big_bodies_arriving_in_pieces_and_pipelined_are_answered_as_each_alone(server, rows):
    """A body with more than 64 KiB still to come is kept as the pieces the socket gives and
    joined once complete (worker.py ``COLLECT_BYTES``): two big bodies and a small request sent
    back to back on one connection, in pieces of 1 to 90 kB that end anywhere (the last piece of
    a body carrying the next request's first bytes), get the answers each gets alone."""
    big = [invocation(csv_body(np.tile(rows, (k, 1))), b"Content-Type: text/csv\r\n",
                      b"Accept: text/csv\r\n") for k in (12, 7)]
    sent = [big[0], invocation(csv_body(rows[:2]), b"Content-Type: text/csv\r\n"), big[1]]
    assert min(len(big[0]), len(big[1])) > 3 * 64 * 1024
    alone = exchange(server.port, sent)
    stream = b"".join(sent)
    rnd = np.random.default_rng(7)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        at = 0
        while at < len(stream):
            step = int(rnd.integers(1_000, 90_000))
            sock.sendall(stream[at:at + step])
            at += step
            time.sleep(0.002)
        answers = [without_date(response) for response in read_pipelined(sock, len(sent))]
    assert answers == alone
    assert [int(a.split()[1]) for a in answers] == [200, 200, 200]


def test_respond_together_equals_respond(model_dir, rows):
    """In process: the margins of several requests predicted in one call give each request the
    bytes it gets alone (binary model: every field, overrides and reasons among them)."""
    invocations = Invocations.load(model_dir, nthread=1)

    calls = [Call(invocations, csv_body(rows[i:i + 1 + i % 4]), "text/csv",
                  "application/json;verbose", "reasons=1" if i % 3 == 0 else None)
             for i in range(9)]
    together = respond_together(calls)
    for call, reply in zip(calls, together):
        single = respond(invocations, call.body, call.content_type, call.accept, call.attributes)
        assert reply.status == single.status == 200
        assert reply.body == single.body and reply.headers == single.headers
    assert {reply.timing["batch"] for reply in together} == {9}


# ------------------------------------------------------------------------------ multi-model


def test_multi_model_requests_together_each_get_their_models_answer(model_dir, rows, tmp_path):
    """Three models (different costs) behind one endpoint, their invocations sent together with
    one to a model never loaded: each answer is its model's, and captured as answered, each
    record naming its model (the target model SageMaker sends, else the model's name)."""
    root = tmp_path / "models"
    for i, cost_fn in enumerate((50_000, 252_000, 900_000)):
        shutil.copytree(model_dir, root / f"m{i}")
        meta_path = root / f"m{i}" / "metadata.json"
        meta = json.loads(meta_path.read_text())
        meta["decision_policy"]["costs"]["cost_fn"] = float(cost_fn)
        meta_path.write_text(json.dumps(meta))
    capture = tmp_path / "capture"
    srv = Server("", tmp_path, workers=1, SAGEMAKER_MULTI_MODEL="true",
                 COSTAWARE_MODELS_ROOT=str(root), COSTAWARE_DATA_CAPTURE_DIR=str(capture))
    try:
        srv.wait_ready()
        for i in range(3):
            answer = requests.post(srv.url + "/models",
                                   json={"model_name": f"m{i}", "url": str(root / f"m{i}")})
            assert answer.status_code == 200, answer.text
        target = [f"eu/m{i % 3}.tar.gz" if i % 2 else None for i in range(9)]
        sent = [invocation(csv_body(rows[i:i + 2]), b"Content-Type: text/csv\r\n",
                           *([f"X-Amzn-SageMaker-Target-Model: {target[i]}\r\n".encode()]
                             if target[i] else []),
                           path=f"/models/m{i % 3}/invoke".encode()) for i in range(9)]
        sent.append(invocation(csv_body(rows[:1]), b"Content-Type: text/csv\r\n",
                               path=b"/models/never/invoke"))
        alone = exchange(srv.port, sent)
        assert [int(a.split()[1]) for a in alone] == [200] * 9 + [404]
        assert len({a.partition(b"\r\n\r\n")[2] for a in alone[:3]}) == 3  # costs differ
        batches = []
        for _ in range(3):
            assert exchange(srv.port, sent, together=True) == alone
            batches += [line.get("batch", 1) for line in srv.access_log()[-len(sent):]]
        assert max(batches) > 1, batches
        log = srv.access_log()
        assert {line["model"] for line in log if line["path"].endswith("/invoke")} == {
            "m0", "m1", "m2", "never"}
    finally:
        srv.stop()
    records = [json.loads(line) for path in capture.rglob("*.jsonl")
               for line in path.read_text().splitlines()]
    assert len(records) == 4 * 9  # every answered invocation, none of the 404s
    answered = {(r["captureData"]["endpointInput"]["data"],
                 r["captureData"]["endpointOutput"]["data"], r["eventMetadata"]["targetModel"])
                for r in records}
    expected = {(request.partition(b"\r\n\r\n")[2].decode(),
                 answer.partition(b"\r\n\r\n")[2].decode(), target[i] or f"m{i % 3}")
                for i, (request, answer) in enumerate(zip(sent[:9], alone[:9]))}
    assert answered == expected
    # the monitor reads these records as any others (the key it does not know left alone)
    spec = ModelSpec.of_metadata(json.loads((root / "m0" / "metadata.json").read_text()))
    counts = Counts()
    reader = CaptureReader(spec, {}, counts)
    assert sum(len(rows) for rows, _, _ in reader.batches(jsonl_files(str(capture)))) == \
        4 * 9 * 2
    assert counts.to_dict()["counts"] == {"capture records in the window": 4 * 9}


# ------------------------------------------------------------------------------ big CSV bodies


READ_ALIKE = [".5", "5.", "-0", "1E5", "-1e-400", "nan", "NaN", "NAN", "-nan", "+1.5", " 2", "3 ",
              "3.4028234e38"]  # odd spellings both parsers read, the rules allow
REFUSED = ["inf", "-inf", "1e400", "4e38", "1_0", "0x1p3", "1e", "--1"]  # refused one way or another


def number_text(rnd: np.random.Generator, value: float, mode: int) -> str:
    """``value`` written one of the ways users write numbers; ``mode`` 1: sometimes one of the
    odd spellings both parsers read (:data:`READ_ALIKE`), 2: also ones the rules refuse."""
    style = rnd.integers(12)
    if style == 0:
        return ""  # missing
    if style == 1 and mode:
        return rnd.choice(READ_ALIKE + (REFUSED if mode == 2 and rnd.random() < 0.02 else []))
    if style == 2:
        return f"{value:.3e}"
    if style == 3:
        return str(int(value * 1000))
    if style == 4:
        return f"{value:.17g}"
    return repr(float(value))


@pytest.mark.parametrize("block_bytes", [decoding.BULK_BLOCK_BYTES, 4096])
@pytest.mark.parametrize("seed", range(6))
def test_big_csv_bodies_read_as_the_exact_parser_reads_them(seed, block_bytes, monkeypatch):
    """Bodies over 16 KiB go to Arrow's reader (decoding._parse_csv_bulk); whatever it returns
    equals the exact line-by-line parser's reading, value for value, missing for missing; when it
    declines, the exact parser answers (and explains a refusal). Read in one block, and in blocks
    of 4 KiB (a 6 MiB body is read in several: each column comes in chunks)."""
    monkeypatch.setattr(decoding, "BULK_BLOCK_BYTES", block_bytes)
    rnd = np.random.default_rng(seed)
    layout = decoding.Layout(tuple(f"x{j}" for j in range(5)), 5, None, ())
    mode = seed % 3  # plain numbers; with odd spellings; with refused ones too
    lines = []
    for _ in range(2000):
        values = rnd.normal(0, 10.0 ** rnd.integers(-3, 6), 5).tolist()
        lines.append(",".join(number_text(rnd, v, mode) for v in values))
    body = ("\n".join(lines) + "\n").encode()
    assert len(body) > decoding.SMALL_BODY
    bulk = decoding._parse_csv_bulk(body, (5,))
    try:
        exact, _ = decoding._parse_csv_lines(body.rstrip(b"\r\n").decode().split("\n"), layout)
    except RequestError:
        exact = None
    if mode < 2:
        assert bulk is not None and exact is not None  # both read these
    if bulk is not None and exact is not None:
        assert np.array_equal(bulk, exact, equal_nan=True)
    # the answer the server gives: the exact parser's, or its refusal
    try:
        served = decoding.decode(body, "csv", layout)[0]
    except RequestError as exc:
        assert exact is None, exc.message
    else:
        assert exact is not None and np.array_equal(served, exact, equal_nan=True)


def test_an_unforeseen_failure_in_a_batch_fails_only_its_own_request(model_dir, rows):
    """If answering the requests together raises (a defect no check foresaw), each is answered
    again alone: the others get their answers, the one that raises a JSON 500."""
    from costaware.serving.app import DirectRoutes, _invocation
    from costaware.serving.config import ServerSettings

    invocations = Invocations.load(model_dir, nthread=1)
    real = _invocation(ServerSettings.from_env(), None)

    def invoke(calls):
        if any(call[2]() == b"boom" for call in calls):
            raise RuntimeError("a defect")
        return real(calls)

    routes = DirectRoutes(invoke, single=invocations)
    sent = [invocation(csv_body(rows[:1]), b"Content-Type: text/csv\r\n"),
            invocation(b"boom", b"Content-Type: text/csv\r\n"),
            invocation(csv_body(rows[1:3]), b"Content-Type: text/csv\r\n")]
    answers = routes.answers([direct.plain_request(r) for r in sent])
    assert [reply.status for reply, _ in answers] == [200, 500, 200]
    assert json.loads(answers[1][0].body)["error"].startswith("internal error: RuntimeError")
    alone = respond(invocations, csv_body(rows[1:3]), "text/csv", None, None)
    assert answers[2][0].body == alone.body


@pytest.mark.parametrize("labels", [["Adélie"], ["row"], ["Adélie", "Gentoo", 'a,"b"']])
@pytest.mark.parametrize("quoted", [False, True])
def test_a_column_of_one_word_is_written_as_a_column_of_many_is(labels, quoted):
    """A text column (costs, rule, a class label) whose rows all say the same word takes a
    shortcut past np.unique; each row's bytes are still the word as every other row writes it."""
    from costaware.serving import encoding

    values = np.array([labels[i % len(labels)] for i in range(500)], dtype=object)
    table = encoding._format_large(values, "decision", quoted)
    written = [bytes(row).lstrip(b"\0").decode("utf-8") for row in np.asarray(table)]
    assert written == [encoding._text(v, quoted) for v in values.tolist()]


def test_request_threads_answer_as_the_loop_does(server, model_dir, rows, tmp_path):
    """With COSTAWARE_WORKER_THREADS=2 each request is answered on a request thread (the direct
    way, alone): the same bytes as the loop's answers, sent one by one or together."""
    sent = sample_requests(rows)
    expected = exchange(server.port, sent)
    srv = Server(model_dir, tmp_path, workers=1, COSTAWARE_WORKER_THREADS="2")
    try:
        srv.wait_ready()
        assert exchange(srv.port, sent) == expected
        assert exchange(srv.port, sent, together=True) == expected
        assert {line.get("batch", 1) for line in srv.access_log()} == {1}
    finally:
        srv.stop()
