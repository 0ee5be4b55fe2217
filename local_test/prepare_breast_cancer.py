"""Lay out the Wisconsin breast-cancer data as a SageMaker training tree (``/opt/ml`` shape).

Malignant = 1 (the costly class to miss). The custom-loss case study's own split: 25% test with
``random_state=1`` (143 patients); of the other 426, 20% validation (86) and 340 train, with the
same seed. Headerless CSV with the label first (SageMaker's convention). Costs per patient are those
of the case study: TN $0, FP $1,287.67, FN $252,000, TP $35,280; and its boosting settings: 200
rounds, eta 0.1, depth 3, early stopping after 20 rounds without improvement.

    python local_test/prepare_breast_cancer.py [BASE_DIR]   (default: local_test/test_dir)
"""

import json
import os
import sys

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

COSTS = {"cost_tn": "0", "cost_fp": "1287.67", "cost_fn": "252000", "cost_tp": "35280"}
HYPERPARAMETERS = {
    "objective": "cost_weighted",
    "num_round": "200",
    "eta": "0.1",
    "max_depth": "3",
    "early_stopping_rounds": "20",
    "seed": "7",
    **COSTS,
}


def main(base_dir: str) -> None:
    features, label = load_breast_cancer(return_X_y=True)
    label = 1 - label  # scikit-learn codes malignant as 0
    x_rest, x_test, y_rest, y_test = train_test_split(features, label, test_size=0.25,
                                                      random_state=1)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.2,
                                                      random_state=1)
    for channel, x, y in (("train", x_train, y_train), ("validation", x_val, y_val),
                          ("test", x_test, y_test)):
        directory = os.path.join(base_dir, "input", "data", channel)
        os.makedirs(directory, exist_ok=True)
        np.savetxt(os.path.join(directory, f"{channel}.csv"), np.column_stack([y, x]),
                   delimiter=",", fmt="%.10g")
    config = os.path.join(base_dir, "input", "config")
    os.makedirs(config, exist_ok=True)
    files = {
        "hyperparameters.json": HYPERPARAMETERS,
        "inputdataconfig.json": {c: {"ContentType": "text/csv", "TrainingInputMode": "File",
                                     "S3DistributionType": "FullyReplicated"}
                                 for c in ("train", "validation", "test")},
        "resourceconfig.json": {"current_host": "algo-1", "hosts": ["algo-1"],
                                "network_interface_name": "eth0"},
    }
    for name, content in files.items():
        with open(os.path.join(config, name), "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
            handle.write("\n")
    # a request payload as an endpoint sees it: features only, no label, no header
    payload = os.path.join(os.path.dirname(os.path.abspath(__file__)), "payloads")
    os.makedirs(payload, exist_ok=True)
    np.savetxt(os.path.join(payload, "breast_cancer.csv"), x_test[:5], delimiter=",", fmt="%.10g")
    print(f"wrote {len(y_train)}/{len(y_val)}/{len(y_test)} rows to {base_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "test_dir"))
