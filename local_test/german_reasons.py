"""The reasons given to refused applicants of South German Credit, as the docs show them.

Prepares the German credit tree (``prepare_german_credit.py``: label 1 = good risk, so decision 0
refuses), trains it with ``reasons_for=0`` (the refusal is the adverse decision) and reason texts
for the loan's own terms, then asks the served model (in process: ``inference.predict`` and
``inference.explain``, what ``/invocations`` runs for ``reasons=3``) for the reasons of every
refused test applicant. Prints how many were refused, how often each feature is a top-3 reason,
what the model leans on per facet (foreign workers or not), and the first applicants' reasons as
a Markdown table.

    python local_test/german_reasons.py [--show 8] [--chart docs/images/german-credit-contributions.png]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

from costaware.model import artifact
from costaware.model import inference

HERE = os.path.dirname(os.path.abspath(__file__))
TEXTS = {
    "status": {"text": "Balance of the current account", "code": "R01"},
    "duration": {"text": "Term of the loan", "code": "R02"},
    "credit_history": {"text": "Repayment of earlier credits", "code": "R03"},
    "amount": {"text": "Amount of the loan", "code": "R04"},
    "savings": {"text": "Savings", "code": "R05"},
    "purpose": {"text": "Purpose of the loan", "code": "R06"},
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--show", type=int, default=8, help="applicants in the table")
    parser.add_argument("--chart", help="also copy the report's per-facet chart of the test "
                                        "channel (contributions-test.png) to this path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "ml")
        subprocess.run([sys.executable, os.path.join(HERE, "prepare_german_credit.py"), base,
                        "reasons_for=0", f"reason_texts={json.dumps(TEXTS)}"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "costaware"), "train",
                        "--base-dir", base], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        model = artifact.load(os.path.join(base, "model"), nthread=1)
        test = pd.read_csv(os.path.join(base, "input", "data", "test", "test.csv"))
        with open(os.path.join(base, "output", "data", "evaluation.json"), encoding="utf-8") as f:
            leaning = json.load(f)["channels"]["test"]["mean_abs_contribution"]
        if args.chart:
            shutil.copyfile(os.path.join(base, "output", "data", "contributions-test.png"),
                            args.chart)
    rows = test[model.feature_names].to_numpy(np.float64)
    result = inference.predict(model, rows)
    explained = inference.explain(model, rows, result, 3, model.metadata["reasons_for"])
    refused = np.flatnonzero(result["decision"] == 0)
    counts = collections.Counter(r["feature"] for i in refused
                                 for r in json.loads(explained["reasons"][i]))
    print(f"{len(refused)} of {len(rows)} test applicants refused (decision 0); top-3 reasons, "
          "by how often a feature is one:")
    for feature, count in counts.most_common():
        print(f"  {feature:24s} {count:4d}  ({count / len(refused):.0%} of refusals)")
    print()
    foreign = int((test["foreign_worker"] == 1).sum())
    print("Mean |contribution| on the test rows (evaluation.json, mean_abs_contribution), by "
          f"facet (foreign_worker: a = no, {len(test) - foreign} rows; d = yes, {foreign} rows), "
          "the top eight overall:")
    print("| feature | all | facet a | facet d | d / a |")
    print("| --- | --- | --- | --- | --- |")
    for name in sorted(leaning["all"], key=leaning["all"].get, reverse=True)[:8]:
        a, d = leaning["a"][name], leaning["d"][name]
        print(f"| {name} | {leaning['all'][name]:.3f} | {a:.3f} | {d:.3f} | {d / a:.2f} |")
    print()
    print("| applicant | P(good) | z | reason 1 | reason 2 | reason 3 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for i in refused[:args.show]:
        cells = []
        for r in json.loads(explained["reasons"][i]):
            label = r.get("text", r["feature"]) + (f" ({r['code']})" if "code" in r else "")
            cells.append(f"{label}: {r['feature']} = {r['value']:g}, {r['contribution']:+.3f}")
        cells += [""] * (3 - len(cells))
        z = float(explained["boundary_log_odds"][i])
        print(f"| {i + 1} | {result['score'][i]:.3f} | {z:+.3f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
