"""Events: bursting topics that are one real-world happening, told apart by the posts
that carry them. Pure functions; ``transforms.events`` applies them in Beam.

The members of events are bursting (kind, topic, window) rows (``EventMember``). Two
members belong to one event when

- they are the same words (a hashtag and the same words as a keyword or an entity:
  topics are normalized alike, ``schemas.topics``) bursting within ``link_windows``
  windows of each other, or one topic bursting again that soon;
- they share a dominant carrier: a post whose spread (itself and the reposts whose
  chain root it is) is at least ``carrier_share`` of each member's posts, within
  ``carrier_windows`` of each other, since one post's spread is one happening; or
- they burst in the same window among largely the same people: the intersection of
  their participants (estimated from their sketches, ``|A| + |B| - |A u B|``) is at
  least ``people_share`` of the smaller. This joins the topics of an event that no
  single post dominates (many people writing the same hashtag and words).

An event is a connected group of members. Its participants are the union of its
members' sketches; its posts and reposts, per window, those of its strongest member
in that window, summed over its windows (a post carrying several of its topics
counts once; the figures are a lower bound of its distinct posts); its
representative posts the carriers of most reposts within it.
"""

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import datasketches

from schemas.records import EventMember
from schemas.sketch import DEFAULT_LG_K, HLL_TYPE
from schemas.topics import KIND_HASHTAG, TOPIC_KINDS


@dataclasses.dataclass(frozen=True)
class EventParams:
    """How members are joined into events, and which events are published."""

    link_windows: int = 2
    # A carrier joins members at most this many windows apart: a post reposted
    # again a month later starts a new event, not a month-long one.
    carrier_windows: int = 24
    carrier_share: float = 0.1
    min_carrier_posts: int = 2
    people_share: float = 0.5
    min_participants: int = 30
    representative_posts: int = 3


class EventWindow(NamedTuple):
    """One window of an event's timeline."""

    start_us: int
    end_us: int
    participants: int
    posts: int
    reposts: int
    topics: int


class Event(NamedTuple):
    """An assembled event, its representative posts as (post key, reposts, posts)
    still to be given their text."""

    event_id: str
    onset_us: int
    peak_start_us: int
    end_us: int
    label_kind: str
    label: str
    topics: tuple[tuple[str, str, int], ...]
    participants: int
    participants_sketch: bytes
    posts: int
    reposts: int
    peak_participants: int
    windows: tuple[EventWindow, ...]
    carriers: tuple[tuple[int, int, int], ...]


class _Groups:
    """Union-find over member indices."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def join(self, first: int, second: int) -> None:
        first, second = self.find(first), self.find(second)
        if first != second:
            self.parent[max(first, second)] = min(first, second)


def _union(sketches: Iterable[bytes], lg_k: int = DEFAULT_LG_K):
    union = datasketches.hll_union(lg_k)
    for blob in sketches:
        union.update(datasketches.hll_sketch.deserialize(blob))
    return union


def union_estimate(sketches: Iterable[bytes]) -> int:
    """Distinct people over serialized HLL sketches."""
    return int(round(_union(sketches).get_estimate()))


def shared_people(first: EventMember, second: EventMember) -> int:
    """Estimated people in both members (inclusion-exclusion over their sketches)."""
    both = union_estimate((first.sketch, second.sketch))
    return max(0, first.participants + second.participants - both)


def dominant_carriers(member: EventMember, params: EventParams) -> set[int]:
    """The carriers that spread at least ``carrier_share`` of the member's posts."""
    floor = max(params.min_carrier_posts, params.carrier_share * member.posts)
    return {key for key, posts, _ in member.carriers if posts >= floor}


def group_members(
    members: Sequence[EventMember], window_us: int, params: EventParams
) -> list[list[int]]:
    """Members -> groups of member indices, one per event, each sorted, the groups
    in order of their first member (see the module doc for the links)."""
    groups = _Groups(len(members))
    near_us = params.link_windows * window_us
    by_words: dict[str, list[int]] = defaultdict(list)
    by_carrier: dict[int, list[int]] = defaultdict(list)
    by_window: dict[int, list[int]] = defaultdict(list)
    for index, member in enumerate(members):
        by_words[member.topic].append(index)
        by_window[member.start_us].append(index)
        for key in dominant_carriers(member, params):
            by_carrier[key].append(index)
    for indices in by_words.values():
        indices.sort(key=lambda index: members[index].start_us)
        for before, after in zip(indices, indices[1:], strict=False):
            if members[after].start_us - members[before].start_us <= near_us:
                groups.join(before, after)
    carrier_us = params.carrier_windows * window_us
    for indices in by_carrier.values():
        indices.sort(key=lambda index: members[index].start_us)
        for before, after in zip(indices, indices[1:], strict=False):
            if members[after].start_us - members[before].start_us <= carrier_us:
                groups.join(before, after)
    for indices in by_window.values():
        for at, first in enumerate(indices):
            for second in indices[at + 1 :]:
                if groups.find(first) == groups.find(second):
                    continue
                smaller = min(members[first].participants, members[second].participants)
                shared = shared_people(members[first], members[second])
                if smaller and shared >= params.people_share * smaller:
                    groups.join(first, second)
    grouped: dict[int, list[int]] = defaultdict(list)
    for index in range(len(members)):
        grouped[groups.find(index)].append(index)
    return [sorted(indices) for _, indices in sorted(grouped.items())]


def member_order(member: EventMember) -> tuple:
    """Members in time order, then kind (in ``TOPIC_KINDS`` order), then topic."""
    return (member.start_us, TOPIC_KINDS.index(member.kind), member.topic)


def event_id(first: EventMember) -> str:
    """An id that depends only on the event's first member: stable across reruns
    of the same input and settings."""
    text = f"{first.start_us}\x00{first.kind}\x00{first.topic}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def event_windows(members: Sequence[EventMember]) -> tuple[EventWindow, ...]:
    """The event's timeline: per window, its people (union of the window's members),
    the posts and reposts of its strongest member, and its bursting topics."""
    by_start: dict[int, list[EventMember]] = defaultdict(list)
    for member in members:
        by_start[member.start_us].append(member)
    timeline = []
    for start_us in sorted(by_start):
        window = by_start[start_us]
        strongest = max(window, key=lambda member: (member.posts, member.reposts))
        timeline.append(
            EventWindow(
                start_us,
                window[0].end_us,
                union_estimate(member.sketch for member in window),
                strongest.posts,
                strongest.reposts,
                len(window),
            )
        )
    return tuple(timeline)


def ranked_topics(members: Sequence[EventMember]) -> tuple[tuple[str, str, int], ...]:
    """(kind, topic, participants over its windows) of the event's topics, most
    participants first, then kind, then topic."""
    sketches: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    for member in members:
        sketches[(member.kind, member.topic)].append(member.sketch)
    found = [
        (kind, topic, union_estimate(blobs))
        for (kind, topic), blobs in sketches.items()
    ]
    found.sort(key=lambda row: (-row[2], TOPIC_KINDS.index(row[0]), row[1]))
    return tuple(found)


def event_carriers(
    members: Sequence[EventMember], limit: int
) -> tuple[tuple[int, int, int], ...]:
    """The event's top carriers as (post key, reposts, posts) within the event: per
    window a carrier's largest figures over the members it carries there, summed
    over windows; most reposts first, then most posts, then the smaller key."""
    per_window: dict[tuple[int, int], tuple[int, int]] = {}
    for member in members:
        for key, posts, reposts in member.carriers:
            slot = (key, member.start_us)
            held = per_window.get(slot, (0, 0))
            per_window[slot] = (max(held[0], reposts), max(held[1], posts))
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for (key, _), (reposts, posts) in per_window.items():
        totals[key][0] += reposts
        totals[key][1] += posts
    ranked = sorted(
        totals.items(), key=lambda item: (-item[1][0], -item[1][1], item[0])
    )
    return tuple((key, reposts, posts) for key, (reposts, posts) in ranked[:limit])


def assemble_event(members: Sequence[EventMember], params: EventParams) -> Event:
    """One group of members -> its ``Event``."""
    members = sorted(members, key=member_order)
    timeline = event_windows(members)
    peak = max(timeline, key=lambda window: (window.participants, -window.start_us))
    everyone = _union(member.sketch for member in members)
    topics = ranked_topics(members)
    hashtags = [row for row in topics if row[0] == KIND_HASHTAG]
    label_kind, label, _ = (hashtags or topics)[0]
    return Event(
        event_id=event_id(members[0]),
        onset_us=members[0].start_us,
        peak_start_us=peak.start_us,
        end_us=max(member.end_us for member in members),
        label_kind=label_kind,
        label=label,
        topics=topics,
        participants=int(round(everyone.get_estimate())),
        participants_sketch=everyone.get_result(HLL_TYPE).serialize_compact(),
        posts=sum(window.posts for window in timeline),
        reposts=sum(window.reposts for window in timeline),
        peak_participants=peak.participants,
        windows=timeline,
        carriers=event_carriers(members, params.representative_posts),
    )


def assemble_events(
    members: Iterable[EventMember], window_us: int, params: EventParams
) -> list[Event]:
    """All bursting members of a run -> its published events (at least
    ``min_participants`` people), in order of onset, then id."""
    members = sorted(members, key=member_order)
    events = [
        assemble_event([members[index] for index in group], params)
        for group in group_members(members, window_us, params)
    ]
    published = [
        event for event in events if event.participants >= params.min_participants
    ]
    return sorted(published, key=lambda event: (event.onset_us, event.event_id))


class EventAssembler:
    """The events of members that arrive a window at a time, each event given as soon
    as no later member can join it: what ``assemble_events`` gives on all of them.

    Members come in windows in time order, a burst's supporting window (the one
    before it) at most one window behind the newest. Every link spans at most
    ``max(link_windows, carrier_windows)`` windows, so a group whose newest member is
    further than that before the earliest window a member may still come in is
    final. Dropping a final group from the open members never links two others: the
    links by words and by carrier join neighbours in time within a distance, and a
    dropped member between two open ones was too far from the earlier to link it.
    """

    def __init__(self, window_us: int, params: EventParams):
        self._window_us = window_us
        self._params = params
        self._span_us = max(params.link_windows, params.carrier_windows) * window_us
        self._open: list[EventMember] = []

    def add(self, members: Iterable[EventMember]) -> None:
        """Members of the windows judged so far (any order among them)."""
        self._open.extend(members)

    def close_before(self, next_start_us: int) -> list[Event]:
        """The published events no member of a window starting at ``next_start_us``
        or later (nor that window's supporting window) can join; their members leave
        the open ones."""
        earliest_us = next_start_us - self._window_us
        return self._close(lambda newest_us: newest_us + self._span_us < earliest_us)

    def open_events(self) -> list[Event]:
        """The open groups as they stand, those of at least ``min_participants``
        people (participants only grow, so each is published when it closes)."""
        return assemble_events(self._open, self._window_us, self._params)

    def latest_close_us(self) -> int | None:
        """The window start by which every open group can be closed
        (``close_before`` it closes them all); None when nothing is open."""
        if not self._open:
            return None
        newest_us = max(member.start_us for member in self._open)
        return newest_us + self._span_us + 2 * self._window_us

    def close_all(self) -> list[Event]:
        """Every open group as an event (the input has ended)."""
        return self._close(lambda newest_us: True)

    def _close(self, is_final) -> list[Event]:
        members = sorted(self._open, key=member_order)
        events, still_open = [], []
        for group in group_members(members, self._window_us, self._params):
            grouped = [members[index] for index in group]
            if is_final(max(member.start_us for member in grouped)):
                event = assemble_event(grouped, self._params)
                if event.participants >= self._params.min_participants:
                    events.append(event)
            else:
                still_open.extend(grouped)
        self._open = still_open
        return sorted(events, key=lambda event: (event.onset_us, event.event_id))


def assemble_events_by_window(
    members: Iterable[EventMember], window_us: int, params: EventParams
) -> list[Event]:
    """``assemble_events`` by a sweep over the windows (``EventAssembler``): only the
    groups still open are regrouped as each window comes, so a long run's early
    events are done with before its later windows are read."""
    by_start: dict[int, list[EventMember]] = defaultdict(list)
    for member in members:
        by_start[member.start_us].append(member)
    assembler = EventAssembler(window_us, params)
    events = []
    for start_us in sorted(by_start):
        events.extend(assembler.close_before(start_us))
        assembler.add(by_start[start_us])
    events.extend(assembler.close_all())
    return sorted(events, key=lambda event: (event.onset_us, event.event_id))
