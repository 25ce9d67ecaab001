"""Reading posts: files -> slices of lines (or rows) -> valid posts and dead letters.

Every input line (or Parquet row) ends as exactly one of: a ``Post`` on the main
output, or a ``DeadLetter`` on the ``DEAD_LETTERS`` tagged output, which carries the
masked raw line, a reason and ``file:line``. Nothing is logged and dropped.

A batch run reads each file twice: once to cut it into ``FileSlice`` descriptors
(where each slice starts, how many lines it has), and once more, slice by slice, on
whichever worker the reshuffle sends the slice to. Only the descriptors cross the
reshuffle: the records themselves did until Beam 2.77's FnApiRunner held every one of
them (compressed) in its shuffle buffers and again in each worker's input, about
200 MB more per million posts at the start of the main stage.
"""

import gzip
import io
import itertools
import math
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.posts import InvalidPost, decode_json_line, parse_post
from transforms.privacy import mask_dead_letter

DEAD_LETTERS = "dead_letters"
STAGE_READ = "read"
STAGE_PARSE = "parse"
# Lines per chunk of the streaming reader, and the step at which the batch reader
# notes where lines start (slices begin only at those lines).
CHUNK_LINES = 2_000
# A slice goes to one worker, so a .gz file spreads over at most MAX_SLICES_PER_GZIP_FILE
# workers. gzip has no random access: a worker reaches its slice by decompressing
# the file up to it, so S slices of a .gz file cost about S / 2 extra decompressions
# of it (about 0.5 s per million posts each); the bound keeps that under 4. A slice
# of a plain file is a seek away, and Parquet slices are runs of row groups.
MIN_SLICE_LINES = 10_000
MAX_SLICES_PER_GZIP_FILE = 8
MAX_SLICES_PER_SEEKABLE_FILE = 256
MAX_RAW_BYTES = 10 * 1024
PARQUET_SUFFIX = ".parquet"
# What reading a file that broke off raises (a truncated .gz: EOFError; a damaged
# one: gzip.BadGzipFile or zlib.error; a vanished one: OSError).
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile)


class RecordChunk(NamedTuple):
    """Consecutive records of one file: JSON lines as bytes, or Parquet rows as dicts."""

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


class DeadLetter(NamedTuple):
    """A rejected input line, already masked: safe to write and to show."""

    raw: str
    error: str
    source: str
    stage: str
    read_at_us: int


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
    return DeadLetter(
        raw=cut_utf8(masked.rstrip("\r\n"), MAX_RAW_BYTES),
        error=reason[:1_000],
        source=source,
        stage=stage,
        read_at_us=read_at_us,
    )


def read_json_lines(path: str, chunk_lines: int = CHUNK_LINES) -> Iterator[RecordChunk]:
    """Yield chunks of raw lines of a JSON Lines file (``.gz`` decompressed)."""
    with _open_lines(path) as handle:
        number = 1
        chunk: list[bytes] = []
        for line in handle:
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
            rows = batch.to_pylist()
            yield RecordChunk(path, number, rows, now_us())
            number += len(rows)


def read_chunks(path: str, chunk_lines: int = CHUNK_LINES) -> Iterator[RecordChunk]:
    """Chunks of any supported input file, chosen by its name."""
    if is_parquet(path):
        return read_parquet_rows(path, chunk_lines)
    return read_json_lines(path, chunk_lines)


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
    path: str, every: int = CHUNK_LINES
) -> tuple[list[int], int, Exception | None]:
    """One pass over a JSON Lines file: (byte offsets in the decompressed file of
    lines 1, 1 + every, 1 + 2 * every, ...; lines read; the error that stopped the
    reading, or None). Lines are counted as ``for line in file`` yields them, as the
    second pass reads them."""
    offsets: list[int] = []
    lines = offset = 0
    try:
        with _open_lines(path) as handle:
            for line in handle:
                if lines % every == 0:
                    offsets.append(offset)
                lines += 1
                offset += len(line)
    except Exception as error:  # noqa: BLE001 - any I/O or format error of a file.
        return offsets, lines, error
    return offsets, lines, None


def json_lines_slices(
    path: str, every: int = CHUNK_LINES, read_at_us: int = 0
) -> tuple[list[FileSlice], int, Exception | None]:
    """A JSON Lines file -> (its slices, lines in them, the error that stopped the
    reading or None); the slices cover every line read, in order."""
    offsets, lines, error = index_json_lines(path, every)
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


def read_slice(piece: FileSlice) -> Iterator[bytes | dict]:
    """The records of a slice: JSON lines as bytes, or Parquet rows as dicts."""
    if is_parquet(piece.path):
        yield from _read_parquet_slice(piece)
        return
    with _open_lines(piece.path) as handle:
        # A .gz file is decompressed up to the offset: gzip has no random access.
        handle.seek(piece.start)
        yield from itertools.islice(handle, piece.count)


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
            yield from batch.to_pylist()


def unreadable_file(path: str, next_number: int, error: Exception) -> DeadLetter:
    """The dead letter of a file that could not be read from line ``next_number`` on."""
    return dead_letter(
        "",
        f"file unreadable from line {next_number}: {type(error).__name__}: {error}",
        f"{path}:{next_number}",
        STAGE_READ,
        now_us(),
    )


class SliceFilesFn(beam.DoFn):
    """File path -> FileSlice; a file unreadable from some line on also gives one
    dead letter (the lines before it are still sliced and read)."""

    def __init__(self, every: int = CHUNK_LINES):
        self._every = every
        self._unreadable = Metrics.counter(self.__class__, "unreadable_files")

    def process(self, path: str) -> Iterable:
        try:
            if is_parquet(path):
                slices, records, error = parquet_slices(path, now_us())
            else:
                slices, records, error = json_lines_slices(path, self._every, now_us())
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

    The pseudonymization key arrives as configuration; it is never logged.
    """

    def __init__(self, pseudonym_key: bytes):
        self._key = pseudonym_key
        self._posts = Metrics.counter(self.__class__, "posts_parsed")
        self._rejected = Metrics.counter(self.__class__, "lines_rejected")

    def process(self, chunk: RecordChunk) -> Iterable:
        yield from self.parse(
            chunk.records, chunk.path, chunk.first_number, chunk.read_at_us
        )

    def parse(
        self, records: Iterable, path: str, first_number: int, read_at_us: int
    ) -> Iterator:
        """Each record -> a Post, or a TaggedOutput(DEAD_LETTERS, DeadLetter): exactly
        one output per record, in order."""
        posts = 0
        try:
            for offset, record in enumerate(records):
                try:
                    decoded = (
                        record if isinstance(record, dict) else decode_json_line(record)
                    )
                    post = parse_post(decoded, self._key)
                except InvalidPost as error:
                    self._rejected.inc()
                    yield beam.pvalue.TaggedOutput(
                        DEAD_LETTERS,
                        dead_letter(
                            record,
                            str(error),
                            f"{path}:{first_number + offset}",
                            STAGE_PARSE,
                            read_at_us,
                        ),
                    )
                    continue
                posts += 1
                yield post
        finally:
            self._posts.inc(posts)


class ParseSlicesFn(ParsePostsFn):
    """FileSlice -> Post (main output) and DeadLetter (``DEAD_LETTERS``), reading the
    slice's records from its file. A file that broke off or shrank since it was
    sliced ends its slice with one dead letter saying from which line."""

    def process(self, piece: FileSlice) -> Iterable:
        outputs = 0
        try:
            for output in self.parse(
                read_slice(piece), piece.path, piece.first_number, piece.read_at_us
            ):
                outputs += 1
                yield output
        except READ_ERRORS as error:
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                unreadable_file(piece.path, piece.first_number + outputs, error),
            )
            return
        if outputs < piece.count:
            missing = piece.count - outputs
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                unreadable_file(
                    piece.path,
                    piece.first_number + outputs,
                    EOFError(
                        f"{missing} lines fewer than when it was sliced: the file changed"
                    ),
                ),
            )


class ReadPosts(beam.PTransform):
    """Globs -> {"posts": PCollection[Post], "dead_letters": PCollection[DeadLetter]}.

    Each file is sliced by one worker; the slices are reshuffled so reading, parsing
    and everything fused after them spread over all workers even for one file.
    """

    def __init__(
        self, patterns: list[str], pseudonym_key: bytes, every: int = CHUNK_LINES
    ):
        super().__init__()
        self._patterns = list(patterns)
        self._key = pseudonym_key
        self._every = every

    # No return annotation: Beam 2.77 warns, in every worker, that it ignores one
    # naming a dict of PCollections.
    def expand(self, pipeline: beam.pvalue.PBegin):
        files = (
            pipeline
            | "Patterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> fileio.MatchAll()
            | "FilePaths" >> beam.Map(lambda metadata: metadata.path)
            # Overlapping globs must not read a file twice.
            | "DistinctFiles" >> beam.Distinct()
        )
        slices = files | "SliceFiles" >> beam.ParDo(
            SliceFilesFn(self._every)
        ).with_outputs(DEAD_LETTERS, main="slices")
        parsed = (
            slices.slices
            | "SpreadSlices" >> beam.Reshuffle()
            | "ParsePosts"
            >> beam.ParDo(ParseSlicesFn(self._key)).with_outputs(
                DEAD_LETTERS, main="posts"
            )
        )
        dead = (
            slices[DEAD_LETTERS],
            parsed[DEAD_LETTERS],
        ) | "AllDeadLetters" >> beam.Flatten()
        return {"posts": parsed.posts, DEAD_LETTERS: dead}
