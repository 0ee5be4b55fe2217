"""``costaware`` command line: the schema, the metric definitions, local training and prediction,
tuning (a SageMaker tuning-job request, a local tuner, a cost-ratio sweep)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .lean_imports import xgboost_without_sklearn


def _hyperparameters(args) -> int:
    from .config import hyperparameters

    if args.markdown:
        print(hyperparameters.schema_as_markdown())
    else:
        print(json.dumps(hyperparameters.schema_as_json(), indent=2))
    return 0


def _metrics(args) -> int:
    from .metrics import registry as metric_registry

    print(metric_registry.markdown_table(), end="")
    return 0


def _metric_definitions(args) -> int:
    from .metrics import log_lines as metric_log

    if args.classes < 2:
        print(f"costaware metric-definitions: --classes {args.classes}: a model has 2 or more "
              "classes", file=sys.stderr)
        return 2
    print(json.dumps(metric_log.published_definitions(args.classes), indent=2))
    return 0


def _train(args) -> int:
    """Run the image's ``train`` (config check, then the toolkit) on a local ``/opt/ml``-shaped tree."""
    env = dict(os.environ, SAGEMAKER_BASE_DIR=os.path.abspath(args.base_dir),
               SAGEMAKER_TRAINING_MODULE="costaware.sagemaker.training_job:main")
    # As on SageMaker, where output/ always exists (the toolkit writes output/failure without
    # creating the directory).
    os.makedirs(os.path.join(args.base_dir, "output"), exist_ok=True)
    # the `train` installed beside this Python (a virtual environment need not be on PATH)
    beside = os.path.join(os.path.dirname(sys.executable), "train")
    os.execvpe(beside if os.path.exists(beside) else "train", ["train"], env)
    return 1  # not reached


def _predict(args) -> int:
    """Answer a request body from a file (``-``: stdin) as ``POST /invocations`` would, with the
    server's own code (:class:`costaware.serving.invocation.Invocations`): the same formats,
    fields, custom attributes and refusals (one line, exit 2); no body size limit. The answer on
    stdout, ended by a line break."""
    from .model.artifact import ModelLoadError, load
    from .serving.invocation import Invocations
    from .serving.request_error import RequestError

    def refuse(message: str) -> int:
        print(f"costaware predict: {message}", file=sys.stderr)
        return 2

    try:
        invocations = Invocations(load(args.model_dir))
    except ModelLoadError as exc:
        return refuse(str(exc))
    try:
        plan = invocations.plan(args.content_type, args.accept, args.custom_attributes)
    except RequestError as exc:
        return refuse(exc.message)
    try:
        if args.input == "-":
            body = sys.stdin.buffer.read()
        else:
            with open(args.input, "rb") as handle:
                body = handle.read()
    except OSError as exc:
        return refuse(f"{args.input}: {exc.strerror or exc}")
    try:
        answer = invocations.answer(plan, body)
    except RequestError as exc:
        return refuse(f"{args.input}: {exc.message}")
    sys.stdout.buffer.write(answer.body + b"\n")
    sys.stdout.buffer.flush()
    return 0


def _tuner_config(args) -> int:
    from .tuning import config

    opts = config.TunerOptions(
        image_uri=args.image_uri, role_arn=args.role_arn, s3_train=args.s3_train,
        s3_validation=args.s3_validation, s3_test=args.s3_test, s3_output=args.s3_output,
        job_name=args.job_name, objective=args.objective, max_jobs=args.max_jobs,
        max_parallel=args.max_parallel, strategy=args.strategy, early_stopping=args.early_stopping,
        instance_type=args.instance_type, instance_count=args.instance_count,
        volume_size=args.volume_size, max_runtime=args.max_runtime, seed=args.seed,
        ranges=tuple(args.range or ()),
    )
    try:
        opts.statics = config.parse_statics(args.static or ())
        request, placeholders = config.build(opts)
    except config.ConfigError as exc:
        print(f"costaware tuner-config: {exc}", file=sys.stderr)
        return 2
    if placeholders:
        print("costaware tuner-config: placeholders left for "
              + ", ".join("--" + p.replace("_", "-") for p in placeholders), file=sys.stderr)
    if args.sdk:
        print(config.sdk_snippet(request), end="")
    else:
        print(json.dumps(request, indent=2))
    return 0


def _tune(args) -> int:
    from .tuning import tune_cli

    return tune_cli.main(args)


def _sweep(args) -> int:
    from .tuning import sweep

    return sweep.main(args)


def _add_tuner_config(sub) -> None:
    p = sub.add_parser(
        "tuner-config",
        help="print a SageMaker CreateHyperParameterTuningJob request (JSON) or the SDK snippet")
    p.add_argument("--image-uri")
    p.add_argument("--role-arn")
    p.add_argument("--s3-train")
    p.add_argument("--s3-validation")
    p.add_argument("--s3-test", help="optional: a test channel, evaluated and logged, not tuned on")
    p.add_argument("--s3-output")
    p.add_argument("--job-name", help="at most 32 characters (default costaware-YYMMDD-HHMMSS)")
    p.add_argument("--objective", default="validation:combined_objective",
                   help="combined | auc | cost | a metric name (default "
                        "validation:combined_objective)")
    p.add_argument("--max-jobs", type=int, default=100)
    p.add_argument("--max-parallel", type=int, default=10)
    p.add_argument("--strategy", default="Bayesian", choices=("Bayesian", "Random", "Hyperband"))
    p.add_argument("--early-stopping", default="Off", choices=("Off", "Auto"))
    p.add_argument("--instance-type", default="ml.m5.xlarge")
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--volume-size", type=int, default=10, help="GB")
    p.add_argument("--max-runtime", type=int, default=3600, help="seconds per training job")
    p.add_argument("--seed", type=int, default=None, help="the tuning job's RandomSeed")
    p.add_argument("--static", action="append", metavar="KEY=VALUE",
                   help="a static hyperparameter (not searched); repeat")
    p.add_argument("--range", action="append", metavar="NAME=LOW:HIGH[:SCALING]|a,b|off",
                   help="override a schema range, add a categorical one, or turn one off")
    p.add_argument("--sdk", action="store_true",
                   help="print the sagemaker.tuner.HyperparameterTuner snippet instead")
    p.set_defaults(func=_tuner_config)


def _monitor(args) -> int:
    """The image's ``monitor`` on local directories: the same job, its environment from flags."""
    from .monitoring import job

    baseline = args.baseline
    env = {"dataset_source": args.capture, "output_path": args.output,
           "baseline_statistics": os.path.join(baseline, "statistics.json"),
           "baseline_constraints": os.path.join(baseline, "constraints.json"),
           "ground_truth_source": args.ground_truth or "", "start_time": args.start or "",
           "end_time": args.end or "", "dataset_format": '{"sagemakerCaptureJson": {}}',
           job.BASE_DIR_VARIABLE: args.output}
    return job.monitor_main(env=env)


def _suggest_baseline(args) -> int:
    from .monitoring import job

    return job.suggest_baseline_main(["--model", args.model_dir, "--data", args.data,
                                      "--output", args.output, "--content-type",
                                      args.content_type], env={job.BASE_DIR_VARIABLE: args.output})


def _compare(args) -> int:
    """The image's ``compare`` on local directories (a failure's line also in
    ``<output>/output/message``)."""
    from .comparison import job
    from .monitoring.job import BASE_DIR_VARIABLE

    return job.run(args, {BASE_DIR_VARIABLE: args.output})


def main(argv: list[str] | None = None) -> int:
    xgboost_without_sklearn()
    parser = argparse.ArgumentParser(prog="costaware", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("hyperparameters", help="print the hyperparameter schema")
    p.add_argument("--markdown", action="store_true",
                   help="as the Markdown table of docs/hyperparameters.md")
    p.set_defaults(func=_hyperparameters)
    p = sub.add_parser("metrics", help="print the metrics, the K each is logged for and its "
                                       "definition (docs/metrics.md's Markdown table)")
    p.set_defaults(func=_metrics)
    p = sub.add_parser("metric-definitions", help="print SageMaker metric_definitions (JSON)")
    p.add_argument("--classes", type=int, default=2,
                   help="the job's number of classes K (3 or more: the metrics K >= 3 logs)")
    p.set_defaults(func=_metric_definitions)
    p = sub.add_parser("train", help="train on a local SageMaker-shaped tree (the image's `train`)")
    p.add_argument("--base-dir", required=True, help="directory laid out like /opt/ml")
    p.set_defaults(func=_train)
    p = sub.add_parser("predict", help="answer a request body (a headerless CSV of rows by "
                                       "default) as the server's /invocations would")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--input", required=True,
                   help="the request body: rows without labels, in --content-type; - for stdin")
    p.add_argument("--content-type", default="text/csv",
                   help="the body's Content-Type (text/csv, application/json, "
                        "application/jsonlines, text/libsvm, application/x-recordio-protobuf; "
                        "default text/csv)")
    p.add_argument("--accept", default="application/jsonlines",
                   help="the answer's Accept, fields=... included (default application/jsonlines)")
    p.add_argument("--custom-attributes", default=None, metavar="ATTRIBUTES",
                   help="as X-Amzn-SageMaker-Custom-Attributes: cost overrides, reasons=K")
    p.set_defaults(func=_predict)
    _add_tuner_config(sub)
    from .tuning import sweep, tune_cli

    p = sub.add_parser("monitor", help="monitor captured traffic against a model's baseline "
                                       "(the image's `monitor`, Model Monitor's contract)")
    p.add_argument("--capture", required=True,
                   help="data capture: {endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl under it")
    p.add_argument("--baseline", required=True,
                   help="directory with statistics.json and constraints.json (model/baseline/)")
    p.add_argument("--output", required=True)
    p.add_argument("--ground-truth", help="directory of ground-truth records (*.jsonl)")
    p.add_argument("--start", help="window start, ISO 8601 (inferenceTime >= start)")
    p.add_argument("--end", help="window end, ISO 8601 (inferenceTime < end)")
    p.set_defaults(func=_monitor)
    p = sub.add_parser("suggest-baseline", help="a model's monitoring baseline from a labelled "
                                                "data set (the image's `suggest-baseline`)")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--data", required=True, help="CSV or Parquet files, as a training channel")
    p.add_argument("--output", required=True)
    p.add_argument("--content-type", default="text/csv")
    p.set_defaults(func=_suggest_baseline)
    from .comparison.arguments import DESCRIPTION, add_arguments

    p = add_arguments(sub.add_parser("compare", help="champion or challenger: two variants' "
                                     "captured decisions by their realized cost (the image's "
                                     "`compare`)", description=DESCRIPTION))
    p.set_defaults(func=_compare)
    p = sub.add_parser("tune", help="tune locally with optuna, each trial a real training run")
    tune_cli.add_arguments(p)
    p.set_defaults(func=_tune)
    p = sub.add_parser("sweep", help="train at several FN:FP cost ratios and price them alike")
    sweep.add_arguments(p)
    p.set_defaults(func=_sweep)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
