"""Training: XGBoost with the cost-weighted loss, per-round metric lines, the learned threshold.

Knows nothing of SageMaker paths: it takes parsed settings and datasets and returns a
:class:`TrainingResult`; the SageMaker adapter reads files and writes the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import xgboost as xgb

from . import bias, metric_log
from .costs import (CostMatrix, DecisionPolicy, RowCosts, constrained_threshold, empirical_threshold,
                    sigmoid)
from .data import Dataset
from .errors import DataError
from .fairness import sensitive_facet_index
from .hyperparameters import parse_values_or_threshold
from .metrics import evaluate
from .objective import fitted_offset, intercept, make_objective, score_offset


@dataclass
class Channel:
    """A dataset with everything evaluation needs: row costs, facet mask, running margins."""

    name: str
    data: Dataset
    row_costs: RowCosts
    sensitive: np.ndarray | None = None  # True: facet d
    dmatrix: xgb.DMatrix | None = None
    margin: np.ndarray | None = None


@dataclass(frozen=True)
class Rule:
    """A decision rule: one threshold, or one per facet (a, d)."""

    threshold_a: float
    threshold_d: float

    @classmethod
    def single(cls, t: float) -> "Rule":
        return cls(t, t)

    @property
    def is_single(self) -> bool:
        return self.threshold_a == self.threshold_d

    def per_row(self, channel: Channel) -> float | np.ndarray:
        if self.is_single or channel.sensitive is None:
            return self.threshold_a
        return np.where(channel.sensitive, self.threshold_d, self.threshold_a)

    def describe(self) -> dict:
        if self.is_single:
            return {"threshold": self.threshold_a}
        return {"threshold_a": self.threshold_a, "threshold_d": self.threshold_d}


@dataclass
class TrainingResult:
    booster: xgb.Booster
    policy: DecisionPolicy
    evaluation: dict  # channel -> {"chosen_threshold": metrics, "threshold_0.5": metrics, ...}
    thresholds: dict  # empirical / bayes / chosen / source
    best_iteration: int
    rounds_trained: int
    scores: dict = field(default_factory=dict)  # channel -> final scores
    channels: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def cost_matrix(settings) -> CostMatrix:
    return CostMatrix(fp=settings.cost_fp, fn=settings.cost_fn, tp=settings.cost_tp, tn=settings.cost_tn)


def row_costs_for(settings, data: Dataset) -> RowCosts:
    scaled = tuple(settings.cost_column_scales.split(","))
    return RowCosts.build(cost_matrix(settings), data.rows, data.cost_multiplier, scaled)


def _sensitive(settings, channel: Channel) -> np.ndarray | None:
    if not settings.facet_column:
        return None
    spec = parse_values_or_threshold(settings.facet_values_or_threshold, "facet_values_or_threshold")
    mask = sensitive_facet_index(channel.data.facet, spec)
    n_d = int(mask.sum())
    if n_d in (0, len(mask)):
        which = "no row" if n_d == 0 else "every row"
        raise DataError(
            f"{channel.name} channel: facet '{settings.facet_column}' with "
            f"facet_values_or_threshold {settings.facet_values_or_threshold}: {which} is in the "
            "sensitive group d; bias metrics need rows in both facets"
        )
    return mask


def _check_classes(channel: Channel) -> None:
    positives = int(channel.data.label.sum())
    rows = channel.data.rows
    if positives in (0, rows):
        only = 1 if positives else 0
        raise DataError(
            f"{channel.name} channel ({channel.data.source}): all {rows} rows have label {only}; "
            "training and the learned threshold need both classes"
        )


def _training_weights(settings, channel: Channel) -> np.ndarray:
    if settings.objective == "binary:logistic":
        return np.ones(channel.data.rows)
    weight = channel.row_costs.sample_weights(channel.data.label)
    label = channel.data.label
    for cls, name in ((1, "C_FN - C_TP"), (0, "C_FP - C_TN")):
        if not np.any(weight[label == cls] > 0):
            raise DataError(
                f"train channel: every row of class {cls} has weight {name} = 0 (check "
                "cost_column and cost_column_scales): the loss would ignore that class"
            )
    # Only cost ratios matter to the optimum; scaling to mean 1 keeps lambda, gamma and
    # min_child_weight on the scale they have for the unweighted loss (costs in dollars would
    # otherwise switch regularisation off).
    return weight / weight.mean()


class Evaluator:
    """Chooses the decision rule and computes every logged metric for a channel's scores."""

    def __init__(self, settings, bayes: float, fixed: float | None):
        self.settings = settings
        self.bayes = bayes
        self.fixed = fixed
        self.fairness_names = (settings.fairness_metrics.split(",") if settings.facet_column else [])

    def rule(self, score: np.ndarray, channel: Channel) -> Rule:
        s = self.settings
        if self.fixed is not None:
            return Rule.single(self.fixed)
        if channel.sensitive is not None and s.max_abs_dppl < 1:
            found = constrained_threshold(score, channel.data.label, channel.row_costs,
                                          channel.sensitive, s.max_abs_dppl, s.group_thresholds,
                                          prefer=self.bayes)
            return Rule(found["threshold_a"], found["threshold_d"])
        return Rule.single(empirical_threshold(score, channel.data.label, channel.row_costs,
                                               prefer=self.bayes)[0])

    def metrics(self, score: np.ndarray, channel: Channel, rule: Rule) -> dict:
        out = evaluate(channel.data.label, score, rule.per_row(channel), channel.row_costs)
        del out["threshold"]
        out.update(rule.describe())
        if channel.sensitive is not None and self.fairness_names:
            decision = (score >= rule.per_row(channel)).astype(np.int8)
            distances = bias.per_round(self.fairness_names, channel.data.label, decision,
                                       channel.sensitive, channel.data.group)
            out.update(distances)
            first = distances[self.fairness_names[0].lower()]
            out["combined_objective"] = bias.combined_objective(
                out["auc"], first, self.settings.objective_auc_weight,
                self.settings.objective_fairness_weight)
        return out


class MetricLogger(xgb.callback.TrainingCallback):
    """Prints one metric line per round and does early stopping on our own metrics.

    Margins are accumulated tree by tree (``iteration_range=(t, t+1)`` minus the base margin), so a
    round costs one tree's prediction, not the whole model's.
    """

    def __init__(self, watch: Channel, base_margin: float, evaluator: Evaluator, offset: float,
                 refit_offset: bool, early_stopping_rounds: int, early_stopping_metric: str,
                 log: Callable[[str], None]):
        self.watch = watch
        self.base_margin = base_margin
        self.evaluator = evaluator
        self.offset = offset
        self.refit_offset = refit_offset
        self.patience = early_stopping_rounds
        self.metric = early_stopping_metric
        self.log = log
        self.best_iteration = 0
        self.best_value = math.inf

    def after_iteration(self, model, epoch, evals_log) -> bool:
        channel = self.watch
        tree = model.predict(channel.dmatrix, output_margin=True, iteration_range=(epoch, epoch + 1))
        step = tree.astype(np.float64) - self.base_margin
        channel.margin = step + (channel.margin if channel.margin is not None else self.base_margin)
        if self.refit_offset:  # as the final model will be: scores read as probabilities
            self.offset = fitted_offset(channel.margin, channel.data.label, self.offset)
        score = sigmoid(channel.margin - self.offset)
        metrics = self.evaluator.metrics(score, channel, self.evaluator.rule(score, channel))
        self.log(metric_log.format_line(f"[{epoch}]", channel.name, metrics))
        value = metrics[self.metric]
        if metric_log.METRICS.get(self.metric) == "Maximize":
            value = -value
        if value < self.best_value:  # strictly better; ties keep the earlier, smaller model
            self.best_value, self.best_iteration = value, epoch
        return bool(self.patience) and epoch - self.best_iteration >= self.patience


def print_line(line: str) -> None:
    print(line, flush=True)  # flushed: the log is read while training runs


def train(settings, train_data: Dataset, validation: Dataset | None = None,
          test: Dataset | None = None, log: Callable[[str], None] = print_line) -> TrainingResult:
    costs = cost_matrix(settings)
    channels = {"train": Channel("train", train_data, row_costs_for(settings, train_data))}
    for name, data in (("validation", validation), ("test", test)):
        if data is not None:
            channels[name] = Channel(name, data, row_costs_for(settings, data))
    _check_classes(channels["train"])
    if "validation" in channels:
        _check_classes(channels["validation"])
    for channel in channels.values():
        channel.sensitive = _sensitive(settings, channel)

    train_channel = channels["train"]
    label = train_data.label
    weight = _training_weights(settings, train_channel)
    base_margin = intercept(label, weight)
    cost_weighted = settings.objective == "cost_weighted"
    offset = score_offset(label, weight) if cost_weighted else 0.0

    # Cost weights go into the DMatrix too: the hist sketch is weighted, exactly as for the
    # built-in binary:logistic with sample weights, so the two give the same trees.
    dtrain = xgb.DMatrix(train_data.features, label=label, weight=weight,
                         feature_names=train_data.feature_names, missing=np.nan)
    params = {
        **settings.xgboost_params(),
        "objective": "binary:logistic",  # the saved model's link; gradients come from `obj`
        "base_score": float(sigmoid(np.array([base_margin]))[0]),
        "disable_default_eval_metric": 1,
        "verbosity": 1,
    }
    penalty = settings.fairness_penalty
    obj = (make_objective(label, weight, train_channel.sensitive, penalty)
           if cost_weighted or penalty > 0 else None)

    watch = channels.get("validation", train_channel)
    watch.dmatrix = (dtrain if watch is train_channel else
                     xgb.DMatrix(watch.data.features, feature_names=train_data.feature_names,
                                 missing=np.nan))
    bayes = costs.bayes_threshold()
    fixed = _fixed_threshold(settings.decision_threshold, bayes, has_validation=validation is not None)
    if settings.decision_threshold == "empirical" and validation is None:
        log(f"no validation channel: the decision threshold is the Bayes threshold {bayes:.6g}")
    evaluator = Evaluator(settings, bayes, fixed)

    refit = cost_weighted and "validation" in channels
    logger = MetricLogger(watch, base_margin, evaluator, offset, refit,
                          settings.early_stopping_rounds, settings.early_stopping_metric, log)
    booster = xgb.train(params, dtrain, num_boost_round=settings.num_round, obj=obj,
                        callbacks=[logger], verbose_eval=False)
    rounds_trained = booster.num_boosted_rounds()
    best = logger.best_iteration if settings.early_stopping_rounds else rounds_trained - 1
    if best + 1 < rounds_trained:
        booster = booster[: best + 1]
        log(f"early stopping: keeping rounds 0..{best} of {rounds_trained} "
            f"(best validation {settings.early_stopping_metric})")

    margins = {name: _margin(booster, ch.data) for name, ch in channels.items()}
    if refit:
        # The tilt log(w1/w0) holds at the loss's optimum; a regularised, finite model tilts less.
        # Re-fit the intercept on validation so that scores read as probabilities of class 1.
        offset = fitted_offset(margins["validation"], channels["validation"].data.label, offset)
    scores = {name: sigmoid(m - offset) for name, m in margins.items()}

    thresholds: dict = {"bayes": bayes}
    if "validation" in channels:
        v = channels["validation"]
        thresholds["empirical"], _ = empirical_threshold(scores["validation"], v.data.label,
                                                          v.row_costs, prefer=bayes)
    rule = evaluator.rule(scores[watch.name], watch) if fixed is None else Rule.single(fixed)
    if fixed is not None:
        source = "bayes" if settings.decision_threshold in ("bayes", "empirical") else "fixed"
    elif settings.facet_column and settings.max_abs_dppl < 1:
        source = "constrained"
    else:
        source = "empirical"
    thresholds.update(chosen=rule.threshold_a, source=source)
    if not rule.is_single:
        thresholds["group"] = {"a": rule.threshold_a, "d": rule.threshold_d}
    policy = DecisionPolicy(
        costs, rule.threshold_a, offset, source,
        group_thresholds=None if rule.is_single else (rule.threshold_a, rule.threshold_d),
        facet=_facet_spec(settings),
    )

    evaluation = {}
    raw_rule = Rule.single(float(sigmoid(np.array([-offset]))[0]))
    for name, ch in channels.items():
        label_c, rc = ch.data.label, ch.row_costs
        evaluation[name] = {
            "chosen_threshold": evaluator.metrics(scores[name], ch, rule),
            "threshold_0.5": evaluator.metrics(scores[name], ch, Rule.single(0.5)),
            "bayes_threshold": evaluator.metrics(scores[name], ch, Rule.single(bayes)),
            # the loss's own rule, raw sigmoid(margin) >= 0.5, as in the custom-loss case study
            "raw_margin_0": evaluator.metrics(scores[name], ch, raw_rule),
        }
        if ch.sensitive is not None:
            decision = (scores[name] >= rule.per_row(ch)).astype(np.int8)
            evaluation[name]["bias"] = bias.bias_section(label_c, decision, ch.sensitive, ch.data.group)
        log(metric_log.format_line("[final]", name, evaluation[name]["chosen_threshold"]))
    return TrainingResult(booster, policy, evaluation, thresholds, best, rounds_trained,
                          scores=scores, channels=channels,
                          extra={"base_margin": base_margin, "score_offset": offset})


def _facet_spec(settings) -> dict | None:
    if not settings.facet_column:
        return None
    return {
        "column": settings.facet_column,
        "values_or_threshold": parse_values_or_threshold(settings.facet_values_or_threshold,
                                                         "facet_values_or_threshold"),
        "is_feature": settings.facet_is_feature,
    }


def _margin(booster: xgb.Booster, data: Dataset) -> np.ndarray:
    dm = xgb.DMatrix(data.features, feature_names=data.feature_names, missing=np.nan)
    return booster.predict(dm, output_margin=True).astype(np.float64)


def _fixed_threshold(spec: str, bayes: float, has_validation: bool) -> float | None:
    """``None`` means "learn it on validation"; otherwise the threshold to use every round."""
    if spec == "empirical":
        return None if has_validation else bayes
    if spec == "bayes":
        return bayes
    return float(spec)
