"""What users of the SageMaker XGBoost container send and get: ``text/libsvm`` training channels
and requests (1-based indices, a left-out index missing), ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``
and the built-in container's response shape (``COSTAWARE_RESPONSE_SHAPE=builtin``), through the
real ``train`` and the real ``serve``."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from costaware.data import recordio_protobuf
from costaware.errors import InputError
from costaware.model import artifact, inference
from costaware.sagemaker import training_job
from costaware.serving.invocation import Invocations, respond

import recordio_writer
from hosts import hosts_of, run_hosts
from support import Server, csv_body, failure_reason, free_port, labelled_csv, libsvm_text, \
    post_invocations, rows_with_missing, run_train, train_channels, write_tree

SETTINGS = {"num_round": "12", "max_depth": "3"}
MATRIX = [[0, 1, 2], [1, 0, 1], [4, 1, 0]]


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same rows trained once as CSV and once as libsvm (a validation channel whose largest
    index, 5, is below train's, 6: its missing last column is padded), and held-out rows."""
    x, y = rows_with_missing(700, 3)
    x[400:600, 5] = np.nan  # validation never uses index 6
    train, valid = slice(0, 400), slice(400, 600)
    models = {}
    for kind, writer in (("csv", labelled_csv), ("libsvm", libsvm_text)):
        channels = {"train": {"t.txt": writer(y[train], x[train])},
                    "validation": {"v.txt": writer(y[valid], x[valid])}}
        content_type = "text/csv" if kind == "csv" else "text/libsvm"
        models[kind] = train_channels(tmp_path_factory.mktemp(kind) / "ml",
                              {**SETTINGS, "calibration_data": "validation"}, channels,
                              content_type)
    return models, x[600:]


@pytest.fixture(scope="module")
def costed(tmp_path_factory):
    """A libsvm channel with per-row costs: features at indices 1-4, cost_fp at 5, cost_fn at 6."""
    x, y = rows_with_missing(600, 5, d=4)
    rng = np.random.default_rng(5)
    costs = np.column_stack([rng.uniform(1, 3, len(y)).round(3), rng.uniform(2, 9, len(y)).round(3)])
    model_dir = train_channels(tmp_path_factory.mktemp("costed") / "ml",
                       {**SETTINGS, "cost_fp_column": "5", "cost_fn_column": "6"},
                       {"train": {"t.txt": libsvm_text(y[:500], x[:500], costs[:500])}},
                       "text/x-libsvm")
    return model_dir, x[500:], costs[500:]


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """Three classes trained from a libsvm channel."""
    x, y = rows_with_missing(600, 7, classes=3)
    model_dir = train_channels(tmp_path_factory.mktemp("three") / "ml",
                       {**SETTINGS, "cost_matrix": json.dumps(MATRIX)},
                       {"train": {"t.txt": libsvm_text(y[:500], x[:500])}}, "text/libsvm")
    return model_dir, x[500:]


def _serve(model_dir, tmp_path_factory, **env):
    return Server(model_dir, tmp_path_factory.mktemp("logs"), workers=1, **env)


@pytest.fixture(scope="module")
def server(twins, tmp_path_factory):
    srv = _serve(twins[0]["libsvm"], tmp_path_factory)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def builtin(twins, tmp_path_factory):
    srv = _serve(twins[0]["libsvm"], tmp_path_factory, COSTAWARE_RESPONSE_SHAPE="builtin")
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def _type(response) -> str:
    return response.headers["Content-Type"].split(";")[0]


# ------------------------------------------------------------------------------------ training


def test_a_libsvm_channel_trains_the_model_the_same_rows_in_csv_train(twins):
    models, rows = twins
    csv_model, libsvm_model = (artifact.load(models[k], nthread=1) for k in ("csv", "libsvm"))
    assert libsvm_model.feature_names == csv_model.feature_names == [f"f{i}" for i in range(6)]
    ours = inference.predict(libsvm_model, rows)["score"]
    theirs = inference.predict(csv_model, rows)["score"]
    assert np.array_equal(ours, theirs)
    assert np.ptp(ours) > 0.3  # a model that learned something, so equality says something


@pytest.mark.parametrize("text, reason", [
    ("1 1:0.5 2:1\n0 1:0.2 3 2:1\n", "t.txt: line 2, pair 2: '3' is not INDEX:VALUE"),
    ("1 1:0.5 2:1\n0 0:0.2 2:1\n", "t.txt: line 2, pair 1: '0:0.2': index 0; indices are 1-based"),
    ("1 1:0.5 2:1\n0 1:0.2 2:abc\n", "t.txt: line 2, pair 2: '2:abc': 'abc' is not a number"),
    ("1 1:0.5 2:1 1:3\n", "t.txt: line 1, pair 3: '1:3': index 1 is given twice in the line"),
    ("1:2 1:0.5 2:1\n", "t.txt: line 1: the first field '1:2' is not a label"),
    ("1 1:0.5\n\n0 1:1\n", "t.txt: line 2: empty line"),
    ("1 1:0.5\n3 1:1\n", "t.txt: line 2, the label field (label): 3; labels must be 0 or 1"),
    ("1 1:0.5\n0 1:1 99999999999:2\n", "t.txt: line 2: index 99999999999: the channel's rows held "
                                       "dense up to it would take 1490.1 GiB, more than the "),
    ("1 1:0.5\n0 1:1 99999999999999999999:2\n",  # past int64: was an OverflowError
     "t.txt: line 2, pair 2: '99999999999999999999:2': index '99999999999999999999' is beyond any "
     "column a matrix can hold (at most 18 digits)"),
])
def test_a_bad_libsvm_line_fails_training_naming_file_line_and_pair(tmp_path, text, reason):
    """The one line ``training_job.main`` writes to output/failure (the process test below shows
    it reaches the file), without a process start per case."""
    base = write_tree(tmp_path, SETTINGS, {"train": {"t.txt": text}}, {"train": "text/libsvm"})
    with pytest.raises(InputError) as raised:
        training_job.run(str(base), log=lambda line: None)
    line = training_job.one_line(raised.value)
    assert f"/train/{reason}" in line and "\n" not in line, line


def test_label_column_does_not_apply_to_libsvm(tmp_path):
    base = write_tree(tmp_path, {**SETTINGS, "label_column": "0"},
                      {"train": {"t.txt": "1 1:0.5\n0 1:1\n"}}, {"train": "text/libsvm"})
    with pytest.raises(InputError, match="label_column='0' does not apply to libsvm, whose label "
                                         "is the first field of each line"):
        training_job.run(str(base), log=lambda line: None)


def test_the_failure_file_of_a_bad_libsvm_channel(tmp_path):
    base = write_tree(tmp_path, SETTINGS, {"train": {"t.txt": "1 1:0.5\n0 2:x\n"}},
                      {"train": "text/libsvm"})
    result = run_train(base)
    assert result.returncode != 0
    failure = failure_reason(base).strip()
    assert failure.endswith("train/t.txt: line 2, pair 1: '2:x': 'x' is not a number (leave the "
                            "pair out for a missing value)") and "\n" not in failure, failure
    assert not (base / "model" / "metadata.json").exists()


def test_libsvm_files_read_as_csv_say_so(tmp_path):
    x, y = rows_with_missing(50, 1)
    base = write_tree(tmp_path, SETTINGS, {"train": {"t.txt": libsvm_text(y, x)}})
    assert run_train(base).returncode != 0
    assert "libsvm? set the channel's ContentType to text/libsvm" in failure_reason(base)


# ------------------------------------------------------------------------------------ requests


def test_a_libsvm_request_answers_as_the_csv_request(server, twins):
    rows = twins[1]
    for accept in ("application/json", "text/csv", "application/jsonlines"):
        by_csv = post_invocations(server, csv_body(rows), "text/csv", accept)
        for content_type in ("text/libsvm", "text/x-libsvm"):
            by_libsvm = post_invocations(server, libsvm_text(None, rows), content_type, accept)
            assert by_csv.status_code == by_libsvm.status_code == 200, by_libsvm.text
            assert by_libsvm.content == by_csv.content
    labelled = post_invocations(server, libsvm_text([1] * len(rows), rows), "text/libsvm", "text/csv")
    assert labelled.content == post_invocations(server, csv_body(rows), "text/csv", "text/csv").content


def test_libsvm_with_reasons(server, twins):
    rows = twins[1][:20]
    by_csv = post_invocations(server, csv_body(rows), "text/csv", "application/json", "reasons=2")
    by_libsvm = post_invocations(server, libsvm_text(None, rows), "text/libsvm", "application/json",
                      "reasons=2")
    assert by_csv.status_code == by_libsvm.status_code == 200, by_libsvm.text
    assert by_libsvm.content == by_csv.content
    assert all(len(p["reasons"]) == 2 for p in by_libsvm.json()["predictions"]
               if p["reasons"] is not None)


@pytest.mark.parametrize("body, message, pair", [
    (b"1:0.5 2:1\n3:1 4\n", "line 2, pair 2: '4' is not INDEX:VALUE", 2),
    (b"1:0.5 7:1\n", "line 1, pair 2: '7:1': index 7 is beyond the model's 6 columns", 2),
    (b"1:0.5\n2:1\n3:x\n", "line 3, pair 1: '3:x': 'x' is not a number", 1),
    (b"1:0.5 2:1 1:0.7\n", "line 1, pair 3: '1:0.7': index 1 is given twice in the line", 3),
    (b"0:0.5 2:1\n", "line 1, pair 1: '0:0.5': index 0; indices are 1-based", 1),
    (b"1:inf\n", "line 1, pair 1: '1:inf': inf is infinite", 1),
    (b"x 1:1\n", "line 1: 'x' is neither a label (a number) nor an INDEX:VALUE pair", None),
    (b"1:1\n\n2:1\n", "line 2: empty line", None),
])
def test_a_bad_libsvm_request_is_a_400_naming_line_and_pair(server, body, message, pair):
    response = post_invocations(server, body, "text/libsvm", "application/json")
    assert response.status_code == 400
    error = response.json()
    assert error["error"].startswith(message), error
    assert error.get("pair") == pair and error["line"] == int(message.split()[1].rstrip(":,"))


# ------------------------------------------------------------------------------------ default Accept


def test_without_accept_the_default_is_json_or_sagemaker_default_invocations_accept(
        server, twins, tmp_path_factory):
    rows = twins[1][:5]
    for accept in (None, "*/*"):
        response = post_invocations(server, csv_body(rows), "text/csv", accept)
        assert _type(response) == "application/json"
    srv = _serve(twins[0]["libsvm"], tmp_path_factory,
                 SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="application/jsonlines")
    try:
        srv.wait_ready()
        expected = post_invocations(srv, csv_body(rows), "text/csv", "application/jsonlines").content
        for accept in (None, "*/*", ""):
            response = post_invocations(srv, libsvm_text(None, rows), "text/libsvm", accept)
            assert _type(response) == "application/jsonlines"
            assert response.content == expected
        # a request that names its Accept gets it
        assert _type(post_invocations(srv, csv_body(rows), "text/csv", "text/csv")) == "text/csv"
    finally:
        srv.stop()


@pytest.mark.parametrize("env, reason", [
    ({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/x-recordio-protobuf"},
     "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT='application/x-recordio-protobuf' is not a media type "
     "this server answers"),
    ({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "*/*"}, "'*/*' is not a media type"),
    ({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv;fields=score"}, "has parameters"),
    ({"COSTAWARE_RESPONSE_SHAPE": "xgboost"},
     "COSTAWARE_RESPONSE_SHAPE='xgboost': choose costaware or builtin"),
    ({"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,predicted_score"},
     "SAGEMAKER_INFERENCE_OUTPUT='predicted_label,predicted_score': 'predicted_score' is not a key "
     "of a classifier's answers; choose from predicted_label, labels, probability, probabilities, "
     "raw_score, raw_scores (predicted_score is a regressor's; costaware's models classify)"),
    ({"SAGEMAKER_INFERENCE_OUTPUT": "label"}, "'label' is not a key of a classifier's answers"),
    ({"SAGEMAKER_INFERENCE_OUTPUT": ""}, "'' is not a key of a classifier's answers"),
    ({"SAGEMAKER_INFERENCE_OUTPUT": "probability,Probability"}, "names a key twice"),
    ({"SAGEMAKER_INFERENCE_OUTPUT": "probability", "COSTAWARE_RESPONSE_SHAPE": "costaware"},
     "SAGEMAKER_INFERENCE_OUTPUT asks for the built-in XGBoost container's answers, "
     "COSTAWARE_RESPONSE_SHAPE=costaware for costaware's: unset one"),
])
def test_a_bad_answer_setting_stops_serve_with_one_line(twins, env, reason):
    full = dict(os.environ, COSTAWARE_MODEL_DIR=twins[0]["libsvm"],
                COSTAWARE_BIND_HOST="127.0.0.1", SAGEMAKER_BIND_TO_PORT=str(free_port()), **env)
    result = subprocess.run(["serve"], env=full, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("serve: cannot start: ") and reason in lines[0], \
        result.stderr


# ------------------------------------------------------------------------------------ built-in shape


def _scores(model_dir, rows) -> list:
    result = inference.predict(artifact.load(model_dir, nthread=1), rows)
    return (result["score"] if "score" in result else result["probabilities"]).tolist()


def test_the_builtin_shape_for_each_accept(builtin, twins):
    rows = twins[1]
    scores = _scores(twins[0]["libsvm"], rows)
    expected = {
        "text/csv": "".join(f"{p!r}\n" for p in scores),
        "application/json": json.dumps({"predictions": [{"score": p} for p in scores]}),
        "application/jsonlines": "".join(json.dumps({"score": p}) + "\n" for p in scores),
    }
    for accept, body in expected.items():
        for content_type, request in (("text/csv", csv_body(rows)),
                                      ("text/libsvm", libsvm_text(None, rows))):
            response = post_invocations(builtin, request, content_type, accept)
            assert response.status_code == 200, response.text
            assert _type(response) == accept
            assert response.text == body
    # the built-in's default Accept is text/csv: a request without one, or with */*, gets CSV
    for accept in (None, "*/*"):
        assert post_invocations(builtin, csv_body(rows), "text/csv", accept).text == expected["text/csv"]
    # the JSON is what json.dumps gives, one {"score": p} per row
    assert post_invocations(builtin, csv_body(rows[:2]), "text/csv", "application/json").text.startswith(
        '{"predictions": [{"score": ')


def test_the_builtin_shape_refuses_fields_and_reasons(builtin, twins):
    rows = csv_body(twins[1][:3])
    response = post_invocations(builtin, rows, "text/csv", "text/csv;fields=decision")
    assert response.status_code == 406
    assert "COSTAWARE_RESPONSE_SHAPE=builtin" in response.json()["error"]
    response = post_invocations(builtin, rows, "text/csv", "text/csv", "reasons=2")
    assert response.status_code == 400
    assert response.json()["error"].startswith("reasons=K: the built-in XGBoost container's")


def test_the_builtin_shape_with_three_classes_from_libsvm(three, tmp_path_factory):
    model_dir, rows = three
    probabilities = _scores(model_dir, rows)
    assert len(probabilities[0]) == 3
    srv = _serve(model_dir, tmp_path_factory, COSTAWARE_RESPONSE_SHAPE="builtin")
    try:
        srv.wait_ready()
        by_libsvm = post_invocations(srv, libsvm_text(None, rows), "text/libsvm", "text/csv")
        assert by_libsvm.text == "".join(",".join(map(repr, p)) + "\n" for p in probabilities)
        assert by_libsvm.content == post_invocations(srv, csv_body(rows), "text/csv", "text/csv").content
        by_json = post_invocations(srv, libsvm_text(None, rows), "text/libsvm", "application/json")
        assert by_json.text == json.dumps({"predictions": [{"score": p} for p in probabilities]})
    finally:
        srv.stop()


def test_the_builtin_shape_with_per_row_costs(costed, tmp_path_factory):
    """Rows carrying their costs (CSV cells, or libsvm indices 5 and 6) get the same scores as
    without: the built-in shape answers probabilities, which costs do not move."""
    model_dir, rows, costs = costed
    model = artifact.load(model_dir, nthread=1)
    assert model.feature_names == ["f0", "f1", "f2", "f3"]
    scores = inference.predict(model, rows)["score"].tolist()
    expected = "".join(f"{p!r}\n" for p in scores)
    srv = _serve(model_dir, tmp_path_factory, COSTAWARE_RESPONSE_SHAPE="builtin")
    try:
        srv.wait_ready()
        for content_type, body in (("text/csv", csv_body(np.column_stack([rows, costs]))),
                                   ("text/libsvm", libsvm_text(None, rows, costs)),
                                   ("text/libsvm", libsvm_text(None, rows))):
            response = post_invocations(srv, body, content_type, "text/csv")
            assert response.status_code == 200, response.text
            assert response.text == expected
        # costaware's own shape reads the costs at indices 5 and 6 as the CSV cells
        invocations = Invocations(model)
        with_costs = [respond(invocations, body, content_type, "application/json", None).body
                      for content_type, body in (
                          ("text/csv", csv_body(np.column_stack([rows, costs]))),
                          ("text/libsvm", libsvm_text(None, rows, costs).encode()))]
        assert with_costs[0] == with_costs[1]
        assert json.loads(with_costs[1])["predictions"][0]["costs"] == "row"
        beyond = post_invocations(srv, "1:0.5 7:1\n", "text/libsvm", "text/csv")
        assert beyond.status_code == 400
        assert beyond.json()["error"] == ("line 1, pair 2: '7:1': index 7 is beyond the model's 6 "
                                          "columns (4 columns, then its costs: cost_fp, cost_fn)")
        partial = post_invocations(srv, "1:0.5 2:1 5:2.5\n", "text/libsvm", "text/csv")
        assert partial.status_code == 400
        assert partial.json()["error"] == ("line 1: the row carries some of its costs but not "
                                           "cost_fn (index 6); a row carries all its costs or none")
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------ selectable


KEYS = ("predicted_label", "labels", "probability", "probabilities", "raw_score", "raw_scores")


def _selected(model_dir, rows, keys) -> list[dict]:
    """The built-in container's selectable answers as its serve_utils computes them, from the
    in-process probabilities; predicted_label: costaware's decision."""
    result = inference.predict(artifact.load(model_dir, nthread=1), rows)
    out = []
    for i, decision in enumerate(result["decision"].tolist()):
        if "score" in result:
            p = float(result["score"][i])
            values = {"predicted_label": decision, "labels": [0, 1], "probability": p,
                      "probabilities": [1.0 - p, p], "raw_score": p, "raw_scores": [1.0 - p, p]}
        else:
            every = result["probabilities"][i].tolist()
            values = {"predicted_label": decision, "labels": [0, 1, 2], "probability": max(every),
                      "probabilities": every, "raw_score": max(every), "raw_scores": every}
        out.append({key: values[key] for key in KEYS if key in keys})  # (the built-in's order)
    return out


@pytest.mark.parametrize("model", ["twins", "three"])
def test_sagemaker_inference_output_answers_as_the_builtin_selectable_output(
        model, twins, three, tmp_path_factory):
    """SAGEMAKER_INFERENCE_OUTPUT alone (no COSTAWARE_RESPONSE_SHAPE) gives the built-in's
    selectable answers in each Accept, its default text/csv; RecordIO-protobuf records whose
    labels hold float32 tensors (read with protobuf's own decoder)."""
    model_dir, rows = (twins[0]["libsvm"], twins[1]) if model == "twins" else three
    keys = ("predicted_label", "probability", "probabilities", "labels", "raw_scores")
    expected = _selected(model_dir, rows, keys)
    assert list(expected[0]) == ["predicted_label", "labels", "probability", "probabilities",
                                 "raw_scores"]
    assert len({tuple(a["probabilities"]) for a in expected}) > 5  # rows that differ
    srv = _serve(model_dir, tmp_path_factory,
                 SAGEMAKER_INFERENCE_OUTPUT=" Predicted_Label, probability,probabilities,labels,"
                                            "RAW_SCORES")
    try:
        srv.wait_ready()
        bodies = {
            "application/json": json.dumps({"predictions": expected}),
            "application/jsonlines": "".join(json.dumps(a) + "\n" for a in expected),
            # (CSV alone follows the order the keys were asked in)
            "text/csv": "\n".join(",".join(f'"{a[k]}"' if isinstance(a[k], list) else str(a[k])
                                           for k in keys) for a in expected),
        }
        for accept, body in bodies.items():
            for content_type, request in (("text/csv", csv_body(rows)),
                                          ("text/libsvm", libsvm_text(None, rows))):
                response = post_invocations(srv, request, content_type, accept)
                assert response.status_code == 200, response.text
                assert _type(response) == accept and response.text == body
        assert post_invocations(srv, csv_body(rows), "text/csv").text == bodies["text/csv"]
        response = post_invocations(srv, csv_body(rows), "text/csv",
                                    "application/x-recordio-protobuf")
        assert response.status_code == 200 and _type(response) == "application/x-recordio-protobuf"
        records = [recordio_writer.Record.FromString(bytes(payload))
                   for _, payload in recordio_protobuf._frames(response.content)]
        assert len(records) == len(rows)
        for record, answer in zip(records, expected):
            assert set(record.label) == set(keys) and not record.features
            for key, value in answer.items():
                wanted = np.asarray(value if isinstance(value, list) else [value], np.float32)
                assert np.array_equal(np.asarray(record.label[key].float32_tensor.values,
                                                 np.float32), wanted), key
        # what the selectable answers cannot carry
        assert post_invocations(srv, csv_body(rows), "text/csv", "text/csv;fields=decision"
                                ).status_code == 406
        assert post_invocations(srv, csv_body(rows), "text/csv", "text/csv", "reasons=2"
                                ).status_code == 400
    finally:
        srv.stop()


def test_selectable_answers_to_a_recordio_accept_by_default(twins, tmp_path_factory):
    model_dir, rows = twins[0]["libsvm"], twins[1][:4]
    srv = _serve(model_dir, tmp_path_factory, SAGEMAKER_INFERENCE_OUTPUT="predicted_label",
                 SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="application/x-recordio-protobuf")
    try:
        srv.wait_ready()
        response = post_invocations(srv, csv_body(rows), "text/csv")
        assert _type(response) == "application/x-recordio-protobuf"
        labels = [recordio_writer.Record.FromString(bytes(payload)).label["predicted_label"]
                  .float32_tensor.values[0]
                  for _, payload in recordio_protobuf._frames(response.content)]
        assert labels == [float(a["predicted_label"])
                          for a in _selected(model_dir, rows, ("predicted_label",))]
    finally:
        srv.stop()


def test_sharded_libsvm_hosts_train_on_the_widest_hosts_columns(tmp_path):
    """Two hosts, each with its own train files (ShardedByS3Key): the first host's never use index
    6, the second's do; both train, on six features (as the built-in container's hosts agree on
    the largest index)."""
    x, y = rows_with_missing(600, 9)
    x[:300, 5] = np.nan
    hosts = hosts_of(2)
    trees = []
    for index, host in enumerate(hosts):
        part = slice(index * 300, (index + 1) * 300)
        base = write_tree(tmp_path / host, SETTINGS,
                          {"train": {f"part-{index}.txt": libsvm_text(y[part], x[part])}},
                          {"train": "text/libsvm"})
        config = base / "input" / "config"
        (config / "inputdataconfig.json").write_text(json.dumps(
            {"train": {"ContentType": "text/libsvm", "S3DistributionType": "ShardedByS3Key"}}))
        (config / "resourceconfig.json").write_text(json.dumps(
            {"current_host": host, "hosts": hosts, "network_interface_name": "lo"}))
        trees.append(base)
    results = run_hosts(trees, hosts)
    assert [code for code, _ in results] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    for _, log in results:
        assert "channel train: 300 rows, 6 features" in log
    model = artifact.load(str(trees[0] / "model"), nthread=1)  # the first host saves the model
    assert model.feature_names == [f"f{i}" for i in range(6)]
