"""Read an endpoint's data capture (and its ground truth) into decided rows, in batches.

Data capture is SageMaker's: JSON Lines files under ``{endpoint}/{variant}/yyyy/mm/dd/hh/``, one
record per invocation (``captureData.endpointInput`` / ``endpointOutput`` with
``observedContentType``, ``data``, ``encoding`` CSV, JSON or BASE64; ``eventMetadata`` with
``eventId``, ``inferenceId``, ``inferenceTime``). The request body is decoded as the server decodes
it (:func:`costaware.serving.decoding.decode`: the model's ``request_columns``, a row's own costs);
the response body gives each row's probabilities and decision (JSON, JSON Lines, or CSV with the
model's default fields).

Ground truth is Model Monitor's merge format (``groundTruthData.data``: the label; one label per
row of the record, separated by commas or line ends, when a record held several rows;
``eventMetadata.eventId``: the capture's inference id, else its event id).

Nothing is dropped silently: every record or line that cannot be used is counted by reason in
:class:`Counts` (with the first place it happened), and the job reports them.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from ..model.inference import MULTICLASS_FIELDS, OUTPUT_FIELDS, RowError
from ..serving import decoding, negotiation
from ..serving.encoding import csv_columns
from ..serving.request_error import RequestError
from .decided_rows import DecidedRows
from .model_spec import ModelSpec

BATCH_RECORDS = 2048


@dataclass
class Counts:
    """What the reader met, by reason; ``first``: where each reason was first met."""

    seen: Counter = field(default_factory=Counter)
    first: dict = field(default_factory=dict)

    def add(self, reason: str, where: str | None = None, n: int = 1) -> None:
        self.seen[reason] += n
        if where is not None and reason not in self.first:
            self.first[reason] = where

    def to_dict(self) -> dict:
        return {"counts": dict(sorted(self.seen.items())),
                "first_seen": dict(sorted(self.first.items()))}


def parse_time(text) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; spaces after ':' as in the documentation's example
    tolerated) as an aware UTC datetime, or None."""
    if not isinstance(text, str) or not text.strip():
        return None
    cleaned = text.strip().replace(": ", ":").replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def jsonl_files(root: str) -> list[str]:
    """Every ``*.jsonl`` file under ``root``, in path order (the hours sort by time)."""
    found = []
    for directory, dirs, names in os.walk(root):
        dirs.sort()
        found.extend(os.path.join(directory, n) for n in sorted(names) if n.endswith(".jsonl"))
    return found


def body_of(part: dict) -> bytes:
    """The bytes of a capture's ``endpointInput`` / ``endpointOutput`` (base64 or text)."""
    data = part.get("data")
    if not isinstance(data, str):
        raise ValueError("its data is missing")
    if str(part.get("encoding", "")).upper() == "BASE64":
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            raise ValueError("its data is not valid base64") from None
    return data.encode("utf-8")


def read_ground_truth(root: str | None, spec: ModelSpec, counts: Counts) -> dict[str, list[int]]:
    """id -> the labels (class indices) of its rows; unusable records counted, a repeated id's
    later records counted and not used."""
    labels: dict[str, list[int]] = {}
    if not root:
        return labels
    for path in jsonl_files(root):
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                    key = record["eventMetadata"]["eventId"]
                    text = body_of(record["groundTruthData"]).decode("utf-8")
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    counts.add("ground truth lines that are not a ground-truth record", where)
                    continue
                values = [spec.label_index(t) for t in text.replace("\n", ",").split(",")
                          if t.strip()]
                if not values or any(v is None for v in values):
                    counts.add("ground truth labels that are not a class of the model", where)
                    continue
                if key in labels:
                    counts.add("ground truth records repeating an id (later ones not used)", where)
                    continue
                labels[str(key)] = values
    counts.add("ground truth records", n=len(labels))
    return labels


class CaptureReader:
    """Decided rows from capture files, batch by batch (:meth:`batches`)."""

    def __init__(self, spec: ModelSpec, labels: dict[str, list[int]], counts: Counts,
                 start: datetime | None = None, end: datetime | None = None):
        self.spec, self.labels, self.counts = spec, labels, counts
        self.start, self.end = start, end
        self.layout = spec.layout
        self.fields = OUTPUT_FIELDS if spec.k == 2 else MULTICLASS_FIELDS
        self.csv_leaves = csv_columns(self.fields, tuple(spec.policy.class_names)
                                      if spec.k > 2 else None)
        self.class_of = {str(c): i for i, c in enumerate(spec.classes)}
        self.labelled_ids: set[str] = set()

    def batches(self, paths: list[str]):
        """``(rows, has_costs, decided)`` per batch of records."""
        pending = []
        for path in paths:
            with open(path, "rb") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    decoded = self._record(line, f"{path}:{number}")
                    if decoded is not None:
                        pending.append(decoded)
                    if len(pending) >= BATCH_RECORDS:
                        yield self._batch(pending)
                        pending = []
        if pending:
            yield self._batch(pending)

    def _record(self, line: bytes, where: str):
        counts = self.counts
        try:
            record = json.loads(line)
            capture = record["captureData"]
            meta = record.get("eventMetadata") or {}
        except (ValueError, KeyError, TypeError):
            counts.add("capture lines that are not a capture record", where)
            return None
        if self.start is not None or self.end is not None:
            when = parse_time(meta.get("inferenceTime"))
            if when is None:
                counts.add("capture records without a valid inferenceTime (not in any window)",
                           where)
                return None
            if (self.start and when < self.start) or (self.end and when >= self.end):
                counts.add("capture records outside the window")
                return None
        counts.add("capture records in the window")
        if "endpointInput" not in capture or "endpointOutput" not in capture:
            counts.add("capture records without both input and output (capture both)", where)
            return None
        try:
            rows, has_costs = self._input(capture["endpointInput"])
        except (ValueError, RequestError) as exc:
            counts.add("request bodies that could not be decoded", f"{where}: {_reason(exc)}")
            return None
        try:
            p, decision = self._output(capture["endpointOutput"], len(rows))
        except (ValueError, RequestError) as exc:
            counts.add("response bodies that could not be read", f"{where}: {_reason(exc)}")
            return None
        try:
            costs = self.spec.costs(rows, has_costs)
        except RowError as exc:
            counts.add("records with invalid own costs", f"{where}: {exc}")
            return None
        label = self._labels(meta, len(rows), where)
        return rows, has_costs, p, decision, costs, label

    def _input(self, part: dict):
        kind = negotiation.input_kind(part.get("observedContentType"))
        return decoding.decode(body_of(part), kind, self.layout)

    def _output(self, part: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
        body = body_of(part)
        content_type = part.get("observedContentType") or ""
        essence = negotiation.parse_media_type(content_type)[0] if content_type else ""
        if essence == "application/json":
            document = json.loads(body)
            if not isinstance(document, dict) or not isinstance(document.get("predictions"), list):
                raise ValueError("a JSON response without a 'predictions' list")
            items = document["predictions"]
        elif essence == "application/jsonlines":
            items = [json.loads(line) for line in body.splitlines() if line.strip()]
        elif essence == "text/csv":
            items = self._csv_items(body)
        else:
            raise ValueError(f"response type {content_type!r} is not one costaware answers")
        if len(items) != n:
            raise ValueError(f"{len(items)} answers for {n} request rows")
        return self._decided(items)

    def _csv_items(self, body: bytes) -> list[dict]:
        items = []
        width = len(self.csv_leaves)
        for line in body.decode("utf-8").splitlines():
            cells = line.split(",")
            if len(cells) != width:
                raise ValueError(f"a CSV answer of {len(cells)} values; the model's default "
                                 f"fields make {width} (answers with chosen fields cannot be "
                                 "read from CSV: ask for JSON Lines)")
            item: dict = {}
            for (name, key), cell in zip(self.csv_leaves, cells):
                if key is None:
                    item[name] = cell
                else:
                    item.setdefault(name, {})[key] = cell
            items.append(item)
        return items

    def _decided(self, items: list) -> tuple[np.ndarray, np.ndarray]:
        k = self.spec.k
        p = np.empty((len(items), k))
        decision = np.empty(len(items), dtype=np.int64)
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "decision" not in item:
                raise ValueError("an answer without its decision (ask for the decision and "
                                 + ("score" if k == 2 else "probabilities") + ")")
            index = self.class_of.get(str(item["decision"]))
            if index is None:
                raise ValueError(f"decision {item['decision']!r} is not a class of the model")
            decision[i] = index
            if k == 2:
                if "score" not in item:
                    raise ValueError("an answer without its score")
                p[i, 1] = float(item["score"])
                p[i, 0] = 1.0 - p[i, 1]
            else:
                probabilities = item.get("probabilities")
                if not isinstance(probabilities, dict):
                    raise ValueError("an answer without its probabilities")
                p[i] = [float(probabilities[name]) for name in self.spec.policy.class_names]
        if not np.all(np.isfinite(p)) or (p < 0).any() or (p > 1).any():
            raise ValueError("a probability outside [0, 1]")
        return p, decision

    def _labels(self, meta: dict, n: int, where: str) -> np.ndarray:
        label = np.full(n, -1, dtype=np.int64)
        if not self.labels:
            return label
        key = meta.get("inferenceId") or meta.get("eventId")
        values = self.labels.get(str(key)) if key is not None else None
        if values is None:
            self.counts.add("capture rows without ground truth", n=n)
            return label
        if key in self.labelled_ids:
            self.counts.add("capture records repeating a labelled id (label used for the first)",
                            where)
            return label
        if len(values) != n:
            self.counts.add("ground truth with a different number of labels than rows", where)
            return label
        self.labelled_ids.add(key)
        self.counts.add("capture rows matched to ground truth", n=n)
        return np.asarray(values, dtype=np.int64)

    def _batch(self, pending: list) -> tuple[np.ndarray, np.ndarray | None, DecidedRows]:
        rows = np.concatenate([r[0] for r in pending])
        own = [r[1] if r[1] is not None else np.zeros(len(r[0]), dtype=bool) for r in pending]
        has_costs = np.concatenate(own) if any(r[1] is not None for r in pending) else None
        decided = DecidedRows(np.concatenate([r[2] for r in pending]),
                              np.concatenate([r[3] for r in pending]),
                              np.concatenate([r[4] for r in pending]),
                              np.concatenate([r[5] for r in pending]),
                              self.spec.sensitive(rows), self.spec.favourable)
        return rows, has_costs, decided

    def unmatched_ground_truth(self) -> int:
        return len(set(self.labels) - self.labelled_ids)


def _reason(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)
