import json
import re
import subprocess
import sys

import pytest

from costaware.config import builtin_names, hyperparameters as hp
from costaware.errors import HyperparameterError

from support import REPO


def test_defaults():
    s = hp.parse({})
    assert s.num_round == 100 and s.objective == "cost_weighted" and s.decision_rule == "bayes"
    assert s.calibration_data == "cross_fit" and s.early_stopping_metric == "logloss"
    assert s.cost_weight_exponent == hp.DEFAULT_EXPONENT


def test_strings_and_json_encoded_strings():
    s = hp.parse({"eta": "0.1", "max_depth": '"4"', "cost_fn": "\"252000\"", "facet_is_feature": '"true"'})
    assert s.eta == 0.1 and s.max_depth == 4 and s.cost_fn == 252000.0 and s.facet_is_feature is True
    assert isinstance(s.max_depth, int)


def test_integral_floats_accepted_for_ints():
    assert hp.parse({"num_round": "10.0"}).num_round == 10


def test_aliases_of_the_older_sample():
    s = hp.parse({"fp_cost": "3", "fn_cost": "7", "learning_rate": "0.2"})
    assert (s.cost_fp, s.cost_fn, s.eta) == (3.0, 7.0, 0.2)


def test_alias_and_name_together_is_an_error():
    with pytest.raises(HyperparameterError, match="given twice"):
        hp.parse({"fp_cost": "3", "cost_fp": "4"})


def test_sagemaker_keys_are_ignored():
    s = hp.parse({"_tuning_objective_metric": "validation:auc", "sagemaker_program": "x",
                  "sagemaker_region": '"us-east-1"'})
    assert "sagemaker_program" not in s


def test_unknown_name_lists_valid_ones():
    with pytest.raises(HyperparameterError) as info:
        hp.parse({"num_rounds": "10"})
    message = str(info.value)
    assert "unknown hyperparameter 'num_rounds'" in message
    assert "num_round" in message and "cost_fn" in message


@pytest.mark.parametrize("name,value,fragment", [
    ("eta", "1.5", "out of range [0, 1]"),
    ("eta", "fast", "not a valid float"),
    ("max_depth", "2.5", "not a valid int"),
    ("subsample", "0", "out of range (0, 1]"),
    ("cost_fp", "-1", "out of range [0, inf)"),
    ("cost_fn", "nan", "not a valid float"),
    ("objective", "reg:squarederror", "is not one of"),
    ("facet_is_feature", "maybe", "not a valid bool"),
    ("decision_rule", "0.3", "is not one of bayes, empirical"),
    ("calibration_data", "test", "is not one of cross_fit, validation"),
    ("cross_fit_folds", "1", "1 leaves no fold to train a fold model on"),
    ("cost_weight_exponent", "2", "out of range [0, 1]"),
    ("early_stopping_metric", "threshold", "is not one of"),
])
def test_invalid_values_name_the_hyperparameter(name, value, fragment):
    with pytest.raises(HyperparameterError) as info:
        hp.parse({name: value})
    assert f"'{name}'" in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize("costs,fragment", [
    ({"cost_fp": "1", "cost_tn": "1"}, "'cost_fp' (1) must exceed 'cost_tn' (1)"),
    ({"cost_fn": "0", "cost_tp": "0"}, "'cost_fn' (0) must exceed 'cost_tp' (0)"),
])
def test_costs_that_make_every_decision_equal(costs, fragment):
    with pytest.raises(HyperparameterError, match=re.escape(fragment)):
        hp.parse(costs)


@pytest.mark.parametrize("name,replacement", [
    ("cost_column", "cost_fn_column"), ("cost_column_scales", "cost_fn_column"),
    ("cost_column_is_feature", "cost columns are never features"),
    ("decision_threshold", "decision_rule 'bayes' (the default) or 'empirical'")])
def test_removed_names_say_what_replaces_them(name, replacement):
    with pytest.raises(HyperparameterError) as info:
        hp.parse({name: "1"})
    message = str(info.value)
    assert message.startswith(f"hyperparameter '{name}' no longer exists: ") and replacement in message


@pytest.mark.parametrize("name,value,hint", [
    ("scale_pos_weight", "3", "scale_pos_weight=w is cost_fn=w with cost_fp=1"),
    ("eval_metric", "auc", "early stopping watches early_stopping_metric"),
    ("num_class", "3", "classes=[0,1,...,K-1] (0-1 costs), or a cost_matrix"),
    ("booster", "dart", "costaware boosts gbtree trees only"),
    ("csv_weights", "1", "give its cost columns"),
    ("verbosity", "1", "costaware writes its own log"),
    ("_kfold", "5", "calibration_data=cross_fit with cross_fit_folds"),
    ("sketch_eps", "0.03", "costaware's CPU training has no use for"),
])
def test_the_builtin_algorithms_names_say_what_to_give_instead(name, value, hint):
    """A job moved over from the SageMaker XGBoost algorithm by its image URI fails on each of its
    names costaware does not take with what to give instead (every one of them has a hint)."""
    with pytest.raises(HyperparameterError) as info:
        hp.parse({"num_round": "10", name: value})
    assert str(info.value) == (f"hyperparameter '{name}' is the SageMaker XGBoost algorithm's, "
                               f"not costaware's: {builtin_names.HINTS[name]}")
    assert hint in str(info.value)
    assert not set(builtin_names.HINTS) & set(hp.BY_NAME)  # (a name costaware takes is taken)


@pytest.mark.parametrize("value,hint", [
    ("multi:softprob", "keep objective cost_weighted and give their labels, classes=[0,1,...,K-1]"),
    ("reg:squarederror", "costaware trains classifiers whose mistakes have costs"),
    ("binary:hinge", "use cost_weighted or binary:logistic"),
])
def test_the_builtin_algorithms_objectives_say_what_to_give_instead(value, hint):
    with pytest.raises(HyperparameterError) as info:
        hp.parse({"objective": value})
    assert str(info.value).startswith(f"hyperparameter 'objective': '{value}' is not one of "
                                      "cost_weighted, binary:logistic (")
    assert hint in str(info.value)


@pytest.mark.parametrize("values,fragment", [
    ({"cost_fp_column": "c", "cost_fn_column": "c"},
     "'cost_fp_column' and 'cost_fn_column' name the same column ('c')"),
    ({"objective": "binary:logistic", "cost_weight_exponent": "0.5"},
     "'cost_weight_exponent' weights the cost_weighted loss"),
    ({"calibration_data": "validation", "cross_fit_folds": "3"},
     "'cross_fit_folds' applies to calibration_data 'cross_fit'"),
    ({"calibration_data": "validation", "served_model": "fold_average"},
     "'served_model' chooses between the fold models of calibration_data 'cross_fit'"),
    ({"calibrator": "temperature"}, "temperature is for K >= 3 classes"),
    ({"calibrator": "isotonic", "cost_matrix": "[[0,1,1],[1,0,1],[1,1,0]]"},
     "isotonic is for two classes; with 3 classes 'auto', 'identity' or 'temperature'"),
    ({"calibrator": "spline"}, "is not one of auto, identity, platt, temperature, isotonic"),
])
def test_cost_and_calibration_settings_are_checked(values, fragment):
    with pytest.raises(HyperparameterError) as info:
        hp.parse(values)
    assert fragment in str(info.value)


def test_xgboost_params_use_builtin_names():
    params = hp.parse({"lambda": "2", "alpha": "0.5", "nthread": "2"}).xgboost_params()
    assert params["lambda"] == 2.0 and params["alpha"] == 0.5 and params["nthread"] == 2
    assert "cost_fp" not in params and "objective" not in params


def test_cli_prints_the_schema_as_json():
    out = subprocess.run([sys.executable, "-m", "costaware.cli", "hyperparameters"],
                         capture_output=True, text=True, check=True).stdout
    schema = json.loads(out)
    names = {p["name"] for p in schema}
    assert {"num_round", "eta", "max_depth", "cost_fp", "cost_fn", "cost_fn_column", "seed",
            "cost_weight_exponent", "calibration_data", "decision_rule"} <= names
    eta = next(p for p in schema if p["name"] == "eta")
    assert eta["default"] == 0.3 and eta["range"] == "[0, 1]" and eta["tuning_range"]["scaling"] == "Logarithmic"


def test_the_hyperparameters_page_table_is_generated_from_the_schema():
    page = (REPO / "docs" / "hyperparameters.md").read_text()
    assert hp.schema_as_markdown() in page, "regenerate with: costaware hyperparameters --markdown"


@pytest.mark.parametrize("values,fragment", [
    ({"facet_values_or_threshold": "[1]"}, "'facet_values_or_threshold' needs 'facet_column'"),
    ({"facet_column": "sex"}, "'facet_values_or_threshold' is required"),
    ({"facet_column": "sex", "facet_values_or_threshold": "maybe"}, "must be a JSON list of values"),
    ({"facet_column": "sex", "facet_values_or_threshold": "[1]", "fairness_metrics": "DPPL,XYZ"},
     "must list some of"),
    ({"facet_column": "sex", "facet_values_or_threshold": "[1]", "fairness_metrics": "CDDPL"},
     "CDDPL needs 'group_column'"),
    ({"fairness_penalty": "1"}, "need 'facet_column'"),
    ({"facet_column": "sex", "facet_values_or_threshold": "[1]", "group_thresholds": "true"},
     "'group_thresholds' needs 'max_abs_dppl' < 1"),
    ({"facet_column": "sex", "facet_values_or_threshold": "[1]", "max_abs_dppl": "0.1",
      "decision_rule": "bayes"}, "decision_rule 'bayes' cannot also hold"),
    ({"early_stopping_metric": "combined_objective"}, "combined_objective needs 'facet_column'"),
    ({"label_values_or_threshold": "{}"}, "'label_values_or_threshold'"),
])
def test_fairness_settings_are_checked(values, fragment):
    with pytest.raises(HyperparameterError) as info:
        hp.parse(values)
    assert fragment in str(info.value)


def test_values_or_threshold_forms():
    assert hp.parse_values_or_threshold("[1, 2]", "x") == [1, 2]
    assert hp.parse_values_or_threshold('["F"]', "x") == ["F"]
    assert hp.parse_values_or_threshold("40", "x") == 40.0


def test_settings_are_typed_and_immutable():
    import dataclasses

    s = hp.parse({"max_depth": "4", "lambda": "2", "cost_fn": "7"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_depth = 5
    with pytest.raises(TypeError):
        s["max_depth"] = 5
    # each field holds its schema type; a mapping of exactly the schema's names
    for param in hp.SCHEMA:
        value = s[param.name]
        expected = {"int": int, "float": float, "bool": bool, "str": str, "choice": str}[param.type]
        assert type(value) is expected, (param.name, value)
    assert list(s) == [p.name for p in hp.SCHEMA] and s["lambda"] == s.lambda_ == 2.0
    with pytest.raises(KeyError):
        s["reg_lambda"]  # an alias is accepted when parsing, not a key of the result
    assert s.xgboost_params()["lambda"] == 2.0


def test_settings_derive_structured_values_once():
    s = hp.parse({"facet_column": "sex", "facet_values_or_threshold": '["F"]',
                  "fairness_metrics": " dppl , di ", "label_values_or_threshold": "0.5",
                  "cost_fp": "2", "cost_fn": "9", "cost_tn_column": "saved",
                  "cost_fp_column": "fee"})
    assert s.facet_values == ["F"] and s.label_values == 0.5
    assert s.fairness_names == ("DPPL", "DI") and s.fairness_metrics == "DPPL,DI"
    assert s.cost_columns == (("fp", "fee"), ("tn", "saved"))  # in CELLS order
    assert (s.class_costs.fp, s.class_costs.fn, s.class_costs.tp, s.class_costs.tn) == (2, 9, 0, 0)
    plain = hp.parse({})
    assert plain.facet_values is None and plain.label_values is None
    assert plain.fairness_names == ()  # no facet: no fairness metric is computed
    # the saved hyperparameters and the checkpoint fingerprint see the schema's names only
    assert set(json.loads(json.dumps(dict(s)))) == {p.name for p in hp.SCHEMA}


def test_a_cost_matrix_cell_may_name_a_column_for_any_number_of_classes():
    # two classes: the named cells are the cost_*_column spellings, at the default class costs
    matrix = hp.parse({"cost_matrix": '[[0, "refuse_cost"], ["loss_given_default", 0]]'})
    columns = hp.parse({"cost_fp_column": "refuse_cost", "cost_fn_column": "loss_given_default"})
    assert (matrix.cost_columns, matrix.class_costs, matrix.multiclass) == \
        (columns.cost_columns, columns.class_costs, False)
    # three: the cell's column, and its class cost for rows without it (1 off the diagonal)
    s = hp.parse({"cost_matrix": '[[0, 2, 3], [2, 0, 1], ["refund", 3, 0]]'})
    assert s.matrix_columns == (((2, 0), "refund"),)
    assert s.matrix == ((0, 2, 3), (2, 0, 1), (1, 3, 0))


@pytest.mark.parametrize("given,message", [
    ({"cost_matrix": '[[0, 2, 3], [2, 0, 1], [false, 3, 0]]'},
     "hyperparameter 'cost_matrix': C[2][0] is false, not a number or the name of a cost column"),
    ({"cost_matrix": '[[0, "x", 3], [2, 0, 1], ["x", 3, 0]]'},
     "hyperparameter 'cost_matrix': C[0][1] and C[2][0] name the same column ('x'); give each "
     "cost cell its own column"),
    ({"cost_matrix": '[[0, "x"], [1, 0]]', "cost_fn_column": "y"},
     "hyperparameters 'cost_matrix' and 'cost_fn_column' both give the binary costs; give them "
     "once"),
    ({"cost_matrix": '[[0, 2, 3], [2, 0, 1], [1, 3, 0]]', "cost_fn_column": "y"},
     "hyperparameter 'cost_fn_column' with 3 classes: it names a binary cell's column; with more "
     "than two classes name the column in its cell of cost_matrix"),
])
def test_a_bad_named_cell_is_one_line_naming_the_hyperparameter(given, message):
    with pytest.raises(HyperparameterError) as info:
        hp.parse(given)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
