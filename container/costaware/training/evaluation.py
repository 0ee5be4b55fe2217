"""A channel's evaluation at the kept model: the decision rule fitted on held-out rows, the metrics
at the served rule and at the rules it is compared with, summed over every host."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import bias
from .channels import Channel
from ..cluster import Cluster
from ..decisions.costs import row_blocks
from ..decisions.rules import DecisionRule, InfeasibleBound, ShiftHistogram
from ..errors import DataError
from ..metrics.classification import EXACT_AUC_ROWS, Summary, channel_metrics, exact_auc, summarize


@dataclass
class ChannelResult:
    """One channel's evaluation of the kept model, as evaluation.json, the log and the report
    show it."""

    name: str
    scored_by: str  # "model" (the saved model) or "out-of-fold" (the fold models)
    fitted_on: list[str]  # what was fitted on these rows: "trees", "calibrator", "rule", "round"
    metrics: dict  # at the served rule: channel_metrics + fairness distances
    alternatives: dict  # rule name -> metrics, for comparison
    summary: Summary | None  # at the served rule (the report draws from it); binary only
    shifts: ShiftHistogram | None  # the cost of every shift of the Bayes boundary; binary only
    bias: dict | None = None
    contributions: dict | None = None  # contribution_summary of the saved model on these rows


def fit_rule(settings, held: Channel, p: np.ndarray, cluster: Cluster, log) -> DecisionRule:
    constrained = bool(settings.facet_column) and settings.max_abs_dppl < 1
    if not constrained and settings.decision_rule == "bayes":
        return DecisionRule()
    local = ShiftHistogram.of(p, held.data.label, held.data.costs,
                              held.sensitive if constrained else None)
    histogram = ShiftHistogram.unpack(cluster.sum(local.pack()))
    if not constrained:
        rule = histogram.empirical()
        log(f"decision rule: the Bayes boundary shifted by {rule.shift_a:+.4g} in log-odds (the "
            "cheapest shift on the held-out rows)")
        return rule
    try:
        rule, dppl = histogram.constrained(settings.max_abs_dppl, settings.group_thresholds)
    except InfeasibleBound as exc:
        raise DataError(f"max_abs_dppl {settings.max_abs_dppl:g}: {exc}") from None
    log(f"decision rule: the cheapest shift{'s' if rule.per_facet else ''} of the Bayes boundary "
        f"with |DPPL| <= {settings.max_abs_dppl:g} on the held-out rows: "
        + (f"facet a {rule.shift_a:+.4g}, facet d {rule.shift_d:+.4g}" if rule.per_facet
           else f"{rule.shift_a:+.4g}") + f" (held-out DPPL {dppl:+.4f})")
    return rule


def metrics_at(channel: Channel, p: np.ndarray, decision: np.ndarray, settings,
                fairness_names: list[str], n_groups: int, cluster: Cluster
                ) -> tuple[dict, Summary]:
    """The metrics (and the summary) of ``channel``'s rows with ``decision`` on ``p``, over
    every host; the AUC exact up to :data:`~costaware.metrics.classification.EXACT_AUC_ROWS` rows."""
    data = channel.data
    local = summarize(data.label, p, decision, data.costs, channel.sensitive,
                      channel.groups if n_groups else None, n_groups)
    summary = local.unpack(cluster.sum(local.pack()))
    auc = None
    if summary.counts[0] <= EXACT_AUC_ROWS:  # the same test on every host: gather is collective
        auc = exact_auc(cluster.gather((np.asarray(data.label) == 1).astype(np.float64)),
                        cluster.gather(np.asarray(p, dtype=np.float64)))
    metrics = channel_metrics(summary, auc)
    if summary.facets is not None and fairness_names:
        metrics.update(bias.per_round_with_objective(
            fairness_names, summary.facets, summary.groups, metrics["auc"],
            settings.objective_auc_weight, settings.objective_fairness_weight))
    return metrics, summary


def evaluate(channel: Channel, p: np.ndarray, rule: DecisionRule, settings,
              fairness_names: list[str], n_groups: int, cluster: Cluster, scored_by: str,
              fitted: list[str]) -> ChannelResult:
    """The channel at the served rule, at the Bayes rule (when another is served) and at
    ``p >= 0.5`` (the cost-blind rule), for comparison."""
    data = channel.data

    def at(decision):
        return metrics_at(channel, p, decision, settings, fairness_names, n_groups, cluster)

    metrics, summary = at(decisions(rule, p, data.costs, channel.sensitive))
    if rule.kind != "bayes":
        metrics.update({"shift": rule.shift_a} if not rule.per_facet else
                       {"shift_a": rule.shift_a, "shift_d": rule.shift_d})
    alternatives = {}
    if rule.kind != "bayes":
        alternatives["bayes"] = at(decisions(DecisionRule(), p, data.costs, channel.sensitive))[0]
    alternatives["probability_0.5"] = at((p >= 0.5).astype(np.int8))[0]
    local = ShiftHistogram.of(p, data.label, data.costs, channel.sensitive)
    shifts = ShiftHistogram.unpack(cluster.sum(local.pack()))
    return ChannelResult(channel.name, scored_by, fitted, metrics, alternatives, summary, shifts,
                         None if summary.facets is None else
                         bias.bias_section(summary.facets, summary.groups))


def decisions(rule: DecisionRule, p: np.ndarray, costs, sensitive) -> np.ndarray:
    """The rule's decision on every row (int8), a block at a time: its expected costs (two
    float64 a row) are not kept."""
    out = np.empty(len(p), dtype=np.int8)
    for rows in row_blocks(len(p)):
        out[rows] = rule.decide(p[rows], costs.subset(rows),
                                None if sensitive is None else sensitive[rows])[0]
    return out


# TreeSHAP costs far more than a prediction, in proportion to rows x trees: each channel's
# summary reads at most this many row-rounds per host (2,500 rows of a 100-round model, 1,000 of
# the 5-fold average of it), and never fewer than CONTRIBUTION_MIN_ROWS rows
CONTRIBUTION_BUDGET = 250_000
CONTRIBUTION_MIN_ROWS = 1_000


def contribution_summary(booster, channel: Channel, feature_names: list[str],
                         cluster: Cluster) -> dict:
    """Mean ``|TreeSHAP contribution|`` of each feature to the saved model's margin on the
    channel's rows (XGBoost's ``pred_contribs``; every row, or an even stride of
    :data:`CONTRIBUTION_BUDGET` / rounds of them on each host), overall and, with a facet, per facet: what the
    model leans on, and whether it leans on it more for one facet (a proxy of the protected
    attribute shows there). Summed over every host."""
    import xgboost as xgb

    data = channel.data
    most = max(CONTRIBUTION_MIN_ROWS, CONTRIBUTION_BUDGET // max(booster.num_boosted_rounds(), 1))
    take = (np.arange(data.rows) if data.rows <= most
            else np.linspace(0, data.rows - 1, most).astype(np.int64))
    width = len(feature_names)
    # Every host builds its DMatrix, rows or none: on several hosts building one is a collective
    # step (XGBoost agrees the column count), and a host that skipped it would stall the others.
    # (np.asarray: features left in their files are read for these rows only)
    matrix = xgb.DMatrix(np.asarray(data.features[take]).reshape(len(take), width),
                         feature_names=feature_names,
                         missing=np.nan)
    size = (np.abs(booster.predict(matrix, pred_contribs=True)[:, :-1]).astype(np.float64)
            if len(take) else np.zeros((0, width)))
    masks = {"all": np.ones(len(take), dtype=bool)}
    if channel.sensitive is not None:
        d = np.asarray(channel.sensitive, dtype=bool)[take]
        masks.update(a=~d, d=d)
    local = np.concatenate([np.concatenate([size[m].sum(axis=0), [m.sum()]])
                            for m in masks.values()])
    total = cluster.sum(local).reshape(len(masks), width + 1)
    out: dict = {"rows": int(total[0, -1])}
    for (name, _), row in zip(masks.items(), total):
        out[name] = (row[:-1] / row[-1]).tolist() if row[-1] else None
    return out
