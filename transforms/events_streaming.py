"""Events in a stream: the same events as batch (``transforms.events``), each
written to ``events`` once it is closed, that is once no later window's burst can
join it (``EventAssembler``); until then the events still open are shown, as they
stand, in snapshots of ``open_events``.

Four keyed steps, with event-time timers only (ReadModifyWrite, Bag, timers):

- **Assemble** (one key). Each window pane's evidence (``evidence_rows``, stamped
  just before the window's end) and the detector's burst marks (``member_marks``,
  stamped at the window's end) wait in bags. A timer just after a window's end
  (``MARGIN_US``) fires once the watermark has passed both: the window's marked
  members, each with its latest pane's evidence, are added to the assembler, the
  events no later member can join are closed, and, when anything changed, the open
  events as they stand make a snapshot. Evidence of a window is kept one window
  longer, for the supporting window of the next window's bursts.
- **Texts** (``TEXT_SHARDS`` keys, by post key). Every post read waits, masked and
  cut as the batch table keeps it, for ``text_retention_us``; an event to write
  asks for its top carriers' texts, answered once the watermark has passed the ask
  (every post read before the event was judged has arrived by then). Sharded keys,
  not one per post: a runner pays per key and per state request, and a post's text
  is read only when an event names it.
- **Attach** (one key per event to write): the event and its answers meet; it is
  given its representative posts once every answer has come.
- **Snapshots** (one key): the open events of one judgement are written together
  (``transforms.rolling.write_snapshot``) once all have their texts.

The final tables of a time-ordered replay equal batch's: both assemble the same
members with ``EventAssembler``, keep the earliest copy of a source post
(``earliest_copies``) and build the rows with the same functions.
"""

from collections.abc import Callable, Iterable
from typing import NamedTuple

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas.records import EventMember, Post, SourcePost
from transforms.burst_model import is_later_pane
from transforms.event_model import Event, EventAssembler, EventParams
from transforms.events import (
    REPRESENTATIVE_TEXT_CHARS,
    MemberKey,
    earliest_copies,
    event_windows_rows,
    events_table,
    evidence_rows,
    member_marks,
    representative_posts,
    write_event_tables,
)
from transforms.rolling import write_snapshot
from transforms.window_posts import post_id_key

# Runners keep timestamps in whole milliseconds: a timer this long after a window's
# end fires once every element stamped at the end has arrived.
MARGIN_US = 1_000
# Keys of the text store.
TEXT_SHARDS = 16


def latest_evidence(
    panes: Iterable[tuple[tuple[MemberKey, EventMember], ...]],
) -> dict[MemberKey, EventMember]:
    """Panes of evidence rows -> the latest pane's member per key, by the rule the
    detector keeps its counts by (``is_later_pane``: panes accumulate, so the latest
    has the most people, then the most posts)."""
    latest: dict[MemberKey, EventMember] = {}
    for pane in panes:
        for key, member in pane:
            if is_later_pane(member, latest.get(key)):
                latest[key] = member
    return latest


class AssemblyState:
    """What the assembler step keeps between windows: the assembler, the member
    keys added in the last window judged (a burst's supporting window may be marked
    again by the next window's burst; batch counts each member once), and whether
    the last snapshot of open events showed any."""

    def __init__(self, window_us: int, params: EventParams):
        self.assembler = EventAssembler(window_us, params)
        self.recent: set[MemberKey] = set()
        self.shown = False


class EventRequest(NamedTuple):
    """An event on its way to be written, once its carriers' texts are found:
    closed (to ``events``) or open as of ``as_of_us`` (one of ``count`` in that
    snapshot of ``open_events``; ``event`` None: a snapshot with none open)."""

    request_id: str
    closed: bool
    as_of_us: int
    count: int
    event: Event | None


def snapshot_requests(state: AssemblyState, as_of_us: int) -> list[EventRequest]:
    """The open events as of ``as_of_us`` as requests of one snapshot: one per open
    event, or one empty request when none is open but the last snapshot showed
    some; ``state.shown`` is updated."""
    opened = state.assembler.open_events()
    if not opened and not state.shown:
        return []
    state.shown = bool(opened)
    if not opened:
        return [EventRequest(f"open@{as_of_us}", False, as_of_us, 0, None)]
    return [
        EventRequest(
            f"{event.event_id}@{as_of_us}", False, as_of_us, len(opened), event
        )
        for event in opened
    ]


class JudgedWindow(NamedTuple):
    """What judging a window gave: the events closed, the marks of later windows
    still waiting, and how many members joined."""

    events: list[Event]
    waiting: list[MemberKey]
    added: int


def judge_window(
    state: AssemblyState,
    evidence: dict[MemberKey, EventMember],
    marks: Iterable[MemberKey],
    next_start_us: int,
    window_us: int,
) -> JudgedWindow:
    """The watermark has passed the window ending at ``next_start_us``: its marked
    members (and any marked earlier, ``marks``) join the assembler; the events no
    later member can join are closed.

    ``state`` is changed in place; a mark without evidence (its topic had fewer
    people than the evidence floor) makes no member, as in batch."""
    ready, waiting = set(), []
    for key in marks:
        (ready.add if key[2] < next_start_us else waiting.append)(key)
    added = [evidence[key] for key in sorted(ready - state.recent) if key in evidence]
    state.assembler.add(added)
    state.recent = {
        key for key in state.recent | ready if key[2] >= next_start_us - window_us
    }
    closed = state.assembler.close_before(next_start_us)
    return JudgedWindow(closed, waiting, len(added))


def evidence_to_keep(
    evidence: dict[MemberKey, EventMember], next_start_us: int, window_us: int
) -> tuple[tuple[MemberKey, EventMember], ...]:
    """The evidence a later window's marks may still need: of the window just judged
    (its topics may support the next window's bursts) and later."""
    return tuple(
        (key, member)
        for key, member in evidence.items()
        if key[2] >= next_start_us - window_us
    )


def _at(time_us: int) -> Timestamp:
    return Timestamp(micros=time_us)


class AssembleEventsInStreamFn(beam.DoFn):
    """(None, ("evidence", rows) | ("mark", (member key, its burst's window end)))
    -> EventRequest: each event once when it closes, and a snapshot of the open
    events whenever they change, stamped at the timer that judged (module doc)."""

    EVIDENCE = userstate.BagStateSpec("evidence", PickleCoder())
    MARKS = userstate.BagStateSpec("marks", PickleCoder())
    ASSEMBLY = userstate.ReadModifyWriteStateSpec("assembly", PickleCoder())
    JUDGE = userstate.TimerSpec("judge", userstate.TimeDomain.WATERMARK)

    def __init__(self, window_us: int, params: EventParams):
        self._window_us = window_us
        self._params = params
        self._events = Metrics.counter(self.__class__, "events")

    def process(
        self,
        element,
        evidence_state=beam.DoFn.StateParam(EVIDENCE),
        marks_state=beam.DoFn.StateParam(MARKS),
        judge=beam.DoFn.TimerParam(JUDGE),
    ):
        _, (what, value) = element
        if what == "evidence":
            evidence_state.add(value)
            ends = {member.end_us for _, member in value}
        else:
            member_key, end_us = value
            marks_state.add(member_key)
            ends = {end_us}
        for end_us in ends:
            judge.set(_at(end_us + MARGIN_US), dynamic_timer_tag=str(end_us))

    @userstate.on_timer(JUDGE)
    def on_judge(
        self,
        tag=beam.DoFn.DynamicTimerTagParam,
        evidence_state=beam.DoFn.StateParam(EVIDENCE),
        marks_state=beam.DoFn.StateParam(MARKS),
        assembly_state=beam.DoFn.StateParam(ASSEMBLY),
        judge=beam.DoFn.TimerParam(JUDGE),
    ):
        next_start_us = int(tag)
        evidence = latest_evidence(evidence_state.read())
        marks = list(marks_state.read())
        state = assembly_state.read()
        if state is None and not marks:
            # Nothing bursts and nothing is open: the evidence only ages.
            self._keep_evidence(evidence_state, evidence, next_start_us)
            return
        state = state or AssemblyState(self._window_us, self._params)
        events, waiting, added = judge_window(
            state, evidence, marks, next_start_us, self._window_us
        )
        requests = [
            EventRequest(event.event_id, True, next_start_us, 0, event)
            for event in events
        ]
        if added or events:
            requests += snapshot_requests(state, next_start_us)
        self._keep_evidence(evidence_state, evidence, next_start_us)
        if len(waiting) != len(marks):
            marks_state.clear()
            for key in waiting:
                marks_state.add(key)
        close_us = state.assembler.latest_close_us()
        if close_us is None and not state.recent and not state.shown:
            assembly_state.clear()
        else:
            assembly_state.write(state)
        if close_us is not None:
            # With no later window, the open events close here (at the stream's end,
            # when the watermark jumps).
            judge.set(_at(close_us + MARGIN_US), dynamic_timer_tag=str(close_us))
        self._events.inc(len(events))
        yield from requests

    def _keep_evidence(self, evidence_state, evidence, next_start_us: int) -> None:
        evidence_state.clear()
        kept = evidence_to_keep(evidence, next_start_us, self._window_us)
        if kept:
            evidence_state.add(kept)


def text_retention_us(
    remember_us: int, lateness_us: int, window_us: int, params: EventParams
) -> int:
    """How long a post's text is kept: a repost counts toward its source's spread
    while the source is remembered and its window accepts it, and the event that
    names the source closes at most a link's span (and two windows) after its last
    such window."""
    span_windows = max(params.link_windows, params.carrier_windows)
    return remember_us + lateness_us + (span_windows + 3) * window_us


def text_shard(post_key: int) -> int:
    return post_key % TEXT_SHARDS


def source_post(post: Post) -> tuple[int, tuple]:
    """A post read -> (its text shard, ("post", key, SourcePost)), the text as the
    events table keeps it."""
    key = post_id_key(post.id)
    found = SourcePost(
        post.id, post.event_time_us, post.text[:REPRESENTATIVE_TEXT_CHARS]
    )
    return text_shard(key), ("post", key, found)


def text_asks(request: EventRequest) -> list[tuple[int, tuple]]:
    """An event to write -> (shard, ("ask", request id, post key)) per top
    carrier."""
    if request.event is None:
        return []
    return [
        (text_shard(key), ("ask", request.request_id, key))
        for key, _, _ in request.event.carriers
    ]


def answer_asks(
    read_posts: Callable[[], Iterable[tuple[int, SourcePost]]],
    asks: Iterable[tuple[str, int]],
    known: dict[int, SourcePost],
) -> list[tuple[str, tuple[int, SourcePost | None]]]:
    """The asks due -> (request id, (post key, its earliest copy, or None when it
    was never read or is forgotten)). ``known`` holds the texts found for earlier
    asks and gains the new ones (in place): the shard's posts (``read_posts``) are
    read only for a key not asked before, as an open event asks for the same
    carriers at every snapshot."""
    asks = list(asks)
    wanted = {key for _, key in asks} - known.keys()
    if wanted:
        known.update(
            earliest_copies((key, post) for key, post in read_posts() if key in wanted)
        )
    return [(request_id, (key, known.get(key))) for request_id, key in asks]


def forget_before(
    posts: Iterable[tuple[int, SourcePost]], now_us: int, retention_us: int
) -> list[tuple[int, SourcePost]]:
    """The posts still kept at ``now_us``: those written within ``retention_us``."""
    return [
        (key, post) for key, post in posts if post.created_at_us + retention_us > now_us
    ]


class SourceTextsFn(beam.DoFn):
    """(shard, ("post", key, SourcePost) | ("ask", request id, key)) -> (request
    id, (key, SourcePost | None)): a post's text is kept for ``retention_us`` after
    it was written; an ask is answered once the watermark has passed it, and the
    texts found are kept apart (``answer_asks``) for the asks to come."""

    POSTS = userstate.BagStateSpec("posts", PickleCoder())
    ASKS = userstate.BagStateSpec("asks", PickleCoder())
    KNOWN = userstate.ReadModifyWriteStateSpec("known", PickleCoder())
    ANSWER = userstate.TimerSpec("answer", userstate.TimeDomain.WATERMARK)
    FORGET = userstate.TimerSpec("forget", userstate.TimeDomain.WATERMARK)

    def __init__(self, retention_us: int):
        self._retention_us = retention_us
        self._missing = Metrics.counter(self.__class__, "texts_not_found")

    def process(
        self,
        element,
        timestamp=beam.DoFn.TimestampParam,
        posts_state=beam.DoFn.StateParam(POSTS),
        asks_state=beam.DoFn.StateParam(ASKS),
        answer=beam.DoFn.TimerParam(ANSWER),
        forget=beam.DoFn.TimerParam(FORGET),
    ):
        _, message = element
        if message[0] == "post":
            _, key, post = message
            posts_state.add((key, post))
            # One forget timer per retention period of posts: each is rewritten
            # about twice in its life, not at every window.
            bucket = post.created_at_us // self._retention_us
            forget.set(
                _at((bucket + 2) * self._retention_us), dynamic_timer_tag=str(bucket)
            )
        else:
            _, event_id, key = message
            asks_state.add((event_id, key, timestamp.micros))
            due_us = timestamp.micros + MARGIN_US
            answer.set(_at(due_us), dynamic_timer_tag=str(due_us))

    @userstate.on_timer(ANSWER)
    def on_answer(
        self,
        fired=beam.DoFn.TimestampParam,
        posts_state=beam.DoFn.StateParam(POSTS),
        asks_state=beam.DoFn.StateParam(ASKS),
        known_state=beam.DoFn.StateParam(KNOWN),
    ):
        asks = list(asks_state.read())
        due = [(event_id, key) for event_id, key, at_us in asks if at_us < fired.micros]
        if not due:
            return
        asks_state.clear()
        for ask in asks:
            if ask[2] >= fired.micros:
                asks_state.add(ask)
        known = known_state.read() or {}
        size = len(known)
        for request_id, (key, post) in answer_asks(posts_state.read, due, known):
            if post is None:
                self._missing.inc()
            yield request_id, (key, post)
        if len(known) != size:
            known_state.write(known)

    @userstate.on_timer(FORGET)
    def on_forget(
        self,
        fired=beam.DoFn.TimestampParam,
        posts_state=beam.DoFn.StateParam(POSTS),
        known_state=beam.DoFn.StateParam(KNOWN),
    ):
        posts = list(posts_state.read())
        kept = forget_before(posts, fired.micros, self._retention_us)
        if len(kept) != len(posts):
            posts_state.clear()
            for item in kept:
                posts_state.add(item)
        known = known_state.read() or {}
        still = dict(forget_before(known.items(), fired.micros, self._retention_us))
        if len(still) != len(known):
            known_state.write(still)


class AttachTextsFn(beam.DoFn):
    """(request id, ("request", EventRequest) | ("text", (key, SourcePost | None)))
    -> (EventRequest, its event's representative posts as rows), once the request
    and an answer for each of its event's carriers have come."""

    REQUEST = userstate.ReadModifyWriteStateSpec("request", PickleCoder())
    TEXTS = userstate.BagStateSpec("texts", PickleCoder())

    def process(
        self,
        element,
        request_state=beam.DoFn.StateParam(REQUEST),
        texts_state=beam.DoFn.StateParam(TEXTS),
    ):
        _, (what, value) = element
        texts = list(texts_state.read())
        if what == "request":
            request = value
        else:
            request = request_state.read()
            texts.append(value)
        if request is None or len(texts) < answers_awaited(request):
            if what == "request":
                request_state.write(request)
            else:
                texts_state.add(value)
            return
        request_state.clear()
        texts_state.clear()
        if request.event is None:
            yield request, []
            return
        found = {key: post for key, post in texts if post is not None}
        yield request, representative_posts(request.event, found)


def answers_awaited(request: EventRequest) -> int:
    """The text answers a request waits for: one per carrier of its event."""
    return 0 if request.event is None else len(request.event.carriers)


def complete_snapshot(
    pending: Iterable[tuple[EventRequest, list[dict]]],
) -> tuple[int | None, list[tuple[Event, list[dict]]]]:
    """Open events with their texts, of one or more snapshots -> (the latest
    snapshot whose every event has come, or None; its (Event, rows))."""
    by_as_of: dict[int, list[tuple[EventRequest, list[dict]]]] = {}
    for request, rows in pending:
        by_as_of.setdefault(request.as_of_us, []).append((request, rows))
    complete = [
        as_of_us
        for as_of_us, found in by_as_of.items()
        if len(found) >= found[0][0].count
    ]
    if not complete:
        return None, []
    as_of_us = max(complete)
    return as_of_us, [
        (request.event, rows)
        for request, rows in by_as_of[as_of_us]
        if request.event is not None
    ]


class WriteOpenEventsFn(beam.DoFn):
    """(None, (EventRequest, rows)) of open events -> the paths of the
    ``open_events`` snapshots written: each snapshot once all its events have
    their texts, unless a later one was written already."""

    PENDING = userstate.BagStateSpec("pending", PickleCoder())

    def __init__(self, root: str, timezone: str):
        self._root = root
        self._timezone = timezone

    def process(self, element, pending_state=beam.DoFn.StateParam(PENDING)):
        _, found = element
        pending = [*pending_state.read(), found]
        as_of_us, rows = complete_snapshot(pending)
        if as_of_us is None:
            pending_state.add(found)
            return
        pending_state.clear()
        for request, texts in pending:
            if request.as_of_us > as_of_us:
                pending_state.add((request, texts))
        path = write_snapshot(
            events_table(rows, as_of_us),
            self._root,
            "open_events",
            as_of_us,
            self._timezone,
        )
        if path:
            yield path


def _tagged(what: str):
    return lambda keyed: (keyed[0], (what, keyed[1]))


class WriteEventsInStream(beam.PTransform):
    """Streaming: (window panes, bursts, posts read) -> the ``events`` and
    ``event_windows`` tables under ``ROOT``, each event written once, when closed.

    ``windows``: ``AggregateWindows``' panes (with top carriers); ``bursts``:
    ``DetectBursts``' ((kind, topic), Burst) rows; ``posts``: every ``Post`` read.
    """

    def __init__(
        self,
        root: str,
        timezone: str,
        window_us: int,
        min_evidence: int,
        params: EventParams,
        text_retention_us: int,
        firing_seconds: int,
    ):
        super().__init__()
        self._root = root
        self._timezone = timezone
        self._window_us = window_us
        self._min_evidence = min_evidence
        self._params = params
        self._retention_us = text_retention_us
        self._firing_seconds = firing_seconds

    def expand(self, inputs: dict) -> beam.pvalue.PDone:
        windows, bursts, posts = inputs["windows"], inputs["bursts"], inputs["posts"]
        min_evidence, window_us = self._min_evidence, self._window_us
        evidence = (
            windows
            | "Evidence"
            >> beam.FlatMap(
                lambda element: [
                    TimestampedValue(
                        (None, ("evidence", rows)), _at(element[1] - MARGIN_US)
                    )
                    for rows in [tuple(evidence_rows(element, min_evidence))]
                    if rows
                ]
            )
            | "EvidenceGlobally" >> beam.WindowInto(GlobalWindows())
        )
        # A mark is judged with its burst's window (a supporting window's too).
        marks = bursts | "Marks" >> beam.FlatMapTuple(
            lambda key, burst: [
                (None, ("mark", (member_key, burst.end_us)))
                for member_key, _ in member_marks(key, burst, window_us)
            ]
        )
        requests = (
            (evidence, marks)
            | "EvidenceAndMarks" >> beam.Flatten()
            | "Assemble"
            >> beam.ParDo(AssembleEventsInStreamFn(window_us, self._params))
        )
        texts_read = posts | "SourceTexts" >> beam.Map(source_post)
        asks = requests | "AskTexts" >> beam.FlatMap(text_asks)
        answers = (
            (texts_read, asks)
            | "PostsAndAsks" >> beam.Flatten()
            | "StoredTexts" >> beam.ParDo(SourceTextsFn(self._retention_us))
        )
        finished = (
            (
                requests
                | "ById" >> beam.Map(lambda request: (request.request_id, request))
                | "RequestTag" >> beam.Map(_tagged("request")),
                answers | "TextTag" >> beam.Map(_tagged("text")),
            )
            | "RequestsAndTexts" >> beam.Flatten()
            | "Attach" >> beam.ParDo(AttachTextsFn())
        )
        closed = finished | "Closed" >> beam.FlatMapTuple(
            lambda request, rows: [(request.event, rows)] if request.closed else []
        )
        (
            finished
            | "Open"
            >> beam.FlatMapTuple(
                lambda request, rows: (
                    [] if request.closed else [(None, (request, rows))]
                )
            )
            | "WriteOpenEvents"
            >> beam.ParDo(WriteOpenEventsFn(self._root, self._timezone))
        )
        write_event_tables(
            closed,
            closed | "Timeline" >> beam.FlatMap(lambda row: event_windows_rows(row[0])),
            self._root,
            self._timezone,
            self._firing_seconds,
        )
        return beam.pvalue.PDone(windows.pipeline)
