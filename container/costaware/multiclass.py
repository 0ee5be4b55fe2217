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
  as the binary calibrator (:mod:`costaware.calibration`: the slope ``a``, the intercept ``b``) a
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
* **Loss** (the cost-weighted multi-class loss). A class's *regret* is the mean extra cost of a
  wrong decision on one of its rows, ``r_k = mean_{j != k} (C[k][j] - C[k][k])`` (for K = 2 this is
  the binary ``C_FN - C_TP`` and ``C_FP - C_TN``); its weight, as in the binary loss,
  ``w_k = clip(r_k / s, 1/CAP, CAP) ** alpha`` with ``s`` the mean regret of the training rows,
  then scaled to mean 1 over the rows. A row ``i`` of class ``y`` has the weighted softmax
  cross-entropy with offsets ``o_k = log w_k``:

      L_i = -w_y log q_{i,y},   q_i = softmax(f_i + o),

  whose gradient and Hessian diagonal in the margins ``f_i`` are

      g_{i,k} = w_y (q_{i,k} - [k = y]),   h_{i,k} = w_y q_{i,k} (1 - q_{i,k}).

  The weights make costly classes' rows count more in every split; the offsets undo their effect
  on the margins: where the weighted loss is minimised, ``q_k`` is proportional to ``w_k pi_k``
  (``pi_k`` the class-``k`` probability) so ``softmax(f)_k = pi_k`` - the margins stay log
  probabilities (up to a constant per row) and the calibrator corrects what is left.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .calibration import PRIOR_PRECISION
from .cluster import SOLO, Cluster, Reduce
from .metrics import AUC_BINS, EXACT_AUC_ROWS, binned_auc, exact_auc, score_histogram
from .objective import CAP, parity_gap

MAX_CLASSES = 50  # a cost matrix of 2,500 cells: more is not a cost matrix anyone writes by hand
MAX_TEMPERATURE = 1e3  # 1/T stays above 1e-3: the probabilities stay a function of the margins


class CostMatrixError(ValueError):
    """A cost matrix that cannot decide; the message is one line."""


def parse_cost_matrix(text, classes: int | None = None, allow_two: bool = False,
                      columns: bool = False):
    """``C`` from its JSON text (or an already parsed list), checked as the module docstring says;
    ``classes``: the K it must have; ``allow_two``: a 2 x 2 matrix (the binary costs, which their
    own check, :meth:`costaware.costs.CostMatrix.problem`, then judges) is returned unjudged.
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


def row_loss_weights(label: np.ndarray, matrix: np.ndarray, exponent: float,
                     cells: dict | None = None, reduce: Reduce = SOLO.sum
                     ) -> tuple["ClassWeighting", np.ndarray]:
    """The loss weight of each row (module docstring) at its own matrix: with per-row ``cells``,
    ``w_i = clip(r_i / s, 1/CAP, CAP) ** alpha`` (:func:`row_regrets`, ``s`` their mean), scaled
    to mean 1, and each class's weight (the offsets' ``w_k``) the mean weight of its rows;
    without, :meth:`ClassWeighting.fit`'s ``w_{y_i}``. Every mean is over all hosts' rows
    (``reduce`` adds the sums up). Returns ``(weighting, w)``."""
    y = np.asarray(label, dtype=np.int64)
    k = len(matrix)
    if not cells:
        weighting = ClassWeighting.fit(y, matrix, exponent, reduce)
        return weighting, np.asarray(weighting.weights)[y]
    regrets = row_regrets(y, matrix, cells)
    total, rows = reduce(np.array([regrets.sum(), len(y)], dtype=np.float64))
    scale = float(total / rows)
    if exponent == 0 or scale <= 0:
        return ClassWeighting(float(exponent), scale, (1.0,) * k), np.ones(len(y))
    weight = np.clip(regrets / scale, 1.0 / CAP, CAP) ** exponent
    weight = weight / (reduce(np.array([weight.sum()]))[0] / rows)
    sums = reduce(np.concatenate([np.bincount(y, weight, minlength=k),
                                  np.bincount(y, minlength=k).astype(np.float64)]))
    per_class = np.where(sums[k:] > 0, sums[:k] / np.maximum(sums[k:], 1), 1.0)
    return ClassWeighting(float(exponent), scale, tuple(float(w) for w in per_class)), weight


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
class ClassWeighting:
    """The loss weight of each class (module docstring): ``w_k``, scaled to mean 1 over the
    training rows, and the offsets ``o_k = log w_k``."""

    exponent: float
    scale: float  # s: the training rows' mean regret
    weights: tuple[float, ...]  # w_k, mean 1 over the training rows

    @classmethod
    def fit(cls, label: np.ndarray, matrix: np.ndarray, exponent: float,
            reduce: Reduce = SOLO.sum) -> "ClassWeighting":
        """``w_k`` from the training rows' class counts (summed over hosts by ``reduce``)."""
        k = len(matrix)
        counts = reduce(np.bincount(np.asarray(label, dtype=np.int64), minlength=k
                                    ).astype(np.float64))
        regrets = class_regrets(matrix)
        scale = float((counts * regrets).sum() / counts.sum())
        if exponent == 0 or scale <= 0:
            return cls(float(exponent), scale, (1.0,) * k)
        relative = np.clip(regrets / scale, 1.0 / CAP, CAP) ** exponent
        mean = (counts * relative).sum() / counts.sum()
        return cls(float(exponent), scale, tuple(float(w) for w in relative / mean))

    @property
    def offsets(self) -> np.ndarray:
        return np.log(np.asarray(self.weights))

    def to_dict(self) -> dict:
        return {"exponent": self.exponent, "scale": self.scale, "class_weights": list(self.weights)}


def loss_gradients(margins: np.ndarray, label: np.ndarray, row_weight: np.ndarray,
                   offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(g, h)`` of the module docstring, ``(n, K)`` each; ``row_weight`` is ``w_{y_i}`` (0 for a
    row a fold model must not see: gradient and Hessian 0)."""
    q = softmax(margins + offsets)
    onehot = np.zeros_like(q)
    onehot[np.arange(len(q)), np.asarray(label, dtype=np.int64)] = 1.0
    w = np.asarray(row_weight, dtype=np.float64)[:, None]
    grad = w * (q - onehot)
    # XGBoost needs a positive Hessian where a row counts; 1e-16 keeps a saturated row's tiny
    hess = np.maximum(w * q * (1.0 - q), np.where(w > 0, 1e-16, 0.0))
    return grad, hess


def weighted_loss(margins: np.ndarray, label: np.ndarray, row_weight: np.ndarray,
                  offsets: np.ndarray) -> float:
    """``sum_i L_i``: what :func:`loss_gradients` differentiates (tests check it numerically)."""
    q = softmax(margins + offsets)
    return float(-(row_weight * np.log(q[np.arange(len(q)), np.asarray(label, np.int64)])).sum())


def favourable_parity_penalty(margins: np.ndarray, sensitive: np.ndarray,
                              favourable: tuple[int, ...], strength: float) -> float:
    """The demographic-parity penalty on the favourable classes' probability,
    ``P = lambda * n * D^2``, ``D = mean_{i in a} F_i - mean_{i in d} F_i``,
    ``F_i = sum_{k favourable} softmax(f_i)_k`` (the margins without the offsets: log
    probabilities); for two classes with class 1 favourable it is the binary
    :func:`costaware.objective.parity_penalty`."""
    fav = np.isin(np.arange(margins.shape[1]), favourable)
    share = softmax(margins)[:, fav].sum(axis=1)
    s = np.asarray(sensitive, dtype=bool)
    gap = share[~s].mean() - share[s].mean()
    return float(strength * len(share) * gap * gap)


def favourable_parity_grad_hess(margins: np.ndarray, sensitive: np.ndarray,
                                favourable: tuple[int, ...], strength: float,
                                reduce: Reduce | None = None, member: np.ndarray | None = None
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and diagonal Hessian ``(n, K)`` of :func:`favourable_parity_penalty` in the
    margins, over the rows in ``member`` (others get 0). Through the softmax, with ``u_k = [k
    favourable]``, ``dF_i/df_ik = q_ik (u_k - F_i)`` and ``d2F_i/df_ik2 = q_ik (u_k - F_i)(1 - 2
    q_ik)``; with ``c_i = dD/dF_i`` (:func:`costaware.objective.parity_gap`, over every host)

        g_ik = 2 lambda n D c_i dF_i/df_ik
        h_ik = 2 lambda n [ (c_i dF_i/df_ik)^2 + D c_i d2F_i/df_ik2 ]

    the exact diagonal (the objective clips ``h`` at 0, as the binary one)."""
    q = softmax(margins)
    fav = np.isin(np.arange(q.shape[1]), favourable).astype(np.float64)
    share = q @ fav
    gap, c, n = parity_gap(share, sensitive, member, reduce)
    first = q * (fav[None, :] - share[:, None])  # dF_i / df_ik
    scale = 2 * strength * n
    grad = scale * gap * c[:, None] * first
    hess = scale * ((c[:, None] * first) ** 2 + gap * c[:, None] * first * (1 - 2 * q))
    return grad, hess


def class_objective(label: np.ndarray, row_weight: np.ndarray, offsets: np.ndarray,
                    sensitive: np.ndarray | None = None, favourable: tuple[int, ...] = (),
                    penalty: float = 0.0, reduce: Reduce | None = None):
    """An XGBoost custom objective ``obj(margins, dtrain) -> (g, h)`` (``(n, K)`` each) for fixed
    rows: :func:`loss_gradients`, plus :func:`favourable_parity_grad_hess` when ``penalty > 0``
    (rows of weight 0, held out of a fold model, have no say in either)."""
    label = np.asarray(label, dtype=np.int64)
    member = np.asarray(row_weight) > 0
    if penalty > 0 and sensitive is None:
        raise ValueError("the parity penalty needs the sensitive-group mask")

    def objective(margins: np.ndarray, _dtrain) -> tuple[np.ndarray, np.ndarray]:
        f = np.asarray(margins, dtype=np.float64).reshape(len(label), -1)
        grad, hess = loss_gradients(f, label, row_weight, offsets)
        if penalty > 0:
            g, h = favourable_parity_grad_hess(f, sensitive, favourable, penalty, reduce, member)
            grad, hess = grad + g, hess + np.maximum(h, 0.0)
        return grad, hess

    return objective


@dataclass(frozen=True)
class TemperatureCalibrator:
    """``q = softmax(z / T + b)`` (module docstring: ``T = 1 / a``)."""

    temperature: float = 1.0
    bias: tuple[float, ...] = ()
    rows: int = 0  # the held-out rows it was fitted on

    def probability(self, margins: np.ndarray) -> np.ndarray:
        z = np.asarray(margins, dtype=np.float64) / self.temperature
        if self.bias:
            z = z + np.asarray(self.bias)
        return softmax(z)

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

    z = np.asarray(margins, dtype=np.float64)
    y = np.asarray(label, dtype=np.int64)
    k = z.shape[1]
    n = len(z)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    theta0 = np.concatenate([[1.0], np.zeros(k - 1)])  # (1/T, b_1..b_{K-1}): no correction

    def loss_and_grad(theta):
        b = np.concatenate([[0.0], theta[1:]])
        s = z * theta[0] + b
        log_q = s - s.max(axis=1, keepdims=True)
        log_q = log_q - np.log(np.exp(log_q).sum(axis=1, keepdims=True))
        d_s = np.exp(log_q) - onehot  # d loss / d s
        summed = reduce(np.concatenate([[-(log_q[np.arange(n), y]).sum(), (d_s * z).sum()],
                                        d_s.sum(axis=0)[1:]]))
        d = theta - theta0
        return (float(summed[0]) + 0.5 * PRIOR_PRECISION * float(d @ d),
                summed[1:] + PRIOR_PRECISION * d)

    result = minimize(loss_and_grad, theta0, jac=True, method="L-BFGS-B",
                      bounds=[(1.0 / MAX_TEMPERATURE, None)] + [(None, None)] * (k - 1))
    theta = result.x
    rows = int(reduce(np.array([n], dtype=np.float64))[0])
    return TemperatureCalibrator(float(1.0 / theta[0]),
                                 tuple(float(b) for b in np.concatenate([[0.0], theta[1:]])), rows)


def one_vs_rest_auc(label: np.ndarray, p: np.ndarray) -> tuple[float, list[float]]:
    """Macro one-vs-rest AUC: the mean over classes of the AUC of ``p[:, k]`` separating class
    ``k`` from the rest (:func:`costaware.metrics.exact_auc`: Mann-Whitney, ties counted half); a
    class absent from the rows, or the only one present, has no AUC (NaN) and is left out of the
    mean. At K = 2 both classes' AUCs are the AUC of ``p[:, 1]`` (``p[:, 0] = 1 - p[:, 1]``
    reverses its order), so the mean is the binary ``auc``."""
    y = np.asarray(label, dtype=np.int64)
    per_class = [exact_auc((y == k).astype(np.int8), p[:, k]) for k in range(p.shape[1])]
    defined = [a for a in per_class if not math.isnan(a)]
    return (float(np.mean(defined)) if defined else float("nan")), per_class


def class_summary(label: np.ndarray, p: np.ndarray, decision: np.ndarray, matrix: np.ndarray,
                  bins: int = 10, cells: dict | None = None) -> np.ndarray:
    """The sums :func:`class_metrics` reads, as one vector that adds up over hosts (so several
    hosts' metrics are one host's on all the rows): ``[rows, sum of -log p[i, y_i] (p clipped at
    1e-15), sum of the Brier terms]``, then per bin of ``max_k p[i, k]`` ``[rows, sum of the top
    probability, rows whose top class is the true one]`` (``bins`` x 3), the confusion matrix
    ``[true][decided]`` (K x K), its cells' costs ``sum_{i: y_i = k, d_i = j} C_i[k][j]`` (K x K),
    the cost of deciding each class for every row ``sum_i C_i[y_i][j]`` (K; each row at its own
    matrix ``C_i`` with per-row ``cells``: :func:`true_class_costs`), and per class and bin of
    ``p[:, k]`` ``[rows, sum of p[:, k], rows of class k]`` (K x ``bins`` x 3)."""
    y = np.asarray(label, dtype=np.int64)
    d = np.asarray(decision, dtype=np.int64)
    n, k = len(y), p.shape[1]
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    confusion = np.zeros((k, k))
    np.add.at(confusion, (y, d), 1)
    top = p.max(axis=1) if n else np.zeros(0)
    hit = (p.argmax(axis=1) == y).astype(np.float64) if n else np.zeros(0)
    own = true_class_costs(y, matrix, cells)
    cell_costs = np.zeros((k, k))
    np.add.at(cell_costs, (y, d), own[np.arange(n), d])

    def binned(values, truth):
        where = np.minimum((values * bins).astype(np.int64), bins - 1)
        return np.stack([np.bincount(where, minlength=bins), np.bincount(where, values, bins),
                         np.bincount(where, truth, bins)], axis=1)

    reliability = [binned(p[:, c], (y == c).astype(np.float64)) for c in range(k)]
    return np.concatenate([
        [n, -np.log(np.clip(p[np.arange(n), y], 1e-15, 1 - 1e-15)).sum(),
         ((p - onehot) ** 2).sum()],
        binned(top, hit).ravel(), confusion.ravel(), cell_costs.ravel(), own.sum(axis=0),
        np.ravel(reliability)]).astype(np.float64)


def class_metrics(summary: np.ndarray, matrix: np.ndarray, auc_per_class: list[float],
                  bins: int = 10) -> dict:
    """A channel's metrics from its (summed) :func:`class_summary` at ``decision``:

    * ``logloss`` ``-mean log p[i, y_i]`` (``p[i, y_i]`` clipped to ``[1e-15, 1 - 1e-15]``),
      ``brier`` ``(1/2) mean sum_k (p[i, k] - [y_i = k])**2`` (at K = 2 the binary
      ``mean (p - y)**2``), ``top_label_ece`` the top-label expected calibration error
      ``sum_b |sum_{i in b} (max_k p[i, k] - [argmax_k p[i, k] = y_i])| / n`` over ``bins``
      equal-width bins of ``max_k p[i, k]``;
    * ``auc`` macro one-vs-rest (the mean of ``auc_per_class`` where defined: see
      :func:`channel_auc`), ``accuracy``, ``balanced_accuracy`` the mean of the per-class recalls
      over the classes present, ``recall_per_class``;
    * ``reliability_per_class``: for each class ``k`` and each of ``bins`` equal-width bins of
      ``p[:, k]``, ``[rows, sum of p[:, k], rows of class k]`` (one-vs-rest reliability);
    * ``confusion`` ``[true][decided]`` counts, ``cell_costs`` their costs (``count * C``
      without per-row cells),
      ``cost`` their sum, ``expected_cost`` per row, ``cost_all`` the cost of deciding each single
      class for every row and ``savings`` ``1 - cost / min(cost_all)`` (0: no better than the
      cheapest single decision for everyone); with per-row ``cells`` each row's costs are its
      own matrix's (:func:`true_class_costs`).
    """
    k = len(matrix)
    n, loss, brier = summary[:3]
    top = summary[3:3 + 3 * bins].reshape(bins, 3)
    at = 3 + 3 * bins
    confusion = np.rint(summary[at:at + k * k]).astype(np.int64).reshape(k, k)
    cell_costs = summary[at + k * k:at + 2 * k * k].reshape(k, k)
    cost_all = summary[at + 2 * k * k:at + 2 * k * k + k]  # deciding j for everyone
    reliability = summary[at + 2 * k * k + k:].reshape(k, bins, 3)
    n = int(round(n))
    cost = float(cell_costs.sum())
    counts = confusion.sum(axis=1)
    cheapest = float(cost_all.min())
    defined = [a for a in auc_per_class if not math.isnan(a)]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(confusion) / counts
    return {
        "rows": n,
        "logloss": float(loss / n) if n else float("nan"),
        "brier": float(brier / n / 2) if n else float("nan"),
        "top_label_ece": float(np.abs(top[:, 1] - top[:, 2]).sum() / n) if n else float("nan"),
        "auc": float(np.mean(defined)) if defined else float("nan"),
        "accuracy": float(np.diag(confusion).sum() / n) if n else float("nan"),
        "balanced_accuracy": float(np.nanmean(recall)) if (counts > 0).any() else float("nan"),
        "recall_per_class": [float(r) for r in recall],
        "cost": cost,
        "expected_cost": cost / n if n else float("nan"),
        "cost_all": [float(c) for c in cost_all],
        "savings": 1.0 - cost / cheapest if cheapest > 0 else float("nan"),
        "reliability_per_class": [[[int(r), float(sp), float(sy)] for r, sp, sy in c]
                                  for c in reliability],
        "confusion": confusion.tolist(),
        "cell_costs": cell_costs.tolist(),
    }


def channel_auc(label: np.ndarray, p: np.ndarray, cluster: Cluster = SOLO) -> list[float]:
    """Each class's one-vs-rest AUC over every host's rows, as the binary path computes its AUC
    (:func:`costaware.evaluation.metrics_at`): exact (:func:`one_vs_rest_auc`) on the gathered
    labels and scores up to :data:`~costaware.metrics.EXACT_AUC_ROWS` rows, beyond from summed
    per-class histograms of ``logit(p[:, k])`` (:func:`costaware.metrics.binned_auc`)."""
    y = np.asarray(label, dtype=np.int64)
    k = p.shape[1]
    rows = cluster.sum([len(y)])[0]  # the same test on every host: gather is collective
    if rows <= EXACT_AUC_ROWS:
        gathered = cluster.gather(np.asarray(p, dtype=np.float64).ravel()).reshape(-1, k)
        return one_vs_rest_auc(cluster.gather(y), gathered)[1]
    local = np.stack([score_histogram(y == c, p[:, c]) for c in range(k)])
    summed = cluster.sum(local.ravel()).reshape(k, 2, AUC_BINS + 2)
    return [binned_auc(bins) for bins in summed]


def channel_metrics(label: np.ndarray, p: np.ndarray, decision: np.ndarray,
                    matrix: np.ndarray, bins: int = 10, cluster: Cluster = SOLO,
                    cells: dict | None = None) -> dict:
    """:func:`class_metrics` of the rows over every host of ``cluster`` (their summaries
    summed, the AUC as :func:`channel_auc`); with per-row ``cells``, each row at its own costs."""
    summary = cluster.sum(class_summary(label, p, decision, matrix, bins, cells))
    return class_metrics(summary, matrix, channel_auc(label, p, cluster), bins)


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


def fit_favourable_shift(expected: np.ndarray, label: np.ndarray, sensitive: np.ndarray,
                         favourable: tuple[int, ...], matrix: np.ndarray, bound: float,
                         per_facet: bool = True, cells: dict | None = None
                         ) -> tuple[FavourableShift, float, float]:
    """The cheapest :class:`FavourableShift` on these (held-out) rows with ``|DPPL| <= bound``,
    DPPL the favourable-decision rate of facet a minus facet d's; returns it, its DPPL and its
    cost. Exact: each facet's rows sorted by ``g`` give every achievable favourable count ``m_f``
    (cuts between distinct ``g``) and its cost; the best pair within the bound is found by a
    sliding-window minimum over facet d's counts, ``O(n log n)``. ``per_facet`` False: one shift
    for every row (requests need no facet), the best cut of all rows' gaps. Deciding no row
    favourable meets any bound, so a rule always exists. ``cells``: each row's own cost cells
    (:func:`true_class_costs`)."""
    y = np.asarray(label, dtype=np.int64)
    s = np.asarray(sensitive, dtype=bool)
    fav = np.zeros(matrix.shape[1], dtype=bool)
    fav[list(favourable)] = True
    e_fav = np.where(fav, expected, np.inf)
    e_non = np.where(fav, np.inf, expected)
    j_fav, j_non = e_fav.argmin(axis=1), e_non.argmin(axis=1)
    gap = e_non.min(axis=1) - e_fav.min(axis=1)
    own = true_class_costs(y, matrix, cells)
    at = np.arange(len(y))
    cost_fav, cost_non = own[at, j_fav], own[at, j_non]

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
