"""A Gaussian copula in numpy: synthetic rows with a table's marginals and rank dependence.

Fit, on ``n`` rows and ``d`` columns ``x_ij``:

1. pseudo-observations ``u_ij = r_ij / (n + 1)``, ``r_ij`` the rank of ``x_ij`` in column ``j``
   (ties share their average rank, so a discrete value keeps one score);
2. normal scores ``z_ij = Phi^-1(u_ij)``;
3. ``R = corr(z)``, the Pearson correlation of the normal scores (van der Waerden's rank
   correlation). A constant column gets a unit row and column of zeros; ``R`` is made positive
   definite by clipping its eigenvalues at ``EIG_FLOOR`` and rescaling to a unit diagonal (few rows
   and many columns give a singular estimate).

Sample ``m`` rows:

4. ``z* = e L^T`` with ``e ~ N(0, I_d)`` and ``L L^T = R`` (Cholesky);
5. ``u* = Phi(z*)``;
6. back through each column's empirical quantile function ``x*_j = F_j^-1(u*_j)``:

   * discrete column: ``x_(k)`` with ``k = ceil(n u*)`` (the type-1 quantile, the inverse of the
     empirical CDF), so samples take observed values only and ``P(x* = v)`` is the observed share of
     ``v``;
   * continuous column: linear interpolation between the order statistics ``x_(k)`` placed at
     ``k / (n + 1)``, evaluated at ``u*`` and clamped to ``[x_(1), x_(n)]``: new values, never
     outside the observed range.

``Phi`` and ``Phi^-1`` are the standard library's :class:`statistics.NormalDist` (exact to double
precision), vectorised; the tables this is meant for are small.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

EIG_FLOOR = 1e-6
_STANDARD = NormalDist()
_cdf = np.frompyfunc(_STANDARD.cdf, 1, 1)
_ppf = np.frompyfunc(_STANDARD.inv_cdf, 1, 1)


def norm_cdf(z: np.ndarray) -> np.ndarray:
    """``Phi(z)``."""
    return np.asarray(_cdf(np.asarray(z, dtype=np.float64)), dtype=np.float64)


def norm_ppf(u: np.ndarray) -> np.ndarray:
    """``Phi^-1(u)`` for ``0 < u < 1``."""
    return np.asarray(_ppf(np.asarray(u, dtype=np.float64)), dtype=np.float64)


def mid_ranks(column: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    column = np.asarray(column, dtype=np.float64)
    order = np.argsort(column, kind="mergesort")
    ordered = column[order]
    boundaries = np.flatnonzero(np.diff(ordered)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [column.size]])
    ranks = np.empty(column.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def normal_scores(data: np.ndarray) -> np.ndarray:
    """``z_ij = Phi^-1(r_ij / (n + 1))`` column by column."""
    data = np.asarray(data, dtype=np.float64)
    n = data.shape[0]
    u = np.column_stack([mid_ranks(data[:, j]) for j in range(data.shape[1])]) / (n + 1)
    return norm_ppf(u)


def nearest_correlation(matrix: np.ndarray, floor: float = EIG_FLOOR) -> np.ndarray:
    """Eigenvalues clipped at ``floor``, then rescaled to a unit diagonal: positive definite."""
    sym = (matrix + matrix.T) / 2
    values, vectors = np.linalg.eigh(sym)
    fixed = (vectors * np.maximum(values, floor)) @ vectors.T
    scale = 1 / np.sqrt(np.diag(fixed))
    out = fixed * np.outer(scale, scale)
    np.fill_diagonal(out, 1.0)
    return out


@dataclass(frozen=True)
class GaussianCopula:
    """A fitted copula: the sorted columns (the empirical marginals) and the correlation ``R``."""

    sorted_columns: np.ndarray  # (n, d), each column sorted ascending
    discrete: np.ndarray  # (d,) bool
    correlation: np.ndarray  # (d, d)

    @classmethod
    def fit(cls, data, discrete=None) -> "GaussianCopula":
        """``data``: (n, d) numbers without missing values; ``discrete``: per column, True if the
        column may only take observed values (default: every column)."""
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] < 2:
            raise ValueError("a copula needs a 2-d table with at least two rows")
        if not np.all(np.isfinite(data)):
            raise ValueError("a copula needs finite values (no missing cells)")
        d = data.shape[1]
        discrete = np.ones(d, bool) if discrete is None else np.asarray(discrete, dtype=bool)
        if discrete.shape != (d,):
            raise ValueError(f"discrete must give one flag per column ({d})")
        z = normal_scores(data)
        spread = z.std(axis=0)
        varying = spread > 0
        correlation = np.eye(d)
        if varying.sum() > 1:
            sub = np.corrcoef(z[:, varying], rowvar=False)
            correlation[np.ix_(varying, varying)] = sub
        return cls(np.sort(data, axis=0), discrete, nearest_correlation(correlation))

    def sample(self, m: int, seed=None) -> np.ndarray:
        """``m`` new rows, shape (m, d)."""
        rng = np.random.default_rng(seed)
        d = self.correlation.shape[0]
        chol = np.linalg.cholesky(self.correlation)
        z = rng.standard_normal((m, d)) @ chol.T
        u = norm_cdf(z)
        return np.column_stack([self._quantile(j, u[:, j]) for j in range(d)])

    def _quantile(self, j: int, u: np.ndarray) -> np.ndarray:
        column = self.sorted_columns[:, j]
        n = column.size
        if self.discrete[j]:
            k = np.clip(np.ceil(n * u).astype(int), 1, n)
            return column[k - 1]
        positions = np.arange(1, n + 1) / (n + 1)
        return np.interp(u, positions, column)  # clamps to [x_(1), x_(n)] outside


def spearman(data: np.ndarray) -> np.ndarray:
    """Spearman rank correlation matrix (Pearson on mid-ranks), for checking a sample."""
    data = np.asarray(data, dtype=np.float64)
    ranks = np.column_stack([mid_ranks(data[:, j]) for j in range(data.shape[1])])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(ranks, rowvar=False)


__all__ = ["GaussianCopula", "norm_cdf", "norm_ppf", "normal_scores", "nearest_correlation",
           "mid_ranks", "spearman"]
