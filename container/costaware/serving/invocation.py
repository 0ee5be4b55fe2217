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
from .encoding import text_labels_refused
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
                 shape: str = "costaware", selected: tuple[str, ...] = ()):
        """``default_accept``: the ``Accept`` of a request without one (or with ``*/*``);
        ``shape``: ``costaware`` or ``builtin`` (the SageMaker XGBoost container's answers);
        ``selected``: the built-in's selectable answers' keys (``SAGEMAKER_INFERENCE_OUTPUT``)."""
        self.model = model
        self.default_accept = default_accept
        self.shape = shape
        self.selected = selected
        self.layout = inference.Layout.of(model)
        self.fields = inference.output_fields(model)
        self.with_reasons = inference.output_fields(model, reasons=True)
        self.reasons_for = str(model.metadata.get("reasons_for", "1"))
        self.model_policy_json = codecs.policy_json(model.policy.summary("model"))
        self.model_policy_header = policy_override.describe_policy(model.policy, "model")
        # the selectable answers' keys that hold class labels, when those are text
        classes = getattr(model.policy, "classes", (0, 1))
        self.text_labels = (set() if all(isinstance(c, int) for c in classes)
                            else {"predicted_label", "labels"})

    @classmethod
    def load(cls, model_dir: str, nthread: int,
             default_accept: str = codecs.DEFAULT_ACCEPT["costaware"],
             shape: str = "costaware", selected: tuple[str, ...] = ()) -> "Invocations":
        """The model in ``model_dir`` loaded (:func:`costaware.model.artifact.load`: a bad one is a
        one-line ``ModelLoadError``) and warmed up: one row predicted, so the first request is
        not slower."""
        invocations = cls(load_model(model_dir, nthread=nthread), default_accept, shape, selected)
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
            spec = codecs.for_model(codecs.output_spec(accept, self.default_accept, self.shape,
                                                       self.selected),
                                    self.fields if wanted is None else self.with_reasons)
            if spec.kind == "recordio" and self.text_labels & set(spec.selected):
                raise text_labels_refused(
                    min(self.text_labels & set(spec.selected), key=spec.selected.index))
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
        return self.finish(plan, self.decode(plan, body))

    def decode(self, plan: Plan, body: bytes) -> "Decoded":
        """The body's rows (a bad body is a 400)."""
        t0 = perf_counter()
        rows, has_costs = codecs.decode(body, plan.kind, self.layout)
        return Decoded(rows, has_costs, perf_counter() - t0)

    def margins(self, decoded: list["Decoded"]) -> list[np.ndarray]:
        """The margins of several requests' rows, from one prediction: XGBoost's cost of a call
        hardly depends on its rows below a few dozen (``benchmarks/bench_serving.py``: 8-row
        calls at 0.94x the one-row rate, 100 trees), and each row's margin is the same whichever
        rows it is predicted with."""
        features = self.layout.features
        margins = self.model.margin(np.concatenate([d.rows[:, :features] for d in decoded]))
        return np.split(margins, np.cumsum([len(d.rows) for d in decoded[:-1]]))

    def finish(self, plan: Plan, decoded: "Decoded", margins: np.ndarray | None = None,
               shared_s: float = 0.0, batch: int = 1) -> Answer:
        """Predict (from ``margins`` if given: :meth:`margins` of ``batch`` requests' rows, which
        took ``shared_s`` seconds) and explain the decoded rows, and encode the answer; a bad
        row is a 400."""
        model, rows = self.model, decoded.rows
        t1 = perf_counter()
        try:
            result = inference.predict(model, rows, decoded.has_costs, plan.policy, plan.source,
                                       codecs.row_label(plan.kind), margins)
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
                      {"parse_ms": round(decoded.seconds * 1000, 3),
                       "predict_ms": round((t2 - t1 + shared_s) * 1000, 3),
                       "encode_ms": round((t3 - t2) * 1000, 3), "batch": batch})


@dataclass(frozen=True)
class Decoded:
    """A request's rows (:func:`costaware.serving.codecs.decode`) and the seconds decoding took."""

    rows: np.ndarray
    has_costs: np.ndarray | None
    seconds: float


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


@dataclass(frozen=True)
class Call:
    """One ``POST /invocations``: the model's :class:`Invocations`, the body (or a function that
    reads it, called only once the headers pass) and the headers that matter."""

    invocations: Invocations
    body: bytes | Callable[[], bytes]
    content_type: str | None
    accept: str | None
    attributes: str | None
    content_encoding: str | None = None


def respond(invocations: Invocations, body: bytes | Callable[[], bytes],
            content_type: str | None, accept: str | None, attributes: str | None,
            content_encoding: str | None = None) -> Reply:
    """``POST /invocations`` without HTTP: the headers checked first, then the body read (a
    function, called only once the headers pass, so a server need not read a body it refuses;
    its :class:`RequestError` is a reply too), decided and encoded. A refusal is the JSON error
    :func:`error_reply` gives."""
    return respond_together([Call(invocations, body, content_type, accept, attributes,
                                  content_encoding)])[0]


def respond_together(calls: list[Call]) -> list[Reply]:
    """Several calls answered as :func:`respond` answers each, the rows of those to the same
    model predicted in one call (:meth:`Invocations.margins`): a server answering the requests
    that arrived together. A refused call's reply is its refusal; the others are unaffected."""
    replies: list[Reply | None] = [None] * len(calls)
    ready: dict[int, list] = {}  # id(invocations) -> [(index, plan, decoded, read_ms)]
    for i, call in enumerate(calls):
        try:
            plan = call.invocations.plan(call.content_type, call.accept, call.attributes,
                                         call.content_encoding)
            t0 = perf_counter()
            data = call.body() if callable(call.body) else call.body
            read_ms = round((perf_counter() - t0) * 1000, 3)
            decoded = call.invocations.decode(plan, data)
        except RequestError as exc:
            replies[i] = error_reply(exc.status, exc.message, **exc.details)
            continue
        ready.setdefault(id(call.invocations), []).append((i, plan, decoded, read_ms))
    for group in ready.values():
        invocations = calls[group[0][0]].invocations
        margins, shared_s = [None] * len(group), 0.0
        if len(group) > 1:
            t0 = perf_counter()
            margins = invocations.margins([decoded for _, _, decoded, _ in group])
            shared_s = perf_counter() - t0
        for (i, plan, decoded, read_ms), margin in zip(group, margins):
            try:
                answer = invocations.finish(plan, decoded, margin, shared_s, len(group))
            except RequestError as exc:
                replies[i] = error_reply(exc.status, exc.message, **exc.details)
                continue
            replies[i] = Reply(200, {"Content-Type": answer.mimetype,
                                     policy_override.HEADER: answer.attributes},
                               answer.body, answer.rows, {"read_ms": read_ms, **answer.timing})
    return replies
