"""SageMaker training adapter: ``/opt/ml`` files in, model and evaluation out, failures reported.

The toolkit's ``train`` calls :func:`main` (``SAGEMAKER_TRAINING_MODULE=costaware.sagemaker_train:main``).
Any :class:`~costaware.errors.InputError` becomes the toolkit's ``ClientError``, so
``/opt/ml/output/failure`` gets our one-line reason and the process exits 1; so does
:class:`~costaware.checkpoints.TrainingInterrupted` (SIGTERM: checkpoint saved, job not completed).
Never ``sys.exit``: the toolkit reports a ``SystemExit`` as success.
"""

from __future__ import annotations

import json
import logging
import os
import traceback

from sagemaker_training import environment, errors

from . import artifact, data, hyperparameters, training
from .checkpoints import CheckpointStore, StopRequest, TrainingInterrupted, stop_on_sigterm
from .errors import DataError, InputError

logger = logging.getLogger("costaware")
CHANNELS = ("train", "validation", "test")
MAX_REASON = 1000  # SageMaker shows the first 1,024 characters of the failure file


class TrainingInputError(errors.ClientError):
    """A one-line, user-facing reason for a failed training job."""


def _read_json(path: str, default):
    if not os.path.exists(path):
        return default
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None


def run(base_dir: str, log=training.print_line) -> training.TrainingResult:
    """Train from the SageMaker tree at ``base_dir`` (``/opt/ml``).

    SIGTERM (spot interruption, StopTrainingJob) ends training after the current round; with
    checkpointing on (``base_dir/checkpoints`` exists) a checkpoint is saved first, and a rerun
    resumes from the newest checkpoint there.
    """
    with stop_on_sigterm(StopRequest()) as stop:
        return _run(base_dir, log, stop)


def _run(base_dir: str, log, stop: StopRequest) -> training.TrainingResult:
    config_dir = os.path.join(base_dir, "input", "config")
    raw = _read_json(os.path.join(config_dir, "hyperparameters.json"), {})
    if not isinstance(raw, dict):
        raise InputError("hyperparameters.json must hold a JSON object")
    settings = hyperparameters.parse(raw)
    channel_config = _read_json(os.path.join(config_dir, "inputdataconfig.json"), None)
    data_dir = os.path.join(base_dir, "input", "data")
    if channel_config is None:  # local runs without a config: whatever channel directories exist
        channel_config = {c: {} for c in CHANNELS if os.path.isdir(os.path.join(data_dir, c))}
    _check_channel_config(channel_config)
    unknown = sorted(set(channel_config) - set(CHANNELS))
    if unknown:
        raise InputError(f"unknown channel(s) {', '.join(unknown)}; valid channels: {', '.join(CHANNELS)}")
    if "train" not in channel_config:
        raise DataError("the 'train' channel is required (inputdataconfig.json has "
                        f"{', '.join(sorted(channel_config)) or 'no channels'})")

    datasets = {}
    for name in CHANNELS:
        if name not in channel_config:
            continue
        content_type = channel_config[name].get("ContentType", "text/csv")
        options = data.options_from_settings(settings, content_type)
        loaded = data.load_channel(os.path.join(data_dir, name), content_type, options)
        datasets[name] = loaded if name == "train" else data.align_to(datasets["train"], loaded)
        log(f"channel {name}: {loaded.rows} rows, {len(loaded.feature_names)} features")

    checkpoint_dir = os.path.join(base_dir, "checkpoints")
    store = CheckpointStore(checkpoint_dir, log=log) if os.path.isdir(checkpoint_dir) else None
    result = training.train(settings, datasets["train"], datasets.get("validation"),
                            datasets.get("test"), log=log, checkpoints=store, stop=stop)
    model_dir = os.path.join(base_dir, "model")
    artifact.save(model_dir, result.booster, datasets["train"].feature_names, result.policy, {
        "thresholds": result.thresholds,
        "metrics": {name: ev["chosen_threshold"] for name, ev in result.evaluation.items()},
        "best_iteration": result.best_iteration,
        "rounds_trained": result.rounds_trained,
        "hyperparameters": dict(settings),
        "rows": {name: d.rows for name, d in datasets.items()},
    })
    output_data = os.path.join(base_dir, "output", "data")
    os.makedirs(output_data, exist_ok=True)
    with open(os.path.join(output_data, "evaluation.json"), "w", encoding="utf-8") as handle:
        json.dump({"thresholds": result.thresholds, "channels": result.evaluation}, handle, indent=2)
        handle.write("\n")
    _write_report(output_data, result, settings, log)
    log(f"model saved to {model_dir}; decision threshold {result.policy.threshold:.6g} "
        f"({result.policy.threshold_source}), Bayes threshold {result.thresholds['bayes']:.6g}")
    return result


def _check_channel_config(config) -> None:
    """inputdataconfig.json: ``{channel: {"ContentType": "...", ...}}`` (SageMaker writes more keys)."""
    if not isinstance(config, dict):
        raise InputError(f"inputdataconfig.json must hold a JSON object of channels, not "
                         f"{type(config).__name__} {json.dumps(config)[:60]}")
    for name, entry in config.items():
        if not isinstance(entry, dict):
            raise InputError(f"inputdataconfig.json: channel '{name}' must be a JSON object (such as "
                             f'{{"ContentType": "text/csv"}}), not {json.dumps(entry)[:60]}')
        content_type = entry.get("ContentType", "text/csv")
        if not isinstance(content_type, str):
            raise InputError(f"inputdataconfig.json: channel '{name}': ContentType must be a string "
                             f"such as \"text/csv\", not {json.dumps(content_type)[:60]}")


def _write_report(output_data: str, result: training.TrainingResult, settings, log) -> None:
    """Charts and report.html; a failure here is logged, not fatal: the model is already saved."""
    from . import report  # matplotlib is imported only when a report is written

    policy = result.policy
    views = [
        report.ChannelView(
            name=name, label=ch.data.label, score=result.scores[name], row_costs=ch.row_costs,
            threshold=policy.threshold, bayes_threshold=result.thresholds["bayes"],
            sensitive=ch.sensitive, facet_name=settings.facet_column,
            group_thresholds=result.thresholds.get("group"),
            bias=(result.evaluation[name].get("bias") or {}).get("post_training"),
        )
        for name, ch in result.channels.items()
    ]
    summary = {
        "objective": settings.objective,
        **policy.costs.as_dict(),
        "decision threshold": f"{policy.threshold:.6g} ({policy.threshold_source})",
        "Bayes threshold": f"{result.thresholds['bayes']:.6g}",
        "rounds kept": result.best_iteration + 1,
    }
    if settings.facet_column:
        summary["facet (d)"] = f"{settings.facet_column} in {settings.facet_values_or_threshold}"
    try:
        files = report.write_report(output_data, views, "costaware training report", summary)
        log(f"report: {len(files)} files in {output_data}")
    except Exception:  # noqa: BLE001 - a chart must never fail a finished training job
        logger.warning("could not write the report:\n%s", traceback.format_exc())


def one_line(message: str) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def main() -> None:
    """Entry point for the toolkit's ``train``."""
    # The toolkit writes output/failure without creating output/; if that fails inside its error
    # handler it exits 0 and a failed job would be reported as Completed.
    os.makedirs(environment.output_dir, exist_ok=True)
    try:
        run(environment.base_dir)
    except InputError as exc:
        logger.error("training failed on bad input:\n%s", traceback.format_exc())
        raise TrainingInputError(one_line(exc)) from None
    except TrainingInterrupted as exc:
        # Not completed: a failure reason and exit 1 (SageMaker shows a spot-interrupted job as
        # interrupted whatever the container says; locally the failure file tells what happened).
        logger.error("%s", exc)
        raise TrainingInputError(one_line(exc)) from None
