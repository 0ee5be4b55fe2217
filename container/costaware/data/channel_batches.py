"""A channel's rows in batches (placeholder: the whole channel read, then sliced)."""

from __future__ import annotations

import os
from typing import Iterator

from .channel_files import DataOptions, Dataset, load_channel


def channel_batches(directory: str, content_type: str, options: DataOptions, batch_rows: int,
                    log=None) -> Iterator[Dataset]:
    dataset = load_channel(directory, content_type, options, log)
    for start in range(0, dataset.rows, batch_rows):
        yield dataset.take(slice(start, start + batch_rows))


def channel_bytes(directory: str, content_type: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(directory) for name in names)
