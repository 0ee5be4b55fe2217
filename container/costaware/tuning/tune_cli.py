"""``costaware tune``'s command line: its options and exit codes."""

from __future__ import annotations

import sys

from . import config as cfg
from .local import TuneRequest, tune


def parse_reference(text: str) -> tuple[str, float, float]:
    """``LABEL=AUC,DPPL``: a published point to draw on the AUC-|DPPL| panel."""
    try:
        label, numbers = text.rsplit("=", 1)
        auc, dppl = (float(v) for v in numbers.split(","))
    except ValueError:
        raise cfg.ConfigError(f"--reference {text!r}: expected LABEL=AUC,DPPL") from None
    return label.strip(), dppl, auc


def main(args) -> int:
    try:
        tune(TuneRequest(
            args.tree, args.work, args.trials, args.objective, args.jobs, args.resume,
            tuple(args.range or ()), cfg.parse_statics(args.static or ()), args.sampler,
            args.seed, args.timeout or None, not args.no_baseline,
            tuple(parse_reference(r) for r in args.reference or ()), not args.quiet))
    except cfg.ConfigError as exc:
        print(f"costaware tune: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("costaware tune: interrupted; continue with --resume", file=sys.stderr)
        return 130
    return 0


def add_arguments(parser) -> None:
    parser.add_argument("--tree", required=True,
                        help="a prepared /opt/ml-shaped tree (its hyperparameters are the baseline)")
    parser.add_argument("--work", required=True,
                        help="directory for the study (study.db), trial trees and outputs")
    parser.add_argument("--trials", type=int, required=True,
                        help="complete trials the study should have (with --resume: in total)")
    parser.add_argument("--objective", default="combined",
                        help="combined | auc | cost | multi | a metric name (default combined)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="trials in parallel (default: the CPU count)")
    parser.add_argument("--resume", action="store_true", help="continue the study in --work")
    parser.add_argument("--range", action="append", metavar="NAME=LOW:HIGH[:SCALING]|a,b|off",
                        help="override a search range, add a categorical one, or turn one off")
    parser.add_argument("--static", action="append", metavar="KEY=VALUE",
                        help="fix a hyperparameter for every trial and the baseline (not searched)")
    parser.add_argument("--sampler", default="auto", choices=("auto", "tpe", "nsga2", "random"))
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per trial (0: none)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the untuned baseline run")
    parser.add_argument("--reference", action="append", metavar="LABEL=AUC,DPPL",
                        help="a published point to mark on the chart")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
