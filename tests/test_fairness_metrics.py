"""The numpy bias metrics against SageMaker Clarify's reference implementation, ``smclarify``.

Every metric is compared on 50 random data sets (fixed seeds; sizes from 1 to 3000 rows, facet
shares and label/prediction rates including 0 and 1, integer/string/float-with-NaN group
variables, tied k-NN features) and on named edge cases. Clarify's metric functions are called the
way its report calls them (``smclarify.bias.metrics.call_metric`` with pandas Series:
``feature``, ``sensitive_facet_index``, ``positive_label_index``, ``label``,
``positive_predicted_label_index``, ``group_variable``, ``df``). Values agree to
``1e-9 * max(1, |value|)``; nan matches nan, inf matches inf of the same sign; where Clarify
raises ``ValueError`` ours raises ``UndefinedMetricError`` (and the dictionaries hold nan).
Two tests run Clarify's whole ``bias_report`` on a data frame, starting from raw columns.

String columns handed to smclarify are built with ``dtype=object``: pandas 3 would give them its
string dtype, on which smclarify 0.5's column-type guess raises ``TypeError``
(``np.issubdtype(StringDtype)``); ``object`` is what pandas 2, which smclarify targets, produces.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from smclarify.bias import metrics as clarify_metrics
from smclarify.bias import report as clarify_report
from smclarify.bias.metrics import common as clarify_common

from costaware.metrics import clarify as F

from support import Case, clarify, report_values, same

# smclarify 0.5 on pandas 3: "The copy keyword is deprecated" in its column-type guess
pytestmark = pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")
POST = F.POST_TRAINING_METRICS
PRE = F.PRE_TRAINING_METRICS


# ------------------------------------------------------------------ the two implementations

OURS = {
    "DPPL": lambda c: F.dppl(c.yhat, c.s),
    "DI": lambda c: F.di(c.yhat, c.s),
    "DCA": lambda c: F.dca(c.y, c.yhat, c.s),
    "DCR": lambda c: F.dcr(c.y, c.yhat, c.s),
    "RD": lambda c: F.rd(c.y, c.yhat, c.s),
    "SD": lambda c: F.sd(c.y, c.yhat, c.s),
    "DAR": lambda c: F.dar(c.y, c.yhat, c.s),
    "DRR": lambda c: F.drr(c.y, c.yhat, c.s),
    "AD": lambda c: F.ad(c.y, c.yhat, c.s),
    "CDDPL": lambda c: F.cddpl(c.yhat, c.s, c.group),
    "TE": lambda c: F.te(c.y, c.yhat, c.s),
    "FT": lambda c: F.ft(c.x if c.x is not None else np.zeros((len(c.s), 1)), c.yhat, c.s),
    "GE": lambda c: F.ge(c.y, c.yhat),
    "CI": lambda c: F.ci(c.s),
    "DPL": lambda c: F.dpl(c.y, c.s),
    "KL": lambda c: F.kl(c.y, c.s),
    "JS": lambda c: F.js(c.y, c.s),
    "LP": lambda c: F.lp(c.y, c.s),
    "TVD": lambda c: F.tvd(c.y, c.s),
    "KS": lambda c: F.ks(c.y, c.s),
    "CDDL": lambda c: F.cddl(c.y, c.s, c.group),
}
assert set(OURS) == set(POST) | set(PRE)
assert {f.__name__ for f in clarify_metrics.POSTTRAINING_METRICS} == set(POST)
assert {f.__name__ for f in clarify_metrics.PRETRAINING_METRICS} == set(PRE)


def ours(name: str, c: Case):
    try:
        return "value", OURS[name](c)
    except F.UndefinedMetricError as error:
        return "error", str(error)


def compare_all(c: Case) -> None:
    """Every metric, the per-metric functions and the dictionaries, against Clarify."""
    mismatches = []
    expected = {}
    for name in OURS:
        ref, got = clarify(name, c), ours(name, c)
        expected[name] = ref[1] if ref[0] == "value" else math.nan
        if ref[0] != got[0] or (ref[0] == "value" and not same(got[1], ref[1])):
            mismatches.append(f"{name}: clarify {ref} ours {got}")
    assert not mismatches, "\n".join(mismatches)

    post = F.post_training_bias(c.y, c.yhat, c.s, c.group, features=c.x)
    pre = F.pre_training_bias(c.y, c.s, c.group)
    want_post = [m for m in POST if (m != "CDDPL" or c.group is not None) and (m != "FT" or c.x is not None)]
    assert list(post) == want_post
    assert list(pre) == [m for m in PRE if m != "CDDL" or c.group is not None]
    for name, value in {**post, **pre}.items():
        assert same(value, expected[name]), (name, value, expected[name])


# ------------------------------------------------------------------ random cases

def random_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 5, 8, 13, 25, 60, 150, 400, 1000, 3000]
    n = int(rng.choice(sizes, p=[0.04, 0.04, 0.04] + [0.88 / 9] * 9))
    share_d = (rng.choice([0.0, 1.0]) if rng.random() < 0.1
               else rng.choice([0.02, 0.1, 0.3, 0.5, 0.8, 0.98, rng.random(), rng.random()]))
    s = rng.random(n) < share_d
    # label rate per facet, sometimes degenerate
    rate = {f: rng.choice([0.0, 1.0, rng.random(), rng.random(), rng.random()]) for f in "ad"}
    y = rng.random(n) < np.where(s, rate["d"], rate["a"])
    # predictions: the label with facet-dependent error rates, or independent of it
    if rng.random() < 0.7:
        err = {f: rng.choice([0.0, 0.05, 0.3, rng.random()]) for f in "ad"}
        yhat = y ^ (rng.random(n) < np.where(s, err["d"], err["a"]))
    else:
        yhat = rng.random(n) < rng.choice([0.0, 1.0, rng.random()])
    k = int(rng.integers(1, 7))
    kind = seed % 4
    if kind == 0:
        group = rng.integers(0, k, n)
    elif kind == 1:
        group = np.array([f"g{i}" for i in rng.integers(0, k, n)], dtype=object)
    elif kind == 2:
        group = rng.integers(0, k, n).astype(float)
        group[rng.random(n) < 0.1] = np.nan
    else:
        # sparse integer codes, negative ones too (a wide range takes the sorting path)
        group = rng.integers(-3, k, n) * (1000 if seed % 8 == 3 else 10**12)
    d = int(rng.integers(1, 4))
    x = rng.normal(size=(n, d)) if seed % 3 else rng.integers(0, 3, size=(n, d))  # ties for k-NN
    facet = np.where(s, "female", "male")
    return Case(y=y, yhat=yhat, s=s, group=group, x=x, facet=facet)


@pytest.mark.parametrize("seed", range(50))
def test_random_cases_match_clarify(seed):
    compare_all(random_case(seed))


# ------------------------------------------------------------------ edge cases

def _edge(y, yhat, s, group=None, x=None) -> Case:
    y, yhat, s = (np.asarray(v, dtype=bool) for v in (y, yhat, s))
    if group is None:
        group = np.arange(len(s)) % 2
    if x is None:
        x = np.arange(len(s), dtype=float).reshape(-1, 1)
    return Case(y=y, yhat=yhat, s=s, group=np.asarray(group), x=np.asarray(x))


EDGE_CASES = {
    "empty data set": _edge([], [], []),
    "one row, facet d": _edge([1], [1], [1]),
    "one row, facet a": _edge([0], [1], [0]),
    "two rows, one per facet": _edge([1, 0], [1, 1], [0, 1]),
    "facet d empty": _edge([1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]),
    "facet a empty": _edge([1, 0, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]),
    "facet d without positive labels": _edge([1, 0, 1, 0, 0, 0], [1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]),
    "facet d without predicted positives": _edge([1, 0, 1, 1, 0, 1], [1, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]),
    "facet a without predicted positives": _edge([1, 0, 1, 1, 0, 1], [0, 0, 0, 1, 0, 1], [0, 0, 0, 1, 1, 1]),
    "no predicted positives": _edge([1, 0, 1, 1, 0, 1], [0] * 6, [0, 0, 0, 1, 1, 1]),
    "all predicted positive": _edge([1, 0, 1, 1, 0, 1], [1] * 6, [0, 0, 0, 1, 1, 1]),
    "all labels positive": _edge([1] * 6, [1, 0, 1, 1, 0, 1], [0, 0, 0, 1, 1, 1]),
    "all labels negative": _edge([0] * 6, [1, 0, 1, 1, 0, 1], [0, 0, 0, 1, 1, 1]),
    "all rows false negatives": _edge([1] * 6, [0] * 6, [0, 0, 0, 1, 1, 1]),
    "perfect predictions": _edge([1, 0, 1, 1, 0, 1], [1, 0, 1, 1, 0, 1], [0, 0, 0, 1, 1, 1]),
    "TE: facet d has FN but no FP": _edge([1, 1, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]),
    "TE: both facets FN but no FP": _edge([1, 1, 0, 1, 1, 0], [0, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1]),
    "DCA: facet a positives never predicted": _edge([1, 1, 0, 1, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1]),
    "DCA, DCR: infinite in both facets": _edge([1, 1, 1, 0], [0, 0, 0, 0], [0, 1, 0, 1]),
    "labels disjoint between facets": _edge([1, 1, 1, 0, 0, 0], [1, 0, 1, 0, 1, 0], [0, 0, 0, 1, 1, 1]),
    "one group": _edge([1, 0, 1, 1, 0, 1], [1, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], group=[7] * 6),
    "group without negatives": _edge([1, 0, 1, 1, 0, 1], [1, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1],
                                     group=[0, 1, 0, 0, 1, 2]),
    "all groups NaN": _edge([1, 0, 1, 1, 0, 1], [1, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1],
                            group=[np.nan] * 6),
    "string groups": _edge([1, 0, 1, 1, 0, 1], [1, 0, 0, 1, 1, 1], [0, 1, 0, 1, 1, 0],
                           group=np.array(["x", "y", "y", "z", "x", "x"], dtype=object)),
    "FT: identical feature rows": _edge([1, 0, 1, 1, 0, 1, 0, 0] * 3, [1, 0, 0, 1, 1, 1, 0, 1] * 3,
                                        [0, 0, 0, 1, 1, 1, 0, 0] * 3, x=np.ones((24, 2))),
    "FT: exactly 9 rows in facet a": _edge([1, 0] * 7, [1, 1, 0] * 4 + [0, 1],
                                           [0] * 9 + [1] * 5, x=np.arange(28.0).reshape(14, 2) % 5),
    "FT: exactly 10 rows in facet a": _edge([1, 0] * 7, [1, 1, 0] * 4 + [0, 1],
                                            [0] * 10 + [1] * 4, x=np.arange(28.0).reshape(14, 2) % 5),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases_match_clarify(name):
    compare_all(EDGE_CASES[name])


def test_edge_cases_hit_every_special_value():
    """The edge cases do exercise Clarify's raises, infinities and inf-minus-inf zeros."""
    seen = {"error": set(), "inf": set(), "-inf": set()}
    for c in EDGE_CASES.values():
        for name in OURS:
            kind, value = clarify(name, c)
            if kind == "error":
                seen["error"].add(name)
            elif math.isinf(value):
                seen["inf" if value > 0 else "-inf"].add(name)
    assert seen["error"] == set(OURS)
    assert {"DI", "DCA", "DCR", "TE"} <= seen["inf"]
    assert {"DCA", "TE"} <= seen["-inf"]
    assert F.te([1, 1, 0, 1, 1, 0], [0, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1]) == 0.0  # inf - inf


def test_on_error_modes():
    c = EDGE_CASES["facet d empty"]
    assert all(math.isnan(v) for k, v in F.post_training_bias(c.y, c.yhat, c.s).items() if k != "GE")
    assert F.post_training_bias(c.y, c.yhat, c.s, on_error="none")["DPPL"] is None
    with pytest.raises(F.UndefinedMetricError):
        F.pre_training_bias(c.y, c.s, on_error="raise")


def test_inputs_must_be_binary_and_aligned():
    with pytest.raises(ValueError, match="0/1"):
        F.dppl([0, 2, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="length"):
        F.dca([0, 1], [0, 1, 1], [0, 1, 1])
    assert F.dppl(np.array([0.0, 1.0, 1.0, 0.0]), np.array([0, 0, 1, 1])) == 0.0


# ------------------------------------------------------------------ multi-valued labels

@pytest.mark.parametrize("seed", range(8))
def test_distribution_metrics_on_multivalued_labels(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.choice([5, 40, 500]))
    s = rng.random(n) < rng.choice([0.0, 0.2, 0.5])
    values = np.array(["low", "mid", "high", "none"], dtype=object) if seed % 2 else np.arange(-1, 4)
    # facet-specific label distributions, some values absent from one facet
    pa, pd_ = rng.dirichlet(np.full(len(values), 0.5), size=2)
    label = np.where(s, rng.choice(values, n, p=pd_), rng.choice(values, n, p=pa))
    for name, fn in {"KL": F.kl, "JS": F.js, "LP": F.lp, "TVD": F.tvd, "KS": F.ks}.items():
        try:
            ref = ("value", float(clarify_metrics.call_metric(
                getattr(clarify_metrics, name), label=pd.Series(label),
                sensitive_facet_index=pd.Series(s, dtype=bool))))
        except ValueError:
            ref = ("error", None)
        try:
            got = ("value", fn(label, s))
        except F.UndefinedMetricError:
            got = ("error", None)
        assert ref[0] == got[0] and (ref[0] == "error" or same(got[1], ref[1])), (name, ref, got)


# ------------------------------------------------------------------ collapsing columns

@pytest.mark.parametrize("threshold", [-10.0, -0.5, 0.0, 0.3, 1.0, 2.5, 2.9, 3.0, 10.0])
def test_continuous_threshold_matches_clarify_interval(threshold):
    rng = np.random.default_rng(7)
    values = np.round(rng.uniform(-3, 3, 120), 1)
    values[:3] = [3.0, -3.0, np.nan]
    series = pd.Series(values)
    intervals = clarify_report._interval_index(series, [threshold])
    ref = clarify_report._continuous_data_idx(series, intervals).to_numpy(dtype=bool)
    np.testing.assert_array_equal(F.positive_label_index(values, threshold), ref)
    np.testing.assert_array_equal(F.sensitive_facet_index(values, [threshold], data_type="continuous"), ref)
    np.testing.assert_array_equal(F.positive_label_index(values, [threshold], data_type="infer"), ref)


@pytest.mark.parametrize("column, values", [
    (np.array([1, 2, 3, 1, 2, 2]), [2]),
    (np.array([1, 2, 3, 1, 2, 2]), [1, 3]),
    (np.array([1, 2, 3, 1, 2, 2]), ["2", "3"]),              # converted to the column's type
    (np.array(["a", "b", "c", "a"], dtype=object), ["a"]),
    (np.array(["1", "2", "1"], dtype=object), [1]),          # converted to str
    (np.array([0.0, 1.0, 2.0]), [1]),
    (np.array([True, False, True]), [True]),
    (np.array(["x", "y"], dtype=object), ["z"]),             # no match stays all False
])
def test_categorical_values_match_clarify(column, values):
    ref = clarify_report._categorical_data_idx(pd.Series(column), list(values)).to_numpy(dtype=bool)
    np.testing.assert_array_equal(F.positive_label_index(column, values), ref)
    np.testing.assert_array_equal(F.sensitive_facet_index(column, values), ref)


@pytest.mark.parametrize("column, values", [
    (np.arange(100) % 2, [1]),             # 2 distinct / 100 rows: categorical
    (np.arange(20) % 2, [1]),              # 2 distinct / 20 rows >= 5%: continuous (!)
    (np.arange(20) % 2, [0, 1]),           # several values: categorical
    (np.linspace(0, 1, 50), [0.5]),
    (np.array(["1", "2", "3"], dtype=object), [2]),
    (np.array(["a", "b", "c"], dtype=object), ["a"]),
    (np.array([True, False] * 10), [True]),
])
def test_infer_data_type_matches_clarify(column, values):
    # dtype=object: pandas 3 would infer its string dtype, on which smclarify 0.5 crashes
    series = pd.Series(column, dtype=object if column.dtype == object else None)
    ref = clarify_common.series_datatype(series, list(values)).name.lower()
    assert F.infer_data_type(column, values) == ref


# ------------------------------------------------------------------ Clarify's whole report

@pytest.mark.parametrize("seed", range(3))
def test_post_training_report_from_raw_columns(seed):
    rng = np.random.default_rng(500 + seed)
    n = 400
    df = pd.DataFrame({
        "facet": pd.Series(rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2]), dtype=object),
        "label": rng.choice([0, 1, 2], n),
        "f1": rng.normal(size=n), "f2": rng.integers(0, 4, n).astype(float),
    })
    df["pred"] = np.where(rng.random(n) < 0.75, df["label"], rng.choice([0, 1, 2], n))
    group = pd.Series(rng.integers(0, 3, n))
    report = clarify_report.bias_report(
        df, clarify_report.FacetColumn("facet", ["B"]),
        clarify_report.LabelColumn("label", df["label"], [1, 2]),
        clarify_report.StageType.POST_TRAINING,
        clarify_report.LabelColumn("pred", df["pred"]), group_variable=group)
    ref = report_values(report)

    y = F.positive_label_index(df["label"].to_numpy(), [1, 2])
    yhat = F.positive_label_index(df["pred"].to_numpy(), [1, 2])
    s = F.sensitive_facet_index(df["facet"].to_numpy(), ["B"])
    got = F.post_training_bias(y, yhat, s, group.to_numpy(), features=df[["f1", "f2"]].to_numpy())
    assert set(got) == set(ref)
    assert all(same(got[k], ref[k]) for k in ref), {k: (got[k], ref[k]) for k in ref}


@pytest.mark.parametrize("seed", range(3))
def test_pre_training_report_with_continuous_facet(seed):
    rng = np.random.default_rng(600 + seed)
    n = 300
    df = pd.DataFrame({"age": np.round(rng.uniform(18, 80, n), 1),
                       "label": pd.Series(rng.choice(["good", "bad"], n, p=[0.7, 0.3]), dtype=object)})
    group = pd.Series(rng.choice(["x", "y", "z"], n))
    report = clarify_report.bias_report(
        df, clarify_report.FacetColumn("age", [40]),
        clarify_report.LabelColumn("label", df["label"], ["good"]),
        clarify_report.StageType.PRE_TRAINING, group_variable=group)
    ref = report_values(report)

    y = F.positive_label_index(df["label"].to_numpy(), ["good"])
    s = F.sensitive_facet_index(df["age"].to_numpy(), [40], data_type="infer")
    got = F.pre_training_bias(y, s, group.to_numpy())
    assert set(got) == set(ref)
    assert all(same(got[k], ref[k]) for k in ref), {k: (got[k], ref[k]) for k in ref}
