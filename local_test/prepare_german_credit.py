"""Lay out the South German Credit data as a SageMaker training tree with a fairness facet.

Label ``credit_risk`` (1 = good: the positive, favourable outcome), facet ``foreign_worker``
(1 = yes: the sensitive group d). CSV with a header, 60/20/20 stratified split (fixed seed). Costs:
the data set's classic cost matrix, accepting a bad risk (a false positive) costs 5, rejecting a
good one (a false negative) costs 1.

    python local_test/prepare_german_credit.py [BASE_DIR] [-- key=value hyperparameters ...]
"""

import json
import os
import sys

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
    base_dir = argv[0] if argv and "=" not in argv[0] else os.path.join(HERE, "german_credit_dir")
    overrides = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    write_tree(load(), base_dir, {**HYPERPARAMETERS, **overrides})


if __name__ == "__main__":
    main(sys.argv[1:])
