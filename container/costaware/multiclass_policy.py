"""The decision policy of a model with more than two classes: margins -> calibrated class
probabilities -> the decision with the least expected cost (:mod:`costaware.multiclass`).

Saved in ``metadata.json`` as ``{"kind": "multiclass", "classes": [...], "cost_matrix": [[...]],
"calibrator": {...}}``. A request may override the cost matrix (:meth:`with_matrix`): the
probabilities stay, the decisions follow the new costs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .multiclass import (CostMatrixError, TemperatureCalibrator, bayes_decisions,
                         parse_cost_matrix)

KIND = "multiclass"


@dataclass(frozen=True)
class MulticlassPolicy:
    classes: tuple  # each class's label, in order (strings or integers)
    matrix: tuple[tuple[float, ...], ...]  # C[true][decided]
    calibrator: TemperatureCalibrator

    # What a request row holds besides the features: nothing (no facet, no per-row costs); the
    # names a request row's Layout reads, as the binary Policy has them
    facet = None
    needs_facet = False
    cost_columns: tuple = ()

    @property
    def k(self) -> int:
        return len(self.classes)

    @property
    def cost_matrix(self) -> np.ndarray:
        return np.array(self.matrix, dtype=np.float64)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes as responses name them (a label's text)."""
        return tuple(str(c) for c in self.classes)

    def probability(self, margins: np.ndarray) -> np.ndarray:
        return self.calibrator.probability(margins)

    def decide(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(decision index, expected cost of each decision)`` per row."""
        return bayes_decisions(p, self.cost_matrix)

    def with_matrix(self, matrix: np.ndarray) -> "MulticlassPolicy":
        return replace(self, matrix=tuple(tuple(float(c) for c in row) for row in matrix))

    def to_dict(self) -> dict:
        return {"kind": KIND, "classes": list(self.classes),
                "cost_matrix": [list(row) for row in self.matrix],
                "calibrator": self.calibrator.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "MulticlassPolicy":
        classes = d.get("classes")
        if not isinstance(classes, list) or len(classes) < 3 or not all(
                isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes):
            raise ValueError("classes must be a list of three or more labels")
        if len(set(map(str, classes))) < len(classes):
            raise ValueError("classes names a class twice")
        try:
            matrix = parse_cost_matrix(d.get("cost_matrix"), len(classes))
        except CostMatrixError as exc:
            raise ValueError(f"cost_matrix: {exc}") from None
        if not isinstance(d.get("calibrator"), dict):
            raise ValueError("calibrator must be a JSON object")
        calibrator = TemperatureCalibrator.from_dict(d["calibrator"])
        if calibrator.bias and len(calibrator.bias) != len(classes):
            raise ValueError(f"the calibrator has {len(calibrator.bias)} biases for "
                             f"{len(classes)} classes")
        return cls(tuple(classes), tuple(tuple(float(c) for c in row) for row in matrix),
                   calibrator)
