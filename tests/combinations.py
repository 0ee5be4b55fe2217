"""The matrix of combinations' table and its independent oracle (tests/test_combinations.py).

The table: the training kinds (classes, costs, facet and bound, decision rule, input format) and
their small data; how a request row is laid out for each.

The oracle recomputes, from a model directory's saved files only — the booster read with the
xgboost library, ``metadata.json``'s calibrator, rule and costs — what the documented contract
(docs/training.md, docs/serving.md, docs/multiclass.md;
docs/explainability.md) says every row gets, in plain numpy. It imports nothing from costaware:
a mismatch is a defect of the code or of the docs, never agreement of the code with itself.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from support import write_tree

FEATURES = ["a", "b", "c", "d"]
CLASSES = ["low", 'mid, "so-so"', "high"]  # CSV must quote the middle one
INT_CLASSES = [3, 5, 7]
MATRIX = [[0, 1, 4], [2, 0, 1], [6, 2, 0]]  # C[true][decided]
ROWS = {"train": 240, "validation": 80, "test": 80}
COMMON = {"num_round": "10", "max_depth": "3", "eta": "0.3", "seed": "1", "nthread": "1"}


def frame(k: int, seed: int = 0) -> pd.DataFrame:
    """400 rows: four features, a label (0/1, or the class index for ``k`` >= 3), a facet ``grp``
    (1: the sensitive group d, about a third of the rows, and it shifts the label) and two cost
    columns, ``loss`` (a miss) and ``interest`` (a false alarm)."""
    rng = np.random.default_rng(seed)
    n = sum(ROWS.values())
    x = rng.normal(size=(n, len(FEATURES)))
    grp = (rng.random(n) < 0.35).astype(int)
    if k == 2:
        logit = x @ np.array([1.5, -1.0, 0.5, 0.0]) - 0.3 + 0.8 * grp
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    else:
        scores = x[:, :3] * np.array([1.5, 1.0, -1.2]) + np.array([0.0, 0.2, -0.2]) + 0.6 * grp[:, None] * [0, 0, 1]
        q = np.exp(scores - scores.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        label = np.array([rng.choice(k, p=row) for row in q])
    out = pd.DataFrame(np.round(x, 4), columns=FEATURES)
    out.insert(0, "y", label)
    out["grp"] = grp
    out["loss"] = np.round(rng.uniform(2, 12, n), 2)
    out["interest"] = np.round(rng.uniform(0.5, 3, n), 2)
    return out


@dataclass(frozen=True)
class Kind:
    """One training: what it sets, and how its channels are written."""

    name: str
    k: int  # classes
    hyperparameters: dict
    input: str  # csv, parquet or gzip (a gzipped CSV)
    header: bool = True  # CSV: a header line (label_column names the label) or the label first
    columns: tuple = ("y", *FEATURES)  # the file's columns, in order
    labels: tuple | None = None  # the label written for class index i (None: the index itself)
    validation: bool = True


def _label_text(kind: Kind, y: np.ndarray):
    return y if kind.labels is None else np.asarray(kind.labels, dtype=object)[y]


_FRAMES: dict[str, dict[str, pd.DataFrame]] = {}


def channel_frames(kind: Kind) -> dict[str, pd.DataFrame]:
    """The kind's train, validation and test rows as its files hold them (made once per kind)."""
    if kind.name not in _FRAMES:
        _FRAMES[kind.name] = _split(kind)
    return _FRAMES[kind.name]


def _split(kind: Kind) -> dict[str, pd.DataFrame]:
    data = frame(kind.k)
    data["y"] = _label_text(kind, data["y"].to_numpy())
    data = data[list(kind.columns)]
    out, start = {}, 0
    for name, n in ROWS.items():
        out[name] = data.iloc[start:start + n].reset_index(drop=True)
        start += n
    if not kind.validation:
        del out["validation"]
    return out


def _encode(kind: Kind, part: pd.DataFrame) -> tuple[str, bytes | str]:
    if kind.input == "parquet":
        buffer = io.BytesIO()
        part.to_parquet(buffer, index=False)
        return "part.parquet", buffer.getvalue()
    text = part.to_csv(index=False, header=kind.header)
    if kind.input == "gzip":
        return "part.csv.gz", gzip.compress(text.encode())
    return "part.csv", text


def write_kind(kind: Kind, base: Path) -> Path:
    """``base`` laid out like /opt/ml for this kind (tests/conftest.py's write_tree)."""
    channels, types = {}, {}
    for name, part in channel_frames(kind).items():
        file_name, content = _encode(kind, part)
        channels[name] = {file_name: content}
        types[name] = "application/x-parquet" if kind.input == "parquet" else "text/csv"
    return write_tree(base, {**COMMON, **kind.hyperparameters}, channels, types)


# ------------------------------------------------------------------------------------ the oracle


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p):
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


@dataclass
class SavedModel:
    """A model directory read without costaware: the booster and ``metadata.json``."""

    directory: Path
    booster: xgb.Booster = field(init=False)
    meta: dict = field(init=False)

    def __post_init__(self):
        self.meta = json.loads((Path(self.directory) / "metadata.json").read_text())
        self.booster = xgb.Booster(model_file=str(Path(self.directory) / "xgboost-model.ubj"))

    @property
    def policy(self) -> dict:
        return self.meta["decision_policy"]

    @property
    def features(self) -> list[str]:
        return self.meta["feature_names"]

    @property
    def request_columns(self) -> list[str]:
        return self.meta["request_columns"]

    @property
    def multiclass(self) -> bool:
        return self.policy.get("kind") == "multiclass"

    @property
    def classes(self) -> list:
        return self.policy["classes"]

    @property
    def cost_columns(self) -> dict:
        """cell -> request column name, in the documented order fp, fn, tp, tn."""
        saved = self.policy.get("cost_columns") or {}
        return {cell: saved[cell] for cell in ("fp", "fn", "tp", "tn") if cell in saved}

    @property
    def needs_facet(self) -> bool:
        rule = self.policy.get("rule") or {}
        shift = rule.get("shift")
        return isinstance(shift, dict) and shift["a"] != shift["d"]

    def margins(self, features: np.ndarray) -> np.ndarray:
        data = xgb.DMatrix(features, missing=np.nan, feature_names=self.features)
        return self.booster.predict(data, output_margin=True).astype(np.float64)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        data = xgb.DMatrix(features, missing=np.nan, feature_names=self.features)
        return self.booster.predict(data, pred_contribs=True).astype(np.float64)

    # -------------------------------------------------------------------- binary

    def probability(self, features: np.ndarray) -> np.ndarray:
        """docs/training.md *Probabilities you can price*: Platt: ``sigmoid(mu / sqrt(1 + pi v /
        8))``, ``mu = a m + c``, ``v = (m, 1) Cov (m, 1)^T``, the margin held within the saved
        ``margin_range``; identity: ``sigmoid(m)``; isotonic: ``sigmoid`` of the log-odds linear
        between the knots, constant beyond them."""
        cal = self.policy["calibrator"]
        if cal["method"] == "identity":
            return _sigmoid(self.margins(features))
        if cal["method"] == "isotonic":
            return _sigmoid(np.interp(self.margins(features), cal["knot_margins"],
                                      cal["knot_log_odds"]))
        low, high = cal["margin_range"]
        low, high = -math.inf if low is None else low, math.inf if high is None else high
        m = np.clip(self.margins(features), low, high)
        (v_aa, v_ac), (_, v_cc) = cal["covariance"]
        mu = cal["slope"] * m + cal["intercept"]
        v = v_aa * m * m + 2 * v_ac * m + v_cc
        return _sigmoid(mu / np.sqrt(1 + math.pi * np.maximum(v, 0) / 8))

    def binary(self, rows: np.ndarray, own: np.ndarray, override: dict | None = None) -> dict:
        """Every documented field of each row. ``rows``: request rows (features, the facet when
        the rule needs it, then the cost cells where ``own``); ``override``: the request's
        cost_* attributes (unnamed costs keep the model's)."""
        n = len(rows)
        features = rows[:, :len(self.features)]
        p = self.probability(features)
        model_costs = {c: self.policy["costs"]["cost_" + c] for c in ("fp", "fn", "tp", "tn")}
        class_costs = dict(model_costs)
        if override:
            class_costs.update({key[len("cost_"):]: float(v) for key, v in override.items()})
        cells = {c: np.full(n, class_costs[c], dtype=np.float64) for c in class_costs}
        where = self.request_columns.index
        for cell, name in self.cost_columns.items():
            cells[cell] = np.where(own, rows[:, where(name)], cells[cell])
        fp, fn, tp, tn = cells["fp"], cells["fn"], cells["tp"], cells["tn"]
        if_1 = p * tp + (1 - p) * fp
        if_0 = p * fn + (1 - p) * tn
        with np.errstate(divide="ignore", invalid="ignore"):
            bayes = (fp - tn) / (fp - tn + fn - tp)
        bayes = np.where(fp - tn <= 0, 0.0, np.where(fn - tp <= 0, 1.0, bayes))
        rule = self.policy["rule"]
        kind = rule["kind"]
        shift = np.zeros(n)
        if kind != "bayes":
            s = rule["shift"]
            if isinstance(s, dict):
                facet = rows[:, where(self.policy["facet"]["column"])]
                shift = np.where(self.sensitive(facet), s["d"], s["a"])
            else:
                shift = np.full(n, float(s))
        # an override replaces the class costs, nothing else: every row is decided by the model's
        # rule, at its own costs or the request's (docs/serving.md)
        rule_name = np.full(n, kind, dtype=object)
        inside = (bayes > 0) & (bayes < 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            threshold = np.where(inside, _sigmoid(_logit(bayes) + shift), bayes)
        z = np.where(inside, _logit(p) - _logit(np.where(inside, threshold, 0.5)), np.nan)
        decision = np.where(inside, z >= 0, if_1 <= if_0).astype(int)
        source = np.where(own, "row", "request" if override else "model").astype(object)
        return {"score": p, "decision": decision, "expected_cost_if_1": if_1,
                "expected_cost_if_0": if_0, "threshold": threshold, "costs": source,
                "rule": rule_name, "boundary_log_odds": z, "near_tie": np.abs(z) < 1e-9}

    def sensitive(self, facet: np.ndarray) -> np.ndarray:
        """Clarify's facet d: a list of values, or ``facet > t``."""
        spec = self.policy["facet"]["values_or_threshold"]
        if isinstance(spec, list):
            return np.isin(facet, np.asarray(spec, dtype=np.float64))
        return facet > float(spec)

    def binary_reasons(self, rows: np.ndarray, answer: dict, k: int, which: str) -> list:
        """docs/explainability.md: rows whose decision ``which`` explains get their top ``k``
        features by TreeSHAP contribution signed towards the decision (positive ones only)."""
        features = rows[:, :len(self.features)]
        contributions = self.contributions(features)[:, :len(self.features)]
        out = []
        for i, decision in enumerate(answer["decision"]):
            if which != "all" and str(decision) != which:
                out.append(None)
                continue
            signed = contributions[i] * (1 if decision == 1 else -1)
            order = [j for j in np.argsort(-signed, kind="stable") if signed[j] > 0][:k]
            out.append([(self.features[j], features[i, j], signed[j]) for j in order])
        return out

    # -------------------------------------------------------------------- K >= 3

    def class_probabilities(self, features: np.ndarray) -> np.ndarray:
        """docs/multiclass.md *Calibration*: ``softmax(z / T + b)``."""
        cal = self.policy["calibrator"]
        z = self.margins(features).reshape(len(features), -1) / cal["temperature"]
        if cal.get("bias"):
            z = z + np.asarray(cal["bias"])
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def classes_answer(self, rows: np.ndarray, matrix=None) -> dict:
        """``argmin_j sum_k p_k C[k][j]``; a bound's rule lowers the favourable decisions' expected
        costs by its facet's shift."""
        features = rows[:, :len(self.features)]
        p = self.class_probabilities(features)
        c = np.asarray(matrix if matrix is not None else self.policy["cost_matrix"], dtype=np.float64)
        expected = p @ c
        rule = self.policy.get("rule")
        adjusted = expected
        if rule is not None and matrix is None:
            favourable = np.zeros(c.shape[1], dtype=bool)
            favourable[rule["favourable"]] = True
            shift = np.full(len(rows), float(rule["shift"]["a"]))
            if self.needs_facet:
                facet = rows[:, self.request_columns.index(self.policy["facet"]["column"])]
                shift = np.where(self.sensitive(facet), rule["shift"]["d"], rule["shift"]["a"])
            adjusted = expected - shift[:, None] * favourable[None, :]
        index = np.argmin(adjusted, axis=1)
        ordered = np.sort(adjusted, axis=1)
        return {"index": index, "decision": [self.classes[i] for i in index], "probabilities": p,
                "expected_costs": expected,
                "costs": "request" if matrix is not None else "model",
                "rule": "constrained" if rule is not None and matrix is None else "bayes",
                "near_tie": (ordered[:, 1] - ordered[:, 0]) < 1e-9}

    def class_reasons(self, rows: np.ndarray, answer: dict, k: int) -> list:
        """docs/explainability.md: against the runner-up ``r`` (the next cheapest decision), the
        features by their contribution to ``f_j - f_r``; ``cost_gap = E[r] - E[j]``."""
        features = rows[:, :len(self.features)]
        contributions = self.contributions(features)  # (n, K, F + 1)
        out = []
        for i, j in enumerate(answer["index"]):
            expected = answer["expected_costs"][i].copy()
            expected[j] = np.inf
            r = int(np.argmin(expected))
            signed = contributions[i, j, :len(self.features)] - contributions[i, r, :len(self.features)]
            order = [f for f in np.argsort(-signed, kind="stable") if signed[f] > 0][:k]
            out.append({"runner_up": self.classes[r],
                        "cost_gap": answer["expected_costs"][i, r] - answer["expected_costs"][i, j],
                        "reasons": [(self.features[f], features[i, f], signed[f]) for f in order]})
        return out


def realised_cost(answer_decision: np.ndarray, label: np.ndarray, cells: dict) -> float:
    """Mean realised cost of binary decisions at per-row costs ``cells`` (fp, fn, tp, tn)."""
    d, y = np.asarray(answer_decision), np.asarray(label)
    cost = np.where(d == 1, np.where(y == 1, cells["tp"], cells["fp"]),
                    np.where(y == 1, cells["fn"], cells["tn"]))
    return float(np.mean(cost))


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """The probability that a positive row scores above a negative one (ties count one half):
    the Mann-Whitney statistic from average ranks."""
    score, positive = np.asarray(score, dtype=np.float64), np.asarray(label) == 1
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    start = 0
    for end in range(1, len(score) + 1):
        if end == len(score) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    n1, n0 = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
