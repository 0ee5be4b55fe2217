"""The tree engine: boosting rounds for the model and its cross-fitting folds, resumable bit for bit.

A job grows its **members** in lockstep, one tree each per round (one per class with ``K >= 3``
classes: ``multi:softprob``, margins ``(rows, K)``; two classes: ``binary:logistic``, one
margin). Member 0 is the model refit on every row (unless the fold models' average is served);
with cross-fitting, the next members are the fold models. A fold model trains on its own rows
(``Member.rows``: every fit row outside fold k), in its own ``QuantileDMatrix`` of these rows
(:func:`quantised`), and keeps fold k's rows in its prediction cache, whose margins are out of fold:
its trees cost what its rows cost (four fifths of the model's with 5 folds, half with 2; a matrix
of every row with fold k at weight 0 cost a whole model each). The matrices hold no weights
(histogram cuts from the rows' features alone: a fold model's from its own rows) and no labels
(4 bytes a row that only a built-in objective would read); every member takes its gradients from
costaware's objective (:mod:`costaware.training.objective`), so no label of its held-out rows
reaches a fold model, except through three scalars computed once over all
rows: the scale of the cost weights, their mean-1 normalisation and ``min_child_weight``'s scale.

Two ways to grow, chosen by :meth:`Boosting.create`:

* :class:`SharedBoosters` (no row or column sampling, the default): one booster per member, as in
  ``xgb.train``; XGBoost's prediction caches keep the margins. A booster reloaded from a checkpoint
  rebuilds its cache with one prediction, bit for bit, and grows the same trees.
* :class:`RoundBoosters` (``subsample`` or a ``colsample_*`` below 1): a fresh booster per member
  and round, seeded by (seed, round, member). XGBoost 3.2 keeps its sampling's random state inside
  the booster and does not save it with the model, so a reloaded booster would draw other rows and
  columns than an uninterrupted run (neither ``seed_per_iteration`` nor re-setting ``seed`` helps).
  A booster per round makes each round's sample depend on (seed, round, member) alone: resumed runs
  are exact too. Each round costs a few ms more per member (configuring a booster, serialising its
  tree).
"""

from __future__ import annotations

import ctypes
import json
import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np
import xgboost as xgb
from xgboost.core import _LIB, _check_call, c_bst_ulong

SAMPLING = ("subsample", "colsample_bytree", "colsample_bylevel", "colsample_bynode")
# base margin 0 (binary:logistic's 0.5, multi:softprob's 0): a round booster's margins are its
# trees' leaf values
ROUND_BASE_SCORE = {2: 0.5}


@dataclass(frozen=True)
class Member:
    """One model grown in the loop: its objective (weights bound) and starting probability."""

    objective: Callable[[np.ndarray, xgb.DMatrix], tuple[np.ndarray, np.ndarray]]
    base_score: float  # binary: P(y = 1) the margins start from; K >= 3: 0 (every margin 0)
    rows: np.ndarray | None = None  # the job's rows it trains on (indices; None: every row)
    # the rows it holds out whose margins it keeps every round (indices; None: every row outside
    # ``rows``): a sample of them when the rounds read a sample
    held: np.ndarray | None = None


# each member's matrix of the rows it trains on, and of the rows it holds out (None: none)
MemberMatrices = list[tuple[xgb.DMatrix, xgb.DMatrix | None]]


def held_rows(member: Member, rows: int) -> np.ndarray | None:
    """The job's rows whose margins ``member`` keeps (indices; None: it trains on every row)."""
    if member.rows is None:
        return None
    if member.held is not None:
        return member.held
    outside = np.ones(rows, dtype=bool)
    outside[member.rows] = False
    return np.flatnonzero(outside)


def sliced(dtrain: xgb.DMatrix, members: list[Member]) -> MemberMatrices:
    """Each member's matrices sliced from ``dtrain``, a matrix of every row (an external-memory
    matrix, which cannot be sliced, serves only members that train on every row)."""
    out = []
    for member in members:
        held = held_rows(member, dtrain.num_row())
        out.append((dtrain, None) if held is None
                   else (dtrain.slice(member.rows), dtrain.slice(held)))
    return out


def quantised(features: np.ndarray, feature_names: list[str], members: list[Member],
              max_bin: int, nthread: int | None = None) -> MemberMatrices:
    """Each member's training rows as a ``QuantileDMatrix`` of their own (histogram cuts from
    these rows alone, as a slice of one ``DMatrix`` gets at its first round: the same cuts, so the
    same trees), and its held-out rows as a ``DMatrix`` (its prediction cache). A ``DMatrix`` keeps
    every value with its column index, 8 bytes, beside the 1-byte bin indexes the trees read; a
    ``QuantileDMatrix`` keeps the bin indexes only (2.2M rows x 20 features, two fold models: the
    slices held 336 MiB for the whole of training, ``benchmarks/bench_training.py --memory``). Its
    margins, predicted from the bins, are the raw values' (a bin's lower edge falls on the same
    side of every split as each value in the bin). Building it costs more than a slice and its
    first round's sketch: 4.6 s against 3.1 s for 1.1M rows x 20 here."""
    out = []
    for member in members:
        at = slice(None) if member.rows is None else member.rows
        train = xgb.QuantileDMatrix(features[at], feature_names=feature_names, missing=np.nan,
                                    max_bin=max_bin, nthread=nthread)
        held = held_rows(member, len(features))
        out.append((train, None if held is None else
                    xgb.DMatrix(features[held], feature_names=feature_names, missing=np.nan,
                                nthread=nthread)))
    return out


_TRAINING_MARGINS = json.dumps({"type": 1, "training": True, "iteration_begin": 0,
                                "iteration_end": 0, "strict_shape": False}).encode()


def cached_margins(booster: xgb.Booster, matrix: xgb.DMatrix) -> np.ndarray:
    """``booster.predict(matrix, output_margin=True, training=True)`` (the margins a round's
    gradients are taken at, from the matrix's prediction cache: the same C call and arguments),
    as a read-only view of XGBoost's own buffer rather than a copy (4 bytes a row less at every
    round's peak). The buffer is the booster's for this thread until its next prediction or
    boost: a round's objective reads it, and only then is the booster boosted."""
    shape, dims = ctypes.POINTER(c_bst_ulong)(), c_bst_ulong()
    values = ctypes.POINTER(ctypes.c_float)()
    _check_call(_LIB.XGBoosterPredictFromDMatrix(booster.handle, matrix.handle, _TRAINING_MARGINS,
                                                 ctypes.byref(shape), ctypes.byref(dims),
                                                 ctypes.byref(values)))
    size = tuple(int(shape[i]) for i in range(dims.value))
    if not all(size):
        return np.empty(size, dtype=np.float32)
    view = np.ctypeslib.as_array(values, shape=size)
    view.flags.writeable = False
    return view


def link_params(classes: int) -> dict:
    """The saved model's objective: what XGBoost's ``predict`` applies to the margins."""
    if classes == 2:
        return {"objective": "binary:logistic"}
    return {"objective": "multi:softprob", "num_class": classes}


def round_seed(seed: int, iteration: int, member: int = 0) -> int:
    """XGBoost's seed for a member's round: a function of (seed, round, member) alone."""
    key = [seed, iteration] if member == 0 else [seed, iteration, member]
    return int(np.random.SeedSequence(key).generate_state(1)[0] >> 1)


def _json_trees(booster: xgb.Booster) -> list[dict]:
    return _json_trees_of(json.loads(booster.save_raw("json")))


def _json_trees_of(document: dict) -> list[dict]:
    return document["learner"]["gradient_booster"]["model"]["trees"]


class Forest:
    """The trees grown so far, in XGBoost's JSON model format, and boosters made of them.

    ``template`` is the JSON of an untrained booster with the final parameters (base score, feature
    names, objective); a model is the template with its tree list filled in, which is what XGBoost
    itself writes for a booster with those trees. Each tree is kept as JSON text, so a model
    document (a checkpoint) costs a string join, not a round trip through XGBoost.
    """

    _TREES = f"trees-{uuid.uuid4().hex}"  # placeholder for the tree list in the template's JSON

    def __init__(self, template: dict, per_round: int = 1):
        self.template = template
        self.per_round = per_round  # trees per round: 1, or K (one per class)
        self.trees: list[str] = []

    @property
    def rounds(self) -> int:
        return len(self.trees) // self.per_round

    def append(self, tree: dict) -> None:
        tree["id"] = len(self.trees)
        self.trees.append(json.dumps(tree, separators=(",", ":")))

    def document(self, rounds: int | None = None) -> bytes:
        """The model with the first ``rounds`` trees as XGBoost's JSON (what ``load`` takes)."""
        trees = self.trees if rounds is None else self.trees[:rounds * self.per_round]
        per_round = self.per_round
        learner = self.template["learner"]
        gbtree = learner["gradient_booster"]
        model = gbtree["model"]
        model = {**model, "trees": self._TREES,
                 "tree_info": [i % per_round for i in range(len(trees))],  # each tree's class
                 "iteration_indptr": list(range(0, len(trees) + 1, per_round)),
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


class Boosting:
    """The members' boosting rounds (see the module docstring)."""

    model_format = "ubj"  # checkpoint model files

    def __init__(self, params: dict, seed: int, matrices: "MemberMatrices", members: list[Member],
                 dwatch: xgb.DMatrix | None = None, classes: int = 2):
        self.seed = seed
        self.classes = classes
        self.params = {**params, **link_params(classes),  # the saved model's link
                       "disable_default_eval_metric": 1, "verbosity": 1}
        self.members = members
        self.dwatch = dwatch  # member 0's margins on it every round (a validation channel)
        # each member's training rows, and the rows it holds out (None: it holds none out)
        self.train_of = [train for train, _ in matrices]
        self.held_of = [held for _, held in matrices]

    @staticmethod
    def create(params: dict, seed: int, matrices: "MemberMatrices", members: list[Member],
               dwatch: xgb.DMatrix | None = None, classes: int = 2) -> "Boosting":
        sampling = any(params.get(name, 1.0) < 1 for name in SAMPLING)
        kind = RoundBoosters if sampling else SharedBoosters
        return kind(params, seed, matrices, members, dwatch, classes)

    @property
    def rounds(self) -> int:
        raise NotImplementedError

    def round(self) -> None:
        """Grow every member's next tree."""
        raise NotImplementedError

    def margins(self, member: int) -> np.ndarray:
        """A member's margins on its training rows (float32; ``(rows, K)`` with K >= 3)."""
        raise NotImplementedError

    def held_margins(self, member: int) -> np.ndarray:
        """A member's margins on the held-out rows it keeps (``Member.held``), in the job's row
        order (float32)."""
        raise NotImplementedError

    def watch_margins(self) -> np.ndarray:
        """Member 0's margins on ``dwatch`` (float32)."""
        raise NotImplementedError

    def booster(self, member: int = 0, rounds: int | None = None) -> xgb.Booster:
        """A member's model of its first ``rounds`` trees (all by default)."""
        raise NotImplementedError

    def checkpoint(self) -> list[bytes]:
        """Every member's model, in member order."""
        raise NotImplementedError

    def resume(self, models: list[bytes]) -> None:
        raise NotImplementedError


class SharedBoosters(Boosting):
    """A booster per member for every round (no sampling): margins in XGBoost's caches."""

    def __init__(self, *args):
        super().__init__(*args)
        self._start([None] * len(self.members))

    def _start(self, models: list[bytes | None]) -> None:
        self.models = []
        for index, (member, model) in enumerate(zip(self.members, models)):
            cache = ([self.train_of[index]]
                     + ([self.held_of[index]] if self.held_of[index] is not None else [])
                     + ([self.dwatch] if index == 0 and self.dwatch is not None else []))
            # (a reloaded K-class model keeps its own base score: one per class, which setting
            # the scalar again would turn into one, in the saved bytes)
            start = ({} if model is not None and self.classes > 2
                     else {"base_score": member.base_score})
            self.models.append(xgb.Booster({**self.params, **start}, cache,
                                           model_file=None if model is None else bytearray(model)))

    @property
    def rounds(self) -> int:
        return self.models[0].num_boosted_rounds()

    def round(self) -> None:
        iteration = self.rounds
        for index, (member, model) in enumerate(zip(self.members, self.models)):
            grad, hess = member.objective(cached_margins(model, self.train_of[index]),
                                          self.train_of[index])
            model.boost(self.train_of[index], iteration, grad=grad, hess=hess)

    def margins(self, member: int) -> np.ndarray:
        return self.models[member].predict(self.train_of[member], output_margin=True,
                                           training=True)

    def held_margins(self, member: int) -> np.ndarray:
        return self.models[member].predict(self.held_of[member], output_margin=True)  # cached

    def watch_margins(self) -> np.ndarray:
        return self.models[0].predict(self.dwatch, output_margin=True)  # cached: the new tree only

    def booster(self, member: int = 0, rounds: int | None = None) -> xgb.Booster:
        model = self.models[member]
        return model if rounds in (None, self.rounds) else model[:rounds]

    def checkpoint(self) -> list[bytes]:
        return [bytes(model.save_raw("ubj")) for model in self.models]

    def resume(self, models: list[bytes]) -> None:
        self._start(models)


class RoundBoosters(Boosting):
    """A booster per member and round, seeded by (seed, round, member), for exact resumes with
    sampling.

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
        self.forests, self.watch_margin = [], None
        self.margin, self.held_margin = [None] * len(self.members), [None] * len(self.members)
        for index, member in enumerate(self.members):
            template = xgb.Booster({**self.params, "base_score": member.base_score},
                                   [self.train_of[index]])
            self.forests.append(Forest(json.loads(template.save_raw("json")),
                                       1 if self.classes == 2 else self.classes))
            self._margins(index, template)

    def _margins(self, index: int, booster: xgb.Booster) -> None:
        # (an untrained booster's prediction: the base margin, as XGBoost has it)
        self.margin[index] = booster.predict(self.train_of[index], output_margin=True)
        if self.held_of[index] is not None:
            self.held_margin[index] = booster.predict(self.held_of[index], output_margin=True)
        if index == 0 and self.dwatch is not None:
            self.watch_margin = booster.predict(self.dwatch, output_margin=True)

    @property
    def rounds(self) -> int:
        return self.forests[0].rounds

    def round(self) -> None:
        iteration = self.rounds
        for index, member in enumerate(self.members):
            rows = self.train_of[index]
            booster = xgb.Booster({**self.params,
                                   "base_score": ROUND_BASE_SCORE.get(self.classes, 0.0),
                                   "seed": round_seed(self.seed, iteration, index)}, [rows])
            booster.predict(rows, output_margin=True, training=True)  # starts the cache at 0
            grad, hess = member.objective(self.margin[index], rows)
            booster.boost(rows, 0, grad=grad, hess=hess)
            self.margin[index] += booster.predict(rows, output_margin=True, training=True)
            if self.held_of[index] is not None:
                self.held_margin[index] += booster.predict(self.held_of[index], output_margin=True)
            if index == 0 and self.dwatch is not None:
                self.watch_margin += booster.predict(self.dwatch, output_margin=True)
            for tree in _json_trees(booster):  # one, or one per class
                self.forests[index].append(tree)

    def margins(self, member: int) -> np.ndarray:
        return self.margin[member]

    def held_margins(self, member: int) -> np.ndarray:
        return self.held_margin[member]

    def watch_margins(self) -> np.ndarray:
        return self.watch_margin

    def booster(self, member: int = 0, rounds: int | None = None) -> xgb.Booster:
        return self.forests[member].booster(rounds)

    def checkpoint(self) -> list[bytes]:
        return [forest.document() for forest in self.forests]

    def resume(self, models: list[bytes]) -> None:
        for index, model in enumerate(models):
            self._margins(index, self.forests[index].load(model))


def averaged(boosters: list[xgb.Booster], classes: int = 2) -> xgb.Booster:
    """One booster whose margin is the mean of ``boosters``' margins (the fold models averaged):

        m(x) = (1/k) sum_j m_j(x) = (1/k) sum_j b_j + sum_j sum_t f_jt(x) / k,

    i.e. every booster's trees with each leaf value divided by ``k``, from the mean base margin
    ``(1/k) sum_j b_j`` (binary: ``b_j = logit(base_score_j)``; K classes: the base scores are
    margins). An ordinary XGBoost model (JSON), so prediction, TreeSHAP reasons and the saved
    artifact need nothing new."""
    documents = [json.loads(booster.save_raw("json")) for booster in boosters]
    k = len(documents)

    def base_margins(document) -> np.ndarray:
        text = document["learner"]["learner_model_param"]["base_score"]
        values = np.array(json.loads(text) if text.startswith("[") else [float(text)], float)
        return np.log(values) - np.log1p(-values) if classes == 2 else values

    mean = np.mean([base_margins(document) for document in documents], axis=0)
    base = 1.0 / (1.0 + np.exp(-mean)) if classes == 2 else mean
    template = documents[0]
    template["learner"]["learner_model_param"]["base_score"] = (
        "[" + ",".join(repr(float(v)) for v in base) + "]")
    forest = Forest(template, 1 if classes == 2 else classes)
    for document in documents:
        for tree in _json_trees_of(document):
            leaf = [child == -1 for child in tree["left_children"]]
            tree["base_weights"] = [w / k for w in tree["base_weights"]]
            tree["split_conditions"] = [c / k if is_leaf else c
                                        for c, is_leaf in zip(tree["split_conditions"], leaf)]
            forest.append(tree)
    return forest.booster()
