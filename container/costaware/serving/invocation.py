"""What ``POST /invocations`` does, without HTTP: a request's headers and body -> the answer's body,
media type and custom-attributes header (:class:`Invocations`), or, whole, status, headers and
body (:func:`respond`, an error included). The WSGI app (:mod:`costaware.serving.app`) and
``costaware predict`` are its two shells, so the command line answers whatever the server answers
and refuses what it refuses (:class:`~costaware.serving.request_error.RequestError`: a status and
one line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from time import perf_counter
from typing import Callable

import numpy as np

from ..model import inference
from ..model.artifact import Model
from ..model.artifact import load as load_model
from ..decisions.policy import OverrideRefused
from . import codecs, policy_override
from .request_error import RequestError


@dataclass(frozen=True)
class Plan:
    """A request's headers, checked before its body is read."""

    kind: str  # the body's format (codecs.input_kind)
    spec: codecs.OutputSpec  # the answer's format and fields
    reasons: tuple[int, str] | None  # reasons=K and for which decisions, or None
    policy: object  # the policy that decides (the model's, or the override's)
    source: str  # "model" or "request"


@dataclass(frozen=True)
class Answer:
    body: bytes
    mimetype: str
    attributes: str  # the response's custom-attributes header: the costs and rule used
    rows: int
    timing: dict  # parse_ms, predict_ms, encode_ms


class Invocations:
    """``/invocations`` for one loaded model; holds only immutable state (a request's override
    builds a policy of its own)."""

    def __init__(self, model: Model, default_accept: str = codecs.DEFAULT_ACCEPT["costaware"],
                 shape: str = "costaware"):
        """``default_accept``: the ``Accept`` of a request without one (or with ``*/*``);
        ``shape``: ``costaware`` or ``builtin`` (the SageMaker XGBoost container's answers)."""
        self.model = model
        self.default_accept = default_accept
        self.shape = shape
        self.layout = inference.Layout.of(model)
        self.fields = inference.output_fields(model)
        self.with_reasons = inference.output_fields(model, reasons=True)
        self.reasons_for = str(model.metadata.get("reasons_for", "1"))
        self.model_policy_json = codecs.policy_json(model.policy.summary("model"))
        self.model_policy_header = policy_override.describe_policy(model.policy, "model")

    @classmethod
    def load(cls, model_dir: str, nthread: int,
             default_accept: str = codecs.DEFAULT_ACCEPT["costaware"],
             shape: str = "costaware") -> "Invocations":
        """The model in ``model_dir`` loaded (:func:`costaware.model.artifact.load`: a bad one is a
        one-line ``ModelLoadError``) and warmed up: one row predicted, so the first request is
        not slower."""
        invocations = cls(load_model(model_dir, nthread=nthread), default_accept, shape)
        inference.predict(invocations.model, np.zeros((1, len(invocations.layout.names))))
        return invocations

    def plan(self, content_type: str | None, accept: str | None, attributes: str | None,
             content_encoding: str | None = None) -> Plan:
        """Check a request's headers (415, 406, 400 as :class:`RequestError`)."""
        kind = codecs.input_kind(content_type)
        encoding = (content_encoding or "").strip().lower()
        if encoding not in ("", "identity"):
            raise RequestError(415, f"Content-Encoding {encoding!r} is not supported; send the "
                                    "body uncompressed")
        model = self.model
        try:
            wanted = policy_override.parse_reasons(attributes, len(model.feature_names),
                                                   self.reasons_for)
            spec = codecs.for_model(codecs.output_spec(accept, self.default_accept, self.shape),
                                    self.fields if wanted is None else self.with_reasons)
            costs = policy_override.parse_costs(attributes, model.policy.costs)
            override = None if costs is None else model.policy.with_costs(costs)
        except (policy_override.OverrideError, OverrideRefused) as exc:
            message = str(exc)
            if isinstance(exc, OverrideRefused):
                message = f"{policy_override.HEADER}: {message}"
            raise RequestError(400, message) from None
        if override is None:
            return Plan(kind, spec, wanted, model.policy, "model")
        return Plan(kind, spec, wanted, override, "request")

    def answer(self, plan: Plan, body: bytes) -> Answer:
        """Decode, predict (and explain), encode; a bad body or row is a 400."""
        model = self.model
        t0 = perf_counter()
        rows, has_costs = codecs.decode(body, plan.kind, self.layout)
        t1 = perf_counter()
        try:
            result = inference.predict(model, rows, has_costs, plan.policy, plan.source,
                                       codecs.row_label(plan.kind))
        except inference.RowError as exc:
            raise RequestError(400, str(exc)) from None
        if plan.reasons is not None:
            result = inference.explain(model, rows, result, *plan.reasons)
        t2 = perf_counter()
        if plan.source == "model":
            info, header = self.model_policy_json, self.model_policy_header
        else:
            info = codecs.policy_json(plan.policy.summary(plan.source))
            header = policy_override.describe_policy(plan.policy, plan.source)
        payload = codecs.encode(result, plan.spec, info)
        t3 = perf_counter()
        return Answer(payload, plan.spec.mimetype, header, len(rows),
                      {"parse_ms": round((t1 - t0) * 1000, 3),
                       "predict_ms": round((t2 - t1) * 1000, 3),
                       "encode_ms": round((t3 - t2) * 1000, 3)})


@dataclass(frozen=True)
class Reply:
    """A whole ``/invocations`` response: status, headers (``Content-Type`` and the custom
    attributes), body; with what the access log reports (rows, timing, an error's message)."""

    status: int
    headers: dict
    body: bytes
    rows: int = 0
    timing: dict = field(default_factory=dict)
    error: str | None = None


def error_reply(status: int, message: str, **details) -> Reply:
    """The JSON error body every refusal has: ``{"error", "status", ...details}``."""
    body = json.dumps({"error": message, "status": status, **details}, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")
    return Reply(status, {"Content-Type": "application/json"}, body, error=message)


def respond(invocations: Invocations, body: bytes | Callable[[], bytes],
            content_type: str | None, accept: str | None, attributes: str | None,
            content_encoding: str | None = None) -> Reply:
    """``POST /invocations`` without HTTP: the headers checked first, then the body read (a
    function, called only once the headers pass, so a server need not read a body it refuses;
    its :class:`RequestError` is a reply too), decided and encoded. A refusal is the JSON error
    :func:`error_reply` gives."""
    try:
        plan = invocations.plan(content_type, accept, attributes, content_encoding)
        t0 = perf_counter()
        data = body() if callable(body) else body
        read_ms = round((perf_counter() - t0) * 1000, 3)
        answer = invocations.answer(plan, data)
    except RequestError as exc:
        return error_reply(exc.status, exc.message, **exc.details)
    return Reply(200, {"Content-Type": answer.mimetype,
                       policy_override.HEADER: answer.attributes},
                 answer.body, answer.rows, {"read_ms": read_ms, **answer.timing})
