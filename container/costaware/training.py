"""Training: the model, its calibrator and its decision rule, from the channels' rows.

Knows nothing of SageMaker paths: it takes parsed settings and datasets and returns a
:class:`TrainingResult`; the SageMaker adapter reads files and writes the model.

1. **Fit rows and held-out rows.** ``calibration_data`` ``cross_fit`` (the default): the model is
   trained on train and validation together, and ``cross_fit_folds`` fold models, each trained on
   the other folds, give every one of these rows an out-of-fold margin. ``validation``: the model
   is trained on train; the validation channel's rows are the held-out rows.
2. **Loss weights and offsets** from every row's costs (:class:`costaware.objective.CostWeighting`).
3. **Rounds** (:mod:`costaware.rounds`): each member grows a tree; then the held-out margins are
   calibrated (:func:`costaware.calibration.fit_platt`), decided by the Bayes rule, and the watched
   rows' metric line is logged (validation rows, else train rows); early stopping watches
   ``early_stopping_metric`` on them.
4. **The kept round**: the calibrator fitted on the held-out margins, and the decision rule
   (Bayes; or ``empirical``/``constrained``, fitted on the held-out rows' probabilities).
5. **Every channel's metrics** at the rule the model serves, from fixed-size summaries.

On several hosts (``cluster``) each host passes its own rows; the trees are grown together and
every sum the steps need (the weights' scale, the folds, the calibrator's Newton steps, the rule's
histograms, the metrics' summaries) is added up over the hosts, so every host computes the same
numbers and no host's memory grows with the other hosts' rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import xgboost as xgb

from . import metric_log
from .boosting import Boosting, Member
from .calibration import Calibrator, fit_platt
from .channels import (Channel, channels_of, check_classes, check_facets, concat, folds_of,
                       group_codes, sensitive_of, subset)
from .checkpoints import CheckpointStore, StopRequest, digest
from .cluster import SOLO, Cluster
from .costs import CELLS
from .data import Dataset
from .decision import DecisionRule
from .errors import DataError, InputError
from .evaluation import ChannelResult, contribution_summary, evaluate, fit_rule, metrics_at
from .objective import CostWeighting, base_log_odds, make_objective
from .policy import Policy
from .rounds import RoundMonitor, run_rounds, settings_fingerprint


@dataclass
class TrainingResult:
    booster: xgb.Booster
    policy: Policy
    channels: dict[str, ChannelResult]
    best_iteration: int
    rounds_trained: int
    feature_names: list[str]
    weighting: CostWeighting
    held_out: str  # how the held-out rows were made, in words
    rows: dict = field(default_factory=dict)  # channel -> rows (over every host)
    min_child_weight: float = 1.0  # as passed to XGBoost


def cost_column_names(settings, data: Dataset) -> tuple[tuple[str, str], ...]:
    """Per cell with a cost column, the name a request carries its value under: the training
    column's name when the files had names, else ``cost_<cell>``."""
    return tuple((cell, spec if data.named_columns and not spec.isdigit() else f"cost_{cell}")
                 for cell, spec in settings.cost_columns)


@dataclass
class HeldOut:
    """The held-out rows: whose margins calibrate, choose the rule and the round."""

    channel: Channel  # their rows (labels, costs, facets)
    margins: Callable[[Boosting, int | None], np.ndarray]  # their margins (at a round count)
    watch: np.ndarray  # which of them the per-round metric line shows
    watch_name: str
    scored_by: str
    description: str


def train(settings, train_data: Dataset, validation: Dataset | None = None,
          test: Dataset | None = None, log: Callable[[str], None] = None,
          checkpoints: CheckpointStore | None = None,
          stop: StopRequest | None = None, cluster: Cluster = SOLO) -> TrainingResult | None:
    """Train; with ``checkpoints``, resume from the newest checkpoint and save new ones.

    ``stop`` (set by SIGTERM) ends the loop after the current round: a checkpoint is saved and
    :class:`~costaware.checkpoints.TrainingInterrupted` raised. The first host gets the result;
    on several hosts the others get ``None``.
    """
    log = log or print_line
    if checkpoints is not None and cluster.size > 1:
        raise ValueError("checkpoints are single-host only")
    cross_fit = settings.calibration_data == "cross_fit"
    channels = channels_of(settings, train_data, validation, test)
    problem = None
    try:
        for channel in channels.values():
            channel.sensitive = sensitive_of(settings, channel)
        n_groups = group_codes(list(channels.values()), cluster)
    except InputError as exc:
        problem = exc
    cluster.agree(problem)  # a host's facet error stops every host
    check_classes(channels["train"], settings, cluster)
    if "validation" in channels:
        check_classes(channels["validation"], settings, cluster)
    for channel in channels.values():
        check_facets(settings, channel, cluster, log)

    # 1. fit rows, held-out rows
    parts = [channels["train"]] + ([channels["validation"]] if cross_fit and validation else [])
    fit = concat("fit", parts)
    if cross_fit:
        check_classes(replace(fit, name="train and validation" if len(parts) > 1 else "train"),
                       settings, cluster, at_least=settings.cross_fit_folds)
    label = fit.data.label
    folds = folds_of(label, settings.cross_fit_folds, settings.seed, cluster) if cross_fit else None

    # 2. weights and offsets
    exponent = settings.cost_weight_exponent if settings.objective == "cost_weighted" else 0.0
    weighting = CostWeighting.fit(label, fit.data.costs, exponent, cluster.sum)
    if exponent and weighting.scale <= 0:
        raise DataError("train channel: every row's regret (the cost of a mistake on it) is 0: "
                        "the costs leave nothing to learn")
    raw = weighting.weights(label, fit.data.costs)
    total, rows = cluster.sum([raw.sum(), raw.size])
    weight = raw / (total / rows)
    offset = weighting.offset(fit.data.costs)
    # min_child_weight counts rows of the lighter-weighted class: XGBoost gets it times that
    # class's mean weight (1 for the symmetric loss)
    w1, n1, w0, n0 = cluster.sum([weight[label == 1].sum(), (label == 1).sum(),
                                  weight[label == 0].sum(), (label == 0).sum()])
    light = min(w1 / n1, w0 / n0)
    params = settings.xgboost_params()
    params["min_child_weight"] = settings.min_child_weight * light
    member_weights = [weight] + ([np.where(folds == k, 0.0, weight)
                                  for k in range(settings.cross_fit_folds)] if cross_fit else [])
    reduce = cluster.sum if cluster.size > 1 else None
    members = [Member(make_objective(label, w, offset, fit.sensitive, settings.fairness_penalty,
                                     reduce),
                      float(1 / (1 + np.exp(-base_log_odds(label, w > 0, cluster.sum)))))
               for w in member_weights]
    # No weights in the DMatrix: the hist sketch would place its cuts by weights that follow the
    # label, held-out rows' too; the objective applies them itself.
    dtrain = xgb.DMatrix(fit.data.features, label=label,
                         feature_names=fit.data.feature_names, missing=np.nan)
    dwatch = None
    if cross_fit:
        n_train = channels["train"].data.rows
        from_validation = np.arange(fit.data.rows) >= n_train
        has_validation = "validation" in channels
        held = HeldOut(
            fit, lambda boosting, rounds: _out_of_fold(boosting, fit.data, folds, rounds),
            from_validation if has_validation else np.ones(fit.data.rows, dtype=bool),
            "validation" if has_validation else "train", "out-of-fold",
            f"out-of-fold margins of {settings.cross_fit_folds} fold models over "
            + ("train and validation" if has_validation else "train"))
    else:
        val = channels["validation"]
        dwatch = xgb.DMatrix(val.data.features, feature_names=fit.data.feature_names,
                             missing=np.nan)
        held = HeldOut(
            val, lambda boosting, rounds: (boosting.watch_margins().astype(np.float64)
                                           if rounds is None else
                                           _margin(boosting.booster(0, rounds), val.data)),
            np.ones(val.data.rows, dtype=bool), "validation", "model",
            "the validation channel's margins")
    log(f"training on {int(rows)} rows ({' and '.join(p.name for p in parts)}); held out: "
        f"{held.description}; loss weights: clip(regret / {weighting.scale:.6g}, "
        f"{1 / weighting.cap:g}, {weighting.cap:g}) ** {weighting.exponent:g}; min_child_weight "
        f"{settings.min_child_weight:g} rows of the lighter class = {params['min_child_weight']:.6g}")

    # 3. rounds
    fairness_names = list(settings.fairness_names)
    calibrators: list[Calibrator | None] = [None]
    watched = subset(held.channel, held.watch)

    def at_bayes(channel: Channel, p: np.ndarray) -> dict:
        decision, _, _ = DecisionRule().decide(p, channel.data.costs, channel.sensitive)
        return metrics_at(channel, p, decision, settings, fairness_names, n_groups, cluster)[0]

    def observe(iteration: int) -> dict:
        """The round's held-out metrics (early stopping watches them, over every held-out row);
        the metric line shows the watched rows' (validation, or train without it)."""
        margins = held.margins(boosting, None)
        calibrator = fit_platt(margins, held.channel.data.label, cluster.sum, calibrators[0])
        calibrators[0] = calibrator
        p = calibrator.probability(margins)
        every = at_bayes(held.channel, p)
        shown = every if held.watch.all() else at_bayes(watched, p[held.watch])
        if cluster.is_first:
            line = metric_log.format_line(f"[{iteration}]", held.watch_name, shown)
            if not held.watch.all():
                metric = settings.early_stopping_metric
                line += f"\theld_out:{metric}={metric_log.format_value(every[metric])}"
            log(line)
        return every

    def observer_state() -> dict:
        return {"calibrator": None if calibrators[0] is None else calibrators[0].to_dict()}

    def observer_restore(state: dict) -> None:
        saved = state["calibrator"]
        calibrators[0] = None if saved is None else Calibrator.from_dict(saved)

    monitor = RoundMonitor(observe, settings.early_stopping_metric, settings.early_stopping_rounds,
                           observer_state, observer_restore)
    boosting = Boosting.create(params, settings.seed, dtrain, members, dwatch)
    fingerprint = lambda: {  # noqa: E731
        "settings": settings_fingerprint(settings),
        "data": {"fit rows": digest(fit.data.features, label, weight, fit.sensitive,
                                    *(getattr(fit.data.costs, c) for c in CELLS)),
                 **({"validation": digest(held.channel.data.features, held.channel.data.label)}
                    if not cross_fit else {})}}
    rounds_trained = run_rounds(settings, boosting, monitor, checkpoints,
                                StopRequest() if stop is None else stop,
                                fingerprint, log, cluster)
    best = monitor.best_iteration if settings.early_stopping_rounds else rounds_trained - 1
    if best + 1 < rounds_trained:
        log(f"early stopping: keeping rounds 0..{best} of {rounds_trained} (the best held-out "
            f"{settings.early_stopping_metric}, over every held-out row)")
    if settings.early_stopping_rounds and best == 0:
        log(f"warning: early stopping kept round 0 only: the held-out {settings.early_stopping_metric} "
            "did not improve after the first tree; the model is one tree deep (raise eta or "
            "early_stopping_rounds, or check the data)")

    # 4. the kept round's calibrator and rule
    booster = boosting.booster(0, best + 1)
    margins = held.margins(boosting, best + 1)
    calibrator = fit_platt(margins, held.channel.data.label, cluster.sum)
    held_p = calibrator.probability(margins)
    rule = fit_rule(settings, held.channel, held_p, cluster, log)
    policy = Policy(calibrator, rule, settings.class_costs,
                    cost_column_names(settings, train_data), facet_spec(settings, train_data))

    # 5. every channel at the served rule
    results = {}
    n_train = channels["train"].data.rows
    for name, ch in channels.items():
        if cross_fit and name == "validation":
            p, scored_by, fitted = held_p[n_train:], "out-of-fold", ["calibrator", "rule"]
        elif cross_fit and name == "train":
            p = calibrator.probability(_margin(booster, ch.data))
            scored_by, fitted = "model", ["trees", "calibrator", "rule"]
        elif name == "validation":
            p, scored_by, fitted = held_p, "model", ["calibrator", "rule"]
        else:
            p = calibrator.probability(_margin(booster, ch.data))
            scored_by, fitted = "model", (["trees"] if name == "train" else [])
        results[name] = evaluate(ch, p, policy.rule, settings, fairness_names, n_groups, cluster,
                                  scored_by, fitted)
        results[name].contributions = contribution_summary(booster, ch, fit.data.feature_names,
                                                           cluster)
        if cluster.is_first:
            log(metric_log.format_line("[final]", name, results[name].metrics))
            log(f"[final] {name}: scored by the {'fold models (out of fold)' if scored_by == 'out-of-fold' else 'model'}"
                + (f"; fitted on these rows: {', '.join(fitted)}" if fitted else
                   "; nothing was fitted on these rows"))
    rows_of = {name: int(cluster.sum([ch.data.rows])[0]) for name, ch in channels.items()}
    if not cluster.is_first:
        return None
    return TrainingResult(booster, policy, results, best, rounds_trained,
                          list(fit.data.feature_names), weighting, held.description, rows_of,
                          params["min_child_weight"])


def _out_of_fold(boosting: Boosting, data: Dataset, folds: np.ndarray, rounds: int | None
                 ) -> np.ndarray:
    """Each fit row's margin from the fold model that did not train on it (at ``rounds``)."""
    out = np.empty(data.rows, dtype=np.float64)
    for k in range(len(boosting.members) - 1):
        rows = folds == k
        if rounds is None:
            out[rows] = boosting.margins(k + 1)[rows]
        else:
            out[rows] = _margin(boosting.booster(k + 1, rounds), data, rows)
    return out


def _margin(booster: xgb.Booster, data: Dataset, rows=None) -> np.ndarray:
    features = data.features if rows is None else data.features[rows]
    if len(features) == 0:
        return np.empty(0, dtype=np.float64)
    return np.asarray(booster.inplace_predict(features, predict_type="margin", missing=np.nan),
                      dtype=np.float64)


def facet_spec(settings, train_data: Dataset) -> dict | None:
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


def print_line(line: str) -> None:
    print(line, flush=True)  # flushed: the log is read while training runs
