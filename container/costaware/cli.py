"""``costaware`` command line: the schema, the metric definitions, local training and prediction."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def _hyperparameters(args) -> int:
    from . import hyperparameters

    if args.markdown:
        print(hyperparameters.schema_as_markdown())
    else:
        print(json.dumps(hyperparameters.schema_as_json(), indent=2))
    return 0


def _metric_definitions(args) -> int:
    from . import metric_log

    print(json.dumps(metric_log.published_definitions(), indent=2))
    return 0


def _train(args) -> int:
    """Run the toolkit's real ``train`` entry point on a local ``/opt/ml``-shaped tree."""
    env = dict(os.environ, SAGEMAKER_BASE_DIR=os.path.abspath(args.base_dir),
               SAGEMAKER_TRAINING_MODULE="costaware.sagemaker_train:main")
    os.execvpe("train", ["train"], env)
    return 1  # not reached


def _predict(args) -> int:
    import pandas as pd

    from . import artifact, inference

    model = artifact.load(args.model_dir)
    frame = pd.read_csv(args.input, header=None, skip_blank_lines=False)
    features = frame.to_numpy(dtype=np.float32)
    result = inference.predict(model, features)
    for i in range(len(features)):
        print(json.dumps({k: v[i].item() for k, v in result.items()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="costaware", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("hyperparameters", help="print the hyperparameter schema")
    p.add_argument("--markdown", action="store_true", help="as the README's Markdown table")
    p.set_defaults(func=_hyperparameters)
    p = sub.add_parser("metric-definitions", help="print SageMaker metric_definitions (JSON)")
    p.set_defaults(func=_metric_definitions)
    p = sub.add_parser("train", help="train on a local SageMaker-shaped tree (the image's `train`)")
    p.add_argument("--base-dir", required=True, help="directory laid out like /opt/ml")
    p.set_defaults(func=_train)
    p = sub.add_parser("predict", help="score a headerless CSV of features with a model directory")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--input", required=True, help="CSV, no header, no label")
    p.set_defaults(func=_predict)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
