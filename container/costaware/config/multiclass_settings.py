"""The hyperparameters of more than two classes: ``classes`` and ``cost_matrix`` parsed (a 2 x 2
matrix is the binary costs), the favourable classes, and what such a job refuses. Used by
:mod:`costaware.config.hyperparameters` (which owns the schema and :class:`Settings`)."""

from __future__ import annotations

import json
from typing import Mapping

import numpy as np

from ..decisions.costs import CELLS, CostMatrix
from ..errors import HyperparameterError
from ..decisions.multiclass import CostMatrixError, parse_cost_matrix


def class_index(labels: tuple, value) -> int | None:
    """The index of ``value`` among the class ``labels`` (a number matches an equal integer
    label, text matches text), or ``None``."""
    for i, label in enumerate(labels):
        if isinstance(label, str) == isinstance(value, str) and label == value:
            return i
    return None


def classes_and_matrix(classes_text: str, matrix_text: str) -> dict:
    """``class_labels`` and ``matrix`` from ``classes`` and ``cost_matrix`` (module docstring of
    :mod:`costaware.decisions.multiclass`); ``None`` for two classes."""
    labels = None
    if classes_text:
        try:
            labels = json.loads(classes_text)
        except json.JSONDecodeError:
            labels = None
        if not (isinstance(labels, list) and all(
                isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
                for v in labels)):
            raise HyperparameterError(
                f"hyperparameter 'classes': {classes_text!r} must be a JSON list of class labels "
                "(strings or integers), e.g. '[\"low\", \"medium\", \"high\"]'")
        if len(labels) < 3:
            raise HyperparameterError(
                f"hyperparameter 'classes' names {len(labels)} classes: it is for three or more "
                "(two classes are labels 0/1, or label_values_or_threshold names class 1)")
        if len(set(map(json.dumps, labels))) < len(labels):
            raise HyperparameterError("hyperparameter 'classes' names a class twice")
    matrix, named = None, ()
    if matrix_text:
        try:
            matrix, named = parse_cost_matrix(matrix_text, len(labels) if labels else None,
                                              allow_two=labels is None, columns=True)
        except CostMatrixError as exc:
            raise HyperparameterError(f"hyperparameter 'cost_matrix': {exc}") from None
        if len(matrix) == 2:  # the binary costs: parse() has moved them into cost_*
            return {"class_labels": None, "matrix": None, "matrix_columns": ()}
    if labels is None and matrix is None:
        return {"class_labels": None, "matrix": None, "matrix_columns": ()}
    k = len(labels) if labels else len(matrix)
    if matrix is None:
        matrix = 1.0 - np.eye(k)
    return {"class_labels": tuple(labels) if labels else tuple(range(k)),
            "matrix": tuple(tuple(float(c) for c in row) for row in matrix),
            "matrix_columns": named}


BINARY_CELLS = {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}  # C[true][decided]


def binary_matrix(values: dict, given: Mapping[str, str]) -> None:
    """A 2 x 2 ``cost_matrix`` ``[[tn, fp], [fn, tp]]`` is the binary costs: into ``cost_*``, and
    a cell naming a column into ``cost_<cell>_column`` (the same model as those spellings)."""
    if not values["cost_matrix"] or values["classes"]:
        return
    try:
        matrix, named = parse_cost_matrix(values["cost_matrix"], allow_two=True, columns=True)
    except CostMatrixError:
        return  # Settings reports it
    if len(matrix) != 2:
        return
    twice = [name for cell in CELLS for name in (f"cost_{cell}", f"cost_{cell}_column")
             if name in given]
    if twice:
        raise HyperparameterError(
            f"hyperparameters 'cost_matrix' and {', '.join(repr(t) for t in twice)} both give the "
            "binary costs; give them once")
    (tn, fp), (fn, tp) = matrix.tolist()
    at = {cell: f"C[{i}][{j}]" for (i, j), cell in BINARY_CELLS.items()}
    problem = CostMatrix(fp=fp, fn=fn, tp=tp, tn=tn).problem(
        lambda cell, value: f"{at[cell]} (cost_{cell}, {value:g})")
    if problem:
        raise HyperparameterError(f"hyperparameter 'cost_matrix': {problem}")
    values.update(cost_tn=tn, cost_fp=fp, cost_fn=fn, cost_tp=tp)
    # a named cell is that cell's cost column, spelt as cost_<cell>_column
    values.update({f"cost_{BINARY_CELLS[at]}_column": name for at, name in named})


# What a multi-class job does not do yet, each with the reason a job that sets it is refused
MULTICLASS_REFUSED = {
    "decision_rule": "more than two classes are decided by the Bayes rule only",
    "objective": "more than two classes train the multi-class softmax loss, weighted by "
                 "cost_weight_exponent (0: unweighted)",
    **{f"cost_{cell}": "it is a binary cost; with more than two classes cost_matrix holds the "
                       "costs" for cell in CELLS},
    **{f"cost_{cell}_column": "it names a binary cell's column; with more than two classes "
                              "name the column in its cell of cost_matrix (e.g. "
                              "[[0,\"refuse_cost\",1],...])" for cell in CELLS},
}


def check_multiclass(s, given: set[str]) -> None:
    for name in sorted(given & set(MULTICLASS_REFUSED)):
        raise HyperparameterError(f"hyperparameter '{name}' with {len(s.class_labels)} classes: "
                                  f"{MULTICLASS_REFUSED[name]}")
    if s.facet_column and not s.label_values_or_threshold:
        raise HyperparameterError(
            "hyperparameter 'label_values_or_threshold' is required with 'facet_column' and more "
            "than two classes: the favourable classes, whose decisions the bias metrics compare "
            f"(e.g. '{json.dumps([s.class_labels[-1]])}')")
    if s.label_values is not None:
        favourable = s.favourable
        if isinstance(s.label_values, list):
            unknown = [v for v in s.label_values if class_index(s.class_labels, v) is None]
            if unknown:
                raise HyperparameterError(
                    f"hyperparameter 'label_values_or_threshold': {json.dumps(unknown)[:80]} "
                    f"{'is not a class' if len(unknown) == 1 else 'are not classes'} of "
                    f"{json.dumps(list(s.class_labels))[:200]}")
        elif not all(isinstance(c, int) for c in s.class_labels):
            raise HyperparameterError(
                "hyperparameter 'label_values_or_threshold': a threshold needs numeric classes; "
                "name the favourable classes as a JSON list")
        if not favourable or len(favourable) == len(s.class_labels):
            raise HyperparameterError(
                "hyperparameter 'label_values_or_threshold' makes "
                f"{'no' if not favourable else 'every'} class favourable: the bias metrics need "
                "favourable and other classes")
