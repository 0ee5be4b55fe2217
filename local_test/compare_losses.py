"""The custom-loss case study on the breast-cancer data: what each decision costs per patient.

Trains twice with the real ``train`` entry point on copies of a SageMaker tree (by default
``local_test/test_dir``, made by ``prepare_breast_cancer.py``): once with costaware's defaults (the
symmetric loss, the fold models' average, the calibrator its held-out rows choose, decisions by
expected cost), once with the loss weighted by each row's cost (``cost_weight_exponent`` 0.15, the
default before the benchmark of docs/benchmarks.md chose 0). Then reports, on the 143 test
patients (nothing was fitted on them), the confusion matrix, the cost per patient and the savings
against biopsying everyone (the cheaper of the two uniform decisions) of

  1. the defaults, deciding at probability 0.5 (costs ignored at decision time),
  2. the defaults, deciding by expected cost: what ``serve`` answers,
  3. the cost-weighted loss at probability 0.5,
  4. the cost-weighted loss deciding by expected cost;

and biopsying everyone, and the floor (every decision right).

    python local_test/compare_losses.py [--tree DIR] [--work DIR]

Exits non-zero unless the served decisions (2) cost less than biopsying everyone.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = {"defaults": {}, "weighted": {"cost_weight_exponent": "0.15"}}
ROWS = (
    ("defaults, probability >= 0.5", "defaults", "probability_0.5"),
    ("defaults, by expected cost (served)", "defaults", "served"),
    ("cost-weighted loss (exponent 0.15), probability >= 0.5", "weighted", "probability_0.5"),
    ("cost-weighted loss (exponent 0.15), by expected cost", "weighted", "served"),
)


def train(tree: str, work: str, name: str) -> dict:
    base = os.path.join(work, name)
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(os.path.join(tree, "input"), os.path.join(base, "input"))
    hp_path = os.path.join(base, "input", "config", "hyperparameters.json")
    with open(hp_path, encoding="utf-8") as handle:
        hyperparameters = json.load(handle)
    hyperparameters.update(RUNS[name])
    with open(hp_path, "w", encoding="utf-8") as handle:
        json.dump(hyperparameters, handle)
    result = subprocess.run(["costaware", "train", "--base-dir", base], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"training {name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    with open(os.path.join(base, "output", "data", "evaluation.json"), encoding="utf-8") as handle:
        evaluation = json.load(handle)
    with open(os.path.join(base, "model", "metadata.json"), encoding="utf-8") as handle:
        metadata = json.load(handle)
    return {"base": base, "evaluation": evaluation, "metadata": metadata}


def table(runs: dict) -> tuple[list[str], list[dict]]:
    lines = ["| model and decision rule | rounds kept | TP | FP | FN | TN | cost per patient | savings |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    summary = []
    for title, name, key in ROWS:
        run = runs[name]
        m = run["evaluation"]["channels"]["test"][key]
        cm = m["confusion_matrix"]
        kept = run["metadata"]["best_iteration"] + 1
        lines.append(f"| {title} | {kept} | {cm['tp']} | {cm['fp']} | {cm['fn']} | {cm['tn']} | "
                     f"${m['expected_cost']:,.0f} | {m['savings']:.4f} |")
        summary.append({"rule": title, "rounds_kept": kept, "confusion_matrix": cm,
                        "cost_per_patient": m["expected_cost"], "savings": m["savings"]})
    m = runs["defaults"]["evaluation"]["channels"]["test"]["served"]
    n, positives = m["rows"], m["positives"]
    all_1 = m["cost_all_1"] / n
    costs = runs["defaults"]["metadata"]["decision_policy"]["costs"]
    floor = (positives * costs["cost_tp"] + (n - positives) * costs["cost_tn"]) / n
    lines.append(f"| biopsy everyone | | {positives} | {n - positives} | 0 | 0 | ${all_1:,.0f} | 0 |")
    lines.append(f"| every decision right (the floor) | | {positives} | 0 | 0 | {n - positives} | "
                 f"${floor:,.0f} | {1 - floor / all_1:.4f} |")
    return lines, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", default=os.path.join(HERE, "test_dir"))
    parser.add_argument("--work", default=tempfile.mkdtemp(prefix="costaware-compare-"))
    args = parser.parse_args()
    runs = {name: train(args.tree, args.work, name) for name in RUNS}
    lines, summary = table(runs)
    print("\n".join(lines))
    with open(os.path.join(args.work, "comparison.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    print(f"\nmodels and evaluation.json files under {args.work}")
    if not summary[1]["savings"] > 0:
        sys.exit("the served decisions did not cost less than biopsying everyone")


if __name__ == "__main__":
    main()
