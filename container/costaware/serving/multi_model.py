"""SageMaker's multi-model contract in ``serve`` (``SAGEMAKER_MULTI_MODEL=true``): many costaware
models behind one endpoint, each a full model directory (its booster, calibrator, costs, rule,
facet and reasons), loaded and unloaded by SageMaker while the server runs.

    POST   /models                {"model_name", "url"}: 200 loaded, 409 already loaded, 507 no room,
                                  400 a refused name, url or model directory (one line)
    GET    /models                ?max_results=N&next_page_token=T: {"models": [...], "nextPageToken"}
    GET    /models/{name}         {"modelName", "modelUrl"}, 404 if not loaded
    DELETE /models/{name}         200, 404 if not loaded
    POST   /models/{name}/invoke  exactly what /invocations answers for that model alone; 404
    POST   /invocations           with X-Amzn-SageMaker-Target-Model: the SageMaker Python SDK's
                                  local mode (below); 400 without the header

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

The SageMaker Python SDK's local mode runs a ``MultiDataModel`` as one container and never calls
``/models``: it downloads every archive below the model data prefix into one directory, mounted at
/opt/ml/model (the archives kept at their keys' relative paths, each also extracted over the
others there), and posts to ``/invocations`` with ``X-Amzn-SageMaker-Target-Model`` holding the
archive's path relative to the prefix (sagemaker 2.x: local/image.py ``_prepare_serving_volumes``,
local/local_session.py ``invoke_endpoint``). So on a multi-model server ``/invocations`` takes
that header: the archive it names below the model directory is unpacked on its first use, checked
as a ``/models`` load checks a directory (a target outside the model directory, through a link or
by a ``..`` part, an archive member that is a link, leaves the archive's top or is not one of the
files ``train`` writes: a 400 with one line, before anything is written), into a directory of the
server's own, loaded and recorded under the header's value, so that every later call, on any
worker, invokes the loaded model. Nobody sends SageMaker's ``DELETE`` there, so the server itself
unloads the models it unpacked least recently invoked when a new one does not fit the budget (a
model that does not fit alone, or the container's memory in use: 507, as for a load).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
import unicodedata
import uuid
import zlib
from dataclasses import asdict, dataclass
from typing import Callable

from .. import machine, storage
from ..errors import load_failure_reason
from ..model.artifact import BASELINE_DIR, BOOSTER_FILE, METADATA_FILE, MODEL_LAYOUT
from .invocation import Invocations
from .request_error import RequestError
from .worker import TARGET_MODEL_HEADER, settled_stamp

log = logging.getLogger("costaware.serving")

LOADED_FILES = (BOOSTER_FILE, METADATA_FILE)  # what a worker reads of a model directory
ALLOWED = (f"{BOOSTER_FILE}, {METADATA_FILE} and {BASELINE_DIR}/ with "
           f"{' and '.join(MODEL_LAYOUT[BASELINE_DIR])}")
MAX_NAME_CHARS = 256
MAX_URL_CHARS = 4096  # Linux's PATH_MAX
MAX_TARGET_CHARS = 1024  # InvokeEndpoint's TargetModel, at most
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


NOT_IN_LAYOUT = "not in the layout"  # what MODEL_LAYOUT holds where it holds nothing


def layout_refusal(shown: str, expected, link: str | None, regular_file: bool,
                   directory: bool) -> str | None:
    """Why an entry of a model directory or archive (``shown``: its path) is refused, ``None``
    when it is not: ``expected`` is what ``artifact.MODEL_LAYOUT`` holds at its place (``None``
    a regular file, a dict a directory of those, :data:`NOT_IN_LAYOUT`); ``link`` the kind of
    link it is (``None``: not one)."""
    if expected is NOT_IN_LAYOUT:
        return f"{shown} is not a costaware model file; a model directory holds only {ALLOWED}"
    if link is not None:
        return f"{shown} is a {link}"
    if expected is None and not regular_file:
        return f"{shown} is not a regular file"
    if expected is not None and not directory:
        return f"{shown} is not a directory"
    return None


def model_files_bytes(directory: str) -> int:
    """The bytes of the files a worker loads from a model directory, once every entry in it is
    checked to be one ``train`` writes (``artifact.MODEL_LAYOUT``) and a regular file or
    directory, not a link (:class:`RequestError` 400 otherwise); nothing is opened."""
    def walk(path: str, layout: dict) -> None:
        with os.scandir(path) as found:
            entries = sorted(found, key=lambda e: e.name)
        for entry in entries:
            inside = layout.get(entry.name, NOT_IN_LAYOUT)
            problem = layout_refusal(entry.path, inside,
                                     "symbolic link" if entry.is_symlink() else None,
                                     entry.is_file(follow_symlinks=False),
                                     entry.is_dir(follow_symlinks=False))
            if problem:
                raise RequestError(400, problem)
            if inside is not None:
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


def check_target_model(target: str | None) -> str | None:
    """Why ``target``, an ``X-Amzn-SageMaker-Target-Model`` at ``/invocations``, cannot name an
    archive below the model directory (``None`` when it can): nothing is looked up."""
    if target is None:
        return (f"this is a multi-model endpoint: name the model in {TARGET_MODEL_HEADER} "
                "(InvokeEndpoint's TargetModel), or invoke /models/{name}/invoke")
    if not target:
        return f"{TARGET_MODEL_HEADER} is empty; name the model's archive"
    if len(target) > MAX_TARGET_CHARS:
        return (f"{TARGET_MODEL_HEADER} is {len(target)} characters long; at most "
                f"{MAX_TARGET_CHARS}")
    if any(unicodedata.category(c) == "Cc" for c in target) or "\\" in target:
        return f"{TARGET_MODEL_HEADER} {target!r} holds a control character or a backslash"
    if target.startswith("/"):
        return (f"{TARGET_MODEL_HEADER} {target!r} is an absolute path; name the archive by its "
                "path relative to the model data prefix")
    if ".." in target.split("/"):
        return f"{TARGET_MODEL_HEADER} {target!r} has a '..' part"
    return None


def archive_file(target: str, root: str) -> str:
    """The real path of the archive ``target`` names below ``root`` (checked by
    :func:`check_target_model`), checked to stay below ``root`` after following its links
    (:class:`RequestError` otherwise: 404 when there is none); nothing is read."""
    top = os.path.realpath(root)
    real = os.path.realpath(os.path.join(top, target))
    if not real.startswith(top.rstrip("/") + "/"):
        raise RequestError(400, f"{TARGET_MODEL_HEADER} {target!r} leads outside the model "
                                f"directory {root} through a symbolic link")
    if not os.path.exists(real):
        raise RequestError(404, f"{TARGET_MODEL_HEADER} {target!r}: there is no "
                                f"{os.path.join(root, target)}")
    if not os.path.isfile(real):
        raise RequestError(400, f"{TARGET_MODEL_HEADER} {target!r}: "
                                f"{os.path.join(root, target)} is not a file")
    return real


def archive_members(tar: tarfile.TarFile, shown: str) -> tuple[list, int]:
    """The files of a model archive, each ``(member, path parts)``, and the bytes of those a
    worker loads, once every member is checked as :func:`model_files_bytes` checks a model
    directory's entries, and to stay below the archive's top, and to be in it once
    (:class:`RequestError` 400 naming ``shown`` and the member otherwise); nothing is written."""
    files, seen, charge = [], set(), 0
    for member in tar:
        where = f"{shown}: {member.name}"
        parts = [part for part in member.name.split("/") if part not in ("", ".")]
        if member.name.startswith("/") or ".." in parts:
            raise RequestError(400, f"{where} leads outside the archive's top")
        key = "/".join(parts)
        if key in seen:
            raise RequestError(400, f"{where} is in the archive twice")
        seen.add(key)
        expected = MODEL_LAYOUT
        for part in parts:
            expected = expected.get(part, NOT_IN_LAYOUT) if isinstance(expected, dict) \
                else NOT_IN_LAYOUT
        link = "symbolic link" if member.issym() else "hard link" if member.islnk() else None
        problem = layout_refusal(where, expected, link, member.isfile(), member.isdir())
        if problem:
            raise RequestError(400, problem)
        if expected is None:
            files.append((member, parts))
            charge += member.size if key in LOADED_FILES else 0
    return files, charge


def unpack(tar: tarfile.TarFile, files: list, directory: str) -> None:
    """The checked ``files`` of :func:`archive_members` written below ``directory`` as new
    regular files: nothing of the archive's names, modes or owners is taken but the path."""
    for member, parts in files:
        path = os.path.join(directory, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tar.extractfile(member) as source, open(path, "xb") as target:
            shutil.copyfileobj(source, target)


@dataclass(frozen=True)
class Entry:
    """A loaded model, as the workers share it."""

    model_name: str
    url: str  # as SageMaker sent it
    path: str  # the checked real directory
    charge_bytes: int  # its size, charged once per worker
    token: str  # new at each load: a name unloaded and loaded again is a new model
    unpacked: bool = False  # unpacked by the server from an archive (``path`` is its own)

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

    def current(self, name: str) -> Entry | None:
        """``name``'s entry as it is now (read afresh, whatever :meth:`entries` last saw), or
        ``None`` when it is not loaded."""
        try:
            with open(self._path(name), encoding="utf-8") as handle:
                return Entry(**json.load(handle))
        except FileNotFoundError:
            return None

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

    def _held_bytes(self, entries: dict[str, Entry]) -> int:
        """What ``entries`` are charged, in every worker."""
        return sum(e.charge_bytes for e in entries.values()) * self.workers

    def check_room(self, name: str, charge_bytes: int, entries: dict[str, Entry]) -> None:
        """409 if ``name`` is loaded; 507 if a model of ``charge_bytes`` does not fit."""
        if name in entries:
            raise RequestError(409, f"model {name!r} is already loaded")
        held = self._held_bytes(entries)
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

    def touch(self, name: str) -> None:
        """``name`` invoked now: its entry's time is when it was last used."""
        now = time.time_ns()  # finer than the file system's clock, which ties close calls
        with contextlib.suppress(FileNotFoundError):  # unloaded meanwhile
            os.utime(self._path(name), ns=(now, now))

    def _last_used(self, entry: Entry) -> int:
        try:
            return os.stat(self._path(entry.model_name)).st_mtime_ns
        except FileNotFoundError:
            return 0

    def add(self, entry: Entry, evict: bool = False) -> list[str]:
        """Record ``entry`` (409/507 as :meth:`check_room`, decided under the lock); with
        ``evict``, first unload the models the server unpacked least recently used until the
        budget holds it (when it fits alone). The names unloaded so."""
        with self._locked():
            entries, evicted = self._read(), []
            wanted = entry.charge_bytes * self.workers
            if evict and entry.model_name not in entries and wanted <= self.budget_bytes:
                while self._held_bytes(entries) + wanted > self.budget_bytes:
                    unpacked = [e for e in entries.values() if e.unpacked]
                    if not unpacked:
                        break
                    oldest = min(unpacked, key=self._last_used)
                    self._forget(oldest)
                    del entries[oldest.model_name]
                    evicted.append(oldest.model_name)
            self.check_room(entry.model_name, entry.charge_bytes, entries)
            try:
                storage.atomic_write(self._path(entry.model_name),
                                     json.dumps(asdict(entry)).encode("utf-8"))
            except OSError as exc:  # the registry's file system full or read-only: no room
                raise RequestError(507, f"model {entry.model_name!r} cannot be recorded in "
                                        f"{self.directory}: {exc.strerror}") from None
            return evicted

    def _forget(self, entry: Entry) -> None:
        """Drop ``entry`` (under the lock), and the directory the server unpacked it into."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(entry.model_name))
        if entry.unpacked:
            shutil.rmtree(entry.path, ignore_errors=True)

    def remove(self, name: str) -> bool:
        """Unload ``name``; whether it was loaded."""
        with self._locked():
            entry = self._read().get(name)
            if entry is None:
                return False
            self._forget(entry)
            return True


class ModelCache:
    """This worker's loaded models, kept to what the registry holds."""

    def __init__(self, registry: Registry, root: str, load: Callable[[str], Invocations],
                 archives_root: str, unpack_root: str):
        """``load``: a model directory loaded as this server serves it (threads, default Accept,
        response shape). ``archives_root``: where the SDK's local mode puts the archives that
        ``/invocations`` names (the model directory); ``unpack_root``: where they are unpacked."""
        self.registry = registry
        self.root = root
        self.archives_root = archives_root
        self.unpack_root = unpack_root
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
        or ``None`` when the endpoint does not hold it, unloaded while this worker read it
        included (another worker's load unloads what the server unpacked, its directory with it:
        that request then loads it again, as the next one would)."""
        entry = self.sync().get(name)
        if entry is None:
            return None
        held = self.loaded.get(name)
        if held is not None:
            return held[1]
        while True:
            try:
                invocations = self.load_model(entry.path)
                break
            except Exception as exc:
                current = self.registry.current(name)
                if current is None:  # unloaded meanwhile
                    return None
                if current.token == entry.token:  # its files changed since its load was answered
                    raise RequestError(500, f"model {name!r} was loaded but this worker cannot "
                                            f"load it now: {load_failure_reason(exc)}") from None
                entry = current  # unloaded and loaded again meanwhile: the new load's files
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

    def target_model(self, target: str | None) -> Invocations:
        """``POST /invocations`` with ``X-Amzn-SageMaker-Target-Model: target`` (the module
        docstring): the model loaded under that name, else the archive it names, unpacked,
        loaded and recorded now; :class:`RequestError` for every refusal."""
        problem = check_target_model(target)
        if problem:
            raise RequestError(400, problem)
        invocations = self.invocations(target)
        if invocations is None:
            invocations = self._load_archive(target)
        self.registry.touch(target)
        return invocations

    def _load_archive(self, target: str) -> Invocations:
        archive = archive_file(target, self.archives_root)
        shown = os.path.join(self.archives_root, target)
        directory = None
        try:
            with tarfile.open(archive, "r:*") as tar:
                files, charge = archive_members(tar, shown)
                self.registry.check_room(target, charge, {})  # fits alone, before any write
                unpacked = sum(member.size for member, _ in files)
                if unpacked > self.registry.budget_bytes:  # the baseline's files too: no bomb
                    raise RequestError(507, f"{shown} unpacks to {unpacked} bytes, more than the "
                                            f"{self.registry.budget_bytes} bytes for models "
                                            "(COSTAWARE_MODELS_MEMORY_MB)")
                directory = tempfile.mkdtemp(prefix="model-", dir=self.unpack_root)
                unpack(tar, files, directory)
        except RequestError:
            _remove(directory)
            raise
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            _remove(directory)
            if str(getattr(exc, "filename", None) or "").startswith(self.unpack_root):
                raise RequestError(507, f"model {target!r} cannot be unpacked into "
                                        f"{self.unpack_root}: {exc.strerror}") from None
            raise RequestError(400, f"{shown} cannot be read as a model archive (a tar file of "
                                    f"a model directory): {exc}") from None
        try:
            invocations = self.load_model(directory)
        except Exception as exc:
            _remove(directory)
            raise RequestError(400, f"model {target!r} cannot be loaded: "
                                    f"{load_failure_reason(exc)}") from None
        entry = Entry(target, target, directory, charge, uuid.uuid4().hex, unpacked=True)
        try:
            evicted = self.registry.add(entry, evict=True)
        except RequestError as exc:
            _remove(directory)  # what this worker loaded is in memory: its files are read
            if exc.status != 409:
                raise
            # another worker unpacked it at the same time: the one recorded, unless a third
            # worker's load unloaded that already; then this request is answered by the model
            # this worker unpacked, the same archive (not kept: the endpoint holds none)
            found = self.invocations(target)
            return invocations if found is None else found
        log.info("model %r unpacked from %s and loaded%s", target, shown,
                 f"; unloaded, as used least recently: {', '.join(map(repr, evicted))}"
                 if evicted else "")
        self.loaded[target] = (entry.token, invocations)
        return invocations

    def unload(self, name: str) -> bool:
        self.loaded.pop(name, None)
        return self.registry.remove(name)


def _remove(directory: str | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


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
