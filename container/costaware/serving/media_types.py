"""Media types the server reads and answers, and the parsing of one media type; stdlib only, so the
server's settings (:mod:`costaware.serving.config`) check ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``
in the gunicorn master without importing numpy. Negotiation: :mod:`costaware.serving.negotiation`."""

from __future__ import annotations

CSV_TYPES = {"text/csv": "csv"}
JSON_TYPES = {"application/json": "json"}
JSONLINES_TYPES = {"application/jsonlines": "jsonlines", "application/jsonl": "jsonlines",
                   "application/x-jsonlines": "jsonlines"}
LIBSVM_TYPES = {"text/libsvm": "libsvm", "text/x-libsvm": "libsvm"}  # the built-in XGBoost's two
# SageMaker's built-in algorithms' binary format (the SDK's RecordSerializer)
RECORDIO_TYPES = {"application/x-recordio-protobuf": "recordio"}
INPUT_TYPES = {**CSV_TYPES, **JSON_TYPES, **JSONLINES_TYPES, **LIBSVM_TYPES, **RECORDIO_TYPES}
BINARY_INPUTS = frozenset(RECORDIO_TYPES.values())  # bodies that are not text
SEND = ("send text/csv, application/json, application/jsonlines, text/libsvm or "
        "application/x-recordio-protobuf")
OUTPUT_TYPES = {**JSON_TYPES, **JSONLINES_TYPES, **CSV_TYPES}
OUTPUT_MIMETYPES = {"json": "application/json", "jsonlines": "application/jsonlines",
                    "csv": "text/csv"}
OUTPUT_WILDCARDS = {"*/*": "json", "application/*": "json", "text/*": "csv"}
CHARSETS = {"utf-8", "utf8", "us-ascii", "ascii"}


def split_outside_quotes(text: str, sep: str) -> list[str]:
    if '"' not in text:
        return text.split(sep)
    parts, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``"text/csv; charset=UTF-8"`` -> ``("text/csv", {"charset": "UTF-8"})`` (type lower-cased)."""
    pieces = split_outside_quotes(value, ";")
    essence = pieces[0].strip().lower()
    params = {}
    for piece in pieces[1:]:
        key, sep, val = piece.partition("=")
        key = key.strip().lower()
        if key:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            params[key] = val
    return essence, params


# The shapes of an answer: costaware's (its fields, the policy), or the SageMaker XGBoost
# container's (the probabilities alone), chosen by COSTAWARE_RESPONSE_SHAPE.
SHAPES = ("costaware", "builtin")
# The built-in container's selectable answers (SAGEMAKER_INFERENCE_OUTPUT): the keys a classifier
# has (its predicted_score is a regressor's), and the one more media type it then answers
SELECTABLE_KEYS = ("predicted_label", "labels", "probability", "probabilities", "raw_score",
                   "raw_scores")
SELECTABLE_OUTPUT_TYPES = {"application/x-recordio-protobuf": "recordio"}
# every answer kind's media type
ANSWER_MIMETYPES = {**OUTPUT_MIMETYPES, **{kind: essence
                                           for essence, kind in SELECTABLE_OUTPUT_TYPES.items()}}
# The Accept a request without one (or with */*) gets, per shape, unless
# SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT says otherwise: the built-in container's is text/csv.
DEFAULT_ACCEPT = {"costaware": "application/json", "builtin": "text/csv"}


def default_accept_problem(value: str, selectable: bool = False) -> str | None:
    """Why ``value`` cannot be the default Accept (``None``: it can): one media type the server
    answers (``selectable``: with the built-in's selectable answers, RecordIO-protobuf too),
    without parameters."""
    essence, params = parse_media_type(value)
    answered = set(OUTPUT_MIMETYPES.values()) | (set(SELECTABLE_OUTPUT_TYPES) if selectable
                                                 else set())
    if "," in value or essence in OUTPUT_WILDCARDS or essence not in answered:
        return "is not a media type this server answers; choose " + ", ".join(sorted(answered))
    if params:
        return "has parameters; give the media type alone (fields are chosen per request)"
    return None
