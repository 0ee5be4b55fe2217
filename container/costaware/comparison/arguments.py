"""``compare``'s arguments (the processing job's and ``costaware compare``'s), apart from the
job so that building the ``costaware`` command line does not import the job's numerics."""

from __future__ import annotations

import argparse
import math

PROCESSING = "/opt/ml/processing"

DESCRIPTION = ("Champion or challenger: two variants' decisions compared by their realized cost "
               "(a processing job: the defaults are its paths).")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--champion", default=f"{PROCESSING}/input/champion",
                   help="the champion variant's data capture (its {endpoint}/{variant} folder)")
    p.add_argument("--challenger", default=f"{PROCESSING}/input/challenger",
                   help="the challenger's data capture (a production or shadow variant)")
    p.add_argument("--ground-truth", default=f"{PROCESSING}/input/ground_truth",
                   help="ground-truth records (Model Monitor's merge format)")
    p.add_argument("--champion-model", default=f"{PROCESSING}/input/champion_model",
                   help="the champion's model directory, its model.tar.gz (or the folder "
                        "holding it), or its baseline constraints.json")
    p.add_argument("--challenger-model", default=f"{PROCESSING}/input/challenger_model",
                   help="the challenger's, likewise (its model itself for --replay)")
    p.add_argument("--output", default=f"{PROCESSING}/output")
    p.add_argument("--design", choices=("auto", "paired", "unpaired"), default="auto",
                   help="paired: both variants decided the same requests (a shadow); unpaired: "
                        "split traffic; auto: paired when most labelled requests have a twin")
    p.add_argument("--replay", action="store_true",
                   help="score the challenger's model on the champion's captured requests")
    p.add_argument("--labels-independent-of-decision", action="store_true",
                   help="the outcome is seen whatever was decided (screening, churn): required "
                        "by --replay")
    p.add_argument("--min-saving", type=_non_negative, default=0.0,
                   help="the least saving per decision worth a switch (cost units; default 0)")
    p.add_argument("--start-time", help="only decisions at or after this time (ISO 8601)")
    p.add_argument("--end-time", help="only decisions before this time (ISO 8601)")
    return p


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value
