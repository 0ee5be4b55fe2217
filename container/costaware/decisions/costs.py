"""Costs and the decisions they imply: pure numpy, no I/O.

Notation: ``p`` is the probability that a row is of class 1; each row ``i`` has the costs
``C_TP,i, C_FP,i, C_FN,i, C_TN,i`` of the four outcomes (class costs, or a row's own from the cost
columns). Deciding 1 costs in expectation ``p C_TP + (1-p) C_FP``; deciding 0 costs
``p C_FN + (1-p) C_TN``. The **Bayes rule** decides 1 exactly when

    p C_TP,i + (1-p) C_FP,i  <=  p C_FN,i + (1-p) C_TN,i,

i.e. (with the regrets ``r1 = C_FN - C_TP`` of missing a positive and ``r0 = C_FP - C_TN`` of a false
alarm, both >= 0) when ``p >= p*_i = r0 / (r0 + r1)``, the row's Bayes threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

CELLS = ("fp", "fn", "tp", "tn")  # the order of every per-cell list: hyperparameters, columns
CELL_MEANING = {"fp": "decide 1, truth 0", "fn": "decide 0, truth 1", "tp": "decide 1, truth 1",
                "tn": "decide 0, truth 0"}
# A regret within this share of the row's largest cost is rounding, not a cost (0.3 - 0.1 - 0.2
# is -2.8e-17): it counts as 0, so that no weight is ever negative.
ROUNDING = 1e-12


@dataclass(frozen=True)
class CostMatrix:
    """Class-level costs of the four outcomes."""

    fp: float
    fn: float
    tp: float = 0.0
    tn: float = 0.0

    def as_dict(self) -> dict:
        return {f"cost_{cell}": getattr(self, cell) for cell in CELLS}

    @classmethod
    def from_dict(cls, d: dict) -> "CostMatrix":
        return cls(fp=float(d["cost_fp"]), fn=float(d["cost_fn"]), tp=float(d.get("cost_tp", 0.0)),
                   tn=float(d.get("cost_tn", 0.0)))

    def problem(self, describe=lambda cell, value: f"cost_{cell} ({value:g})") -> str | None:
        """Why these class costs leave nothing to decide, or ``None``.

        Deciding 1 must cost more than deciding 0 for some probability and less for another:
        ``C_FP > C_TN`` (a false alarm costs more than a correct rejection) and ``C_FN > C_TP``
        (a miss costs more than a hit). ``describe(cell, value)`` names a cost in the message.
        """
        if not self.fp > self.tn:
            return (f"{describe('fp', self.fp)} must exceed {describe('tn', self.tn)}: otherwise "
                    "deciding 1 is never worse for a negative row and every decision would be 1")
        if not self.fn > self.tp:
            return (f"{describe('fn', self.fn)} must exceed {describe('tp', self.tp)}: otherwise "
                    "deciding 0 is never worse for a positive row and every decision would be 0")
        return None

    def bayes_threshold(self) -> float:
        """``p* = (C_FP - C_TN) / (C_FP - C_TN + C_FN - C_TP)``."""
        r0, r1 = self.fp - self.tn, self.fn - self.tp
        return r0 / (r0 + r1)


# rows a per-row computation over a whole channel reads at a time (metric summaries, shift
# histograms, decisions): its float64 temporaries stay bounded on channels of millions of rows
ROW_BLOCK = 1 << 18


def row_blocks(n: int) -> list[slice]:
    """``n`` rows as slices of at most :data:`ROW_BLOCK` rows (one slice up to it)."""
    return [slice(start, start + ROW_BLOCK) for start in range(0, max(n, 1), ROW_BLOCK)]


def _repeated(value: float, n: int) -> np.ndarray:
    return np.broadcast_to(np.float64(value), (n,))


def _rows_of(values: np.ndarray, index) -> np.ndarray:
    """``values[index]``, a repeated value staying one (no copy of a value per row)."""
    if values.ndim == 1 and values.strides == (0,) and len(values):
        return _repeated(values[0], len(np.empty(len(values), dtype=np.bool_)[index]))
    return values[index]


@dataclass(frozen=True)
class RowCosts:
    """Each row's four costs, arrays of equal length (float64)."""

    fp: np.ndarray
    fn: np.ndarray
    tp: np.ndarray
    tn: np.ndarray

    @classmethod
    def constant(cls, costs: CostMatrix, n: int) -> "RowCosts":
        """The class costs for each of ``n`` rows."""
        return cls.from_columns(costs, n)

    @classmethod
    def from_columns(cls, costs: CostMatrix, n: int, columns: dict | None = None) -> "RowCosts":
        """The class cost of every cell, except the cells in ``columns`` (cell -> array of ``n``),
        which take the row's own. A class cost is one value seen ``n`` times (a read-only
        broadcast): 8 bytes a row saved per cell, which a job of millions of rows feels."""
        columns = columns or {}
        return cls(*(np.asarray(columns[cell], dtype=np.float64) if cell in columns
                     else _repeated(getattr(costs, cell), n) for cell in CELLS))

    @classmethod
    def concat(cls, parts: list["RowCosts"]) -> "RowCosts":
        """The rows of ``parts`` one after another; a cell that is one repeated value in every
        part (a class cost, :meth:`from_columns`) stays one value, not 8 bytes a row (a channel
        read in batches is joined from them: 2,000,000 rows' four cells were 61 MiB)."""
        def joined(arrays: list[np.ndarray]) -> np.ndarray:
            values = {float(a[0]) for a in arrays if len(a) and a.strides == (0,)}
            if len(values) == 1 and all(a.strides == (0,) or not len(a) for a in arrays):
                return _repeated(values.pop(), sum(len(a) for a in arrays))
            return np.concatenate(arrays)

        return cls(*(joined([getattr(part, cell) for part in parts]) for cell in CELLS))

    def __len__(self) -> int:
        return len(self.fp)

    def subset(self, index) -> "RowCosts":
        return RowCosts(*(_rows_of(getattr(self, cell), index) for cell in CELLS))

    def regrets(self) -> tuple[np.ndarray, np.ndarray]:
        """``(r1, r0) = (C_FN - C_TP, C_FP - C_TN)``, rounding residues set to exactly 0."""
        return _regret(self.fn, self.tp), _regret(self.fp, self.tn)

    def expected(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(E[cost | decide 1], E[cost | decide 0]) = (p C_TP + (1-p) C_FP, p C_FN + (1-p) C_TN)``."""
        p = np.asarray(p, dtype=np.float64)
        q = 1.0 - p
        return p * self.tp + q * self.fp, p * self.fn + q * self.tn

    def bayes_threshold(self) -> np.ndarray:
        """Each row's ``p* = r0 / (r0 + r1)`` when both regrets are positive; 0 when ``r0 <= 0 < r1``
        (deciding 1 is never worse), 1 when ``r1 <= 0 < r0`` (deciding 1 pays at certainty at
        best, and not even then when ``r1 < 0``). Rows with neither regret positive reverse the
        rule and are refused by :func:`check_row_costs`; their threshold is NaN."""
        r1, r0 = self.regrets()
        with np.errstate(invalid="ignore", divide="ignore"):
            p_star = r0 / (r0 + r1)
        return np.select([(r0 > 0) & (r1 > 0), r1 > 0, r0 > 0], [p_star, 0.0, 1.0], np.nan)

    def realised(self, label: np.ndarray, decision: np.ndarray) -> np.ndarray:
        """Cost of each row's decision given its true label (its TP, FP, FN or TN cost)."""
        y = np.asarray(label) == 1
        d = np.asarray(decision) == 1
        return np.where(d, np.where(y, self.tp, self.fp), np.where(y, self.fn, self.tn))


def _regret(mistake: np.ndarray, correct: np.ndarray) -> np.ndarray:
    regret = mistake - correct
    scale = np.maximum(np.abs(mistake), np.abs(correct))
    return np.where(np.abs(regret) <= ROUNDING * scale, 0.0, regret)


def bayes_decision(p: np.ndarray, costs: RowCosts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(decision, cost_if_1, cost_if_0)``: decide 1 exactly when ``cost_if_1 <= cost_if_0``, both
    computed by :meth:`RowCosts.expected` (so the decision always agrees with the two numbers)."""
    cost_if_1, cost_if_0 = costs.expected(p)
    return (cost_if_1 <= cost_if_0).astype(np.int8), cost_if_1, cost_if_0


def decision_margin(p: np.ndarray, costs: RowCosts) -> np.ndarray:
    """``z_i = logit(p_i) - logit(p*_i) = log(p r1) - log((1-p) r0)``: how far a row is from its
    decision boundary, in log-odds. The Bayes rule decides 1 iff ``z >= 0``; a shifted rule
    (:func:`shifted_decision`) iff ``z >= delta``. ``+inf`` when deciding 1 never costs more,
    ``-inf`` when it always costs more. Where the logarithms cannot say (a regret <= 0, or ``p``
    at 0 or 1), the sign comes from the Bayes rule itself, ``p r1 >= (1-p) r0``."""
    p = np.asarray(p, dtype=np.float64)
    r1, r0 = costs.regrets()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.log(p) + np.log(r1)) - (np.log1p(-p) + np.log(r0))
    undefined = np.isnan(z)
    if not undefined.any():
        return z
    decides_1 = p * r1 >= (1.0 - p) * r0
    return np.where(undefined, np.where(decides_1, np.inf, -np.inf), z)


def shifted_decision(p: np.ndarray, costs: RowCosts, shift: np.ndarray | float) -> np.ndarray:
    """Decide 1 iff ``p r1 >= (1-p) r0 exp(shift)``, i.e. ``z >= shift`` (see
    :func:`decision_margin`): the Bayes rule at costs whose false-alarm regret is scaled by
    ``exp(shift)``. ``shift`` is a number or one per row (a facet's)."""
    p = np.asarray(p, dtype=np.float64)
    r1, r0 = costs.regrets()
    return (p * r1 >= (1.0 - p) * r0 * np.exp(shift)).astype(np.int8)


def bad_cost(values: np.ndarray) -> tuple[int, str] | None:
    """The first of ``values`` that is not a finite number >= 0: its index and how it reads
    (``missing``, ``-3``); ``None`` when every one is a cost."""
    bad = ~np.isfinite(values) | (values < 0)
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    return i, "missing" if math.isnan(values[i]) else f"{values[i]:g}"


def check_row_costs(costs: RowCosts, where, columns: dict, training: bool) -> None:
    """Refuse cost cells no decision can use; ``where(i)`` names row ``i`` (file and line),
    ``columns`` maps a cell to how its cost is given (a column, or the class cost).

    Every cost must be a finite number >= 0, and at least one regret must be positive: with
    ``r1 = r0 = 0`` both decisions cost the same whatever happens, and with neither positive (and
    one negative) the rule turns round (decide 1 when ``p`` is *low*), which means the cells were
    named the wrong way round. In training both regrets must be >= 0 (up to rounding): the loss
    weights a row's mistake by its regret, and a correct decision that costs more than the mistake
    has no weight to give. In serving one negative regret is a dominated decision (a customer whose
    value is below the cost of contacting them) and is decided so.
    """
    for cell in CELLS:
        bad = bad_cost(getattr(costs, cell))
        if bad is not None:
            raise DataError(f"{where(bad[0])}, {columns[cell]}: {bad[1]}; costs must be "
                            "numbers >= 0")
    r1, r0 = costs.regrets()
    both = (r1 == 0) & (r0 == 0)
    if both.any():
        i = int(np.flatnonzero(both)[0])
        raise DataError(
            f"{where(i)}: {columns['fn']} ({costs.fn[i]:g}) equals {columns['tp']} ({costs.tp[i]:g}) "
            f"and {columns['fp']} ({costs.fp[i]:g}) equals {columns['tn']} ({costs.tn[i]:g}): both "
            "decisions cost the same whatever the outcome, so there is nothing to decide")
    reversed_rule = (r1 <= 0) & (r0 <= 0)
    if not training and reversed_rule.any():
        i = int(np.flatnonzero(reversed_rule)[0])
        raise DataError(
            f"{where(i)}: {columns['tp']} ({costs.tp[i]:g}) is not below {columns['fn']} "
            f"({costs.fn[i]:g}) and {columns['tn']} ({costs.tn[i]:g}) is not below {columns['fp']} "
            f"({costs.fp[i]:g}): each correct decision would cost at least as much as its "
            "mistake, so the cells are named the wrong way round")
    if not training:
        return
    for regret, mistake, correct in ((r1, "fn", "tp"), (r0, "fp", "tn")):
        negative = regret < 0
        if negative.any():
            i = int(np.flatnonzero(negative)[0])
            raise DataError(
                f"{where(i)}: {columns[correct]} ({getattr(costs, correct)[i]:g}) exceeds "
                f"{columns[mistake]} ({getattr(costs, mistake)[i]:g}): the correct decision "
                "would cost more than the mistake; training weights each row by the difference, "
                "which must be >= 0")


def logit(p):
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function ``1 / (1 + exp(-x))``."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out

CAP = 10.0  # a regret counts between 1/CAP and CAP times the mean regret
