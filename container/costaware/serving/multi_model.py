"""SageMaker's multi-model contract in ``serve`` (``SAGEMAKER_MULTI_MODEL=true``): many costaware
models behind one endpoint, each a full model directory (its booster, calibrator, costs, rule,
facet and reasons), loaded and unloaded by SageMaker while the server runs.

    POST   /models                {"model_name", "url"}: 200 loaded, 409 already loaded, 507 no room,
                                  400 a refused name, url or model directory (one line)
    GET    /models                ?max_results=N&next_page_token=T: {"models": [...], "nextPageToken"}
    GET    /models/{name}         {"modelName", "modelUrl"}, 404 if not loaded
    DELETE /models/{name}         200, 404 if not loaded
    POST   /models/{name}/invoke  exactly what /invocations answers for that model alone; 404

Why a registry on disk: gunicorn's workers are separate processes, and SageMaker's next request
after a 200 load, or after a delete, may reach any of them. The load is answered by one worker
only after it wrote the model's entry (a small JSON file, atomically renamed into place) into a
directory the workers share (the master's state directory, in memory under /dev/shm); every
worker looks at that directory's modification time (one ``stat``) before each multi-model
request and on its heartbeat, and re-reads the entries when it changed. So a model is known to
every worker the moment its load is answered, and a deleted model is dropped by every worker at
its next request or heartbeat (within a second). A worker loads a model's booster the first time
it is asked for it (the loading worker has already loaded and checked it, so a broken directory
is refused at load, never at the first invoke); the entries, not the workers' memory, are what
the endpoint holds. Entries are added and removed under a lock file, so that two loads at once
cannot both take the last room, nor one name twice.

The memory bound: a model is charged its size on disk (the two files a worker loads; loaded, it
takes a little less: the demo's model, 486 KiB on disk, adds 431 KiB to a worker,
``benchmarks/bench_model_memory.py``) once per worker, since every worker may load it. A load is refused with 507, before the model is
read, when the charges would pass ``COSTAWARE_MODELS_MEMORY_MB`` (default: half the container's
memory limit, the machine's memory without one; the rest is the workers' own and the requests'
buffers), or when the container's memory in use plus the charge would pass 90% of its limit:
SageMaker then unloads the models it used least recently (DELETE) and loads again.

Loading is an attack surface: the name is only a key (the entry's file is named by its hash),
and a url that is not an absolute path below ``COSTAWARE_MODELS_ROOT``, that has a ``..``
part, or that leads outside the root through a symbolic link, and a model directory holding
anything but the files ``train`` writes (``xgboost-model.ubj``, ``metadata.json``, and the
monitoring baseline's ``baseline/statistics.json`` and ``baseline/constraints.json``; each a
regular file or directory, not a link) are refused with a 400 before any file is opened.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import unicodedata
import uuid
from dataclasses import asdict, dataclass
from typing import Callable

from .. import machine, storage
from ..errors import load_failure_reason
from ..model.artifact import BASELINE_DIR, BOOSTER_FILE, METADATA_FILE, MODEL_LAYOUT
from .invocation import Invocations
from .request_error import RequestError
from .worker import settled_stamp

LOADED_FILES = (BOOSTER_FILE, METADATA_FILE)  # what a worker reads of a model directory
ALLOWED = (f"{BOOSTER_FILE}, {METADATA_FILE} and {BASELINE_DIR}/ with "
           f"{' and '.join(MODEL_LAYOUT[BASELINE_DIR])}")
MAX_NAME_CHARS = 256
MAX_URL_CHARS = 4096  # Linux's PATH_MAX
MAX_RESULTS = 1000  # a page of GET /models, at most (and its default)
IN_USE_LIMIT = 0.9  # of the container's memory: a load that would pass it is a 507
DEFAULT_BUDGET_SHARE = 0.5  # of the container's memory, for the models when no budget is set
ENTRY_SUFFIX = ".json"
LOCK_FILE = ".lock"


def check_model_name(name) -> str | None:
    """Why ``name`` cannot name a model (``None`` when it can)."""
    if not isinstance(name, str) or not name:
        return "model_name must be a non-empty string"
    if len(name) > MAX_NAME_CHARS:
        return f"model_name is {len(name)} characters long; at most {MAX_NAME_CHARS}"
    if "/" in name or "\\" in name:
        return f"model_name {name!r} holds a path separator"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return f"model_name {name!r} holds a control character"
    if name in (".", ".."):
        return f"model_name {name!r} is not a name"
    return None


def invoked_model(path: str) -> str | None:
    """The model a ``/models/{name}/invoke`` path names (as Flask's route reads it: one path
    segment), else ``None``."""
    if path.startswith("/models/") and path.endswith("/invoke"):
        name = path[len("/models/"):-len("/invoke")]
        if name and "/" not in name:
            return name
    return None


def model_directory(url, root: str) -> str:
    """The real path of the model directory ``url`` names, checked to be below ``root`` by its
    text and after following its links (:class:`RequestError` 400 otherwise); nothing is read."""
    if not isinstance(url, str) or not url:
        raise RequestError(400, "url must be a non-empty string")
    if len(url) > MAX_URL_CHARS:
        raise RequestError(400, f"url is {len(url)} characters long; at most {MAX_URL_CHARS}")
    if any(unicodedata.category(c) == "Cc" for c in url):
        raise RequestError(400, f"url {url!r} holds a control character")
    if not os.path.isabs(url):
        raise RequestError(400, f"url {url!r} is not an absolute path below {root}")
    if ".." in url.split("/"):
        raise RequestError(400, f"url {url!r} has a '..' part; give the model's path below {root}")
    lexical, top = os.path.normpath(url), os.path.normpath(root)
    if not lexical.startswith(top.rstrip("/") + "/"):
        raise RequestError(400, f"url {url!r} is outside the models' root {root}")
    real, real_top = os.path.realpath(lexical), os.path.realpath(top)
    if not real.startswith(real_top.rstrip("/") + "/"):
        raise RequestError(400, f"url {url!r} leads outside the models' root {root} through a "
                                "symbolic link")
    if not os.path.isdir(real):
        raise RequestError(400, f"url {url!r} is not a directory" if os.path.exists(real)
                           else f"url {url!r} does not exist")
    return real


def model_files_bytes(directory: str) -> int:
    """The bytes of the files a worker loads from a model directory, once every entry in it is
    checked to be one ``train`` writes (``artifact.MODEL_LAYOUT``) and a regular file or
    directory, not a link (:class:`RequestError` 400 otherwise); nothing is opened."""
    def walk(path: str, layout: dict) -> None:
        with os.scandir(path) as found:
            entries = sorted(found, key=lambda e: e.name)
        for entry in entries:
            if entry.name not in layout:
                raise RequestError(400, f"{entry.path} is not a costaware model file; a model "
                                        f"directory holds only {ALLOWED}")
            inside = layout[entry.name]
            if entry.is_symlink():
                raise RequestError(400, f"{entry.path} is a symbolic link")
            if inside is None and not entry.is_file(follow_symlinks=False):
                raise RequestError(400, f"{entry.path} is not a regular file")
            if inside is not None:
                if not entry.is_dir(follow_symlinks=False):
                    raise RequestError(400, f"{entry.path} is not a directory")
                walk(entry.path, inside)

    try:
        walk(directory, MODEL_LAYOUT)
    except OSError as exc:  # a directory this server may not list
        raise RequestError(400, f"{exc.filename or directory} cannot be read: "
                                f"{exc.strerror}") from None
    total = 0
    for name in LOADED_FILES:
        try:
            total += os.lstat(os.path.join(directory, name)).st_size
        except FileNotFoundError:
            pass  # the load says which is missing
    return total


@dataclass(frozen=True)
class Entry:
    """A loaded model, as the workers share it."""

    model_name: str
    url: str  # as SageMaker sent it
    path: str  # the checked real directory
    charge_bytes: int  # its size, charged once per worker
    token: str  # new at each load: a name unloaded and loaded again is a new model

    def listed(self) -> dict:
        return {"modelName": self.model_name, "modelUrl": self.url}


def memory_budget_bytes(budget_mb: int | None) -> int:
    if budget_mb is not None:
        return budget_mb * 1024 * 1024
    return int(machine.memory_limit_bytes() * DEFAULT_BUDGET_SHARE)


class Registry:
    """The loaded models' entries in a directory every worker reads (the module docstring)."""

    def __init__(self, directory: str, workers: int, budget_bytes: int):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.workers = workers
        self.budget_bytes = budget_bytes
        self.stamp = None
        self.cached: dict[str, Entry] = {}

    def _path(self, name: str) -> str:
        return os.path.join(self.directory,
                            hashlib.sha256(name.encode("utf-8")).hexdigest() + ENTRY_SUFFIX)

    def entries(self) -> dict[str, Entry]:
        """name -> entry; re-read only when the directory changed (one ``stat`` otherwise)."""
        stamp = os.stat(self.directory).st_mtime_ns
        if stamp != self.stamp or self.stamp is None:
            self.stamp = settled_stamp(stamp)
            self.cached = self._read()
        return self.cached

    def _read(self) -> dict[str, Entry]:
        found = {}
        for file_name in os.listdir(self.directory):
            if file_name.startswith(".") or not file_name.endswith(ENTRY_SUFFIX):
                continue  # the lock, a temporary file being written
            try:
                with open(os.path.join(self.directory, file_name), encoding="utf-8") as handle:
                    entry = Entry(**json.load(handle))
            except FileNotFoundError:  # unloaded since the listing
                continue
            found[entry.model_name] = entry
        return dict(sorted(found.items()))

    @contextlib.contextmanager
    def _locked(self):
        with open(os.path.join(self.directory, LOCK_FILE), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check_room(self, name: str, charge_bytes: int, entries: dict[str, Entry]) -> None:
        """409 if ``name`` is loaded; 507 if a model of ``charge_bytes`` does not fit."""
        if name in entries:
            raise RequestError(409, f"model {name!r} is already loaded")
        held = sum(e.charge_bytes for e in entries.values()) * self.workers
        wanted = charge_bytes * self.workers
        if held + wanted > self.budget_bytes:
            raise RequestError(507, f"model {name!r} needs {wanted} bytes ({charge_bytes} in each "
                                    f"of {self.workers} workers); the loaded models "
                                    f"({len(entries)}) hold {held} of the {self.budget_bytes} "
                                    "bytes for models "
                                    "(COSTAWARE_MODELS_MEMORY_MB): unload some")
        limit = machine.memory_limit_bytes()
        in_use = machine.memory_in_use_bytes()
        if in_use + wanted > IN_USE_LIMIT * limit:
            raise RequestError(507, f"model {name!r} needs {wanted} bytes; the container uses "
                                    f"{in_use} of its {limit} bytes: unload some")

    def add(self, entry: Entry) -> None:
        """Record ``entry`` (409/507 as :meth:`check_room`, decided under the lock)."""
        with self._locked():
            self.check_room(entry.model_name, entry.charge_bytes, self._read())
            try:
                storage.atomic_write(self._path(entry.model_name),
                                     json.dumps(asdict(entry)).encode("utf-8"))
            except OSError as exc:  # the registry's file system full or read-only: no room
                raise RequestError(507, f"model {entry.model_name!r} cannot be recorded in "
                                        f"{self.directory}: {exc.strerror}") from None

    def remove(self, name: str) -> bool:
        """Unload ``name``; whether it was loaded."""
        with self._locked():
            try:
                os.unlink(self._path(name))
            except FileNotFoundError:
                return False
            return True


class ModelCache:
    """This worker's loaded models, kept to what the registry holds."""

    def __init__(self, registry: Registry, root: str, load: Callable[[str], Invocations]):
        """``load``: a model directory loaded as this server serves it (threads, default Accept,
        response shape)."""
        self.registry = registry
        self.root = root
        self.load_model = load
        self.loaded: dict[str, tuple[str, Invocations]] = {}  # name -> (token, model)
        self.seen = None  # the entries the loaded set was last checked against

    def sync(self) -> dict[str, Entry]:
        """The registry's entries; models no longer in it dropped from this worker."""
        entries = self.registry.entries()
        if entries is not self.seen:
            self.seen = entries
            for name, (token, _) in list(self.loaded.items()):
                entry = entries.get(name)
                if entry is None or entry.token != token:
                    self.loaded.pop(name, None)  # another request thread may have dropped it
        return entries

    def invocations(self, name: str) -> Invocations | None:
        """The model called ``name`` (loaded in this worker now if another worker loaded it),
        or ``None`` when the endpoint does not hold it."""
        entry = self.sync().get(name)
        if entry is None:
            return None
        held = self.loaded.get(name)
        if held is not None:
            return held[1]
        try:
            invocations = self.load_model(entry.path)
        except Exception as exc:  # changed on disk since its load was answered
            raise RequestError(500, f"model {name!r} was loaded but this worker cannot load it "
                                    f"now: {load_failure_reason(exc)}") from None
        self.loaded[name] = (entry.token, invocations)
        return invocations

    def load(self, body) -> Entry:
        """``POST /models``: check, load, record; :class:`RequestError` for every refusal."""
        if not isinstance(body, dict):
            raise RequestError(400, 'the body must be a JSON object {"model_name": ..., "url": ...}')
        name, url = body.get("model_name"), body.get("url")
        problem = check_model_name(name)
        if problem:
            raise RequestError(400, problem)
        directory = model_directory(url, self.root)
        charge = model_files_bytes(directory)
        self.registry.check_room(name, charge, self.sync())  # before anything is read
        try:
            invocations = self.load_model(directory)
        except Exception as exc:
            raise RequestError(400, f"model {name!r} cannot be loaded: "
                                    f"{load_failure_reason(exc)}") from None
        entry = Entry(name, url, directory, charge, uuid.uuid4().hex)
        self.registry.add(entry)
        self.loaded[name] = (entry.token, invocations)
        return entry

    def unload(self, name: str) -> bool:
        self.loaded.pop(name, None)
        return self.registry.remove(name)


def page(entries: dict[str, Entry], max_results: str | None, token: str | None) -> dict:
    """A page of ``GET /models``: the models after the token's name, in name order, and the
    token of the next page when there is one (the last name listed, encoded)."""
    size = MAX_RESULTS
    if max_results is not None:
        try:
            size = int(max_results)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_RESULTS:
            raise RequestError(400, f"max_results={max_results!r} must be a whole number from 1 "
                                    f"to {MAX_RESULTS}")
    after = None
    if token:
        try:
            after = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
        except (ValueError, UnicodeError):
            raise RequestError(400, f"next_page_token={token!r} is not a token this server "
                                    "gave") from None
    names = [n for n in entries if after is None or n > after]
    listed = names[:size]
    answer = {"models": [entries[n].listed() for n in listed]}
    if len(names) > size:
        answer["nextPageToken"] = base64.urlsafe_b64encode(
            listed[-1].encode("utf-8")).decode("ascii")
    return answer


def entry_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "models")
