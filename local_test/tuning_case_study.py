"""The fairness-tuning case study, reproduced: the table and the charts of docs/tuning.md.

For each seed of the synthetic foreign workers (``prepare_german_credit.py --synthetic 100``):
three ``costaware tune`` studies of ``--trials`` trials each on the same tree — on AUC alone, on the
combined objective (both without the parity penalty, as the study searched XGBoost only), and
multi-objective (AUC up, |DPPL| down, expected cost down; the penalty may be used). Prints the
chosen trials' AUC / |DPPL| on validation (where they were chosen) and on test (held out), with the
untuned baseline, as a Markdown table; with ``--docs DIR`` also writes the first seed's charts
there (``tuning-case-study.png``: the three studies' trials; ``tuning-pareto-multi.png``: the
multi-objective study's own chart).

    python local_test/tuning_case_study.py [--work DIR] [--seeds 1,2] [--trials 30] [--docs docs]

Needs the ``tune`` extra (optuna). Takes minutes: every trial is a real training run.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
STATICS = ["facet_is_feature=true", "cost_fp=1", "num_round=100", "eta=0.3", "max_depth=6"]
STUDY = {"case study": (0.74, 0.75), "combined": (0.72, 0.43)}  # the published AUC / |DPPL|
STUDIES = (("auc", "tuned on AUC (the study's baseline)", ["--range", "fairness_penalty=off"]),
           ("combined", "tuned on the combined objective", ["--range", "fairness_penalty=off"]),
           ("multi", "multi-objective, with `fairness_penalty`", []))


def prepare(base: str, seed: int) -> None:
    subprocess.run([sys.executable, os.path.join(HERE, "prepare_german_credit.py"), base,
                    "--synthetic", "100", "--seed", str(seed), *STATICS], check=True,
                   stdout=subprocess.DEVNULL)


def tune(tree: str, work: str, objective: str, extra: list[str], trials: int) -> None:
    references = ["--reference", f"study: AUC only={STUDY['case study'][0]},{STUDY['case study'][1]}",
                  "--reference", f"study: combined={STUDY['combined'][0]},{STUDY['combined'][1]}"]
    command = ["costaware", "tune", "--tree", tree, "--work", work, "--trials", str(trials),
               "--objective", objective, "--jobs", "2", "--seed", "1", "--range",
               "num_round=10:100", *extra, "--quiet", *(references if objective == "multi" else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def pair(row: dict, channel: str) -> str:
    return f"{float(row[f'{channel}:auc']):.2f} / {float(row[f'{channel}:dppl']):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=tempfile.mkdtemp(prefix="costaware-case-study-"))
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--docs", help="write the first seed's charts into this directory")
    args = parser.parse_args()
    from costaware.tuning.trials import compare_studies, read_trials

    seeds = [int(s) for s in args.seeds.split(",")]
    cells: dict[str, list[str]] = {"untuned (XGBoost defaults)": []}
    notes = []
    for seed in seeds:
        tree = os.path.join(args.work, f"seed-{seed}", "tree")
        prepare(tree, seed)
        for objective, label, extra in STUDIES:
            work = os.path.join(args.work, f"seed-{seed}", objective)
            tune(tree, work, objective, extra, args.trials)
            rows = read_trials(os.path.join(work, "trials.csv"))
            chosen = next(r for r in rows if r.get("chosen") == "True")
            if chosen["trial"] == "baseline":
                raise SystemExit(f"{work}: no trial was chosen")
            if objective == "auc":
                baseline = next(r for r in rows if r["trial"] == "baseline")
                cells["untuned (XGBoost defaults)"] += [pair(baseline, "validation"),
                                                        pair(baseline, "test")]
            mark = ""
            if chosen.get("validation_decided_1") in (0.0, 1.0):
                mark = " ¹"
                notes.append(f"seed {seed}, {objective}: the chosen trial decides the same for "
                             "every validation row")
            cells.setdefault(label, [])
            cells[label] += [pair(chosen, "validation") + mark, pair(chosen, "test") + mark]
    header = ["model", "case study"] + [f"seed {s}, {c}" for s in seeds for c in ("validation", "test")]
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    published = {"tuned on AUC (the study's baseline)": "0.74 / 0.75",
                 "tuned on the combined objective": "0.72 / 0.43"}
    for label, values in cells.items():
        print(f"| {label} | {published.get(label, '')} | " + " | ".join(values) + " |")
    for note in notes:
        print(f"¹ {note}")
    if args.docs:
        first = os.path.join(args.work, f"seed-{seeds[0]}")
        compare_studies([os.path.join(first, o) for o, _, _ in STUDIES],
                        ["tuned on AUC", "tuned on the combined objective", "multi-objective"],
                        os.path.join(args.docs, "tuning-case-study.png"),
                        references=[("study: AUC only", 0.75, 0.74), ("study: combined", 0.43, 0.72)],
                        title=f"The fairness case study, seed {seeds[0]}: AUC against |DPPL| "
                              "(validation)")
        shutil.copy(os.path.join(first, "multi", "pareto.png"),
                    os.path.join(args.docs, "tuning-pareto-multi.png"))
        print(f"wrote {args.docs}/tuning-case-study.png and {args.docs}/tuning-pareto-multi.png")
    print(f"studies under {args.work}")


if __name__ == "__main__":
    main()
