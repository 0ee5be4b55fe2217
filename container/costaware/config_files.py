"""SageMaker's training configuration files, ``input/config/*.json``: one reader, one check.

SageMaker writes all three before ``train`` starts: ``hyperparameters.json`` (every value a string),
``inputdataconfig.json`` (the channels) and ``resourceconfig.json`` (the hosts). Each holds a JSON
object; what the objects hold is checked by their readers (:mod:`costaware.config.hyperparameters`,
:mod:`costaware.training.multihost`), the channels' entries here (:func:`check_channel_config`,
which training and ``costaware sweep`` call).
"""

from __future__ import annotations

import json
import os

from .errors import InputError

CONFIG_FILES = ("hyperparameters.json", "inputdataconfig.json", "resourceconfig.json")
CHANNELS = ("train", "validation", "test")  # the data channels inputdataconfig.json may name
DISTRIBUTIONS = ("FullyReplicated", "ShardedByS3Key")
# TrainingInputMode: File (downloaded) and FastFile (streamed from S3 as it is read) both give the
# channel as a directory of files; Pipe gives FIFOs instead and is refused (check_channel_config).
INPUT_MODES = ("File", "FastFile")
_MISSING = object()


def read_object(path: str, default=_MISSING):
    """The JSON object in ``path`` (``default`` when the file does not exist and one is given).

    Raises :class:`InputError` naming the file: missing, unreadable, not UTF-8, not JSON (with the
    line and column), or JSON that is not an object."""
    if not os.path.exists(path):
        if default is not _MISSING:
            return default
        raise InputError(f"{path} is missing")
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column "
                         f"{exc.colno}") from None
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror}") from None
    if not isinstance(content, dict):
        raise InputError(f"{path} must hold a JSON object, not {_json_type(content)}")
    return content


def read_hosts(path: str) -> tuple[list[str], str]:
    """``resourceconfig.json``'s ``hosts`` (distinct, non-empty names) and ``current_host`` (one of
    them); :class:`InputError` naming the file otherwise."""
    config = read_object(path)
    hosts, current = config.get("hosts"), config.get("current_host")
    if (not isinstance(hosts, list) or not hosts
            or not all(isinstance(h, str) and h.strip() for h in hosts)):
        raise InputError(f"{path}: 'hosts' must be a non-empty list of host names, not "
                         f"{json.dumps(hosts)[:80]}")
    if len(set(hosts)) != len(hosts):
        raise InputError(f"{path}: 'hosts' lists a host twice: {json.dumps(hosts)[:120]}")
    if current not in hosts:
        raise InputError(f"{path}: 'current_host' {json.dumps(current)[:60]} is not one of the "
                         f"hosts {json.dumps(sorted(hosts))[:120]}")
    return hosts, current


def first_problem(config_dir: str) -> str | None:
    """Why the configuration in ``config_dir`` cannot start a job (the first file at fault), or None.

    Each file must exist and hold a JSON object; ``resourceconfig.json`` must also name the hosts,
    which the toolkit reads before costaware runs."""
    for name in CONFIG_FILES:
        path = os.path.join(config_dir, name)
        if not os.path.exists(path):
            return (f"{path} is missing: SageMaker writes {', '.join(CONFIG_FILES)} into "
                    f"{config_dir}; a local tree needs all three (see local_test/test_dir)")
        try:
            read_hosts(path) if name == "resourceconfig.json" else read_object(path)
        except InputError as exc:
            return str(exc)
    return None


def check_channel_config(config) -> None:
    """inputdataconfig.json: ``{channel: {"ContentType": "...", "TrainingInputMode": "File",
    "S3DistributionType": "FullyReplicated", ...}}`` (SageMaker writes more keys; each of these
    may be absent: text/csv, File and FullyReplicated are the defaults)."""
    for name, entry in config.items():
        if not isinstance(entry, dict):
            raise InputError(f"inputdataconfig.json: channel '{name}' must be a JSON object (such as "
                             f'{{"ContentType": "text/csv"}}), not {json.dumps(entry)[:60]}')
        content_type = entry.get("ContentType", "text/csv")
        if not isinstance(content_type, str):
            raise InputError(f"inputdataconfig.json: channel '{name}': ContentType must be a string "
                             f"such as \"text/csv\", not {json.dumps(content_type)[:60]}")
        distribution = entry.get("S3DistributionType", "FullyReplicated")
        if distribution not in DISTRIBUTIONS:
            raise InputError(f"inputdataconfig.json: channel '{name}': S3DistributionType "
                             f"{json.dumps(distribution)[:60]}; valid: {', '.join(DISTRIBUTIONS)}")
        mode = entry.get("TrainingInputMode", "File")
        if mode == "Pipe":
            # Pipe gives no files: one FIFO per pass (input/data/<channel>_<epoch>), every S3
            # object of the channel run together. Reasons name a file and line, CSV headers are
            # per file, Parquet reads its footer first (a seek): none of which a FIFO has.
            raise InputError(f"inputdataconfig.json: channel '{name}': TrainingInputMode Pipe is "
                             "not supported: Pipe streams the channel as one FIFO "
                             f"(input/data/{name}_0) and costaware reads a channel's files; use "
                             "File, or FastFile to stream the files from S3 without the download")
        if mode not in INPUT_MODES:
            raise InputError(f"inputdataconfig.json: channel '{name}': TrainingInputMode "
                             f"{json.dumps(mode)[:60]}; valid: {', '.join(INPUT_MODES)}")


def _json_type(value) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def env_number(env, name: str, default, kind, low, high, what: str):
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise InputError(f"{name}={text!r}: give {what}")
    return value
