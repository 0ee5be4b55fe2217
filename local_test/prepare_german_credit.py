"""Lay out the South German Credit data as a SageMaker training tree with a fairness facet.

Label ``credit_risk`` (1 = good: the positive, favourable outcome), facet ``foreign_worker``
(1 = yes: the sensitive group d). CSV with a header, 60/20/20 stratified split (fixed seed). Costs:
the data set's classic cost matrix, accepting a bad risk (a false positive) costs 5, rejecting a
good one (a false negative) costs 1.

    python local_test/prepare_german_credit.py [BASE_DIR] [key=value hyperparameters ...]
        [--synthetic N --seed S]

``--synthetic N`` reproduces the fairness-tuning case study's data: N synthetic foreign workers are
sampled from a Gaussian copula fitted on the accepted (``credit_risk = 1``) foreign workers
(:mod:`costaware.tuning.copula`; ``duration``, ``amount`` and ``age`` continuous and rounded to whole
numbers, every other column on its observed codes), labelled bad (``credit_risk = 0``) and appended
before the split. With N = 100, 104 of the 137 foreign workers are bad (75.9%) against 296 of the 963
others (30.7%). ``--seed`` seeds the copula's sample.
"""

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "south_german_credit.asc")
HYPERPARAMETERS = {
    "label_column": "credit_risk",
    "facet_column": "foreign_worker",
    "facet_values_or_threshold": "[1]",
    "cost_fp": "5",
    "cost_fn": "1",
    "num_round": "60",
    "eta": "0.1",
    "max_depth": "4",
    "seed": "1",
}


def load() -> pd.DataFrame:
    frame = pd.read_csv(DATA, sep=r"\s+")
    return frame[["credit_risk"] + [c for c in frame.columns if c != "credit_risk"]]


CONTINUOUS = ("duration", "amount", "age")


def add_synthetic(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Append ``n`` copula samples of accepted foreign workers, relabelled bad."""
    from costaware.tuning.copula import GaussianCopula

    accepted = frame[(frame["foreign_worker"] == 1) & (frame["credit_risk"] == 1)]
    columns = [c for c in frame.columns if c not in ("credit_risk", "foreign_worker")]
    copula = GaussianCopula.fit(accepted[columns].to_numpy(float),
                                discrete=[c not in CONTINUOUS for c in columns])
    sample = pd.DataFrame(np.rint(copula.sample(n, seed=seed)).astype(int), columns=columns)
    sample["foreign_worker"] = 1
    sample["credit_risk"] = 0
    return pd.concat([frame, sample[frame.columns]], ignore_index=True)


def describe_facet(frame: pd.DataFrame) -> str:
    foreign = frame["foreign_worker"] == 1
    bad = frame["credit_risk"] == 0
    return (f"{int((foreign & bad).sum())} of {int(foreign.sum())} foreign workers bad "
            f"({(foreign & bad).sum() / foreign.sum():.1%}), {int((~foreign & bad).sum())} of "
            f"{int((~foreign).sum())} others ({(~foreign & bad).sum() / (~foreign).sum():.1%})")


def write_tree(frame: pd.DataFrame, base_dir: str, hyperparameters: dict, seed: int = 42) -> None:
    strata = frame["credit_risk"].astype(str) + frame["foreign_worker"].astype(str)
    train, rest = train_test_split(frame, test_size=0.4, stratify=strata, random_state=seed)
    validation, test = train_test_split(rest, test_size=0.5, stratify=strata.loc[rest.index],
                                        random_state=seed)
    for channel, part in (("train", train), ("validation", validation), ("test", test)):
        directory = os.path.join(base_dir, "input", "data", channel)
        os.makedirs(directory, exist_ok=True)
        part.to_csv(os.path.join(directory, f"{channel}.csv"), index=False)
    config = os.path.join(base_dir, "input", "config")
    os.makedirs(config, exist_ok=True)
    files = {
        "hyperparameters.json": hyperparameters,
        "inputdataconfig.json": {c: {"ContentType": "text/csv"} for c in ("train", "validation", "test")},
        "resourceconfig.json": {"current_host": "algo-1", "hosts": ["algo-1"]},
    }
    for name, content in files.items():
        with open(os.path.join(config, name), "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
            handle.write("\n")
    print(f"wrote {len(train)}/{len(validation)}/{len(test)} rows to {base_dir}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("items", nargs="*", metavar="BASE_DIR | key=value")
    parser.add_argument("--synthetic", type=int, default=0,
                        help="append N synthetic foreign workers relabelled bad (case study: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic sample")
    args = parser.parse_intermixed_args(argv)
    items = args.items
    base_dir = items[0] if items and "=" not in items[0] else os.path.join(HERE, "german_credit_dir")
    overrides = dict(arg.split("=", 1) for arg in items if "=" in arg)
    frame = load()
    if args.synthetic:
        frame = add_synthetic(frame, args.synthetic, args.seed)
        print(f"appended {args.synthetic} synthetic foreign workers labelled bad: "
              f"{describe_facet(frame)}")
    write_tree(frame, base_dir, {**HYPERPARAMETERS, **overrides})


if __name__ == "__main__":
    main(sys.argv[1:])
