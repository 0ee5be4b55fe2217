"""The one declarative hyperparameter schema.

Every hyperparameter is a :class:`Param` in :data:`SCHEMA`. The schema drives parsing (SageMaker passes
every value as a string, newer SDKs as a JSON-encoded string such as ``"\\"0.1\\""``), validation,
defaults, ``costaware hyperparameters`` (JSON), the table of docs/hyperparameters.md (Markdown) and
the tuner's ranges.
XGBoost parameters keep the names of SageMaker's built-in XGBoost algorithm so tuning configurations
carry over.
"""

from __future__ import annotations

import json
import keyword
import math
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable, Mapping

from ..metrics import bias
from ..metrics import registry as metric_registry
from ..decisions.costs import CELL_MEANING, CELLS, CostMatrix
from ..errors import HyperparameterError
from . import builtin_names
from .multiclass_settings import binary_matrix, check_multiclass, class_index, classes_and_matrix
from ..decisions.reasons import parse_reason_texts

# Keys SageMaker (or its SDK) adds on its own; accepted and ignored.
IGNORED_EXACT = {"_tuning_objective_metric"}
IGNORED_PREFIXES = ("sagemaker_",)

DEFAULT_EXPONENT = 0.0  # chosen on bench_decisions: docs/benchmarks.md, "How strongly costs weight ..."
# Names that once existed: a job that still sends one fails with what to do instead.
REMOVED = {
    "cost_column": "give each per-row cost its own column with cost_fp_column, cost_fn_column, "
                   "cost_tp_column or cost_tn_column (a multiplier m of cost_fn becomes a column "
                   "holding cost_fn * m)",
    "cost_column_scales": "name the column of each per-row cost with cost_fp_column, "
                          "cost_fn_column, cost_tp_column or cost_tn_column",
    "cost_column_is_feature": "cost columns are never features; to use a cost as a feature too, "
                              "give it a second column",
    "decision_threshold": "decisions are made by expected cost on calibrated probabilities: use "
                          "decision_rule 'bayes' (the default) or 'empirical'",
}


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "int" | "float" | "str" | "bool" | "choice"
    default: Any
    doc: str
    group: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()  # a callable: read when used
    aliases: tuple[str, ...] = ()
    xgboost_name: str | None = None  # passed to xgboost.train under this name
    tuning: tuple | None = None  # (min, max, scaling) for Automatic Model Tuning

    def parse(self, raw: Any) -> Any:
        value = _unwrap(raw)
        try:
            if self.type == "int":
                number = float(value)
                if not number.is_integer():
                    raise ValueError
                parsed: Any = int(number)
            elif self.type == "float":
                parsed = float(value)
                if not math.isfinite(parsed):
                    raise ValueError
            elif self.type == "bool":
                text = str(value).strip().lower()
                if text not in {"true", "false", "1", "0"}:
                    raise ValueError
                parsed = text in {"true", "1"}
            else:
                parsed = str(value).strip()
        except (TypeError, ValueError):
            raise HyperparameterError(
                f"hyperparameter '{self.name}': {raw!r} is not a valid {self.type}"
            ) from None
        if self.type == "choice" and parsed not in self.options():
            raise HyperparameterError(
                f"hyperparameter '{self.name}': {raw!r} is not one of {', '.join(self.options())}"
            )
        self._check_range(parsed, raw)
        return parsed

    def options(self) -> tuple[str, ...]:
        return self.choices() if callable(self.choices) else self.choices

    def _check_range(self, value: Any, raw: Any) -> None:
        if self.type not in ("int", "float"):
            return
        low_ok = (
            self.minimum is None
            or value > self.minimum
            or (value == self.minimum and not self.exclusive_minimum)
        )
        high_ok = self.maximum is None or value <= self.maximum
        if not (low_ok and high_ok):
            raise HyperparameterError(
                f"hyperparameter '{self.name}': {raw!r} is out of range {self.range_text()}"
            )

    def range_text(self) -> str:
        if self.type == "choice":
            return ", ".join(self.options())
        if self.minimum is None and self.maximum is None:
            return ""
        low = "(" if self.exclusive_minimum else "["
        low += "-inf" if self.minimum is None else _fmt(self.minimum)
        high = "inf)" if self.maximum is None else _fmt(self.maximum) + "]"
        return f"{low}, {high}"

    def describe(self) -> dict:
        out = {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "range": self.range_text(),
            "group": self.group,
            "doc": self.doc,
        }
        if self.aliases:
            out["aliases"] = list(self.aliases)
        if self.options():
            out["choices"] = list(self.options())
        if self.tuning:
            out["tuning_range"] = {
                "min": self.tuning[0],
                "max": self.tuning[1],
                "scaling": self.tuning[2],
            }
        return out


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _unwrap(raw: Any) -> Any:
    """Undo the SageMaker SDK's JSON encoding of string values (``'"0.1"'`` -> ``'0.1'``)."""
    value = raw
    for _ in range(2):  # at most double-encoded in practice
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                break
    return value


def _xgb(name, type_, default, doc, minimum=None, maximum=None, *, exclusive_minimum=False,
         aliases=(), tuning=None, choices=()):
    return Param(name, type_, default, doc, "xgboost", minimum, maximum, exclusive_minimum,
                 tuple(choices), tuple(aliases), xgboost_name=name, tuning=tuning)


SCHEMA: tuple[Param, ...] = (
    # --- learning (XGBoost, names of SageMaker's built-in algorithm) ---
    Param("objective", "choice", "cost_weighted",
          "Loss: 'cost_weighted' (logistic loss weighted by the cost of a mistake on each row, "
          "tempered by cost_weight_exponent) or 'binary:logistic' (the plain symmetric loss).",
          "learning", choices=("cost_weighted", "binary:logistic")),
    Param("cost_weight_exponent", "float", DEFAULT_EXPONENT,
          "How strongly costs weight the loss: a row's weight is clip(regret / mean regret, 0.1, "
          "10) ** this (0: symmetric, 1: fully cost-weighted; regret = C_FN - C_TP for a positive, "
          "C_FP - C_TN for a negative).", "learning", 0, 1),
    Param("num_round", "int", 100, "Number of boosting rounds.", "xgboost", 1, 100000,
          tuning=(10, 1000, "Logarithmic")),
    _xgb("eta", "float", 0.3, "Learning rate (shrinkage of each tree).", 0, 1,
         aliases=("learning_rate",), tuning=(0.01, 0.5, "Logarithmic")),
    _xgb("max_depth", "int", 6, "Maximum tree depth (0: no limit, lossguide only).", 0, 64,
         tuning=(2, 10, "Linear")),
    _xgb("min_child_weight", "float", 1.0,
         "Minimum sum of Hessian in a child, counted in rows of the lighter-weighted class (the "
         "value passed to XGBoost is this times that class's mean loss weight), so that it means "
         "the same at any cost ratio.", 0, tuning=(0.1, 20, "Logarithmic")),
    _xgb("gamma", "float", 0.0, "Minimum loss reduction to split.", 0, aliases=("min_split_loss",),
         tuning=(0, 5, "Linear")),
    _xgb("subsample", "float", 1.0, "Row subsampling ratio per tree.", 0, 1, exclusive_minimum=True,
         tuning=(0.5, 1, "Linear")),
    _xgb("colsample_bytree", "float", 1.0, "Column subsampling ratio per tree.", 0, 1,
         exclusive_minimum=True, tuning=(0.5, 1, "Linear")),
    _xgb("colsample_bylevel", "float", 1.0, "Column subsampling ratio per level.", 0, 1,
         exclusive_minimum=True),
    _xgb("colsample_bynode", "float", 1.0, "Column subsampling ratio per split.", 0, 1,
         exclusive_minimum=True),
    _xgb("lambda", "float", 1.0, "L2 regularisation on leaf weights.", 0, aliases=("reg_lambda",),
         tuning=(0.001, 100, "Logarithmic")),
    _xgb("alpha", "float", 0.0, "L1 regularisation on leaf weights.", 0, aliases=("reg_alpha",),
         tuning=(0.001, 100, "Logarithmic")),
    _xgb("max_delta_step", "float", 0.0, "Maximum delta step of a leaf (0: no limit).", 0),
    _xgb("max_bin", "int", 256, "Maximum number of histogram bins per feature.", 2, 65536),
    _xgb("max_leaves", "int", 0, "Maximum number of leaves (0: no limit).", 0),
    _xgb("tree_method", "choice", "hist", "Tree construction algorithm.",
         choices=("hist", "approx", "exact")),
    _xgb("grow_policy", "choice", "depthwise", "How new nodes are added.",
         choices=("depthwise", "lossguide")),
    Param("early_stopping_rounds", "int", 0,
          "Stop when early_stopping_metric on the held-out rows (out-of-fold or validation) has "
          "not improved for this many rounds (0: off). The model keeps the best round.",
          "learning", 0),
    Param("early_stopping_metric", "choice", "logloss",
          "Held-out metric that early stopping watches, on the probabilities calibrated every "
          "round; expected_cost and savings at the Bayes rule.", "learning",
          choices=metric_registry.early_stopping_names),
    Param("calibration_data", "choice", "cross_fit",
          "Held-out rows that calibrate the probabilities, fit a non-Bayes decision rule and "
          "choose the round: 'cross_fit' (out-of-fold margins of cross_fit_folds fold models over "
          "train and validation; the model is trained on both) or 'validation' (the validation "
          "channel; the model is trained on train).", "learning", choices=("cross_fit", "validation")),
    Param("cross_fit_folds", "int", 0,
          "Folds for calibration_data 'cross_fit' (each fold model is trained on the others); 0: "
          "5, or 2 from 500,000 fit rows on (where half the rows still train a good model and "
          "every fold model costs as much as the model).", "learning", 0, 20),
    Param("served_model", "choice", "fold_average",
          "With calibration_data 'cross_fit', the model served: 'fold_average' (the mean of the "
          "fold models' margins, whose out-of-fold margins the calibrator was fitted on: k times "
          "the trees to serve, no refit to train) or 'refit' (a model trained on every fit row "
          "beside the fold models).", "learning", choices=("fold_average", "refit")),
    Param("calibrator", "choice", "auto",
          "What turns the margin into probabilities: 'auto' (Platt scaling, or K >= 3 classes "
          "temperature scaling, unless 'identity' or, with 1,000 held-out rows or more, "
          "'isotonic' (two classes) decides the held-out rows more cheaply in cross-validation "
          "by more than one paired standard error plus one costliest mistake spread over the "
          "held-out rows), or one of them.", "learning",
          choices=("auto", "identity", "platt", "temperature", "isotonic")),
    Param("external_memory", "choice", "auto",
          "Train from external memory: every channel's features stay in their files "
          "and reach XGBoost in batches, quantised into pages cached on disk "
          "(ExtMemQuantileDMatrix); the held-out rows are the validation channel, or without one "
          "a seeded 10% of train (at most 200,000 rows), not cross-fitting. 'auto': when the "
          "channels would not fit in the memory available (docs/training.md 'External memory'); "
          "'true' or 'false' to force.", "learning", choices=("auto", "true", "false")),
    Param("seed", "int", 0, "Random seed.", "xgboost", 0, 2**31 - 1),
    Param("nthread", "int", 0, "Threads for XGBoost (0: all cores).", "xgboost", 0),
    Param("checkpoint_frequency", "int", 10,
          "When /opt/ml/checkpoints exists (SageMaker checkpointing on), save a checkpoint every "
          "this many rounds (0: only on SIGTERM); a rerun resumes from the newest one.",
          "learning", 0, 100000),
    Param("report", "bool", True,
          "Write output/data/report.html and its charts. false: the model, evaluation.json and the "
          "log only, for jobs nobody reads a report of (the local tuner's and sweep's trials "
          "default to false): on South German Credit the charts are 6.5 s of a 7.2 s job.",
          "learning"),
    # --- costs ---
    Param("cost_fp", "float", 1.0, "Cost of a false positive (predict 1, truth 0).", "costs", 0,
          aliases=("fp_cost",)),
    Param("cost_fn", "float", 1.0, "Cost of a false negative (predict 0, truth 1).", "costs", 0,
          aliases=("fn_cost",)),
    Param("cost_tp", "float", 0.0, "Cost of a true positive.", "costs", 0, aliases=("tp_cost",)),
    Param("cost_tn", "float", 0.0, "Cost of a true negative.", "costs", 0, aliases=("tn_cost",)),
    *(Param(f"cost_{cell}_column", "str", "",
            f"Column holding each row's cost of a {name} ({CELL_MEANING[cell]}): a name (files "
            "with a header, Parquet) or a 0-based position in the file (libsvm: its index); not a "
            f"feature. Empty: cost_{cell} for every row.", "costs")
      for cell, name in (("fp", "false positive"), ("fn", "false negative"),
                         ("tp", "true positive"), ("tn", "true negative"))),
    Param("cost_matrix", "str", "",
          "The cost matrix C[true][decided] as a JSON list of rows ('[[0,1,4],[2,0,1],[9,3,0]]'): "
          "K >= 3 rows train a multi-class model that decides argmin_j sum_k p_k C[k][j]; 2 rows "
          "are the binary costs [[cost_tn, cost_fp], [cost_fn, cost_tp]]. A cell may instead "
          "name the column holding each row's cost of that cell ('[[0,\"refuse_cost\"],"
          "[\"loss_given_default\",0]]'; for two classes the same as cost_fp_column ...; such a "
          "cell's class cost, for rows without it, is 1 off the diagonal, 0 on it). Empty with "
          "classes: 1 for each wrong decision, 0 for a right one.", "costs"),
    Param("classes", "str", "",
          "More than two classes: their labels in order, a JSON list ('[\"low\",\"medium\","
          "\"high\"]' or '[3,5,7]'); responses name classes by them. Empty: the labels are the "
          "integers 0..K-1, K the rows of cost_matrix.", "costs"),
    # --- data ---
    Param("label_column", "str", "",
          "Label column name (implies a header for CSV). Empty: the first column, SageMaker's "
          "convention.", "data"),
    Param("csv_header", "choice", "auto",
          "Whether CSV files start with a header line. auto: present if label_column is set.", "data",
          choices=("auto", "present", "absent")),
    # --- fairness (Clarify's terms: facet d is the sensitive group, facet a everyone else) ---
    Param("facet_column", "str", "",
          "Column holding the facet (a name, or a 0-based column position in the file). Empty: "
          "no bias metrics. Measured only, not a feature, unless facet_is_feature.", "fairness"),
    Param("facet_values_or_threshold", "str", "",
          "Which facet values are the sensitive group d, as Clarify reads it: a JSON list of "
          "values ('[2]', '[\"F\"]') or a number t for 'facet > t' ('40').", "fairness"),
    Param("facet_is_feature", "bool", False, "Also use the facet column as a model feature.",
          "fairness"),
    Param("group_column", "str", "",
          "Optional group variable (name or position) for the conditional metric CDDPL.",
          "fairness"),
    Param("label_values_or_threshold", "str", "",
          "The positive outcome (class 1) as Clarify defines it: a JSON list of label values "
          "('[1]', '[3, 4]': multi-class labels collapsed) or a number t for 'label > t'. "
          "Empty: labels must be 0/1 and 1 is positive. With more than two classes (classes, "
          "cost_matrix) the model keeps every class and this names the favourable ones, whose "
          "decisions the bias metrics and max_abs_dppl compare.", "fairness"),
    Param("fairness_metrics", "str", "DPPL",
          "Comma-separated Clarify post-training metrics logged every round on validation as "
          "their distance from parity: |value| (|1 - DI| for DI).", "fairness"),
    Param("objective_auc_weight", "float", 3.0,
          "Weight of AUC in validation:combined_objective = (w_auc AUC + w_fair (1 - d)) / "
          "(w_auc + w_fair), d = |DPPL| of the served decisions (whatever fairness_metrics lists).",
          "fairness", 0),
    Param("objective_fairness_weight", "float", 1.0,
          "Weight of fairness (1 - d) in validation:combined_objective.", "fairness", 0),
    Param("fairness_penalty", "float", 0.0,
          "Weight of the in-training demographic-parity penalty n (mean_a p - mean_d p)^2 added "
          "to the loss (0: off); p is P(class 1), with more than two classes the favourable "
          "classes' probability.", "fairness", 0, tuning=(0.01, 100, "Logarithmic")),
    Param("max_abs_dppl", "float", 1.0,
          "Decide by the constrained rule: the shift of the Bayes boundary (one, or one per facet) "
          "that minimises held-out cost subject to |DPPL| <= this bound (1: no constraint).",
          "fairness", 0, 1),
    Param("group_thresholds", "bool", False,
          "With max_abs_dppl < 1, allow separate shifts for facets a and d (requests must then "
          "carry the facet at inference).", "fairness"),
    # --- decision ---
    Param("decision_rule", "choice", "bayes",
          "How each row is decided: 'bayes' (the decision with the lower expected cost at the "
          "row's costs, on the calibrated probability) or 'empirical' (the Bayes boundary shifted "
          "in log-odds by the amount that minimises the held-out rows' cost).", "decision",
          choices=("bayes", "empirical")),
    Param("reasons_for", "choice", "1",
          "Which decisions get their reasons when a request asks (custom attribute reasons=K): "
          "'1' (the adverse decision where 1 means refuse, flag or treat), '0', or 'all'. Saved "
          "with the model; a request may say reasons_for=all.", "decision",
          choices=("1", "0", "all")),
    Param("reason_texts", "str", "",
          "Texts served with each reason: a JSON object from feature name to a text, or to "
          "{\"text\": ..., \"code\": ...} ('{\"duration\": {\"text\": \"Term of the loan\", "
          "\"code\": \"R07\"}}'); saved with the model. Every name must be a feature.",
          "decision"),
)

BY_NAME: dict[str, Param] = {}
for _param in SCHEMA:
    for _key in (_param.name, *_param.aliases):
        BY_NAME[_key] = _param


_PYTHON_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "choice": str}
NAMES = tuple(p.name for p in SCHEMA)


def _attribute(name: str) -> str:
    """The attribute a schema name is read as: ``lambda`` (XGBoost's name) is ``lambda_``."""
    return name + "_" if keyword.iskeyword(name) else name


class _SettingsView(Mapping):
    """The behaviour of :class:`Settings`: a read-only mapping of the schema's names (the
    checkpoint fingerprint and the saved hyperparameters iterate it) and the values derived from
    them."""

    __slots__ = ()

    def __getitem__(self, name: str) -> Any:
        if name not in BY_NAME or BY_NAME[name].name != name:
            raise KeyError(name)
        return getattr(self, _attribute(name))

    def __iter__(self):
        return iter(NAMES)

    def __len__(self) -> int:
        return len(NAMES)

    def __post_init__(self) -> None:
        # Clarify's JSON specs and the metric list, parsed once: the only reading of their text
        derived = {
            "label_values": (parse_values_or_threshold(self.label_values_or_threshold,
                                                       "label_values_or_threshold")
                             if self.label_values_or_threshold else None),
            "facet_values": (parse_values_or_threshold(self.facet_values_or_threshold,
                                                       "facet_values_or_threshold")
                             if self.facet_column and self.facet_values_or_threshold else None),
            "fairness_names": (tuple(m for m in self.fairness_metrics.split(",") if m)
                               if self.facet_column else ()),
            **classes_and_matrix(self.classes, self.cost_matrix),
            "reason_table": _reason_table(self.reason_texts),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    @property
    def multiclass(self) -> bool:
        """More than two classes (``class_labels`` and ``matrix`` then hold them)."""
        return self.class_labels is not None

    @property
    def n_classes(self) -> int:
        """K: the number of classes (2 unless ``classes`` or ``cost_matrix`` say more)."""
        return len(self.class_labels) if self.multiclass else 2

    @property
    def favourable(self) -> tuple[int, ...]:
        """More than two classes: the indices of the favourable classes (Clarify's
        ``label_values_or_threshold``: listed labels, or labels above a threshold)."""
        if not self.multiclass or self.label_values is None:
            return ()
        if isinstance(self.label_values, list):
            found = (class_index(self.class_labels, v) for v in self.label_values)
            return tuple(sorted({i for i in found if i is not None}))
        return tuple(i for i, c in enumerate(self.class_labels)
                     if isinstance(c, int) and c > self.label_values)

    @property
    def class_costs(self) -> CostMatrix:
        """The class costs: they decide every row without cost columns, at inference too."""
        return CostMatrix(fp=self.cost_fp, fn=self.cost_fn, tp=self.cost_tp, tn=self.cost_tn)

    @property
    def cost_columns(self) -> tuple[tuple[str, str], ...]:
        """``(cell, column)`` for each cost cell read from a column, in ``CELLS`` order."""
        return tuple((cell, self[f"cost_{cell}_column"]) for cell in CELLS
                     if self[f"cost_{cell}_column"])

    def xgboost_params(self) -> dict:
        params = {p.xgboost_name: self[p.name] for p in SCHEMA if p.xgboost_name}
        params["seed"] = self.seed
        if self.nthread > 0:
            params["nthread"] = self.nthread
        return params


# One typed, immutable field per schema entry (generated: the schema stays the one list), plus
# the derived values set once by __post_init__.
Settings = make_dataclass(
    "Settings",
    [(_attribute(p.name), _PYTHON_TYPES[p.type]) for p in SCHEMA]
    + [("label_values", "list | float | None", field(init=False, repr=False, compare=False)),
       ("facet_values", "list | float | None", field(init=False, repr=False, compare=False)),
       ("fairness_names", "tuple[str, ...]", field(init=False, repr=False, compare=False)),
       ("class_labels", "tuple | None", field(init=False, repr=False, compare=False)),
       ("reason_table", "dict | None", field(init=False, repr=False, compare=False)),
       ("matrix", "tuple[tuple[float, ...], ...] | None",
        field(init=False, repr=False, compare=False)),
       ("matrix_columns", "tuple", field(init=False, repr=False, compare=False))],
    bases=(_SettingsView,), frozen=True)
Settings.__module__ = __name__
Settings.__doc__ = """Parsed hyperparameters: typed and immutable. Every schema name is an attribute
(``settings.cost_fn``; ``lambda`` is ``settings.lambda_``) and a key (``settings["cost_fn"]``);
derived once: ``label_values`` and
``facet_values`` (Clarify's ``*_values_or_threshold``: a list of values or a threshold, ``None``
when not given), ``fairness_names`` (upper-case, empty without a facet), ``class_costs``,
``cost_columns``; with more than two classes ``class_labels`` (the label of each class, in
order), ``matrix`` (``C[true][decided]``, a named cell at its class cost), both ``None`` for
two, and ``matrix_columns`` (``((true, decided), column)`` per cell naming a column);
``reason_table``
(``reason_texts`` parsed: ``{feature: {"text", "code"?}}``, or ``None``)."""


def _reason_table(text: str) -> dict | None:
    """``reason_texts`` parsed (:func:`costaware.decisions.reasons.parse_reason_texts`), or None."""
    if not text:
        return None
    try:
        return parse_reason_texts(text)
    except ValueError as exc:
        raise HyperparameterError(f"hyperparameter 'reason_texts': {exc}") from None


def _normalised(values: dict) -> dict:
    """Spelling that does not change meaning, made one: the fairness metrics upper-case, no
    spaces."""
    names = [m.strip().upper() for m in values["fairness_metrics"].split(",") if m.strip()]
    return {**values, "fairness_metrics": ",".join(names)}


def parse(raw: Mapping[str, Any]) -> Settings:
    """Parse and validate raw hyperparameters; unknown names are rejected with the valid ones."""
    values = {p.name: p.default for p in SCHEMA}
    seen: dict[str, str] = {}
    for key, raw_value in raw.items():
        if key in IGNORED_EXACT or key.startswith(IGNORED_PREFIXES):
            continue
        param = BY_NAME.get(key)
        if param is None and key in REMOVED:
            raise HyperparameterError(f"hyperparameter '{key}' no longer exists: {REMOVED[key]}")
        if param is None and key in builtin_names.HINTS:
            raise HyperparameterError(f"hyperparameter '{key}' is the SageMaker XGBoost "
                                      f"algorithm's, not costaware's: {builtin_names.HINTS[key]}")
        if param is None:
            raise HyperparameterError(
                f"unknown hyperparameter '{key}'; valid names: {', '.join(sorted(BY_NAME))}"
            )
        if param.name in seen:
            raise HyperparameterError(
                f"hyperparameter '{param.name}' given twice (as '{seen[param.name]}' and '{key}')"
            )
        seen[param.name] = key
        try:
            values[param.name] = param.parse(raw_value)
        except HyperparameterError as exc:
            hint = (builtin_names.objective_hint(str(_unwrap(raw_value)).strip())
                    if param.name == "objective" else None)
            if hint is None:
                raise
            raise HyperparameterError(f"{exc} ({hint})") from None
    binary_matrix(values, seen)
    settings = Settings(**{_attribute(k): v for k, v in _normalised(values).items()})
    _check_cross_field(settings, set(seen))
    return settings


def parse_saved(values: Mapping[str, Any]) -> Settings:
    """The settings a model saved (``metadata.json``'s ``hyperparameters``: every name, defaults
    included): parsed from the names whose value differs from the default, as they were given."""
    given = {k: v for k, v in values.items() if k in BY_NAME and v != BY_NAME[k].default}
    if given.get("cost_matrix") and not given.get("classes"):
        # a 2 x 2 matrix was read into the binary costs (binary_matrix): those are derived
        for cell in ("fp", "fn", "tp", "tn"):
            given.pop(f"cost_{cell}", None)
            given.pop(f"cost_{cell}_column", None)
    return parse(given)


POST_TRAINING_PER_ROUND = bias.PER_ROUND  # what fairness_metrics accepts: bias.py's list


def parse_values_or_threshold(text: str, name: str):
    """Clarify's ``*_values_or_threshold``: a JSON list -> category values, a number -> threshold."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, list) and value and all(isinstance(v, (int, float, str)) for v in value):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise HyperparameterError(
        f"hyperparameter '{name}': {text!r} must be a JSON list of values (e.g. '[2]') or a "
        "number (a threshold)"
    )


def _check_fairness(s: Settings) -> None:
    if not s.facet_column:
        for name in ("facet_values_or_threshold", "group_column"):
            if s[name]:
                raise HyperparameterError(f"hyperparameter '{name}' needs 'facet_column'")
        if s.fairness_penalty > 0 or s.max_abs_dppl < 1 or s.group_thresholds:
            raise HyperparameterError(
                "hyperparameters 'fairness_penalty', 'max_abs_dppl' and 'group_thresholds' need "
                "'facet_column'")
        if s.early_stopping_metric == "combined_objective":
            raise HyperparameterError(
                "hyperparameter 'early_stopping_metric': combined_objective needs 'facet_column'")
        return
    if not s.facet_values_or_threshold:
        raise HyperparameterError(
            "hyperparameter 'facet_values_or_threshold' is required with 'facet_column' (which "
            "values are the sensitive group, e.g. '[2]')")
    metrics = s.fairness_names
    bad = [m for m in metrics if m not in POST_TRAINING_PER_ROUND]
    if bad or not metrics:
        raise HyperparameterError(
            f"hyperparameter 'fairness_metrics': {s.fairness_metrics!r} must list some of "
            f"{', '.join(POST_TRAINING_PER_ROUND)}")
    if "CDDPL" in metrics and not s.group_column:
        raise HyperparameterError("hyperparameter 'fairness_metrics': CDDPL needs 'group_column'")
    if s.objective_auc_weight + s.objective_fairness_weight <= 0:
        raise HyperparameterError(
            "hyperparameters 'objective_auc_weight' and 'objective_fairness_weight' are both 0")
    if s.group_thresholds and s.max_abs_dppl >= 1:
        raise HyperparameterError(
            "hyperparameter 'group_thresholds' needs 'max_abs_dppl' < 1 (it only serves the "
            "constraint)")


def _check_cross_field(s: Settings, given: set[str] = frozenset()) -> None:
    if s.multiclass:
        check_multiclass(s, given)
    offered = metric_registry.early_stopping_names(s.n_classes)
    if s.early_stopping_metric not in offered:  # a choice of the schema that this K does not log
        raise HyperparameterError(
            f"hyperparameter 'early_stopping_metric': {s.early_stopping_metric} is logged for "
            f"{metric_registry.get(s.early_stopping_metric).classes} only; with {s.n_classes} "
            f"classes one of {', '.join(offered)}")
    # The class costs decide every row without a cost column, at inference too.
    problem = s.class_costs.problem(
        lambda cell, value: f"'cost_{cell}' ({value:g})")
    if problem:
        raise HyperparameterError(f"hyperparameters {problem}")
    columns = {}
    for cell, spec in s.cost_columns:
        if spec in columns:
            raise HyperparameterError(
                f"hyperparameters 'cost_{columns[spec]}_column' and 'cost_{cell}_column' name the "
                f"same column ({spec!r}); give each cost cell its own column")
        columns[spec] = cell
    if s.objective == "binary:logistic" and "cost_weight_exponent" in given:
        raise HyperparameterError(
            "hyperparameter 'cost_weight_exponent' weights the cost_weighted loss; objective "
            "binary:logistic is unweighted (it equals cost_weighted with cost_weight_exponent 0)")
    if s.max_abs_dppl < 1 and "decision_rule" in given and s.decision_rule == "bayes":
        raise HyperparameterError(
            "hyperparameter 'max_abs_dppl' < 1 decides by the constrained rule, fitted on held-out "
            "rows; decision_rule 'bayes' cannot also hold (leave decision_rule out)")
    if s.calibrator in ("platt", "isotonic") and s.multiclass:
        raise HyperparameterError(
            f"hyperparameter 'calibrator': {s.calibrator} is for two classes; with "
            f"{s.n_classes} classes 'auto', 'identity' or 'temperature'")
    if s.calibrator == "temperature" and not s.multiclass:
        raise HyperparameterError(
            "hyperparameter 'calibrator': temperature is for K >= 3 classes; with two classes "
            "'auto', 'identity', 'platt' or 'isotonic'")
    if s.calibration_data == "validation" and "served_model" in given:
        raise HyperparameterError(
            "hyperparameter 'served_model' chooses between the fold models of calibration_data "
            "'cross_fit' and a refit; with 'validation' there are none")
    if s.external_memory == "true" and s.calibration_data == "cross_fit" and (
            given & {"calibration_data", "cross_fit_folds", "served_model"}):
        named = sorted(given & {"calibration_data", "cross_fit_folds", "served_model"})[0]
        raise HyperparameterError(
            f"hyperparameter '{named}' asks for cross-fitting, which external_memory 'true' does "
            "not do (it holds out the validation channel, or a share of train); leave it out, or "
            "set external_memory 'false'")
    if s.cross_fit_folds == 1:
        raise HyperparameterError(
            "hyperparameter 'cross_fit_folds': 1 leaves no fold to train a fold model on; 2 to "
            "20, or 0 for the automatic choice")
    if s.calibration_data == "validation" and "cross_fit_folds" in given:
        raise HyperparameterError(
            "hyperparameter 'cross_fit_folds' applies to calibration_data 'cross_fit', not "
            "'validation'")
    _check_fairness(s)
    if s.csv_header == "absent" and s.label_column and not s.label_column.isdigit():
        raise HyperparameterError(
            f"hyperparameter 'label_column' names a column ({s.label_column!r}) but csv_header is "
            "'absent': a name needs a header line"
        )


def schema_as_json() -> list[dict]:
    return [p.describe() for p in SCHEMA]


def schema_as_markdown() -> str:
    lines = [
        "| name | type | default | range | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in SCHEMA:
        name = f"`{p.name}`" + "".join(f" (`{a}`)" for a in p.aliases)
        default = json.dumps(p.default)
        lines.append(f"| {name} | {p.type} | `{default}` | {p.range_text()} | {p.doc} |")
    return "\n".join(lines)
