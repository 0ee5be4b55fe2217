"""CloudWatch metric files of a monitoring job (Model Monitor's bring-your-own contract): one
JSON object per line, as the ``PutMetricData`` API takes a datum (``MetricName``, ``Timestamp``,
``Dimensions``, ``Value``), dimensions ``Endpoint`` and ``MonitoringSchedule``."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime

from .. import storage

METRICS_FILE = "costaware-metrics.jsonl"


def metric_values(statistics: dict, violations: list) -> dict[str, float]:
    """The figures a dashboard or an alarm watches: per feature its drift distance and
    completeness (the built-in monitor's ``feature_baseline_drift_*`` and ``feature_non_null_*``),
    the score drift, and costaware's cost, calibration and bias figures."""
    out: dict[str, float] = {"rows": statistics["dataset"]["item_count"],
                             "violations": len(violations)}
    own = statistics["costaware"]
    for entry in statistics["features"] + own["scores"]:
        common = entry["numerical_statistics"]["common"]
        n = common["num_present"] + common["num_missing"]
        distance = (entry.get("costaware") or {}).get("distance")
        prefix = "score" if entry in own["scores"] else "feature"
        if distance is not None:
            out[f"{prefix}_baseline_drift_{entry['name']}"] = distance
        if n and prefix == "feature":
            out[f"feature_non_null_{entry['name']}"] = common["num_present"] / n
    unlabelled, labelled = own["unlabelled"], own["labelled"]
    for k, rate in enumerate(unlabelled.get("base_rate") or []):
        out[f"base_rate_{k}"] = rate["value"]
    out["expected_cost_per_decision"] = (unlabelled.get("expected_cost") or {}).get("value")
    out["dppl"] = (unlabelled.get("dppl") or {}).get("value")
    if labelled.get("rows"):
        out.update({"labelled_rows": labelled["rows"],
                    "realized_cost_per_decision": labelled["realized_cost"]["value"],
                    "savings": labelled["savings"], "cost_gap": labelled["cost_gap"]["value"],
                    "log_loss": labelled["log_loss"]["value"], "ece": labelled["ece"],
                    "auc": labelled["auc"]["value"]})
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def write_metrics(directory: str, statistics: dict, violations: list, env,
                  when: datetime) -> str:
    dimensions = [{"Name": "Endpoint", "Value": env.get("sagemaker_endpoint_name") or "unknown"},
                  {"Name": "MonitoringSchedule",
                   "Value": env.get("sagemaker_monitoring_schedule_name") or "unknown"}]
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [json.dumps({"MetricName": name, "Timestamp": stamp, "Dimensions": dimensions,
                         "Value": value, "Unit": "None"}, allow_nan=False)
             for name, value in metric_values(statistics, violations).items()]
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, METRICS_FILE)
    storage.atomic_write(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path
