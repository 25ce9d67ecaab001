"""Input files -> their records: JSON lines (bytes) and Parquet rows (dicts), read
whole or by slices.

A batch run reads each file twice: once to cut it into ``FileSlice`` descriptors
(where each slice starts, how many lines it has), and once more, slice by slice, on
whichever worker the reshuffle sends the slice to; only the descriptors cross the
reshuffle. Lines are read in bounded pieces (``bounded_lines``): a line longer than
``max_line_bytes`` comes as an ``OverlongLine`` and is never held whole. Both passes
cut lines the same way, so line numbers agree.
"""

import gzip
import io
import itertools
import math
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

# A dead letter keeps at most this much of its raw line.
MAX_RAW_BYTES = 10 * 1024
# A line longer than this (its end of line not counted) is a dead letter, read in
# pieces and never held whole. A Weibo post of 2,000 characters with its fields is
# under 10 KB; 1 MiB leaves a hundredfold margin for other platforms' records.
DEFAULT_MAX_LINE_BYTES = 1 << 20

# The longest run of an overlong line held at once while skipping to its end.
SKIP_PIECE_BYTES = 1 << 20

# Lines per chunk of the streaming reader, and the step at which the batch reader
# notes where lines start (slices begin only at those lines).
CHUNK_LINES = 2_000

# A slice goes to one worker, so a .gz file spreads over at most
# MAX_SLICES_PER_GZIP_FILE workers. gzip has no random access: a worker reaches its
# slice by decompressing the file up to it, so S slices of a .gz file cost about
# S / 2 extra decompressions of it (about 0.5 s per million posts each); the bound
# keeps that under 4. A slice of a plain file is a seek away, and Parquet slices are
# runs of row groups.
MIN_SLICE_LINES = 10_000

MAX_SLICES_PER_GZIP_FILE = 8

MAX_SLICES_PER_SEEKABLE_FILE = 256

PARQUET_SUFFIX = ".parquet"

# What reading a file that broke off raises (a truncated .gz: EOFError; a damaged
# one: gzip.BadGzipFile or zlib.error; a vanished one: OSError; a damaged Parquet
# file: pyarrow's errors).
READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    gzip.BadGzipFile,
    pa.ArrowException,
)


class RecordChunk(NamedTuple):
    """Consecutive records of one file: JSON lines as bytes, or Parquet rows as
    dicts."""

    path: str
    first_number: int  # 1-based line (or row) number of records[0]
    records: list
    read_at_us: int


class FileSlice(NamedTuple):
    """Where ``count`` consecutive records of one file are: what crosses the reshuffle
    instead of the records."""

    path: str
    first_number: int  # 1-based line (or row) number of the slice's first record
    count: int
    # JSON Lines: byte offset of the first line in the (decompressed) file;
    # Parquet: index of the first row group.
    start: int
    read_at_us: int


class OverlongLine(NamedTuple):
    """A line longer than the reader's bound, in place of the line: its first bytes
    (enough for a dead letter), its length in bytes (line end included) and the
    bound."""

    head: bytes
    size: int
    limit: int


class UnreadableRow(NamedTuple):
    """A Parquet row pyarrow could not turn into Python values (a timestamp beyond
    year 9999, say), in place of the row."""

    error: str


def now_us() -> int:
    return time.time_ns() // 1_000


def bounded_lines(
    handle: io.BufferedIOBase, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[bytes | OverlongLine]:
    """The lines of a binary stream, as ``for line in handle`` cuts them; a line
    longer than ``max_line_bytes`` (line end not counted) comes as an
    ``OverlongLine``, read in pieces of bounded size and never held whole."""
    readline = handle.readline
    limit = max_line_bytes + 1
    while True:
        line = readline(limit)
        if not line:
            return
        if len(line) < limit or line.endswith(b"\n"):
            yield line
            continue
        head, size = line[: 2 * MAX_RAW_BYTES], len(line)
        del line  # the bound's worth of bytes is not held while the rest is skipped
        yield skip_overlong(handle, head, size, max_line_bytes)[0]


def skip_overlong(
    handle: io.BufferedIOBase, head: bytes, size: int, max_line_bytes: int
) -> tuple[OverlongLine, bool]:
    """Read on past a line already over the bound (``size`` bytes read, ``head``
    kept of them) to its newline, in bounded pieces -> (its ``OverlongLine``,
    whether its newline was found: else the stream ended first)."""
    head = head[: 2 * MAX_RAW_BYTES]
    while True:
        piece = handle.readline(SKIP_PIECE_BYTES)
        size += len(piece)
        if not piece or piece.endswith(b"\n"):
            return OverlongLine(head, size, max_line_bytes), bool(piece)


def record_size(record: bytes | OverlongLine) -> int:
    """Bytes a record read by ``bounded_lines`` took in its file."""
    return record.size if isinstance(record, OverlongLine) else len(record)


def read_json_lines(
    path: str,
    chunk_lines: int = CHUNK_LINES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[RecordChunk]:
    """Yield chunks of raw lines of a JSON Lines file (``.gz`` decompressed); a line
    over ``max_line_bytes`` comes as an ``OverlongLine``."""
    with _open_lines(path) as handle:
        number = 1
        chunk: list[bytes | OverlongLine] = []
        for line in bounded_lines(handle, max_line_bytes):
            chunk.append(line)
            if len(chunk) >= chunk_lines:
                yield RecordChunk(path, number, chunk, now_us())
                number += len(chunk)
                chunk = []
        if chunk:
            yield RecordChunk(path, number, chunk, now_us())


def is_compressed(path: str) -> bool:
    return path.lower().endswith(".gz")


def _open_lines(path: str) -> io.BufferedIOBase:
    """A line-iterable binary stream of ``path``; Beam's own decompressing wrapper
    reads line by line in Python, gzip's C reader is an order of magnitude faster."""
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if is_compressed(path):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def read_parquet_rows(
    path: str, chunk_lines: int = CHUNK_LINES
) -> Iterator[RecordChunk]:
    """Yield chunks of rows (as dicts) of a Parquet file."""
    with FileSystems.open(
        path, compression_type=CompressionTypes.UNCOMPRESSED
    ) as handle:
        number = 1
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=chunk_lines):
            rows = batch_rows(batch)
            yield RecordChunk(path, number, rows, now_us())
            number += len(rows)


def batch_rows(batch: pa.RecordBatch) -> list:
    """A record batch -> its rows as dicts; a row pyarrow cannot convert (the whole
    batch fails with it) comes as an ``UnreadableRow`` and the others as dicts."""
    try:
        return batch.to_pylist()
    except Exception:  # noqa: BLE001 - find the rows at fault, one by one.
        rows: list = []
        for index in range(batch.num_rows):
            try:
                rows.extend(batch.slice(index, 1).to_pylist())
            except Exception as error:  # noqa: BLE001 - this row's failure alone.
                rows.append(UnreadableRow(f"{type(error).__name__}: {error}"))
        return rows


def read_chunks(
    path: str,
    chunk_lines: int = CHUNK_LINES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[RecordChunk]:
    """Chunks of any supported input file, chosen by its name."""
    if is_parquet(path):
        return read_parquet_rows(path, chunk_lines)
    return read_json_lines(path, chunk_lines, max_line_bytes)


def is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_SUFFIX)


def group_units(sizes: Sequence[int], target: int) -> list[tuple[int, int]]:
    """Consecutive units (runs of lines, row groups) of the given sizes -> runs of
    them, as (first unit, units), each run closed once it holds ``target`` records;
    units of size 0 join the run before them."""
    runs: list[tuple[int, int]] = []
    first = held = 0
    for index, size in enumerate(sizes):
        held += size
        if held >= target:
            runs.append((first, index + 1 - first))
            first, held = index + 1, 0
    if first < len(sizes):
        if held == 0 and runs:
            last_first, last_units = runs.pop()
            runs.append((last_first, last_units + len(sizes) - first))
        else:
            runs.append((first, len(sizes) - first))
    return runs


def slice_target(
    records: int,
    min_records: int = MIN_SLICE_LINES,
    max_slices: int = MAX_SLICES_PER_GZIP_FILE,
) -> int:
    """Records per slice of a file of ``records`` records: at least ``min_records``,
    and few enough for at most ``max_slices`` slices."""
    return max(min_records, math.ceil(records / max_slices), 1)


def index_json_lines(
    path: str, every: int = CHUNK_LINES, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> tuple[list[int], int, Exception | None]:
    """One pass over a JSON Lines file: (byte offsets in the decompressed file of
    lines 1, 1 + every, 1 + 2 * every, ...; lines read; the error that stopped the
    reading, or None). Lines are counted as ``bounded_lines`` yields them, as the
    second pass reads them."""
    offsets: list[int] = []
    lines = offset = 0
    try:
        with _open_lines(path) as handle:
            for line in bounded_lines(handle, max_line_bytes):
                if lines % every == 0:
                    offsets.append(offset)
                lines += 1
                offset += record_size(line)
    except Exception as error:  # noqa: BLE001 - any I/O or format error of a file.
        return offsets, lines, error
    return offsets, lines, None


def json_lines_slices(
    path: str,
    every: int = CHUNK_LINES,
    read_at_us: int = 0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> tuple[list[FileSlice], int, Exception | None]:
    """A JSON Lines file -> (its slices, lines in them, the error that stopped the
    reading or None); the slices cover every line read, in order."""
    offsets, lines, error = index_json_lines(path, every, max_line_bytes)
    sizes = [min(every, lines - index * every) for index in range(len(offsets))]
    max_slices = (
        MAX_SLICES_PER_GZIP_FILE
        if is_compressed(path)
        else MAX_SLICES_PER_SEEKABLE_FILE
    )
    slices = []
    for first, units in group_units(sizes, slice_target(lines, max_slices=max_slices)):
        first_line = first * every
        count = sum(sizes[first : first + units])
        slices.append(
            FileSlice(path, first_line + 1, count, offsets[first], read_at_us)
        )
    return slices, lines, error


def parquet_slices(path: str, read_at_us: int = 0) -> tuple[list[FileSlice], int, None]:
    """A Parquet file -> (its slices, rows in them, None), each a run of whole row
    groups, read from the file's footer alone."""
    with FileSystems.open(
        path, compression_type=CompressionTypes.UNCOMPRESSED
    ) as handle:
        metadata = pq.ParquetFile(handle).metadata
        sizes = [
            metadata.row_group(index).num_rows
            for index in range(metadata.num_row_groups)
        ]
    slices, number = [], 1
    target = slice_target(sum(sizes), max_slices=MAX_SLICES_PER_SEEKABLE_FILE)
    for first, units in group_units(sizes, target):
        count = sum(sizes[first : first + units])
        slices.append(FileSlice(path, number, count, first, read_at_us))
        number += count
    return slices, number - 1, None


def read_slice(
    piece: FileSlice, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[bytes | dict | OverlongLine | UnreadableRow]:
    """The records of a slice: JSON lines as bytes, or Parquet rows as dicts (or
    what stands in for a line too long or a row unreadable)."""
    if is_parquet(piece.path):
        yield from _read_parquet_slice(piece)
        return
    with _open_lines(piece.path) as handle:
        # A .gz file is decompressed up to the offset: gzip has no random access.
        handle.seek(piece.start)
        yield from itertools.islice(bounded_lines(handle, max_line_bytes), piece.count)


def _read_parquet_slice(piece: FileSlice) -> Iterator[dict]:
    with FileSystems.open(
        piece.path, compression_type=CompressionTypes.UNCOMPRESSED
    ) as handle:
        parquet = pq.ParquetFile(handle)
        groups, rows = [], 0
        while rows < piece.count:
            groups.append(piece.start + len(groups))
            rows += parquet.metadata.row_group(groups[-1]).num_rows
        if not groups:  # a run of empty row groups (pyarrow reads all for [])
            return
        for batch in parquet.iter_batches(batch_size=CHUNK_LINES, row_groups=groups):
            yield from batch_rows(batch)
