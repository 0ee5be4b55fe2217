"""SageMaker training adapter: ``/opt/ml`` files in, model and evaluation out, failures reported.

The toolkit's ``train`` calls :func:`main` (``SAGEMAKER_TRAINING_MODULE=costaware.sagemaker.training_job:main``).
Any :class:`~costaware.errors.InputError` becomes the toolkit's ``ClientError``, so
``/opt/ml/output/failure`` gets our one-line reason and the process exits 1; so does
:class:`~costaware.training.checkpoints.TrainingInterrupted` (SIGTERM: checkpoint saved, job not completed).
A file that cannot be written (a full volume, a read-only mount) is a one-line reason naming it
too; the model and output directories are checked for that before the data is read. Never
``sys.exit``: the toolkit reports a ``SystemExit`` as success. :data:`outcome` tells costaware's
``train`` (:mod:`costaware.sagemaker.entry`) how the job really ended, whatever the toolkit then
manages to write or exits with.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import traceback
from dataclasses import dataclass

import numpy as np
from sagemaker_training import environment, errors

from .. import config_files, storage
from ..model import artifact
from ..data import channel_files as data
from ..data import external_features
from ..data.channel_batches import ChannelBatches, channel_bytes, read_in_batches
from .. import machine
from ..config import hyperparameters
from ..training import multihost
from ..training import pipeline as training
from ..training.class_kinds import kind_of
from ..cluster import SOLO, Cluster
from ..training.checkpoints import CheckpointStore, StopRequest, TrainingInterrupted, stop_on_sigterm
from ..errors import DataError, HyperparameterError, InputError

logger = logging.getLogger("costaware")
CHANNELS = config_files.CHANNELS
# The in-memory path's peak over the channels' size (decompressed), imports aside:
# 828 MiB for 346 MiB of CSV, 2.4x (`bench_training.py --memory`: 1,031 MiB, 203 of them the
# imports), with a margin
IN_MEMORY_FACTOR = 3.5
MAX_REASON = 1000  # SageMaker shows the first 1,024 characters of the failure file


class TrainingInputError(errors.ClientError):
    """A one-line, user-facing reason for a failed training job."""


@dataclass(frozen=True)
class Outcome:
    """How :func:`main` ended: ``reason`` is None when the job finished, and ``model_dir`` is where
    this host saved the model (None on a host that saves none)."""

    reason: str | None
    model_dir: str | None = None


outcome: Outcome | None = None  # set by main(); None while it has not run or not ended


def run(base_dir: str, log=training.print_line) -> training.TrainingResult | None:
    """Train from the SageMaker tree at ``base_dir`` (``/opt/ml``).

    SIGTERM (spot interruption, StopTrainingJob) ends training after the current round; with
    checkpointing on (``base_dir/checkpoints`` exists) a checkpoint is saved first, and a rerun
    resumes from the newest checkpoint there.

    With several hosts in ``input/config/resourceconfig.json``, this host trains together with the
    others (:mod:`costaware.training.multihost`); only the first host writes the model and returns the
    result, the others return ``None``.
    """
    machine.return_freed_memory()
    with stop_on_sigterm(StopRequest()) as stop:
        return _run(base_dir, log, stop)


def _run(base_dir: str, log, stop: StopRequest) -> training.TrainingResult | None:
    config_dir = os.path.join(base_dir, "input", "config")
    settings = hyperparameters.parse(
        config_files.read_object(os.path.join(config_dir, "hyperparameters.json"), {}))
    channel_config = config_files.read_object(os.path.join(config_dir, "inputdataconfig.json"), None)
    data_dir = os.path.join(base_dir, "input", "data")
    for directory in output_directories(base_dir):  # found now, not after all the training
        storage.check_writable(directory)
    if channel_config is None:  # local runs without a config: whatever channel directories exist
        channel_config = {c: {} for c in CHANNELS if os.path.isdir(os.path.join(data_dir, c))}
    config_files.check_channel_config(channel_config)
    unknown = sorted(set(channel_config) - set(CHANNELS))
    if unknown:
        raise InputError(f"unknown channel(s) {', '.join(unknown)}; valid channels: {', '.join(CHANNELS)}")
    if "train" not in channel_config:
        raise DataError("the 'train' channel is required (inputdataconfig.json has "
                        f"{', '.join(sorted(channel_config)) or 'no channels'})")
    job = Job(base_dir, settings, channel_config, log, stop)
    hosts = multihost.read_host_config(config_dir)
    if hosts is None or not hosts.multi_host:
        return job.train(SOLO, [])
    return _run_multi_host(job, hosts)


def _run_multi_host(job: "Job", hosts: multihost.HostConfig) -> training.TrainingResult | None:
    """Several hosts (see :mod:`costaware.training.multihost`): the hosts with train data train together;
    the first of them writes the model and the evaluation."""
    log, me = job.log, hosts.current_host
    if job.settings.tree_method == "exact":
        raise HyperparameterError("hyperparameter 'tree_method': exact is single-host only "
                                  f"(XGBoost has no distributed exact method); this job has "
                                  f"{len(hosts.hosts)} hosts: use hist or approx")
    members = list(hosts.hosts)
    if _distribution(job.channel_config, "train") == "ShardedByS3Key":
        channels = [name for name in CHANNELS if name in job.channel_config]
        mine = "".join("1" if data.has_data_files(os.path.join(job.data_dir, name)) else "0"
                       for name in channels)
        with multihost.joined(members, me, hosts.port, hosts.peer_timeout, log,
                              "the meeting (which hosts have train data)") as meeting:
            with multihost.peer_failures(meeting):
                flags = meeting.gather_text(mine)
        members = [host for host, flag in zip(meeting.hosts, flags) if flag[0] == "1"]
        if not members:
            raise DataError(f"no host received train data: the train channel (ShardedByS3Key) is "
                            f"empty on all {len(hosts.hosts)} hosts")
        # A host without train files leaves the job; its validation or test files would be lost.
        stranded = [(host, name) for host, flag in zip(meeting.hosts, flags) if flag[0] == "0"
                    for name, has in zip(channels, flag) if has == "1"]
        if stranded:
            host, name = stranded[0]
            raise DataError(f"host {host} received {name} files but no train files "
                            "(ShardedByS3Key): it cannot take part, and its rows would be left "
                            f"out; give the train channel at least {len(hosts.hosts)} files, or "
                            f"make the {name} channel FullyReplicated")
        if me not in members:
            log(f"host {me}: the train channel gave this host no files (ShardedByS3Key); it takes "
                f"no part in training, which runs on {', '.join(members)}")
            return None
    if len(members) == 1:
        log(f"host {me}: the only host with train data; training on one host")
        return job.train(SOLO, members)
    with multihost.joined(members, me, hosts.port + 1, hosts.peer_timeout, log) as cluster:
        with multihost.peer_failures(cluster):
            return job.train(cluster, members)


def output_directories(base_dir: str) -> tuple[str, ...]:
    """Where a job writes: the model, the evaluation and report, and the success or failure file."""
    return (os.path.join(base_dir, "model"), os.path.join(base_dir, "output", "data"),
            os.path.join(base_dir, "output"))


def _distribution(channel_config: dict, name: str) -> str:
    return channel_config[name].get("S3DistributionType", "FullyReplicated")


class Job:
    """One training job's inputs; :meth:`train` runs it on a cluster of one or more hosts."""

    def __init__(self, base_dir: str, settings, channel_config: dict, log, stop: StopRequest):
        self.base_dir = base_dir
        self.settings = settings
        self.channel_config = channel_config
        self.data_dir = os.path.join(base_dir, "input", "data")
        self.log = log
        self.stop = stop

    def train(self, cluster: Cluster, hosts: list[str]) -> training.TrainingResult | None:
        external = self.external_memory(cluster)
        datasets = self.load(cluster, external)
        if external:
            datasets = self.hold_out(datasets, cluster)
        features = datasets["train"].feature_names
        unknown = sorted(set(self.settings.reason_table or ()) - set(features))
        if unknown:
            raise HyperparameterError(
                f"hyperparameter 'reason_texts': {json.dumps(unknown[0])} is not a feature "
                f"(features: {', '.join(features)[:300]})")
        checkpoint_dir = os.path.join(self.base_dir, "checkpoints")
        store = None
        if os.path.isdir(checkpoint_dir):
            if cluster.size == 1:
                store = CheckpointStore(checkpoint_dir, log=self.log)
            else:
                self.log(f"checkpoints: off when training on {cluster.size} hosts (not supported "
                         "yet); a stopped job restarts from round 0")
        settings = (dataclasses.replace(self.settings, calibration_data="validation")
                    if external else self.settings)
        result = training.train(settings, datasets["train"], datasets.get("validation"),
                                datasets.get("test"), log=self.log, checkpoints=store,
                                stop=self.stop, cluster=cluster)
        if result is None:
            self.log(f"host {cluster.host}: training done; {cluster.hosts[0]} writes the model")
            return None
        _write_outputs(self.base_dir, result, self.settings, hosts, self.log)
        try:
            _write_baseline(self.base_dir, result, datasets, self.settings.seed, self.log)
        except (InputError, ValueError) as exc:  # the model stands; monitoring needs a baseline
            self.log(f"monitoring baseline: not written ({exc}); make one with suggest-baseline")
        return result

    def external_memory(self, cluster: Cluster) -> bool:
        """Whether to train from external memory (hyperparameter ``external_memory``; 'auto': when
        the channels, read into memory, would need more than the memory available on any host:
        :data:`IN_MEMORY_FACTOR` times their size once decompressed)."""
        mode = self.settings.external_memory
        if mode != "auto":
            if mode == "true" and cluster.is_first:
                self.log("external memory: on (hyperparameter external_memory true)")
            return mode == "true"
        size = 0
        for name in CHANNELS:
            directory = os.path.join(self.data_dir, name)
            if name not in self.channel_config or not data.has_data_files(directory):
                continue  # (a missing or empty channel is load's to refuse, or to leave empty)
            try:
                size += channel_bytes(directory, self.channel_config[name].get("ContentType",
                                                                                "text/csv"))
            except InputError:
                pass  # (load names what is wrong with the files)
        available = machine.available_memory()
        need = IN_MEMORY_FACTOR * size
        over = exceeds(need, available)
        external = bool(cluster.sum([float(over)])[0] > 0)  # one host short: every host streams
        if external and cluster.is_first:
            self.log(f"external memory: the channels ({size / 2**20:,.0f} MiB) would need about "
                     f"{need / 2**20:,.0f} MiB in memory, more than the "
                     f"{available / 2**20:,.0f} MiB available"
                     + ("" if over else " on another host") + ": training from external memory")
        return external

    def hold_out(self, datasets: dict, cluster: Cluster) -> dict:
        """External memory: the held-out rows are the validation channel's, else a seeded share
        of train's rows (their features read into memory)."""
        if "validation" in datasets:
            if cluster.is_first:
                self.log("external memory: held out: the validation channel (left in its "
                         "files); no cross-fitting")
            return datasets
        train, held = external_features.split_held_out(datasets["train"],
                                                       self.settings.seed + cluster.rank)
        if cluster.is_first:
            self.log(f"external memory: held out: a seeded random {held.rows} of train's "
                     f"{train.rows + held.rows} rows (every metric of the 'validation' channel is "
                     "theirs); no cross-fitting")
        return {**datasets, "train": train, "validation": held}

    def load(self, cluster: Cluster, external: bool = False) -> dict:
        """This host's rows of every channel (``external``: every channel's features left in
        their files).

        ``FullyReplicated`` channels (every host has all files): host ``rank`` keeps its block of
        rows, so the blocks in rank order are the channel's rows in order. ``ShardedByS3Key``: the
        host's own files; a validation or test shard without files is empty on that host. Any
        host's data error stops all hosts, each naming the host at fault.
        """
        loaded, options, problem = {}, {}, None
        try:
            for name in CHANNELS:
                if name not in self.channel_config:
                    continue
                content_type = self.channel_config[name].get("ContentType", "text/csv")
                options[name] = data.options_from_settings(self.settings, content_type)
                directory = os.path.join(self.data_dir, name)
                sharded = _distribution(self.channel_config, name) == "ShardedByS3Key"
                if cluster.size > 1 and sharded and name != "train" \
                        and not data.has_data_files(directory):
                    loaded[name] = None  # no rows here; shaped like train below
                    continue
                if external:
                    loaded[name] = external_features.read_channel(ChannelBatches(
                        directory, content_type, options[name], batch_rows(), self.log))
                else:
                    loaded[name] = read_in_batches(directory, content_type, options[name],
                                                   batch_rows(), self.log)
        except InputError as exc:
            problem = exc
        cluster.agree(problem)
        datasets, problem = {}, None
        try:
            for name, dataset in loaded.items():
                if cluster.size > 1 and _distribution(self.channel_config, name) != "ShardedByS3Key":
                    dataset = _share(cluster, name, dataset)
                datasets[name] = dataset
        except InputError as exc:
            problem = exc
        cluster.agree(problem)
        try:
            datasets["train"] = _align_hosts(cluster, datasets["train"])
            for name, dataset in datasets.items():
                if name == "train":
                    continue
                directory = os.path.join(self.data_dir, name)
                datasets[name] = (data.Dataset.empty(datasets["train"].feature_names, options[name],
                                                     directory)
                                  if dataset is None else data.align_to(datasets["train"], dataset))
        except InputError as exc:
            problem = exc
        cluster.agree(problem)
        where = f"host {cluster.host}: " if cluster.size > 1 else ""
        for name, dataset in datasets.items():
            self.log(f"{where}channel {name}: {dataset.rows} rows, "
                     f"{len(dataset.feature_names)} features")
        return datasets


def exceeds(need: float, available: int | None) -> bool:
    """Whether reading the channels into memory would need more than is available (unknown
    available memory: it would not)."""
    return available is not None and need > available


def batch_rows() -> int:
    """Rows a channel is read in at a time (and, from external memory, a batch XGBoost is fed):
    ``COSTAWARE_BATCH_ROWS`` (for tests, and for very wide rows), else
    :data:`~costaware.data.external_features.BATCH_ROWS`."""
    return config_files.env_number(os.environ, "COSTAWARE_BATCH_ROWS", external_features.BATCH_ROWS,
                                   int, 1, 2**31 - 1, "a whole number of rows from 1")


def _share(cluster: Cluster, name: str, dataset: data.Dataset) -> data.Dataset:
    """This host's block of a replicated channel's rows (every host must have read the same)."""
    rows = cluster.gather(np.array([dataset.rows], dtype=np.int64))
    if len(set(rows.tolist())) > 1:
        counts = ", ".join(f"{h} {n}" for h, n in zip(cluster.hosts, rows.tolist()))
        raise DataError(f"{name} channel is FullyReplicated but the hosts read different numbers "
                        f"of rows ({counts}); use ShardedByS3Key for per-host files")
    n = int(rows[0])
    first, last = cluster.rank * n // cluster.size, (cluster.rank + 1) * n // cluster.size
    return dataset.take(slice(first, last))


def _align_hosts(cluster: Cluster, train: data.Dataset) -> data.Dataset:
    """The first host's train columns, in its order, on every host (libsvm: the widest host's,
    the others' missing values above their largest index)."""
    names = [json.loads(text) for text in cluster.gather_text(json.dumps(train.feature_names))]
    reference = names[0]
    if train.sparse_columns:  # libsvm: every host's features run to the largest index of any host
        reference = max(names, key=len)
    if reference == train.feature_names:
        return train
    try:
        return data.align_to(dataclasses.replace(train, feature_names=reference), train)
    except DataError as exc:
        raise DataError(f"the train columns differ from host {cluster.hosts[0]}'s: {exc}") from None


def _write_outputs(base_dir: str, result: training.TrainingResult, settings, hosts: list[str],
                   log) -> None:
    """The model, evaluation.json and the report, for any number of classes."""
    model_dir = os.path.join(base_dir, "model")
    artifact.save(model_dir, result.booster, result.feature_names, result.policy, {
        "metrics": {name: _without_tables(ch.metrics) for name, ch in result.channels.items()},
        "held_out": result.held_out,
        "served_model": result.served_model,
        "loss_weights": {**result.weighting.to_dict(), "min_child_weight": result.min_child_weight},
        "best_iteration": result.best_iteration,
        "rounds_trained": result.rounds_trained,
        "hyperparameters": dict(settings),
        "rows": result.rows,
        "reasons_for": settings.reasons_for,
        **({"reason_texts": settings.reason_table} if settings.reason_table else {}),
        **({"training_hosts": hosts} if len(hosts) > 1 else {}),
    })
    output_data = os.path.join(base_dir, "output", "data")
    _write_evaluation(output_data, evaluation_document(result))
    if settings.report:
        _write_report(output_data, result, settings, log)
    else:
        log("report: not written (hyperparameter report is false)")
    log(f"model saved to {model_dir}; {kind_of(settings).describe(result.policy)}")


def _write_baseline(base_dir: str, result: training.TrainingResult, datasets: dict, seed: int,
                    log) -> None:
    """The model's monitoring baseline (:mod:`costaware.monitoring.baseline`): in
    ``model/baseline/`` (it travels in model.tar.gz) and ``output/data/baseline/``. The train
    channel's rows give the columns' statistics; the test channel's rows, scored by the model,
    the rest; without test rows, the held-out rows at their held-out probabilities (a validation
    channel left in its files: read in, or a seeded sample of 200,000 of its rows)."""
    from ..monitoring import baseline
    from ..monitoring.job import write_json

    with open(os.path.join(base_dir, "model", artifact.METADATA_FILE), encoding="utf-8") as handle:
        metadata = json.load(handle)
    spec = baseline.ModelSpec.of_metadata(metadata)
    test = datasets.get("test")
    held, held_p, sampled = result.held_out_rows, result.held_out_p, ""
    if external_features.is_external(held.features):  # (a validation channel left in its files)
        held, chosen = external_features.read_rows(held, seed)
        if chosen is not None:
            held_p = held_p[chosen]
            sampled = f"a seeded sample of {held.rows} of "
    columns_from, columns_source = datasets["train"], "the train channel"
    if external_features.is_external(columns_from.features):
        # (features left in their files: a column's statistics would read them once a column)
        columns_from, columns_source = held, f"{sampled}the held-out rows"
        test = None
    if test is not None and test.rows:
        scored, source = test, f"the test channel's {test.rows} rows, scored by the model"
        p = result.policy.probability(training.margin(result.booster, test, None,
                                                      result.policy.k))
    else:
        scored, p = held, held_p
        source = (f"{sampled}the {result.held_out_rows.rows} held-out rows ({result.held_out}) at "
                  "their held-out probabilities")
    statistics, constraints = baseline.documents(spec, columns_from, scored, p, source)
    for directory in (os.path.join(base_dir, "model", artifact.BASELINE_DIR),
                      os.path.join(base_dir, "output", "data", artifact.BASELINE_DIR)):
        os.makedirs(directory, exist_ok=True)
        write_json(directory, baseline.STATISTICS_FILE, statistics)
        write_json(directory, baseline.CONSTRAINTS_FILE, constraints)
    log(f"monitoring baseline: model/baseline/ ({len(statistics['features'])} columns from "
        f"{columns_source}; scores, costs and calibration from {source})")


def _write_evaluation(output_data: str, document: dict) -> None:
    """evaluation.json, whole or not at all."""
    os.makedirs(output_data, exist_ok=True)
    storage.atomic_write(os.path.join(output_data, "evaluation.json"),
                         (json.dumps(document, indent=2, allow_nan=False) + "\n").encode("utf-8"))


TABLES = ("reliability", "reliability_per_class", "confusion", "cell_costs")  # not in metadata


def _without_tables(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TABLES}


def evaluation_document(result: training.TrainingResult) -> dict:
    """evaluation.json: the policy, how the held-out rows were made, and per channel what scored
    it, what was fitted on it, its metrics at the served rule and at the alternatives."""
    return artifact.json_safe({
        "policy": result.policy.to_dict(),
        "held_out": result.held_out,
        "served_model": result.served_model,
        "calibrator_choice": (result.calibrator_choice.to_dict()
                              if result.calibrator_choice is not None else None),
        "loss_weights": {**result.weighting.to_dict(), "min_child_weight": result.min_child_weight},
        "rounds": {"trained": result.rounds_trained, "kept": result.best_iteration + 1},
        "channels": {
            name: {"scored_by": ch.scored_by, "fitted_on_these_rows": ch.fitted_on,
                   "served": ch.metrics, **ch.alternatives,
                   **({"bias": ch.bias} if ch.bias is not None else {}),
                   **({"mean_abs_contribution": _by_feature(ch.contributions,
                                                            result.feature_names)}
                      if ch.contributions else {})}
            for name, ch in result.channels.items()},
    })


def _by_feature(summary: dict, names: list[str]) -> dict:
    """A contribution summary keyed by feature name: ``rows``, ``all`` and per facet ``a``/``d``."""
    return {"rows": summary["rows"],
            **{group: dict(zip(names, values)) for group, values in summary.items()
               if group != "rows" and values is not None}}


def _write_report(output_data: str, result: training.TrainingResult, settings, log) -> None:
    """Charts and report.html, for any number of classes; a failure here is logged, not fatal: the
    model is already saved."""
    from ..report import html as report  # matplotlib is imported only when a report is written

    classes = result.policy.class_names if settings.multiclass else report.BINARY_CLASSES
    try:
        files = report.write_report(output_data, list(result.channels.values()),
                                    "costaware training report",
                                    report.job_summary(result, settings), settings.facet_column,
                                    result.feature_names, classes)
        log(f"report: {len(files)} files in {output_data}")
    except Exception:  # noqa: BLE001 - a chart must never fail a finished training job
        logger.warning("could not write the report:\n%s", traceback.format_exc())


def one_line(message: str) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def main() -> None:
    """Entry point for the toolkit's ``train``; sets :data:`outcome`."""
    global outcome
    outcome = None
    try:
        # The toolkit writes output/failure without creating output/; if that fails inside its
        # error handler it exits 0 (costaware's train then reports the failure; see sagemaker/entry.py).
        os.makedirs(environment.output_dir, exist_ok=True)
        result = run(environment.base_dir)
    except InputError as exc:
        logger.error("training failed on bad input:\n%s", traceback.format_exc())
        reason = one_line(exc)
    except TrainingInterrupted as exc:
        # Not completed: a failure reason and exit 1 (SageMaker shows a spot-interrupted job as
        # interrupted whatever the container says; locally the failure file tells what happened).
        logger.error("%s", exc)
        reason = one_line(exc)
    except BaseException as exc:
        if not (isinstance(exc, OSError) and exc.filename is not None):
            # a bug: the toolkit writes its traceback as the reason
            outcome = Outcome(one_line(f"{type(exc).__name__}: {exc}"))
            raise
        # a file that cannot be written: a full volume, a read-only mount
        logger.error("training failed writing a file:\n%s", traceback.format_exc())
        reason = one_line(storage.reason(exc))
    else:
        model_dir = os.path.join(environment.base_dir, "model") if result is not None else None
        outcome = Outcome(None, model_dir)
        return
    outcome = Outcome(reason)
    raise TrainingInputError(reason) from None
