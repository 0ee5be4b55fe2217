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

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np

from ..data_capture import body_bytes as body_of
from ..model.inference import MULTICLASS_FIELDS, OUTPUT_FIELDS, RowError
from ..serving import decoding, negotiation
from ..serving.encoding import csv_columns
from ..serving.request_error import RequestError
from .decided_rows import DecidedRows
from .model_spec import ModelSpec

BATCH_RECORDS = 2048
REQUEST_COSTS = ("rows decided at a request's cost override (its costs are not captured: their "
                 "realized cost is priced at the model's)")
LABEL_TEXTS = 1024  # label texts whose class index is remembered while reading ground truth


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
        return (when.replace(tzinfo=timezone.utc) if when.tzinfo is None
                else when.astimezone(timezone.utc))
    except (ValueError, OverflowError):  # Overflow: year 1 at +05:00 is before year 1 in UTC
        return None


def jsonl_files(root: str, counts: "Counts | None" = None) -> list[str]:
    """Every ``*.jsonl`` file under ``root``, in path order (the hours sort by time); a directory
    that cannot be listed is counted."""
    found = []

    def unreadable(exc: OSError) -> None:
        if counts is not None:
            counts.add("directories that could not be read", f"{exc.filename}: {exc.strerror}")

    for directory, dirs, names in os.walk(root, onerror=unreadable):
        dirs.sort()
        found.extend(os.path.join(directory, n) for n in sorted(names) if n.endswith(".jsonl"))
    return found


def read_ground_truth(root: str | None, spec: ModelSpec, counts: Counts) -> dict[str, list[int]]:
    """id -> the labels (class indices) of its rows; unusable records counted, a repeated id's
    later records counted and not used."""
    labels: dict[str, list[int]] = {}
    if not root:
        return labels
    index_of: dict[str, int | None] = {}  # a label's text -> its class index (texts repeat)

    def label_index(text: str) -> int | None:
        if text in index_of:
            return index_of[text]
        index = spec.label_index(text)
        if len(index_of) < LABEL_TEXTS:
            index_of[text] = index
        return index

    for path in jsonl_files(root, counts):
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(_ascii(line))
                    key = str(record["eventMetadata"]["eventId"])
                    text = body_of(record["groundTruthData"]).decode("utf-8")
                except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
                    counts.add("ground truth lines that are not a ground-truth record",
                               f"{path}:{number}")
                    continue
                values = [label_index(t) for t in text.replace("\n", ",").split(",") if t.strip()]
                if not values or any(v is None for v in values):
                    counts.add("ground truth labels that are not a class of the model",
                               f"{path}:{number}")
                    continue
                if key in labels:
                    counts.add("ground truth records repeating an id (later ones not used)",
                               f"{path}:{number}")
                    continue
                labels[key] = values
    counts.add("ground truth records", n=len(labels))
    return labels


class CaptureReader:
    """Decided rows from capture files, batch by batch (:meth:`batches`).

    For speed, records are decoded a chunk at a time: the CSV request bodies (mostly one row each)
    are joined into one body and decoded in one call, and the answers' probabilities, decisions and
    the rows' costs become arrays once per chunk. Joined bodies that fail are halved down to the
    body at fault, decoded alone: every record is counted and named as if it had been read alone
    (``batch_records=1`` reads them so)."""

    def __init__(self, spec: ModelSpec, labels: dict[str, list[int]], counts: Counts,
                 start: datetime | None = None, end: datetime | None = None,
                 batch_records: int = BATCH_RECORDS, keep_keys: bool = False,
                 pricing: ModelSpec | None = None):
        self.spec, self.labels, self.counts = spec, labels, counts
        self.pricing = pricing or spec  # whose costs price the decisions (same request columns)
        self.keep_keys = keep_keys  # each row's request key and time (a comparison pairs them)
        self.start, self.end = start, end
        self.batch_records = batch_records
        # requests decoded as the pricing model reads them: its cost columns are the costs
        self.layout = self.pricing.layout
        self.fields = OUTPUT_FIELDS if spec.k == 2 else MULTICLASS_FIELDS
        self.csv_leaves = csv_columns(self.fields, tuple(spec.policy.class_names)
                                      if spec.k > 2 else None)
        self.class_of = {str(c): i for i, c in enumerate(spec.classes)}
        self.labelled_ids: set[str] = set()
        self._kinds: dict[str, str] = {}  # observedContentType -> input kind, once per type
        self._essences: dict[str, str] = {}  # observedContentType -> media type

    def batches(self, paths: list[str]):
        """``(rows, has_costs, decided)`` per batch of ``batch_records`` decided records (the
        last batch fewer)."""
        waiting, chunks, decided = [], [], 0
        for path in paths:
            with open(path, "rb") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    captured = self._captured(line, path, number)
                    if captured is None:
                        continue
                    waiting.append(captured)
                    if decided + len(waiting) >= self.batch_records:
                        chunk = self._chunk(waiting)
                        waiting = []
                        if chunk is not None:
                            chunks.append(chunk)
                            decided += chunk.records
                        if decided >= self.batch_records:
                            yield self._batch(chunks)
                            chunks, decided = [], 0
        chunk = self._chunk(waiting) if waiting else None
        if chunk is not None:
            chunks.append(chunk)
        if chunks:
            yield self._batch(chunks)

    def _captured(self, line: bytes, path: str, number: int):
        """A line's capture record, in the window and with both parts, as ``(path, number,
        endpointInput, endpointOutput, eventMetadata)``; else None, counted."""
        counts = self.counts
        try:
            record = json.loads(_ascii(line))
            capture = record["captureData"]
            meta = record.get("eventMetadata") or {}
            if not isinstance(capture, dict) or not isinstance(meta, dict):
                raise TypeError("not objects")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            counts.add("capture lines that are not a capture record", f"{path}:{number}")
            return None
        if self.start is not None or self.end is not None:
            when = parse_time(meta.get("inferenceTime"))
            if when is None:
                counts.add("capture records without a valid inferenceTime (not in any window)",
                           f"{path}:{number}")
                return None
            if (self.start and when < self.start) or (self.end and when >= self.end):
                counts.add("capture records outside the window")
                return None
        counts.add("capture records in the window")
        if "endpointInput" not in capture or "endpointOutput" not in capture:
            counts.add("capture records without both input and output (capture both)",
                       f"{path}:{number}")
            return None
        return path, number, capture["endpointInput"], capture["endpointOutput"], meta

    def _chunk(self, records: list) -> _Chunk | None:
        """Records (:meth:`_captured`'s) decoded in their order, step by step as one record is:
        request body, answer, own costs, labels; a record failing a step is counted there (its
        place and reason) and left out. None when none is left."""
        kept, scores, decision = [], [], []
        for record, decoded in zip(records, self._inputs(records)):
            if isinstance(decoded, Exception):
                self.counts.add("request bodies that could not be decoded",
                                f"{record[0]}:{record[1]}: {_reason(decoded)}")
                continue
            try:
                self._answers(record[3], len(decoded[0]), scores, decision)
            except (ValueError, RequestError, RecursionError) as exc:
                self.counts.add("response bodies that could not be read",
                                f"{record[0]}:{record[1]}: {_reason(exc)}")
                continue
            kept.append((record, decoded))
        if not kept:
            return None
        rows, has_costs = _stacked([decoded for _, decoded in kept])
        p = np.array(scores, dtype=np.float64)
        if self.spec.k == 2:
            p = np.column_stack([1.0 - p, p])
        decision = np.array(decision, dtype=np.int64)
        try:
            costs = self.pricing.costs(rows, has_costs)
        except RowError:  # a record at fault: each record's own costs checked alone
            kept, keep, costs = self._costs_alone(kept)
            if not kept:
                return None
            rows, has_costs = _stacked([decoded for _, decoded in kept])
            p, decision = p[keep], decision[keep]
        if self.labels:
            label = []
            for (path, number, _, _, meta), decoded in kept:
                label.extend(self._labels(meta, len(decoded[0]), f"{path}:{number}"))
            label = np.array(label, dtype=np.int64)
        else:
            label = np.full(len(rows), -1, dtype=np.int64)
        keys = times = events = None
        if self.keep_keys:
            keys, times, events = _keys_and_times([(meta, len(decoded[0]))
                                                   for (_, _, _, _, meta), decoded in kept])
        return _Chunk(len(kept), rows, has_costs, p, decision, costs, label, keys, times, events)

    def _inputs(self, records: list) -> list:
        """Each record's decoded request body, ``(rows, has_costs)``, or the exception refusing
        it. CSV bodies are decoded joined (:meth:`_decode_joined`)."""
        out: list = [None] * len(records)
        csv = []
        for i, record in enumerate(records):
            part = record[2]
            try:
                body = body_of(part)
                kind = self._kind(part.get("observedContentType"))
            except (ValueError, RequestError) as exc:
                out[i] = exc
                continue
            rows_text = _csv_rows(body) if kind == "csv" else None
            if rows_text is None:
                out[i] = self._decode_alone(body, kind)
            else:
                csv.append((i, body, rows_text))
        self._decode_joined(csv, out)
        return out

    def _decode_joined(self, group: list, out: list) -> None:
        """CSV bodies ``(index, body, its rows)`` decoded as one body of all their rows, into
        ``out``; a group that fails is halved, down to single bodies decoded as they came (so
        that the refusal is the body's own)."""
        if len(group) <= 1:
            for i, body, _ in group:
                out[i] = self._decode_alone(body, "csv")
            return
        sizes = [text.count(b"\n") + 1 for _, _, text in group]
        try:
            rows, has_costs = decoding.decode(b"\n".join(text for _, _, text in group), "csv",
                                              self.layout)
        except (ValueError, RequestError):
            rows = has_costs = None
        if rows is None or len(rows) != sum(sizes):
            half = len(group) // 2
            self._decode_joined(group[:half], out)
            self._decode_joined(group[half:], out)
            return
        start = 0
        for (i, _, _), n in zip(group, sizes):
            own = None if has_costs is None else has_costs[start:start + n]
            out[i] = (rows[start:start + n], own if own is not None and own.any() else None)
            start += n

    def _decode_alone(self, body: bytes, kind: str):
        try:
            return decoding.decode(body, kind, self.layout)
        except (ValueError, RequestError) as exc:
            return exc

    def _kind(self, content_type) -> str:
        if type(content_type) is not str:
            if content_type is not None:
                raise ValueError("its observedContentType is not text")
            return negotiation.input_kind(content_type)
        kind = self._kinds.get(content_type)
        if kind is None:
            kind = self._kinds[content_type] = negotiation.input_kind(content_type)
        return kind

    def _answers(self, part: dict, n: int, scores: list, decision: list) -> None:
        """A response body's ``n`` answers: their scores (P(1), or every class's P) and decisions
        (class indices) appended to ``scores`` and ``decision``; a ValueError says why not."""
        body = body_of(part)
        content_type = part.get("observedContentType") or ""
        essence = self._essence(content_type) if content_type else ""
        if essence == "application/json":
            document = json.loads(_ascii(body))
            if not isinstance(document, dict) or not isinstance(document.get("predictions"), list):
                raise ValueError("a JSON response without a 'predictions' list")
            items = document["predictions"]
        elif essence == "application/jsonlines":
            items = [json.loads(_ascii(line)) for line in body.splitlines() if line.strip()]
        elif essence == "text/csv":
            items = self._csv_items(body)
        else:
            raise ValueError(f"response type {content_type!r} is not one costaware answers")
        if len(items) != n:
            raise ValueError(f"{len(items)} answers for {n} request rows")
        found, decided = self._decided(items)
        overridden = sum(1 for item in items if item.get("costs") == "request")
        if overridden:  # the override came in a header, which the capture does not hold
            self.counts.add(REQUEST_COSTS, n=overridden)
        scores.extend(found)
        decision.extend(decided)

    def _essence(self, content_type: str) -> str:
        if type(content_type) is not str:
            raise ValueError("its observedContentType is not text")
        essence = self._essences.get(content_type)
        if essence is None:
            essence = self._essences[content_type] = negotiation.parse_media_type(content_type)[0]
        return essence

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

    def _decided(self, items: list) -> tuple[list, list[int]]:
        """The answers' scores (P(1) with two classes, else each class's P in the model's order)
        and decisions (class indices)."""
        k = self.spec.k
        scores, decided = [], []
        for item in items:
            if not isinstance(item, dict) or "decision" not in item:
                raise ValueError("an answer without its decision (ask for the decision and "
                                 + ("score" if k == 2 else "probabilities") + ")")
            index = self.class_of.get(str(item["decision"]))
            if index is None:
                raise ValueError(f"decision {item['decision']!r} is not a class of the model")
            decided.append(index)
            try:
                if k == 2:
                    scores.append(float(item["score"]))
                else:
                    probabilities = item["probabilities"]
                    scores.append([float(probabilities[name])
                                   for name in self.spec.policy.class_names])
            except KeyError as exc:
                raise ValueError(f"an answer without its {'score' if k == 2 else 'probabilities'}"
                                 f" ({exc} missing)") from None
            except (TypeError, ValueError):
                raise ValueError("an answer whose " + ("score" if k == 2 else "probabilities")
                                 + " are not numbers") from None
        flat = scores if k == 2 else [v for row in scores for v in row]
        if not all(0.0 <= v <= 1.0 for v in flat):  # NaN and infinities fail too
            raise ValueError("a probability outside [0, 1]")
        return scores, decided

    def _costs_alone(self, kept: list) -> tuple[list, np.ndarray, np.ndarray]:
        """Each record's own costs checked alone: the records that pass, a mask of their rows,
        and their costs; the others counted."""
        passed, keep, costs = [], [], []
        for record, (rows, has_costs) in kept:
            try:
                costs.append(self.pricing.costs(rows, has_costs))
            except RowError as exc:
                self.counts.add("records with invalid own costs", f"{record[0]}:{record[1]}: {exc}")
                keep.append(np.zeros(len(rows), dtype=bool))
                continue
            passed.append((record, (rows, has_costs)))
            keep.append(np.ones(len(rows), dtype=bool))
        return passed, np.concatenate(keep), (np.concatenate(costs) if costs else None)

    def _labels(self, meta: dict, n: int, where: str) -> list[int]:
        unknown = [-1] * n
        key = row_key(meta)
        values = self.labels.get(key) if key is not None else None
        if values is None:
            self.counts.add("capture rows without ground truth", n=n)
            return unknown
        if key in self.labelled_ids:
            self.counts.add("capture records repeating a labelled id (label used for the first)",
                            where)
            return unknown
        if len(values) != n:
            self.counts.add("ground truth with a different number of labels than rows", where)
            return unknown
        self.labelled_ids.add(key)
        self.counts.add("capture rows matched to ground truth", n=n)
        return values

    def _batch(self, chunks: list[_Chunk]) -> tuple[np.ndarray, np.ndarray | None, DecidedRows]:
        rows, has_costs = _stacked([(c.rows, c.has_costs) for c in chunks])
        join = (lambda name: getattr(chunks[0], name) if len(chunks) == 1
                else np.concatenate([getattr(c, name) for c in chunks]))
        decided = DecidedRows(join("probabilities"), join("decision"), join("costs"),
                              join("label"), self.spec.sensitive(rows), self.spec.favourable)
        if self.keep_keys:
            decided.keys, decided.times, decided.events = (join("keys"), join("times"),
                                                           join("events"))
        return rows, has_costs, decided

    def unmatched_ground_truth(self) -> int:
        return len(set(self.labels) - self.labelled_ids)


class _Chunk(NamedTuple):
    records: int
    rows: np.ndarray
    has_costs: np.ndarray | None
    probabilities: np.ndarray
    decision: np.ndarray
    costs: np.ndarray
    label: np.ndarray
    keys: np.ndarray | None = None
    times: np.ndarray | None = None
    events: np.ndarray | None = None


def row_key(meta: dict) -> str | None:
    """The key a record's label and twin are found by: its inferenceId, else its eventId."""
    key = meta.get("inferenceId") or meta.get("eventId")
    return None if key is None else str(key)


def _keys_and_times(records: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's key (its record's :func:`row_key`; ``key#j`` for row ``j`` of a record of
    several rows; None without one), time (seconds since 1970, NaN when unknown) and record
    (its eventId's hash, a fresh UUID per captured record; -1, which ``hash`` never gives, for
    none)."""
    keys, times, events = [], [], []
    for meta, n in records:
        key = row_key(meta)
        when = parse_time(meta.get("inferenceTime"))
        seconds = when.timestamp() if when is not None else np.nan
        event = meta.get("eventId")
        if n == 1 or key is None:
            keys.extend([key] * n)
        else:
            keys.extend(f"{key}#{j}" for j in range(n))
        times.extend([seconds] * n)
        events.extend([-1 if event is None else hash(str(event))] * n)
    return (np.array(keys, dtype=object), np.array(times, dtype=np.float64),
            np.array(events, dtype=np.int64))


def _ascii(data: bytes) -> str | bytes:
    """JSON bytes as ``json.loads`` reads them, decoded beforehand when that is plain ASCII (the
    same text: bytes without a NUL among the first two are UTF-8 to it), which is faster."""
    return data.decode("ascii") if data.isascii() and 0 not in data[:2] else data


def _csv_rows(body: bytes) -> bytes | None:
    """A CSV body's rows as they join other bodies' (its byte-order mark and final line ends
    off), or None for a body refused as a whole (empty or blank: decoded alone)."""
    if body.startswith(decoding.UTF8_BOM):
        body = body[len(decoding.UTF8_BOM):]
    body = body.rstrip(b"\r\n")
    return None if not body or body.isspace() else body


def _stacked(parts: list) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rows, has_costs)`` pairs as one: the rows stacked; which carry their own costs (None:
    none does)."""
    rows = parts[0][0] if len(parts) == 1 else np.concatenate([r for r, _ in parts])
    if all(own is None for _, own in parts):
        return rows, None
    return rows, np.concatenate([np.zeros(len(r), dtype=bool) if own is None else own
                                 for r, own in parts])


def _reason(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)
