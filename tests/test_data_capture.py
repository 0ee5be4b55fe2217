"""Data capture: the real ``serve`` (2 workers, 127.0.0.1) writes the requests it answered as
SageMaker data-capture files, which read back, through ``costaware.data_capture``, to exactly the
bodies the client sent and got; and the format helpers on their own."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import requests

from costaware import data_capture as dc

from support import Server, csv_body, free_port

ENDPOINT, VARIANT = "credit-endpoint", "Challenger-2"
FILE_NAME = re.compile(r"\d{2}-\d{2}-\d{3}-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\.jsonl")
RECORD_KEYS = {dc.CAPTURE_DATA, dc.EVENT_METADATA, dc.EVENT_VERSION}
PART_KEYS = {dc.OBSERVED_CONTENT_TYPE, dc.MODE, dc.DATA, dc.ENCODING}


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def rows(breast_cancer_tree):
    return np.loadtxt(breast_cancer_tree / "input" / "data" / "test" / "test.csv",
                      delimiter=",")[:, 1:]


@pytest.fixture(scope="module")
def model_dir(breast_cancer_tree):
    return str(breast_cancer_tree / "model")


@pytest.fixture(scope="module")
def capturing(model_dir, tmp_path_factory):
    """``serve`` with capture on (2 workers), its capture root as ``srv.root``."""
    root = tmp_path_factory.mktemp("capture")
    srv = Server(model_dir, tmp_path_factory.mktemp("logs"), workers=2,
                 COSTAWARE_DATA_CAPTURE_DIR=str(root), COSTAWARE_ENDPOINT_NAME=ENDPOINT,
                 COSTAWARE_VARIANT_NAME=VARIANT)
    srv.root = root
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def capture_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def read_records(root: Path, endpoint: str = ENDPOINT, variant: str = VARIANT) -> list[dict]:
    """Every record under ``root``, each checked against the layout and the record format."""
    out = []
    for path in capture_files(root):
        relative = path.relative_to(root).parts
        assert relative[:2] == (endpoint, variant), path
        assert len(relative) == 7 and FILE_NAME.fullmatch(relative[-1]), path
        text = path.read_bytes()
        assert not text or text.endswith(b"\n"), path
        for line in text.decode("utf-8").split("\n")[:-1]:
            record = json.loads(line)
            check_record(record)
            when = dc.parse_time(record[dc.EVENT_METADATA][dc.INFERENCE_TIME]).timestamp()
            # the file is in the directory of its records' UTC hour
            assert path.parent == Path(dc.hour_directory(str(root), endpoint, variant, when))
            out.append(record)
    return out


def check_record(record: dict) -> None:
    assert set(record) == RECORD_KEYS and record[dc.EVENT_VERSION] == "0"
    parts = record[dc.CAPTURE_DATA]
    assert set(parts) == {dc.ENDPOINT_INPUT, dc.ENDPOINT_OUTPUT}
    for key, mode in ((dc.ENDPOINT_INPUT, "INPUT"), (dc.ENDPOINT_OUTPUT, "OUTPUT")):
        part = parts[key]
        assert set(part) == PART_KEYS and part[dc.MODE] == mode
        expected, _ = dc.encoding_for(part[dc.OBSERVED_CONTENT_TYPE], dc.body_bytes(part))
        assert part[dc.ENCODING] == expected
    metadata = record[dc.EVENT_METADATA]
    assert set(metadata) - {dc.INFERENCE_ID} == {dc.EVENT_ID, dc.INFERENCE_TIME}
    assert uuid.UUID(metadata[dc.EVENT_ID]).version == 4
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", metadata[dc.INFERENCE_TIME])


def by_inference_id(records: list[dict]) -> dict[str, list[dict]]:
    found = {}
    for record in records:
        key = record[dc.EVENT_METADATA].get(dc.INFERENCE_ID)
        found.setdefault(key, []).append(record)
    return found


def bodies(features: np.ndarray) -> dict:
    listed = features.tolist()
    return {
        "csv": ("text/csv", csv_body(features)),
        "json": ("application/json", json.dumps({"instances": listed}).encode()),
        "jsonlines": ("application/jsonlines",
                      "\n".join(json.dumps(r) for r in listed).encode()),
    }


# ------------------------------------------------------------------------------------ the server


@pytest.mark.parametrize("with_id", [True, False], ids=["inference-id", "no-id"])
@pytest.mark.parametrize("kind", ["csv", "json", "jsonlines"])
@pytest.mark.parametrize("accept", ["application/json", "text/csv", "application/jsonlines"])
def test_an_answered_request_is_captured_with_both_bodies_exactly(capturing, rows, kind, with_id,
                                                                  accept):
    # rows no other case sends, so the record is found by its body when there is no id
    offset = 3 * (["csv", "json", "jsonlines"].index(kind) * 6 + with_id * 3
                  + ["application/json", "text/csv", "application/jsonlines"].index(accept))
    content_type, body = bodies(rows[offset:offset + 3])[kind]
    headers = {"Content-Type": content_type, "Accept": accept}
    inference_id = f"{kind}-{uuid.uuid4()}" if with_id else None
    if inference_id:
        headers[dc.INFERENCE_ID_HEADER] = inference_id
    before = int(time.time())
    response = requests.post(capturing.url + "/invocations", data=body, headers=headers)
    after = time.time()
    assert response.status_code == 200, response.text
    records = read_records(capturing.root)
    mine = [r for r in records
            if dc.body_bytes(r[dc.CAPTURE_DATA][dc.ENDPOINT_INPUT]) == body]
    assert len(mine) == 1
    record = mine[0]
    request_part = record[dc.CAPTURE_DATA][dc.ENDPOINT_INPUT]
    response_part = record[dc.CAPTURE_DATA][dc.ENDPOINT_OUTPUT]
    assert request_part[dc.OBSERVED_CONTENT_TYPE] == content_type
    assert request_part[dc.ENCODING] == ("CSV" if kind == "csv" else "JSON")
    assert dc.body_bytes(response_part) == response.content
    assert response_part[dc.OBSERVED_CONTENT_TYPE] == response.headers["Content-Type"]
    assert response_part[dc.ENCODING] == ("CSV" if accept == "text/csv" else "JSON")
    metadata = record[dc.EVENT_METADATA]
    assert metadata.get(dc.INFERENCE_ID) == inference_id
    assert (dc.INFERENCE_ID in metadata) == with_id
    assert before <= dc.parse_time(metadata[dc.INFERENCE_TIME]).timestamp() <= after


def test_refused_requests_are_not_captured(capturing, rows):
    """Only answered (2xx) requests are captured. The server takes no body that is not UTF-8
    nor a media type other than CSV, JSON and JSON Lines (415, 400), so no BASE64 record comes
    from it: those encodings are checked on the helpers alone below."""
    ids = {}
    refusals = {
        "bad-row": ("text/csv", b"1,abc\n", {}),
        "unknown-type": ("application/x-npy", b"\x93NUMPY\x01\x00", {}),
        "not-utf-8": ("text/csv", b"\xff\xfe1,2\n", {}),
        "bad-override": ("text/csv", csv_body(rows[:1]),
                         {"X-Amzn-SageMaker-Custom-Attributes": "cost_fx=1"}),
        "bad-id": ("text/csv", csv_body(rows[:1]), {}),
    }
    for name, (content_type, body, extra) in refusals.items():
        ids[name] = f"refused-{name}-{uuid.uuid4()}"
        headers = {"Content-Type": content_type, dc.INFERENCE_ID_HEADER: ids[name], **extra}
        if name == "bad-id":
            headers[dc.INFERENCE_ID_HEADER] = ids[name] = "x" * 65
        response = requests.post(capturing.url + "/invocations", data=body, headers=headers)
        assert 400 <= response.status_code < 500, (name, response.text)
        if name == "bad-id":  # what InvokeEndpoint refuses before the container sees it
            assert response.status_code == 400
            assert response.json()["error"] == (f"{dc.INFERENCE_ID_HEADER} has 65 characters; at "
                                                "most 64 are allowed")
    captured = by_inference_id(read_records(capturing.root))
    assert not set(ids.values()) & set(captured)


def test_two_workers_capture_every_answered_request_once_even_across_a_killed_worker(
        capturing, rows):
    """Concurrent clients on new connections (so both workers answer), then SIGKILL to one
    worker and more requests to it and its replacement: every answered request's record is
    there exactly once, whole, and the replacement wrote files of its own."""
    def load(prefix: str, n: int, threads: int = 6) -> list[str]:
        answered, lock = [], threading.Lock()

        def client(k: int):
            for i in range(k, n, threads):
                inference_id = f"{prefix}-{i}"
                response = requests.post(
                    capturing.url + "/invocations", data=csv_body(rows[i % 50:i % 50 + 1]),
                    headers={"Content-Type": "text/csv", "Connection": "close",
                             dc.INFERENCE_ID_HEADER: inference_id})
                assert response.status_code == 200, response.text
                with lock:
                    answered.append(inference_id)

        workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert len(answered) == n  # a client's failed assertion is in its thread's output
        return answered

    tag = uuid.uuid4().hex[:8]
    answered = load(f"{tag}-a", 120)
    files_before = set(capture_files(capturing.root))
    before = capturing.workers()
    assert len(before) == 2
    victim = max(before, key=lambda pid: len(open_capture_files(pid, capturing.root)))
    victims_file = open_capture_files(victim, capturing.root)
    assert len(victims_file) == 1
    os.kill(victim, signal.SIGKILL)
    # more requests until the replacement (loading the model meanwhile) wrote a file of its own
    for round_ in range(30):
        answered += load(f"{tag}-b{round_}", 60)
        replacements = capturing.workers() - before
        if replacements and open_capture_files(replacements.pop(), capturing.root):
            break
    captured = by_inference_id(read_records(capturing.root))
    mine = {key: found for key, found in captured.items() if key and key.startswith(tag)}
    assert sorted(mine) == sorted(answered)
    assert all(len(found) == 1 for found in mine.values())
    # each worker appends to a file of its own; the replacement's is new
    survivor, replacement = sorted(capturing.workers(), key=lambda pid: pid not in before)
    assert survivor in before and replacement not in before
    survivors_file = open_capture_files(survivor, capturing.root)
    replacements_file = open_capture_files(replacement, capturing.root)
    assert len(survivors_file) == len(replacements_file) == 1
    assert len(survivors_file | replacements_file | victims_file) == 3
    assert not replacements_file & files_before


def open_capture_files(pid: int, root: Path) -> set[Path]:
    """The files under ``root`` that process ``pid`` holds open."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = Path(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if root in target.parents:
            found.add(target)
    return found


def test_percentage_zero_captures_nothing(model_dir, rows, tmp_path):
    root = tmp_path / "capture"
    srv = Server(model_dir, tmp_path, workers=1, COSTAWARE_DATA_CAPTURE_DIR=str(root),
                 COSTAWARE_CAPTURE_PERCENTAGE="0")
    try:
        srv.wait_ready()
        for i in range(20):
            response = requests.post(srv.url + "/invocations", data=csv_body(rows[i:i + 1]),
                                     headers={"Content-Type": "text/csv"})
            assert response.status_code == 200
    finally:
        srv.stop()
    assert (root / "local-endpoint" / "AllTraffic").is_dir()  # checked writable at the start
    assert capture_files(root) == []


def test_a_full_disk_never_fails_a_request_and_each_reason_is_logged_once(model_dir, rows,
                                                                         tmp_path, mounts):
    """A capture root on a 64 KiB volume: requests go on being answered once it is full; each
    worker logs each reason once, and at its exit how many records it could not write; the
    files hold whole records only."""
    root = mounts.tmpfs(tmp_path / "small", "64k")
    srv = Server(model_dir, tmp_path, workers=2, COSTAWARE_DATA_CAPTURE_DIR=str(root))
    answered = 0
    try:
        srv.wait_ready()
        for i in range(200):
            response = requests.post(srv.url + "/invocations", data=csv_body(rows[:8]),
                                     headers={"Content-Type": "text/csv",
                                              "Connection": "close"})
            assert response.status_code == 200, response.text
            answered += 1
    finally:
        srv.stop()
    records = read_records(root, "local-endpoint", "AllTraffic")
    assert 0 < len(records) < answered
    logs = [json.loads(line) for line in srv.stderr().splitlines() if line.startswith("{")]
    capture_logs = [e for e in logs if e["message"].startswith("data capture:")]
    first_of_kind = [e for e in capture_logs if "could not be written to" in e["message"]]
    reasons = [(e["pid"], e["message"].split(": ", 3)[-1]) for e in first_of_kind]
    assert reasons and len(reasons) == len(set(reasons))
    assert {reason.split(";")[0] for _, reason in reasons} == {"No space left on device"}
    totals = [e for e in capture_logs if "records of this worker were not written" in e["message"]]
    lost = sum(int(e["message"].split()[2]) for e in totals)
    assert lost + len(records) == answered


@pytest.mark.parametrize("case,reason", [
    ("under-a-file", "Not a directory"),
    ("read-only", "Read-only file system"),
    ("bad-endpoint", "COSTAWARE_ENDPOINT_NAME='../etc' is not a SageMaker name"),
    ("bad-variant", "COSTAWARE_VARIANT_NAME='All_Traffic' is not a SageMaker name"),
    ("bad-percentage", "COSTAWARE_CAPTURE_PERCENTAGE=101 must be between 0 and 100"),
])
def test_a_capture_root_that_cannot_be_written_stops_serve_with_one_line(model_dir, tmp_path,
                                                                        case, reason, request):
    env = dict(os.environ, COSTAWARE_MODEL_DIR=model_dir, COSTAWARE_BIND_HOST="127.0.0.1",
               SAGEMAKER_BIND_TO_PORT=str(free_port()),
               COSTAWARE_DATA_CAPTURE_DIR=str(tmp_path / "capture"))
    if case == "under-a-file":
        (tmp_path / "a-file").write_text("")
        env["COSTAWARE_DATA_CAPTURE_DIR"] = str(tmp_path / "a-file" / "capture")
    elif case == "read-only":
        env["COSTAWARE_DATA_CAPTURE_DIR"] = str(
            request.getfixturevalue("mounts").read_only(tmp_path / "ro"))
    elif case == "bad-endpoint":
        env["COSTAWARE_ENDPOINT_NAME"] = "../etc"
    elif case == "bad-variant":
        env["COSTAWARE_VARIANT_NAME"] = "All_Traffic"
    else:
        env["COSTAWARE_CAPTURE_PERCENTAGE"] = "101"
    result = subprocess.run(["serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("serve: cannot start: ") and reason in lines[0], lines[0]
    if case in ("under-a-file", "read-only"):
        assert lines[0].startswith("serve: cannot start: COSTAWARE_DATA_CAPTURE_DIR=")


# ------------------------------------------------------------------------------------ the helpers


@pytest.mark.parametrize("content_type,body,encoding", [
    ("text/csv", b"1,2\n3,4\n", "CSV"),
    ("TEXT/CSV; charset=utf-8", "1,\u00e9\n".encode(), "CSV"),
    ("application/json", b'{"instances": [[1, 2]]}', "JSON"),
    ("application/jsonlines", b"[1, 2]\n[3, 4]", "JSON"),
    ("application/jsonl", b"[1]", "JSON"),
    ("text/csv", b"\xef\xbb\xbf1,2\n", "CSV"),  # a BOM is UTF-8 too
    ("text/csv", b"1,\xff\n", "BASE64"),  # not UTF-8
    ("application/x-npy", b"\x93NUMPY", "BASE64"),
    ("application/x-protobuf", b"1,2", "BASE64"),  # text, but of another type
    (None, b"", "BASE64"),
])
def test_a_body_reads_back_exactly_in_its_encoding(content_type, body, encoding):
    got, data = dc.encoding_for(content_type, body)
    assert got == encoding
    if encoding == "BASE64":
        assert data == base64.b64encode(body).decode("ascii")
    else:
        assert data == body.decode("utf-8")
    record = dc.record(content_type, body, "application/json", b'{"predictions":[]}', 0.0)
    back = json.loads(dc.to_line(record))
    assert dc.body_bytes(back[dc.CAPTURE_DATA][dc.ENDPOINT_INPUT]) == body
    assert back[dc.CAPTURE_DATA][dc.ENDPOINT_INPUT][dc.ENCODING] == encoding


def test_base64_round_trip_of_every_byte_value():
    rng = np.random.default_rng(5)
    for size in (0, 1, 2, 3, 255, 4096):
        body = bytes(range(256)) + rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        part = dc.record("application/octet-stream", body, None, b"", 0.0)[dc.CAPTURE_DATA][
            dc.ENDPOINT_INPUT]
        assert part[dc.ENCODING] == "BASE64" and dc.body_bytes(part) == body


@pytest.mark.parametrize("part,reason", [
    ("text", "a capture part must be a JSON object, not str"),
    ({"encoding": "CSV"}, "the part's 'data' must be a string, not missing"),
    ({"encoding": "CSV", "data": 12}, "the part's 'data' must be a string, not int"),
    ({"encoding": "BASE64", "data": "a!b="}, "the part's 'data' is not valid base64 (4 characters)"),
    ({"encoding": "BASE64", "data": "abc"}, "the part's 'data' is not valid base64 (3 characters)"),
    ({"encoding": "XML", "data": "<a/>"}, "the part's 'encoding' is 'XML'; expected one of CSV, "
                                          "JSON, BASE64"),
    ({"data": "1,2"}, "the part's 'encoding' is None; expected one of CSV, JSON, BASE64"),
    ({"encoding": "JSON", "data": "\ud800"}, "the part's 'data' holds text that is not valid "
                                             "Unicode"),
])
def test_a_bad_part_is_a_value_error_with_one_line(part, reason):
    with pytest.raises(ValueError) as caught:
        dc.body_bytes(part)
    assert str(caught.value) == reason


def test_the_hour_directory_at_an_hour_boundary():
    hour = datetime(2022, 2, 14, 17, tzinfo=timezone.utc).timestamp()
    last_of_16 = dc.hour_directory("/capture", "ep", "AllTraffic", hour - 0.001)
    first_of_17 = dc.hour_directory("/capture", "ep", "AllTraffic", hour)
    assert last_of_16 == "/capture/ep/AllTraffic/2022/02/14/16"
    assert first_of_17 == "/capture/ep/AllTraffic/2022/02/14/17"
    new_year = datetime(2023, 1, 1, tzinfo=timezone.utc).timestamp()
    assert dc.hour_directory("r", "e", "v", new_year - 1) == "r/e/v/2022/12/31/23"
    assert dc.format_time(hour - 0.001) == "2022-02-14T16:59:59Z"
    assert dc.parse_time("2022-02-14T17:25:49Z").timestamp() == hour + 25 * 60 + 49
    with pytest.raises(ValueError, match="inferenceTime '2022-02-14 17:25' is not of the form"):
        dc.parse_time("2022-02-14 17:25")
    name = dc.file_name(hour + 25 * 60 + 49.123)
    assert FILE_NAME.fullmatch(name) and name.startswith("25-49-123-")
    assert dc.file_name(hour) != dc.file_name(hour)


def test_a_record_has_the_inference_id_only_when_given():
    with_id = dc.record("text/csv", b"1\n", "text/csv", b"0", 1644859549.5, "order-17", "e-1")
    assert with_id[dc.EVENT_METADATA] == {"eventId": "e-1", "inferenceId": "order-17",
                                          "inferenceTime": "2022-02-14T17:25:49Z"}
    without = dc.record("text/csv", b"1\n", "text/csv", b"0", 1644859549.5)
    assert set(without[dc.EVENT_METADATA]) == {"eventId", "inferenceTime"}
    assert without[dc.EVENT_METADATA]["eventId"] != dc.record(
        "text/csv", b"1\n", "text/csv", b"0", 1644859549.5)[dc.EVENT_METADATA]["eventId"]
    line = dc.to_line(with_id)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b" " not in line


@pytest.mark.parametrize("value,ok", [("order-17", True), ("x" * 64, True), ("x" * 65, False),
                                      ("", False), (" lead", False), ("tab\tinside", False),
                                      ("caf\u00e9 7", True)])
def test_inference_ids_as_invoke_endpoint_takes_them(value, ok):
    assert (dc.check_inference_id(value) is None) == ok


@pytest.mark.parametrize("value,ok", [("AllTraffic", True), ("my-endpoint-2", True),
                                      ("a" * 63, True), ("a" * 64, False), ("-a", False),
                                      ("a-", False), ("a/b", False), ("..", False), ("", False)])
def test_endpoint_and_variant_names_as_sagemaker_takes_them(value, ok):
    assert (dc.check_name(value) is None) == ok


def test_a_worker_starts_a_new_file_in_the_next_hours_directory(tmp_path):
    from costaware.serving.capture import CaptureWriter

    writer = CaptureWriter(str(tmp_path), "ep", "AllTraffic", 100)
    hour = datetime(2022, 2, 14, 17, tzinfo=timezone.utc).timestamp()
    for when in (hour - 1.5, hour - 0.001, hour, hour + 3599.999):
        writer.write(when, "text/csv", b"1,2\n", "text/csv", b"0", None)
    writer.close()
    files = capture_files(tmp_path)
    assert [path.parent.name for path in files] == ["16", "17"]
    assert [len(path.read_bytes().splitlines()) for path in files] == [2, 2]
    assert len(read_records(tmp_path, "ep", "AllTraffic")) == 4  # each file in its records' hour
    assert writer.fd is None and writer.written == 4 and writer.failures == {}
