"""``application/x-recordio-protobuf``, SageMaker's built-in algorithms' binary format, in training
channels and at ``/invocations``: the SageMaker Python SDK's own bytes (tests/data/recordio) and
protobuf's own encoder (recordio_writer) against :mod:`costaware.data.recordio_protobuf`, through the
real ``train`` and the real ``serve``."""

from __future__ import annotations

import gzip
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from costaware.data import channel_files, recordio_protobuf
from costaware.data.channel_batches import read_in_batches
from costaware.errors import InputError
from costaware.model import artifact, inference
from costaware.sagemaker import training_job

import recordio_writer as rio
from support import Server, csv_body, failure_reason, labelled_csv, post_invocations, \
    rows_with_missing, run_train, train_channels, write_tree

FIXTURES = Path(__file__).parent / "data" / "recordio"
SDK = json.loads((FIXTURES / "fixtures.json").read_text())
SETTINGS = {"num_round": "12", "max_depth": "3"}
MATRIX = [[0, 1, 2], [1, 0, 1], [4, 1, 0]]
RECORDIO = "application/x-recordio-protobuf"


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(np.isnan(a), np.isnan(b)) and \
        np.array_equal(np.nan_to_num(a), np.nan_to_num(b))


def _record_reader(body: bytes, labels: str) -> "recordio_protobuf.SparseRows":
    """The record-by-record reader alone (parse tries the uniform one first)."""
    return recordio_protobuf._read_records(body, recordio_protobuf._frames(body), labels, None,
                                           "", None)


def _canonical_reader(body: bytes, labels: str) -> "recordio_protobuf.SparseRows | None":
    """The reader of the SDK's layout alone (parse tries it second)."""
    return recordio_protobuf._read_canonical(body, labels, None, "", None)


# ------------------------------------------------------------------------------------ the reader


@pytest.mark.parametrize("name", sorted(SDK["cases"]))
def test_the_sdks_own_bytes_read_as_the_rows_it_was_given(name):
    case = SDK["cases"][name]
    body = (FIXTURES / f"{name}.rio").read_bytes()
    want = np.array(case["rows"], dtype=float)
    for labels in ("optional", "required") if case["labels"] is not None else ("optional",):
        canonical = _canonical_reader(body, labels)
        assert canonical is not None  # (the SDK's layout)
        for rows in (recordio_protobuf.parse(body, labels), _record_reader(body, labels),
                     canonical):
            assert _same(rows.dense(want.shape[1]), want)
            if labels == "required":
                assert [float(t) for t in rows.labels] == [float(v) for v in case["labels"]]
            else:
                assert rows.labels is None


def test_protobufs_encoder_writes_the_sdks_bytes():
    """The tests' writer is the SDK's format: the same rows give the same bytes as the SDK's
    RecordSerializer and write_numpy_to_dense_tensor."""
    case = SDK["cases"]["record_serializer_request"]
    rows = np.array(case["rows"], dtype=float)
    assert rio.body(rows) == (FIXTURES / "record_serializer_request.rio").read_bytes()
    case = SDK["cases"]["dense_float64_float_labels"]
    assert rio.body(np.array(case["rows"]), case["labels"], kind="f8", label_kind="f8") == \
        (FIXTURES / "dense_float64_float_labels.rio").read_bytes()


def test_a_dense_body_of_like_records_is_read_as_one_block():
    x = np.random.default_rng(0).normal(size=(500, 7))
    x[3, 2] = np.nan
    body = rio.body(x, np.arange(500) % 2)
    rows = recordio_protobuf.parse(body, "required")
    assert isinstance(rows.lengths, int)  # the uniform reader's
    assert _same(rows.dense(7), x.astype(np.float32).astype(np.float64))
    assert rows.labels == [str(i % 2) for i in range(500)]


cells = st.one_of(st.floats(-1e6, 1e6, width=32), st.just(float("nan")))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), count=st.integers(1, 12), width=st.integers(1, 6),
       kind=st.sampled_from(["f4", "f8", "i4"]), sparse=st.booleans(), packed=st.booleans(),
       label_kind=st.sampled_from(["f4", "f8", "i4"]))
def test_any_body_protobuf_writes_is_read_alike_by_both_readers(data, count, width, kind, sparse,
                                                                packed, label_kind):
    values = cells if kind != "i4" else st.one_of(st.integers(-2**31, 2**31 - 1).map(float),
                                                   st.just(float("nan")))
    x = np.array(data.draw(st.lists(st.lists(values, min_size=width, max_size=width),
                                    min_size=count, max_size=count)))
    if not sparse:
        x = np.where(np.isnan(x), 0.0, x) if kind == "i4" else x  # (an int has no NaN)
    labels = data.draw(st.lists(st.integers(0, 200), min_size=count, max_size=count))
    body = rio.body(x, labels, kind=kind, sparse=sparse, packed=packed, label_kind=label_kind)
    want = x.astype(np.float32).astype(np.float64) if kind == "f4" else x
    canonical = _canonical_reader(body, "required")
    # the SDK's layout: packed float tensors, labels of one byte if int32
    assert (canonical is not None) == (packed and kind != "i4" and (
        label_kind != "i4" or max(labels) < 128)), canonical
    for rows in (recordio_protobuf.parse(body, "required"), _record_reader(body, "required"),
                 canonical or _record_reader(body, "required")):
        assert _same(rows.dense(width), want)
        assert rows.labels == [str(v) for v in labels]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), sparse=st.booleans(), kind=st.sampled_from(["f4", "f8"]),
       label_kind=st.sampled_from(["f4", "f8", "i4"]),
       labels=st.sampled_from(["required", "optional"]), width=st.sampled_from([None, 3, 4]))
def test_a_broken_body_gets_the_record_readers_answer(data, sparse, kind, label_kind, labels,
                                                      width):
    """A byte changed, or the body cut short: parse (whichever reader it takes) refuses it with
    the record reader's message, or reads the record reader's rows."""
    x = np.array([[1.5, np.nan, 3.0, 0.25], [2.0, 1.0, np.nan, 7.0], [0.5, 0.5, 0.5, 0.5]] * 2)
    body = bytearray(rio.body(x, [0, 1, 1, 0, 1, 0], kind=kind, sparse=sparse,
                              label_kind=label_kind))
    if data.draw(st.booleans()):
        where = data.draw(st.integers(0, len(body) - 1))
        body[where] = data.draw(st.integers(0, 255))
    else:
        body = body[:data.draw(st.integers(1, len(body)))]
    body = bytes(body)
    try:
        frames = recordio_protobuf._frames(body)
        expected = recordio_protobuf._read_records(body, frames, labels, width, "", None)
    except recordio_protobuf.RecordError as exc:
        expected = exc
    try:
        got = recordio_protobuf.parse(body, labels, width)
    except recordio_protobuf.RecordError as exc:
        assert str(exc) == str(expected)
        return
    assert not isinstance(expected, Exception), expected
    assert _same(got.dense(4), expected.dense(4)) and got.labels == expected.labels


def _refusal(body: bytes, labels: str = "required", width=None) -> str:
    with pytest.raises(recordio_protobuf.RecordError) as raised:
        recordio_protobuf.parse(body, labels, width)
    return str(raised.value)


def _payload(message) -> bytes:
    return rio.frame(message.SerializeToString())


def _split(values, label) -> bytes:
    """A record whose payload holds the magic word, framed as MXNet's writer frames it: cut at
    the word, which is dropped (flags 1, then 3), and put back by the reader."""
    magic = struct.pack("<I", rio.MAGIC)
    payload = rio.record(values, label)
    at = payload.index(magic)
    return rio.frame(payload[:at], flag=1) + rio.frame(payload[at + 4:], flag=3)


MAGIC_FLOAT = struct.unpack("<f", struct.pack("<I", rio.MAGIC))[0]


def test_a_split_record_is_joined_as_mxnets_reader_joins_it():
    whole = rio.frame(rio.record([0.5, 1.0, 2.0], 0))
    rows = recordio_protobuf.parse(whole + _split([MAGIC_FLOAT, 2.0, 3.0], 1) + whole, "required")
    assert rows.count == 3 and rows.labels == ["0", "1", "0"]
    assert rows.dense(3)[1].tolist() == [MAGIC_FLOAT, 2.0, 3.0]


@pytest.mark.parametrize("make, message", [
    (lambda: b"\x01\x02\x03\x04" + rio.body(np.ones((2, 2)), [0, 1]),
     "record 1 (byte 0): not a RecordIO record: its first word is 0x04030201"),
    (lambda: rio.body(np.ones((2, 2)), [0, 1])[:-6],
     "record 2 (byte 52): its header gives 44 bytes, but the body ends after 38"),
    (lambda: rio.body(np.ones((1, 2)), [0]) + b"\x0a\x23",
     "record 2 (byte 52): 2 byte(s) left, too few for a RecordIO header"),
    (lambda: rio.frame(rio.record([1.0], 0), flag=1),
     "record 1 (byte 0): a split record that never ends"),
    (lambda: rio.frame(rio.record([1.0], 0), flag=3),
     "record 1 (byte 0): the end of a split record where no split record began"),
    (lambda: rio.frame(b"\x0a\x05\x0a\x01"),
     "record 1 (byte 0): not a Record protobuf message: field 1 runs past the end"),
    (lambda: rio.frame(rio.record([1.0, 2.0], None)),
     "record 1 (byte 0): label[\"values\"] must hold one value, the row's label (it holds none)"),
    (lambda: rio.frame(_no_values()), "record 1 (byte 0): no 'values' feature tensor"),
    (lambda: rio.frame(_with_extra_tensor()),
     "record 1 (byte 0): feature tensor(s) 'other': costaware reads features from 'values' only"),
    (lambda: rio.frame(_bytes_value()),
     "record 1 (byte 0): not a Record protobuf message: a Bytes value"),
    (lambda: rio.frame(rio.record([1.0, math.inf], 0)),
     "record 1 (byte 0): column 1: inf is infinite or beyond float32's range"),
    (lambda: rio.frame(rio.record([1.0, 1e39], 0, kind="f8")),
     "record 1 (byte 0): column 1: 1e+39 is infinite or beyond float32's range"),
    (lambda: rio.frame(rio.record([1.0, 2.0], 0, shape=[3])),
     "record 1 (byte 0): a dense tensor of shape [3] holds 2 values"),
    (lambda: rio.body(np.ones((1, 2)), [0]) + rio.frame(_keyed([0, 0], [1.0, 2.0], [4])),
     "record 2 (byte 52): key 0 is given twice"),
    (lambda: rio.frame(_keyed([0, 5], [1.0, 2.0], [4])),
     "record 1 (byte 0): key 5 is beyond its shape [4] (keys are 0-based)"),
    (lambda: rio.frame(_keyed([0, 1], [1.0], [4])),
     "record 1 (byte 0): 2 keys for 1 values"),
    # the first fault in the body, a payload's before a later framing fault (records are read
    # as they are framed)
    (lambda: rio.body(np.ones((2, 2)), [0, 1]) + rio.frame(rio.record([1.0, math.inf], 0))
     + b"\x00" * 8, "record 3 (byte 104): column 1: inf is infinite or beyond float32's range"),
    # a shape whose product passes int64 is read as the Python int it is (it once wrapped to 4)
    (lambda: rio.frame(rio.record([1.0] * 4, 0, shape=[4, 2 ** 62 + 1])),
     f"record 1 (byte 0): a dense tensor of shape [4, {2 ** 62 + 1}] holds 4 values"),
])
def test_a_bad_body_is_refused_naming_the_record_and_its_byte(make, message):
    assert _refusal(make()).startswith(message), _refusal(make())


def test_request_widths_are_the_models():
    assert _refusal(rio.frame(rio.record([1.0, 2.0, 3.0])), "optional", 2).startswith(
        "record 1 (byte 0): a dense tensor of 3 values, the model takes at most 2")
    assert _refusal(rio.frame(_keyed([0, 4], [1.0, 2.0], [5])), "optional", 4).startswith(
        "record 1 (byte 0): shape [5]: 5 columns (the model takes 4)")
    assert _refusal(rio.frame(_keyed([0, 4], [1.0, 2.0], [])), "optional", 4).startswith(
        "record 1 (byte 0): key 4 is beyond the model's 4 columns (keys are 0-based)")


def _keyed(keys, values, shape) -> bytes:
    message = rio.Record()
    tensor = message.features["values"].float32_tensor
    tensor.keys.extend(keys)
    tensor.values.extend(values)
    tensor.shape.extend(shape)
    message.label["values"].float32_tensor.values.append(0)
    return message.SerializeToString()


def _no_values() -> bytes:
    message = rio.Record()
    message.label["values"].float32_tensor.values.append(0)
    return message.SerializeToString()


def _with_extra_tensor() -> bytes:
    message = rio.Record()
    message.features["values"].float32_tensor.values.append(1)
    message.features["other"].float32_tensor.values.append(2)
    message.label["values"].float32_tensor.values.append(0)
    return message.SerializeToString()


def _bytes_value() -> bytes:
    message = rio.Record()
    message.features["values"].bytes.value.append(b"1,2")
    message.label["values"].float32_tensor.values.append(0)
    return message.SerializeToString()


# ------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same rows trained as CSV and as RecordIO-protobuf: train dense (the SDK's
    write_numpy_to_dense_tensor), validation sparse and gzip (write_spmatrix_to_sparse_tensor's
    shape, a missing value left out); held-out rows."""
    x, y = rows_with_missing(700, 3, float32=True)
    train, valid = slice(0, 400), slice(400, 600)
    models = {}
    models["csv"] = train_channels(tmp_path_factory.mktemp("csv") / "ml",
                           {**SETTINGS, "calibration_data": "validation"},
                           {"train": {"t.csv": labelled_csv(y[train], x[train])},
                            "validation": {"v.csv": labelled_csv(y[valid], x[valid])}}, "text/csv")
    models["recordio"] = train_channels(
        tmp_path_factory.mktemp("recordio") / "ml", {**SETTINGS, "calibration_data": "validation"},
        {"train": {"a.rio": rio.body(x[0:150], y[0:150]), "b.rio": rio.body(x[150:400], y[150:400])},
         "validation": {"v.rio.gz": gzip.compress(rio.body(x[valid], y[valid], sparse=True))}},
        RECORDIO)
    return models, x[600:], (x, y)


def test_a_recordio_channel_trains_the_model_the_same_rows_in_csv_train(twins):
    models, rows, _ = twins
    csv_model, ours = (artifact.load(models[k], nthread=1) for k in ("csv", "recordio"))
    assert ours.feature_names == csv_model.feature_names == [f"f{i}" for i in range(6)]
    scores = inference.predict(ours, rows)["score"]
    assert np.array_equal(scores, inference.predict(csv_model, rows)["score"])
    assert np.ptp(scores) > 0.3  # a model that learned something, so equality says something


def test_external_memory_from_recordio_trains_the_model_csv_trains(tmp_path, twins, monkeypatch):
    """Training from external memory (XGBoost's pages on disk, the channels read 100 records at
    a time) on RecordIO channels gives the model the same rows give in CSV."""
    x, y = twins[2]
    monkeypatch.setenv("COSTAWARE_BATCH_ROWS", "100")
    settings = {**SETTINGS, "external_memory": "true", "calibration_data": "validation"}
    models = {}
    for kind, channels, content_type in (
            ("csv", {"train": {"t.csv": labelled_csv(y[:400], x[:400])},
                     "validation": {"v.csv": labelled_csv(y[400:600], x[400:600])}}, "text/csv"),
            ("recordio", {"train": {"t.rio": rio.body(x[:400], y[:400])},
                          "validation": {"v.rio": rio.body(x[400:600], y[400:600], sparse=True)}},
             RECORDIO)):
        pages = tmp_path / f"{kind}-pages"
        pages.mkdir()
        monkeypatch.setenv("COSTAWARE_PAGE_CACHE", str(pages))
        models[kind] = train_channels(tmp_path / kind, settings, channels, content_type)
    csv_model, ours = (artifact.load(models[k], nthread=1) for k in ("csv", "recordio"))
    assert json.loads((Path(models["recordio"]) / "metadata.json").read_text())[
        "hyperparameters"]["external_memory"] == "true"
    scores = inference.predict(ours, x[600:])["score"]
    assert np.array_equal(scores, inference.predict(csv_model, x[600:])["score"])
    assert np.ptp(scores) > 0.3


@pytest.mark.parametrize("batch_rows", [1, 7, 1000])
def test_a_recordio_channel_read_in_batches_is_the_channel_read_whole(tmp_path, twins, batch_rows):
    """The external-memory and batched readers' blocks of records: a record split in parts and a
    gzip file among them."""
    x, y = twins[2][0][:60], twins[2][1][:60]
    split = _split([MAGIC_FLOAT] + [2.0] * 5, 1)
    directory = tmp_path / "train"
    directory.mkdir()
    (directory / "a.rio").write_bytes(rio.body(x[:25], y[:25]) + split + rio.body(x[25:30], y[25:30]))
    (directory / "b.rio").write_bytes(gzip.compress(rio.body(x[30:], y[30:], sparse=True)))
    options = channel_files.DataOptions()
    whole = channel_files.load_channel(str(directory), RECORDIO, options)
    batched = read_in_batches(str(directory), RECORDIO, options, batch_rows)
    assert whole.rows == batched.rows == 61
    assert _same(whole.features, batched.features) and np.array_equal(whole.label, batched.label)
    assert whole.features[25, 0] == np.float32(MAGIC_FLOAT)


@pytest.mark.parametrize("batch_rows", [3, 1000])
def test_a_bad_record_fails_training_naming_file_record_and_byte(tmp_path, batch_rows):
    """Whole (load_channel) or in blocks of 3 records (external memory's reader), the fault names
    the record and byte in the file."""
    good = rio.body(np.ones((4, 3)), [0, 1, 0, 1])
    bad = rio.frame(rio.record([1.0, math.inf, 0.0], 1))
    directory = tmp_path / "train"
    directory.mkdir()
    (directory / "t.rio").write_bytes(good + bad)
    options = channel_files.DataOptions()
    with pytest.raises(InputError) as raised:
        read_in_batches(str(directory), RECORDIO, options, batch_rows)
    assert str(raised.value).endswith("/train/t.rio: record 5 (byte 224): column 1: inf is "
                                      "infinite or beyond float32's range; send a finite value, "
                                      "or NaN for a missing one"), str(raised.value)
    (directory / "t.rio").write_bytes(good + b"\x00" * 8)
    with pytest.raises(InputError, match=r"t.rio: record 5 \(byte 224\): not a RecordIO record"):
        read_in_batches(str(directory), RECORDIO, options, batch_rows)


@pytest.mark.parametrize("read", ["whole", "batches"])
def test_a_corrupt_gzip_file_or_no_feature_values_is_one_line_either_way(tmp_path, read):
    """A gzip file whose compressed data is corrupt (zlib's error, once a traceback), and a
    channel whose records hold no feature value (the SDK's all-zero sparse rows; load_channel
    once failed on an empty argmax), refused as a whole channel and in batches alike."""
    def load(directory):
        if read == "whole":
            return channel_files.load_channel(str(directory), RECORDIO, channel_files.DataOptions())
        return read_in_batches(str(directory), RECORDIO, channel_files.DataOptions(), 4)

    corrupt = bytearray(gzip.compress(rio.body(np.arange(200.0).reshape(50, 4), [0, 1] * 25)))
    corrupt[20] ^= 0xFF
    corrupt[21] ^= 0xFF
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "p.rio").write_bytes(bytes(corrupt))
    with pytest.raises(InputError, match=r"gz/p.rio: cannot be read as RecordIO-protobuf: "):
        load(tmp_path / "gz")
    empty = rio.Record()
    empty.features["values"].float32_tensor.SetInParent()
    empty.label["values"].float32_tensor.values.append(1)
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "p.rio").write_bytes(rio.frame(empty.SerializeToString()) * 3)
    with pytest.raises(InputError, match="no feature columns besides the label"):
        load(tmp_path / "none")


def test_the_failure_file_of_a_bad_recordio_channel(tmp_path):
    base = write_tree(tmp_path, SETTINGS, {"train": {"t.rio": rio.body(np.ones((3, 2)), [0, 1, 2])}},
                      {"train": RECORDIO})
    result = run_train(base)
    assert result.returncode != 0
    failure = failure_reason(base).strip()
    assert "train/t.rio: record 3, the label (label): 2; labels must be 0 or 1" in failure, failure
    assert "\n" not in failure
    base = write_tree(tmp_path / "again", {**SETTINGS, "label_column": "0"},
                      {"train": {"t.rio": rio.body(np.ones((3, 2)), [0, 1, 0])}},
                      {"train": RECORDIO})
    with pytest.raises(InputError, match="label_column='0' does not apply to RecordIO-protobuf, "
                                         r'whose label is label\["values"\] of each record'):
        training_job.run(str(base), log=lambda line: None)


def test_three_classes_and_per_row_costs_from_recordio(tmp_path):
    """K = 3 from a RecordIO channel, and per-row cost columns (keys 4 and 5 after four features)
    served from RecordIO requests: the combinations users send."""
    x, y = rows_with_missing(500, 7, d=4, classes=3, float32=True)
    three = train_channels(tmp_path / "three", {**SETTINGS, "cost_matrix": json.dumps(MATRIX)},
                   {"train": {"t.rio": rio.body(x, y)}}, RECORDIO)
    csv = train_channels(tmp_path / "three_csv", {**SETTINGS, "cost_matrix": json.dumps(MATRIX)},
                 {"train": {"t.csv": labelled_csv(y, x)}}, "text/csv")
    a, b = artifact.load(three, nthread=1), artifact.load(csv, nthread=1)
    assert np.array_equal(inference.predict(a, x[:50])["probabilities"],
                          inference.predict(b, x[:50])["probabilities"])


@pytest.fixture(scope="module")
def costed(tmp_path_factory):
    """Per-row costs in a RecordIO channel: features at keys 0-3, cost_fp at 4, cost_fn at 5
    (CSV columns 5 and 6, the label being column 0)."""
    x, y = rows_with_missing(600, 5, d=4, float32=True)
    rng = np.random.default_rng(5)
    costs = np.column_stack([rng.uniform(1, 3, len(y)).round(3), rng.uniform(2, 9, len(y)).round(3)])
    costs = costs.astype(np.float32).astype(np.float64)
    model_dir = train_channels(tmp_path_factory.mktemp("costed") / "ml",
                       {**SETTINGS, "cost_fp_column": "5", "cost_fn_column": "6"},
                       {"train": {"t.rio": rio.body(np.column_stack([x[:500], costs[:500]]),
                                                    y[:500])}}, RECORDIO)
    return model_dir, x[500:], costs[500:]


# ------------------------------------------------------------------------------------ requests


@pytest.fixture(scope="module")
def server(twins, tmp_path_factory):
    srv = Server(twins[0]["recordio"], tmp_path_factory.mktemp("logs"), workers=1)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def test_a_recordio_request_answers_as_the_csv_request(server, twins):
    rows = twins[1]
    big = np.tile(rows, (60, 1))  # 6,000 rows: the uniform reader, and Arrow's CSV reader
    for accept in ("application/json", "text/csv", "application/jsonlines"):
        for data in (rows, big):
            by_csv = post_invocations(server, csv_body(data), "text/csv", accept)
            for body in (rio.body(data), rio.body(data, [1] * len(data)),
                         rio.body(data, sparse=True), rio.body(data, kind="f8", packed=False)):
                by_recordio = post_invocations(server, body, RECORDIO, accept)
                assert by_csv.status_code == by_recordio.status_code == 200, by_recordio.text
                assert by_recordio.content == by_csv.content


def test_the_sdks_request_bytes_are_answered(server):
    """RecordSerializer's body (4 features) for this 6-feature model: a 400 naming the widths;
    and the SDK's sparse matrix (5 columns, keys beyond none) answered."""
    response = post_invocations(server, (FIXTURES / "record_serializer_request.rio").read_bytes(), RECORDIO)
    assert response.status_code == 400
    assert response.json() == {"error": "record 1 (byte 0): a dense tensor of 4 values, the model "
                                        "takes 6", "status": 400, "record": 1, "byte": 0}
    response = post_invocations(server, (FIXTURES / "sparse_float32_no_labels.rio").read_bytes(), RECORDIO,
                     "text/csv;fields=score")
    assert response.status_code == 200 and len(response.text.split("\n")) == 4, response.text


def test_recordio_with_reasons_and_overrides(server, twins):
    rows = twins[1][:20]
    for attributes in ("reasons=2", "cost_fn=7,cost_fp=2"):
        by_csv = post_invocations(server, csv_body(rows), "text/csv", "application/json", attributes)
        by_recordio = post_invocations(server, rio.body(rows), RECORDIO, "application/json", attributes)
        assert by_csv.status_code == by_recordio.status_code == 200, by_recordio.text
        assert by_recordio.content == by_csv.content


def test_a_bad_recordio_request_is_a_400_naming_the_record(server, twins):
    body = rio.body(twins[1][:3]) + rio.frame(rio.record([1.0] * 5 + [math.nan, 2.0]))
    response = post_invocations(server, body, RECORDIO)
    assert response.status_code == 400
    error = response.json()
    assert error["error"] == "record 4 (byte 144): a dense tensor of 7 values, the model takes 6"
    assert (error["record"], error["byte"]) == (4, 144)
    response = post_invocations(server, b"", RECORDIO)
    assert response.status_code == 400 and "the body is empty" in response.json()["error"]
    response = post_invocations(server, b"1,2,3,4,5,6\n", RECORDIO)
    assert response.status_code == 400
    assert "not a RecordIO record" in response.json()["error"]
    response = post_invocations(server, rio.body(twins[1][:2]), "application/x-protobuf")
    assert response.status_code == 415
    assert "application/x-recordio-protobuf" in response.json()["error"]


def test_per_row_costs_from_recordio_requests(costed, tmp_path_factory):
    model_dir, rows, costs = costed
    srv = Server(model_dir, tmp_path_factory.mktemp("logs"), workers=1)
    try:
        srv.wait_ready()
        accept = "text/csv;fields=decision,expected_cost_if_1,expected_cost_if_0,costs"
        with_costs = np.column_stack([rows, costs])
        by_csv = post_invocations(srv, csv_body(with_costs), "text/csv", accept)
        assert by_csv.status_code == 200, by_csv.text
        for body in (rio.body(with_costs), rio.body(with_costs, sparse=True)):
            by_recordio = post_invocations(srv, body, RECORDIO, accept)
            assert by_recordio.content == by_csv.content, by_recordio.text
        assert set(by_csv.text.split(",")[-1].split("\n")) >= {"row"}
        without = post_invocations(srv, rio.body(rows), RECORDIO, accept)
        assert without.content == post_invocations(srv, csv_body(rows), "text/csv", accept).content
        partial = with_costs[:2].copy()
        partial[1, 5] = np.nan
        response = post_invocations(srv, rio.body(partial, sparse=True), RECORDIO, accept)
        assert response.status_code == 400
        assert response.json()["error"] == ("record 2: the row carries some of its costs but not "
                                            "cost_fn (key 5); a row carries all its costs "
                                            "or none")
    finally:
        srv.stop()


def test_captured_recordio_requests_are_read_by_the_monitor_as_their_csv_twins(costed, tmp_path):
    """Data capture keeps a binary body as BASE64; the monitoring job decodes it as the server
    did: the rows, their own costs and the decisions equal those of the same requests in CSV."""
    from costaware.monitoring.capture import CaptureReader, Counts
    from costaware.monitoring.model_spec import ModelSpec
    from costaware.serving.invocation import Invocations, respond
    from support import capture_record, write_jsonl

    model_dir, rows, costs = costed
    model = artifact.load(model_dir, nthread=1)
    invocations = Invocations(model)
    bodies = {"csv": [], "recordio": []}
    for i in range(0, 40, 4):
        block = rows[i:i + 4] if i % 8 else np.column_stack([rows[i:i + 4], costs[i:i + 4]])
        bodies["csv"].append((csv_body(block), "text/csv"))
        bodies["recordio"].append((rio.body(block, sparse=bool(i % 3)), RECORDIO))
    read = {}
    for kind, requests_ in bodies.items():
        records = []
        for n, (body, content_type) in enumerate(requests_):
            reply = respond(invocations, body, content_type, "application/jsonlines", None)
            assert reply.status == 200, reply.body
            records.append(capture_record(body, content_type, reply.body,
                                          reply.headers["Content-Type"], f"id-{n}",
                                          f"2026-12-06T06:00:{n:02d}Z"))
        path = write_jsonl(tmp_path / kind / "a.jsonl", records)
        counts = Counts()
        parts = list(CaptureReader(ModelSpec.of_metadata(model.metadata), {}, counts)
                     .batches([str(path)]))
        assert counts.to_dict()["counts"]["capture records in the window"] == 10
        assert "request bodies that could not be decoded" not in counts.to_dict()["counts"]
        read[kind] = (np.concatenate([r for r, _, _ in parts]),
                      np.concatenate([h for _, h, _ in parts]),
                      np.concatenate([d.decision for _, _, d in parts]))
    assert _same(read["recordio"][0], read["csv"][0]) and len(read["csv"][0]) == 40
    assert np.array_equal(read["recordio"][1], read["csv"][1]) and read["csv"][1].sum() == 20
    assert np.array_equal(read["recordio"][2], read["csv"][2])
