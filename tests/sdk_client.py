"""The SageMaker Python SDK's side of tests/test_sagemaker_sdk.py, run by the SDK's own virtual
environment (sagemaker 2.x cannot share this project's: it pins protobuf below 7). Reads a JSON job
on stdin, prints a JSON answer on stdout:

    {"prepare": "file:///dir"}    the SDK's local mode readies a multi-model endpoint's model
                                  directory (image.py, _prepare_serving_volumes: every archive
                                  under the prefix extracted in place) and prints the directory
    {"port": P, "calls": [...]}   each call a Predictor.predict(data, target_model=...) through
                                  the SDK's local-mode runtime client to 127.0.0.1:P, with the
                                  call's serializer and deserializer; prints each answer

Nothing here is costaware's: the serializers, the runtime client's request and the deserializers
are the SDK's."""

from __future__ import annotations

import base64
import json
import os
import sys
import types

import numpy as np
import scipy.sparse
from sagemaker.amazon.common import RecordDeserializer, RecordSerializer
from sagemaker.deserializers import BytesDeserializer, CSVDeserializer, JSONDeserializer
from sagemaker.local import LocalSession
from sagemaker.local.image import _SageMakerContainer
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer, JSONLinesSerializer, JSONSerializer, \
    LibSVMSerializer

SERIALIZERS = {"csv": CSVSerializer, "json": JSONSerializer, "jsonlines": JSONLinesSerializer,
               "libsvm": LibSVMSerializer, "record": RecordSerializer}
DESERIALIZERS = {"bytes": BytesDeserializer, "json": JSONDeserializer, "csv": CSVDeserializer,
                 "record": RecordDeserializer}


def session(port: int | None = None) -> LocalSession:
    local = LocalSession()
    local.config = {"local": {"local_code": True, **({"serving_port": port} if port else {})}}
    return local


def prepare(prefix: str) -> str:
    """What local mode's serve does before it starts the container, without the container: the
    SDK's own _prepare_serving_volumes, the directory it would mount at /opt/ml/model."""
    root = os.environ["SDK_CONTAINER_ROOT"]
    container = types.SimpleNamespace(hosts=["algo-1"], container_root=root,
                                      sagemaker_session=session())
    volumes = _SageMakerContainer._prepare_serving_volumes(container, prefix)
    return volumes[0].host_dir


def data_of(call: dict):
    """The call's data as its serializer takes it: RecordSerializer's a dense float32 numpy array;
    the others' as the job gives it (rows as lists, libsvm as its text)."""
    if call["serializer"] == "record":
        return np.array(call["data"], dtype=np.float32)
    return call["data"]


def answer(value):
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, list) and value and hasattr(value[0], "label"):  # Record messages
        return {"records": [{key: list(record.label[key].float32_tensor.values)
                             for key in record.label} for record in value]}
    return {"value": value}


def main() -> int:
    job = json.load(sys.stdin)
    if "prepare" in job:
        print(json.dumps({"directory": prepare(job["prepare"])}))
        return 0
    out = []
    for call in job["calls"]:
        predictor = Predictor("costaware-local", sagemaker_session=session(job["port"]),
                              serializer=SERIALIZERS[call["serializer"]](),
                              deserializer=DESERIALIZERS[call["deserializer"]]())
        try:
            value = predictor.predict(data_of(call), target_model=call.get("target_model"),
                                      custom_attributes=call.get("custom_attributes"))
            out.append(answer(value))
        except Exception as exc:  # (the SDK's error for a 4xx: its text is what the test reads)
            out.append({"error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    scipy.sparse  # (imported: the SDK's RecordSerializer module needs scipy)
    raise SystemExit(main())
