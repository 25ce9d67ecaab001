"""Streaming: credit each repost to the topics of its chain's root, with keyed state
and event-time timers only (ReadModifyWrite, Bag, timers: all on Flink's portable
runner).

What a repost is credited with is the batch rule (``transforms.reposts``): its own
topics and every topic of the root of its chain (a set union); a chain that leaves
the input, a cycle or a self-repost credits nothing. Streaming adds time:

- **Where.** Crediting runs on posts with their topics (analysed once, by
  ``ExtractTopicsWithStampFn``), after ``transforms.redelivery.CountCopiesOnce`` and
  before ``transforms.late.SplitLatePosts``; posts keep the stamp the landing source
  gave them (the watermark they were read under) until the split has judged them.
- **Chains.** ``CHAIN_STAGES`` unrolled pointer-jumping stages, each keyed by post
  id. At a stage every post sends its INFO to its own id ("I point at P", or "I am
  resolved to a root with topics T"), and a post still pointing sends an ASK to its
  pointer. At key Y the INFO waits in ReadModifyWrite state and the askers in a Bag;
  once both are there each asker jumps: to Y's pointer, or to Y's root. Each stage
  doubles the reach of the pointers: k stages resolve chains of up to 2**k - 1 hops
  (5 stages: 31); a deeper chain keeps its own topics, as does one in a cycle (its
  pointer never settles on a root; a pointer back to the post itself ends it).
- **Waiting.** A repost whose ancestor has not been read waits at that ancestor's
  key until its *release time*: its window's end plus the allowed lateness, less
  ``RELEASE_MARGIN_US``, measured on the watermark. An ancestor read by then (its
  INFO stamped no later than the release time) credits it; otherwise it is
  released with what it has (its own topics, unless a later stage finds its root)
  and waits no more. The outcome is decided on stamps (``answers``), not on which
  of the two reaches the key first. A post already beyond the lateness when read
  never waits, and is never credited (it is counted in ``late_posts`` anyway).
- **Memory.** Each post's INFO is kept, per stage, until the watermark passes its
  window's end plus the horizon (``--repost-horizon``, at least the allowed
  lateness): a repost read within that time of its source is credited at once; a
  repost of a source forgotten, or never read, waits out its release time and
  keeps its own topics.
- **Stamps.** A post leaves a stage stamped no later than its release time, and no
  earlier than the watermark it could fall behind: a post answered when it arrives
  keeps its stamp; one answered by a later INFO takes that INFO's stamp, capped at
  its release time; one released by its timer takes the release time. A release
  timer holds the stage's output watermark at its time, so the stamp is never
  behind it, and ``SplitLatePosts`` counts a released repost in its window, not as
  late. A post read beyond the lateness keeps its own stamp throughout.
- **Copies.** A redelivered copy goes through the stages like any post; the first
  copy's INFO is the one kept; every copy of a repost is credited alike, and the
  aggregation counts one.

The output is every post once, as a ``CreditedPost`` (its summary with the credited
topics, and its event time), stamped as above.
"""

import typing
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import TimestampedValue, WindowFn
from apache_beam.utils.timestamp import Timestamp

from schemas.records import Post, PostSummary
from transforms.aggregate import window_bounds
from transforms.extract import ExtractTopicsFn
from transforms.reposts import Pair, credited_topics
from transforms.window_posts import post_id_key

# Stages of pointer jumping: chains of up to 2**CHAIN_STAGES - 1 hops are resolved.
CHAIN_STAGES = 5
# A waiting repost is released this much before its window stops accepting it, so
# that its stamp is within the lateness on runners that keep whole milliseconds.
RELEASE_MARGIN_US = 1_000
RESOLVED = "resolved"


class ChainRecord(NamedTuple):
    """A post on its way through the stages.

    ``pointer`` is the id it points at, or None once resolved; ``root_topics`` the
    topics of the root it resolved to (empty: resolved to nothing, as a root's own
    record or a cycle's member is not) and ``root_id`` that root's id (None:
    resolved to nothing); ``release_us`` its release time; ``expired`` whether it
    waits no more (read beyond the lateness, or released).
    """

    summary: PostSummary
    event_time_us: int
    release_us: int
    pointer: str | None
    root_topics: tuple[Pair, ...]
    expired: bool
    root_id: str | None = None


class ChainInfo(NamedTuple):
    """What a post tells the posts that point at it: where it points, or (pointer
    None) the topics and id of the root it resolved to (an original is its own
    root; ``root_id`` None: resolved to nothing)."""

    pointer: str | None
    root_topics: tuple[Pair, ...]
    root_id: str | None = None


class CreditedPost(NamedTuple):
    """A post's summary with its credited topics, and its event time (the attribute
    ``transforms.late.SplitLatePostsFn`` judges)."""

    summary: PostSummary
    event_time_us: int


def release_time(window_end_us: int, allowed_lateness_us: int) -> int:
    """The watermark at which a post of the window ending at ``window_end_us`` stops
    waiting for its chain: just before the window stops accepting it."""
    return window_end_us + allowed_lateness_us - RELEASE_MARGIN_US


def initial_record(
    summary: PostSummary, event_time_us: int, stamp_us: int, release_us: int
) -> ChainRecord:
    """A post as it enters the first stage: an original post is resolved to itself
    (its topics are what its reposts inherit), a self-repost to nothing, a repost
    points at the post it names. ``stamp_us`` (the watermark it was read under)
    past ``release_us`` marks it expired: it never waits."""
    expired = stamp_us > release_us
    parent = summary.repost_of
    if parent is None:
        return ChainRecord(summary, event_time_us, release_us, None, (), expired)
    if parent == summary.id:
        return ChainRecord(summary, event_time_us, release_us, None, (), expired)
    return ChainRecord(summary, event_time_us, release_us, parent, (), expired)


def info_of(record: ChainRecord) -> ChainInfo:
    """The INFO a record sends to its own id."""
    if record.pointer is not None:
        return ChainInfo(record.pointer, ())
    if record.summary.repost_of is None:
        return ChainInfo(None, record.summary.topics, record.summary.id)
    return ChainInfo(None, record.root_topics, record.root_id)


def jump(record: ChainRecord, info: ChainInfo) -> ChainRecord:
    """``record`` after asking the post it points at, which told ``info``: resolved to
    that post's root, or pointing where that post points (a pointer back to itself is
    a cycle: resolved to nothing)."""
    if info.pointer is None:
        return record._replace(
            pointer=None, root_topics=info.root_topics, root_id=info.root_id
        )
    if info.pointer == record.summary.id:
        return record._replace(pointer=None, root_topics=(), root_id=None)
    return record._replace(pointer=info.pointer)


def credited_post(record: ChainRecord) -> CreditedPost:
    """The record after the last stage: a repost that resolved to a root is
    credited with the root's topics, and the root is its carrier (as batch credits
    a repost whose chain reaches a root in the input); its own topics otherwise."""
    summary = record.summary
    if record.pointer is None and record.root_id is not None and summary.repost_of:
        summary = summary._replace(
            topics=credited_topics(summary.topics, record.root_topics),
            carrier=post_id_key(record.root_id),
        )
    return CreditedPost(summary, record.event_time_us)


def leaving_stamp(record: ChainRecord, trigger_stamp_us: int) -> int:
    """The stamp a record leaves a stage with, when the element stamped
    ``trigger_stamp_us`` lets it go: never past its release time, unless it was
    read beyond the lateness (expired records keep their stamp)."""
    if record.expired:
        return trigger_stamp_us
    return min(trigger_stamp_us, record.release_us)


def stage_messages(record: ChainRecord, forget_us: int) -> Iterator[tuple[str, tuple]]:
    """The messages a record sends into a stage: its INFO (with the time its INFO
    may be forgotten) to its own id; an unresolved record asks its pointer; a
    resolved one passes through with its INFO."""
    info = info_of(record)
    if record.pointer is None:
        yield record.summary.id, ("info", info, forget_us, record)
    else:
        yield record.summary.id, ("info", info, forget_us, None)
        yield record.pointer, ("ask", record)


def due_and_waiting(waiting: Iterable[tuple], fire_us: int) -> tuple[list, list]:
    """The waiting (record, stamp) pairs whose record's release time has come by
    ``fire_us``, and the rest."""
    due, rest = [], []
    for asking in waiting:
        (due if asking[0].release_us <= fire_us else rest).append(asking)
    return due, rest


class HeldInfo(NamedTuple):
    """A post's INFO as its id's state holds it: with the stamp it was read under
    and the time it is forgotten."""

    info: ChainInfo
    stamp_us: int
    forget_us: int


class Slot(NamedTuple):
    """An id's INFO (None until read) and the release time of the asks waiting at
    it (None when none waits): one state, so an INFO that reaches its id learns
    with one read whether anything waits for it."""

    held: HeldInfo | None = None
    release_us: int | None = None


def answers(held: HeldInfo, record: ChainRecord, asked_us: int) -> bool:
    """Whether ``held`` answers ``record``, which asked under stamp ``asked_us``.

    Decided on stamps alone, so the outcome does not depend on which of the two
    reached the key first: a record that waits no more is never answered; the INFO
    must have been read by the record's release time, and the record must have
    asked before the INFO is forgotten.
    """
    return (
        not record.expired
        and held.stamp_us <= record.release_us
        and asked_us < held.forget_us
    )


def _stamped(record: ChainRecord, stamp_us: int) -> TimestampedValue:
    return TimestampedValue(record, Timestamp(micros=stamp_us))


class ChainStageFn(beam.DoFn):
    """(post id, message) -> ChainRecord: one pointer-jumping stage (module doc).

    State per id: a ``Slot`` (its INFO with its stamp, kept until its forget timer,
    and the release timer's time) and the records asking it while no INFO answers
    them (each with the stamp it asked under, until its release time). Each state
    read and each change is a request to the runner, so an INFO that reaches an id
    nobody asked (most ids) costs one read and one write.
    """

    SLOT = userstate.ReadModifyWriteStateSpec("slot", PickleCoder())
    WAITING = userstate.BagStateSpec("waiting", PickleCoder())
    RELEASE = userstate.TimerSpec("release", TimeDomain.WATERMARK)
    FORGET = userstate.TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self) -> None:
        self._answered = Metrics.counter(self.__class__, "asks_answered")
        self._released = Metrics.counter(self.__class__, "asks_released")

    def process(
        self,
        element: tuple[str, tuple],
        timestamp=beam.DoFn.TimestampParam,
        slot_state=beam.DoFn.StateParam(SLOT),
        waiting=beam.DoFn.StateParam(WAITING),
        release=beam.DoFn.TimerParam(RELEASE),
        forget=beam.DoFn.TimerParam(FORGET),
    ):
        _, message = element
        if message[0] == "info":
            yield from self._tell(
                message, timestamp.micros, slot_state, waiting, forget
            )
        else:
            yield from self._ask(
                message[1], timestamp.micros, slot_state, waiting, release
            )

    def _tell(self, message, stamp_us, slot_state, waiting, forget):
        """A post's INFO (and, resolved, the post itself) reaches its own id."""
        _, info, forget_us, passing = message
        if passing is not None:
            yield _stamped(passing, stamp_us)
        slot = slot_state.read() or Slot()
        if slot.held is not None:
            return  # a copy's INFO: the first one read stands
        held = HeldInfo(info, stamp_us, forget_us)
        slot_state.write(Slot(held, None))
        forget.set(Timestamp(micros=forget_us))
        if slot.release_us is None:
            return  # nothing waits
        asking = list(waiting.read())
        waiting.clear()
        for record, asked_us in asking:
            if answers(held, record, asked_us):
                self._answered.inc()
                yield _stamped(jump(record, info), leaving_stamp(record, stamp_us))
            else:
                # Its source was read after its window stopped accepting it.
                self._released.inc()
                yield _stamped(record._replace(expired=True), record.release_us)

    def _ask(self, record, stamp_us, slot_state, waiting, release):
        """A record asks the id it points at: answered, passed on, or waiting."""
        slot = slot_state.read() or Slot()
        held = slot.held
        if held is not None and answers(held, record, stamp_us):
            self._answered.inc()
            yield _stamped(jump(record, held.info), leaving_stamp(record, stamp_us))
        elif record.expired:
            yield _stamped(record, stamp_us)
        elif held is not None and held.stamp_us > record.release_us:
            self._released.inc()
            yield _stamped(
                record._replace(expired=True), leaving_stamp(record, stamp_us)
            )
        else:
            waiting.add((record, stamp_us))
            if slot.release_us is None or record.release_us < slot.release_us:
                slot_state.write(slot._replace(release_us=record.release_us))
                release.set(Timestamp(micros=record.release_us))

    @userstate.on_timer(RELEASE)
    def release_due(
        self,
        fire=beam.DoFn.TimestampParam,
        slot_state=beam.DoFn.StateParam(SLOT),
        waiting=beam.DoFn.StateParam(WAITING),
        release=beam.DoFn.TimerParam(RELEASE),
    ):
        due, rest = due_and_waiting(waiting.read(), fire.micros)
        if due:
            yield from self._release(due, rest, slot_state, waiting, release)

    def _release(self, due, rest, slot_state, waiting, release):
        waiting.clear()
        for asking in rest:
            waiting.add(asking)
        next_us = min(record.release_us for record, _ in rest) if rest else None
        _write_slot(
            slot_state, (slot_state.read() or Slot())._replace(release_us=next_us)
        )
        if next_us is not None:
            release.set(Timestamp(micros=next_us))
        self._released.inc(len(due))
        for record, _ in due:
            yield _stamped(record._replace(expired=True), record.release_us)

    @userstate.on_timer(FORGET)
    def forget_info(self, slot_state=beam.DoFn.StateParam(SLOT)):
        _write_slot(slot_state, (slot_state.read() or Slot())._replace(held=None))


def _write_slot(slot_state, slot: Slot) -> None:
    """Write ``slot``, or clear the state when it holds nothing."""
    if slot == Slot():
        slot_state.clear()
    else:
        slot_state.write(slot)


class ExtractTopicsWithStampFn(ExtractTopicsFn):
    """Post (stamped with the watermark it was read under) -> its ChainRecord, with
    the same stamp: the topics of ``ExtractTopicsFn``, the release time from the
    post's window and ``allowed_lateness_seconds``."""

    def __init__(
        self,
        window_fn: WindowFn,
        allowed_lateness_seconds: int,
        kinds: Sequence[str],
        analyzer_config: dict | None = None,
    ):
        super().__init__(kinds, analyzer_config)
        self._window_fn = window_fn
        self._lateness_us = allowed_lateness_seconds * 1_000_000

    def process(self, post: Post, timestamp=beam.DoFn.TimestampParam):
        _, end_us = window_bounds(self._window_fn, post.event_time_us)
        release_us = release_time(end_us, self._lateness_us)
        for summarized in super().process(post):
            yield initial_record(
                summarized.value, post.event_time_us, timestamp.micros, release_us
            )


class ChainStage(beam.PTransform):
    """PCollection[ChainRecord] -> PCollection[ChainRecord], every record once, one
    stage of jumping further up its chain."""

    def __init__(self, window_fn: WindowFn, remember_seconds: int):
        super().__init__()
        self._window_fn = window_fn
        self._remember_us = remember_seconds * 1_000_000

    def _messages(self, record):
        _, end_us = window_bounds(self._window_fn, record.event_time_us)
        return stage_messages(record, end_us + self._remember_us)

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return (
            records
            | "Messages"
            >> beam.FlatMap(self._messages).with_output_types(
                beam.typehints.KV[str, typing.Any]
            )
            | "Jump" >> beam.ParDo(ChainStageFn())
        )


class CreditRepostsInStream(beam.PTransform):
    """PCollection[Post] (streaming, stamped with the watermark each was read under)
    -> PCollection[CreditedPost], same stamps or as the module doc says: topics
    extracted once, reposts credited with their chain root's topics."""

    def __init__(
        self,
        window_fn: WindowFn,
        allowed_lateness_seconds: int,
        remember_seconds: int,
        kinds: Sequence[str],
        analyzer_config: dict | None = None,
        stages: int = CHAIN_STAGES,
    ):
        super().__init__()
        self._window_fn = window_fn
        self._lateness = allowed_lateness_seconds
        self._remember = max(remember_seconds, allowed_lateness_seconds)
        self._kinds = tuple(kinds)
        self._analyzer_config = analyzer_config
        self._stages = stages

    def expand(self, posts: beam.PCollection) -> beam.PCollection:
        records = posts | "ExtractTopics" >> beam.ParDo(
            ExtractTopicsWithStampFn(
                self._window_fn, self._lateness, self._kinds, self._analyzer_config
            )
        )
        for stage in range(1, self._stages + 1):
            records = records | f"ChainStage{stage}" >> ChainStage(
                self._window_fn, self._remember
            )
        # Typed Any: ``SplitLatePostsFn`` reads only ``event_time_us`` of a Post.
        return records | "Credited" >> beam.Map(credited_post).with_output_types(
            typing.Any
        )


def with_event_time(credited: CreditedPost) -> TimestampedValue:
    """A credited post -> its summary stamped with its event time (for the windows)."""
    return TimestampedValue(credited.summary, Timestamp(micros=credited.event_time_us))
