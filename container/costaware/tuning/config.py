"""Search space, objective and the SageMaker ``CreateHyperParameterTuningJob`` request.

The ranges come from the hyperparameter schema (:attr:`costaware.config.hyperparameters.Param.tuning`,
``(min, max, scaling)``): an ``int`` parameter becomes an ``IntegerParameterRanges`` entry, a
``float`` one a ``ContinuousParameterRanges`` entry, a ``choice`` one (only when asked for with
``--range NAME=a,b``) a ``CategoricalParameterRanges`` entry. The fairness parameters are searched
only when the static hyperparameters name a facet (without one training rejects them). A parameter
fixed by a static hyperparameter is not searched. The metric definitions are the published ones
for the job's number of classes (``costaware metric-definitions [--classes K]``), so the tuner reads
the objective from the log lines the training program prints.

The same :class:`Range` objects drive the local tuner (:mod:`costaware.tuning.local`), so a local
study and a SageMaker tuning job search the same space.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass

from ..config import hyperparameters as hp
from ..metrics import log_lines as metric_log
from ..metrics import registry as metric_registry
from ..errors import HyperparameterError
from ..config.multiclass_settings import MULTICLASS_REFUSED

SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
STRATEGIES = ("Bayesian", "Random", "Hyperband")
PLACEHOLDERS = {
    "image_uri": "<ACCOUNT_ID>.dkr.ecr.<REGION>.amazonaws.com/costaware:latest",
    "role_arn": "arn:aws:iam::<ACCOUNT_ID>:role/<SAGEMAKER_EXECUTION_ROLE>",
    "s3_train": "s3://<BUCKET>/costaware/train/",
    "s3_validation": "s3://<BUCKET>/costaware/validation/",
    "s3_output": "s3://<BUCKET>/costaware/tuning/",
}
# SageMaker's limits (CreateHyperParameterTuningJob): job name, ranges per type, static parameters
MAX_JOB_NAME = 32
MAX_RANGES_PER_TYPE = 30
MAX_STATIC = 100


class ConfigError(ValueError):
    """A tuning configuration that SageMaker or training would reject; the message says why."""


@dataclass(frozen=True)
class Range:
    """One searched hyperparameter."""

    name: str
    kind: str  # "Integer" | "Continuous" | "Categorical"
    low: float | None = None
    high: float | None = None
    scaling: str = "Auto"
    values: tuple[str, ...] = ()

    @property
    def log(self) -> bool:
        return self.scaling == "Logarithmic"

    def to_api(self) -> dict:
        if self.kind == "Categorical":
            return {"Name": self.name, "Values": list(self.values)}
        return {"Name": self.name, "MinValue": _number_text(self.low),
                "MaxValue": _number_text(self.high), "ScalingType": self.scaling}

    def to_sdk(self) -> str:
        if self.kind == "Categorical":
            return f"CategoricalParameter({list(self.values)!r})"
        cls = "IntegerParameter" if self.kind == "Integer" else "ContinuousParameter"
        low = int(self.low) if self.kind == "Integer" else self.low
        high = int(self.high) if self.kind == "Integer" else self.high
        return f"{cls}({low!r}, {high!r}, scaling_type={self.scaling!r})"

    def describe(self) -> str:
        if self.kind == "Categorical":
            return f"{self.name} in {{{', '.join(self.values)}}}"
        return f"{self.name} in [{_number_text(self.low)}, {_number_text(self.high)}] ({self.scaling})"

    def corners(self) -> list:
        """Values at both ends (every value for a categorical range), as strings."""
        if self.kind == "Categorical":
            return list(self.values)
        return [_number_text(self.low), _number_text(self.high)]

    def choices(self) -> list:
        """A categorical range's values typed as the schema types them (``max_depth=2,3``: the
        integers 2 and 3), so that a chosen value is a number where the parameter is one."""
        return [hp.BY_NAME[self.name].parse(v) for v in self.values]


def _number_text(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _canonical(name: str) -> hp.Param:
    param = hp.BY_NAME.get(name)
    if param is None:
        raise ConfigError(f"unknown hyperparameter '{name}'; valid names: "
                          f"{', '.join(sorted(hp.BY_NAME))}")
    return param


def schema_range(param: hp.Param) -> Range:
    low, high, scaling = param.tuning
    kind = "Integer" if param.type == "int" else "Continuous"
    return Range(param.name, kind, float(low), float(high), scaling)


def parse_range(spec: str) -> tuple[str, Range | None]:
    """``NAME=LOW:HIGH[:SCALING]``, ``NAME=a,b,c`` (categorical) or ``NAME=off`` (not searched)."""
    if "=" not in spec:
        raise ConfigError(f"--range {spec!r}: expected NAME=LOW:HIGH[:SCALING], NAME=a,b,... or "
                          "NAME=off")
    name, text = (part.strip() for part in spec.split("=", 1))
    param = _canonical(name)
    if text.lower() == "off":
        return param.name, None
    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3) or param.type not in ("int", "float"):
            raise ConfigError(f"--range {spec!r}: LOW:HIGH[:SCALING] needs a numeric parameter "
                              f"and two bounds ('{param.name}' is {param.type})")
        scaling = parts[2] if len(parts) == 3 else (param.tuning[2] if param.tuning else "Linear")
        match = [s for s in SCALINGS if s.lower() == scaling.lower()]
        if not match:
            raise ConfigError(f"--range {spec!r}: scaling must be one of {', '.join(SCALINGS)}")
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise ConfigError(f"--range {spec!r}: bounds must be numbers") from None
        kind = "Integer" if param.type == "int" else "Continuous"
        return param.name, check_range(param, Range(param.name, kind, low, high, match[0]))
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise ConfigError(f"--range {spec!r}: no values")
    if len(values) == 1:
        raise ConfigError(f"--range {spec!r}: one value is not a range; to fix it for every trial "
                          f"use --static {param.name}={values[0]}")
    return param.name, check_range(param, Range(param.name, "Categorical", values=values))


def check_range(param: hp.Param, rng: Range) -> Range:
    """Bounds inside the schema's range, ordered, positive for logarithmic scaling."""
    where = f"range of '{param.name}'"
    if rng.kind == "Categorical":
        try:
            rng.choices()
        except HyperparameterError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return rng
    if param.type == "int" and not (float(rng.low).is_integer() and float(rng.high).is_integer()):
        raise ConfigError(f"{where}: '{param.name}' is an integer; bounds must be whole numbers")
    if not (math.isfinite(rng.low) and math.isfinite(rng.high)) or rng.low >= rng.high:
        raise ConfigError(f"{where}: need LOW < HIGH (got {rng.low:g}, {rng.high:g})")
    if rng.scaling in ("Logarithmic", "ReverseLogarithmic") and rng.low <= 0:
        raise ConfigError(f"{where}: {rng.scaling} scaling needs LOW > 0 (got {rng.low:g})")
    if rng.scaling == "ReverseLogarithmic" and rng.high >= 1:
        raise ConfigError(f"{where}: ReverseLogarithmic scaling needs HIGH < 1")
    for bound in (rng.low, rng.high):
        try:
            param.parse(_number_text(bound))
        except HyperparameterError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return rng


def resolve_ranges(statics: dict, specs: list[str] | tuple[str, ...] = (),
                   has_facet: bool | None = None, multiclass: bool = False) -> list[Range]:
    """The search space: the schema's ranges, then ``--range`` overrides, minus the parameters
    fixed in ``statics``. Fairness parameters are searched only with a facet; with more than two
    classes, none that such a job refuses (``multiclass_settings.MULTICLASS_REFUSED``)."""
    if has_facet is None:
        has_facet = bool(str(statics.get("facet_column", "")).strip())
    ranges: dict[str, Range] = {}
    for param in hp.SCHEMA:
        if param.tuning and (param.group != "fairness" or has_facet) \
                and not (multiclass and param.name in MULTICLASS_REFUSED):
            ranges[param.name] = schema_range(param)
    for spec in specs:
        name, rng = parse_range(spec)
        if rng is None:
            ranges.pop(name, None)
        else:
            ranges[name] = rng
    fixed = {_canonical(k).name for k in statics if k in hp.BY_NAME}
    out = [r for name, r in ranges.items() if name not in fixed]
    for kind in ("Integer", "Continuous", "Categorical"):
        if sum(r.kind == kind for r in out) > MAX_RANGES_PER_TYPE:
            raise ConfigError(f"more than {MAX_RANGES_PER_TYPE} {kind} ranges")
    if not out:
        raise ConfigError("nothing to tune: every parameter with a range is fixed or turned off")
    return out


@dataclass(frozen=True)
class Objective:
    """What a study optimises: metric names and their directions (``Maximize``/``Minimize``)."""

    label: str
    metrics: tuple[str, ...]
    directions: tuple[str, ...]

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    def read_from(self, channel: str) -> "Objective":
        """The same metrics of another channel: ``held_out`` without a validation channel
        (:func:`costaware.tuning.runner.held_out_metrics`)."""
        return Objective(self.label, tuple(f"{channel}:{m.split(':', 1)[1]}" for m in self.metrics),
                         self.directions)


ALIASES = {
    "combined": "validation:combined_objective",
    "auc": "validation:auc",
    "cost": "validation:expected_cost",
}


def objective(spec: str, has_facet: bool, allow_multi: bool = True,
              multiclass: bool = False) -> Objective:
    """``combined`` | ``auc`` | ``cost`` | ``multi`` | a metric name such as ``validation:f1``
    that a job with this number of classes logs (:func:`costaware.metrics.registry.logged_for`)."""
    if spec == "multi":
        if not allow_multi:
            raise ConfigError("SageMaker tunes one objective metric: use combined, auc, cost or a "
                              "metric name")
        metrics = ["validation:auc", "validation:dppl", "validation:expected_cost"]
        if not has_facet:
            metrics.remove("validation:dppl")
        return Objective("multi", tuple(metrics), tuple(_direction(m) for m in metrics))
    metric = ALIASES.get(spec, spec)
    names = [d["Name"] for d in metric_log.metric_definitions(3 if multiclass else 2)]
    if metric not in names and metric in {d["Name"] for d in metric_log.metric_definitions(None)}:
        offered = ", ".join(n for n in names if n.startswith("validation:"))
        raise ConfigError(f"objective {metric}: "
                          + ("a two-class metric; with more than two classes" if multiclass else
                             "a metric of more than two classes; with two classes")
                          + f" tune on one of {offered}")
    if metric not in names:
        raise ConfigError(f"objective {spec!r}: not a published metric; use combined, auc, cost, "
                          f"multi or one of {', '.join(sorted(names))}")
    channel, name = metric.split(":", 1)
    if channel == "test":
        raise ConfigError(f"objective {metric}: tuning on the test channel leaks it into model "
                          "selection; tune on validation")
    if _direction(metric) is None:
        raise ConfigError(f"objective {metric}: a reported value, not an objective")
    if metric_registry.get(name).needs_facet and not has_facet:
        raise ConfigError(f"objective {metric} needs a facet: set facet_column and "
                          "facet_values_or_threshold (--static facet_column=NAME --static "
                          "'facet_values_or_threshold=[1]'), or tune on auc or cost")
    return Objective(spec, (metric,), (_direction(metric),))


def _direction(metric: str) -> str | None:
    return metric_log.objective_direction(metric)


def is_multiclass(statics: dict) -> bool:
    """Whether these hyperparameters train more than two classes (bad ones: False, and
    :func:`check_statics` says why)."""
    try:
        return hp.parse(statics).multiclass
    except HyperparameterError:
        return False


def unlogged(metric: str, settings) -> str | None:
    """Why a training with ``settings`` would never log ``metric`` (``channel:name``), or None.
    The fairness distances are logged for the metrics ``fairness_metrics`` lists (``dppl`` for
    DPPL, ``di`` for DI), the combined objective with any facet
    (:func:`costaware.training.evaluation.metrics_at`)."""
    name = metric.split(":", 1)[1]
    if not metric_registry.get(name).needs_facet:
        return None
    if not settings.facet_column:
        return "it needs a facet (facet_column and facet_values_or_threshold)"
    if name.upper() in hp.POST_TRAINING_PER_ROUND and name.upper() not in settings.fairness_names:
        return (f"it is logged only when fairness_metrics lists {name.upper()} (here "
                f"{settings.fairness_metrics!r}); add --static fairness_metrics="
                f"{','.join((*settings.fairness_names, name.upper()))}")
    return None


def check_statics(statics: dict, ranges: list[Range], goal: Objective | None = None) -> None:
    """Parse the static hyperparameters with every range at its low and its high end (and at
    every value of a categorical one), as training will: an unknown name, a combination training
    rejects or an objective metric training would not log fails here, not in 100 jobs."""
    searched = {r.name for r in ranges}
    base = {k: v for k, v in statics.items()
            if (hp.BY_NAME[k].name if k in hp.BY_NAME else k) not in searched}
    widest = max([2] + [len(r.values) for r in ranges if r.kind == "Categorical"])
    for corner in range(widest):
        trial = dict(base)
        for rng in ranges:
            values = rng.corners()
            trial[rng.name] = values[min(corner, len(values) - 1)]
        try:
            settings = hp.parse(trial)
        except HyperparameterError as exc:
            raise ConfigError(f"static hyperparameters: {exc}") from None
        for metric in (goal.metrics if goal else ()):
            reason = unlogged(metric, settings)
            if reason:
                at = ", ".join(f"{r.name}={trial[r.name]}" for r in ranges
                               if r.kind == "Categorical")
                raise ConfigError(f"objective {goal.label}: training would never log {metric}"
                                  + (f" with {at}" if at else "") + f": {reason}")


def parse_statics(items: list[str] | tuple[str, ...]) -> dict:
    """``--static KEY=VALUE`` items as a dict; each name known and each value valid on its own
    (combinations are checked with the tree's or the ranges' values)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--static {item!r}: expected key=value")
        key, value = (part.strip() for part in item.split("=", 1))
        try:
            if key in hp.BY_NAME:
                hp.BY_NAME[key].parse(value)
            else:
                hp.parse({key: value})  # unknown or removed: its own message
        except HyperparameterError as exc:
            raise ConfigError(f"--static {key}={value}: {exc}") from None
        out[key] = value
    return out


def default_job_name(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return "costaware-" + now.strftime("%y%m%d-%H%M%S")


@dataclass
class TunerOptions:
    image_uri: str | None = None
    role_arn: str | None = None
    s3_train: str | None = None
    s3_validation: str | None = None
    s3_test: str | None = None
    s3_output: str | None = None
    job_name: str | None = None
    objective: str = "validation:combined_objective"
    max_jobs: int = 100
    max_parallel: int = 10
    strategy: str = "Bayesian"
    early_stopping: str = "Off"
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size: int = 10
    max_runtime: int = 3600
    content_type: str = "text/csv"
    seed: int | None = None
    statics: dict | None = None
    ranges: tuple[str, ...] = ()


def build(opts: TunerOptions) -> tuple[dict, list[str]]:
    """The request body and the names of the options left as placeholders."""
    statics = {k: str(v) for k, v in (opts.statics or {}).items()}
    has_facet = bool(statics.get("facet_column", "").strip())
    multiclass = is_multiclass(statics)
    goal = objective(opts.objective, has_facet, allow_multi=False, multiclass=multiclass)
    ranges = resolve_ranges(statics, opts.ranges, multiclass=multiclass)
    check_statics(statics, ranges, goal)
    if opts.strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}")
    if opts.strategy == "Hyperband" and opts.early_stopping != "Off":
        raise ConfigError("Hyperband stops jobs itself: --early-stopping must be Off")
    if not 1 <= opts.max_parallel <= opts.max_jobs:
        raise ConfigError("need 1 <= --max-parallel <= --max-jobs")
    placeholders = [name for name in PLACEHOLDERS if not getattr(opts, name)]
    value = {name: getattr(opts, name) or PLACEHOLDERS[name] for name in PLACEHOLDERS}
    job_name = opts.job_name or default_job_name()
    if len(job_name) > MAX_JOB_NAME:
        raise ConfigError(f"--job-name {job_name!r}: at most {MAX_JOB_NAME} characters")
    metric = goal.metrics[0]
    static = {**statics, "_tuning_objective_metric": metric}
    if len(static) > MAX_STATIC:
        raise ConfigError(f"more than {MAX_STATIC} static hyperparameters")
    parameter_ranges = {
        f"{kind}ParameterRanges": [r.to_api() for r in ranges if r.kind == kind]
        for kind in ("Integer", "Continuous", "Categorical")
        if any(r.kind == kind for r in ranges)
    }
    channels = [("train", value["s3_train"]), ("validation", value["s3_validation"])]
    if opts.s3_test:
        channels.append(("test", opts.s3_test))
    config = {
        "Strategy": opts.strategy,
        "HyperParameterTuningJobObjective": {"Type": goal.directions[0], "MetricName": metric},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": opts.max_jobs,
                           "MaxParallelTrainingJobs": opts.max_parallel},
        "ParameterRanges": parameter_ranges,
        "TrainingJobEarlyStoppingType": opts.early_stopping,
    }
    if opts.seed is not None:
        config["RandomSeed"] = opts.seed
    request = {
        "HyperParameterTuningJobName": job_name,
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": {
            "StaticHyperParameters": static,
            "AlgorithmSpecification": {
                "TrainingImage": value["image_uri"],
                "TrainingInputMode": "File",
                "MetricDefinitions": metric_log.published_definitions(3 if multiclass else 2),
            },
            "RoleArn": value["role_arn"],
            "InputDataConfig": [
                {
                    "ChannelName": name,
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                                    "S3DataDistributionType": "FullyReplicated"}},
                    "ContentType": opts.content_type,
                    "CompressionType": "None",
                }
                for name, uri in channels
            ],
            "OutputDataConfig": {"S3OutputPath": value["s3_output"]},
            "ResourceConfig": {"InstanceType": opts.instance_type,
                               "InstanceCount": opts.instance_count,
                               "VolumeSizeInGB": opts.volume_size},
            "StoppingCondition": {"MaxRuntimeInSeconds": opts.max_runtime},
        },
    }
    return request, placeholders


def sdk_snippet(request: dict) -> str:
    """The same job with the SageMaker Python SDK (v2: ``sagemaker.tuner.HyperparameterTuner``)."""
    config = request["HyperParameterTuningJobConfig"]
    definition = request["TrainingJobDefinition"]
    statics = {k: v for k, v in definition["StaticHyperParameters"].items()
               if k != "_tuning_objective_metric"}  # the SDK adds it itself
    ranges = []
    for kind, entries in config["ParameterRanges"].items():
        for entry in entries:
            if kind.startswith("Categorical"):
                ranges.append(Range(entry["Name"], "Categorical", values=tuple(entry["Values"])))
            else:
                ranges.append(Range(entry["Name"], kind.replace("ParameterRanges", ""),
                                    float(entry["MinValue"]), float(entry["MaxValue"]),
                                    entry["ScalingType"]))
    resource = definition["ResourceConfig"]
    objective_ = config["HyperParameterTuningJobObjective"]
    lines = [
        "# SageMaker Python SDK v2 (pip install 'sagemaker>=2,<3')",
        "from sagemaker.estimator import Estimator",
        "from sagemaker.inputs import TrainingInput",
        "from sagemaker.tuner import (CategoricalParameter, ContinuousParameter, "
        "HyperparameterTuner,",
        "                             IntegerParameter)",
        "",
        "estimator = Estimator(",
        f"    image_uri={definition['AlgorithmSpecification']['TrainingImage']!r},",
        f"    role={definition['RoleArn']!r},",
        f"    instance_count={resource['InstanceCount']!r},",
        f"    instance_type={resource['InstanceType']!r},",
        f"    volume_size={resource['VolumeSizeInGB']!r},",
        f"    max_run={definition['StoppingCondition']['MaxRuntimeInSeconds']!r},",
        f"    output_path={definition['OutputDataConfig']['S3OutputPath']!r},",
        "    hyperparameters={",
        *[f"        {k!r}: {v!r}," for k, v in statics.items()],
        "    },",
        ")",
        "tuner = HyperparameterTuner(",
        "    estimator,",
        f"    objective_metric_name={objective_['MetricName']!r},",
        f"    objective_type={objective_['Type']!r},",
        "    hyperparameter_ranges={",
        *[f"        {r.name!r}: {r.to_sdk()}," for r in ranges],
        "    },",
        "    metric_definitions=[",
        *[f"        {{'Name': {d['Name']!r}, 'Regex': {d['Regex']!r}}},"
          for d in definition["AlgorithmSpecification"]["MetricDefinitions"]],
        "    ],",
        f"    strategy={config['Strategy']!r},",
        f"    max_jobs={config['ResourceLimits']['MaxNumberOfTrainingJobs']!r},",
        f"    max_parallel_jobs={config['ResourceLimits']['MaxParallelTrainingJobs']!r},",
        f"    early_stopping_type={config['TrainingJobEarlyStoppingType']!r},",
    ]
    if "RandomSeed" in config:
        lines.append(f"    random_seed={config['RandomSeed']!r},")
    lines += [
        ")",
        "tuner.fit(",
        "    {",
        *[f"        {c['ChannelName']!r}: TrainingInput("
          f"{c['DataSource']['S3DataSource']['S3Uri']!r}, content_type={c['ContentType']!r}),"
          for c in definition["InputDataConfig"]],
        "    },",
        f"    job_name={request['HyperParameterTuningJobName']!r},",
        ")",
    ]
    return "\n".join(lines) + "\n"
