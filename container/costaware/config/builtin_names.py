"""The SageMaker XGBoost algorithm's hyperparameters that costaware does not take, each with what to
give instead: a job moved over by changing its image URI fails with that one line, not with the
list of costaware's names (the built-in's names are its
``algorithm_mode/hyperparameter_validation.py``'s)."""

from __future__ import annotations

_GBTREE = "costaware boosts gbtree trees only (its calibrator and reasons read a tree ensemble)"
_UNUSED = ("a setting of XGBoost's GPU, distributed or older training that costaware's CPU "
           "training has no use for: drop it")
_CLASSIFIES = ("costaware trains classifiers whose mistakes have costs (objective cost_weighted "
               "or binary:logistic), not regressors, rankers or survival models")

HINTS = {
    "eval_metric": "costaware reports auc, logloss, brier, expected cost and savings on every "
                   "channel each round (docs/metrics.md), and early stopping watches "
                   "early_stopping_metric",
    "scale_pos_weight": "the classes weigh by their costs: scale_pos_weight=w is cost_fn=w with "
                        "cost_fp=1, which weighs the loss and moves the decisions alike",
    "num_class": "for K classes give their labels, classes=[0,1,...,K-1] (0-1 costs), or a "
                 "cost_matrix; objective stays cost_weighted",
    "csv_weights": "a row weighs by its costs: give its cost columns (cost_fn_column, "
                   "cost_fp_column, ...)",
    "base_score": "each model starts from its training rows' share of each class; it is not set",
    "verbosity": "costaware writes its own log: drop it",
    "monotone_constraints": "costaware does not pass constraints to XGBoost: drop it",
    "interaction_constraints": "costaware does not pass constraints to XGBoost: drop it",
    "num_parallel_tree": "costaware boosts one tree a round (no boosted random forests): drop it",
    "_kfold": "the built-in's cross-validation; costaware's cross-fitting is "
              "calibration_data=cross_fit with cross_fit_folds",
    "_num_cv_round": "the built-in's cross-validation; costaware's cross-fitting is "
                     "calibration_data=cross_fit with cross_fit_folds",
    **{name: _GBTREE for name in ("booster", "one_drop", "rate_drop", "skip_drop", "sample_type",
                                  "normalize_type", "updater", "process_type", "refresh_leaf")},
    **{name: _CLASSIFIES for name in ("aft_loss_distribution", "aft_loss_distribution_scale",
                                      "tweedie_variance_power")},
    **{name: _UNUSED for name in ("deterministic_histogram", "use_dask_gpu_training", "predictor",
                                  "sampling_method", "single_precision_histogram", "dsplit",
                                  "prob_buffer_row", "sketch_eps", "save_model_on_termination",
                                  "lambda_bias")},
}


def objective_hint(value: str) -> str | None:
    """What to give instead of a built-in ``objective`` costaware does not train."""
    if value.startswith("multi:"):
        return ("for K classes keep objective cost_weighted and give their labels, "
                "classes=[0,1,...,K-1] (0-1 costs), or a cost_matrix")
    if value.startswith(("reg:", "survival:", "rank:", "count:")):
        return _CLASSIFIES
    if value.startswith("binary:"):
        return ("the probabilities are calibrated and the decision made by expected cost: use "
                "cost_weighted or binary:logistic")
    return None
