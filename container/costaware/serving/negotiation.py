"""Content negotiation: the body format a request sends (``Content-Type``) and the format and
fields it wants back (``Accept``). The formats' rules: :mod:`costaware.serving.codecs`.

Why not werkzeug's parsers (installed with Flask): ``parse_accept_header`` splits
``application/jsonlines;fields=score,decision``, the documented unquoted form, into the ranges
``application/jsonlines; fields=score`` and ``decision``; and ``parse_options_header`` is no
faster (0.29 against 0.53 µs for a bare ``text/csv``, 4.7 against 1.3 µs with a charset). Both
results are cached per header value here, since a client repeats its headers.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..model.inference import (ALL_FIELDS, CLASS_REASON_FIELDS, MULTICLASS_FIELDS, OUTPUT_FIELDS,
                         REASON_FIELDS)
from .request_error import RequestError

from .media_types import (ANSWER_MIMETYPES, CHARSETS, DEFAULT_ACCEPT, INPUT_TYPES,  # noqa: F401
                          OUTPUT_MIMETYPES, OUTPUT_TYPES, OUTPUT_WILDCARDS,
                          SELECTABLE_OUTPUT_TYPES, SEND, parse_media_type, split_outside_quotes)


@functools.lru_cache(maxsize=256)  # a client sends the same header with every request
def input_kind(content_type: str | None) -> str:
    """The parser for a ``Content-Type``: ``csv``, ``json``, ``jsonlines``, ``libsvm`` or
    ``recordio``; otherwise a 415."""
    if not content_type or not content_type.strip():
        raise RequestError(415, f"Content-Type is missing; {SEND}")
    essence, params = parse_media_type(content_type)
    kind = INPUT_TYPES.get(essence)
    if kind is None:
        raise RequestError(415, f"Content-Type {essence!r} is not supported; {SEND}",
                           supported=sorted(INPUT_TYPES))
    charset = params.get("charset", "utf-8").lower()
    if charset not in CHARSETS:
        raise RequestError(415, f"Content-Type charset {charset!r} is not supported; send UTF-8")
    if kind == "csv":
        label_size = params.get("label_size", "0")
        if label_size != "0":
            raise RequestError(415, f"text/csv;label_size={label_size}: inference takes features "
                                    "only; drop the label column and send label_size=0")
        header = params.get("header", "absent").lower()
        if header != "absent":
            raise RequestError(415, f"text/csv;header={header}: send CSV without a header line "
                                    "(columns in training's feature order)")
    return kind


@dataclass(frozen=True)
class OutputSpec:
    kind: str  # json | jsonlines | csv; recordio (the built-in's selectable answers only)
    fields: tuple[str, ...] = OUTPUT_FIELDS
    chosen: bool = False  # the request named the fields (else: the model's own, all of them)
    shape: str = "costaware"  # or "builtin": the SageMaker XGBoost container's (encoding.py)
    selected: tuple[str, ...] = ()  # the built-in's selectable answers' keys (none: its scores)

    @property
    def mimetype(self) -> str:
        return ANSWER_MIMETYPES[self.kind]


def _accept_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    """Media ranges of an Accept header, tolerating unquoted commas inside ``fields=a,b``."""
    pieces = split_outside_quotes(accept, ",")
    merged: list[str] = []
    for piece in pieces:
        if (merged and "/" not in piece
                and re.search(r";\s*fields\s*=", merged[-1], re.IGNORECASE)):
            merged[-1] += "," + piece.strip()  # "text/csv;fields=score,decision;q=0.5"
        elif piece.strip():
            merged.append(piece)
    return [parse_media_type(piece) for piece in merged]


@functools.lru_cache(maxsize=256)
def output_spec(accept: str | None, default: str = DEFAULT_ACCEPT["costaware"],
                shape: str = "costaware", selected: tuple[str, ...] = ()) -> OutputSpec:
    """The response format an ``Accept`` header asks for; a 406 when none can be given. No
    ``Accept``, or ``*/*`` alone, gets ``default`` (``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, as
    the built-in container reads it); ``shape``: ``costaware`` or ``builtin``; ``selected``: the
    built-in's selectable answers' keys, which it also answers in RecordIO-protobuf."""
    if not accept or not accept.strip() or accept.strip() == "*/*":
        accept = default
    candidates = []
    for order, (essence, params) in enumerate(_accept_ranges(accept)):
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            candidates.append((-q, order, essence, params))
    for _, _, essence, params in sorted(candidates):
        kind = OUTPUT_TYPES.get(essence) or OUTPUT_WILDCARDS.get(essence)
        if selected and not kind:
            kind = SELECTABLE_OUTPUT_TYPES.get(essence)
        if kind:
            chosen = params.get("fields")
            if shape == "builtin":
                if chosen is not None:
                    raise RequestError(406, f"Accept: fields={chosen} chooses costaware's fields; "
                                            "this server answers in the built-in XGBoost "
                                            "container's shape (COSTAWARE_RESPONSE_SHAPE=builtin)")
                return OutputSpec(kind, (), False, "builtin", selected)
            return OutputSpec(kind, _fields(chosen), chosen is not None)
    answered = sorted(set(OUTPUT_MIMETYPES.values()) | (set(SELECTABLE_OUTPUT_TYPES) if selected
                                                         else set()))
    raise RequestError(406, f"Accept {accept.strip()!r}: this server answers "
                            f"{', '.join(answered[:-1])} or {answered[-1]}", supported=answered)


def for_model(spec: OutputSpec, fields: tuple[str, ...]) -> OutputSpec:
    """``spec`` for a model whose responses carry ``fields``: those by default; fields the request
    chose must be among them (a 406 otherwise). The built-in shape carries no fields: reasons,
    which only costaware's shape can carry, are a 400 there."""
    if spec.shape == "builtin":
        if any(name in REASON_FIELDS + CLASS_REASON_FIELDS for name in fields):
            raise RequestError(400, "reasons=K: the built-in XGBoost container's response shape "
                                    "(COSTAWARE_RESPONSE_SHAPE=builtin) carries probabilities "
                                    "only; unset it to have reasons")
        return spec
    if not spec.chosen:
        return spec if spec.fields == fields else OutputSpec(spec.kind, fields)
    for name in spec.fields:
        if name in REASON_FIELDS + CLASS_REASON_FIELDS and name not in fields:
            raise RequestError(406, f"Accept: field {name!r} comes with reasons: ask for them "
                                    "with the custom attribute reasons=K")
        if name not in fields:
            raise RequestError(406, f"Accept: field {name!r} is not in this model's responses; "
                                    f"choose from {', '.join(fields)}", fields=list(fields))
    return spec


def _fields(value: str | None) -> tuple[str, ...]:
    if value is None:
        return OUTPUT_FIELDS
    names = [name.strip() for name in re.split(r"[,+ ]", value) if name.strip()]
    if not names:
        raise RequestError(406, f"Accept: fields is empty; choose from {', '.join(OUTPUT_FIELDS)}")
    for name in names:
        if name not in ALL_FIELDS:
            raise RequestError(406, f"Accept: unknown field {name!r}; choose from "
                                    f"{', '.join(OUTPUT_FIELDS)} (more than two classes: "
                                    f"{', '.join(MULTICLASS_FIELDS)})", fields=list(OUTPUT_FIELDS))
    if len(set(names)) != len(names):
        raise RequestError(406, f"Accept: fields={value} names a field twice")
    return tuple(names)
