"""Why a row was decided as it was: its top features by XGBoost's own TreeSHAP contributions.

XGBoost's ``pred_contribs`` gives, per row, one contribution per feature and a bias term that
add up to the model's margin ``m`` exactly (TreeSHAP). The calibrated probability is a
non-decreasing function of ``m`` (:class:`costaware.decisions.calibration.Calibrator` holds it there by
construction), so a contribution that raises ``m`` never lowers the probability of class 1. A
row's decision is 1 iff ``z >= 0`` with

    z = logit(p) - logit(t),

``t`` its rule's probability threshold: ``z`` is the row's Bayes log-odds, its distance from its
own decision boundary on the calibrated log-odds scale.

A feature's contribution *towards the decision* is ``s_j = c_j`` for a row decided 1 and
``-c_j`` for a row decided 0 (:func:`towards_decision`: with more classes, its contribution to the
decided class's margin over the runner-up's); the reasons are the ``k`` features with the largest
``s_j > 0``, largest first (fewer when fewer push towards the decision). Reported contributions
are XGBoost's own ``c_j`` on the margin, signed towards the decision (``s_j``).
"""

from __future__ import annotations

import numpy as np


def boundary_log_odds(log_odds: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """``z = logit(p) - logit(t)`` from the calibrated log-odds; ``+inf``/``-inf`` where the
    threshold is 0 or 1 (one decision dominates at these costs: no model output moves it)."""
    t = np.asarray(threshold, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logit_t = np.log(t) - np.log1p(-t)
    return np.asarray(log_odds, dtype=np.float64) - logit_t


def towards_decision(contributions: np.ndarray, chosen: np.ndarray, runner: np.ndarray
                     ) -> np.ndarray:
    """``s = c[j] - c[r]``: each feature's contribution (the bias column dropped) to the margin of
    the row's decision ``j`` over its runner-up ``r``, from ``contributions`` ``(n, K, F + 1)``
    (per class's margin). Two classes are ``f_0 = 0``: ``s = c`` for a decision 1, ``-c`` for
    a decision 0."""
    at = np.arange(len(contributions))
    return (contributions[at, chosen, :-1] - contributions[at, runner, :-1]).astype(np.float64)


def top_reasons(signed: np.ndarray, k: int) -> list[list[int]]:
    """Per row the indices of its ``k`` largest positive signed contributions, largest first
    (ties: the lower feature index first)."""
    out = []
    for row in np.asarray(signed, dtype=np.float64):
        order = np.lexsort((np.arange(len(row)), -row))[:k]
        out.append([int(j) for j in order if row[j] > 0])
    return out


def parse_reason_texts(text: str) -> dict[str, dict]:
    """``reason_texts``: a JSON object from feature name to a reason text, or to ``{"text": ...,
    "code": ...}`` (an adverse-action notice's wording and code); returned as ``{feature: {"text",
    "code"?}}``. Raises ``ValueError`` with one line."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict) or not value:
        raise ValueError('must be a JSON object from feature name to a reason text, e.g. '
                         '{"duration": "Loan term too long"}')
    out = {}
    for feature, entry in value.items():
        if isinstance(entry, str):
            entry = {"text": entry}
        if not (isinstance(entry, dict) and isinstance(entry.get("text"), str)
                and set(entry) <= {"text", "code"}
                and isinstance(entry.get("code", ""), (str, int))
                and not isinstance(entry.get("code"), bool)):
            raise ValueError(f"{json.dumps(feature)}: give a text, or an object with \"text\" and "
                             "optionally \"code\" (a string or an integer)")
        out[feature] = entry
    return out
