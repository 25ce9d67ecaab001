"""Events in a stream (``transforms.events_streaming``): the assembler step, driven
as a runner drives it, gives batch's events; texts are answered from what was
read; a replay on Prism writes the batch tables."""

import heapq
import json
import random
import sys

import pytest
from apache_beam.utils.timestamp import Timestamp

from schemas.records import SourcePost
from tests.conftest import PROJECT, read_table
from tests.fakes import FakeBag, FakeValue
from tests.test_events import (
    EMAIL,
    HOUR_US,
    ID_NUMBER,
    PHONE,
    _event_lines,
    _member,
    _random_members,
)
from transforms.event_model import EventParams, assemble_events
from transforms.events_streaming import (
    MARGIN_US,
    AssembleEventsInStreamFn,
    AssemblyState,
    AttachTextsFn,
    EventRequest,
    SourceTextsFn,
    answer_asks,
    complete_snapshot,
    forget_before,
    judge_window,
    latest_evidence,
)

PARAMS = EventParams(min_participants=20)


def _key(member):
    return (member.kind, member.topic, member.start_us)


class Runner:
    """One key of a stateful DoFn under a watermark: elements in timestamp order,
    and before each, every timer the watermark has passed (a timer fires once the
    watermark is past its time), in time order, timers set while firing included."""

    def __init__(self, fn, states: dict, timer_name: str, callback):
        self.fn, self.states, self.callback = fn, states, callback
        self.timer_name = timer_name
        self.timers: dict[str, Timestamp] = {}
        self.outputs: list = []

    def set(self, timestamp, dynamic_timer_tag=""):
        self.timers[dynamic_timer_tag] = timestamp

    def advance(self, watermark_us: float) -> None:
        while True:
            due = [(t.micros, tag) for tag, t in self.timers.items()]
            due = [item for item in due if item[0] < watermark_us]
            if not due:
                return
            fire_us, tag = heapq.nsmallest(1, due)[0]
            del self.timers[tag]
            self.outputs.extend(
                self.callback(
                    self.fn,
                    tag=tag,
                    fired=Timestamp(micros=fire_us),
                    timer=self,
                    **self.states,
                )
                or []
            )

    def run(self, stamped: list[tuple[int, object]], process) -> list:
        for stamp_us, element in sorted(stamped, key=lambda item: item[0]):
            self.advance(stamp_us)
            self.outputs.extend(
                process(self.fn, element, stamp_us, timer=self, **self.states) or []
            )
        self.advance(float("inf"))
        return self.outputs


def _assemble_in_stream(stamped) -> list:
    def process(fn, element, stamp_us, timer, evidence_state, marks_state, **_):
        return fn.process(
            element,
            evidence_state=evidence_state,
            marks_state=marks_state,
            judge=timer,
        )

    def fire(fn, tag, fired, timer, evidence_state, marks_state, assembly_state):
        return fn.on_judge(
            tag=tag,
            evidence_state=evidence_state,
            marks_state=marks_state,
            assembly_state=assembly_state,
            judge=timer,
        )

    states = {
        "evidence_state": FakeBag(),
        "marks_state": FakeBag(),
        "assembly_state": FakeValue(),
    }
    runner = Runner(AssembleEventsInStreamFn(HOUR_US, PARAMS), states, "judge", fire)
    return runner.run(stamped, process)


def _stream_of(members, seed: int) -> list[tuple[int, object]]:
    """What the assembler step receives for ``members``: per window an early pane
    (fewer people) and the on-time pane of its evidence, stamped just before the
    window's end, plus topics that never burst; a burst mark per member, stamped at
    its window's end, or from the next window's burst (the member supported it), or
    both."""
    rng = random.Random(seed)
    by_end: dict[int, list] = {}
    for member in members:
        by_end.setdefault(member.end_us, []).append(member)
        quiet = member._replace(topic=member.topic + "之外")
        by_end[member.end_us].append(quiet)
    stamped = []
    for end_us, window in by_end.items():
        early = tuple(
            (_key(m), m._replace(participants=m.participants - 1, posts=m.posts - 1))
            for m in window
        )
        final = tuple((_key(m), m) for m in window)
        stamped.append((end_us - MARGIN_US - 1, (None, ("evidence", early))))
        stamped.append((end_us - MARGIN_US, (None, ("evidence", final))))
    for member in members:
        marked_by = rng.choice(["burst", "burst", "burst", "both", "support"])
        if marked_by != "support":
            end_us = member.end_us
            stamped.append((end_us, (None, ("mark", (_key(member), end_us)))))
        if marked_by != "burst":
            next_end = member.end_us + HOUR_US
            stamped.append((next_end, (None, ("mark", (_key(member), next_end)))))
    return stamped


@pytest.mark.parametrize("seed", range(30))
def test_the_stream_assembler_gives_the_events_of_all_members_at_once(seed):
    """Closed events are batch's; each was shown open, as it closes, in the
    snapshot of the window its last member came in; the last snapshot is empty."""
    members = _random_members(seed)
    requests = _assemble_in_stream(_stream_of(members, seed))
    closed = [request.event for request in requests if request.closed]
    assert sorted(closed) == sorted(assemble_events(members, HOUR_US, PARAMS))
    shown = [request for request in requests if not request.closed]
    for event in closed:
        assert event in [request.event for request in shown]
    if shown:
        assert shown[-1].event is None and shown[-1].count == 0
    for request in shown:
        if request.event is not None:
            same_snapshot = [r for r in shown if r.as_of_us == request.as_of_us]
            assert len(same_snapshot) == request.count


def test_a_member_marked_twice_counts_once_and_a_mark_without_evidence_none():
    member = _member("hashtag", "雅安地震", 30, range(0, 40))
    state = AssemblyState(HOUR_US, EventParams(min_participants=1))
    evidence = {_key(member): member}
    events, waiting, added = judge_window(
        state, evidence, [_key(member)], member.end_us, HOUR_US
    )
    assert events == [] and waiting == [] and added == 1
    # The next window's burst marks it again as its support, and a topic without
    # evidence (too few people) bursts there.
    unknown = ("hashtag", "少数人", member.end_us)
    events, waiting, added = judge_window(
        state, evidence, [_key(member), unknown], member.end_us + HOUR_US, HOUR_US
    )
    assert waiting == [] and events == [] and added == 0
    (event,) = state.assembler.close_all()
    assert event.windows[0].participants == 40 and len(event.windows) == 1


def test_marks_of_later_windows_wait_for_their_window():
    member = _member("hashtag", "雅安地震", 30, range(0, 40))
    later = ("hashtag", "法院致歉", member.end_us)
    state = AssemblyState(HOUR_US, PARAMS)
    _, waiting, _ = judge_window(
        state, {_key(member): member}, [_key(member), later], member.end_us, HOUR_US
    )
    assert waiting == [later]


def test_the_latest_pane_of_evidence_is_the_one_with_most_people():
    member = _member("hashtag", "雅安地震", 30, range(0, 40))
    early = member._replace(participants=10, posts=10)
    panes = [((_key(member), member),), ((_key(member), early),)]
    assert latest_evidence(panes) == {_key(member): member}


def _post(post_id: str, hour: float, text: str) -> SourcePost:
    return SourcePost(post_id, int(hour * HOUR_US), text)


def test_asks_are_answered_with_the_earliest_copy_or_nothing():
    posts = [
        (7, _post("7", 2, "后来的副本")),
        (7, _post("7", 1, "原文")),
        (8, _post("8", 1, "x")),
    ]
    reads = []

    def read_posts():
        reads.append(1)
        return posts

    known = {}
    assert answer_asks(read_posts, [("e1", 7), ("e2", 9)], known) == [
        ("e1", (7, _post("7", 1, "原文"))),
        ("e2", (9, None)),
    ]
    # A key found before is answered without reading the shard's posts again.
    assert answer_asks(read_posts, [("e1@2", 7)], known) == [
        ("e1@2", (7, _post("7", 1, "原文")))
    ]
    assert len(reads) == 1 and known == {7: _post("7", 1, "原文")}


def test_texts_are_forgotten_after_their_retention():
    posts = [(1, _post("1", 1, "a")), (2, _post("2", 5, "b"))]
    assert forget_before(posts, 6 * HOUR_US, 4 * HOUR_US) == [posts[1]]


def test_the_text_store_answers_an_ask_once_the_watermark_has_passed_it():
    def fire(fn, tag, fired, timer, posts_state, asks_state, known_state):
        if tag.startswith("forget"):
            return fn.on_forget(
                fired=fired, posts_state=posts_state, known_state=known_state
            )
        return fn.on_answer(
            fired=fired,
            posts_state=posts_state,
            asks_state=asks_state,
            known_state=known_state,
        )

    class TaggedTimer:
        """The step's two timer families on one runner, told apart by tag."""

        def __init__(self, runner, prefix):
            self.runner, self.prefix = runner, prefix

        def set(self, timestamp, dynamic_timer_tag=""):
            self.runner.set(timestamp, self.prefix + dynamic_timer_tag)

    states = {
        "posts_state": FakeBag(),
        "asks_state": FakeBag(),
        "known_state": FakeValue(),
    }
    runner = Runner(SourceTextsFn(retention_us=10 * HOUR_US), states, "", fire)

    def process(fn, element, stamp_us, timer, posts_state, asks_state, known_state):
        return fn.process(
            element,
            timestamp=Timestamp(micros=stamp_us),
            posts_state=posts_state,
            asks_state=asks_state,
            answer=TaggedTimer(runner, "answer"),
            forget=TaggedTimer(runner, "forget"),
        )

    source = _post("1", 1, "原文")
    stamped = [
        (int(1.2 * HOUR_US), (0, ("post", 1, source))),
        (int(1.5 * HOUR_US), (0, ("ask", "event", 1))),
        (int(1.6 * HOUR_US), (0, ("ask", "old", 2))),
        (int(1.7 * HOUR_US), (0, ("ask", "event@2", 1))),
        (int(30 * HOUR_US), (0, ("ask", "late", 1))),
    ]
    outputs = runner.run(stamped, process)
    # The post is forgotten 10 hours after it was written: the last ask finds none.
    assert outputs == [
        ("event", (1, source)),
        ("old", (2, None)),
        ("event@2", (1, source)),
        ("late", (1, None)),
    ]
    # The shard's posts were read for keys not found before (1, then 2), by the
    # forget timer, and for key 1 once forgotten; the repeated ask read nothing.
    assert states["posts_state"].reads == 4
    assert states["asks_state"].items == [] and states["posts_state"].items == []
    assert states["known_state"].read() == {}


def _attach(elements) -> list:
    fn = AttachTextsFn()
    request_state, texts_state = FakeValue(), FakeBag()
    found = []
    for element in elements:
        found.extend(
            fn.process(element, request_state=request_state, texts_state=texts_state)
        )
    assert request_state.read() is None and texts_state.items == []
    return found


def test_an_event_is_written_once_every_carrier_is_answered_in_any_order():
    members = [
        _member("hashtag", "雅安地震", 30, range(0, 60), [(1, 50, 49), (2, 9, 8)])
    ]
    (event,) = assemble_events(members, HOUR_US, EventParams(min_participants=1))
    request = EventRequest("e", True, event.end_us, 0, event)
    texts = [("e", ("text", (1, _post("1", 30, "原文")))), ("e", ("text", (2, None)))]
    first = _attach([("e", ("request", request)), *texts])
    last = _attach([*texts, ("e", ("request", request))])
    assert first == last and len(first) == 1
    written, rows = first[0]
    assert written == request and [row["id"] for row in rows] == ["1"]
    # A snapshot with no open event needs no text.
    empty = EventRequest("open@1", False, 1, 0, None)
    assert _attach([("open@1", ("request", empty))]) == [(empty, [])]


def test_the_latest_complete_snapshot_is_written():
    members = [_member("hashtag", "雅安地震", 30, range(0, 60))]
    (event,) = assemble_events(members, HOUR_US, EventParams(min_participants=1))
    other = event._replace(event_id="other")
    pending = [
        (EventRequest("a@1", False, 1, 1, event), []),
        (EventRequest("a@2", False, 2, 2, event), []),
        (EventRequest("b@3", False, 3, 0, None), []),
    ]
    assert complete_snapshot(pending) == (3, [])
    assert complete_snapshot(pending[:2]) == (1, [(event, [])])
    both = [*pending[:2], (EventRequest("o@2", False, 2, 2, other), [])]
    assert complete_snapshot(both) == (2, [(event, []), (other, [])])
    assert complete_snapshot(pending[1:2]) == (None, [])


@pytest.mark.streaming
@pytest.mark.slow
def test_a_stream_of_planted_events_writes_the_batch_events(prism, tmp_path):
    """The events test input replayed through the streaming pipeline on Prism, in
    time order: every table equals batch's, events and their representative posts
    included, and no planted personal value or author reaches them."""
    sys.path.insert(0, str(PROJECT / "benchmarks"))
    import streaming_vs_batch

    source = tmp_path / "posts.jsonl"
    source.write_text("\n".join(_event_lines()) + "\n", encoding="utf-8")
    keep, result_path = tmp_path / "kept", tmp_path / "result.json"
    status = streaming_vs_batch.main(
        [
            "--input",
            str(source),
            "--topic-kinds",
            "hashtag",
            "--early-results-every",
            "2s",
            "--batch-lines",
            "400",
            "--timeout",
            "600",
            "--keep",
            str(keep),
            "--json-out",
            str(result_path),
        ]
    )
    result = json.loads(result_path.read_text())
    assert result["tables"]["events"] == {
        "batch_rows": 3,
        "stream_rows": 3,
        "verdict": "equal",
    }, result
    assert status == 0, result
    events = read_table(keep / "stream", "events")
    written = json.dumps(
        events.drop("participants_sketch").to_dicts(), default=str, ensure_ascii=False
    )
    assert "暴雨" in written
    for planted in (PHONE, EMAIL, ID_NUMBER, "u9001", "u1000"):
        assert planted not in written


@pytest.mark.streaming
@pytest.mark.slow
def test_open_events_show_while_they_grow_and_close_when_the_stream_ends(
    prism, tmp_path
):
    """Posts up to the second surge arrive first: once the watermark has passed the
    first surges' window, ``open_events`` shows them, with their texts, before any
    is closed; when the stream ends every event is closed, in ``events``, and
    none is open."""
    import os
    import signal

    from reports.panes import read_latest_panes
    from tests.test_streaming_e2e import start_stream, wait_for
    from transforms.landing_folder import drop_file, end_stream

    lines = sorted(_event_lines(), key=lambda line: json.loads(line)["created_at"])
    cut = next(
        at
        for at, line in enumerate(lines)
        if json.loads(line)["created_at"] >= "2026-05-02T12"
    )
    landing, out = tmp_path / "landing", tmp_path / "out"
    landing.mkdir()
    drop_file(str(landing), "part-0.jsonl", "\n".join(lines[:cut]).encode() + b"\n")
    options = ["--topic-kinds", "hashtag", "--allowed-lateness", "1h"]
    options += ["--streaming", "--early-results-every", "2s", "--poll-interval", "1s"]
    process = start_stream(landing, out, prism, tuple(options))
    try:
        wait_for(lambda: (out / "open_events").exists(), 60, process, "the tables")
        (growing,) = wait_for(
            lambda: [
                frame
                for frame in [read_latest_panes(str(out), "open_events")]
                if frame.height == 2
            ],
            180,
            process,
            "the first surges show as open events",
        )
        assert sorted(growing["label"]) == ["山城暴雨", "高铁晚点"]
        texts = [p["text"] for posts in growing["representative_posts"] for p in posts]
        assert any("暴雨" in text for text in texts) and PHONE not in str(texts)
        assert read_latest_panes(str(out), "events").height == 0
        drop_file(str(landing), "part-1.jsonl", "\n".join(lines[cut:]).encode())
        end_stream(str(landing))
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert read_latest_panes(str(out), "open_events").height == 0
    closed = read_latest_panes(str(out), "events")
    assert sorted(closed["label"]) == ["山城暴雨", "法院致歉", "高铁晚点"]
