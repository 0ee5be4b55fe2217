"""Per-request costs from SageMaker's custom-attributes header.

    X-Amzn-SageMaker-Custom-Attributes: cost_fp=1,cost_fn=20

Rules (also in docs/serving.md):

* The header is a list of ``key=value`` pairs separated by ``,`` or ``;``; spaces around keys and
  values are ignored. SageMaker forwards it verbatim, so it may carry other people's attributes
  (trace ids and the like): pairs whose key does not start with ``cost_`` are ignored.
* Keys starting with ``cost_`` are ours and checked: only ``cost_fp``, ``cost_fn``, ``cost_tp`` and
  ``cost_tn`` exist (any other ``cost_*`` key is refused, naming the valid ones); each at most once;
  each value a plain finite number ``>= 0``.
* A cost not given keeps the model's value (the costs it was trained with), so ``cost_fn=500000``
  alone changes only the cost of a false negative.
* The resulting matrix must have ``cost_fp > cost_tn`` and ``cost_fn > cost_tp`` (the same rule as
  training's hyperparameters, :meth:`costaware.decisions.costs.CostMatrix.problem`): otherwise one decision
  would always be best.
* Each cost is at most ``1e300``, and the regret ratio ``(cost_fp - cost_tn) / (cost_fn - cost_tp)``
  lies between ``1e-12`` and ``1e12``. Beyond that the Bayes threshold rounds to exactly 0 or 1 in
  floating point, its log-odds become infinite, and the expected costs no longer pick the decision
  (found by fuzzing: ``cost_fp=1e308`` gave decision 0 with the lower expected cost on deciding 1).

A model with more than two classes takes the whole matrix instead, ``C[true][decided]`` as JSON:

    X-Amzn-SageMaker-Custom-Attributes: cost_matrix=[[0,1,4],[2,0,1],[9,3,0]]

The matrix holds commas of its own: its value runs from ``=`` up to the next ``,`` or ``;`` that
starts another ``key=value`` pair, or to the end of the header, and all of it is read by training's
parser (:func:`costaware.decisions.multiclass.parse_cost_matrix`), so trailing text is refused as training
refuses it. Checked as training checks ``cost_matrix`` (K x K for the model's K classes, numbers
>= 0, no decision that dominates), each cost at most ``1e300``, at most once; ``cost_fp`` and the
like are refused for such a model, and ``cost_matrix`` for a binary one. SageMaker passes at most
1,024 characters of the header.

Rows without costs of their own are then decided at these costs by the model's rule, on the
calibrated probability (:meth:`costaware.decisions.policy.Policy.with_costs`); rows that carry their own
costs are decided exactly as without the override. A model whose rule was fitted under a fairness
bound refuses overrides (400).
"""

from __future__ import annotations

import re

import numpy as np

from ..decisions.costs import CostMatrix
from ..errors import InputError
from ..decisions.multiclass import CostMatrixError, parse_cost_matrix

HEADER = "X-Amzn-SageMaker-Custom-Attributes"
COST_KEYS = ("cost_fp", "cost_fn", "cost_tp", "cost_tn")
MAX_COST = 1e300  # so that sums of costs stay finite
MAX_REGRET_RATIO = 1e12  # the Bayes threshold stays within [1e-12, 1 - 1e-12]
_NUMBER = re.compile(r"[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
MATRIX_KEY = "cost_matrix"


class OverrideError(InputError):
    """The custom-attributes header asks for costs that cannot be used."""


def attributes(header: str) -> list[tuple[str, bool, str]]:
    """The header's pairs as ``(key, has "=", value)``, keys and values stripped: split at ``,``
    and ``;``, except in the value of ``cost_matrix``, which runs up to the next piece that holds
    an ``=`` (another pair) or to the end (a JSON matrix holds no ``=``)."""
    pieces = re.split(r"([,;])", header)  # text, separator, text, ...
    pairs, i = [], 0
    while i < len(pieces):
        key, sep, value = pieces[i].partition("=")
        i += 2
        if key.strip() == MATRIX_KEY and sep:
            while i < len(pieces) and "=" not in pieces[i]:
                value += pieces[i - 1] + pieces[i]
                i += 2
        pairs.append((key.strip(), bool(sep), value.strip()))
    return pairs


def parse_costs(header: str | None, base):
    """The class costs a request asks for, or ``None`` when its header names none: the one parser
    of overrides for any K. ``base`` is the model's class costs (``policy.costs``): a
    :class:`~costaware.decisions.costs.CostMatrix` for two classes (keys ``cost_fp`` ... ``cost_tn``, a
    cost not given keeps the model's), a K x K matrix for more (key ``cost_matrix``, the whole
    matrix); the result is of the same kind."""
    if not header:
        return None
    whole_matrix = not isinstance(base, CostMatrix)
    given: dict = {}
    for key, sep, value in attributes(header):
        if key != MATRIX_KEY and not key.lower().startswith("cost_"):
            continue  # someone else's attribute
        _check_key(key, base)
        if not sep:
            example = ("cost_matrix=[[0,1,4],[2,0,1],[9,3,0]], C[true][decided]" if whole_matrix
                       else f"{key}=NUMBER")
            raise OverrideError(f"{HEADER}: {key} has no value (write {example})")
        if key in given:
            raise OverrideError(f"{HEADER}: {key} is given twice")
        given[key] = value if whole_matrix else _number(key, value)
    if not given:
        return None
    if whole_matrix:
        return _matrix(given[MATRIX_KEY], len(base))
    return _cells(given, base)


def _check_key(key: str, base) -> None:
    """Refuse a cost key this model does not take: ``cost_matrix`` with two classes, a cell's
    key with more, an unknown ``cost_*`` key."""
    if isinstance(base, CostMatrix):
        if key == MATRIX_KEY:
            raise OverrideError(f"{HEADER}: cost_matrix is for models with more than two "
                                f"classes; this one takes {', '.join(COST_KEYS)}")
        if key not in COST_KEYS:
            raise OverrideError(
                f"{HEADER}: unknown cost {key!r}; the costs are {', '.join(COST_KEYS)}")
    elif key != MATRIX_KEY:
        raise OverrideError(f"{HEADER}: {key!r}: this model has {len(base)} classes; give "
                            "the costs as cost_matrix=[[...],...] (C[true][decided])")


def _matrix(text: str, k: int) -> np.ndarray:
    """A K x K ``cost_matrix`` value, read by training's parser."""
    try:
        matrix = parse_cost_matrix(text, k)
    except CostMatrixError as exc:
        raise OverrideError(f"{HEADER}: cost_matrix: {exc}") from None
    if not (matrix <= MAX_COST).all():
        raise OverrideError(f"{HEADER}: cost_matrix: a cost is too large (at most {MAX_COST:g})")
    return matrix


def _number(key: str, value: str) -> float:
    if not _NUMBER.fullmatch(value):
        raise OverrideError(f"{HEADER}: {key}={value!r} is not a number >= 0")
    number = float(value)
    if not number <= MAX_COST:  # also infinity
        raise OverrideError(f"{HEADER}: {key}={value} is too large (at most {MAX_COST:g})")
    return number


def _cells(numbers: dict[str, float], base: CostMatrix) -> CostMatrix:
    """Two classes: the given cells' numbers over the model's costs, checked (module docstring)."""
    values = {**base.as_dict(), **numbers}

    def describe(key: str) -> str:
        origin = "" if key in numbers else ", the model's"
        return f"{key} ({values[key]:g}{origin})"

    problem = CostMatrix.from_dict(values).problem(lambda cell, _: describe(f"cost_{cell}"))
    if problem:
        raise OverrideError(f"{HEADER}: {problem}")
    ratio = (values["cost_fp"] - values["cost_tn"]) / (values["cost_fn"] - values["cost_tp"])
    if not 1 / MAX_REGRET_RATIO <= ratio <= MAX_REGRET_RATIO:
        raise OverrideError(f"{HEADER}: (cost_fp - cost_tn) / (cost_fn - cost_tp) = {ratio:.3g} is "
                            f"too lopsided: it must lie between {1 / MAX_REGRET_RATIO:g} and "
                            f"{MAX_REGRET_RATIO:g} (the decision threshold would round to 0 or 1)")
    return CostMatrix.from_dict(values)


REASON_KEYS = ("reasons", "reasons_for")
REASONS_FOR = ("1", "0", "all", "adverse")


def parse_reasons(header: str | None, features: int, saved: str = "1") -> tuple[int, str] | None:
    """``(k, which decisions)`` when the header asks for reasons (``reasons=K``, optionally
    ``reasons_for=all|0|1``; ``adverse`` or none: the model's saved choice), else ``None``."""
    if not header:
        return None
    given: dict[str, str] = {}
    for key, _, value in attributes(header):
        if key not in REASON_KEYS:
            continue
        if key in given:
            raise OverrideError(f"{HEADER}: {key} is given twice")
        given[key] = value
    if "reasons" not in given:
        if "reasons_for" in given:
            raise OverrideError(f"{HEADER}: reasons_for needs reasons=K (how many reasons a row)")
        return None
    text = given["reasons"]
    if not text.isdigit() or int(text) < 1:
        raise OverrideError(f"{HEADER}: reasons={text!r} must be a positive integer (how many "
                            "features a row's reasons list)")
    which = given.get("reasons_for", "adverse")
    if which not in REASONS_FOR:
        raise OverrideError(f"{HEADER}: reasons_for={which!r} must be one of "
                            f"{', '.join(REASONS_FOR)}")
    return min(int(text), features), (saved if which == "adverse" else which)


def describe_policy(policy, source: str) -> str:
    """The response's custom-attributes value: the class costs (:meth:`cost_attributes` of either
    policy: the four cells, or the K x K matrix) and the rule a response used (rows with their own
    costs say so in their ``costs`` field)."""
    return ",".join([*policy.cost_attributes(_num), f"rule={policy.rule_kind}",
                     f"costs_source={source}"])


def _num(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
