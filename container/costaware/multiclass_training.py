"""Training with more than two classes: the softmax model, its calibrator, its cost-matrix policy.

The same plan as the binary :mod:`costaware.training`, with :mod:`costaware.multiclass`'s maths:

1. **Fit rows and held-out rows.** ``cross_fit`` (the default): the model is trained on train and
   validation together and ``cross_fit_folds`` fold models (stratified by class) give every one
   of these rows an out-of-fold margin; ``validation``: the model is trained on train, the
   validation channel's rows are held out.
2. **Loss**: the cost-weighted softmax cross-entropy with offsets (class weights from the cost
   matrix's regrets, tempered by ``cost_weight_exponent``), as XGBoost's custom objective; all
   members share one ``DMatrix`` without weights (a fold's rows have weight 0 in its fold model).
3. **Rounds**: after each round the held-out margins are calibrated (temperature and class
   biases), decided by ``argmin(P @ C)`` and the metric line logged; early stopping watches
   ``early_stopping_metric`` on every held-out row.
4. **The kept round**: the calibrator refitted on the held-out margins at that round.
5. **Every channel's metrics** at the Bayes decisions, with the confusion matrix and its costs.

One host only for now, and no checkpoints: a stopped job starts again from round 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import xgboost as xgb

from . import bias, metric_log
from .channels import (Channel, channels_of, check_facets, concat, folds_of, group_codes,
                       sensitive_of, subset)
from .checkpoints import StopRequest, TrainingInterrupted
from .cluster import SOLO
from .data import Dataset
from .errors import DataError
from .multiclass import (ClassWeighting, TemperatureCalibrator, channel_metrics, expected_costs,
                         fit_favourable_shift, fit_temperature, loss_gradients,
                         matrix_column_names, row_loss_weights, true_class_costs)
from .multiclass_policy import MulticlassPolicy
from .rounds import RoundMonitor
from .training import facet_spec, print_line


@dataclass
class ChannelEvaluation:
    """One channel's evaluation of the kept model (evaluation.json, the log, the report)."""

    name: str
    scored_by: str  # "model" or "out-of-fold"
    fitted_on: list[str]  # what was fitted on these rows
    metrics: dict  # multiclass.channel_metrics at the served rule (+ fairness distances)
    bias: dict | None = None  # Clarify's metrics on the favourable set, and per class
    alternatives: dict = field(default_factory=dict)  # rule name -> metrics, for comparison


@dataclass
class MulticlassResult:
    booster: xgb.Booster
    policy: MulticlassPolicy
    channels: dict[str, ChannelEvaluation]
    best_iteration: int
    rounds_trained: int
    feature_names: list[str]
    weighting: ClassWeighting
    held_out: str
    rows: dict = field(default_factory=dict)
    min_child_weight: float = 1.0


def metric_name(label) -> str:
    """A class label as it appears in a metric name (``recall_<label>``): regex-safe characters."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(label))


def train(settings, train_data: Dataset, validation: Dataset | None = None,
          test: Dataset | None = None, log: Callable[[str], None] = print_line,
          stop: StopRequest | None = None) -> MulticlassResult:
    stop = StopRequest() if stop is None else stop
    matrix = np.array(settings.matrix, dtype=np.float64)
    classes = settings.class_labels
    k = len(classes)
    cross_fit = settings.calibration_data == "cross_fit"
    channels = channels_of(settings, train_data, validation, test)
    for channel in channels.values():
        channel.sensitive = sensitive_of(settings, channel)
        check_facets(settings, channel, SOLO, log)
    n_groups = group_codes(list(channels.values()), SOLO)
    parts = [channels["train"]] + ([channels["validation"]] if cross_fit and validation else [])
    fit = concat("fit", parts)
    label = fit.data.label.astype(np.int64)
    counts = np.bincount(label, minlength=k)
    fewest = int(counts.min())
    where = " and ".join(p.name for p in parts)
    if fewest == 0:
        missing = classes[int(np.argmin(counts))]
        raise DataError(f"{where}: no row of class {missing!r}; every class of 'classes' (or of "
                        "cost_matrix) needs training rows")
    if cross_fit and fewest < settings.cross_fit_folds:
        raise DataError(f"{where}: {fewest} rows of class {classes[int(np.argmin(counts))]!r}, "
                        f"fewer than cross_fit_folds ({settings.cross_fit_folds}): every fold "
                        "needs rows of each class; lower cross_fit_folds or use calibration_data "
                        "'validation'")
    if not cross_fit and channels["validation"].data.rows == 0:
        raise DataError(f"validation channel ({validation.source}): no rows to calibrate on")
    folds = (folds_of(label, settings.cross_fit_folds, settings.seed, classes=k)
             if cross_fit else None)

    # 2. loss
    weighting, row_weight = row_loss_weights(label, matrix, settings.cost_weight_exponent,
                                             fit.data.cell_costs)
    offsets = weighting.offsets
    params = {**settings.xgboost_params(), "objective": "multi:softprob", "num_class": k,
              "base_score": 0.0, "disable_default_eval_metric": 1,
              # min_child_weight counts rows of the lightest class (its Hessian sum is at most its
              # weight per row)
              "min_child_weight": settings.min_child_weight * min(weighting.weights)}
    dtrain = xgb.DMatrix(fit.data.features, feature_names=fit.data.feature_names, missing=np.nan)
    member_weights = [row_weight] + ([np.where(folds == f, 0.0, row_weight)
                                      for f in range(settings.cross_fit_folds)]
                                     if cross_fit else [])
    dheld = None
    if cross_fit:
        held_channel = fit
        has_validation = "validation" in channels
        watch = (np.arange(fit.data.rows) >= channels["train"].data.rows if has_validation
                 else np.ones(fit.data.rows, dtype=bool))
        watch_name = "validation" if has_validation else "train"
        description = (f"out-of-fold margins of {settings.cross_fit_folds} fold models over "
                       + ("train and validation" if has_validation else "train"))
    else:
        held_channel = channels["validation"]
        dheld = xgb.DMatrix(held_channel.data.features, feature_names=fit.data.feature_names,
                            missing=np.nan)
        watch = np.ones(held_channel.data.rows, dtype=bool)
        watch_name, description = "validation", "the validation channel's margins"
    boosters = [xgb.Booster(params, [dtrain] + ([dheld] if dheld is not None and i == 0 else []))
                for i in range(len(member_weights))]
    objectives = [_objective(label, w, offsets) for w in member_weights]
    held_label = held_channel.data.label.astype(np.int64)
    log(f"training {k} classes ({', '.join(map(str, classes))}) on {fit.data.rows} rows ({where}); "
        f"held out: {description}; class loss weights "
        + ", ".join(f"{c}: {w:.4g}" for c, w in zip(classes, weighting.weights))
        + f" (regret ** {weighting.exponent:g}); min_child_weight {settings.min_child_weight:g} "
        f"rows of the lightest class = {params['min_child_weight']:.6g}")

    def held_margins(rounds: int | None = None) -> np.ndarray:
        """The held-out rows' margins (after ``rounds`` rounds; None: every round so far)."""
        span = {} if rounds is None else {"iteration_range": (0, rounds)}
        if not cross_fit:
            return boosters[0].predict(dheld, output_margin=True, **span).astype(np.float64)
        out = np.empty((fit.data.rows, k), dtype=np.float64)
        for f in range(settings.cross_fit_folds):
            rows = folds == f
            out[rows] = boosters[f + 1].predict(dtrain, output_margin=True, **span)[rows]
        return out

    bayes = MulticlassPolicy(classes, settings.matrix, TemperatureCalibrator())
    watched = subset(held_channel, watch)

    def observe(iteration: int) -> dict:
        margins = held_margins()
        p = fit_temperature(margins, held_label).probability(margins)
        every = _evaluate(held_channel, p, bayes, settings, n_groups)[0]
        shown = every if watch.all() else _evaluate(watched, p[watch], bayes, settings,
                                                    n_groups)[0]
        line = _line(f"[{iteration}]", watch_name, shown, classes)
        if not watch.all():
            metric = settings.early_stopping_metric
            line += f"\theld_out:{metric}={metric_log.format_value(every[metric])}"
        log(line)
        return every

    monitor = RoundMonitor(observe, settings.early_stopping_metric, settings.early_stopping_rounds,
                           lambda: {}, lambda state: None)
    rounds = 0
    while rounds < settings.num_round:
        if stop:
            raise TrainingInterrupted(
                f"training interrupted by SIGTERM after {rounds} of {settings.num_round} rounds: "
                "no checkpoint saved (not yet for more than two classes)")
        for booster, objective in zip(boosters, objectives):
            booster.update(dtrain, rounds, fobj=objective)
        rounds += 1
        if monitor.observe(rounds - 1):
            break
    best = monitor.best_iteration if settings.early_stopping_rounds else rounds - 1
    if best + 1 < rounds:
        log(f"early stopping: keeping rounds 0..{best} of {rounds} (the best held-out "
            f"{settings.early_stopping_metric}, over every held-out row)")

    # 4. the kept round
    booster = boosters[0][: best + 1]
    margins = held_margins(best + 1)
    calibrator = fit_temperature(margins, held_label)
    held_p = calibrator.probability(margins)
    log(f"calibrator: temperature {calibrator.temperature:.4g}, class biases "
        + ", ".join(f"{b:+.4g}" for b in calibrator.bias) + f" on {calibrator.rows} held-out rows")
    rule = _fit_rule(settings, held_channel, held_p, matrix, log)
    policy = MulticlassPolicy(classes, settings.matrix, calibrator, rule,
                              facet_spec(settings, train_data) if rule is not None else None,
                              matrix_column_names(settings.matrix_columns,
                                                  train_data.named_columns))

    # 5. every channel
    results = {}
    n_train = channels["train"].data.rows
    for name, ch in channels.items():
        if cross_fit and name == "validation":
            p, scored_by, fitted = held_p[n_train:], "out-of-fold", ["calibrator"]
        elif cross_fit and name == "train":
            p = calibrator.probability(_margins(booster, ch.data, k))
            scored_by, fitted = "model", ["trees", "calibrator"]
        elif name == "validation":
            p, scored_by, fitted = held_p, "model", ["calibrator"]
        else:
            p = calibrator.probability(_margins(booster, ch.data, k))
            scored_by, fitted = "model", (["trees"] if name == "train" else [])
        metrics, section = _evaluate(ch, p, policy, settings, n_groups)
        alternatives = {} if rule is None else {
            "bayes": _evaluate(ch, p, bayes, settings, n_groups)[0]}
        if rule is not None and "calibrator" in fitted:  # the held-out rows fitted the rule too
            fitted = fitted + ["rule"]
        results[name] = ChannelEvaluation(name, scored_by, fitted, metrics, section, alternatives)
        log(_line("[final]", name, metrics, classes))
    return MulticlassResult(booster, policy, results, best, rounds, list(fit.data.feature_names),
                            weighting, description,
                            {name: ch.data.rows for name, ch in channels.items()},
                            params["min_child_weight"])


def _evaluate(channel: Channel, p: np.ndarray, policy: MulticlassPolicy, settings,
              n_groups: int) -> tuple[dict, dict | None]:
    """The channel's metrics at ``policy``'s decisions on ``p``; with a facet also the fairness
    distances of ``fairness_metrics`` and the combined objective (on the favourable set, as the
    binary ones), and the bias section (every Clarify metric on the favourable set, and each
    class's one-vs-rest DPPL and DI)."""
    decision, _ = policy.decide(p, channel.sensitive, channel.data.cell_costs)
    metrics = channel_metrics(channel.data.label, p, decision, policy.cost_matrix,
                              cells=channel.data.cell_costs)
    if channel.sensitive is None:
        return metrics, None
    facets, groups = bias.collapsed_tables(channel.data.label, decision, channel.sensitive,
                                           settings.favourable, channel.groups, n_groups)
    metrics.update(bias.per_round_with_objective(
        list(settings.fairness_names), facets, groups, metrics["auc"],
        settings.objective_auc_weight, settings.objective_fairness_weight))
    section = bias.bias_section(facets, groups)
    section["favourable"] = [policy.classes[i] for i in settings.favourable]
    section["per_class"] = dict(zip(policy.class_names,
                                    bias.per_class_parity(decision, channel.sensitive, policy.k)))
    return metrics, section


def _fit_rule(settings, held: Channel, p: np.ndarray, matrix: np.ndarray, log):
    """With ``max_abs_dppl`` < 1: the cheapest shift of the favourable decisions' expected costs
    (one, or one per facet with ``group_thresholds``) within the bound on the held-out rows."""
    if settings.max_abs_dppl >= 1:
        return None
    cells = held.data.cell_costs
    expected = expected_costs(p, matrix, cells)
    label = held.data.label.astype(np.int64)
    rule, dppl, cost = fit_favourable_shift(expected, label, held.sensitive, settings.favourable,
                                            matrix, settings.max_abs_dppl,
                                            settings.group_thresholds, cells)
    bayes = expected.argmin(axis=1)
    favourable = np.isin(bayes, settings.favourable)
    bayes_dppl = favourable[~held.sensitive].mean() - favourable[held.sensitive].mean()
    bayes_cost = float(true_class_costs(label, matrix, cells)[np.arange(len(label)), bayes].sum())
    rows = len(label)
    log("decision rule: favourable decisions' expected costs lowered by "
        + (f"facet a {rule.delta_a:+.4g}, facet d {rule.delta_d:+.4g}" if settings.group_thresholds
           else f"{rule.delta_a:+.4g}")
        + f", the cheapest with |DPPL| <= {settings.max_abs_dppl:g} on the {rows} held-out rows: "
        f"DPPL {dppl:+.4f} (Bayes {bayes_dppl:+.4f}), cost per row {cost / rows:.6g} (Bayes "
        f"{bayes_cost / rows:.6g}: the bound costs {(cost - bayes_cost) / rows:+.6g} per row)")
    return rule


def _objective(label: np.ndarray, row_weight: np.ndarray, offsets: np.ndarray):
    def objective(predt: np.ndarray, dtrain: xgb.DMatrix):
        return loss_gradients(predt.reshape(len(label), -1), label, row_weight, offsets)
    return objective


def _margins(booster: xgb.Booster, data: Dataset, k: int) -> np.ndarray:
    if data.rows == 0:
        return np.empty((0, k))
    return np.asarray(booster.inplace_predict(data.features, predict_type="margin",
                                              missing=np.nan), dtype=np.float64).reshape(-1, k)


def _line(prefix: str, channel: str, metrics: dict, classes: tuple) -> str:
    """The metric line (registered metrics, as the binary line) and each class's recall."""
    recalls = metrics.get("recall_per_class", [])
    return metric_log.format_line(prefix, channel, metrics,
                                  {f"recall_{metric_name(c)}": r
                                   for c, r in zip(classes, recalls) if r == r})
