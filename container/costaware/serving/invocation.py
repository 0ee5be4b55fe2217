"""What ``POST /invocations`` does, without HTTP: a request's headers and body -> the answer's body,
media type and custom-attributes header. The WSGI app (:mod:`costaware.serving.app`) and
``costaware predict`` are its two shells, so the command line answers whatever the server answers
and refuses what it refuses (:class:`~costaware.serving.request_error.RequestError`: a status and
one line).
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

from .. import inference
from ..artifact import Model
from ..multiclass_policy import MulticlassPolicy
from ..policy import OverrideRefused
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

    def __init__(self, model: Model):
        self.model = model
        self.layout = inference.Layout.of(model)
        self.fields = inference.output_fields(model)
        self.with_reasons = inference.output_fields(model, reasons=True)
        self.reasons_for = str(model.metadata.get("reasons_for", "1"))
        self.multiclass = isinstance(model.policy, MulticlassPolicy)
        self.model_policy_json = codecs.policy_json(self.policy_info(model.policy, "model"))
        self.model_policy_header = policy_override.describe_policy(model.policy, "model")

    def policy_info(self, policy, source: str) -> dict:
        """The ``"policy"`` member of a JSON answer."""
        if self.multiclass:
            return {"classes": list(policy.classes),
                    "cost_matrix": [list(row) for row in policy.matrix], "costs_source": source,
                    "rule": {"kind": "bayes"} if policy.rule is None else policy.rule.to_dict()}
        return {"costs": policy.costs.as_dict(), "costs_source": source,
                "rule": policy.rule.to_dict(),
                "cost_columns": [name for _, name in policy.cost_columns]}

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
            spec = codecs.for_model(codecs.output_spec(accept),
                                    self.fields if wanted is None else self.with_reasons)
            if self.multiclass:
                matrix = policy_override.parse_matrix(attributes, model.policy)
                override = None if matrix is None else model.policy.with_matrix(matrix)
            else:
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
            info = codecs.policy_json(self.policy_info(plan.policy, plan.source))
            header = policy_override.describe_policy(plan.policy, plan.source)
        payload = codecs.encode(result, plan.spec, info)
        t3 = perf_counter()
        return Answer(payload, plan.spec.mimetype, header, len(rows),
                      {"parse_ms": round((t1 - t0) * 1000, 3),
                       "predict_ms": round((t2 - t1) * 1000, 3),
                       "encode_ms": round((t3 - t2) * 1000, 3)})
