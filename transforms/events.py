"""Events in Beam (batch; ``transforms.events_streaming`` assembles the same events
in a stream): the bursting topic-windows joined with their evidence,
grouped into events (``transforms.event_model``), given their representative posts'
text, and written as ``events`` and ``event_windows``.

The evidence of a topic-window (its sketch and top carriers) is taken from the
windows' tables as they are aggregated, only for topics with at least a quarter of
the detector's minimum support (``evidence_floor``), and joined with the bursts by
(kind, topic, window).
An event's members are its bursting topic-windows and, where a new topic's burst
was judged on the people of the window before as well
(``Burst.previous_participants``), that window too: the surge began there.

The representative posts' texts are read again from the input's slices, keeping
only the few posts the events name: holding every post's text until the events are
known would cost memory for all of them.
"""

from collections.abc import Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from schemas import tables
from schemas.records import EventMember, SourcePost, WindowTables
from transforms.burst_counts import column_values
from transforms.event_model import Event, EventParams, assemble_events_by_window
from transforms.files import read_slice
from transforms.posts import InvalidPost, decode_json_line, parse_post
from transforms.read import ParsePostsFn
from transforms.window_posts import post_id_key
from transforms.write import WriteRowsByDate

# Characters of a representative post's text kept in the table.
REPRESENTATIVE_TEXT_CHARS = 500

MemberKey = tuple[str, str, int]


def evidence_floor(min_support: int) -> int:
    """The fewest participants of a topic-window whose evidence is kept: a quarter
    of the minimum support, since the window before a burst may count toward it
    with few people of its own."""
    return max(2, min_support // 4)


CARRIER_COLUMNS = ("kind", "topic", "post_key", "posts", "reposts")
EVIDENCE_COLUMNS = (
    "kind",
    "topic",
    "posts",
    "reposts",
    "participants",
    "participants_sketch",
)


def evidence_rows(
    element: WindowTables, min_participants: int
) -> Iterator[tuple[MemberKey, EventMember]]:
    """A window's tables -> ((kind, topic, window start), EventMember) for each topic
    of at least ``min_participants`` people, with its top carriers."""
    start_us, end_us, by_table = element
    carriers: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    carrier_table = by_table.get(tables.TOP_CARRIERS_NAME)
    if carrier_table is not None:
        for kind, topic, key, posts, reposts in zip(
            *(column_values(carrier_table, name) for name in CARRIER_COLUMNS),
            strict=True,
        ):
            carriers.setdefault((kind, topic), []).append((key, posts, reposts))
    for kind, topic, posts, reposts, people, sketch in zip(
        *(column_values(by_table["topics"], name) for name in EVIDENCE_COLUMNS),
        strict=True,
    ):
        if people < min_participants:
            continue
        yield (
            (kind, topic, start_us),
            EventMember(
                kind,
                topic,
                start_us,
                end_us,
                posts,
                reposts,
                people,
                sketch,
                tuple(carriers.get((kind, topic), ())),
            ),
        )


def member_marks(
    key: tuple[str, str], burst, window_us: int
) -> list[tuple[MemberKey, str]]:
    """A burst -> the (kind, topic, window) keys it makes members: its window, and
    the window before when that window's people counted toward its support."""
    kind, topic = key
    marks = [((kind, topic, burst.start_us), "burst")]
    if getattr(burst, "previous_participants", 0):
        marks.append(((kind, topic, burst.start_us - window_us), "support"))
    return marks


def joined_member(joined: tuple[MemberKey, dict]) -> Iterator[EventMember]:
    """A (kind, topic, window) joined with its marks and evidence -> its member,
    when it burst or supported a burst (and has evidence)."""
    _, found = joined
    if found["marks"] and found["evidence"]:
        yield found["evidence"][0]


def record_source_post(record, key_set: frozenset[int], pseudonym_key: bytes):
    """A raw input record -> its ``SourcePost`` when its id is one of ``key_set``
    (masked as at ingest), else None. Records that do not parse are None: the first
    reading already gave them their dead letters."""
    if isinstance(record, dict):
        decoded = record
    elif isinstance(record, bytes | str):
        try:
            decoded = decode_json_line(record)
        except (InvalidPost, ValueError):
            return None
    else:
        return None
    raw_id = decoded.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        return None
    if post_id_key(str(raw_id)) not in key_set:
        return None
    try:
        post = parse_post(decoded, pseudonym_key)
    except (InvalidPost, ValueError, TypeError):
        return None
    return SourcePost(
        post.id, post.event_time_us, post.text[:REPRESENTATIVE_TEXT_CHARS]
    )


class ReadSourcePostsFn(ParsePostsFn):
    """FileSlice -> (post key, SourcePost) for the posts whose keys are in the side
    input (a frozenset)."""

    def process(self, piece, keys: frozenset[int]) -> Iterable:
        if not keys:
            return
        pseudonym_key = self.pseudonym_key()
        try:
            for record in read_slice(piece, self._max_line_bytes):
                found = record_source_post(record, keys, pseudonym_key)
                if found is not None:
                    yield post_id_key(found.id), found
        except OSError:
            return  # the first reading gave the file its dead letter


def earliest_copies(posts: Iterable[tuple[int, SourcePost]]) -> dict[int, SourcePost]:
    """(key, SourcePost) of every copy -> one per key: the earliest, then the
    smallest (as the counting keeps the earliest copy)."""
    found: dict[int, SourcePost] = {}
    for key, post in posts:
        held = found.get(key)
        if held is None or (post.created_at_us, post) < (held.created_at_us, held):
            found[key] = post
    return found


def representative_posts(event: Event, texts: dict[int, SourcePost]) -> list[dict]:
    """The event's top carriers found in the input, best first, as table rows."""
    rows = []
    for key, reposts, _ in event.carriers:
        post = texts.get(key)
        if post is not None:
            rows.append(
                {
                    "id": post.id,
                    "created_at": post.created_at_us,
                    "text": post.text,
                    "reposts": reposts,
                }
            )
    return rows


def events_table(
    rows: Iterable[tuple[Event, list[dict]]], as_of_us: int | None = None
) -> pa.Table:
    """(Event, its representative posts) -> rows of ``schemas.tables.EVENTS``; with
    ``as_of_us``, of ``schemas.tables.OPEN_EVENTS`` (events open at that time)."""
    rows = sorted(rows, key=lambda row: (row[0].onset_us, row[0].event_id))
    data = {
        "event_id": [event.event_id for event, _ in rows],
        "onset": [event.onset_us for event, _ in rows],
        "peak_window_start": [event.peak_start_us for event, _ in rows],
        "end": [event.end_us for event, _ in rows],
        "label": [event.label for event, _ in rows],
        "topics": [
            [
                {"kind": kind, "topic": topic, "participants": people}
                for kind, topic, people in event.topics
            ]
            for event, _ in rows
        ],
        "participants": [event.participants for event, _ in rows],
        "posts": [event.posts for event, _ in rows],
        "reposts": [event.reposts for event, _ in rows],
        "representative_posts": [posts for _, posts in rows],
        "label_kind": [event.label_kind for event, _ in rows],
        "windows": [len(event.windows) for event, _ in rows],
        "peak_participants": [event.peak_participants for event, _ in rows],
        "participants_sketch": [event.participants_sketch for event, _ in rows],
    }
    if as_of_us is None:
        return pa.Table.from_pydict(data, schema=tables.EVENTS)
    data["as_of"] = [as_of_us] * len(rows)
    return pa.Table.from_pydict(data, schema=tables.OPEN_EVENTS)


def event_windows_table(rows: Iterable[tuple[str, object]]) -> pa.Table:
    """(event id, EventWindow) -> rows of ``schemas.tables.EVENT_WINDOWS``."""
    rows = sorted(rows, key=lambda row: (row[1].start_us, row[0]))
    return pa.Table.from_pydict(
        {
            "event_id": [event_id for event_id, _ in rows],
            "window_start": [window.start_us for _, window in rows],
            "window_end": [window.end_us for _, window in rows],
            "participants": [window.participants for _, window in rows],
            "posts": [window.posts for _, window in rows],
            "reposts": [window.reposts for _, window in rows],
            "topics": [window.topics for _, window in rows],
        },
        schema=tables.EVENT_WINDOWS,
    )


class AssembleEventsFn(beam.DoFn):
    """[EventMember] (all of a run's) -> Event, each published event once, assembled
    window by window as a stream would close them (``EventAssembler``)."""

    def __init__(self, window_us: int, params: EventParams):
        self._window_us = window_us
        self._params = params
        self._events = Metrics.counter(self.__class__, "events")

    def process(self, members: list[EventMember]) -> Iterator[Event]:
        events = assemble_events_by_window(members, self._window_us, self._params)
        self._events.inc(len(events))
        yield from events


class WriteEvents(beam.PTransform):
    """Batch: (windows, bursts, input slices) -> the ``events`` and ``event_windows``
    tables under ``ROOT``.

    ``windows``: ``AggregateCreditedWindows``' output (with the top carriers);
    ``bursts``: ``DetectBursts``' ((kind, topic), Burst) rows; ``slices``: the
    input's ``FileSlice``s (``ReadPosts``), read again for the representative texts.
    """

    def __init__(
        self,
        root: str,
        timezone: str,
        window_us: int,
        min_support: int,
        params: EventParams,
        key_source,
        max_line_bytes: int,
    ):
        super().__init__()
        self._root = root
        self._timezone = timezone
        self._window_us = window_us
        self._min_support = min_support
        self._params = params
        self._key_source = key_source
        self._max_line_bytes = max_line_bytes

    def expand(self, inputs: dict) -> beam.pvalue.PDone:
        windows, bursts, slices = inputs["windows"], inputs["bursts"], inputs["slices"]
        # A window before a burst counts toward its support with fewer people.
        min_evidence = evidence_floor(self._min_support)
        window_us = self._window_us
        evidence = windows | "Evidence" >> beam.FlatMap(
            lambda element: evidence_rows(element, min_evidence)
        )
        marks = bursts | "MemberKeys" >> beam.FlatMapTuple(
            lambda key, burst: member_marks(key, burst, window_us)
        )
        members = (
            {"marks": marks, "evidence": evidence}
            | "JoinEvidence" >> beam.CoGroupByKey()
            | "Members" >> beam.FlatMap(joined_member)
        )
        events = (
            members
            | "AllMembers" >> beam.combiners.ToList()
            | "Assemble" >> beam.ParDo(AssembleEventsFn(self._window_us, self._params))
        )
        keys = (
            events
            | "CarrierKeys"
            >> beam.FlatMap(lambda event: [c[0] for c in event.carriers])
            | "KeySet" >> beam.combiners.ToList()
            | "Frozen" >> beam.Map(frozenset)
        )
        texts = (
            slices
            | "ReadSourcePosts"
            >> beam.ParDo(
                ReadSourcePostsFn(self._key_source, self._max_line_bytes),
                beam.pvalue.AsSingleton(keys),
            )
            | "SourcePosts" >> beam.combiners.ToList()
            | "EarliestCopies" >> beam.Map(earliest_copies)
        )
        finished = events | "WithTexts" >> beam.Map(
            lambda event, found: (event, representative_posts(event, found)),
            beam.pvalue.AsSingleton(texts),
        )
        write_event_tables(
            finished,
            events | "Timeline" >> beam.FlatMap(event_windows_rows),
            self._root,
            self._timezone,
        )
        return beam.pvalue.PDone(windows.pipeline)


def event_windows_rows(event: Event) -> list[tuple[str, object]]:
    """An event -> (its id, EventWindow) per window of its timeline."""
    return [(event.event_id, window) for window in event.windows]


def write_event_tables(
    finished,
    timeline,
    root: str,
    timezone: str,
    firing_seconds: int | None = None,
) -> None:
    """(Event, representative rows) -> ``events``; (event id, EventWindow) ->
    ``event_windows``; in streaming (``firing_seconds``) a file per firing."""
    # (rows, table, row builder, the row's time, a string naming the row)
    outputs = (
        (
            finished,
            "events",
            events_table,
            lambda row: row[0].onset_us,
            lambda row: row[0].event_id,
        ),
        (
            timeline,
            "event_windows",
            event_windows_table,
            lambda row: row[1].start_us,
            lambda row: f"{row[0]}{row[1].start_us}",
        ),
    )
    for rows, table, to_table, instant_of, row_key in outputs:
        rows | f"Write_{table}" >> WriteRowsByDate(
            root,
            table,
            timezone,
            instant_of=instant_of,
            to_table=to_table,
            row_key=row_key,
            firing_seconds=firing_seconds,
        )
