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

import os
from collections.abc import Iterable, Iterator

import apache_beam as beam
import orjson
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from schemas.keys import PseudonymKeySource
from schemas.records import DeadLetter, Post
from transforms.files import (
    CHUNK_LINES,
    DEFAULT_MAX_LINE_BYTES,
    MAX_RAW_BYTES,
    FileSlice,
    OverlongLine,
    RecordChunk,
    UnreadableRow,
    is_parquet,
    json_lines_slices,
    now_us,
    parquet_slices,
    read_slice,
)
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
# With a slice step (``transforms.slice_windows``): each slice's chain edges.
EDGES = "edges"
STAGE_READ = "read"
# The longest reason a dead letter keeps (an exception's message can hold a value).
_MAX_REASON_CHARS = 1_000


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
    """Globs -> {"posts": PCollection[Post], "dead_letters": PCollection[DeadLetter],
    "slices": PCollection[FileSlice]}; with ``summarize_fn`` (a
    ``transforms.slice_windows.SummarizeSlicesFn``), "parts" and "edges" (its
    outputs) instead of "posts".

    Each file is sliced by one worker; the slices are reshuffled so reading, parsing
    and everything fused after them spread over all workers even for one file.
    """

    def __init__(
        self,
        patterns: list[str],
        key_source: PseudonymKeySource,
        every: int = CHUNK_LINES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        summarize_fn: beam.DoFn | None = None,
    ):
        super().__init__()
        self._patterns = list(patterns)
        self._key_source = key_source
        self._every = every
        self._max_line_bytes = max_line_bytes
        self._summarize_fn = summarize_fn

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
        spread = slices.slices | "SpreadSlices" >> beam.Reshuffle()
        if self._summarize_fn is None:
            parsed = spread | "ParsePosts" >> beam.ParDo(
                ParseSlicesFn(self._key_source, self._max_line_bytes)
            ).with_outputs(DEAD_LETTERS, main="posts")
            outputs = {"posts": parsed.posts}
        else:
            parsed = spread | "SummarizeSlices" >> beam.ParDo(
                self._summarize_fn
            ).with_outputs(DEAD_LETTERS, EDGES, main="parts")
            outputs = {"parts": parsed.parts, EDGES: parsed[EDGES]}
        dead = (
            slices[DEAD_LETTERS],
            parsed[DEAD_LETTERS],
        ) | "AllDeadLetters" >> beam.Flatten()
        # The slices too: the events read their representative posts from them.
        return {**outputs, DEAD_LETTERS: dead, "slices": slices.slices}
