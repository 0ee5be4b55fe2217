"""The custom-loss case study on the breast-cancer data: what each decision rule costs per patient.

Trains twice with the real ``train`` entry point on copies of a SageMaker tree (by default
``local_test/test_dir``, made by ``prepare_breast_cancer.py``): once with the plain symmetric loss,
once with the cost-weighted loss; then reports, on the test channel, the confusion matrix and the
expected cost per patient of

  1. the symmetric loss at 0.5,
  2. the cost-weighted loss at its own rule (raw sigmoid(margin) >= 0.5, as in the case study),
  3. the cost-weighted loss at 0.5 on its reported probability (margin minus the learned tilt),
  4. the cost-weighted loss at the threshold learned on validation.

    python local_test/compare_losses.py [--tree DIR] [--work DIR]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = (
    ("symmetric loss, threshold 0.5", "binary:logistic", "threshold_0.5"),
    ("cost-weighted loss, raw score 0.5", "cost_weighted", "raw_margin_0"),
    ("cost-weighted loss, probability 0.5", "cost_weighted", "threshold_0.5"),
    ("cost-weighted loss, learned threshold", "cost_weighted", "chosen_threshold"),
)


def train(tree: str, work: str, objective: str) -> dict:
    base = os.path.join(work, objective.replace(":", "_"))
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(os.path.join(tree, "input"), os.path.join(base, "input"))
    hp_path = os.path.join(base, "input", "config", "hyperparameters.json")
    with open(hp_path, encoding="utf-8") as handle:
        hyperparameters = json.load(handle)
    hyperparameters["objective"] = objective
    with open(hp_path, "w", encoding="utf-8") as handle:
        json.dump(hyperparameters, handle)
    result = subprocess.run(["costaware", "train", "--base-dir", base], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"training with {objective} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    with open(os.path.join(base, "output", "data", "evaluation.json"), encoding="utf-8") as handle:
        return {"base": base, "evaluation": json.load(handle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", default=os.path.join(HERE, "test_dir"))
    parser.add_argument("--work", default=tempfile.mkdtemp(prefix="costaware-compare-"))
    args = parser.parse_args()
    runs = {obj: train(args.tree, args.work, obj) for obj in ("binary:logistic", "cost_weighted")}
    table = ["| model and decision rule | threshold | TP | FP | FN | TN | expected cost per patient |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    summary = []
    for title, objective, key in ROWS:
        m = runs[objective]["evaluation"]["channels"]["test"][key]
        cm = m["confusion_matrix"]
        table.append(f"| {title} | {m['threshold']:.4g} | {cm['tp']} | {cm['fp']} | {cm['fn']} | "
                     f"{cm['tn']} | ${m['expected_cost']:,.0f} |")
        summary.append({"rule": title, "threshold": m["threshold"], "confusion_matrix": cm,
                        "expected_cost_per_patient": m["expected_cost"]})
    print("\n".join(table))
    with open(os.path.join(args.work, "comparison.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    print(f"\nmodels and evaluation.json files under {args.work}")
    learned, half = summary[3]["expected_cost_per_patient"], summary[0]["expected_cost_per_patient"]
    if learned >= half:
        sys.exit("the learned threshold did not cost less than the symmetric loss at 0.5")


if __name__ == "__main__":
    main()
