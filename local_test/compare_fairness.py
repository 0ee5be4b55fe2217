"""Bias mitigation on the South German Credit data, facet foreign_worker: what each option buys.

Trains with the real ``train`` entry point on the tree of ``prepare_german_credit.py`` four times —
unconstrained, with the in-training parity penalty, with one shift of the Bayes boundary chosen
under |DPPL| <= bound on the held-out rows (out of fold), and with one shift per facet under the
same bound — and prints, per channel, AUC, expected cost per applicant, DPPL, DI and the combined
objective.

    python local_test/compare_fairness.py [--work DIR] [--penalty 2] [--bound 0.05] [--synthetic 100]

By default the data carries the case study's 100 synthetic foreign workers relabelled bad (see
prepare_german_credit.py), which makes the model disfavour foreign workers strongly.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(work: str, name: str, overrides: dict, synthetic: int) -> dict:
    base = os.path.join(work, name)
    args = [f"{k}={v}" for k, v in overrides.items()] + ["--synthetic", str(synthetic)]
    subprocess.run([sys.executable, os.path.join(HERE, "prepare_german_credit.py"), base, *args],
                   check=True, capture_output=True)
    result = subprocess.run(["costaware", "train", "--base-dir", base], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    with open(os.path.join(base, "output", "data", "evaluation.json"), encoding="utf-8") as handle:
        return json.load(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=tempfile.mkdtemp(prefix="costaware-fairness-"))
    parser.add_argument("--penalty", default="2")
    parser.add_argument("--costs", default="cost_fp=1,cost_fn=1",
                        help="comma-separated cost hyperparameters (the case study weighed errors equally)")
    parser.add_argument("--bound", default="0.05")
    parser.add_argument("--synthetic", type=int, default=100,
                        help="synthetic foreign workers relabelled bad, as in the case study (0: none)")
    args = parser.parse_args()
    costs = dict(item.split("=", 1) for item in args.costs.split(","))
    variants = {
        "unconstrained": {},
        f"parity penalty {args.penalty}": {"fairness_penalty": args.penalty},
        f"one shift, DPPL within ±{args.bound}": {"max_abs_dppl": args.bound},
        f"per-facet shifts, DPPL within ±{args.bound}": {"max_abs_dppl": args.bound,
                                                      "group_thresholds": "true"},
    }
    results = {name: run(args.work, name.split(",")[0].replace(" ", "_").replace("|", ""),
                         {**costs, **o}, args.synthetic)
               for name, o in variants.items()}
    lines = ["| model | channel | AUC | expected cost per applicant | DPPL | DI | combined objective | shift(s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, evaluation in results.items():
        for channel in ("validation", "test"):
            m = evaluation["channels"][channel]["served"]
            post = evaluation["channels"][channel]["bias"]["post_training"]
            shift = evaluation["policy"]["rule"].get("shift", 0.0)
            shown = (f"a {shift['a']:+.2f} / d {shift['d']:+.2f}" if isinstance(shift, dict)
                     else f"{shift:+.2f}")
            di = post["DI"] if isinstance(post["DI"], str) else f"{post['DI']:.3f}"
            lines.append(f"| {name} | {channel} | {m['auc']:.3f} | {m['expected_cost']:.3f} | "
                         f"{post['DPPL']:+.3f} | {di} | {m['combined_objective']:.3f} | {shown} |")
    print("\n".join(lines))
    print(f"\nreports (report.html, charts) under {args.work}/*/output/data/")


if __name__ == "__main__":
    main()
