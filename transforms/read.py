"""Reading posts: files -> slices of lines (or rows) -> valid posts and dead letters.

Every input line (or Parquet row) ends as exactly one of: a ``Post`` on the main
output, or a ``DeadLetter`` on the ``DEAD_LETTERS`` tagged output, which carries the
masked raw line, a reason and ``file:line``. Nothing is logged and dropped.

A line is the unit of failure: whatever one line holds (a value no step expects, a
line longer than ``max_line_bytes``, nesting deeper than orjson's 1024 levels), it
becomes that line's dead letter and the lines after it are read on. Only a failure
to read the file itself (I/O, a damaged ``.gz``) ends a file early, with one dead
letter saying from which line.

A batch run reads each file twice: once to cut it into ``FileSlice`` descriptors
(where each slice starts, how many lines it has), and once more, slice by slice, on
whichever worker the reshuffle sends the slice to. Only the descriptors cross the
reshuffle: a runner holds what crosses a shuffle in its buffers, and records would
cost memory in proportion to the input (docs/performance.md).
"""

import gzip
import io
import itertools
import math
import os
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas.keys import PseudonymKeySource
from schemas.records import DeadLetter, Post
from transforms.posts import (
    STAGE_PARSE,
    InvalidPost,
    cut_for_masking,
    decode_json_line,
    parse_post,
    without_surrogates,
)
from transforms.privacy import load_key_from_source, mask_dead_letter

DEAD_LETTERS = "dead_letters"
STAGE_READ = "read"
# A line longer than this (its end of line not counted) is a dead letter, read in
# pieces and never held whole. A Weibo post of 2,000 characters with its fields is
# under 10 KB; 1 MiB leaves a hundredfold margin for other platforms' records.
DEFAULT_MAX_LINE_BYTES = 1 << 20
# The longest run of an overlong line held at once while skipping to its end.
_SKIP_PIECE_BYTES = 1 << 20
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
MAX_RAW_BYTES = 10 * 1024
# The longest reason a dead letter keeps (an exception's message can hold a value).
_MAX_REASON_CHARS = 1_000
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


def cut_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` of UTF-8 without splitting a character."""
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def dead_letter(
    raw: bytes | str | dict, error: str, source: str, stage: str, read_at_us: int
) -> DeadLetter:
    """Build a dead letter whose raw line and reason hold no author id and no PII.

    ``transforms.privacy.mask_dead_letter`` masks both: what decodes is masked value
    by value (the ``user_id`` value replaced whatever its form), what does not is
    masked with escapes read as what they stand for. Masking runs before the cut to
    10 KB, so a cut never exposes half of a number.
    """
    masked, reason = mask_dead_letter(raw, error)
    # A decoded value may hold lone surrogates, which no Parquet string can.
    return DeadLetter(
        raw=cut_utf8(without_surrogates(masked).rstrip("\r\n"), MAX_RAW_BYTES),
        error=without_surrogates(reason)[:1_000],
        source=source,
        stage=stage,
        read_at_us=read_at_us,
    )


def safe_dead_letter(
    raw: bytes | str | dict, reason: str, source: str, stage: str, read_at_us: int
) -> DeadLetter:
    """``dead_letter``, for any raw record and reason: it never raises. A reason is
    cut to a bounded length first; if masking the raw record fails, the dead letter
    keeps neither raw nor reason (they could hold personal data), only why."""
    source = without_surrogates(source)
    reason = without_surrogates(cut_for_masking(reason, _MAX_REASON_CHARS))
    try:
        return dead_letter(bounded_raw(raw), reason, source, stage, read_at_us)
    except Exception as error:  # noqa: BLE001 - the record's own failure, kept.
        return DeadLetter(
            raw="",
            error=f"{stage} failed; raw line and reason withheld, masking them "
            f"raised {type(error).__name__}",
            source=source,
            stage=stage,
            read_at_us=read_at_us,
        )


def bounded_raw(raw: bytes | str | dict) -> bytes | str | dict:
    """What of a rejected record ``dead_letter`` is given: the record itself when
    it fits a dead letter; else, when it decodes, the record with each long string
    value cut to ``MAX_RAW_BYTES``, or its first ``MAX_RAW_BYTES`` characters (an
    undecodable line's ``user_id`` is masked by pattern), a trailing partial number
    dropped from each cut. Masking
    costs more than linear time on some lines: it only sees what is kept."""
    if isinstance(raw, dict):
        text = orjson.dumps(raw, default=str).decode("utf-8")
        record = raw
    else:
        if len(raw) <= MAX_RAW_BYTES:
            return raw
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            record = None
    if len(text) <= MAX_RAW_BYTES:
        return raw
    if isinstance(record, dict):
        # Kept decoded, each long value cut: masking then still knows the user_id
        # field and the author's own id in the text (transforms.privacy).
        return {
            name: cut_for_masking(value, MAX_RAW_BYTES)
            if isinstance(value, str)
            else value
            for name, value in record.items()
        }
    return cut_for_masking(text, MAX_RAW_BYTES)


def parse_record(
    record: bytes | str | dict | OverlongLine | UnreadableRow,
    key: bytes,
    source: str,
    read_at_us: int,
) -> Post | DeadLetter:
    """One record (a JSON line, a Parquet row, or what the reader put in place of
    one) -> its ``Post`` or its ``DeadLetter``. Never raises: an error no step
    expected becomes the record's dead letter, naming its type."""
    if isinstance(record, OverlongLine):
        return safe_dead_letter(
            record.head,
            f"line too long: {record.size} bytes, over --max-line-bytes "
            f"{record.limit}; skipped unread",
            source,
            STAGE_READ,
            read_at_us,
        )
    if isinstance(record, UnreadableRow):
        return safe_dead_letter(
            "", f"row unreadable: {record.error}", source, STAGE_READ, read_at_us
        )
    try:
        decoded = record if isinstance(record, dict) else decode_json_line(record)
        return parse_post(decoded, key)
    except InvalidPost as error:
        reason, stage = str(error), error.stage
    except Exception as error:  # noqa: BLE001 - any failure is this record's alone.
        reason, stage = f"unexpected {type(error).__name__}: {error}", STAGE_PARSE
    return safe_dead_letter(record, reason, source, stage, read_at_us)


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
        size = len(line)
        head = line[: 2 * MAX_RAW_BYTES]
        del line
        while True:
            piece = readline(_SKIP_PIECE_BYTES)
            size += len(piece)
            if not piece or piece.endswith(b"\n"):
                break
        yield OverlongLine(head, size, max_line_bytes)


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


def unreadable_file(path: str, next_number: int, error: Exception) -> DeadLetter:
    """The dead letter of a file that could not be read from line ``next_number`` on."""
    return safe_dead_letter(
        "",
        f"file unreadable from line {next_number}: {type(error).__name__}: {error}",
        f"{path}:{next_number}",
        STAGE_READ,
        now_us(),
    )


class SliceFilesFn(beam.DoFn):
    """File path -> FileSlice; a file unreadable from some line on also gives one
    dead letter (the lines before it are still sliced and read)."""

    def __init__(
        self, every: int = CHUNK_LINES, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ):
        self._every = every
        self._max_line_bytes = max_line_bytes
        self._unreadable = Metrics.counter(self.__class__, "unreadable_files")

    def process(self, path: bytes | str) -> Iterable:
        path = os.fsdecode(path)
        try:
            if is_parquet(path):
                slices, records, error = parquet_slices(path, now_us())
            else:
                slices, records, error = json_lines_slices(
                    path, self._every, now_us(), self._max_line_bytes
                )
        except Exception as failure:  # noqa: BLE001 - a Parquet footer that cannot be read.
            slices, records, error = [], 0, failure
        yield from slices
        if error is not None:
            self._unreadable.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, unreadable_file(path, records + 1, error)
            )


class ParsePostsFn(beam.DoFn):
    """RecordChunk -> Post (main output) and DeadLetter (``DEAD_LETTERS``).

    Only where the pseudonymization key is (``key_source``) travels with the DoFn;
    the key is read from the worker's own file or environment in ``setup`` (a
    missing or different key fails the worker there, with one line), held only in
    the worker's memory and never logged or pickled.
    """

    def __init__(
        self,
        key_source: PseudonymKeySource,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ):
        self._key_source = key_source
        self._loaded_key: bytes | None = None
        self._max_line_bytes = max_line_bytes
        self._posts = Metrics.counter(self.__class__, "posts_parsed")
        self._rejected = Metrics.counter(self.__class__, "lines_rejected")
        self._unreadable = Metrics.counter(self.__class__, "unreadable_files")

    def setup(self) -> None:
        self._loaded_key = load_key_from_source(self._key_source)

    def pseudonym_key(self) -> bytes:
        """The key, read on first use when ``setup`` was not called (a DoFn used
        directly, outside a runner). A method, not a property: Beam looks at every
        attribute of a DoFn when it is applied, on the submitter."""
        if self._loaded_key is None:
            self.setup()
        return self._loaded_key

    def __getstate__(self) -> dict:
        # A DoFn copied after setup (a runner may pickle one it set up) leaves the
        # key behind.
        return {**self.__dict__, "_loaded_key": None}

    def process(self, chunk: RecordChunk) -> Iterable:
        yield from self.parse(
            chunk.records, chunk.path, chunk.first_number, chunk.read_at_us
        )

    def parse(
        self, records: Iterable, path: str, first_number: int, read_at_us: int
    ) -> Iterator:
        """Each record -> a Post, or a TaggedOutput(DEAD_LETTERS, DeadLetter): exactly
        one output per record, in order. If ``records`` itself fails (reading the
        file did), one more dead letter says from which line, and parsing ends.
        Returns (as a generator) the number of records read and whether reading
        failed."""
        key = self.pseudonym_key()
        posts = 0
        number = first_number
        iterator = iter(records)
        try:
            while True:
                try:
                    record = next(iterator)
                except StopIteration:
                    return number - first_number, False
                except Exception as error:  # noqa: BLE001 - reading, not a record.
                    self._unreadable.inc()
                    yield beam.pvalue.TaggedOutput(
                        DEAD_LETTERS, unreadable_file(path, number, error)
                    )
                    return number - first_number, True
                output = parse_record(record, key, f"{path}:{number}", read_at_us)
                number += 1
                if isinstance(output, Post):
                    posts += 1
                    yield output
                else:
                    self._rejected.inc()
                    yield beam.pvalue.TaggedOutput(DEAD_LETTERS, output)
        finally:
            self._posts.inc(posts)


class ParseSlicesFn(ParsePostsFn):
    """FileSlice -> Post (main output) and DeadLetter (``DEAD_LETTERS``), reading the
    slice's records from its file. A file that broke off or shrank since it was
    sliced ends its slice with one dead letter saying from which line."""

    def process(self, piece: FileSlice) -> Iterable:
        records, failed = yield from self.parse(
            read_slice(piece, self._max_line_bytes),
            piece.path,
            piece.first_number,
            piece.read_at_us,
        )
        if not failed and records < piece.count:
            missing = piece.count - records
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                unreadable_file(
                    piece.path,
                    piece.first_number + records,
                    EOFError(
                        f"{missing} lines fewer than when it was sliced: "
                        "the file changed"
                    ),
                ),
            )


class ReadPosts(beam.PTransform):
    """Globs -> {"posts": PCollection[Post], "dead_letters": PCollection[DeadLetter]}.

    Each file is sliced by one worker; the slices are reshuffled so reading, parsing
    and everything fused after them spread over all workers even for one file.
    """

    def __init__(
        self,
        patterns: list[str],
        key_source: PseudonymKeySource,
        every: int = CHUNK_LINES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ):
        super().__init__()
        self._patterns = list(patterns)
        self._key_source = key_source
        self._every = every
        self._max_line_bytes = max_line_bytes

    # No return annotation: Beam 2.77 warns, in every worker, that it ignores one
    # naming a dict of PCollections.
    def expand(self, pipeline: beam.pvalue.PBegin):
        files = (
            pipeline
            | "Patterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> fileio.MatchAll()
            # As bytes: a file name that is not UTF-8 (held with surrogates in a
            # str) would fail Beam's string coder and the whole run with it.
            | "FilePaths" >> beam.Map(lambda metadata: os.fsencode(metadata.path))
            # Overlapping globs must not read a file twice.
            | "DistinctFiles" >> beam.Distinct()
        )
        slices = files | "SliceFiles" >> beam.ParDo(
            SliceFilesFn(self._every, self._max_line_bytes)
        ).with_outputs(DEAD_LETTERS, main="slices")
        parsed = (
            slices.slices
            | "SpreadSlices" >> beam.Reshuffle()
            | "ParsePosts"
            >> beam.ParDo(
                ParseSlicesFn(self._key_source, self._max_line_bytes)
            ).with_outputs(DEAD_LETTERS, main="posts")
        )
        dead = (
            slices[DEAD_LETTERS],
            parsed[DEAD_LETTERS],
        ) | "AllDeadLetters" >> beam.Flatten()
        return {"posts": parsed.posts, DEAD_LETTERS: dead}
