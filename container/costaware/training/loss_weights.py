"""Each training row's loss weight, kept as what it is: one value a class when every row of a
class weighs the same (class costs, the usual case), else one value a row.

The objectives read the weights a block of rows at a time, every round, for the whole of
training; a weight that follows the label costs K values instead of 4 bytes a row (8 with K >= 3
classes, whose weights are float64), and so does each cross-fitting fold model's copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LossWeights:
    """``w_i = per_row[i]``, or ``w_i = per_class[y_i]`` (exactly one of them is set)."""

    per_row: np.ndarray | None = None
    per_class: np.ndarray | None = None

    @classmethod
    def of(cls, weight, label: np.ndarray, classes: int) -> "LossWeights":
        """``weight`` (one a row; already :class:`LossWeights`: as it is) kept as ``classes``
        values when the rows of each class share one, the same values bit for bit."""
        if isinstance(weight, LossWeights):
            return weight
        weight = np.asarray(weight)
        label = np.asarray(label)
        if label.dtype.kind not in "iu" or (label.size and (label.min() < 0
                                                            or label.max() >= classes)):
            return cls(per_row=weight)  # (labels that do not index K values: as they are)
        per_class = np.zeros(classes, dtype=weight.dtype)
        for k in range(classes):
            own = weight[label == k]
            if own.size and np.any(own != own[0]):
                return cls(per_row=weight)
            per_class[k] = own[0] if own.size else 0
        return cls(per_class=per_class)

    def block(self, label: np.ndarray, rows) -> np.ndarray:
        """The weights of the rows ``rows`` (a slice or index), whose labels are ``label[rows]``."""
        if self.per_row is not None:
            return self.per_row[rows]
        return self.per_class.take(label[rows])  # (take: the fastest gather of K values here)

    def positive(self, label: np.ndarray) -> np.ndarray:
        """Which rows weigh (``w_i > 0``; a row held out of a fold model weighs 0)."""
        return self.block(label, slice(None)) > 0
