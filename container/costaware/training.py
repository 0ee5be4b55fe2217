"""Training: XGBoost with the cost-weighted loss, per-round metric lines, the learned threshold.

Knows nothing of SageMaker paths: it takes parsed settings and datasets and returns a
:class:`TrainingResult`; the SageMaker adapter reads files and writes the model. The boosting loop
(:class:`Boosting`) saves checkpoints and resumes from them bit for bit
(:mod:`costaware.checkpoints`).
"""

from __future__ import annotations

import functools
import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import xgboost as xgb

from . import __version__, bias, metric_log
from .cluster import SOLO, Cluster, gather_values
from .checkpoints import CheckpointStore, StopRequest, TrainingInterrupted, digest
from .costs import (CostMatrix, DecisionPolicy, RowCosts, constrained_threshold, empirical_threshold,
                    sigmoid)
from .data import Dataset
from .errors import DataError, HyperparameterError, InputError
from .fairness import sensitive_facet_index
from .hyperparameters import parse_values_or_threshold
from .metrics import evaluate
from .objective import (class_weight_totals, fitted_offset, intercept, make_objective,
                        score_offset)


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
    """The facet-d mask of the channel's rows (this host's; :func:`_check_facets` checks the
    totals)."""
    if not settings.facet_column:
        return None
    spec = parse_values_or_threshold(settings.facet_values_or_threshold, "facet_values_or_threshold")
    facet = channel.data.facet
    if facet.dtype.kind == "O":  # text values: categories only, and not at inference
        where = f"{channel.name} channel: facet '{settings.facet_column}' holds text ({facet[0]!r})"
        if not isinstance(spec, list):
            raise DataError(f"{where}, but facet_values_or_threshold {spec:g} is a threshold; give "
                            "the sensitive values as a JSON list, e.g. '[\"F\"]'")
        if settings.group_thresholds:
            raise DataError(f"{where}: group_thresholds needs a numeric facet (requests carry the "
                            "facet as a number); code the facet values as numbers")
    return sensitive_facet_index(facet, spec)


def _check_facets(settings, channel: Channel, cluster: Cluster) -> None:
    if channel.sensitive is None:
        return
    n_d, rows = (int(v) for v in cluster.sum([channel.sensitive.sum(), channel.sensitive.size]))
    if n_d in (0, rows):
        which = "no row" if n_d == 0 else "every row"
        raise DataError(
            f"{channel.name} channel: facet '{settings.facet_column}' with "
            f"facet_values_or_threshold {settings.facet_values_or_threshold}: {which} is in the "
            "sensitive group d; bias metrics need rows in both facets"
        )


def _check_classes(channel: Channel, settings, cluster: Cluster = SOLO) -> None:
    positives, rows = (int(v) for v in cluster.sum([channel.data.label.sum(), channel.data.rows]))
    if rows == 0:  # (one host's loader refuses an empty channel before this)
        raise DataError(f"{channel.name} channel ({channel.data.source}): no rows on any of the "
                        f"{cluster.size} hosts")
    if positives in (0, rows):
        only = 1 if positives else 0
        rule = settings.label_values_or_threshold
        why = (f" (label_values_or_threshold {rule} matches {'every' if positives else 'no'} row)"
               if rule else "")
        raise DataError(
            f"{channel.name} channel ({channel.data.source}): all {rows} rows have label {only}"
            f"{why}; training and the learned threshold need both classes"
        )


def _training_weights(settings, channel: Channel, cluster: Cluster = SOLO) -> np.ndarray:
    if settings.objective == "binary:logistic":
        return np.ones(channel.data.rows)
    weight = channel.row_costs.sample_weights(channel.data.label)
    label = channel.data.label
    weighted = cluster.any([np.any(weight[label == cls] > 0) for cls in (1, 0)])
    for cls, name, found in ((1, "C_FN - C_TP", weighted[0]), (0, "C_FP - C_TN", weighted[1])):
        if not found:
            raise DataError(
                f"train channel: every row of class {cls} has weight {name} = 0 (check "
                "cost_column and cost_column_scales): the loss would ignore that class"
            )
    # Only cost ratios matter to the optimum; scaling to mean 1 keeps lambda, gamma and
    # min_child_weight on the scale they have for the unweighted loss (costs in dollars would
    # otherwise switch regularisation off). The mean is over every host's rows.
    total, rows = cluster.sum([weight.sum(), weight.size])
    return weight / (total / rows)


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


class RoundMonitor:
    """Logs one metric line per round and does early stopping on our own metrics.

    Gets the watched channel's margins after every round (the loop accumulates them tree by tree,
    so a round costs one tree's prediction, not the whole model's). Its state (best round and value,
    the refitted score offset) goes into checkpoints.
    """

    def __init__(self, watch: Channel, evaluator: Evaluator, offset: float, refit_offset: bool,
                 early_stopping_rounds: int, early_stopping_metric: str,
                 log: Callable[[str], None]):
        self.watch = watch
        self.evaluator = evaluator
        self.offset = offset
        self.refit_offset = refit_offset
        self.patience = early_stopping_rounds
        self.metric = early_stopping_metric
        self.log = log
        self.best_iteration = 0
        self.best_value = math.inf

    def observe(self, iteration: int, margin: np.ndarray) -> bool:
        """Metrics of round ``iteration`` from the watched channel's margins; True: stop early."""
        channel = self.watch
        channel.margin = margin.astype(np.float64)
        if self.refit_offset:  # as the final model will be: scores read as probabilities
            self.offset = fitted_offset(channel.margin, channel.data.label, self.offset)
        score = sigmoid(channel.margin - self.offset)
        metrics = self.evaluator.metrics(score, channel, self.evaluator.rule(score, channel))
        self.log(metric_log.format_line(f"[{iteration}]", channel.name, metrics))
        value = metrics[self.metric]
        if metric_log.METRICS.get(self.metric) == "Maximize":
            value = -value
        if value < self.best_value:  # strictly better; ties keep the earlier, smaller model
            self.best_value, self.best_iteration = value, iteration
        return self.should_stop(iteration)

    def should_stop(self, iteration: int) -> bool:
        return bool(self.patience) and iteration - self.best_iteration >= self.patience

    def state(self) -> dict:
        return {"best_iteration": self.best_iteration,
                "best_value": None if math.isinf(self.best_value) else self.best_value,
                "score_offset": self.offset}

    def restore(self, state: dict) -> None:
        self.best_iteration = int(state["best_iteration"])
        best = state["best_value"]
        self.best_value = math.inf if best is None else float(best)
        self.offset = float(state["score_offset"])


ROUND_BASE_SCORE = 0.5  # base margin 0: a round booster's margins are its one tree's leaf values
RESUMABLE = ("num_round", "checkpoint_frequency", "nthread")  # may change between run and rerun


def round_seed(seed: int, iteration: int) -> int:
    """XGBoost's seed for round ``iteration``: a function of (seed, round) alone."""
    return int(np.random.SeedSequence([seed, iteration]).generate_state(1)[0] >> 1)


def _json_trees(booster: xgb.Booster) -> list[dict]:
    return json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]


class Forest:
    """The trees grown so far, in XGBoost's JSON model format, and boosters made of them.

    ``template`` is the JSON of an untrained booster with the final parameters (base score, feature
    names, objective); a model is the template with its tree list filled in, which is what XGBoost
    itself writes for a booster with those trees. Each tree is kept as JSON text, so a model
    document (a checkpoint) costs a string join, not a round trip through XGBoost.
    """

    _TREES = f"trees-{uuid.uuid4().hex}"  # placeholder for the tree list in the template's JSON

    def __init__(self, template: dict):
        self.template = template
        self.trees: list[str] = []

    def append(self, tree: dict) -> None:
        tree["id"] = len(self.trees)
        self.trees.append(json.dumps(tree, separators=(",", ":")))

    def document(self, rounds: int | None = None) -> bytes:
        """The model with the first ``rounds`` trees as XGBoost's JSON (what ``load`` takes)."""
        trees = self.trees[:rounds]
        learner = self.template["learner"]
        gbtree = learner["gradient_booster"]
        model = gbtree["model"]
        model = {**model, "trees": self._TREES, "tree_info": [0] * len(trees),
                 "iteration_indptr": list(range(len(trees) + 1)),
                 "gbtree_model_param": {**model["gbtree_model_param"], "num_trees": str(len(trees))}}
        text = json.dumps({**self.template,
                           "learner": {**learner, "gradient_booster": {**gbtree, "model": model}}},
                          separators=(",", ":"))
        return text.replace(f'"{self._TREES}"', "[" + ",".join(trees) + "]", 1).encode()

    def booster(self, rounds: int | None = None) -> xgb.Booster:
        return xgb.Booster(model_file=bytearray(self.document(rounds)))

    def load(self, model: bytes) -> xgb.Booster:
        """Take the trees of a saved model (JSON or UBJSON); returns it as a booster."""
        booster = xgb.Booster(model_file=bytearray(model))
        self.trees = []
        for tree in _json_trees(booster):
            self.append(tree)
        return booster


SAMPLING = ("subsample", "colsample_bytree", "colsample_bylevel", "colsample_bynode")


class Boosting:
    """The boosting rounds, one tree per round; margins for the objective and the metric lines.

    Two ways to grow, chosen by :meth:`create`:

    * :class:`SharedBooster` (no row or column sampling, the default): one booster, as in
      ``xgb.train``; XGBoost's prediction caches keep the margins. Without the parity penalty the
      cost-weighted loss is exactly ``binary:logistic`` with the cost weights as sample weights
      (see :mod:`costaware.objective`), so XGBoost computes the gradients natively, as fast as its
      built-in objective; with the penalty they come from our objective. A booster reloaded from a
      checkpoint rebuilds the caches with one prediction, bit for bit, and grows the same trees.
    * :class:`RoundBoosters` (``subsample`` or a ``colsample_*`` below 1): a fresh booster per round,
      seeded by (seed, round). XGBoost 3.2 keeps its sampling's random state inside the booster and
      does not save it with the model, so a reloaded booster would draw other rows and columns than
      an uninterrupted run (neither ``seed_per_iteration`` nor re-setting ``seed`` helps). A booster
      per round makes each round's sample depend on (seed, round) alone: resumed runs are exact
      too. Gradients come from our objective; each round costs a few ms more (configuring a
      booster, serialising its tree).
    """

    model_format = "ubj"  # checkpoint model files

    def __init__(self, settings, dtrain: xgb.DMatrix, objective: Callable, base_score: float,
                 dwatch: xgb.DMatrix | None, native: bool = False):
        self.seed = settings.seed
        self.params = {**settings.xgboost_params(),
                       "objective": "binary:logistic",  # the saved model's link
                       "disable_default_eval_metric": 1, "verbosity": 1}
        self.base_score = base_score
        self.dtrain = dtrain  # label and the cost weights as sample weights
        self.dwatch = dwatch  # None: the train channel is watched
        self.objective = objective
        self.native = native

    @staticmethod
    def create(settings, dtrain: xgb.DMatrix, objective: Callable, base_score: float,
               dwatch: xgb.DMatrix | None, native: bool = False) -> "Boosting":
        """``native``: the loss is ``binary:logistic`` with dtrain's weights (no penalty term)."""
        sampling = any(settings[name] < 1 for name in SAMPLING)
        kind = RoundBoosters if sampling else SharedBooster
        return kind(settings, dtrain, objective, base_score, dwatch, native)

    @property
    def rounds(self) -> int:
        raise NotImplementedError

    def round(self) -> None:
        """Grow the next tree."""
        raise NotImplementedError

    def train_margins(self) -> np.ndarray:
        raise NotImplementedError

    def watch_margins(self) -> np.ndarray:
        """The watched channel's margins (train's without a validation channel), float32."""
        raise NotImplementedError

    def booster(self, rounds: int | None = None) -> xgb.Booster:
        """The model of the first ``rounds`` trees (all by default)."""
        raise NotImplementedError

    def checkpoint(self) -> bytes:
        raise NotImplementedError

    def resume(self, model: bytes) -> None:
        raise NotImplementedError


class SharedBooster(Boosting):
    """One booster for every round (no sampling): what ``xgb.train`` does, margins in its caches."""

    def __init__(self, *args):
        super().__init__(*args)
        self._start(None)

    def _start(self, model: bytes | None) -> None:
        cache = [self.dtrain] + ([self.dwatch] if self.dwatch is not None else [])
        self.model = xgb.Booster({**self.params, "base_score": self.base_score}, cache,
                                 model_file=None if model is None else bytearray(model))

    @property
    def rounds(self) -> int:
        return self.model.num_boosted_rounds()

    def round(self) -> None:
        if self.native:  # binary:logistic with the sample weights: XGBoost's own gradients
            self.model.update(self.dtrain, self.rounds)
            return
        grad, hess = self.objective(self.train_margins(), self.dtrain)
        self.model.boost(self.dtrain, self.rounds, grad=grad, hess=hess)

    def train_margins(self) -> np.ndarray:
        return self.model.predict(self.dtrain, output_margin=True, training=True)

    def watch_margins(self) -> np.ndarray:
        if self.dwatch is None:
            return self.train_margins()
        return self.model.predict(self.dwatch, output_margin=True)  # cached: the new tree only

    def booster(self, rounds: int | None = None) -> xgb.Booster:
        return self.model if rounds in (None, self.rounds) else self.model[:rounds]

    def checkpoint(self) -> bytes:
        return bytes(self.model.save_raw("ubj"))

    def resume(self, model: bytes) -> None:
        self._start(model)


class RoundBoosters(Boosting):
    """A booster per round, seeded by (seed, round), for exact resumes with sampling.

    The round booster's base margin is 0, so its prediction cache (kept up to date by XGBoost as
    it grows the tree) holds the tree's leaf value per row, which the loop adds to the margins it
    holds: float32 sums in tree order from XGBoost's base margin, exactly what XGBoost's predictor
    computes for the assembled model, so after a resume one prediction of the checkpointed model
    restores them bit for bit. The trees are kept as XGBoost JSON (:class:`Forest`), and so are
    checkpoints (a string join rather than a round trip through XGBoost).
    """

    model_format = "json"

    def __init__(self, *args):
        super().__init__(*args)
        template = xgb.Booster({**self.params, "base_score": self.base_score}, [self.dtrain])
        self.forest = Forest(json.loads(template.save_raw("json")))
        self._margins(template)

    def _margins(self, booster: xgb.Booster) -> None:
        # (an untrained booster's prediction: the base margin, as XGBoost has it)
        self.margin = booster.predict(self.dtrain, output_margin=True)
        self.watch_margin = (booster.predict(self.dwatch, output_margin=True)
                             if self.dwatch is not None else self.margin)

    @property
    def rounds(self) -> int:
        return len(self.forest.trees)

    def round(self) -> None:
        iteration = self.rounds
        booster = xgb.Booster({**self.params, "base_score": ROUND_BASE_SCORE,
                               "seed": round_seed(self.seed, iteration)}, [self.dtrain])
        booster.predict(self.dtrain, output_margin=True, training=True)  # starts the cache at 0
        grad, hess = self.objective(self.margin, self.dtrain)
        booster.boost(self.dtrain, 0, grad=grad, hess=hess)
        self.margin += booster.predict(self.dtrain, output_margin=True, training=True)
        if self.dwatch is not None:
            self.watch_margin += booster.predict(self.dwatch, output_margin=True)
        self.forest.append(_json_trees(booster)[0])

    def train_margins(self) -> np.ndarray:
        return self.margin

    def watch_margins(self) -> np.ndarray:
        return self.watch_margin

    def booster(self, rounds: int | None = None) -> xgb.Booster:
        return self.forest.booster(rounds)

    def checkpoint(self) -> bytes:
        return self.forest.document()

    def resume(self, model: bytes) -> None:
        self._margins(self.forest.load(model))


def _fingerprint(settings, train: Channel, weight: np.ndarray, watch: Channel) -> dict:
    """What a checkpoint must have been written for: the settings and the data the loop reads."""
    fixed = {k: v for k, v in settings.items() if k not in RESUMABLE}
    data = {"train": digest(train.data.features, train.data.label, weight, train.sensitive)}
    if watch is not train:
        data[watch.name] = digest(watch.data.features, watch.data.label, watch.data.cost_multiplier,
                                  watch.sensitive, watch.data.group)
    return {"settings": json.loads(json.dumps(fixed)), "data": data}


def _check_fingerprint(saved: dict, current: dict, path: str, num_round: int, rounds: int) -> None:
    settings = saved.get("settings", {})
    changed = sorted(k for k in set(settings) | set(current["settings"])
                     if settings.get(k) != current["settings"].get(k))
    what = []
    if changed:
        what.append("hyperparameters " + ", ".join(changed[:8]) + (", ..." if len(changed) > 8 else ""))
    data = saved.get("data", {})
    what += [f"{name} channel data" for name in sorted(set(data) | set(current["data"]))
             if data.get(name) != current["data"].get(name)]
    if what:
        raise InputError(
            f"checkpoint {path} was written by a training job with other {' and '.join(what)}; "
            "resume with the same settings and data, or use an empty checkpoint location to start "
            "afresh")
    if rounds > num_round:
        raise HyperparameterError(
            f"hyperparameter 'num_round': {num_round}, but checkpoint {path} already has {rounds} "
            "rounds")


def _run_rounds(settings, boosting: Boosting, monitor: RoundMonitor,
                checkpoints: CheckpointStore | None, stop: StopRequest,
                fingerprint: Callable[[], dict], log: Callable[[str], None],
                cluster: Cluster = SOLO) -> int:
    """Boosting rounds with metric lines, early stopping, checkpoints and SIGTERM; returns the
    number of rounds trained.

    On several hosts, every host grows each tree (XGBoost sums the gradient histograms), the
    watched channel's margins are gathered, and the first host computes the metric line and
    decides early stopping for all; a SIGTERM on any host stops every host after the round.
    """
    saved = 0  # rounds in the newest checkpoint
    early = False
    frequency = settings.checkpoint_frequency
    if checkpoints is not None:
        fingerprint = functools.lru_cache(maxsize=None)(fingerprint)
        found = checkpoints.latest()
        if found is None:
            log(f"checkpoints: none yet in {checkpoints.directory}; saving one "
                + (f"every {frequency} rounds and " if frequency else "") + "on SIGTERM")
        else:
            _check_fingerprint(found.state.get("fingerprint", {}), fingerprint(), found.path,
                               settings.num_round, found.rounds)
            try:
                monitor.restore(found.state["monitor"])
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"checkpoint {found.path}: incomplete loop state ({exc!r}); use "
                                 "an empty checkpoint location to start afresh") from None
            boosting.resume(found.model)
            saved = found.rounds
            early = bool(found.state.get("early_stopped"))
            log(f"resuming from checkpoint {found.path}: {found.rounds} rounds done")
            versions = found.state.get("versions", {})
            if versions.get("xgboost") != xgb.__version__:
                log(f"warning: the checkpoint was written with XGBoost {versions.get('xgboost')}, "
                    f"this is {xgb.__version__}: the model may differ slightly from an "
                    "uninterrupted run's")

    def save(reason: str) -> str | None:
        """Save a checkpoint; a failure to write one is logged, not fatal to training."""
        nonlocal saved
        state = {"reason": reason, "early_stopped": early, "monitor": monitor.state(),
                 "num_round": settings.num_round, "fingerprint": fingerprint(),
                 "versions": {"xgboost": xgb.__version__, "costaware": __version__}}
        try:
            path = checkpoints.save(boosting.rounds, boosting.checkpoint(), state,
                                    boosting.model_format)
        except OSError as exc:
            log(f"warning: could not save a checkpoint in {checkpoints.directory}: {exc}")
            return None
        saved = boosting.rounds
        return path

    def interrupted() -> TrainingInterrupted:
        rounds = boosting.rounds
        if checkpoints is None:
            where = ("no checkpoint saved (checkpointing is off: no checkpoint directory)"
                     if cluster.size == 1 else
                     f"no checkpoint saved (checkpoints are off on {cluster.size} hosts)")
        elif rounds == 0:
            where = "no checkpoint saved (no round finished)"
        else:
            path = checkpoints.state_path(rounds) if rounds == saved else save("SIGTERM")
            where = (f"checkpoint {path} saved; a rerun with the same checkpoint location resumes "
                     "from it" if path else "the checkpoint could not be saved (see the log)")
        return TrainingInterrupted(f"training interrupted by SIGTERM after {rounds} of "
                                   f"{settings.num_round} rounds: {where}")

    while not early and boosting.rounds < settings.num_round:
        if cluster.any([bool(stop)])[0]:
            raise interrupted()
        iteration = boosting.rounds
        boosting.round()
        margins = cluster.gather(boosting.watch_margins())
        early = monitor.observe(iteration, margins) if cluster.is_first else False
        early = bool(cluster.any([early])[0])
        if checkpoints is not None and frequency and boosting.rounds % frequency == 0:
            save(f"every {frequency} rounds")
    return boosting.rounds


def print_line(line: str) -> None:
    print(line, flush=True)  # flushed: the log is read while training runs


def train(settings, train_data: Dataset, validation: Dataset | None = None,
          test: Dataset | None = None, log: Callable[[str], None] = print_line,
          checkpoints: CheckpointStore | None = None,
          stop: StopRequest | None = None, cluster: Cluster = SOLO) -> TrainingResult | None:
    """Train; with ``checkpoints``, resume from the newest checkpoint and save new ones.

    ``stop`` (set by SIGTERM) ends the loop after the current round: a checkpoint is saved and
    :class:`~costaware.checkpoints.TrainingInterrupted` raised.

    On several hosts (``cluster``), each passes its own rows of every channel (possibly none of
    validation or test). The trees are grown together; weights, the intercept and the parity
    penalty use totals summed over hosts; every metric and the learned threshold are computed by
    the first host on the rows of all hosts (gathered, in rank order), with the same code as on one
    host, so they equal a single-host evaluation of the same model on the union of the data. The
    first host gets the result; the others get ``None``.
    """
    if checkpoints is not None and cluster.size > 1:
        raise ValueError("checkpoints are single-host only")
    costs = cost_matrix(settings)
    channels = {"train": Channel("train", train_data, row_costs_for(settings, train_data))}
    for name, data in (("validation", validation), ("test", test)):
        if data is not None:
            channels[name] = Channel(name, data, row_costs_for(settings, data))
    problem = None
    try:
        for channel in channels.values():
            channel.sensitive = _sensitive(settings, channel)
    except InputError as exc:
        problem = exc
    cluster.agree(problem)  # a host's facet error stops every host
    _check_classes(channels["train"], settings, cluster)
    if "validation" in channels:
        _check_classes(channels["validation"], settings, cluster)
    for channel in channels.values():
        _check_facets(settings, channel, cluster)
    # What the metrics see: every host's rows (on one host, the channels themselves).
    union = {name: _gathered(settings, ch, cluster) for name, ch in channels.items()}

    train_channel = channels["train"]
    label = train_data.label
    weight = _training_weights(settings, train_channel, cluster)
    base_margin = intercept(label, weight, cluster.sum(class_weight_totals(label, weight)))
    cost_weighted = settings.objective == "cost_weighted"
    offset = 0.0
    if cost_weighted and cluster.is_first:  # (scores are the first host's job)
        # From every row, in the single-host order of operations: the offset starts the
        # recalibration on validation, whose result must not depend on how rows were sharded.
        every = union["train"]
        offset = score_offset(every.data.label,
                              weight if every is train_channel else _training_weights(settings, every))

    # Cost weights go into the DMatrix too: the hist sketch is weighted, exactly as for the
    # built-in binary:logistic with sample weights, so the two give the same trees.
    dtrain = xgb.DMatrix(train_data.features, label=label, weight=weight,
                         feature_names=train_data.feature_names, missing=np.nan)
    # With the parity penalty, and for sampled rounds, gradients come from our objective (weight
    # 1 for the plain symmetric loss); otherwise XGBoost computes them natively (see Boosting).
    objective = make_objective(label, weight, train_channel.sensitive, settings.fairness_penalty,
                               reduce=cluster.sum if cluster.size > 1 else None)

    watch_name = "validation" if "validation" in channels else "train"
    watch = channels[watch_name]
    watch.dmatrix = (dtrain if watch is train_channel else
                     xgb.DMatrix(watch.data.features, feature_names=train_data.feature_names,
                                 missing=np.nan))
    bayes = costs.bayes_threshold()
    fixed = _fixed_threshold(settings.decision_threshold, bayes, has_validation=validation is not None)
    if settings.decision_threshold == "empirical" and validation is None:
        log(f"no validation channel: the decision threshold is the Bayes threshold {bayes:.6g}")
    evaluator = Evaluator(settings, bayes, fixed)

    refit = cost_weighted and "validation" in channels
    monitor = RoundMonitor(union[watch_name], evaluator, offset, refit,
                           settings.early_stopping_rounds, settings.early_stopping_metric, log)
    boosting = Boosting.create(settings, dtrain, objective,
                               float(sigmoid(np.array([base_margin]))[0]),
                               watch.dmatrix if watch is not train_channel else None,
                               native=settings.fairness_penalty == 0)
    fingerprint = lambda: _fingerprint(settings, train_channel, weight, watch)  # noqa: E731
    if stop is None:
        stop = StopRequest()
    rounds_trained = _run_rounds(settings, boosting, monitor, checkpoints, stop, fingerprint, log,
                                 cluster)
    best = monitor.best_iteration if settings.early_stopping_rounds else rounds_trained - 1
    best = int(cluster.allreduce(np.array([best if cluster.is_first else 0]), "max")[0])
    booster = boosting.booster(best + 1)
    if best + 1 < rounds_trained:
        log(f"early stopping: keeping rounds 0..{best} of {rounds_trained} "
            f"(best validation {settings.early_stopping_metric})")

    margins = {name: cluster.gather(_margin(booster, ch.data)) for name, ch in channels.items()}
    if not cluster.is_first:
        return None
    return _evaluate(settings, evaluator, union, margins, booster, offset, refit, bayes, fixed,
                     best, rounds_trained, base_margin, watch_name, log)


def _gathered(settings, channel: Channel, cluster: Cluster) -> Channel:
    """The channel as the metrics see it: every host's rows in rank order (no features: the
    metrics read margins, which are gathered separately)."""
    if cluster.size == 1:
        return channel
    data = channel.data
    rows = Dataset(
        features=np.empty((0, 0), dtype=np.float32), label=cluster.gather(data.label),
        feature_names=data.feature_names,
        cost_multiplier=gather_values(cluster, data.cost_multiplier,
                                      f"{channel.name} channel: the cost column"),
        source=data.source, named_columns=data.named_columns, facet=None,
        group=gather_values(cluster, data.group, f"{channel.name} channel: the group column"))
    sensitive = None if channel.sensitive is None else cluster.gather(channel.sensitive)
    return Channel(channel.name, rows, row_costs_for(settings, rows), sensitive=sensitive)


def _evaluate(settings, evaluator: Evaluator, channels: dict, margins: dict, booster, offset: float,
              refit: bool, bayes: float, fixed: float | None, best: int, rounds_trained: int,
              base_margin: float, watch_name: str, log) -> TrainingResult:
    """The final model's decision policy and the metrics of every channel."""
    costs = cost_matrix(settings)
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
    if fixed is not None:
        source = "bayes" if settings.decision_threshold in ("bayes", "empirical") else "fixed"
        rule = Rule.single(fixed)
    elif settings.facet_column and settings.max_abs_dppl < 1:
        source = "constrained"
        rule = evaluator.rule(scores[watch_name], channels[watch_name])
    else:  # learned on validation: what evaluator.rule would find again
        source = "empirical"
        rule = Rule.single(thresholds["empirical"])
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
        label_c = ch.data.label
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
