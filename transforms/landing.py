"""Reading the landing folder in Beam: a splittable DoFn that watches the folder
(``transforms.landing_folder`` holds its protocol) and yields its posts and dead
letters, with an event-time watermark.

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

import time
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
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
from transforms.files import (
    CHUNK_LINES,
    DEFAULT_MAX_LINE_BYTES,
    READ_ERRORS,
    now_us,
    read_chunks,
)
from transforms.landing_folder import (
    is_growable,
    is_settled,
    list_landing,
    next_watermark_us,
    read_new_lines,
)
from transforms.read import DEAD_LETTERS, ParsePostsFn, unreadable_file

# Files read in one bundle before the source checkpoints (and moves its watermark):
# a backlog of many files is then read in steps, not in one giant bundle.
MAX_LINES_PER_BUNDLE = 50_000


# --- The folder protocol: plain functions ---------------------------------------


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
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ):
        self._parser = ParsePostsFn(key_source, max_line_bytes)
        self._max_line_bytes = max_line_bytes
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
                    max_line_bytes=self._max_line_bytes,
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
            for chunk in read_chunks(path, self._chunk_lines, self._max_line_bytes):
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
    """Landing folder -> {"posts": PCollection[Post], "dead_letters":
    PCollection[DeadLetter]}, unbounded. Every element carries, as its timestamp,
    the latest event time read before its file, the watermark the source is moving
    to (``transforms.late.SplitLatePosts`` needs it); posts get their event time
    only after that split.
    """

    def __init__(
        self,
        folder: str,
        key_source: PseudonymKeySource,
        poll_seconds: float = 1.0,
        settle_seconds: float = 0.0,
        chunk_lines: int = CHUNK_LINES,
        stable_seconds: float = 0.0,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
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
        self._max_line_bytes = max_line_bytes

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
                    self._max_line_bytes,
                )
            ).with_outputs(DEAD_LETTERS, main="posts")
        )
        return {"posts": read.posts, DEAD_LETTERS: read[DEAD_LETTERS]}
