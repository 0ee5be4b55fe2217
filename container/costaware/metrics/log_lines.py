"""Metric log lines and the SageMaker ``metric_definitions`` that parse them.

Each boosting round prints one line, fields separated by tabs (CloudWatch shows a tab as ``#011``):

    [12]\tvalidation:auc=0.98765432\tvalidation:logloss=0.1234\tvalidation:expected_cost=812.5 ...

At the end, the values of the kept model are printed once more for every evaluated channel, so the
last value a tuner reads is the final model's. Names are ``channel:metric``, never a suffix of one
another, so a regex ``channel:metric=(number)`` captures exactly one value. Every
``channel:metric=`` in the log has a published metric definition: a job's definitions are those of
the metrics its number of classes ``K`` logs (:func:`costaware.metrics.registry.logged_for`; 39 for
``K = 2``, ``metric_definitions.json``; 33 for ``K >= 3``, ``metric_definitions_multiclass.json``;
SageMaker allows 40 a job). The figures that have none (the other fairness metrics, the rule's
shifts, each class's recall) close the line in another form, ``validation, not published: dca
0.0123, shift -0.25``.
"""

from __future__ import annotations

import json
import math
import os
import re

from .. import config_files
from . import registry as metric_registry

CHANNELS = config_files.CHANNELS  # a metric definition per channel and metric
# every metric of costaware.metrics.registry a job's K logs is published, once per channel; these
# are printed when present, after "not published:" (no channel:name= form, no definition)
LOGGED_ONLY = ("shift", "shift_a", "shift_d", "dca", "dcr", "rd", "sd", "dar", "drr", "ad", "te",
               "cddpl", "ge")
NUMBER = r"([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
DEFINITIONS_FILES = {2: os.path.join(os.path.dirname(__file__), "metric_definitions.json"),
                     3: os.path.join(os.path.dirname(__file__), "metric_definitions_multiclass.json")}


def format_value(value: float) -> str:
    if not math.isfinite(value):  # a tuner cannot parse nan; say so in words instead
        return "nan"
    return f"{value:.8g}"


def directions() -> dict[str, str]:
    """metric -> "Maximize" | "Minimize", for every registered metric."""
    return {m.name: m.direction for m in metric_registry.all_metrics()}


def format_line(prefix: str, channel: str, metrics: dict, unpublished: dict | None = None) -> str:
    """The registered metrics as ``channel:name=value``, then the :data:`LOGGED_ONLY` ones and
    ``unpublished`` (name -> value) as ``channel, not published: name value, ...``."""
    fields = [f"{channel}:{name}={format_value(metrics[name])}" for name in directions()
              if metrics.get(name) is not None]
    others = {**{n: metrics[n] for n in LOGGED_ONLY if metrics.get(n) is not None},
              **(unpublished or {})}
    if others:
        fields.append(f"{channel}, not published: "
                      + ", ".join(f"{name} {format_value(v)}" for name, v in others.items()))
    return "\t".join([prefix, *fields])


def metric_definitions(classes: int | None = 2) -> list[dict]:
    """``[{"Name": "validation:auc", "Regex": "validation:auc=(...)"}, ...]`` for every metric a
    job with ``classes`` classes logs, per channel; None: every registered metric (to read any
    job's log here, where no limit applies)."""
    names = [m.name for m in (metric_registry.all_metrics() if classes is None
                              else metric_registry.logged_for(classes))]
    return [
        {"Name": f"{channel}:{name}", "Regex": f"{re.escape(channel)}:{name}={NUMBER}"}
        for channel in CHANNELS
        for name in names
    ]


def objective_direction(metric_name: str) -> str:
    return metric_registry.get(metric_name.split(":", 1)[1]).direction


def published_definitions(classes: int = 2) -> list[dict]:
    """The definitions the image publishes for a job with ``classes`` classes."""
    with open(DEFINITIONS_FILES[min(classes, 3)], encoding="utf-8") as handle:
        return json.load(handle)


if __name__ == "__main__":  # regenerates the published files
    for k, path in DEFINITIONS_FILES.items():
        with open(path, "w", encoding="utf-8") as out:
            json.dump(metric_definitions(k), out, indent=2)
            out.write("\n")
