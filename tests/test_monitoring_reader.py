"""The capture reader decodes records a chunk at a time (CSV request bodies joined into one body,
answers and costs as arrays once per chunk, a failing chunk halved down to the record at fault):
whatever the chunk, the rows, decisions, costs, labels and every count and first place are those
of reading each record alone."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from costaware.model.artifact import load
from costaware.monitoring.capture import CaptureReader, Counts, read_ground_truth
from costaware.monitoring.model_spec import ModelSpec
from costaware.serving.invocation import Invocations, respond
from support import run_train, synthetic, write_tree

FEATURES = ["income", "debt", "age", "tenure"]
ACCEPTS = ("application/jsonlines", "application/json", "text/csv")


@pytest.fixture(scope="module")
def costed(tmp_path_factory):
    """A model with a cost column (fn: ``loss``), the server's code answering for it, its spec."""
    x, y = synthetic(400, d=4, seed=3)
    loss = np.random.default_rng(3).uniform(500, 20000, len(y)).round(2)
    lines = ["default," + ",".join(FEATURES) + ",loss"] + [
        f"{label}," + ",".join(f"{v:.6g}" for v in row) + f",{cost}"
        for label, row, cost in zip(y, x, loss)]
    base = tmp_path_factory.mktemp("reader") / "ml"
    write_tree(base, {"num_round": "5", "max_depth": "2", "label_column": "default",
                      "cost_fn_column": "loss", "cost_fn": "8000", "cost_fp": "700",
                      "report": "false"},
               {"train": {"t.csv": "\n".join(lines) + "\n"}})
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    model = load(str(base / "model"), nthread=1)
    return Invocations(model), ModelSpec.of_metadata(model.metadata), x, y, loss


def _part(body: bytes, content_type: str, mode: str, encoding: str | None = None) -> dict:
    if encoding is None:
        encoding = "CSV" if content_type.startswith("text/csv") else "BASE64"
    data = base64.b64encode(body).decode() if encoding == "BASE64" else body.decode("utf-8")
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def _record(request: bytes, request_type: str, answer: bytes, answer_type: str, i: int) -> str:
    return json.dumps({"captureData": {"endpointInput": _part(request, request_type, "INPUT"),
                                       "endpointOutput": _part(answer, answer_type, "OUTPUT")},
                       "eventMetadata": {"eventId": f"event-{i}",
                                         "inferenceTime": "2026-12-01T10:00:00Z"},
                       "eventVersion": "0"})


def _capture(costed, tmp_path):
    """A capture file of good records (answered by the server's code: one-row and three-row CSV,
    with and without own costs, JSON and JSON Lines requests, a byte-order mark, CRLF) with bad
    ones among them; and ground truth for most (one id twice, one with a label count off).
    Returns the capture and ground-truth directories and the bad lines' numbers by reason."""
    invocations, spec, x, y, loss = costed
    lines, truth, bad = [], [], {}

    def good(body: bytes, content_type: str, accept: str, labels=None) -> tuple[bytes, str]:
        reply = respond(invocations, body, content_type, accept, None)
        assert reply.status == 200, reply.body
        lines.append(_record(body, content_type, reply.body, reply.headers["Content-Type"],
                             len(lines)))
        if labels is not None:
            truth.append({"groundTruthData": {"data": ",".join(map(str, labels)), "encoding": "CSV"},
                          "eventMetadata": {"eventId": f"event-{len(lines) - 1}"},
                          "eventVersion": "0"})
        return reply.body, reply.headers["Content-Type"]

    def row(i: int, costs: bool = False) -> str:
        return ",".join(f"{v:.6g}" for v in x[i]) + (f",{loss[i]}" if costs else "")

    def broken(reason: str, line: str) -> None:
        lines.append(line)
        bad.setdefault(reason, []).append(len(lines))

    answer, answer_type = b"", ""
    for i in range(60):
        accept = ACCEPTS[i % 3]
        answer, answer_type = good(row(i, costs=i % 4 == 0).encode(), "text/csv", accept,
                                   [y[i]] if i % 5 else None)
        if i == 7:
            broken("capture lines that are not a capture record", '{"captureData": ')
        if i == 11:
            broken("request bodies that could not be decoded",
                   _record(row(i).replace(",", ",abc,", 1).encode(), "text/csv", answer,
                           answer_type, len(lines)))
        if i == 12:
            broken("request bodies that could not be decoded",
                   _record(b" \n", "text/csv", answer, answer_type, len(lines)))
        if i == 20:
            good(("\n".join(row(j) for j in range(20, 23)) + "\r\n").encode(), "text/csv",
                 "application/jsonlines", list(y[20:23]))
            good(b"\xef\xbb\xbf" + row(23).encode() + b"\r\n", "text/csv", "text/csv", [y[23]])
        if i == 25:
            broken("request bodies that could not be decoded",
                   _record(b'"1",2,3,4', "text/csv", answer, answer_type, len(lines)))
            broken("response bodies that could not be read",
                   _record(row(i).encode(), "text/csv",
                           b'{"predictions": [{"decision": 1, "score": 1.5}]}',
                           "application/json", len(lines)))
        if i == 30:
            broken("records with invalid own costs",
                   _record(f"{row(i)},-5".encode(), "text/csv", answer, answer_type, len(lines)))
            broken("response bodies that could not be read",
                   _record(("\n".join(row(j) for j in range(2))).encode(), "text/csv", answer,
                           answer_type, len(lines)))
        if i == 33:
            good(json.dumps({"instances": [x[i].tolist(), x[i + 1].tolist()]}).encode(),
                 "application/json", "application/json", [y[i], y[i + 1], 1])
            good(f"[{row(i)}]\n".encode(), "application/jsonlines", "application/jsonlines",
                 [y[i]])
            broken("request bodies that could not be decoded",
                   _record(row(i).encode(), "text/plain", answer, answer_type, len(lines)))
        if i == 40:
            lines.append(_record(row(i).encode(), "text/csv", answer, answer_type, 3))
            bad["capture records repeating a labelled id (label used for the first)"] = [
                len(lines)]
        if i == 45:
            record = json.loads(_record(row(i).encode(), "text/csv", answer, answer_type,
                                        len(lines)))
            del record["captureData"]["endpointOutput"]
            broken("capture records without both input and output (capture both)",
                   json.dumps(record))
    captured = tmp_path / "capture" / "ep" / "AllTraffic" / "2026" / "12" / "01" / "10"
    captured.mkdir(parents=True)
    (captured / "a.jsonl").write_text("\n".join(lines) + "\n")
    labelled = tmp_path / "truth" / "2026" / "12" / "01" / "10"
    labelled.mkdir(parents=True)
    truth_lines = [json.dumps(t) for t in truth]
    truth_lines[5:5] = ["not json", json.dumps({**truth[0], "groundTruthData": {"data": "7", "encoding": "CSV"}}),
                        json.dumps({**truth[1], "groundTruthData": {"data": "0", "encoding": "CSV"}})]
    (labelled / "t.jsonl").write_text("\n".join(truth_lines) + "\n")
    return str(captured / "a.jsonl"), str(tmp_path / "truth"), bad, len(lines)


def _read(spec: ModelSpec, path: str, truth: str, batch_records: int):
    counts = Counts()
    labels = read_ground_truth(truth, spec, counts)
    reader = CaptureReader(spec, labels, counts, batch_records=batch_records)
    parts = list(reader.batches([path]))
    rows = np.concatenate([r for r, _, _ in parts])
    own = np.concatenate([np.zeros(len(r), bool) if h is None else h for r, h, _ in parts])
    decided = {name: np.concatenate([getattr(d, name) for _, _, d in parts])
               for name in ("probabilities", "decision", "costs", "label")}
    return rows, own, decided, counts.to_dict(), [len(d) for _, _, d in parts]


def test_chunks_read_as_every_record_alone(costed, tmp_path):
    spec = costed[1]
    path, truth, bad, written = _capture(costed, tmp_path)
    rows, own, decided, counts, _ = _read(spec, path, truth, batch_records=1)
    # the good records' rows: 60 of one row (every fourth with its own costs), a three-row CSV
    # body, the body with a byte-order mark, two JSON rows, a JSON Lines row, the repeated id's
    assert len(rows) == 60 + 3 + 1 + 2 + 1 + 1 and own.sum() == 15
    assert counts["counts"]["capture records in the window"] == written - 1  # one is not JSON
    for reason, numbers in bad.items():
        assert counts["counts"][reason] == len(numbers), reason
        assert counts["first_seen"][reason].startswith(f"{path}:{numbers[0]}"), reason
    assert "column 2" in counts["first_seen"]["request bodies that could not be decoded"]
    assert "-5" in counts["first_seen"]["records with invalid own costs"]
    assert counts["counts"]["ground truth with a different number of labels than rows"] == 1
    assert counts["first_seen"]["ground truth lines that are not a ground-truth record"].endswith(
        "t.jsonl:6")
    assert counts["first_seen"]["ground truth labels that are not a class of the model"].endswith(
        "t.jsonl:7")
    assert counts["first_seen"]["ground truth records repeating an id (later ones not used)"
                                ].endswith("t.jsonl:8")
    for batch_records in (2048, 7, 2):
        got_rows, got_own, got, got_counts, sizes = _read(spec, path, truth, batch_records)
        np.testing.assert_array_equal(got_rows, rows)
        np.testing.assert_array_equal(got_own, own)
        for name, values in decided.items():
            np.testing.assert_array_equal(got[name], values, err_msg=name)
        assert got_counts == counts
        assert all(n >= batch_records for n in sizes[:-1])  # batches of decided records, as before


def test_a_column_far_from_zero_keeps_its_standard_deviation():
    """The window's sums are taken about the baseline's mean: a column near 1e8 with sd 1 (a
    plain sum of squares cancels to 0 or garbage there)."""
    from costaware.monitoring.columns import ColumnWindow, column_statistics

    rng = np.random.default_rng(0)
    values = 1e8 + rng.normal(size=5000)
    window = ColumnWindow(column_statistics("x", values))
    for part in np.array_split(values, 7):
        window.add(part)
    stats = window.statistics()["numerical_statistics"]
    assert stats["std_dev"] == pytest.approx(values.std(), rel=1e-6)
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert stats["sum"] == pytest.approx(values.sum(), rel=1e-12)
