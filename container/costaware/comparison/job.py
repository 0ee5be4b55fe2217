"""The image's ``compare`` (a processing job; also ``costaware compare``): champion or challenger,
by what their decisions cost.

Reads two variants' data capture (two production variants splitting traffic, or a production
variant and its shadow) and the ground truth; or, with ``--replay``, the champion's capture and
the challenger's model, scored on the champion's captured requests. Writes ``comparison.json``
and ``report.html`` into the output directory: each variant's realized cost per decision, the
difference (challenger minus champion) with its 95% interval, the probability that the
challenger is cheaper, the recommendation (promote, keep, or how many more labelled decisions),
the difference over time, per facet and in Clarify's bias metrics, and everything the reader
counted. A job that cannot run writes one line to ``/opt/ml/output/message`` and stderr, exit 1.

Each model is named by a directory holding its ``metadata.json`` (a model directory) or its
``model.tar.gz`` (or either file itself), or its baseline's ``constraints.json`` (or that file):
what the comparison needs of a model is its spec
(:class:`~costaware.monitoring.model_spec.ModelSpec`); a replay needs the challenger's model
itself.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from .. import storage
from ..errors import InputError
from ..monitoring.capture import Counts, read_ground_truth
from ..monitoring.decided_rows import DecidedRows
from ..monitoring.job import JobError, fail, failed, window_time, write_json
from . import difference, facets
from .arguments import DESCRIPTION, add_arguments
from .models import load_model_or_spec, replayed
from .variants import (NOT_TWINS, ComparisonError, check_comparable, choose_design,
                       facet_cells, label_dependence, pair, read_variant, realized_cost,
                       same_records)

UNTIMED = ("labelled decisions without an inferenceTime (left out of the difference over "
           "time, unless their twin has one)")
RESULT_FILE = "comparison.json"
REPORT_FILE = "report.html"
REPLAY_REFUSED = (
    "--replay scores the challenger on the champion's requests and prices its decisions at labels "
    "observed under the champion's decisions: valid only where the label does not depend on the "
    "decision (screening, churn), never where a refused case's outcome is never seen (credit)")


def _directory(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise JobError(f"{what} {path} is not a directory")
    return path


def _distinct_captures(champion: str, challenger: str) -> None:
    """The two variants' capture folders are neither the same nor one inside the other (the
    endpoint's folder holds every variant's): else a variant would be compared with itself,
    two models deciding alike."""
    a, b = os.path.realpath(champion), os.path.realpath(challenger)
    if os.path.commonpath([a, b]) in (a, b):
        raise JobError(f"--champion {champion} and --challenger {challenger} are the same capture "
                       "(or one holds the other): name each variant's own folder, "
                       "{endpoint}/{variant}")


def compare(args) -> dict:
    """The comparison (module docstring) as a JSON-ready dict; nothing written."""
    champion_spec, _ = load_model_or_spec(args.champion_model, "--champion-model")
    challenger_spec, challenger_model = load_model_or_spec(
        args.challenger_model, "--challenger-model", need_model=args.replay)
    check_comparable(champion_spec, challenger_spec)
    start = window_time(args.start_time, "--start-time")
    end = window_time(args.end_time, "--end-time")
    if start is not None and end is not None and start >= end:
        raise JobError(f"--start-time {args.start_time} is not before --end-time "
                       f"{args.end_time}: the window holds no decision")
    truth_counts = Counts()
    truth = _directory(args.ground_truth, "--ground-truth")
    labels = read_ground_truth(truth, champion_spec, truth_counts)
    champion_counts, challenger_counts = Counts(), Counts()
    if args.replay:
        if args.design == "unpaired":
            raise JobError("--replay is paired (both models decide the same captured requests): "
                           "--design unpaired does not apply")
        if not args.labels_independent_of_decision:
            raise JobError(REPLAY_REFUSED + "; say --labels-independent-of-decision if yours does "
                           "not depend on it")
        champion, challenger = read_variant(
            _directory(args.champion, "--champion"), champion_spec, champion_spec, labels,
            champion_counts, start, end,
            also=replayed(challenger_model, challenger_spec, champion_spec, champion_counts))
        challenger_counts = champion_counts
    else:
        champion_dir = _directory(args.champion, "--champion")
        challenger_dir = _directory(args.challenger, "--challenger")
        _distinct_captures(champion_dir, challenger_dir)
        champion = read_variant(champion_dir, champion_spec, champion_spec, labels,
                                champion_counts, start, end)
        challenger = read_variant(challenger_dir, challenger_spec, champion_spec, labels,
                                  challenger_counts, start, end)
    for rows, counts in ((champion, champion_counts), (challenger, challenger_counts)):
        untimed = int(np.count_nonzero((rows.label >= 0) & ~np.isfinite(rows.times)))
        if untimed and not (args.replay and rows is challenger):
            counts.add(UNTIMED, n=untimed)
    pairs = pair(champion, challenger, truth_counts)
    if not args.replay and same_records(champion, challenger, pairs):
        raise JobError(f"--challenger {args.challenger} holds the champion's own records (every "
                       "labelled request's record has the same eventId and answer in both): "
                       "name the challenger variant's own capture")
    design = choose_design(args.design, champion, challenger, len(pairs[0]))
    dependence = {"champion": label_dependence(champion)}
    if not args.replay:
        dependence["challenger"] = label_dependence(challenger)
    if args.replay and dependence["champion"]["evident"]:
        share = dependence["champion"]["labelled_share_by_decision"]
        raise JobError(f"{REPLAY_REFUSED}, and here it does: the share of labelled rows differs "
                       f"by the champion's decision ({share}, chi-square p = "
                       f"{dependence['champion']['p_value']:.2g})")
    _count_one_sided_truth(labels, champion, challenger, truth_counts, args.replay)
    result = _compared(champion, challenger, pairs, design, args.min_saving)
    result["design"] = "replay" if args.replay else design
    reused = truth_counts.seen.get(NOT_TWINS)
    if reused:
        result["caveats"].append(
            f"{reused} request keys name different requests in the two captures (an inference id "
            "reused across variants): each such key's label is applied to both, whichever "
            "request it was for")
    if champion_spec.facet_column and champion_spec.facet_index is None:
        result["caveats"].append(
            f"no comparison per facet: the requests do not carry the champion's facet column "
            f"{champion_spec.facet_column} (not a feature), so the captures cannot tell its "
            "groups")
    result["label_dependence"] = dependence
    caveat = _caveat(result["design"], dependence)
    if caveat:
        result["caveats"].append(caveat)
        if result["design"] != "unpaired":  # a shadow's decisions were never acted on
            result["recommendation"] = {
                "action": "none", "more_labels": None, "sequence_interval": None,
                "reason": caveat}
    result["priced_at"] = "the champion's costs (class costs and each request's own cost cells)"
    result["window"] = {"start_time": args.start_time, "end_time": args.end_time}
    result["counts"] = {"champion": champion_counts.to_dict(),
                        "challenger": (challenger_counts.to_dict() if not args.replay
                                       else "the champion's (replayed)"),
                        "ground_truth": truth_counts.to_dict()}
    return result


def _count_one_sided_truth(labels: dict, champion: DecidedRows, challenger: DecidedRows,
                           counts: Counts, replay: bool) -> None:
    """Ground-truth ids that met one variant's captures only (in a shadow comparison the other
    variant's twin is missing), or neither."""
    def ids(rows: DecidedRows) -> set:  # a row key's record id ("id#j": row j of "id")
        return {k if k in labels else k.rsplit("#", 1)[0]
                for k in rows.keys[rows.label >= 0] if k is not None}

    a, b = ids(champion), ids(challenger)
    counts.add("ground truth records matching no captured decision of either variant",
               n=len(set(labels) - a - b))
    if not replay:
        counts.add("ground truth records matching the champion's captures only", n=len(a - b))
        counts.add("ground truth records matching the challenger's captures only", n=len(b - a))


def _caveat(design: str, dependence: dict) -> str | None:
    evident = [name for name, test in dependence.items() if test["evident"]]
    if not evident:
        return None
    which = " and ".join(evident)
    if design == "unpaired":
        return (f"labels come more often after some decisions than others ({which}: chi-square "
                "p < 0.01): each variant is judged on the decisions whose outcome was seen")
    return (f"no recommendation: labels come more often after some of the {which}'s decisions "
            "(chi-square p < 0.01), so the outcomes of the decisions the shadow would have made "
            "instead are not seen")


def _compared(champion: DecidedRows, challenger: DecidedRows, pairs, design: str,
              min_saving: float) -> dict:
    cost_a, cost_b = realized_cost(champion), realized_cost(challenger)
    if design == "paired":
        ia, ib = pairs
    else:
        ia, ib = np.nonzero(champion.label >= 0)[0], np.nonzero(challenger.label >= 0)[0]
    paired = design == "paired"
    overall = difference.compared(cost_a[ia], cost_b[ib], paired)
    recommendation = difference.recommend(overall, min_saving)
    missing = _missing(champion, challenger, paired, len(ia))
    if missing:
        recommendation["reason"] = missing + "; " + recommendation["reason"]
    result = {
        "champion": {"decided_rows": len(champion), "labelled_rows": int(len(ia)),
                     "realized_cost": overall["champion"]},
        "challenger": {"decided_rows": len(challenger), "labelled_rows": int(len(ib)),
                       "realized_cost": overall["challenger"]},
        "difference": {key: overall[key] for key in
                       ("difference", "se", "df", "interval", "probability_challenger_cheaper",
                        "rows")},
        "recommendation": recommendation,
        "over_time": difference.over_time(champion.times[ia], cost_a[ia], challenger.times[ib],
                                          cost_b[ib], paired),
        "caveats": [],
    }
    short = difference.labels_short(overall) if overall.get("se") is not None else None
    if short is not None:
        have, need, what, g1 = short
        result["caveats"].append(
            f"the 95% interval may be too narrow: {have} {what}, and a mean of costs this skewed "
            f"(g1 = {g1:.2f}) is near normal only from about {need} of them (Cochran's rule)")
    if champion.sensitive is not None and challenger.sensitive is not None and len(ia) > 1:
        per_facet = facets.facet_differences(cost_a[ia], cost_b[ib], champion.sensitive[ia],
                                             challenger.sensitive[ib], paired,
                                             (champion.times[ia], challenger.times[ib]))
        bias = facets.bias_changes(facet_cells(champion, ia), facet_cells(challenger, ib), paired)
        result["facets"] = {name: {key: r[key] for key in
                                   ("difference", "interval", "rows", "over_time")}
                            for name, r in per_facet.items()}
        result["bias"] = bias
        result["flags"] = facets.flags(overall, per_facet, bias)
    return result


def _missing(champion: DecidedRows, challenger: DecidedRows, paired: bool, pairs: int
             ) -> str | None:
    """Why a side has nothing to compare yet (None: both have labelled decisions)."""
    for name, rows in (("champion", champion), ("challenger", challenger)):
        if len(rows) == 0:
            return f"the {name} has no captured decisions"
        if not (rows.label >= 0).any():
            return f"no ground truth matched the {name}'s {len(rows)} captured decisions yet"
    if paired and pairs == 0:
        return "no labelled request was decided by both variants (a paired comparison needs twins)"
    return None


def write(result: dict, output: str) -> dict:
    from ..model.artifact import json_safe
    from .report import render

    os.makedirs(output, exist_ok=True)
    written = {"comparison": write_json(output, RESULT_FILE, json_safe(result))}
    path = os.path.join(output, REPORT_FILE)
    storage.atomic_write(path, render(result).encode("utf-8"))
    written["report"] = path
    return written


class _Parser(argparse.ArgumentParser):
    """A usage error is also the processing job's one-line ExitMessage (exit 2)."""

    env: dict = {}

    def error(self, message: str):
        self.print_usage(sys.stderr)
        fail(self.env, f"compare: {message}")
        raise SystemExit(2)


def parser(env=None) -> argparse.ArgumentParser:
    p = add_arguments(_Parser(prog="compare", description=DESCRIPTION))
    p.env = {} if env is None else env
    return p


def compare_main(argv=None, env=None) -> int:
    """The image's ``compare``; ``costaware compare`` runs it too."""
    env = os.environ if env is None else env
    return run(parser(env).parse_args(argv), env)


def run(args, env) -> int:
    """The job on parsed arguments; 0, or 1 with its one-line reason (:func:`fail`)."""
    try:
        result = compare(args)
        written = write(result, args.output)
    except (InputError, ComparisonError, OSError) as exc:
        return failed(env, "compare", exc)
    print(summary(result) + f"\n  wrote {written['comparison']} and {written['report']}")
    return 0


def summary(result: dict) -> str:
    """What the job prints: the recommendation, both costs and the difference."""
    d, r = result["difference"], result["recommendation"]
    lines = [f"costaware compare ({result['design']}): {r['action'].upper()}: {r['reason']}"]
    for name in ("champion", "challenger"):
        side = result[name]
        cost = side["realized_cost"]
        lines.append(f"  {name}: {side['labelled_rows']:,} labelled of {side['decided_rows']:,} "
                     f"decided; realized cost per decision "
                     + ("n/a" if cost["mean"] is None else f"{cost['mean']:.6g}"))
    if d["interval"] is not None:
        lines.append(f"  challenger minus champion: {d['difference']:+.6g} per decision, 95% "
                     f"interval [{d['interval'][0]:.6g}, {d['interval'][1]:.6g}]; P(challenger "
                     f"cheaper) = {d['probability_challenger_cheaper']:.3f}")
    lines.extend(f"  FLAG: {flag}" for flag in result.get("flags", []))
    lines.extend(f"  caveat: {c}" for c in result["caveats"])
    return "\n".join(lines)
