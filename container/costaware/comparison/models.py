"""What a comparison needs of each model: its spec (request columns, classes, costs, facet), from
a model directory, its ``model.tar.gz``, or its baseline's ``constraints.json``; and, for a
replay, the challenger's decisions on the champion's captured requests."""

from __future__ import annotations

import os

import numpy as np

from ..model.inference import RowError
from ..monitoring.capture import Counts
from ..monitoring.decided_rows import DecidedRows
from ..monitoring.job import JobError, _model_directory, read_json
from ..monitoring.model_spec import ModelSpec

REPLAY_REFUSES = "replayed requests the challenger refuses (no twin: not compared)"
MODEL_FILES = ("metadata.json", "model.tar.gz")  # a model named by its file: its folder


def load_model_or_spec(path: str, what: str, need_model: bool = False):
    """``(spec, model or None)`` from a model directory, a ``model.tar.gz``'s directory, or a
    baseline's constraints.json (module docstring)."""
    from ..model.artifact import ModelLoadError, load

    if os.path.isfile(path) and os.path.basename(path) in MODEL_FILES:  # the model's folder
        path = os.path.dirname(path) or "."
    if os.path.isdir(path) and (os.path.isfile(os.path.join(path, "metadata.json"))
                                or os.path.isfile(os.path.join(path, "model.tar.gz"))):
        try:
            with _model_directory(path) as directory:
                model = load(directory)
        except ModelLoadError as exc:
            raise JobError(f"{what} {path}: {exc}") from None
        try:
            return _usable(ModelSpec.of_metadata(model.metadata), f"{what} {path}"), model
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(f"{what} {path}: its metadata.json lacks {exc}") from None
    if need_model:
        raise JobError(f"{what} {path} holds no model (metadata.json or model.tar.gz): "
                       "a replay scores the challenger's model")
    constraints = os.path.join(path, "constraints.json") if os.path.isdir(path) else path
    if not os.path.isfile(constraints):
        raise JobError(f"{what} {path} holds no model (metadata.json, model.tar.gz) and no "
                       "baseline constraints.json")
    document = read_json(constraints, what)
    try:
        spec = ModelSpec.from_dict(document["costaware"]["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise JobError(f"{what} {constraints} is not a costaware baseline (missing {exc})") from None
    return _usable(spec, f"{what} {constraints}"), None


def _usable(spec: ModelSpec, where: str) -> ModelSpec:
    """``spec`` once its request layout and facet apply to a request row (a hand-edited spec,
    or one from another version, may not): else the job's one-line reason."""
    try:
        spec.sensitive(np.zeros((1, len(spec.request_columns))))
        _ = spec.layout
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise JobError(f"{where}: its model's facet or request columns cannot be applied "
                       f"({exc})") from None
    return spec


def replayed(model, spec: ModelSpec, pricing: ModelSpec, counts: Counts):
    """The challenger's decisions on a batch of the champion's captured rows, priced (like the
    champion's) at the champion's costs: ``(rows, has_costs, champion's) -> DecidedRows``.
    The rows were decoded as the champion reads them; the challenger decides each at its own
    cost columns where the row carries them, as it would have served it. A row it would have
    refused (its own cost cells, or its facet, invalid to it) is left out, counted: its champion
    decision has no twin."""
    own_cells = spec.layout.cost_cells
    columns = [spec.request_columns.index(name) for _, name in spec.policy.cost_columns]

    def decides(p: np.ndarray, rows: np.ndarray, has_costs) -> bool:
        try:
            spec.decide(p, rows, has_costs)
        except RowError:
            return False
        return True

    def decide(rows: np.ndarray, has_costs, champion: DecidedRows) -> DecidedRows:
        if own_cells != pricing.layout.cost_cells:
            carried = ~np.isnan(rows[:, columns]).all(axis=1) if columns else None
            has_costs = carried if carried is not None and carried.any() else None
        p = model.probability(rows[:, :spec.feature_count])
        try:
            mine = spec.decide(p, rows, has_costs, champion.label, champion.sensitive)
        except RowError:  # a row at fault: each row checked alone, the refused left out
            keep = np.array([decides(p[i:i + 1], rows[i:i + 1],
                                     None if has_costs is None else has_costs[i:i + 1])
                             for i in range(len(rows))], dtype=bool)
            counts.add(REPLAY_REFUSES, n=int(np.count_nonzero(~keep)))
            champion, rows, p = champion.take(keep), rows[keep], p[keep]
            has_costs = None if has_costs is None else has_costs[keep]
            mine = spec.decide(p, rows, has_costs, champion.label, champion.sensitive)
        mine.costs, mine.keys, mine.times, mine.events = (champion.costs, champion.keys,
                                                          champion.times, champion.events)
        return mine

    return decide
