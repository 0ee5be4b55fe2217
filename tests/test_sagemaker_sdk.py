"""The SageMaker Python SDK itself against the real ``serve`` (issue #27): a MultiDataModel's
endpoint as the SDK's local mode readies it (its own code extracting the archives) and invokes it
(``Predictor.predict(..., target_model=...)`` through its local runtime client), with the SDK's
serializers (CSV, JSON, JSON Lines, libsvm, RecordIO-protobuf) and deserializers (bytes, JSON,
CSV, RecordIO-protobuf), every answer equal to the model served alone.

The SDK (sagemaker 2.x, whose local mode this is) pins protobuf below the 7.x this project's
environment resolves, so it runs in a virtual environment of its own, ``.venv-sdk`` beside the
repository's ``.venv``, made here on first use (``SDK_REQUIREMENTS``) and kept. Only the container
start (``docker compose``) of local mode is not run: the server is started here instead, on the
directory the SDK prepared, as local mode would mount it at /opt/ml/model."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import requests

from costaware.model import artifact, inference

import recordio_writer
from support import REPO, Server, csv_body, labelled_csv, libsvm_text, rows_with_missing, \
    train_channels

SDK_REQUIREMENTS = ["sagemaker==2.257.7", "scipy"]
SDK_VENV = REPO / ".venv-sdk"
CLIENT = Path(__file__).parent / "sdk_client.py"


@pytest.fixture(scope="module")
def sdk_python() -> str:
    """The SDK's interpreter, its environment made once (pip, from PyPI) and then kept."""
    python = SDK_VENV / "bin" / "python"
    ready = SDK_VENV / ".costaware-ready"
    wanted = " ".join(SDK_REQUIREMENTS)
    if not ready.exists() or ready.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(SDK_VENV)], check=True)
        result = subprocess.run([str(python), "-m", "pip", "install", "-q", *SDK_REQUIREMENTS],
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        ready.write_text(wanted)
    return str(python)


def _sdk(python: str, job: dict, tmp_path: Path):
    env = dict(os.environ, SAGEMAKER_SUPPRESS_V2_WARNING="1", AWS_DEFAULT_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               SDK_CONTAINER_ROOT=str(tmp_path), HOME=str(tmp_path),
               PATH=f"{_no_docker(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run([python, str(CLIENT)], input=json.dumps(job), capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _no_docker(tmp_path: Path) -> str:
    """A ``docker`` that answers as the client does on a machine without a Docker engine (the SDK
    asks ``docker info`` and ``docker context inspect`` where to reach the container: localhost)."""
    directory = tmp_path / "no-docker"
    directory.mkdir(exist_ok=True)
    stub = directory / "docker"
    stub.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    stub.chmod(0o755)
    return str(directory)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two models, as training jobs' model.tar.gz under a MultiDataModel's prefix (one in a
    "folder"), and held-out rows."""
    x, y = rows_with_missing(600, 11, d=5)
    prefix = tmp_path_factory.mktemp("prefix")
    dirs = {}
    for name, fn in (("cheap.tar.gz", "2"), ("eu/dear.tar.gz", "25")):
        base = tmp_path_factory.mktemp("job") / "ml"
        dirs[name] = train_channels(base, {"num_round": "10", "max_depth": "3", "cost_fn": fn},
                                    {"train": {"t.csv": labelled_csv(y[:500], x[:500])}},
                                    "text/csv")
        archive = prefix / name
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(Path(dirs[name]).rglob("*")):
                tar.add(path, arcname=str(path.relative_to(dirs[name])), recursive=False)
    return prefix, dirs, x[500:]


@pytest.fixture(scope="module")
def endpoint(sdk_python, models, tmp_path_factory):
    """The directory the SDK's local mode prepared from the prefix, served as a multi-model
    endpoint; and each model served alone, with the same settings."""
    prefix, dirs, _ = models
    work = tmp_path_factory.mktemp("sdk")
    mount = _sdk(sdk_python, {"prepare": prefix.as_uri()}, work)["directory"]
    assert (Path(mount) / "eu" / "dear.tar.gz").is_file()  # the archives kept at their keys
    servers = {"multi": Server(mount, tmp_path_factory.mktemp("logs"), workers=2,
                               SAGEMAKER_MULTI_MODEL="true",
                               COSTAWARE_MODELS_ROOT=str(tmp_path_factory.mktemp("models")))}
    servers.update({name: Server(directory, tmp_path_factory.mktemp("logs"), workers=1)
                    for name, directory in dirs.items()})
    try:
        for srv in servers.values():
            srv.wait_ready()
        yield servers, work
    finally:
        for srv in servers.values():
            srv.stop()


def _alone(srv, body, content_type: str, accept: str) -> bytes:
    response = requests.post(srv.url + "/invocations", data=body,
                             headers={"Content-Type": content_type, "Accept": accept}, timeout=60)
    assert response.status_code == 200, response.text
    return response.content


def test_the_sdks_predictor_invokes_each_target_model_as_served_alone(sdk_python, models,
                                                                     endpoint):
    _, _, rows = models
    servers, work = endpoint
    listed = [[None if np.isnan(v) else v for v in row] for row in rows.tolist()]
    dense = np.nan_to_num(rows)  # (RecordSerializer writes a dense matrix: no NaN here)
    requests_ = [  # serializer, its data, deserializer, and the same request sent alone
        ("csv", listed, "bytes", csv_body(rows), "text/csv", "*/*"),
        ("json", {"instances": listed}, "json", json.dumps({"instances": listed}),
         "application/json", "application/json"),
        ("jsonlines", listed, "bytes", "".join(json.dumps(r) + "\n" for r in listed)[:-1],
         "application/jsonlines", "*/*"),
        ("libsvm", libsvm_text(None, rows), "csv", libsvm_text(None, rows), "text/libsvm",
         "text/csv"),
        ("record", dense.tolist(), "bytes", recordio_writer.body(dense.astype(np.float32)),
         "application/x-recordio-protobuf", "*/*"),
    ]
    calls = [{"serializer": s, "data": d, "deserializer": de, "target_model": target}
             for target in ("cheap.tar.gz", "eu/dear.tar.gz") for s, d, de, *_ in requests_]
    got = _sdk(sdk_python, {"port": servers["multi"].port, "calls": calls}, work)
    decisions = set()
    for call, answer in zip(calls, got):
        assert "error" not in answer, (call["serializer"], answer)
        _, _, _, body, content_type, accept = next(r for r in requests_
                                                   if r[0] == call["serializer"])
        alone = _alone(servers[call["target_model"]], body, content_type, accept)
        if call["deserializer"] == "bytes":
            assert base64.b64decode(answer["bytes"]) == alone, call["serializer"]
        elif call["deserializer"] == "json":
            assert answer["value"] == json.loads(alone)
            decisions.add(tuple(p["decision"] for p in answer["value"]["predictions"]))
        else:  # the SDK's CSVDeserializer: a list of rows of strings
            assert answer["value"] == [line.split(",") for line in alone.decode().split("\n")]
    assert len(decisions) == 2  # the two models' costs decide differently


def test_the_sdks_record_deserializer_reads_the_selectable_answers(sdk_python, models,
                                                                   tmp_path_factory):
    """SAGEMAKER_INFERENCE_OUTPUT's answers in RecordIO-protobuf, read by the SDK's own
    RecordDeserializer: each row's decision and probabilities."""
    prefix, dirs, rows = models
    work = tmp_path_factory.mktemp("sdk-selectable")
    mount = _sdk(sdk_python, {"prepare": prefix.as_uri()}, work)["directory"]
    srv = Server(mount, tmp_path_factory.mktemp("logs"), workers=1, SAGEMAKER_MULTI_MODEL="true",
                 COSTAWARE_MODELS_ROOT=str(tmp_path_factory.mktemp("models")),
                 SAGEMAKER_INFERENCE_OUTPUT="predicted_label,probabilities")
    try:
        srv.wait_ready()
        got = _sdk(sdk_python, {"port": srv.port, "calls": [
            {"serializer": "csv", "data": [[None if np.isnan(v) else v for v in row]
                                           for row in rows.tolist()],
             "deserializer": "record", "target_model": "cheap.tar.gz"}]}, work)
    finally:
        srv.stop()
    result = inference.predict(artifact.load(dirs["cheap.tar.gz"], nthread=1), rows)
    records = got[0]["records"]
    assert [r["predicted_label"] for r in records] == [[float(d)] for d in result["decision"]]
    assert len(set(result["decision"].tolist())) == 2
    p = result["score"].astype(np.float32)
    assert np.array_equal(np.array([r["probabilities"] for r in records], np.float32),
                          np.column_stack([(1.0 - result["score"]).astype(np.float32), p]))
