"""Two variants' decisions, from their data capture and the ground truth, made comparable: each
labelled decision's realized cost, paired by request where both models decided it.

Both variants' decisions are priced at the **champion's** costs (its class costs, and each row's
own cost cells from the request): the comparison asks which model's decisions cost the business
less at one price list. Their bias is judged at the champion's facet and favourable classes
likewise (a challenger trained without a facet is judged at the champion's). The two models must
read the same request columns and decide among the same classes (one endpoint's requests go to
both), else the comparison is refused.

A row's key is its record's inferenceId (else its eventId; ``key#j`` for row ``j`` of a record of
several rows): ground truth is joined on it, and a shadow's row is the twin of the production
row with the same key.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..monitoring.capture import CaptureReader, Counts, jsonl_files
from ..monitoring.decided_rows import DecidedRows, bias_cells
from ..monitoring.model_spec import ModelSpec

DEPENDENCE_ALPHA = 0.01  # the test that labels come only after some decisions
NOT_TWINS = ("request keys in both variants' captures naming different requests (not paired; "
             "their label is ambiguous)")


class ComparisonError(ValueError):
    """Two variants that cannot be compared; the message is the one-line reason."""


def check_comparable(champion: ModelSpec, challenger: ModelSpec) -> None:
    if list(champion.request_columns) != list(challenger.request_columns):
        raise ComparisonError(
            f"the two models read different request columns (champion: "
            f"{', '.join(champion.request_columns)}; challenger: "
            f"{', '.join(challenger.request_columns)}): one endpoint's requests cannot fit both")
    if [str(c) for c in champion.classes] != [str(c) for c in challenger.classes]:
        raise ComparisonError(f"the two models decide among different classes (champion: "
                              f"{champion.classes}; challenger: {challenger.classes})")


def read_variant(root: str, spec: ModelSpec, pricing: ModelSpec, labels: dict, counts: Counts,
                 start=None, end=None, also=None):
    """Every decided row of one variant's capture under ``root``, with keys, times and labels
    (-1: none yet), priced at ``pricing``'s costs, judged at its facet and favourable classes.
    ``also(rows, has_costs, decided)``: another model's decisions on each batch of the same
    requests (a replay); then both are returned."""
    reader = CaptureReader(spec, labels, counts, start, end, keep_keys=True, pricing=pricing)
    files = jsonl_files(root, counts)
    counts.add("capture files", n=len(files))
    parts, others = [], []
    for rows, has_costs, decided in reader.batches(files):
        decided.sensitive = pricing.sensitive(rows)  # both judged at the champion's facet
        parts.append(decided)
        if also is not None:
            others.append(also(rows, has_costs, decided))
    found = _joined(parts, pricing)
    return found if also is None else (found, _joined(others, pricing))


def _joined(parts: list, pricing: ModelSpec) -> DecidedRows:
    """The batches as one, their favourable classes the champion's (as its facet)."""
    rows = DecidedRows.concat(parts, pricing.k, pricing.favourable)
    if rows.keys is None:
        rows.keys = np.empty(0, dtype=object)
        rows.times = np.empty(0, dtype=np.float64)
        rows.events = np.empty(0, dtype=np.int64)
    return rows


def realized_cost(rows: DecidedRows) -> np.ndarray:
    """``C_i[y_i, d_i]`` of labelled rows (the others NaN)."""
    labelled = rows.label >= 0
    out = np.full(len(rows), np.nan)
    index = np.nonzero(labelled)[0]
    out[index] = rows.costs[index, rows.label[index], rows.decision[index]]
    return out


def first_of_each_key(rows: DecidedRows, counts: Counts, name: str) -> dict:
    """key -> the row index of its first labelled row (a repeated key's later rows counted)."""
    seen: dict = {}
    repeated = 0
    for i in np.nonzero(rows.label >= 0)[0]:
        key = rows.keys[i]
        if key is None:
            continue
        if key in seen:
            repeated += 1
            continue
        seen[key] = int(i)
    if repeated:
        counts.add(f"{name} labelled rows repeating a request key (the first used)", n=repeated)
    return seen


def pair(champion: DecidedRows, challenger: DecidedRows, counts: Counts
         ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(i_champion, i_challenger)`` of the labelled requests both decided, in the
    champion's order; the labelled rows left without a twin counted per variant. A key whose two
    rows are different requests (their own costs, priced alike, or facet differ: an id reused
    across split traffic) pairs nothing, counted as :data:`NOT_TWINS`."""
    a = first_of_each_key(champion, counts, "champion")
    b = first_of_each_key(challenger, counts, "challenger")
    shared = [key for key in a if key in b]
    ia = np.array([a[k] for k in shared], dtype=np.int64)
    ib = np.array([b[k] for k in shared], dtype=np.int64)
    alike = (champion.costs[ia] == challenger.costs[ib]).all(axis=(1, 2))
    if champion.sensitive is not None and challenger.sensitive is not None:
        alike &= champion.sensitive[ia] == challenger.sensitive[ib]
    if not alike.all():
        counts.add(NOT_TWINS, n=int(np.count_nonzero(~alike)))
        ia, ib = ia[alike], ib[alike]
    counts.add("labelled requests decided by both variants (pairs)", n=len(ia))
    counts.add("champion labelled rows without a challenger twin", n=len(a) - len(ia))
    counts.add("challenger labelled rows without a champion twin", n=len(b) - len(ia))
    return ia, ib


def same_records(champion: DecidedRows, challenger: DecidedRows, pairs) -> bool:
    """Is every pair one captured record twice (the same eventId, a fresh UUID per record, and
    the same answer): a copy of the champion's capture given as the challenger's?"""
    ia, ib = pairs
    if len(ia) < 2:
        return False
    a, b = champion.take(ia), challenger.take(ib)
    return bool(np.all((a.events == b.events) & (a.events != -1) & (a.decision == b.decision))
                and np.array_equal(a.probabilities, b.probabilities))


def choose_design(design: str, champion: DecidedRows, challenger: DecidedRows,
                  pairs: int) -> str:
    """``paired`` or ``unpaired``: as asked, or (``auto``) paired when at least half of the
    smaller variant's labelled rows have a twin (a shadow, or a replay), else unpaired (split
    traffic: each request went to one variant)."""
    if design != "auto":
        return design
    smaller = min(int((champion.label >= 0).sum()), int((challenger.label >= 0).sum()))
    return "paired" if pairs >= 2 and pairs * 2 >= smaller else "unpaired"


def label_dependence(rows: DecidedRows) -> dict:
    """Do labels come only after some decisions (a refused applicant's outcome is never seen)?
    The share of labelled rows per decision, and a chi-square test of independence between being
    labelled and the decision (``evident`` at :data:`DEPENDENCE_ALPHA`)."""
    k = rows.k
    labelled = rows.label >= 0
    table = np.zeros((2, k), dtype=np.int64)
    np.add.at(table, (labelled.astype(np.int64), rows.decision), 1)
    decided = table.sum(axis=0)
    share = {str(c): (float(table[1, c] / decided[c]) if decided[c] else None) for c in range(k)}
    used = decided > 0
    p_value = 1.0
    if used.sum() >= 2 and table[0].sum() > 0 and table[1].sum() > 0:
        p_value = float(stats.chi2_contingency(table[:, used])[1])
    return {"labelled_share_by_decision": share, "p_value": p_value,
            "evident": p_value < DEPENDENCE_ALPHA}


def facet_cells(rows: DecidedRows, index: np.ndarray) -> np.ndarray | None:
    """:func:`bias_cells` of the rows at ``index`` (None without a facet)."""
    if rows.sensitive is None:
        return None
    return bias_cells(rows.sensitive[index], rows.label[index], rows.decision[index],
                      rows.favourable)
