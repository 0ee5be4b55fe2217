"""A channel's rows as training and evaluation see them: the facet-d mask, group codes, the checks
that every host agrees on, train and validation joined, and the cross-fitting folds."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..cluster import SOLO, Cluster
from ..data.channel_files import Dataset
from ..errors import DataError, HyperparameterError
from ..metrics.clarify import sensitive_facet_index


@dataclass
class Channel:
    """A channel's rows with what evaluation needs: facet mask and group codes."""

    name: str
    data: Dataset
    sensitive: np.ndarray | None = None  # True: facet d
    groups: np.ndarray | None = None  # codes 0..n_groups-1, -1 without a group


def channels_of(settings, train: Dataset, validation: Dataset | None = None,
                test: Dataset | None = None) -> dict[str, Channel]:
    """The job's channels by name (train, then validation and test when given); a validation
    channel is required when it is what calibrates."""
    if settings.calibration_data == "validation" and validation is None:
        raise HyperparameterError("hyperparameter 'calibration_data' is 'validation' but the job "
                                  "has no validation channel; add one, or use 'cross_fit'")
    channels = {"train": Channel("train", train)}
    for name, data in (("validation", validation), ("test", test)):
        if data is not None:
            channels[name] = Channel(name, data)
    return channels


def sensitive_of(settings, channel: Channel) -> np.ndarray | None:
    """The facet-d mask of the channel's rows."""
    if not settings.facet_column:
        return None
    spec = settings.facet_values
    facet = channel.data.facet
    if facet.dtype.kind == "O":  # text values: categories only, and not at inference
        where = f"{channel.name} channel: facet '{settings.facet_column}' holds text ({facet[0]!r})"
        if not isinstance(spec, list):
            raise DataError(f"{where}, but facet_values_or_threshold {spec:g} is a threshold; give "
                            "the sensitive values as a JSON list, e.g. '[\"F\"]'")
        if settings.group_thresholds:
            raise DataError(f"{where}: group_thresholds needs a numeric facet (requests carry the "
                            "facet as a number); code the facet values as numbers")
    return sensitive_facet_index(facet, spec)


def facet_fitting(settings, channel: Channel) -> str | None:
    """What ``channel``'s rows fit that needs rows in both facets (a one-line reason), or None:
    the train channel always (a facet that matches none or all of the training rows is a
    misconfigured facet, not a channel to measure; the parity penalty trains on these rows, and
    a bounded rule is fitted on them when cross-fitting), and the validation channel where a
    bounded rule (``max_abs_dppl`` < 1) is fitted on it, or the penalty trains on it
    (cross-fitting joins it to train)."""
    if channel.name == "train":
        return "the train channel's rows define the facet's groups"
    if channel.name != "validation":
        return None
    if settings.max_abs_dppl < 1:
        return f"max_abs_dppl {settings.max_abs_dppl:g} is fitted on these rows"
    if settings.fairness_penalty > 0 and settings.calibration_data == "cross_fit":
        return f"fairness_penalty {settings.fairness_penalty:g} is trained on these rows"
    return None


def check_facets(settings, channel: Channel, cluster: Cluster, log: Callable[[str], None]) -> None:
    """Both facets present on ``channel``: refused where its rows fit something fair
    (:func:`facet_fitting`); elsewhere (a test channel, or rows only measured) its bias metrics
    are undefined, which the log says here and evaluation.json and the report say with them."""
    if channel.sensitive is None:
        return
    n_d, rows = (int(v) for v in cluster.sum([channel.sensitive.sum(), channel.sensitive.size]))
    if n_d not in (0, rows):
        return
    which = "no row" if n_d == 0 else "every row"
    where = (f"{channel.name} channel: facet '{settings.facet_column}' with "
             f"facet_values_or_threshold {settings.facet_values_or_threshold}: {which} is in the "
             f"sensitive group d")
    fitting = facet_fitting(settings, channel)
    if fitting:
        raise DataError(f"{where}; {fitting}, which needs rows in both facets")
    if cluster.is_first:
        log(f"warning: {where} (facet {'d' if n_d == 0 else 'a'} is empty): its bias metrics "
            "that compare the facets are undefined (nan in the log, null in evaluation.json)")


def check_classes(channel: Channel, settings, cluster: Cluster = SOLO, at_least: int = 1) -> None:
    positives, rows = (int(v) for v in cluster.sum([channel.data.label.sum(), channel.data.rows]))
    if rows == 0:  # (one host's loader refuses an empty channel before this)
        raise DataError(f"{channel.name} channel ({channel.data.source}): no rows on any of the "
                        f"{cluster.size} hosts")
    if positives in (0, rows):
        only = 1 if positives else 0
        rule = settings.label_values_or_threshold
        why = (f" (label_values_or_threshold {rule} matches {'every' if positives else 'no'} row)"
               if rule else "")
        raise DataError(
            f"{channel.name} channel ({channel.data.source}): all {rows} rows have label {only}"
            f"{why}; training and calibration need both classes")
    fewest = min(positives, rows - positives)
    if fewest < at_least:
        which = 1 if positives < rows - positives else 0
        raise DataError(
            f"{channel.name}: {fewest} rows of class {which}, fewer than the {at_least} "
            "cross-fitting folds: every fold needs rows of both classes; set cross_fit_folds "
            "lower (2 at least) or use calibration_data 'validation'")


def group_codes(channels: list[Channel], cluster: Cluster) -> int:
    """Codes of the group values shared by every channel and host (sorted values); sets each
    channel's ``groups``; returns the number of groups. Only the distinct values travel."""
    local = set()
    kinds = set()
    for ch in channels:
        g = ch.data.group
        if g is None:
            return 0
        if g.size:
            kinds.add("text" if g.dtype.kind == "O" else "number")
            values = g[~_missing(g)]
            local.update(v.item() if isinstance(v, np.generic) else v for v in np.unique(values))
    texts = cluster.gather_text(json.dumps({"kinds": sorted(kinds), "values": sorted(local, key=str)}))
    every, all_kinds = set(), set()
    for text in texts:
        part = json.loads(text)
        all_kinds.update(part["kinds"])
        every.update(part["values"])
    if len(all_kinds) > 1:
        raise DataError("the group column holds text in some files or hosts and numbers in others; "
                        "make the values alike")
    ordered = sorted(every)
    code = {v: i for i, v in enumerate(ordered)}
    for ch in channels:
        g = ch.data.group
        missing = _missing(g)
        ch.groups = np.array([-1 if m else code[v.item() if isinstance(v, np.generic) else v]
                              for v, m in zip(g, missing)], dtype=np.int64)
    return len(ordered)


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values], bool)


def concat(name: str, parts: list[Channel]) -> Channel:
    """Channels' rows one after another (train, then validation)."""
    if len(parts) == 1:
        return replace(parts[0], name=name)
    datas = [ch.data for ch in parts]

    def cat(values):
        return None if values[0] is None else np.concatenate(values)

    data = replace(Dataset.concat(datas), source=" and ".join(d.source for d in datas))
    return Channel(name, data, cat([ch.sensitive for ch in parts]), cat([ch.groups for ch in parts]))


def folds_of(label: np.ndarray, folds: int, seed: int, cluster: Cluster = SOLO,
             classes: int = 2, preceding: np.ndarray | None = None) -> np.ndarray:
    """Each row's cross-fitting fold, stratified: within each class the rows, in their order over
    every host (ranks in order), take the folds in turn from a seeded start, so that every fold
    holds ``1/folds`` of each class (to one row) whatever the number of hosts. ``label``: class
    indices ``0..classes-1`` (binary: 0/1); ``preceding``: each class's rows (over every host) of
    the channels that come before this one in the turn (see :func:`channel_folds`)."""
    y = np.asarray(label, dtype=np.int64)
    counts = cluster.gather(np.bincount(y, minlength=classes).astype(np.int64)
                            ).reshape(-1, classes)
    before = counts[:cluster.rank].sum(axis=0) + (0 if preceding is None else preceding)
    start = np.random.SeedSequence([seed, folds]).generate_state(classes) % folds
    out = np.empty(len(y), dtype=np.int64)
    for cls in range(classes):
        rows = np.flatnonzero(y == cls)
        out[rows] = (before[cls] + np.arange(len(rows)) + start[cls]) % folds
    return out


def channel_folds(labels: list[np.ndarray], folds: int, seed: int, cluster: Cluster = SOLO,
                  classes: int = 2) -> np.ndarray:
    """:func:`folds_of` for rows that are several channels' rows one after another on each host
    (train, then validation): the turn takes every host's train rows first, then every host's
    validation rows, so the folds are those of one host holding each channel's rows in the hosts'
    order (how many hosts share a channel's rows does not change them)."""
    out, preceding = [], np.zeros(classes, dtype=np.int64)
    for label in labels:
        out.append(folds_of(label, folds, seed, cluster, classes, preceding))
        preceding = preceding + cluster.sum(np.bincount(np.asarray(label, dtype=np.int64),
                                                        minlength=classes)).astype(np.int64)
    return np.concatenate(out)


def subset(channel: Channel, mask: np.ndarray) -> Channel:
    if mask.all():
        return channel

    def cut(values):
        return None if values is None else values[mask]

    return Channel(channel.name, channel.data.take(mask), cut(channel.sensitive),
                   cut(channel.groups))
