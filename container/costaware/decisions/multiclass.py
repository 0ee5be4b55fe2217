"""More than two classes: the K x K cost matrix, Bayes decisions, the calibrator and the loss.

Notation: ``K`` classes ``0..K-1``; ``P`` an ``(n, K)`` matrix of probabilities (rows sum to 1);
``C`` the cost matrix, ``C[k][j]`` the cost of deciding ``j`` when the true class is ``k``.

* **Expected cost** of each decision: ``E = P @ C``, ``E[i, j] = sum_k P[i, k] C[k][j]``.
* **Bayes decision**: ``argmin_j E[i, j]`` (ties go to the lower class index).
* **A valid matrix**: square, at least 3 x 3 (two classes are the binary ``cost_*``), finite, no
  cost below 0, and no decision that *dominates*: a column ``j`` with ``C[k][j] <= C[k][i]`` for
  every true class ``k`` and every other decision ``i`` would decide every row ``j`` whatever the
  probabilities, so a model could not change a single decision.
* **Calibrator** (vector scaling with one temperature): ``q = softmax(a z + b)`` from the model's
  margins ``z``, ``a = 1 / T > 0`` the inverse temperature, ``b`` a bias per class with ``b_0 = 0``;
  as the binary calibrator (:mod:`costaware.decisions.calibration`: the slope ``a``, the intercept ``b``) a
  MAP fit with a Gaussian prior centred on no correction,

      y_i ~ Categorical(softmax(a z_i + b)),   (a, b_1..b_{K-1}) ~ Normal((1, 0..0), I / lambda),

  ``lambda = calibration.PRIOR_PRECISION``: L-BFGS on the negative log posterior
  ``-sum_i log q[i, y_i] + lambda/2 ((a - 1)^2 + |b|^2)`` with its exact gradient, from
  ``a = 1, b = 0``, ``a >= 1 / MAX_TEMPERATURE``. Without the prior, held-out rows that the
  margins separate perfectly drive ``a`` and ``b`` to infinity (every probability 0 or 1, and a
  row on a class boundary gets its true class's probability 1e-150); with it, the evidence of
  ``n`` rows has to outweigh a prior of standard deviation 10, and many rows make it plain
  maximum likelihood. One temperature keeps the order of each row's margins' differences; the
  biases correct each class's base rate.
The cost-weighted loss on these classes is :mod:`costaware.training.class_objective`'s; a channel's metrics
are :mod:`costaware.metrics.multiclass_metrics`'.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .calibration import PRIOR_PRECISION
from .costs import row_blocks
from ..cluster import SOLO, Reduce

MAX_CLASSES = 50  # a cost matrix of 2,500 cells: more is not a cost matrix anyone writes by hand
MAX_TEMPERATURE = 1e3  # 1/T stays above 1e-3: the probabilities stay a function of the margins


class CostMatrixError(ValueError):
    """A cost matrix that cannot decide; the message is one line."""


def parse_cost_matrix(text, classes: int | None = None, allow_two: bool = False,
                      columns: bool = False):
    """``C`` from its JSON text (or an already parsed list), checked as the module docstring says;
    ``classes``: the K it must have; ``allow_two``: a 2 x 2 matrix (the binary costs, which their
    own check, :meth:`costaware.decisions.costs.CostMatrix.problem`, then judges) is returned unjudged.
    ``columns``: a cell may instead name the column that holds each row's cost of that cell
    (``[[0, "refuse_cost"], ["loss_given_default", 0]]``); then ``(C, named)`` is returned,
    ``named`` the ``((true, decided), column)`` of each such cell in row order, and ``C`` holds
    the class cost of a named cell: 1 off the diagonal, 0 on it (the default matrix, as
    ``cost_fp`` ... default for two classes), which decides the rows that do not carry their own.
    Raises :class:`CostMatrixError` with one line."""
    value = text
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CostMatrixError(f"not JSON ({exc.msg} at character {exc.pos})") from None
        except RecursionError:  # lists nested thousands deep
            raise CostMatrixError("lists nested too deeply: a matrix is a list of rows") from None
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        raise CostMatrixError("must be a JSON list of rows, one per true class, e.g. "
                              "[[0,1,4],[1,0,2],[8,2,0]]")
    k = len(value)
    for i, row in enumerate(value):
        if len(row) != k:
            raise CostMatrixError(f"row {i} has {len(row)} values, the matrix has {k} rows: it "
                                  "must be square (C[true][decided])")
        for j, cell in enumerate(row):
            if columns and isinstance(cell, str):
                continue  # a column's name (_named_cells checks it)
            if isinstance(cell, bool) or not isinstance(cell, (int, float)):
                what = "a number or the name of a cost column" if columns else "a number"
                raise CostMatrixError(f"C[{i}][{j}] is {json.dumps(cell)[:80]}, not {what}")
            if not math.isfinite(cell) or cell < 0:
                raise CostMatrixError(f"C[{i}][{j}] is {cell}: costs must be finite and not "
                                      "below 0")
    if k > MAX_CLASSES:
        raise CostMatrixError(f"{k} classes: at most {MAX_CLASSES}")
    if classes is not None and k != classes:
        raise CostMatrixError(f"{k} x {k}, but there are {classes} classes")
    named = _named_cells(value) if columns else ()
    matrix = np.array([[float(i != j) if isinstance(cell, str) else cell
                        for j, cell in enumerate(row)] for i, row in enumerate(value)],
                      dtype=np.float64)
    if columns:
        return parse_cost_matrix(matrix.tolist(), classes, allow_two), named
    if k == 2 and allow_two:
        return matrix
    if k < 3:
        raise CostMatrixError(f"{k} x {k}: a multi-class matrix has three or more rows"
                              + (" (two classes: cost_fp, cost_fn, cost_tp, cost_tn)"
                                 if k == 2 else ""))
    problem = matrix_problem(matrix)
    if problem:
        raise CostMatrixError(problem)
    return matrix


def _named_cells(value: list) -> tuple[tuple[tuple[int, int], str], ...]:
    """The cells of a parsed matrix that name a column: ``((true, decided), name)``; a name is
    not blank, and names one cell only."""
    named, seen = [], {}
    for i, row in enumerate(value):
        for j, cell in enumerate(row):
            if not isinstance(cell, str):
                continue
            name = cell.strip()
            if not name:
                raise CostMatrixError(f"C[{i}][{j}] is a blank column name")
            if name in seen:
                raise CostMatrixError(f"C[{seen[name][0]}][{seen[name][1]}] and C[{i}][{j}] name "
                                      f"the same column ({name!r}); give each cost cell its own "
                                      "column")
            seen[name] = (i, j)
            named.append(((i, j), name))
    return tuple(named)


def matrix_column_names(columns: tuple, named_columns: bool) -> tuple:
    """Per cell read from a column, the name a request carries its value under: the training
    column's name when the files had names, else ``cost_<true>_<decided>``."""
    return tuple(((i, j), spec if named_columns and not spec.isdigit() else f"cost_{i}_{j}")
                 for (i, j), spec in columns)


def matrix_problem(matrix: np.ndarray) -> str | None:
    """Why ``matrix`` cannot decide (a dominating decision), or ``None``."""
    k = len(matrix)
    for j in range(k):
        others = np.delete(matrix, j, axis=1)
        if np.all(matrix[:, [j]] <= others):
            return (f"deciding class {j} costs no more than any other decision whatever the true "
                    f"class (column {j} is the lowest in every row): every row would be decided "
                    f"{j}, whatever the model says")
    return None


def expected_costs(p: np.ndarray, matrix: np.ndarray, cells: dict | None = None) -> np.ndarray:
    """``E = P @ C``: each row's expected cost of each decision. With per-row ``cells``
    (``(k, j)`` -> each row's cost ``c_i`` of that cell), each row at its own matrix ``C_i`` (``C``
    with those cells replaced by the row's):

        E[i, j] = sum_k P[i, k] C_i[k][j]
                = (P @ C)[i, j] + sum_{(k, j) named} P[i, k] (c_i - C[k][j]),

    so a row whose cells equal the class costs gets exactly ``P @ C``."""
    e = np.asarray(p, dtype=np.float64) @ matrix
    for (k, j), values in (cells or {}).items():
        e[:, j] += p[:, k] * (np.asarray(values, dtype=np.float64) - matrix[k, j])
    return e


def bayes_decisions(p: np.ndarray, matrix: np.ndarray, cells: dict | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(argmin_j E[i, j], E)`` (ties: the lower class), each row at its own matrix
    (:func:`expected_costs`)."""
    e = expected_costs(p, matrix, cells)
    return np.argmin(e, axis=1).astype(np.int64), e


def row_regrets(label: np.ndarray, matrix: np.ndarray, cells: dict | None = None) -> np.ndarray:
    """Each row's regret at its own matrix ``C_i`` (:func:`expected_costs`), as
    :func:`class_regrets` is a class's: ``r_i = mean_{j != y_i} (C_i[y_i][j] - C_i[y_i][y_i])``;
    with no ``cells``, ``r_i = r_{y_i}``."""
    y = np.asarray(label, dtype=np.int64)
    k = len(matrix)
    own = true_class_costs(y, matrix, cells)
    diagonal = own[np.arange(len(y)), y]
    return (own.sum(axis=1) - k * diagonal) / (k - 1)


def true_class_costs(label: np.ndarray, matrix: np.ndarray, cells: dict | None = None
                     ) -> np.ndarray:
    """``(n, K)``: row ``i``'s cost of each decision given its true class, ``C_i[y_i][:]``."""
    y = np.asarray(label, dtype=np.int64)
    own = np.array(matrix[y], dtype=np.float64)
    for (true, decided), values in (cells or {}).items():
        at = y == true
        own[at, decided] = np.asarray(values, dtype=np.float64)[at]
    return own


def realised_costs(label: np.ndarray, decision: np.ndarray, matrix: np.ndarray,
                   cells: dict | None = None) -> np.ndarray:
    """``(n,)``: the cost of each row's decision given its true class, ``C_i[y_i][d_i]`` (the
    entry of :func:`true_class_costs` at the decision, the same number), without its ``(n, K)``
    matrix: ``C[y_i][d_i]``, or the row's own cost where ``(y_i, d_i)`` is a cell of ``cells``."""
    y = np.asarray(label, dtype=np.int64)
    d = np.asarray(decision, dtype=np.int64)
    cost = np.array(matrix[y, d], dtype=np.float64)
    for (true, decided), values in (cells or {}).items():
        at = (y == true) & (d == decided)
        cost[at] = np.asarray(values, dtype=np.float64)[at]
    return cost


def cells_of(cells: dict | None, rows) -> dict | None:
    """Per-row ``cells`` (``(true, decided)`` -> each row's cost) of the rows ``rows`` only."""
    return None if cells is None else {cell: values[rows] for cell, values in cells.items()}


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def class_regrets(matrix: np.ndarray) -> np.ndarray:
    """``r_k = mean_{j != k} (C[k][j] - C[k][k])``."""
    k = len(matrix)
    off = ~np.eye(k, dtype=bool)
    return np.array([(matrix[c][off[c]] - matrix[c][c]).mean() for c in range(k)])


@dataclass(frozen=True)
class TemperatureCalibrator:
    """``q = softmax(z / T + b)`` (module docstring: ``T = 1 / a``)."""

    temperature: float = 1.0
    bias: tuple[float, ...] = ()
    rows: int = 0  # the held-out rows it was fitted on

    def probability(self, margins: np.ndarray) -> np.ndarray:
        """``softmax(z / T + b)``, :func:`~costaware.decisions.costs.row_blocks` at a time: the
        float64 temporaries of a whole channel's ``(n, K)`` margins are not held at once."""
        margins = np.asarray(margins)
        out = np.empty(margins.shape, dtype=np.float64)
        for rows in row_blocks(len(margins)):
            z = np.asarray(margins[rows], dtype=np.float64) / self.temperature
            if self.bias:
                z = z + np.asarray(self.bias)
            out[rows] = softmax(z)
        return out

    def to_dict(self) -> dict:
        return {"kind": "temperature", "temperature": self.temperature, "bias": list(self.bias),
                "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict) -> "TemperatureCalibrator":
        if d.get("kind") != "temperature":
            raise ValueError(f"unknown multi-class calibrator {d.get('kind')!r}")
        temperature = float(d["temperature"])
        bias = tuple(float(b) for b in d.get("bias", ()))
        if not (math.isfinite(temperature) and temperature > 0
                and all(math.isfinite(b) for b in bias)):
            raise ValueError("the calibrator's temperature must be finite and above 0, its biases "
                             "finite")
        return cls(temperature, bias, int(d.get("rows", 0)))


def fit_temperature(margins: np.ndarray, label: np.ndarray, reduce: Reduce = SOLO.sum
                    ) -> TemperatureCalibrator:
    """The calibrator of the module docstring: the MAP fit on the held-out rows (L-BFGS with the
    exact gradient of the negative log posterior, starting at no correction). The likelihood's
    value and gradient are sums over the rows: ``reduce`` adds them up over the hosts, so every
    host takes the same L-BFGS steps and gets the same calibrator."""
    from scipy.optimize import minimize  # scipy comes with scikit-learn; only training needs it

    z = np.asarray(margins)  # (float32 from XGBoost: each block is read as float64)
    y = np.asarray(label, dtype=np.int64)
    k = z.shape[1]
    n = len(z)
    theta0 = np.concatenate([[1.0], np.zeros(k - 1)])  # (1/T, b_1..b_{K-1}): no correction

    def block_sums(theta, z, y):
        """The rows' ``[-sum log q[i, y_i], d loss / d a, d loss / d b_1..b_{K-1}]``."""
        z = np.asarray(z, dtype=np.float64)
        b = np.concatenate([[0.0], theta[1:]])
        s = z * theta[0] + b
        log_q = s - s.max(axis=1, keepdims=True)
        log_q = log_q - np.log(np.exp(log_q).sum(axis=1, keepdims=True))
        d_s = np.exp(log_q)  # d loss / d s = q - onehot(y)
        at = np.arange(len(y))
        d_s[at, y] -= 1.0
        return np.concatenate([[-(log_q[at, y]).sum(), (d_s * z).sum()], d_s.sum(axis=0)[1:]])

    def loss_and_grad(theta):
        # a block of rows at a time: the (rows, K) temporaries of every L-BFGS step stay bounded
        summed = reduce(np.sum([block_sums(theta, z[rows], y[rows])
                                for rows in row_blocks(n)], axis=0))
        d = theta - theta0
        return (float(summed[0]) + 0.5 * PRIOR_PRECISION * float(d @ d),
                summed[1:] + PRIOR_PRECISION * d)

    result = minimize(loss_and_grad, theta0, jac=True, method="L-BFGS-B",
                      bounds=[(1.0 / MAX_TEMPERATURE, None)] + [(None, None)] * (k - 1))
    theta = result.x
    rows = int(reduce(np.array([n], dtype=np.float64))[0])
    return TemperatureCalibrator(float(1.0 / theta[0]),
                                 tuple(float(b) for b in np.concatenate([[0.0], theta[1:]])), rows)


@dataclass(frozen=True)
class FavourableShift:
    """A decision rule under a bound on demographic parity of the favourable classes: the
    expected cost of every favourable decision lowered by ``delta_a`` for facet a's rows and by
    ``delta_d`` for facet d's, ``argmin_j (E[i, j] - delta_f(i) [j favourable])``. A row is then
    decided favourable iff ``g_i + delta_f > 0``, ``g_i = min_{j not fav} E[i, j] - min_{j fav}
    E[i, j]``, and within either set by its own least expected cost."""

    favourable: tuple[int, ...]
    delta_a: float = 0.0
    delta_d: float = 0.0
    max_abs_dppl: float | None = None
    held_out_dppl: float | None = None  # its DPPL on the held-out rows it was fitted on

    def decide(self, expected: np.ndarray, sensitive: np.ndarray | None) -> np.ndarray:
        fav = np.zeros(expected.shape[1], dtype=bool)
        fav[list(self.favourable)] = True
        if self.delta_a == self.delta_d:
            shift = np.full(len(expected), self.delta_a)
        else:
            if sensitive is None:
                raise ValueError("this rule shifts each facet's costs by its own amount: every "
                                 "row needs its facet")
            shift = np.where(np.asarray(sensitive, dtype=bool), self.delta_d, self.delta_a)
        return np.argmin(expected - shift[:, None] * fav[None, :], axis=1).astype(np.int64)

    def to_dict(self) -> dict:
        return {"kind": "constrained", "favourable": list(self.favourable),
                "shift": {"a": self.delta_a, "d": self.delta_d},
                "max_abs_dppl": self.max_abs_dppl,
                **({} if self.held_out_dppl is None else {"held_out_dppl": self.held_out_dppl})}

    @classmethod
    def from_dict(cls, d: dict, classes: int) -> "FavourableShift":
        favourable = tuple(int(i) for i in d.get("favourable", ()))
        if not favourable or not all(0 <= i < classes for i in favourable):
            raise ValueError("a constrained rule needs favourable class indices")
        shift = d.get("shift", {})
        rule = cls(favourable, float(shift.get("a", 0.0)), float(shift.get("d", 0.0)),
                   None if d.get("max_abs_dppl") is None else float(d["max_abs_dppl"]),
                   None if d.get("held_out_dppl") is None else float(d["held_out_dppl"]))
        if not (math.isfinite(rule.delta_a) and math.isfinite(rule.delta_d)):
            raise ValueError("the rule's shifts must be finite")
        return rule


def favourable_gaps(expected: np.ndarray, label: np.ndarray, favourable: tuple[int, ...],
                    matrix: np.ndarray, cells: dict | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`fit_favourable_shift` reads of each row, ``(gap, cost_fav, cost_non)``: its
    gap ``g_i = min_{j not fav} E[i, j] - min_{j fav} E[i, j]`` (:class:`FavourableShift`) and
    the realised cost ``C_i[y_i][j]`` (:func:`realised_costs`, ``cells`` each row's own cost
    cells) of its cheapest favourable decision and of its cheapest other one. Three numbers a
    row, whatever K: computed a block of rows at a time, the ``(n, K)`` expected costs need not
    be held."""
    y = np.asarray(label, dtype=np.int64)
    fav = np.zeros(matrix.shape[1], dtype=bool)
    fav[list(favourable)] = True
    e_fav = np.where(fav, expected, np.inf)
    e_non = np.where(fav, np.inf, expected)
    j_fav, j_non = e_fav.argmin(axis=1), e_non.argmin(axis=1)
    gap = e_non.min(axis=1) - e_fav.min(axis=1)
    return (gap, realised_costs(y, j_fav, matrix, cells), realised_costs(y, j_non, matrix, cells))


def fit_favourable_shift(gap: np.ndarray, cost_fav: np.ndarray, cost_non: np.ndarray,
                         sensitive: np.ndarray, favourable: tuple[int, ...], bound: float,
                         per_facet: bool = True) -> tuple[FavourableShift, float, float]:
    """The cheapest :class:`FavourableShift` on these (held-out) rows with ``|DPPL| <= bound``,
    DPPL the favourable-decision rate of facet a minus facet d's; returns it, its DPPL and its
    cost. The rows are their :func:`favourable_gaps`. Exact: each facet's rows sorted by ``g``
    give every achievable favourable count ``m_f`` (cuts between distinct ``g``) and its cost;
    the best pair within the bound is found by a sliding-window minimum over facet d's counts,
    ``O(n log n)``. ``per_facet`` False: one shift for every row (requests need no facet), the
    best cut of all rows' gaps. Deciding no row favourable meets any bound, so a rule always
    exists."""
    s = np.asarray(sensitive, dtype=bool)

    def counts(rows):
        order = np.argsort(-gap[rows], kind="stable")
        g = gap[rows][order]
        change = cost_fav[rows][order] - cost_non[rows][order]  # a row made favourable
        cumulative = np.concatenate([[0.0], np.cumsum(change)])
        cost = cost_non[rows].sum() + cumulative  # cost with the top m favourable, m = 0..n
        valid = np.ones(len(g) + 1, dtype=bool)
        valid[1:-1] = g[:-1] > g[1:]  # a cut between equal gaps cannot be made
        return g, np.where(valid, cost, np.inf)

    if not per_facet:
        return _one_shift(gap, cost_fav, cost_non, s, favourable, bound)
    g_a, cost_a = counts(np.flatnonzero(~s))
    g_d, cost_d = counts(np.flatnonzero(s))
    n_a, n_d = len(g_a), len(g_d)
    best = (np.inf, 0, 0)
    window: list[int] = []  # a monotone deque of facet d counts, by cost
    head, low_next = 0, 0
    for m_a in range(n_a + 1):
        if not np.isfinite(cost_a[m_a]):
            continue
        rate = m_a / n_a
        low = math.ceil(n_d * (rate - bound) - 1e-9)
        high = math.floor(n_d * (rate + bound) + 1e-9)
        low, high = max(low, 0), min(high, n_d)
        while low_next <= high:
            while len(window) > head and cost_d[window[-1]] >= cost_d[low_next]:
                window.pop()
            window.append(low_next)
            low_next += 1
        while head < len(window) and window[head] < low:
            head += 1
        if head < len(window) and np.isfinite(cost_d[window[head]]):
            total = cost_a[m_a] + cost_d[window[head]]
            if total < best[0]:
                best = (total, m_a, window[head])
    total, m_a, m_d = best
    dppl = m_a / n_a - m_d / n_d
    return FavourableShift(tuple(favourable), _cut(g_a, m_a), _cut(g_d, m_d), bound, dppl), dppl, \
        float(total)


def _one_shift(gap, cost_fav, cost_non, s, favourable, bound):
    order = np.argsort(-gap, kind="stable")
    g = gap[order]
    cost = cost_non.sum() + np.concatenate([[0.0], np.cumsum((cost_fav - cost_non)[order])])
    in_d = np.concatenate([[0], np.cumsum(s[order])])
    in_a = np.arange(len(g) + 1) - in_d
    dppl = in_a / max(int((~s).sum()), 1) - in_d / max(int(s.sum()), 1)
    valid = np.ones(len(g) + 1, dtype=bool)
    valid[1:-1] = g[:-1] > g[1:]
    valid &= np.abs(dppl) <= bound + 1e-12
    m = int(np.argmin(np.where(valid, cost, np.inf)))  # m = 0 is always valid
    delta = _cut(g, m)
    return (FavourableShift(tuple(favourable), delta, delta, bound, float(dppl[m])),
            float(dppl[m]), float(cost[m]))


def _cut(g: np.ndarray, m: int) -> float:
    """A shift that makes exactly the top ``m`` gaps favourable (``g + delta > 0``): midway between
    the ``m``-th and the next gap."""
    if len(g) == 0:
        return 0.0
    if m == 0:
        return float(-g[0] - max(1.0, abs(g[0])))
    if m == len(g):
        return float(-g[-1] + max(1.0, abs(g[-1])))
    return float(-(g[m - 1] + g[m]) / 2)
