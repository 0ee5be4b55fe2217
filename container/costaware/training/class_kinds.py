"""Where training differs between two classes and K >= 3: the small per-K strategy that
:func:`costaware.training.pipeline.train` takes. The steps (held-out rows, members, rounds,
the scoring plan, the evaluation loop) are one program; only the mathematics below is K's own.

=================  ===================================  =====================================
step               two classes (:class:`TwoClasses`)    K >= 3 (:class:`ManyClasses`)
=================  ===================================  =====================================
margins            one logistic margin a row            K softmax margins a row, (rows, K)
loss weights       each row's (``CostWeighting``)       each row's (``row_loss_weights``)
objective          ``make_objective``                   ``class_objective.class_objective``
fairness penalty   on ``p(1)``                          on the favourable classes' share
calibrator         ``calibration.fit_platt``            ``multiclass.fit_temperature``
decision rule      ``rules.DecisionRule``               ``multiclass.FavourableShift``
policy             ``policy.Policy``                    ``multiclass_policy.MulticlassPolicy``
metrics            ``classification.summarize``         ``multiclass_metrics.class_summary``
=================  ===================================  =====================================

Every sum either strategy needs is added up over the hosts (``cluster``), so several hosts get
one host's numbers on all their rows.
"""

from __future__ import annotations

import re

import numpy as np

from ..metrics import bias
from ..metrics import log_lines as metric_log
from .boosting import Member
from ..decisions.calibration import Calibrator, fit_platt
from ..decisions.calibrator_choice import (ISOTONIC_MIN_ROWS, TWO_CLASS_CANDIDATES, Candidate,
                                           calibrator_from_dict)
from .channels import Channel, check_classes
from ..cluster import Cluster
from ..decisions.costs import bayes_decision
from ..decisions.rules import DecisionRule
from ..errors import DataError
from .evaluation import ChannelResult, contribution_summary, evaluate, fit_rule, metrics_at
from .class_objective import ClassWeighting, class_objective, row_loss_weights
from ..decisions.costs import row_blocks
from ..decisions.multiclass import (TemperatureCalibrator, cells_of, expected_costs,
                                    favourable_gaps, fit_favourable_shift, fit_temperature,
                                    matrix_column_names, realised_costs, true_class_costs)
from ..metrics.multiclass_metrics import channel_metrics
from ..decisions.multiclass_policy import MulticlassPolicy
from .objective import CostWeighting, base_log_odds, make_objective
from ..decisions.policy import Policy


def kind_of(settings) -> "TwoClasses | ManyClasses":
    return ManyClasses(settings) if settings.multiclass else TwoClasses(settings)


def facet_spec(settings, train_data) -> dict | None:
    """The facet as the policy keeps it; ``column`` is a request column's name: the facet's feature
    name when it is a feature (``f3`` in a headerless file, where ``facet_column`` counts the
    label too), else ``facet_column``."""
    if not settings.facet_column:
        return None
    return {
        "column": train_data.facet_feature or settings.facet_column,
        "values_or_threshold": settings.facet_values,
        "is_feature": settings.facet_is_feature,
    }


def cost_column_names(settings, data) -> tuple[tuple[str, str], ...]:
    """Per cell with a cost column, the name a request carries its value under: the training
    column's name when the files had names, else ``cost_<cell>``."""
    return tuple((cell, spec if data.named_columns and not spec.isdigit() else f"cost_{cell}")
                 for cell, spec in settings.cost_columns)


class TwoClasses:
    """One logistic margin, the Platt-type calibrator, the log-odds shift."""

    classes = 2
    scaling = "platt"  # the calibrator served unless another decides more cheaply
    what = ""  # (the log's "training on ... rows")
    lighter = "lighter class"

    def __init__(self, settings):
        self.settings = settings
        self.fairness_names = list(settings.fairness_names)

    def label(self, data) -> np.ndarray:
        return data.label

    def check_channels(self, channels: dict, cluster: Cluster) -> None:
        check_classes(channels["train"], self.settings, cluster)
        if "validation" in channels:
            check_classes(channels["validation"], self.settings, cluster)

    def check_fit(self, fit: Channel, where: str, cluster: Cluster, folds: int) -> None:
        if folds:
            check_classes(Channel(where, fit.data), self.settings, cluster, at_least=folds)

    def loss(self, label: np.ndarray, fit: Channel, cluster: Cluster):
        """``(weighting, each row's weight (mean 1), offsets, the lighter class's mean weight)``."""
        settings = self.settings
        exponent = settings.cost_weight_exponent if settings.objective == "cost_weighted" else 0.0
        weighting = CostWeighting.fit(label, fit.data.costs, exponent, cluster.sum)
        if exponent and weighting.scale <= 0:
            raise DataError("train channel: every row's regret (the cost of a mistake on it) is 0: "
                            "the costs leave nothing to learn")
        raw = weighting.weights(label, fit.data.costs)
        total, rows = cluster.sum([raw.sum(), raw.size])
        weight = raw / (total / rows)
        w1, n1, w0, n0 = cluster.sum([weight[label == 1].sum(), (label == 1).sum(),
                                      weight[label == 0].sum(), (label == 0).sum()])
        # (float32, the precision the objective computes in: the weights are kept for the whole
        # of training, and a float64 copy beside the objective's would cost 8 bytes a row)
        return (weighting, weight.astype(np.float32), weighting.offset(fit.data.costs),
                min(w1 / n1, w0 / n0))

    def describe_weights(self, weighting: CostWeighting) -> str:
        return (f"loss weights: clip(regret / {weighting.scale:.6g}, {1 / weighting.cap:g}, "
                f"{weighting.cap:g}) ** {weighting.exponent:g}")

    def member(self, label, weight, offset, sensitive, cluster: Cluster) -> Member:
        reduce = cluster.sum if cluster.size > 1 else None
        return Member(make_objective(label, weight, offset, sensitive,
                                     self.settings.fairness_penalty, reduce),
                      float(1 / (1 + np.exp(-base_log_odds(label, weight > 0, cluster.sum)))))

    def calibrator_candidates(self, held_rows: int) -> list[Candidate]:
        """Identity and Platt; isotonic with enough held-out rows (or when asked for)."""
        return [c for c in TWO_CLASS_CANDIDATES
                if c.name != "isotonic" or held_rows >= ISOTONIC_MIN_ROWS
                or self.settings.calibrator == "isotonic"]

    def costliest_mistake(self, channel: Channel, cluster: Cluster) -> float:
        """The largest regret of any of the channel's rows over every host."""
        local = max((float(r.max()) for r in channel.data.costs.regrets() if r.size), default=0.0)
        return float(cluster.allreduce(np.array([local]), "max")[0])

    def bayes_cost(self, channel: Channel, p, rows) -> np.ndarray:
        """The realised cost of each of the channel's rows ``rows`` (a mask) decided by the
        Bayes rule on ``p``, at its own costs."""
        costs = channel.data.costs.subset(rows)
        return costs.realised(channel.data.label[rows], bayes_decision(p, costs)[0])

    def fit_calibrator(self, margins, label, cluster: Cluster, start=None):
        """A round's calibrator (early stopping's metrics): the asked-for one, Platt under
        'auto' (the choice is made once, at the kept round)."""
        method = self.settings.calibrator
        if method in ("auto", "platt"):
            return fit_platt(margins, label, cluster.sum, start)
        return next(c for c in TWO_CLASS_CANDIDATES if c.name == method).fit(margins, label,
                                                                             cluster.sum)

    def calibrator_from_dict(self, saved: dict):
        return calibrator_from_dict(saved)

    def bayes_metrics(self, channel: Channel, p, n_groups: int, cluster: Cluster) -> dict:
        decision, _, _ = DecisionRule().decide(p, channel.data.costs, channel.sensitive)
        return metrics_at(channel, p, decision, self.settings, self.fairness_names, n_groups,
                          cluster)[0]

    def line(self, prefix: str, channel: str, metrics: dict) -> str:
        return metric_log.format_line(prefix, channel, metrics)

    def policy(self, held: Channel, p, calibrator: Calibrator, train_data, cluster: Cluster,
               log) -> Policy:
        settings = self.settings
        rule = fit_rule(settings, held, p, cluster, log)
        return Policy(calibrator, rule, settings.class_costs,
                      cost_column_names(settings, train_data), facet_spec(settings, train_data))

    def held_out_fits(self, policy: Policy) -> list[str]:
        return ["calibrator", "rule"]

    def evaluate(self, channel: Channel, p, policy: Policy, n_groups: int, cluster: Cluster,
                 scored_by: str, fitted: list[str]) -> ChannelResult:
        return evaluate(channel, p, policy.rule, self.settings, self.fairness_names, n_groups,
                        cluster, scored_by, fitted)

    def contributions(self, booster, channel: Channel, feature_names, cluster: Cluster):
        return contribution_summary(booster, channel, feature_names, cluster)

    def describe(self, policy: Policy) -> str:
        return f"decision rule {policy.rule.describe()}"


def identity_temperature(margins, label, reduce) -> TemperatureCalibrator:
    """``softmax(z)``: temperature 1, no biases."""
    return TemperatureCalibrator(rows=int(reduce(np.array([len(label)], dtype=np.float64))[0]))


def metric_name(label) -> str:
    """A class label as it appears in a metric name (``recall_<label>``): regex-safe characters."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(label))


class ManyClasses:
    """K softmax margins, temperature-and-bias calibration, the favourable classes' cost shift."""

    lighter = "lightest class"
    scaling = "temperature"  # the calibrator served unless the identity decides more cheaply

    def __init__(self, settings):
        self.settings = settings
        self.class_labels = settings.class_labels
        self.classes = len(self.class_labels)
        self.matrix = np.array(settings.matrix, dtype=np.float64)
        self.bayes = MulticlassPolicy(self.class_labels, settings.matrix, TemperatureCalibrator())
        self.what = f" {self.classes} classes ({', '.join(map(str, self.class_labels))})"

    def label(self, data) -> np.ndarray:
        return data.label.astype(np.int64)

    def check_channels(self, channels: dict, cluster: Cluster) -> None:
        if self.settings.calibration_data == "validation":
            rows = cluster.sum([channels["validation"].data.rows])[0]
            if rows == 0:
                raise DataError(f"validation channel ({channels['validation'].data.source}): no "
                                "rows to calibrate on")

    def check_fit(self, fit: Channel, where: str, cluster: Cluster, folds: int) -> None:
        counts = cluster.sum(np.bincount(self.label(fit.data), minlength=self.classes))
        fewest, which = int(counts.min()), self.class_labels[int(np.argmin(counts))]
        if fewest == 0:
            raise DataError(f"{where}: no row of class {which!r}; every class of 'classes' (or of "
                            "cost_matrix) needs training rows")
        if folds and fewest < folds:
            raise DataError(f"{where}: {fewest} rows of class {which!r}, fewer than the "
                            f"{folds} cross-fitting folds: every fold needs rows of each class; "
                            "set cross_fit_folds lower (2 at least) or use calibration_data "
                            "'validation'")

    def loss(self, label: np.ndarray, fit: Channel, cluster: Cluster):
        weighting, weight = row_loss_weights(label, self.matrix, self.settings.cost_weight_exponent,
                                             fit.data.cell_costs, cluster.sum)
        # min_child_weight counts rows of the lightest class (its Hessian sum is at most its
        # weight per row)
        return weighting, weight, weighting.offsets, min(weighting.weights)

    def describe_weights(self, weighting: ClassWeighting) -> str:
        weights = zip(self.class_labels, weighting.weights)
        return ("class loss weights " + ", ".join(f"{c}: {w:.4g}" for c, w in weights)
                + f" (regret ** {weighting.exponent:g})")

    def member(self, label, weight, offset, sensitive, cluster: Cluster) -> Member:
        reduce = cluster.sum if cluster.size > 1 else None
        return Member(class_objective(label, weight, offset, sensitive, self.settings.favourable,
                                      self.settings.fairness_penalty, reduce), 0.0)

    def calibrator_candidates(self, held_rows: int) -> list[Candidate]:
        """``softmax(z)`` and the temperature-and-bias fit."""
        return [Candidate("identity", "0", identity_temperature),
                Candidate("temperature", str(self.classes), fit_temperature)]

    def costliest_mistake(self, channel: Channel, cluster: Cluster) -> float:
        """The largest regret ``C_i[y_i][j] - C_i[y_i][y_i]`` of any row over every host (a
        block of rows at a time: the rows' ``(n, K)`` costs are not held)."""
        label, cells = self.label(channel.data), channel.data.cell_costs

        def largest(rows):
            own = true_class_costs(label[rows], self.matrix, cells_of(cells, rows))
            return float((own - own[np.arange(len(own)), label[rows]][:, None]).max())

        local = max(largest(rows) for rows in row_blocks(len(label))) if len(label) else 0.0
        return float(cluster.allreduce(np.array([local]), "max")[0])

    def bayes_cost(self, channel: Channel, p, rows) -> np.ndarray:
        """The realised cost of each of the channel's rows ``rows`` (a mask) decided by the
        Bayes rule on ``p`` (``argmin_j E[i, j]``), at its own matrix."""
        cells = cells_of(channel.data.cell_costs, rows)
        return realised_costs(self.label(channel.data)[rows], self.bayes.decisions(p, None, cells),
                              self.matrix, cells)

    def fit_calibrator(self, margins, label, cluster: Cluster, start=None) -> TemperatureCalibrator:
        """A round's calibrator: the asked-for one, the temperature fit under 'auto'."""
        if self.settings.calibrator == "identity":
            return identity_temperature(margins, label, cluster.sum)
        return fit_temperature(margins, label, cluster.sum)

    def calibrator_from_dict(self, saved: dict) -> TemperatureCalibrator:
        return TemperatureCalibrator.from_dict(saved)

    def measure(self, channel: Channel, p, policy: MulticlassPolicy, n_groups: int,
                cluster: Cluster, section: bool = True) -> tuple[dict, dict | None]:
        """The channel's metrics at ``policy``'s decisions on ``p`` over every host; with a facet
        also the fairness distances of ``fairness_metrics`` and the combined objective (on the
        favourable set, as the binary ones), and (``section``) the bias section: every Clarify
        metric on the favourable set, and each class's one-vs-rest DPPL and DI. All from sums."""
        settings, label = self.settings, self.label(channel.data)
        cells = channel.data.cell_costs
        decision = policy.decisions(p, channel.sensitive, cells)
        metrics = channel_metrics(label, p, decision, policy.cost_matrix, cluster=cluster,
                                  cells=cells)
        if channel.sensitive is None:
            return metrics, None
        facets, groups = bias.collapsed_tables(label, decision, channel.sensitive,
                                               settings.favourable, channel.groups, n_groups)
        facets = cluster.sum(facets.ravel()).reshape(facets.shape)
        if groups is not None:
            groups = cluster.sum(groups.ravel()).reshape(groups.shape)
        metrics.update(bias.per_round_with_objective(
            list(settings.fairness_names), facets, groups, metrics["auc"],
            settings.objective_auc_weight, settings.objective_fairness_weight))
        if not section:
            return metrics, None
        found = bias.bias_section(facets, groups)
        found["favourable"] = [policy.classes[i] for i in settings.favourable]
        found["per_class"] = dict(zip(policy.class_names, bias.per_class_parity(
            decision, channel.sensitive, policy.k, cluster.sum if cluster.size > 1 else None)))
        return metrics, found

    def bayes_metrics(self, channel: Channel, p, n_groups: int, cluster: Cluster) -> dict:
        return self.measure(channel, p, self.bayes, n_groups, cluster, section=False)[0]

    def line(self, prefix: str, channel: str, metrics: dict) -> str:
        """The metric line (registered metrics, as the binary line) and each class's recall."""
        recalls = metrics.get("recall_per_class", [])
        return metric_log.format_line(prefix, channel, metrics,
                                      {f"recall_{metric_name(c)}": r
                                       for c, r in zip(self.class_labels, recalls) if r == r})

    def policy(self, held: Channel, p, calibrator: TemperatureCalibrator, train_data,
               cluster: Cluster, log) -> MulticlassPolicy:
        if cluster.is_first and calibrator.bias:  # (fitted: not the identity softmax(z))
            log(f"calibrator: temperature {calibrator.temperature:.4g}, class biases "
                + ", ".join(f"{b:+.4g}" for b in calibrator.bias)
                + f" on {calibrator.rows} held-out rows")
        rule = self._fit_rule(held, p, cluster, log)
        return MulticlassPolicy(self.class_labels, self.settings.matrix, calibrator, rule,
                                facet_spec(self.settings, train_data) if rule is not None else None,
                                matrix_column_names(self.settings.matrix_columns,
                                                    train_data.named_columns))

    def _fit_rule(self, held: Channel, p, cluster: Cluster, log):
        """With ``max_abs_dppl`` < 1: the cheapest shift of the favourable decisions' expected
        costs (one, or one per facet with ``group_thresholds``) within the bound on the held-out
        rows. The exact cut reads every held-out row's :func:`favourable_gaps` (three numbers a
        row, from its expected costs a block of rows at a time); on several hosts they are
        gathered (once)."""
        settings, matrix = self.settings, self.matrix
        if settings.max_abs_dppl >= 1:
            return None
        cells, label, sensitive = held.data.cell_costs, self.label(held.data), held.sensitive
        gap, cost_fav, cost_non, bayes_row_cost = (np.empty(len(label)) for _ in range(4))
        favourable = np.empty(len(label), dtype=bool)  # decided favourable by the Bayes rule
        for block in row_blocks(len(label)):
            block_cells, block_label = cells_of(cells, block), label[block]
            expected = expected_costs(p[block], matrix, block_cells)
            gap[block], cost_fav[block], cost_non[block] = favourable_gaps(
                expected, block_label, settings.favourable, matrix, block_cells)
            bayes = expected.argmin(axis=1)
            favourable[block] = np.isin(bayes, settings.favourable)
            bayes_row_cost[block] = realised_costs(block_label, bayes, matrix, block_cells)
        if cluster.size > 1:
            gap, cost_fav, cost_non, bayes_row_cost, favourable, sensitive = (
                cluster.gather(values) for values in (gap, cost_fav, cost_non, bayes_row_cost,
                                                      favourable, sensitive))
        rule, dppl, cost = fit_favourable_shift(gap, cost_fav, cost_non, sensitive,
                                                settings.favourable, settings.max_abs_dppl,
                                                settings.group_thresholds)
        bayes_dppl = favourable[~sensitive].mean() - favourable[sensitive].mean()
        bayes_cost = float(bayes_row_cost.sum())
        rows = len(gap)  # (every host's)
        if cluster.is_first:
            log("decision rule: favourable decisions' expected costs lowered by "
                + (f"facet a {rule.delta_a:+.4g}, facet d {rule.delta_d:+.4g}"
                   if settings.group_thresholds else f"{rule.delta_a:+.4g}")
                + f", the cheapest with |DPPL| <= {settings.max_abs_dppl:g} on the {rows} held-out "
                f"rows: DPPL {dppl:+.4f} (Bayes {bayes_dppl:+.4f}), cost per row {cost / rows:.6g} "
                f"(Bayes {bayes_cost / rows:.6g}: the bound costs {(cost - bayes_cost) / rows:+.6g} "
                "per row)")
        return rule

    def held_out_fits(self, policy: MulticlassPolicy) -> list[str]:
        return ["calibrator"] + (["rule"] if policy.rule is not None else [])

    def evaluate(self, channel: Channel, p, policy: MulticlassPolicy, n_groups: int,
                 cluster: Cluster, scored_by: str, fitted: list[str]) -> ChannelResult:
        metrics, section = self.measure(channel, p, policy, n_groups, cluster)
        alternatives = {} if policy.rule is None else {
            "bayes": self.measure(channel, p, self.bayes, n_groups, cluster, section=False)[0]}
        return ChannelResult(channel.name, scored_by, fitted, metrics, alternatives, None, None,
                             section)

    def contributions(self, booster, channel: Channel, feature_names, cluster: Cluster):
        return None  # (TreeSHAP per class: not summarised yet)

    def describe(self, policy: MulticlassPolicy) -> str:
        rule = policy.rule
        return (f"{policy.k} classes, decided by argmin(P @ C)"
                + ("" if rule is None else f" with the favourable classes' costs shifted (facet "
                   f"a {rule.delta_a:+.4g}, d {rule.delta_d:+.4g}; |DPPL| <= "
                   f"{rule.max_abs_dppl:g})"))
