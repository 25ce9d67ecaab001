"""Reading posts: files -> chunks of records -> valid posts and dead letters.

Every input line (or Parquet row) ends as exactly one of: a ``Post`` on the main
output, or a ``DeadLetter`` on the ``DEAD_LETTERS`` tagged output, which carries the
masked raw line, a reason and ``file:line``. Nothing is logged and dropped.
"""

import gzip
import io
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import orjson
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.posts import InvalidPost, decode_json_line, parse_post
from transforms.privacy import mask_raw_line

DEAD_LETTERS = "dead_letters"
STAGE_READ = "read"
STAGE_PARSE = "parse"
# Lines per chunk: big enough that per-element overhead vanishes, small enough that
# a file of a million lines spreads over every worker after the reshuffle.
CHUNK_LINES = 2_000
MAX_RAW_BYTES = 10 * 1024
PARQUET_SUFFIX = ".parquet"
# Chunks cross the reshuffle and wait in the runner's buffers until every file is
# read, so a batch run held the whole input in memory as Python bytes objects;
# zlib at level 1 packs JSON lines about 5:1 for about 1 s of CPU per 200 MB.
PACK_LEVEL = 1


class RecordChunk(NamedTuple):
    """Consecutive records of one file: JSON lines as bytes (``PackedLines`` once
    ``ReadChunksFn`` has packed them for the shuffle), or Parquet rows as dicts."""

    path: str
    first_number: int  # 1-based line (or row) number of records[0]
    records: list  # or PackedLines
    read_at_us: int


class PackedLines(NamedTuple):
    """A chunk's JSON lines as one zlib-compressed block (each line ends with ``\\n``
    but perhaps the file's last)."""

    data: bytes


def pack_lines(lines: list[bytes]) -> PackedLines:
    return PackedLines(zlib.compress(b"".join(lines), PACK_LEVEL))


def unpack_lines(packed: PackedLines) -> list[bytes]:
    """The lines ``pack_lines`` was given, byte for byte."""
    pieces = zlib.decompress(packed.data).split(b"\n")
    last = pieces.pop()  # b"" when the last line ended with a newline
    lines = [piece + b"\n" for piece in pieces]
    if last:
        lines.append(last)
    return lines


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


def dead_letter(raw: bytes | str | dict, error: str, source: str, stage: str, read_at_us: int) -> DeadLetter:
    """Build a dead letter whose raw line and reason hold no author id and no PII.

    ``raw`` is masked by pattern (any ``"user_id": value``, phone, ID-card, e-mail and
    bank-card numbers); when the line decodes, the ``user_id`` value itself is also
    blanked wherever it occurs, so an id that was written elsewhere in the line leaks
    nowhere either.
    """
    if isinstance(raw, dict):
        record = raw
        text = orjson.dumps(raw, default=str).decode("utf-8")
    else:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            record = None
    masked = mask_raw_line(text, max_chars=len(text))
    user_id = record.get("user_id") if isinstance(record, dict) else None
    if isinstance(user_id, (str, int)) and not isinstance(user_id, bool) and str(user_id):
        masked = masked.replace(str(user_id), "<masked>")
        error = error.replace(str(user_id), "<masked>")
    return DeadLetter(
        raw=cut_utf8(masked.rstrip("\r\n"), MAX_RAW_BYTES),
        error=mask_raw_line(error, max_chars=1_000),
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


def _open_lines(path: str) -> io.BufferedIOBase:
    """A line-iterable binary stream of ``path``; Beam's own decompressing wrapper
    reads line by line in Python, gzip's C reader is an order of magnitude faster."""
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if path.lower().endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def read_parquet_rows(path: str, chunk_lines: int = CHUNK_LINES) -> Iterator[RecordChunk]:
    """Yield chunks of rows (as dicts) of a Parquet file."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        number = 1
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=chunk_lines):
            rows = batch.to_pylist()
            yield RecordChunk(path, number, rows, now_us())
            number += len(rows)


def read_chunks(path: str, chunk_lines: int = CHUNK_LINES) -> Iterator[RecordChunk]:
    """Chunks of any supported input file, chosen by its name."""
    if path.lower().endswith(PARQUET_SUFFIX):
        return read_parquet_rows(path, chunk_lines)
    return read_json_lines(path, chunk_lines)


class ReadChunksFn(beam.DoFn):
    """File path -> RecordChunk; an unreadable file becomes one dead letter.

    Lines read before a failure (a truncated ``.gz``) are kept; the dead letter says
    where reading stopped.
    """

    def __init__(self, chunk_lines: int = CHUNK_LINES):
        self._chunk_lines = chunk_lines
        self._unreadable = Metrics.counter(self.__class__, "unreadable_files")

    def process(self, path: str) -> Iterable:
        next_number = 1
        try:
            for chunk in read_chunks(path, self._chunk_lines):
                next_number = chunk.first_number + len(chunk.records)
                if chunk.records and isinstance(chunk.records[0], bytes):
                    chunk = chunk._replace(records=pack_lines(chunk.records))
                yield chunk
        except Exception as error:  # noqa: BLE001 - any I/O or format error of a file.
            self._unreadable.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                dead_letter(
                    "",
                    f"file unreadable from line {next_number}: {type(error).__name__}: {error}",
                    f"{path}:{next_number}",
                    STAGE_READ,
                    now_us(),
                ),
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
        posts = 0
        records = chunk.records
        if isinstance(records, PackedLines):
            records = unpack_lines(records)
        for offset, record in enumerate(records):
            try:
                decoded = record if isinstance(record, dict) else decode_json_line(record)
                post = parse_post(decoded, self._key)
            except InvalidPost as error:
                self._rejected.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTERS,
                    dead_letter(
                        record,
                        str(error),
                        f"{chunk.path}:{chunk.first_number + offset}",
                        STAGE_PARSE,
                        chunk.read_at_us,
                    ),
                )
                continue
            posts += 1
            yield post
        self._posts.inc(posts)


class ReadPosts(beam.PTransform):
    """Globs -> {"posts": PCollection[Post], "dead_letters": PCollection[DeadLetter]}.

    Files are read whole by one worker each, in chunks; the chunks are reshuffled so
    parsing and everything fused after it spread over all workers even for one file.
    """

    def __init__(self, patterns: list[str], pseudonym_key: bytes, chunk_lines: int = CHUNK_LINES):
        super().__init__()
        self._patterns = list(patterns)
        self._key = pseudonym_key
        self._chunk_lines = chunk_lines

    def expand(self, pipeline: beam.pvalue.PBegin):
        files = (
            pipeline
            | "Patterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> fileio.MatchAll()
            | "FilePaths" >> beam.Map(lambda metadata: metadata.path)
            # Overlapping globs must not read a file twice.
            | "DistinctFiles" >> beam.Distinct()
        )
        return expand_chunks(files, self._key, self._chunk_lines)


def expand_chunks(files: beam.PCollection, key: bytes, chunk_lines: int) -> dict[str, beam.PCollection]:
    """File paths -> posts and dead letters; shared by the batch and landing-folder
    readers."""
    chunks = files | "ReadChunks" >> beam.ParDo(ReadChunksFn(chunk_lines)).with_outputs(
        DEAD_LETTERS, main="chunks"
    )
    parsed = (
        chunks.chunks
        | "SpreadChunks" >> beam.Reshuffle()
        | "ParsePosts" >> beam.ParDo(ParsePostsFn(key)).with_outputs(DEAD_LETTERS, main="posts")
    )
    dead = (chunks[DEAD_LETTERS], parsed[DEAD_LETTERS]) | "AllDeadLetters" >> beam.Flatten()
    return {"posts": parsed.posts, DEAD_LETTERS: dead}

