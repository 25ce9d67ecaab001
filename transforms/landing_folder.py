"""The landing folder: an unbounded stream of post files, with an event-time watermark.

Crawlers drop finished files (JSON Lines, ``.gz``, Parquet) into one folder; a
streaming run reads each file once, as it appears. The protocol, shared by the
pipeline's source and by ``pipelines.replay``:

- A file is taken when its name ends in one of ``LANDING_SUFFIXES`` and starts with
  neither ``.`` nor ``_``. Writers best drop a file whole (write it under a hidden or
  ``.tmp`` name, then rename it: ``drop_file`` does), but a file written slowly under
  its final name loses nothing either:
- A plain JSON Lines file (``.jsonl``, ``.json``, ``.ndjson``) is read up to its last
  complete line, and again from there whenever it grows: the source remembers, per
  file, the byte offset and line number reached. A last line without its newline is
  read once the file has not changed for ``--settle-time`` if it is a whole JSON value,
  else only when the stream ends (a line cut off mid-way then becomes a dead letter).
- A compressed or Parquet file (readable only whole) is taken once its modification
  time is ``--settle-time`` old, or when the stream ends, and read once.
- Files are taken in order of modification time, then name. A name that leaves the
  folder is forgotten, so what the source remembers is bounded by the folder's
  contents, not by the stream's length.
- ``_END`` (``END_MARKER``) in the folder ends the stream: the source reads what is
  left, waits ``settle`` seconds (so processing-time triggers have fired), then lets
  the watermark go to the end of time; every window fires its final pane and the run
  finishes by itself. Without it the run goes on until cancelled.

Plain functions: the folder protocol, the watermark's arithmetic and the replay
of finished files into a folder (``pipelines.replay``). ``transforms.landing``
reads the folder in Beam.
"""

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.files import (
    DEFAULT_MAX_LINE_BYTES,
    MAX_RAW_BYTES,
    OverlongLine,
    read_chunks,
    skip_overlong,
)
from transforms.posts import InvalidPost, parse_created_at

UTF8_BOM = b"\xef\xbb\xbf"
END_MARKER = "_END"


LANDING_SUFFIXES = (".jsonl", ".json", ".ndjson", ".gz", ".parquet")


def is_landing_file(name: str) -> bool:
    """Whether a file name is a post file the source takes (not hidden, not a marker,
    not a temporary name)."""
    base = os.path.basename(name)
    return not base.startswith((".", "_")) and base.lower().endswith(LANDING_SUFFIXES)


class LandingFile(NamedTuple):
    path: str
    modified: float
    size: int = 0


def list_landing(folder: str) -> tuple[list[LandingFile], bool]:
    """The post files in ``folder`` in reading order, and whether ``_END`` is there."""
    pattern = FileSystems.join(folder, "*")
    metadata = FileSystems.match([pattern])[0].metadata_list
    files = [
        LandingFile(
            item.path, item.last_updated_in_seconds or 0.0, item.size_in_bytes or 0
        )
        for item in metadata
        if is_landing_file(item.path)
    ]
    ended = any(os.path.basename(item.path) == END_MARKER for item in metadata)
    return sorted(files, key=lambda file: (file.modified, file.path)), ended


def drop_file(folder: str, name: str, content: bytes) -> str:
    """Write ``content`` as ``folder/name`` all at once (a temporary name, then a
    rename)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(content)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def end_stream(folder: str) -> str:
    """Drop the ``_END`` marker: the streaming run finishes after what is there."""
    return drop_file(folder, END_MARKER, b"")


def is_growable(path: str) -> bool:
    """Whether a landing file is read line by line as it grows (plain JSON Lines),
    rather than once whole (compressed, Parquet)."""
    return not path.lower().endswith((".gz", ".parquet"))


def is_settled(file: LandingFile, now_seconds: float, settle_seconds: float) -> bool:
    """Whether a file read whole has gone ``settle_seconds`` without a change."""
    return now_seconds - file.modified >= settle_seconds


class NewLines(NamedTuple):
    """Complete lines read from a growing file: where they start (byte offset, line
    number) and where the next read starts."""

    lines: list[bytes]
    first_number: int
    next_offset: int
    next_number: int


def read_new_lines(
    path: str,
    offset: int,
    next_number: int,
    max_lines: int,
    final: bool = False,
    settled: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> NewLines:
    """Up to ``max_lines`` complete lines of ``path`` from byte ``offset`` (line
    ``next_number``). A last line without its newline is taken when ``final`` (the
    stream ends), or when the file has ``settled`` and the line is a whole JSON value
    (a writer that does not end its file with a newline); a newline arriving later
    for a line so taken is skipped. A byte order mark at the file's start is not
    part of its first line. A line longer than ``max_line_bytes`` comes as an
    ``OverlongLine`` once its end is there (or the stream ends), read in bounded
    pieces and never held whole, as ``transforms.files.bounded_lines`` does."""
    lines: list[bytes | OverlongLine] = []
    limit = max_line_bytes + 1
    position = offset
    with FileSystems.open(
        path, compression_type=CompressionTypes.UNCOMPRESSED
    ) as handle:
        if offset > 0:
            handle.seek(offset - 1)
            if handle.read(1) != b"\n" and handle.read(1) == b"\n":
                position += 1
        handle.seek(position)
        while len(lines) < max_lines:
            line = handle.readline(limit)
            if not line:
                break
            if len(line) == limit and not line.endswith(b"\n"):
                head, size = line[: 2 * MAX_RAW_BYTES], len(line)
                del line  # not held while the rest of the line is skipped
                overlong, ended = skip_overlong(handle, head, size, max_line_bytes)
                if not (ended or final):
                    break  # its end has not been written yet
                position += overlong.size
                lines.append(overlong)
                continue
            if not line.endswith(b"\n") and not (
                final or (settled and is_whole_json(line))
            ):
                break
            if position == 0 and line.startswith(UTF8_BOM):
                line = line[len(UTF8_BOM) :]
                position += len(UTF8_BOM)
            position += len(line)
            lines.append(line)
    return NewLines(lines, next_number, position, next_number + len(lines))


def is_whole_json(line: bytes) -> bool:
    """Whether ``line`` parses as one JSON value (so it was not cut mid-way)."""
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def record_event_time_us(record: bytes | dict) -> int | None:
    """The event time of one raw record, or None when it has none a post could have
    (such a record becomes a dead letter downstream; it does not move the watermark)."""
    try:
        decoded = record if isinstance(record, dict) else orjson.loads(record)
        if not isinstance(decoded, dict):
            return None
        return parse_created_at(decoded.get("created_at"))
    except (orjson.JSONDecodeError, InvalidPost, TypeError, ValueError):
        return None


def next_watermark_us(
    current_us: int, event_times_us: Iterable[int | None], wall_clock_us: int
) -> int:
    """The source's watermark after reading records with these event times: the latest
    event time so far, capped by the wall clock, never moving back, on whole
    milliseconds (runners such as Prism keep watermarks in milliseconds)."""
    latest = max(
        (time for time in event_times_us if time is not None), default=current_us
    )
    candidate = min(latest, wall_clock_us) // 1_000 * 1_000
    return max(current_us, candidate)


def read_records_for_replay(path: str) -> Iterator[bytes]:
    """The raw lines of a finished JSON Lines file (``.gz`` too), for ``replay``.
    A line over the default ``--max-line-bytes`` is replayed as its first bytes
    (a dead letter either way, and its numbering kept)."""
    for chunk in read_chunks(path):
        for record in chunk.records:
            if isinstance(record, bytes):
                yield record
            elif isinstance(record, OverlongLine):
                yield record.head.rstrip(b"\n") + b"\n"
            else:
                yield orjson.dumps(record, default=str) + b"\n"


def in_time_order(records: Iterable[bytes]) -> list[bytes]:
    """The records sorted by ``created_at``, as a crawler following the live timeline
    would have delivered them (a file grouped by cascade jumps back years between
    cascades, and a streaming run counts nearly all of it late). A record without a
    readable time stays right after the record before it; equal times keep their
    order."""
    keyed, latest_us = [], None
    for record in records:
        event_us = record_event_time_us(record)
        if event_us is not None:
            latest_us = event_us
        keyed.append((latest_us if latest_us is not None else -(2**63), record))
    keyed.sort(key=lambda pair: pair[0])
    return [record for _, record in keyed]


def replay_batches(
    records: Iterable[bytes], speed: float, batch_seconds: float, batch_lines: int
) -> Iterator[tuple[float, list[bytes]]]:
    """Group lines into files to drop, each with its due time in seconds from the start.

    The replay clock follows the latest ``created_at`` so far: a line later than the
    clock is due when the clock, running ``speed`` times real time, reaches it; a line
    earlier than the clock (a crawled straggler, a redelivered copy) or without a
    readable time is due with the lines around it, as the crawler delivered it.
    ``speed`` 0 means no pacing: files of ``batch_lines`` lines, all due at once.
    A file closes when ``batch_seconds`` of replay time pass or it has ``batch_lines``.
    """
    first_us = clock_us = None
    batch: list[bytes] = []
    batch_due = 0.0
    for record in records:
        event_us = record_event_time_us(record)
        if event_us is not None:
            if first_us is None:
                first_us = clock_us = event_us
            clock_us = max(clock_us, event_us)
        due = (
            0.0
            if not speed or first_us is None
            else (clock_us - first_us) / 1e6 / speed
        )
        if batch and (
            len(batch) >= batch_lines or (speed and due - batch_due >= batch_seconds)
        ):
            yield batch_due, batch
            batch = []
        if not batch:
            batch_due = due
        batch.append(record if record.endswith(b"\n") else record + b"\n")
    if batch:
        yield batch_due, batch


def replay(
    records: Iterable[bytes],
    folder: str,
    speed: float,
    batch_seconds: float = 1.0,
    batch_lines: int = 10_000,
    prefix: str = "replay",
    sleep=time.sleep,
    clock=time.monotonic,
) -> tuple[int, int]:
    """Drop ``records`` into ``folder`` at ``speed`` times real time; returns
    (files, lines) dropped. Files are named ``PREFIX-000001.jsonl`` and so on."""
    start = clock()
    files = lines = 0
    for due, batch in replay_batches(records, speed, batch_seconds, batch_lines):
        wait = start + due - clock()
        if wait > 0:
            sleep(wait)
        files += 1
        lines += len(batch)
        drop_file(folder, f"{prefix}-{files:06d}.jsonl", b"".join(batch))
    return files, lines
