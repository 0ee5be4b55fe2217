"""SageMaker's data-capture files: the record format and the path layout, one owner for both sides
(``serve`` writes them, the monitor reads them as it reads an endpoint's capture from S3).

Layout (SageMaker Developer Guide, "Capture data from real-time endpoint")::

    {root}/{endpoint-name}/{variant-name}/yyyy/mm/dd/hh/{file}.jsonl

``hh`` is the UTC hour of the invocation. SageMaker names a file ``MM-SS-mmm-<uuid4>.jsonl`` (the
minute, second and millisecond it was begun, then a random id): :func:`file_name`. One record per
line, compact JSON::

    {"captureData": {
       "endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                          "data": "69,0,153.7\\n", "encoding": "CSV"},
       "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT",
                          "data": "0.0254181120544672", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid4>", "inferenceId": "<the caller's>",
                       "targetModel": "<on a multi-model endpoint>",
                       "inferenceTime": "2022-02-14T17:25:49Z"},
     "eventVersion": "0"}

``observedContentType`` is the ``Content-Type`` header as sent (parameters included).
``encoding`` (:func:`encoding_for`) is ``CSV`` for a ``text/csv`` body, ``JSON`` for an
``application/json`` or JSON Lines one, with ``data`` the body's text; ``BASE64`` for any other
type or a body that is not valid UTF-8, with ``data`` the body base64-encoded. Either way
:func:`body_bytes` gives the body's exact bytes back. ``inferenceId`` is the caller's
``X-Amzn-SageMaker-Inference-Id`` (InvokeEndpoint's ``InferenceId``), present only when given;
``eventId`` is a fresh UUID per record. Model Monitor joins ground truth on ``inferenceId``, else
on ``eventId`` ("Ingest Ground Truth Labels and Merge Them With Predictions").
``targetModel``, on a multi-model endpoint only, names the model the invocation reached (the
request's ``X-Amzn-SageMaker-Target-Model``, InvokeEndpoint's ``TargetModel``): SageMaker's own
records have no field for it (Model Monitor monitors single-model endpoints), so it is a key of
ours in ``eventMetadata``, where SageMaker itself added ``inferenceId`` to the first three and
whose readers take the keys they know (monitoring/capture.py reads these records back).

Standard library only: the server's master process reads the layout before any worker exists.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
import uuid
from datetime import datetime, timezone

# field names of a record
CAPTURE_DATA = "captureData"
ENDPOINT_INPUT = "endpointInput"
ENDPOINT_OUTPUT = "endpointOutput"
OBSERVED_CONTENT_TYPE = "observedContentType"
MODE = "mode"
DATA = "data"
ENCODING = "encoding"
EVENT_METADATA = "eventMetadata"
EVENT_ID = "eventId"
INFERENCE_ID = "inferenceId"
TARGET_MODEL = "targetModel"  # ours: the model of a multi-model endpoint
INFERENCE_TIME = "inferenceTime"
EVENT_VERSION = "eventVersion"

# their values
INPUT_MODE = "INPUT"
OUTPUT_MODE = "OUTPUT"
CSV = "CSV"
JSON = "JSON"
BASE64 = "BASE64"
ENCODINGS = (CSV, JSON, BASE64)
CURRENT_EVENT_VERSION = "0"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # inferenceTime, UTC, whole seconds as SageMaker writes it
FILE_SUFFIX = ".jsonl"

INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
INFERENCE_ID_MAX = 64  # InvokeEndpoint's InferenceId: 1-64 characters, \A\S[\p{Print}]*\z

# media types (lower case, no parameters) whose bodies are captured as text
TEXT_ENCODINGS = {"text/csv": CSV, "application/json": JSON, "application/jsonlines": JSON,
                  "application/jsonl": JSON, "application/x-jsonlines": JSON}

# SageMaker's EndpointName and VariantName: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def check_name(value: str) -> str | None:
    """Why ``value`` is not a SageMaker endpoint or variant name (``None`` when it is one): the
    names are directories of the layout, so nothing else (``..``, ``/``) may get into a path."""
    if NAME_PATTERN.fullmatch(value):
        return None
    return "is not a SageMaker name (letters, digits and inner hyphens, at most 63 characters)"


def check_inference_id(value: str) -> str | None:
    """Why ``value`` is not an InferenceId InvokeEndpoint would take (``None`` when it is one):
    1 to 64 printable characters, the first not a space."""
    if not value:
        return f"{INFERENCE_ID_HEADER} is empty; send 1 to {INFERENCE_ID_MAX} characters or omit it"
    if len(value) > INFERENCE_ID_MAX:
        return (f"{INFERENCE_ID_HEADER} has {len(value)} characters; at most {INFERENCE_ID_MAX} "
                "are allowed")
    if value[0].isspace() or not value.isprintable():
        return (f"{INFERENCE_ID_HEADER} {value[:INFERENCE_ID_MAX]!r} must be printable characters, "
                "the first not a space")
    return None


def encoding_for(content_type: str | None, body: bytes) -> tuple[str, str]:
    """``(encoding, data)`` of a body in a record: ``("CSV", text)`` for ``text/csv``, ``("JSON",
    text)`` for JSON and JSON Lines, when the body is valid UTF-8; else ``("BASE64", base64
    text)``. The media type is matched without its parameters and case."""
    essence = (content_type or "").partition(";")[0].strip().lower()
    encoding = TEXT_ENCODINGS.get(essence)
    if encoding is not None:
        try:
            return encoding, body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return BASE64, base64.b64encode(body).decode("ascii")


def _part(mode: str, content_type: str | None, body: bytes) -> dict:
    encoding, data = encoding_for(content_type, body)
    return {OBSERVED_CONTENT_TYPE: content_type or "", MODE: mode, DATA: data, ENCODING: encoding}


def format_time(when: float) -> str:
    """``inferenceTime`` of a POSIX time: ``2022-02-14T17:25:49Z`` (UTC, whole seconds)."""
    return time.strftime(TIME_FORMAT, time.gmtime(when))


def parse_time(text: str) -> datetime:
    """The UTC time of an ``inferenceTime`` (a ValueError with the text when it is not one)."""
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        raise ValueError(f"inferenceTime {text!r} is not of the form 2022-02-14T17:25:49Z") \
            from None


def record(input_type: str | None, input_body: bytes, output_type: str | None,
           output_body: bytes, when: float, inference_id: str | None = None,
           event_id: str | None = None, target_model: str | None = None) -> dict:
    """One captured invocation: its request and response (their ``Content-Type`` and bodies), the
    POSIX time it was made, the caller's inference id (``None``: the key is left out), its
    event id (default: a new UUID4) and the model it invoked on a multi-model endpoint
    (``None``: the key is left out)."""
    metadata = {EVENT_ID: event_id or str(uuid.uuid4())}
    if inference_id is not None:
        metadata[INFERENCE_ID] = inference_id
    if target_model is not None:
        metadata[TARGET_MODEL] = target_model
    metadata[INFERENCE_TIME] = format_time(when)
    return {CAPTURE_DATA: {ENDPOINT_INPUT: _part(INPUT_MODE, input_type, input_body),
                           ENDPOINT_OUTPUT: _part(OUTPUT_MODE, output_type, output_body)},
            EVENT_METADATA: metadata, EVENT_VERSION: CURRENT_EVENT_VERSION}


# compact; non-ASCII text as UTF-8 rather than escaped (20% faster on a 6 MiB CSV body)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def to_line(capture_record: dict) -> bytes:
    """A record as its line of a capture file: compact JSON in UTF-8, ending in ``\\n``."""
    return (_ENCODER.encode(capture_record) + "\n").encode("utf-8")


def body_bytes(part: dict) -> bytes:
    """The body's bytes from a record's ``endpointInput`` or ``endpointOutput`` (the inverse of
    :func:`encoding_for`): ``data`` base64-decoded when ``encoding`` is ``BASE64``, else its
    UTF-8 bytes. A ValueError with a one-line reason when the part is not one."""
    if not isinstance(part, dict):
        raise ValueError(f"a capture part must be a JSON object, not {type(part).__name__}")
    encoding, data = part.get(ENCODING), part.get(DATA)
    if not isinstance(data, str):
        raise ValueError(f"the part's {DATA!r} must be a string, not "
                         f"{'missing' if data is None else type(data).__name__}")
    if encoding == BASE64:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"the part's {DATA!r} is not valid base64 "
                             f"({len(data)} characters)") from None
    if encoding in (CSV, JSON):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a \\ud800 escape
            raise ValueError(f"the part's {DATA!r} holds text that is not valid Unicode") from None
    raise ValueError(f"the part's {ENCODING!r} is {encoding!r}; expected one of "
                     f"{', '.join(ENCODINGS)}")


def variant_directory(root: str, endpoint: str, variant: str) -> str:
    """``{root}/{endpoint}/{variant}``: where a variant's capture hours are."""
    return os.path.join(root, endpoint, variant)


def hour_directory(root: str, endpoint: str, variant: str, when: float) -> str:
    """``{root}/{endpoint}/{variant}/yyyy/mm/dd/hh`` of the UTC hour of the POSIX time ``when``."""
    return os.path.join(variant_directory(root, endpoint, variant),
                        *time.strftime("%Y %m %d %H", time.gmtime(when)).split())


def file_name(when: float) -> str:
    """A new capture file's name as SageMaker makes it: ``MM-SS-mmm-<uuid4>.jsonl``, the minute,
    second and millisecond of ``when`` then a random id (so no two writers share a file)."""
    seconds, millis = divmod(round(when * 1000), 1000)
    return (f"{time.strftime('%M-%S', time.gmtime(seconds))}-{millis:03d}-{uuid.uuid4()}"
            f"{FILE_SUFFIX}")
