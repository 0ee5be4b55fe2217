"""What monitoring needs to know of the served model, without its booster: the request columns,
the decision policy (class costs, cost columns), the classes, the facet and the favourable
classes. Saved in the baseline's constraints.json (``costaware.model``), because a Model Monitor
job gets its baseline files and the captured traffic, never the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import hyperparameters
from ..decisions.costs import CELLS
from ..metrics.clarify import positive_label_index, sensitive_facet_index
from ..model.artifact import policy_from_dict
from ..model.inference import Layout, RowError, row_costs
from .decided_rows import DecidedRows, binary_costs

CELL_INDEX = {"tn": (0, 0), "fp": (0, 1), "fn": (1, 0), "tp": (1, 1)}  # C[true, decided]


@dataclass
class ModelSpec:
    request_columns: list[str]
    feature_count: int
    policy: object  # Policy or MulticlassPolicy
    facet_column: str | None
    facet_values: object  # Clarify's values_or_threshold
    favourable: tuple[int, ...]
    label_values: object  # binary: which label values are class 1 (None: the label is 0/1)

    @classmethod
    def of_metadata(cls, metadata: dict) -> "ModelSpec":
        """From a model's metadata.json (the saved hyperparameters say the facet and classes)."""
        settings = hyperparameters.parse_saved(metadata.get("hyperparameters") or {})
        policy = policy_from_dict(metadata["decision_policy"])
        favourable = tuple(settings.favourable) if policy.k > 2 else (1,)
        return cls(list(metadata.get("request_columns") or metadata["feature_names"]),
                   len(metadata["feature_names"]), policy, settings.facet_column or None,
                   settings.facet_values, favourable,
                   settings.label_values if policy.k == 2 else None)

    def to_dict(self) -> dict:
        return {"request_columns": self.request_columns, "feature_count": self.feature_count,
                "decision_policy": self.policy.to_dict(), "facet_column": self.facet_column,
                "facet_values": self.facet_values, "favourable": list(self.favourable),
                "label_values": self.label_values}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(list(d["request_columns"]), int(d["feature_count"]),
                   policy_from_dict(d["decision_policy"]), d.get("facet_column"),
                   d.get("facet_values"), tuple(d.get("favourable") or (1,)),
                   d.get("label_values"))

    @property
    def k(self) -> int:
        return self.policy.k

    @property
    def classes(self) -> list:
        return list(self.policy.classes) if self.k > 2 else [0, 1]

    @property
    def score_names(self) -> list[str]:
        """The score columns monitored: ``score`` (P(1)) with two classes, else
        ``probability_<class>`` per class."""
        if self.k == 2:
            return ["score"]
        return [f"probability_{c}" for c in self.policy.class_names]

    @property
    def layout(self) -> Layout:
        policy = self.policy
        facet = None
        if policy.needs_facet and policy.facet is not None:
            facet = self.request_columns.index(policy.facet["column"])
        return Layout(tuple(self.request_columns), self.feature_count, facet,
                      tuple(cell for cell, _ in policy.cost_columns))

    @property
    def facet_index(self) -> int | None:
        """The facet's request column, when requests carry it (a feature, or a rule's facet)."""
        if self.facet_column and self.facet_column in self.request_columns:
            return self.request_columns.index(self.facet_column)
        return None

    def sensitive(self, rows: np.ndarray) -> np.ndarray | None:
        """Each row's facet-d mask (rows without a facet value are not in facet d)."""
        index = self.facet_index
        if index is None:
            return None
        return np.asarray(sensitive_facet_index(rows[:, index], self.facet_values), dtype=bool)

    def costs(self, rows: np.ndarray, has_costs: np.ndarray | None) -> np.ndarray:
        """Each row's ``C[true, decided]``, ``(n, K, K)``: its own cost cells where it has them,
        the class costs elsewhere (:func:`costaware.model.inference.row_costs`, which checks
        them as serving does: :class:`~costaware.model.inference.RowError`)."""
        return self._tensor(self._cells(rows, has_costs), len(rows))

    def _cells(self, rows: np.ndarray, has_costs: np.ndarray | None):
        return row_costs(self.policy, self.layout, rows, has_costs, lambda i: f"row {i + 1}")

    def _tensor(self, cells, n: int) -> np.ndarray:
        policy = self.policy
        if policy.k == 2:
            return binary_costs(cells.fp, cells.fn, cells.tp, cells.tn)
        out = np.broadcast_to(policy.cost_matrix, (n, policy.k, policy.k)).copy()
        for (true, decided), values in (cells or {}).items():
            out[:, true, decided] = values
        return out

    def decide(self, p: np.ndarray, rows: np.ndarray, has_costs: np.ndarray | None,
               label: np.ndarray | None = None, sensitive: np.ndarray | None = None
               ) -> DecidedRows:
        """Rows decided as the served model decides them, from their calibrated probabilities
        ``p`` (``P(1)`` with two classes, ``(n, K)`` with more) and request rows;
        ``sensitive``: the facet when the request rows do not carry it."""
        policy = self.policy
        cells = self._cells(rows, has_costs)
        rule_facet = None
        if policy.needs_facet:
            rule_facet = np.asarray(sensitive_facet_index(rows[:, self.layout.facet],
                                                          policy.facet["values_or_threshold"]),
                                    dtype=bool)
        if policy.k == 2:
            p1 = np.asarray(p, dtype=np.float64).reshape(-1)
            decision = np.asarray(policy.decide(p1, cells, rule_facet)[0], dtype=np.int64)
            probabilities = np.column_stack([1.0 - p1, p1])
        else:
            probabilities = np.asarray(p, dtype=np.float64)
            decision = np.asarray(policy.decide(probabilities, rule_facet, cells)[0],
                                  dtype=np.int64)
        if sensitive is None:
            sensitive = self.sensitive(rows)
        return DecidedRows(probabilities, decision, self._tensor(cells, len(rows)),
                           None if label is None else np.asarray(label, dtype=np.int64),
                           sensitive, self.favourable)

    def label_index(self, text: str) -> int | None:
        """A ground-truth label's class index (None: not a label of this model)."""
        text = text.strip()
        if self.k > 2:
            for i, c in enumerate(self.policy.classes):
                if text == str(c):
                    return i
            return None
        try:
            value = float(text)
        except ValueError:
            value = None
        if self.label_values is None:  # training took 0 and 1 only
            return int(value) if value in (0.0, 1.0) else None
        try:  # Clarify's rule, as training applied it (data/channel_files.py)
            given = np.asarray([text if value is None else value], dtype=object)
            return int(positive_label_index(given, self.label_values)[0])
        except (TypeError, ValueError):
            return None


assert set(CELL_INDEX) == set(CELLS)
