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

The watermark follows the latest ``created_at`` of a valid post read so far, never
later than the wall clock (a post stamped in the future does not close windows
early; a line that becomes a dead letter does not move it), and ``lag`` seconds of
processing time behind it: a window that gets a post stays open at least that long,
so its early-results timer fires before the window closes (Prism 2.77 crashes
otherwise, ``deploy/prism/README.md`` caveat 1; a backlog read at thousands of posts a
second moves event time by days within seconds). Posts of a file are stamped, as
Beam elements, with the latest event time read *before* the file (the watermark to
be); ``transforms.late`` compares that stamp with the post's window to tell posts
beyond the allowed lateness from the rest, before Beam would drop them silently. The
source parses as it reads: the watermark needs the posts' event times.
"""

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.iobase import (
    RestrictionProgress,
    RestrictionTracker,
    WatermarkEstimator,
)
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    Duration,
    Timestamp,
)

from schemas.keys import PseudonymKeySource
from schemas.records import Post
from transforms.posts import InvalidPost, parse_created_at
from transforms.read import (
    CHUNK_LINES,
    DEAD_LETTERS,
    READ_ERRORS,
    ParsePostsFn,
    now_us,
    read_chunks,
    unreadable_file,
)

END_MARKER = "_END"
LANDING_SUFFIXES = (".jsonl", ".json", ".ndjson", ".gz", ".parquet")
# Files read in one bundle before the source checkpoints (and moves its watermark):
# a backlog of many files is then read in steps, not in one giant bundle.
MAX_LINES_PER_BUNDLE = 50_000
UTF8_BOM = b"\xef\xbb\xbf"


# --- The folder protocol: plain functions ---------------------------------------


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
    """Write ``content`` as ``folder/name`` all at once (temporary name, then rename)."""
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
) -> NewLines:
    """Up to ``max_lines`` complete lines of ``path`` from byte ``offset`` (line
    ``next_number``). A last line without its newline is taken when ``final`` (the
    stream ends), or when the file has ``settled`` and the line is a whole JSON value
    (a writer that does not end its file with a newline); a newline arriving later
    for a line so taken is skipped. A byte order mark at the file's start is not
    part of its first line."""
    lines: list[bytes] = []
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
            line = handle.readline()
            if not line:
                break
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


# --- The splittable DoFn ---------------------------------------------------------


class LandingRestriction(NamedTuple):
    """What the source has done: the names read whole (still in the folder), when
    ``_END`` was first seen (epoch µs, or None), whether the stream is over, and how
    far each growing file was read: ((path, byte offset, next line number), ...)."""

    seen: frozenset
    end_seen_at_us: int | None = None
    finished: bool = False
    offsets: tuple = ()


# Positions claimed on a LandingTracker: ("read", path), ("lines", (path, offset,
# next line number)), ("forget", path), ("end_seen", epoch_us) and ("finish", None).
READ, LINES, FORGET, END_SEEN, FINISH = "read", "lines", "forget", "end_seen", "finish"


class LandingTracker(RestrictionTracker):
    """Tracks a ``LandingRestriction``. The only split is the checkpoint: the primary
    keeps what was claimed and is finished, the residual goes on from there. Where a
    runner checkpoints the residual durably, names read survive a restart."""

    def __init__(self, restriction: LandingRestriction):
        self._seen = set(restriction.seen)
        self._end_seen_at_us = restriction.end_seen_at_us
        self._finished = restriction.finished
        self._offsets = {
            path: (offset, line) for path, offset, line in restriction.offsets
        }
        self._checkpointed = False

    def _restriction(self, finished: bool) -> LandingRestriction:
        offsets = tuple(
            (path, offset, line)
            for path, (offset, line) in sorted(self._offsets.items())
        )
        return LandingRestriction(
            frozenset(self._seen), self._end_seen_at_us, finished, offsets
        )

    def current_restriction(self) -> LandingRestriction:
        return self._restriction(self._finished)

    def current_progress(self) -> RestrictionProgress:
        # Reported as a fraction, not as completed and remaining work: the SDK replaces
        # a splittable DoFn's completed work with the bytes its outputs were sampled at,
        # which is NaN before the first sample (Beam's mean of no samples), and the
        # next split request from Prism then failed the bundle ("cannot convert float
        # NaN to integer" in bundle_processor's _compute_split) after a few hundred
        # thousand streamed posts. A fraction is passed through as it is.
        if self._finished:
            return RestrictionProgress(fraction=1.0)
        done = len(self._seen) + len(self._offsets)
        return RestrictionProgress(fraction=done / (done + 1))

    def try_claim(self, position: tuple[str, object]) -> bool:
        if self._finished or self._checkpointed:
            return False
        kind, value = position
        if kind == READ:
            self._seen.add(value)
        elif kind == LINES:
            path, offset, line = value
            self._offsets[path] = (offset, line)
        elif kind == FORGET:
            self._seen.discard(value)
            self._offsets.pop(value, None)
        elif kind == END_SEEN:
            self._end_seen_at_us = value
        elif kind == FINISH:
            self._finished = True
        else:
            raise ValueError(f"unknown landing position {position!r}")
        return True

    def try_split(self, fraction_of_remainder: float):
        # Only checkpoints (fraction 0) split: the work left is "whatever appears next".
        if self._finished or self._checkpointed or fraction_of_remainder > 0:
            return None
        self._checkpointed = True
        return self._restriction(True), self._restriction(False)

    def check_done(self) -> bool:
        return True

    def is_bounded(self) -> bool:
        return False


class LandingRestrictionProvider(RestrictionProvider):
    def initial_restriction(self, element: str) -> LandingRestriction:
        return LandingRestriction(frozenset())

    def create_tracker(self, restriction: LandingRestriction) -> LandingTracker:
        return LandingTracker(restriction)

    def restriction_size(self, element: str, restriction: LandingRestriction) -> int:
        return 0 if restriction.finished else 1

    def truncate(self, element: str, restriction: LandingRestriction):
        # On drain (runners that have it), stop watching at once.
        return None


class LaggingWatermarkEstimator(WatermarkEstimator):
    """A watermark set by the DoFn, reported ``lag_us`` of processing time later.

    State: (reported watermark or None, ((wall_us, proposed Timestamp), ...), lag_us).
    """

    def __init__(self, state: tuple | None, clock=None):
        reported, pending, lag_us = state
        self._reported = reported
        self._pending = list(pending)
        self._lag_us = lag_us
        self._clock = clock or now_us

    def observe_timestamp(self, timestamp: Timestamp) -> None:
        pass

    def latest(self) -> Timestamp:
        """The latest watermark proposed, reported or not."""
        if self._pending:
            return self._pending[-1][1]
        return self._reported or MIN_TIMESTAMP

    def propose(self, watermark: Timestamp) -> None:
        if watermark > self.latest():
            self._pending.append((self._clock(), watermark))

    def finish(self) -> None:
        self._pending.clear()
        self._reported = MAX_TIMESTAMP

    def current_watermark(self) -> Timestamp | None:
        now = self._clock()
        while self._pending and self._pending[0][0] + self._lag_us <= now:
            self._reported = self._pending.pop(0)[1]
        return self._reported

    def get_estimator_state(self) -> tuple:
        return self._reported, tuple(self._pending), self._lag_us


class _LaggingWatermarkProvider(WatermarkEstimatorProvider):
    """The lag comes with the element: (folder, lag_seconds)."""

    def initial_estimator_state(self, element: tuple[str, float], restriction):
        return None, (), int(element[1] * 1_000_000)

    def create_watermark_estimator(self, estimator_state) -> LaggingWatermarkEstimator:
        return LaggingWatermarkEstimator(estimator_state)


class WatchLandingFolderFn(beam.DoFn):
    """(folder, watermark lag in seconds) -> Post of every new file (main output) and
    DeadLetter of its rejected lines and unreadable files (``DEAD_LETTERS``), each
    stamped with the latest event time read before its file.

    An unbounded splittable DoFn: each call lists the folder, reads the new files
    and the new complete lines of growing ones (up to about ``MAX_LINES_PER_BUNDLE``
    lines), proposes the watermark from the
    event times read, and defers the rest for ``poll_seconds``.
    """

    def __init__(
        self,
        key_source: PseudonymKeySource,
        poll_seconds: float = 1.0,
        settle_seconds: float = 0.0,
        chunk_lines: int = CHUNK_LINES,
        stable_seconds: float = 0.0,
    ):
        self._parser = ParsePostsFn(key_source)
        self._poll = poll_seconds
        self._settle = settle_seconds
        self._chunk_lines = chunk_lines
        self._stable = stable_seconds
        self._files = Metrics.counter(self.__class__, "files_read")
        self._lines = Metrics.counter(self.__class__, "lines_read")
        self._unreadable = Metrics.counter(self.__class__, "unreadable_files")

    def setup(self) -> None:
        # The parser is a part of this DoFn, not a step: no runner sets it up.
        self._parser.setup()

    def process(
        self,
        element: tuple[str, float],
        tracker=beam.DoFn.RestrictionParam(LandingRestrictionProvider()),  # noqa: B008 - Beam's idiom.
        watermark=beam.DoFn.WatermarkEstimatorParam(_LaggingWatermarkProvider()),  # noqa: B008
    ) -> Iterator:
        folder, _ = element
        restriction: LandingRestriction = tracker.current_restriction()
        files, ended = list_landing(folder)
        present = {file.path for file in files}
        offsets = {path: (offset, line) for path, offset, line in restriction.offsets}
        for gone in sorted((restriction.seen | offsets.keys()) - present):
            if not tracker.try_claim((FORGET, gone)):
                return
        watermark_us = watermark.latest().micros
        lines = 0
        now_seconds = time.time()
        for file in files:
            if file.path in restriction.seen:
                continue
            if lines >= MAX_LINES_PER_BUNDLE:
                # Checkpoint now, come back at once for the rest.
                self._advance(watermark, watermark_us)
                tracker.defer_remainder(Duration(seconds=0))
                return
            stamp = Timestamp(micros=watermark_us)
            if is_growable(file.path):
                offset, number = offsets.get(file.path, (0, 1))
                if file.size <= offset:
                    continue
                new = read_new_lines(
                    file.path,
                    offset,
                    number,
                    MAX_LINES_PER_BUNDLE - lines,
                    final=ended,
                    settled=is_settled(file, now_seconds, self._stable),
                )
                if not new.lines:
                    continue
                position = (file.path, new.next_offset, new.next_number)
                if not tracker.try_claim((LINES, position)):
                    return
                if offset == 0:
                    self._files.inc()
                self._lines.inc(len(new.lines))
                outputs = self._parser.parse(
                    new.lines, file.path, new.first_number, now_us()
                )
            else:
                if not ended and not is_settled(file, now_seconds, self._stable):
                    continue
                if not tracker.try_claim((READ, file.path)):
                    return
                self._files.inc()
                outputs = self._read(file.path)
            for output in outputs:
                lines += 1
                if isinstance(output, Post):
                    watermark_us = next_watermark_us(
                        watermark_us, [output.event_time_us], now_us()
                    )
                    yield TimestampedValue(output, stamp)
                else:
                    yield beam.pvalue.TaggedOutput(
                        DEAD_LETTERS, TimestampedValue(output.value, stamp)
                    )
        self._advance(watermark, watermark_us)
        if lines >= MAX_LINES_PER_BUNDLE:
            tracker.defer_remainder(Duration(seconds=0))
            return
        if lines or not ended:
            tracker.defer_remainder(Duration(seconds=self._poll))
            return
        # The stream is over: wait ``settle`` once, so pending processing-time
        # triggers fire before the windows close, then finish.
        if restriction.end_seen_at_us is None:
            tracker.try_claim((END_SEEN, now_us()))
            tracker.defer_remainder(Duration(seconds=self._settle))
            return
        if now_us() < restriction.end_seen_at_us + int(self._settle * 1e6):
            tracker.defer_remainder(Duration(seconds=self._poll))
            return
        if tracker.try_claim((FINISH, None)):
            watermark.finish()

    def _read(self, path: str) -> Iterator:
        """Each line of a file as a Post or a TaggedOutput(DEAD_LETTERS, DeadLetter),
        then one more dead letter if the file broke off (lines before it are kept)."""
        next_number = 1
        try:
            for chunk in read_chunks(path, self._chunk_lines):
                next_number = chunk.first_number + len(chunk.records)
                self._lines.inc(len(chunk.records))
                yield from self._parser.process(chunk)
        except READ_ERRORS as error:
            self._unreadable.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, unreadable_file(path, next_number, error)
            )

    @staticmethod
    def _advance(watermark: LaggingWatermarkEstimator, watermark_us: int) -> None:
        watermark.propose(Timestamp(micros=watermark_us))


class ReadLanding(beam.PTransform):
    """Landing folder -> {"posts": PCollection[Post], "dead_letters": PCollection[DeadLetter]},
    unbounded. Every element carries, as its timestamp, the latest event time read
    before its file, the watermark the source is moving to
    (``transforms.late.SplitLatePosts`` needs it); posts get their event time only
    after that split.
    """

    def __init__(
        self,
        folder: str,
        key_source: PseudonymKeySource,
        poll_seconds: float = 1.0,
        settle_seconds: float = 0.0,
        chunk_lines: int = CHUNK_LINES,
        stable_seconds: float = 0.0,
    ):
        """``settle_seconds``: how far the watermark lags behind the event times read
        (and how long the end of the stream waits); longer than the early-results
        interval. ``stable_seconds``: how long a compressed or Parquet file must go
        unchanged before it is read."""
        super().__init__()
        self._folder = folder
        self._key_source = key_source
        self._poll = poll_seconds
        self._settle = settle_seconds
        self._chunk_lines = chunk_lines
        self._stable = stable_seconds

    def expand(self, pipeline: beam.pvalue.PBegin):
        read = (
            pipeline
            | "Folder" >> beam.Create([(self._folder, self._settle)])
            | "WatchFolder"
            >> beam.ParDo(
                WatchLandingFolderFn(
                    self._key_source,
                    self._poll,
                    self._settle,
                    self._chunk_lines,
                    self._stable,
                )
            ).with_outputs(DEAD_LETTERS, main="posts")
        )
        return {"posts": read.posts, DEAD_LETTERS: read[DEAD_LETTERS]}


def read_records_for_replay(path: str) -> Iterator[bytes]:
    """The raw lines of a finished JSON Lines file (``.gz`` too), for ``replay``."""
    for chunk in read_chunks(path):
        for record in chunk.records:
            yield (
                record
                if isinstance(record, bytes)
                else orjson.dumps(record, default=str) + b"\n"
            )


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
