"""Training: the model, its calibrator and its decision rule, from the channels' rows; for two
classes and for K >= 3 alike (what differs with K is :mod:`costaware.training.class_kinds`).

Knows nothing of SageMaker paths: it takes parsed settings and datasets and returns a
:class:`TrainingResult`; the SageMaker adapter reads files and writes the model.

1. **Fit rows and held-out rows.** ``calibration_data`` ``cross_fit`` (the default): train and
   validation together are the fit rows, and ``cross_fit_folds`` fold models (stratified by
   class), each trained on the other folds, give every one of these rows an out-of-fold margin;
   the model served is their average (``served_model`` ``fold_average``) or one refit on every
   fit row (``refit``).
   ``validation``: the model is trained on train; the validation channel's rows are the held-out
   rows.
2. **Loss weights and offsets** from the costs (two classes: each row's,
   :class:`costaware.training.objective.CostWeighting`; K >= 3: each class's,
   :class:`costaware.training.class_objective.ClassWeighting`), and the **members** (the model and its fold
   models) with their objectives (and the in-training fairness penalty).
3. **Rounds** (:mod:`costaware.training.rounds`: checkpoints, resume and SIGTERM): each member grows a tree
   (K with K classes); then the held-out margins are calibrated, decided by the Bayes rule, and the
   watched rows' metric line is logged (validation rows, else train rows); early stopping watches
   ``early_stopping_metric`` on them.
4. **The kept round**: the calibrator chosen and fitted on the held-out margins
   (:mod:`costaware.decisions.calibrator_choice`), and the decision rule
   (Bayes; or fitted on the held-out rows' probabilities).
5. **Every channel's metrics** at the rule the model serves, from fixed-size summaries.

Features left in their files (``external_memory``: :mod:`costaware.training.external_memory`)
change three things only: step 2's matrix is XGBoost's ``ExtMemQuantileDMatrix``, the validation
rows' matrix whose margins the rounds keep is in pages on disk too (:func:`watch_matrix`), and
margins are predicted a batch at a time; the caller then passes the held-out rows as the
validation channel (``calibration_data`` ``validation``).

On several hosts (``cluster``) each host passes its own rows; the trees are grown together and
every sum the steps need (the weights' scale, the folds, the calibrator's fit, the rule's
histograms, the metrics' summaries) is added up over the hosts, so every host computes the same
numbers and no host's memory grows with the other hosts' rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import xgboost as xgb

from ..metrics import log_lines as metric_log
from .boosting import Boosting, averaged, quantised, sliced
from .channels import (Channel, channel_folds, channels_of, check_facets, concat, folds_of,
                       group_codes, sensitive_of, subset)
from .checkpoints import CheckpointStore, StopRequest, digest
from .class_kinds import ManyClasses, TwoClasses, kind_of
from ..decisions.calibrator_choice import Choice, choose
from ..cluster import SOLO, Cluster
from ..decisions.costs import CELLS, row_blocks
from ..data.channel_files import Dataset
from ..errors import InputError
from ..machine import one_blas_thread
from ..model import dense_margins
from .evaluation import ChannelResult
from . import external_memory
from .rounds import RoundMonitor, run_rounds, settings_fingerprint

@dataclass
class TrainingResult:
    booster: xgb.Booster
    policy: object  # Policy (two classes) or MulticlassPolicy
    channels: dict[str, ChannelResult]
    best_iteration: int
    rounds_trained: int
    feature_names: list[str]
    weighting: object  # CostWeighting (two classes) or ClassWeighting
    held_out: str  # how the held-out rows were made, in words
    rows: dict = field(default_factory=dict)  # channel -> rows (over every host)
    min_child_weight: float = 1.0  # as passed to XGBoost
    # the first host's held-out rows and their calibrated probabilities (out of fold, or the
    # validation rows'): what a monitoring baseline scores when the job has no test rows
    held_out_rows: Dataset | None = None
    held_out_p: np.ndarray | None = None
    calibrator_choice: Choice | None = None  # the calibrator's evidence
    served_model: str = "refit"  # or "fold_average"


@dataclass
class FitRows:
    """The rows the trees are grown on, and the job's constants."""

    kind: TwoClasses | ManyClasses
    channels: dict[str, Channel]
    n_groups: int
    parts: list[Channel]  # train (and validation, when cross-fitting)
    fit: Channel
    label: np.ndarray
    folds: np.ndarray | None  # each row's cross-fitting fold
    n_folds: int = 0  # cross-fitting folds (0: none)
    refit: bool = True  # member 0 is the model refit on every fit row (else: the fold average)
    sample: np.ndarray | None = None  # the held-out rows every round reads (None: all of them)

    @property
    def cross_fit(self) -> bool:
        return self.folds is not None

    @property
    def first_fold(self) -> int:
        """The member index of fold 0's model."""
        return 1 if self.refit else 0


@dataclass
class HeldOut:
    """The held-out rows: whose margins calibrate, choose the rule and the round."""

    channel: Channel  # their rows (labels, costs, facets)
    # their margins (at a round count; only the rows ``take`` when given, an index array)
    margins: Callable[[Boosting, int | None, np.ndarray | None], np.ndarray]
    watch: np.ndarray  # which of them the per-round metric line shows
    watch_name: str
    description: str
    folds: np.ndarray  # each held-out row's fold, for the calibrator's cross-validated choice
    n_folds: int


@dataclass
class Kept:
    """The kept round: the saved model, its calibrator, the held-out rows' probabilities."""

    booster: xgb.Booster
    best: int
    rounds_trained: int
    choice: Choice  # the calibrator, and the evidence that chose it
    held_p: np.ndarray
    # the saved model's margins on the fit rows, when the rounds left them (fit_margins)
    fit_margins: np.ndarray | None = None

    @property
    def calibrator(self):
        return self.choice.calibrator


@one_blas_thread
def train(settings, train_data: Dataset, validation: Dataset | None = None,
          test: Dataset | None = None, log: Callable[[str], None] = None,
          checkpoints: CheckpointStore | None = None,
          stop: StopRequest | None = None, cluster: Cluster = SOLO) -> TrainingResult | None:
    """Train; with ``checkpoints``, resume from the newest checkpoint and save new ones.

    ``stop`` (set by SIGTERM) ends the loop after the current round: a checkpoint is saved and
    :class:`~costaware.training.checkpoints.TrainingInterrupted` raised. The first host gets the result;
    on several hosts the others get ``None``.
    """
    log = log or print_line
    if checkpoints is not None and cluster.size > 1:
        raise ValueError("checkpoints are single-host only")
    pages = (external_memory.PageCache()
             if any(external_memory.is_external(data.features)
                    for data in (train_data, validation, test) if data is not None)
             else None)
    try:
        return _train(settings, train_data, validation, test, log, checkpoints, stop, cluster,
                      pages)
    finally:
        if pages is not None:
            pages.close()


def _train(settings, train_data: Dataset, validation: Dataset | None, test: Dataset | None, log,
           checkpoints: CheckpointStore | None, stop: StopRequest | None, cluster: Cluster,
           pages: "external_memory.PageCache | None") -> TrainingResult | None:
    rows = fit_rows(settings, kind_of(settings), train_data, validation, test, cluster, log)
    weighting, weight, boosting, params = members(settings, rows, cluster, pages)
    held = held_out(settings, rows, boosting, cluster)
    log(f"training{rows.kind.what} on {int(cluster.sum([rows.fit.data.rows])[0])} rows "
        f"({' and '.join(p.name for p in rows.parts)}); held out: {held.description}; "
        f"{rows.kind.describe_weights(weighting)}; min_child_weight "
        f"{settings.min_child_weight:g} rows of the {rows.kind.lighter} = "
        f"{params['min_child_weight']:.6g}")
    # (what a checkpoint must match, taken now: the objectives keep the weights as they need
    # them, one value a class when they follow the label, and the rows' array goes)
    fingerprint = None if checkpoints is None else job_fingerprint(settings, rows, held, weight)
    del weight
    kept = grow(settings, rows, held, boosting, fingerprint, checkpoints, stop, cluster, log)
    del boosting  # (XGBoost's per-row state and the loss's: not needed from here on)
    policy = rows.kind.policy(held.channel, kept.held_p, kept.calibrator, train_data, cluster,
                              log)
    results = evaluate_channels(rows, kept, policy, cluster, log)
    rows_of = {name: int(cluster.sum([ch.data.rows])[0]) for name, ch in rows.channels.items()}
    if not cluster.is_first:
        return None
    return TrainingResult(kept.booster, policy, results, kept.best, kept.rounds_trained,
                          list(rows.fit.data.feature_names), weighting, held.description, rows_of,
                          params["min_child_weight"], held.channel.data, kept.held_p,
                          kept.choice, "refit" if rows.refit else "fold_average")


def fit_rows(settings, kind, train_data: Dataset, validation: Dataset | None,
             test: Dataset | None, cluster: Cluster, log) -> FitRows:
    """Step 1: the channels (facets and groups checked on every host), the fit rows and folds."""
    channels = channels_of(settings, train_data, validation, test)
    problem = None
    try:
        for channel in channels.values():
            channel.sensitive = sensitive_of(settings, channel)
        n_groups = group_codes(list(channels.values()), cluster)
    except InputError as exc:
        problem = exc
    cluster.agree(problem)  # a host's facet error stops every host
    kind.check_channels(channels, cluster)
    for channel in channels.values():
        check_facets(settings, channel, cluster, log)
    cross_fit = settings.calibration_data == "cross_fit"
    parts = [channels["train"]] + ([channels["validation"]] if cross_fit and validation else [])
    fit = concat("fit", parts)
    n_folds, refit = cross_fitting(settings, int(cluster.sum([fit.data.rows])[0]))
    kind.check_fit(fit, " and ".join(p.name for p in parts), cluster, n_folds)
    label = kind.label(fit.data)
    folds = (channel_folds([kind.label(part.data) for part in parts], n_folds, settings.seed,
                           cluster, kind.classes) if cross_fit else None)
    held_rows = fit.data.rows if cross_fit else channels["validation"].data.rows
    return FitRows(kind, channels, n_groups, parts, fit, label, folds, n_folds, refit,
                   round_sample(held_rows, settings.seed, cluster))


LARGE_ROWS = 500_000  # fit rows from which the automatic choices cut the training time


def cross_fitting(settings, fit_rows: int) -> tuple[int, bool]:
    """``(folds, refit)``: the cross-fitting folds (0 without cross-fitting) and whether a model
    is refit on every fit row (``served_model`` refit; else the fold models' average is served).
    Automatic folds (``cross_fit_folds`` 0): 5 below :data:`LARGE_ROWS` fit rows; from there 2,
    each fold model on half the rows, so that the fold models' trees cost one model's and the
    whole job stays within about 3x the time of XGBoost's own objective
    (``benchmarks/bench_training.py``)."""
    if settings.calibration_data != "cross_fit":
        return 0, True
    folds = settings.cross_fit_folds or (2 if fit_rows >= LARGE_ROWS else 5)
    return folds, settings.served_model == "refit"


def members(settings, rows: FitRows, cluster: Cluster,
            pages: "external_memory.PageCache | None" = None):
    """Step 2: the loss weights, the members (the model, then each fold's model) and their
    boosting; returns ``(weighting, weight, boosting, params)``. Features left in their files
    (:mod:`costaware.training.external_memory`) are quantised into pages cached in ``pages``."""
    kind, fit, label = rows.kind, rows.fit, rows.label
    weighting, weight, offset, light = kind.loss(label, fit, cluster)
    params = settings.xgboost_params()
    # min_child_weight counts rows of the lighter-weighted class: XGBoost gets it times that
    # class's mean weight (1 for the symmetric loss)
    params["min_child_weight"] = settings.min_child_weight * light
    member_rows = (([None] if rows.refit else [])
                   + [np.flatnonzero(rows.folds != k) for k in range(rows.n_folds)])
    # the held-out rows each fold model keeps margins of every round: its fold's, or those of
    # them in the rounds' sample (predicting a million rows every round costs more than the tree)
    sample = rows.sample
    member_held = (([None] if rows.refit else [])
                   + [np.flatnonzero((rows.folds == k) & (True if sample is None else sample))
                      for k in range(rows.n_folds)])

    def part(values, at):  # a per-row array's rows ``at`` (None: every row)
        per_row = isinstance(values, np.ndarray) and values.shape[:1] == (fit.data.rows,)
        return values[at] if per_row and at is not None else values

    grown = [replace(kind.member(part(label, at), part(weight, at), part(offset, at),
                                 part(fit.sensitive, at), cluster), rows=at, held=held)
             for at, held in zip(member_rows, member_held)]
    # No weights in the matrices: the hist sketch would place its cuts by weights that follow the
    # label, held-out rows' too; the objective applies them itself. No labels either: the
    # objective holds them (int8; int64 with K >= 3), and XGBoost would keep a float32 copy a row.
    if external_memory.is_external(fit.data.features):
        matrices = sliced(external_memory.quantile_matrix(
            fit.data.features, fit.data.feature_names, pages, params["max_bin"],
            params.get("nthread")), grown)
    else:
        matrices = quantised(fit.data.features, fit.data.feature_names, grown, params["max_bin"],
                             params.get("nthread"))
    dwatch = None
    if not rows.cross_fit:
        dwatch = watch_matrix(rows.channels["validation"].data.features, matrices[0][0],
                              fit.data.feature_names, params, cluster, pages)
    boosting = Boosting.create(params, settings.seed, matrices, grown, dwatch, kind.classes)
    return weighting, weight, boosting, params


def watch_matrix(features, train: xgb.DMatrix, feature_names: list[str], params: dict,
                 cluster: Cluster, pages: "external_memory.PageCache | None" = None
                 ) -> xgb.DMatrix:
    """The validation rows' matrix, whose margins the rounds keep: quantised at the model's own
    cuts (``ref=train``), 1 byte a value (``max_bin`` <= 256) where a ``DMatrix`` keeps 8 (200,000
    rows x 50 features: 10 MB against 80), when that gives the same margins, else a ``DMatrix``.
    A value in a bin falls on the same side of every split as the bin's lower edge, which is what
    XGBoost predicts from; but a value at or above a feature's last cut is put in the last bin,
    below that cut, and a split at the last cut (which separates the present values from the
    missing ones) would send it the other way. So any such value on any host gives a
    ``DMatrix``.

    Features left in their files (external memory: on any host, then on every host, one without
    validation rows too) give a matrix in pages on disk (``pages``), quantised or of raw values:
    the rows are never held, only their margins.
    Every host builds the same kind of matrix (building one is a collective step)."""
    indptr, cuts = train.get_quantile_cut()
    last = np.asarray(cuts, dtype=np.float32)[np.asarray(indptr)[1:] - 1]
    beyond = False
    for block in external_memory.blocks(features):  # (fmax ignores NaN, as missing values are)
        beyond = beyond or bool(np.any(np.fmax.reduce(block, axis=0) >= last))
    raw, on_disk = (bool(v) for v in cluster.any([beyond,
                                                   external_memory.is_external(features)]))
    if on_disk:
        if raw:
            return external_memory.raw_matrix(features, feature_names, pages, "held-out-raw",
                                              params.get("nthread"))
        return external_memory.quantile_matrix(features, feature_names, pages, params["max_bin"],
                                               params.get("nthread"), ref=train, name="held-out")
    if raw:
        return xgb.DMatrix(features, feature_names=feature_names, missing=np.nan)
    return xgb.QuantileDMatrix(features, ref=train, feature_names=feature_names, missing=np.nan,
                               max_bin=params["max_bin"], nthread=params.get("nthread"))


CALIBRATOR_FOLDS = 5  # folds of a validation channel for the calibrator's cross-validated choice


def held_out(settings, rows: FitRows, boosting: Boosting, cluster: Cluster = SOLO) -> HeldOut:
    """The held-out rows and how to get their margins (out of fold, or the validation channel's)."""
    fit, classes = rows.fit, rows.kind.classes
    if rows.cross_fit:
        has_validation = "validation" in rows.channels
        from_validation = np.arange(fit.data.rows) >= rows.channels["train"].data.rows
        return HeldOut(
            fit, lambda boosting, rounds, take=None: out_of_fold(
                boosting, fit.data, rows.folds, rounds, classes, rows.first_fold, take),
            from_validation if has_validation else np.ones(fit.data.rows, dtype=bool),
            "validation" if has_validation else "train",
            f"out-of-fold margins of {rows.n_folds} fold models over "
            + ("train and validation" if has_validation else "train"),
            rows.folds, rows.n_folds)
    val = rows.channels["validation"]
    # (at the last round, the margins the rounds kept are the model's: no prediction, and no
    # pass over a validation channel left in its files)
    return HeldOut(
        val, lambda boosting, rounds, take=None: (
            boosting.watch_margins()[slice(None) if take is None else take].astype(np.float64)
            if rounds in (None, boosting.rounds)
            else margin(boosting.booster(0, rounds), val.data, take, classes)),
        np.ones(val.data.rows, dtype=bool), "validation", "the validation channel's margins",
        folds_of(rows.kind.label(val.data), CALIBRATOR_FOLDS, settings.seed, cluster,
                 classes), CALIBRATOR_FOLDS)


def job_fingerprint(settings, rows: FitRows, held: HeldOut, weight: np.ndarray) -> dict:
    """What a checkpoint must have been written with: the settings, and digests of the fit rows
    (features, labels, loss weights, facet, costs) and of a validation channel's rows."""
    fit = rows.fit
    return {"settings": settings_fingerprint(settings),
            "data": {"fit rows": digest(fit.data.features, rows.label, weight, fit.sensitive,
                                        *(getattr(fit.data.costs, c) for c in CELLS)),
                     **({"validation": digest(held.channel.data.features, held.channel.data.label)}
                        if not rows.cross_fit else {})}}


def grow(settings, rows: FitRows, held: HeldOut, boosting: Boosting, fingerprint: dict | None,
         checkpoints: CheckpointStore | None, stop: StopRequest | None, cluster: Cluster,
         log) -> Kept:
    """Step 3 and 4: the rounds (:func:`costaware.training.rounds.run_rounds`), early stopping on the
    held-out metrics, and the kept round's calibrator. ``fingerprint``: :func:`job_fingerprint`,
    with ``checkpoints``."""
    kind = rows.kind
    monitor, rows_read = round_monitor(settings, rows, held, boosting, cluster, log)
    rounds_trained = run_rounds(settings, boosting, monitor, checkpoints,
                                StopRequest() if stop is None else stop,
                                lambda: fingerprint, log, cluster)
    best = monitor.best_iteration if settings.early_stopping_rounds else rounds_trained - 1
    if best + 1 < rounds_trained:
        log(f"early stopping: keeping rounds 0..{best} of {rounds_trained} (the best held-out "
            f"{settings.early_stopping_metric}, over {rows_read})")
    if settings.early_stopping_rounds and best == 0:
        log(f"warning: early stopping kept round 0 only: the held-out {settings.early_stopping_metric} "
            "did not improve after the first tree; the model is one tree deep (raise eta or "
            "early_stopping_rounds, or check the data)")
    margins = held.margins(boosting, best + 1)
    label = kind.label(held.channel.data)
    held_rows = int(cluster.sum([len(label)])[0])
    choice = choose(kind.calibrator_candidates(held_rows), margins, label, held.folds,
                    held.n_folds, lambda p, rows: kind.bayes_cost(held.channel, p, rows),
                    kind.costliest_mistake(held.channel, cluster), cluster.sum,
                    *forced_calibrator(settings, kind))
    if cluster.is_first:
        log(f"calibrator: {choice.describe()}")
    if rows.refit:
        # (a copy: the model without its prediction caches, so that the matrices and XGBoost's
        # per-row state go with the boosting, before the channels are evaluated)
        booster = boosting.booster(0, best + 1).copy()
    else:
        booster = averaged([boosting.booster(member, best + 1)
                            for member in range(len(boosting.members))], kind.classes)
        if cluster.is_first:
            log(f"served model: the average of the {len(boosting.members)} fold models' margins "
                f"({len(boosting.members)} x {best + 1} rounds of trees)")
    return Kept(booster, best, rounds_trained, choice, choice.calibrator.probability(margins),
                fit_margins(rows, boosting, best, margins))


def fit_margins(rows: FitRows, boosting: Boosting, best: int, out_of_fold: np.ndarray
                ) -> np.ndarray | None:
    """The saved model's margins on the fit rows without predicting them: the members' margins
    on the rows each trained on, which XGBoost's caches hold after the last round (None when
    early stopping kept an earlier one). The refit model's are its own; the fold average's on a
    row of fold j are ``(sum over k != j of m_k + m_j) / n_folds``, ``m_j`` being the row's
    out-of-fold margin (``out_of_fold``, every fit row's at the kept round; float64 sums, the
    refit model's float32 margins as they are): what the averaged
    trees compute (float32 sums there, so the two agree to about 1e-6). On 1M rows this saves
    predicting 200 trees (1.1 s, ``benchmarks/bench_training.py``)."""
    if best + 1 != boosting.rounds:
        return None
    if rows.refit:
        return boosting.margins(0)  # (float32, as XGBoost keeps them: 4 bytes a row)
    total = np.array(out_of_fold, dtype=np.float64)
    for k in range(rows.n_folds):
        total[rows.folds != k] += boosting.margins(rows.first_fold + k)
    return total / rows.n_folds


def forced_calibrator(settings, kind) -> tuple[str | None, str, str]:
    """``(forced, incumbent, why)`` for :func:`choose`: the calibrator hyperparameter when set; with
    a fairness penalty the incumbent (Platt or temperature scaling), because the choice weighs
    cost alone, and a calibrator chosen for cost can undo what the penalty bought (a 3-class job
    of tests/test_multiclass.py: |DPPL| 0.354 -> 0.201 with the penalty at temperature scaling,
    0.347 -> 0.235 at softmax(z))."""
    if settings.calibrator != "auto":
        return settings.calibrator, kind.scaling, "the hyperparameter calibrator"
    if settings.fairness_penalty > 0:
        return kind.scaling, kind.scaling, "fairness_penalty > 0 (the choice weighs cost, not parity)"
    return None, kind.scaling, ""


def round_monitor(settings, rows: FitRows, held: HeldOut, boosting: Boosting, cluster: Cluster,
                  log) -> tuple[RoundMonitor, str]:
    """Early stopping on each round's held-out metrics; the round's calibrator (which starts the
    next round's fit) travels in checkpoints. Also which held-out rows the rounds read, in words."""
    kind = rows.kind
    calibrators = [None]
    sample = rows.sample
    take = None if sample is None else np.flatnonzero(sample)
    read = held.channel if sample is None else subset(held.channel, sample)
    watch = held.watch if sample is None else held.watch[sample]
    watched = subset(read, watch)
    held_label = kind.label(read.data)
    rows_read = "every held-out row"
    if sample is not None:
        sampled, total = (int(v) for v in cluster.sum([len(take), len(sample)]))  # (every host)
        rows_read = f"a random sample of {sampled} of the {total} held-out rows"
        if cluster.is_first:
            log(f"every round's held-out metrics (and early stopping) read a random sample of "
                f"{sampled} of the held-out rows (at most about {ROUND_ROWS:,}); the final "
                "metrics read every row")

    def observe(iteration: int) -> dict:
        """The round's held-out metrics (early stopping watches them, over every held-out row
        or a sample of :data:`ROUND_ROWS`); the metric line shows the watched rows' (validation,
        or train without it)."""
        margins = held.margins(boosting, None, take)
        calibrator = kind.fit_calibrator(margins, held_label, cluster, calibrators[0])
        calibrators[0] = calibrator
        p = calibrator.probability(margins)
        every = kind.bayes_metrics(read, p, rows.n_groups, cluster)
        # (by held.watch, the same on every host, not by this host's sample of it, which can
        # hold no train row: every host must make the same collective calls)
        shown = (every if held.watch.all() else
                 kind.bayes_metrics(watched, p[watch], rows.n_groups, cluster))
        if cluster.is_first:
            line = kind.line(f"[{iteration}]", held.watch_name, shown)
            if not held.watch.all():
                metric = settings.early_stopping_metric
                line += f"\theld_out:{metric}={metric_log.format_value(every[metric])}"
            log(line)
        return every

    def observer_state() -> dict:
        return {"calibrator": None if calibrators[0] is None else calibrators[0].to_dict()}

    def observer_restore(state: dict) -> None:
        saved = state["calibrator"]
        calibrators[0] = None if saved is None else kind.calibrator_from_dict(saved)

    return (RoundMonitor(observe, settings.early_stopping_metric, settings.early_stopping_rounds,
                         observer_state, observer_restore), rows_read)


def scoring_plan(rows: FitRows, name: str, kept: Kept, channel: Channel, held_fits: list[str]
                 ) -> tuple[np.ndarray, str, list[str]]:
    """A channel's probabilities, what scored them (the model, or the fold models out of fold)
    and what was fitted on its rows."""
    def by_model():
        if name == "train" and kept.fit_margins is not None:  # (train: the first fit rows)
            return kept.calibrator.probability(kept.fit_margins[:channel.data.rows])
        return kept.calibrator.probability(margin(kept.booster, channel.data, None,
                                                  rows.kind.classes))

    if rows.cross_fit and name == "validation":
        return kept.held_p[rows.channels["train"].data.rows:], "out-of-fold", held_fits
    if rows.cross_fit and name == "train":
        return by_model(), "model", ["trees"] + held_fits
    if name == "validation":
        return kept.held_p, "model", held_fits
    return by_model(), "model", (["trees"] if name == "train" else [])


def evaluate_channels(rows: FitRows, kept: Kept, policy, cluster: Cluster, log
                      ) -> dict[str, ChannelResult]:
    """Step 5: every channel at the served rule."""
    kind = rows.kind
    held_fits = kind.held_out_fits(policy)
    if kind.settings.early_stopping_rounds:  # the held-out rows chose the round too
        held_fits = held_fits + ["round"]
    results = {}
    for name, ch in rows.channels.items():
        p, scored_by, fitted = scoring_plan(rows, name, kept, ch, held_fits)
        results[name] = kind.evaluate(ch, p, policy, rows.n_groups, cluster, scored_by, fitted)
        results[name].contributions = kind.contributions(kept.booster, ch,
                                                         rows.fit.data.feature_names, cluster)
        if cluster.is_first:
            log(kind.line("[final]", name, results[name].metrics))
            log(f"[final] {name}: scored by the {'fold models (out of fold)' if scored_by == 'out-of-fold' else 'model'}"
                + (f"; fitted on these rows: {', '.join(fitted)}" if fitted else
                   "; nothing was fitted on these rows"))
    return results


def out_of_fold(boosting: Boosting, data: Dataset, folds: np.ndarray, rounds: int | None,
                classes: int = 2, first: int = 1, take: np.ndarray | None = None) -> np.ndarray:
    """Each fit row's margin (only the rows ``take``, an index array, when given) from the fold
    model that did not train on it (at ``rounds``); fold k's model is member ``first + k``."""
    at = np.arange(data.rows) if take is None else take
    fold = folds[at]
    out = np.empty((len(at),) if classes == 2 else (len(at), classes), dtype=np.float64)
    for k in range(len(boosting.members) - first):
        rows = fold == k
        if rounds is None:  # (the fold model's cached margins on the fold's rows it keeps: all,
            # or those in the rounds' sample, which ``take`` then is; in row order)
            out[rows] = boosting.held_margins(first + k)
        else:
            out[rows] = margin(boosting.booster(first + k, rounds), data, at[rows], classes)
    return out


ROUND_ROWS = 50_000  # held-out rows (over every host) that each round's metrics read at most


def round_sample(rows: int, seed: int, cluster: Cluster) -> np.ndarray | None:
    """Which of this host's held-out rows each round's metrics read: all of them (``None``) up
    to :data:`ROUND_ROWS` over every host, else each row with probability ``ROUND_ROWS / total``
    (seeded by ``seed`` and the host's rank): every round's calibrator fit and metrics cost
    O(rows), and beyond a few hundred thousand rows they would cost more than the trees."""
    total = int(cluster.sum([rows])[0])
    if total <= ROUND_ROWS:
        return None
    return np.random.default_rng([seed, cluster.rank]).random(rows) < ROUND_ROWS / total


def margin(booster: xgb.Booster, data: Dataset, rows=None, classes: int = 2) -> np.ndarray:
    """The booster's margins on the rows (``(rows, K)`` with K >= 3 classes)."""
    features = data.features if rows is None else data.features[rows]
    if external_memory.is_external(features):
        return external_memory.margins(booster, features, classes)
    shape = (-1,) if classes == 2 else (-1, classes)
    if len(features) == 0:
        return np.empty((0,) + shape[1:], dtype=np.float64)
    return np.asarray(dense_margins.margins(booster, features), dtype=np.float64).reshape(shape)


def print_line(line: str) -> None:
    print(line, flush=True)  # flushed: the log is read while training runs
