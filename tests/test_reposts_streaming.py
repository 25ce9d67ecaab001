"""Streaming crediting: reposts credited with their chain root's topics by keyed
pointer-jumping stages; lateness and the horizon (plain pytest on the functions and
the stage's callbacks, TestStream on Prism with marker ``streaming``)."""

import gzip
import json
import sys

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import window
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas.records import Post
from tests.conftest import CASCADES, PROJECT, needs_shared, streaming_options
from tests.fakes import FakeBag, FakeTimer, FakeValue
from transforms.aggregate import AggregateWindows, PostSummary
from transforms.late import LATE_POSTS, SplitLatePosts, streaming_windowing
from transforms.reposts_streaming import (
    ChainInfo,
    ChainRecord,
    ChainStageFn,
    CreditRepostsInStream,
    Slot,
    credited_post,
    info_of,
    initial_record,
    jump,
    leaving_stamp,
    release_time,
    stage_messages,
    with_event_time,
)
from transforms.window_posts import post_id_key

HOUR_US = 3_600_000_000
# 2026-11-20 00:00 UTC.
DAY_US = 1_795_132_800 * 1_000_000
A = (("hashtag", "a"),)
B = (("hashtag", "b"),)


def at(hour: float) -> int:
    return DAY_US + int(hour * HOUR_US)


def summary(post_id, parent=None, topics=()):
    return PostSummary(post_id, 1, parent is not None, tuple(topics), parent)


def record(post_id, parent=None, topics=(), release_hour=10.0, stamp_hour=8.0):
    return initial_record(
        summary(post_id, parent, topics), at(8), at(stamp_hour), at(release_hour)
    )


def resolve_summaries(records: list[ChainRecord], stages: int) -> dict[str, tuple]:
    """Every record after ``stages`` stages run with everything present (the
    functions a stage applies, in memory): id -> its credited summary."""
    for _ in range(stages):
        infos = {}
        for item in records:
            infos.setdefault(item.summary.id, info_of(item))
        records = [
            item
            if item.pointer is None or item.pointer not in infos
            else jump(item, infos[item.pointer])
            for item in records
        ]
    return {item.summary.id: credited_post(item).summary for item in records}


def resolve(records: list[ChainRecord], stages: int) -> dict[str, tuple]:
    """id -> credited topics (``resolve_summaries``)."""
    return {
        key: found.topics for key, found in resolve_summaries(records, stages).items()
    }


# --- Functions ------------------------------------------------------------------


def test_release_time_is_just_within_the_lateness():
    assert release_time(at(9), 2 * HOUR_US) == at(11) - 1_000


def test_one_hop_and_deep_chains_resolve_within_their_stages():
    chain = [record("c0", topics=A)] + [
        record(f"c{i}", f"c{i - 1}") for i in range(1, 33)
    ]
    credited = resolve(chain, 5)
    assert credited["c1"] == A and credited["c31"] == A
    assert credited["c0"] == A
    # Chains of 2**stages - 1 hops are resolved; deeper keep their own topics.
    assert credited["c32"] == ()
    assert resolve(chain, 2)["c3"] == A
    assert resolve(chain, 2)["c4"] == ()


def test_a_repost_that_adds_a_hashtag_passes_on_the_root_only():
    credited = resolve(
        [
            record("s", topics=A),
            record("r1", "s", topics=B),
            record("r2", "r1"),
            record("r3", "r2", topics=B),
        ],
        3,
    )
    assert credited == {"s": A, "r1": B + A, "r2": A, "r3": B + A}


def test_a_credited_repost_is_carried_by_its_root_as_in_batch():
    """The carrier is what events tell posts apart by: a repost resolved to a root
    (with topics or not) is the root's spread; anything else carries itself."""
    summaries = resolve_summaries(
        [
            record("s", topics=()),
            record("r1", "s", topics=B),
            record("r2", "r1"),
            record("x", "y"),
            record("y", "x"),
            record("orphan", "gone"),
            record("me", "me"),
        ],
        3,
    )
    carriers = {key: found.carrier for key, found in summaries.items()}
    root = post_id_key("s")
    assert carriers == {
        "s": None,
        "r1": root,
        "r2": root,
        "x": None,
        "y": None,
        "orphan": None,
        "me": None,
    }
    # A root without topics credits none, but still carries its reposts.
    assert summaries["r1"].topics == B and summaries["r2"].topics == ()


def test_cycles_self_reposts_and_missing_sources_credit_nothing():
    credited = resolve(
        [
            record("x", "y", topics=B),
            record("y", "x"),
            record("p", "q"),
            record("q", "r"),
            record("r", "p"),
            record("me", "me", topics=B),
            record("orphan", "gone"),
            record("hangs", "x"),
        ],
        5,
    )
    assert credited == {
        "x": B,
        "y": (),
        "p": (),
        "q": (),
        "r": (),
        "me": B,
        "orphan": (),
        "hangs": (),
    }


def test_a_post_read_beyond_its_release_time_never_waits():
    assert record("r", "s", stamp_hour=10.5).expired
    assert not record("r", "s", stamp_hour=9.5).expired


def test_stamps_never_pass_the_release_time_unless_read_late():
    waiting = record("r", "s", release_hour=10)
    assert leaving_stamp(waiting, at(12)) == at(10)
    assert leaving_stamp(waiting, at(9)) == at(9)
    late = record("r", "s", release_hour=10, stamp_hour=11)
    assert leaving_stamp(late, at(12)) == at(12)


def test_stage_messages_ask_the_pointer_and_tell_their_own_id():
    repost, root = record("r", "s"), record("s", topics=A)
    assert list(stage_messages(repost, 7)) == [
        ("r", ("info", ChainInfo("s", ()), 7, None)),
        ("s", ("ask", repost)),
    ]
    assert list(stage_messages(root, 7)) == [
        ("s", ("info", ChainInfo(None, A, "s"), 7, root))
    ]


# --- The stage's callbacks, driven as a runner would --------------------------


class Stage:
    """One key's state and timers of a ``ChainStageFn``."""

    def __init__(self):
        self.fn = ChainStageFn()
        self.slot, self.waiting = FakeValue(), FakeBag()
        self.release, self.forget = FakeTimer(), FakeTimer()

    def send(self, key, message, stamp_us):
        return list(
            self.fn.process(
                (key, message),
                timestamp=Timestamp(micros=stamp_us),
                slot_state=self.slot,
                waiting=self.waiting,
                release=self.release,
                forget=self.forget,
            )
        )

    def fire_release(self):
        fire = self.release.timers[""]
        return list(
            self.fn.release_due(
                fire=fire,
                slot_state=self.slot,
                waiting=self.waiting,
                release=self.release,
            )
        )

    def slot_now(self) -> Slot:
        """The key's slot as the stage reads it (a cleared slot is empty)."""
        return self.slot.read() or Slot()

    def fire_forget(self):
        self.fn.forget_info(slot_state=self.slot)


def outputs(values: list[TimestampedValue]) -> list[tuple]:
    return [
        (
            value.value.summary.id,
            value.value.pointer,
            value.value.root_topics,
            value.timestamp.micros,
        )
        for value in values
    ]


def test_a_repost_waits_for_its_source_and_is_credited_when_it_comes():
    stage = Stage()
    repost = record("r", "s", release_hour=10, stamp_hour=8)
    assert stage.send("s", ("ask", repost), at(8)) == []
    assert stage.release.timers[""] == Timestamp(micros=at(10))
    root = record("s", topics=A)
    out = stage.send("s", ("info", info_of(root), at(20), root), at(9.5))
    # The root passes through; the waiting repost leaves with the INFO's stamp.
    assert outputs(out) == [("s", None, (), at(9.5)), ("r", None, A, at(9.5))]
    assert stage.waiting.items == [] and stage.slot_now().release_us is None
    # A copy's INFO changes nothing; a later repost is answered at once.
    assert stage.send("s", ("info", ChainInfo(None, B), at(20), None), at(12)) == []
    later = record("r2", "s", release_hour=13, stamp_hour=12)
    assert outputs(stage.send("s", ("ask", later), at(12))) == [("r2", None, A, at(12))]
    # Asked under a stamp at or past the INFO's forget time: not answered.
    beyond = record("r3", "s", release_hour=22, stamp_hour=20)
    assert stage.send("s", ("ask", beyond), at(20)) == []


def test_a_source_read_after_the_reposts_window_closed_credits_nothing():
    """Whichever reaches the key first: the outcome is decided on stamps."""
    root = record("s", topics=A)
    waited = Stage()
    waited.send("s", ("ask", record("r", "s", release_hour=10)), at(8))
    out = waited.send("s", ("info", info_of(root), at(20), None), at(10.5))
    assert outputs(out) == [("r", "s", (), at(10))]
    assert out[0].value.expired and waited.waiting.items == []
    answered_first = Stage()
    answered_first.send("s", ("info", info_of(root), at(20), None), at(10.5))
    out = answered_first.send("s", ("ask", record("r", "s", release_hour=10)), at(8))
    assert outputs(out) == [("r", "s", (), at(8))]


def test_a_repost_whose_source_does_not_come_is_released_at_its_release_time():
    stage = Stage()
    first = record("r1", "s", release_hour=10)
    second = record("r2", "s", release_hour=9)
    stage.send("s", ("ask", first), at(8))
    stage.send("s", ("ask", second), at(8))
    assert stage.release.timers[""] == Timestamp(micros=at(9))
    out = stage.fire_release()
    assert outputs(out) == [("r2", "s", (), at(9))]
    assert out[0].value.expired
    assert stage.release.timers[""] == Timestamp(micros=at(10))
    assert outputs(stage.fire_release()) == [("r1", "s", (), at(10))]
    # State cleared by the timers.
    assert stage.waiting.items == [] and stage.slot_now().release_us is None


def test_a_sources_info_is_forgotten_at_the_horizon():
    stage = Stage()
    root = record("s", topics=A)
    stage.send("s", ("info", info_of(root), at(100), root), at(8))
    assert stage.forget.timers[""] == Timestamp(micros=at(100))
    stage.fire_forget()
    assert stage.slot_now().held is None and stage.slot.read() is None
    # A repost read after that waits (and, its source never read again, is released
    # with its own topics).
    assert stage.send("s", ("ask", record("r", "s", release_hour=102)), at(101)) == []


def test_an_expired_repost_does_not_wait():
    stage = Stage()
    late = record("r", "s", release_hour=10, stamp_hour=11)
    assert outputs(stage.send("s", ("ask", late), at(11))) == [("r", "s", (), at(11))]
    assert stage.waiting.items == []


# --- On Prism -------------------------------------------------------------------


def post(post_id, hour, text="#x#", repost_of=None, author=1) -> Post:
    return Post(post_id, author, at(hour), text, repost_of, None)


def read_at(watermark_hour: float, *posts: Post) -> list[TimestampedValue]:
    return [
        TimestampedValue(item, Timestamp(micros=at(watermark_hour))) for item in posts
    ]


class RecordFn(beam.DoFn):
    def __init__(self, path: str, late: bool):
        self._path, self._late = path, late

    def process(self, element, pane=beam.DoFn.PaneInfoParam):
        if self._late == "window":
            start_us, _, tables = element
            row = [
                "window",
                [(start_us - DAY_US) / HOUR_US, pane.index]
                + [tables["volume"].to_pylist()[0]["posts"]],
            ]
        elif self._late:
            row = ["late", (element[0] - DAY_US) / HOUR_US]
        else:
            row = [
                element.summary.id,
                sorted(topic for _, topic in element.summary.topics),
            ]
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def run_credited(prism, tmp_path, events, lateness_hours, horizon_hours, stages=5):
    """The events through crediting and the late split: {id: topics} counted in
    their windows, the late posts' window start hours, and {window start hour:
    posts} of each window's latest pane."""
    path = tmp_path / "out.jsonl"
    window_fn = window.FixedWindows(3600)
    with beam.Pipeline(options=streaming_options(prism)) as pipeline:
        credited = (
            pipeline
            | events
            | CreditRepostsInStream(
                window_fn,
                lateness_hours * 3600,
                horizon_hours * 3600,
                ("hashtag",),
                stages=stages,
            )
        )
        split = credited | SplitLatePosts(window_fn, lateness_hours * 3600)
        split["posts"] | "RecordPosts" >> beam.ParDo(RecordFn(str(path), False))
        split[LATE_POSTS] | "RecordLate" >> beam.ParDo(RecordFn(str(path), True))
        (
            split["posts"]
            | beam.Map(with_event_time)
            | AggregateWindows(
                window_fn,
                windowing=streaming_windowing(lateness_hours * 3600, 0),
            )
            | "RecordWindows" >> beam.ParDo(RecordFn(str(path), "window"))
        )
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    counted, panes = {}, {}
    for key, value in rows:
        if key == "window":
            panes[value[0]] = max(panes.get(value[0], value[1:]), value[1:])
        elif key != "late":
            counted.setdefault(key, []).append(value)
    late = sorted(value for key, value in rows if key == "late")
    return counted, late, {start: posts for start, (_, posts) in panes.items()}


@pytest.mark.streaming
def test_chains_sources_read_late_and_the_horizon_on_prism(prism, tmp_path):
    """One hour windows, 2 h lateness, a 10 h horizon.

    s (#a#) is read first; r1 reposts it, r2 reposts r1, r3 reposts r2 (#c#): all
    credited with a. q1 reposts t, which comes at 10:00, within q1's lateness (its
    window 8-9 closes at 11:00): credited. u1 reposts v, which comes at 11:30, after
    u1's window closed: u1 counts with its own topics, v counts (in its own window).
    w1 reposts s at 20:00, beyond the 10 h horizon of s (window end 9:00 + 10 h):
    own topics. A redelivered r1 is credited alike. m1 reposts itself; c1 and c2
    repost each other: they terminate with their own topics.
    """
    events = (
        TestStream()
        .advance_watermark_to(Timestamp(micros=at(8)))
        .add_elements(
            read_at(
                8,
                post("s", 8.1, "#a#"),
                post("r1", 8.2, "转发", "s"),
                post("q1", 8.3, "转发", "t"),
                post("u1", 8.4, "转发", "v"),
                post("m1", 8.5, "#m#", "m1"),
                post("c1", 8.5, "#c1#", "c2"),
                post("c2", 8.5, "#c2#", "c1"),
            )
        )
        .advance_watermark_to(Timestamp(micros=at(9)))
        .add_elements(
            read_at(
                9,
                post("r2", 9.1, "转发", "r1"),
                post("r3", 9.2, "#c#", "r2"),
                post("r1", 8.2, "转发", "s"),
            )
        )
        .advance_watermark_to(Timestamp(micros=at(10)))
        .add_elements(read_at(10, post("t", 8.0, "#t#")))
        .advance_watermark_to(Timestamp(micros=at(11.5)))
        .add_elements(read_at(11.5, post("v", 11.4, "#v#")))
        .advance_watermark_to(Timestamp(micros=at(20)))
        .add_elements(read_at(20, post("w1", 19.9, "#w#", "s")))
        .advance_watermark_to_infinity()
    )
    counted, late, windows = run_credited(prism, tmp_path, events, 2, 10)
    # Every post counted in its window, reposts released late (u1) included.
    assert windows == {8.0: 8, 9.0: 2, 11.0: 1, 19.0: 1}, windows
    assert counted == {
        "s": [["a"]],
        "r1": [["a"], ["a"]],
        "r2": [["a"]],
        "r3": [["a", "c"]],
        "q1": [["t"]],
        "t": [["t"]],
        "u1": [[]],
        "v": [["v"]],
        "w1": [["w"]],
        "m1": [["m"]],
        "c1": [["c1"]],
        "c2": [["c2"]],
    }, counted
    assert late == []


@pytest.mark.streaming
def test_a_repost_read_beyond_the_lateness_is_counted_late(prism, tmp_path):
    events = (
        TestStream()
        .advance_watermark_to(Timestamp(micros=at(8)))
        .add_elements(read_at(8, post("s", 8.1, "#a#")))
        .advance_watermark_to(Timestamp(micros=at(12)))
        .add_elements(read_at(12, post("r", 8.2, "转发", "s")))
        .advance_watermark_to_infinity()
    )
    counted, late, windows = run_credited(prism, tmp_path, events, 2, 10)
    assert counted == {"s": [["a"]]}
    assert windows == {8.0: 1}
    assert late == [8.0]


@pytest.mark.streaming
@pytest.mark.slow
@needs_shared(CASCADES)
def test_a_replay_of_real_cascades_credits_as_batch_does(tmp_path):
    """A slice of the real cascades replayed in time order through the streaming
    pipeline: the same topics (reposts credited with their roots') and volume as
    batch (``benchmarks/streaming_vs_batch.py`` on the slice)."""
    sys.path.insert(0, str(PROJECT / "benchmarks"))
    import streaming_vs_batch

    with gzip.open(CASCADES, "rt", encoding="utf-8") as handle:
        lines = [line for _, line in zip(range(3_000), handle, strict=False)]
    assert sum('"repost_of"' in line for line in lines) > 1_000
    source = tmp_path / "cascades.jsonl"
    source.write_text("".join(lines), encoding="utf-8")
    result_path = tmp_path / "result.json"
    status = streaming_vs_batch.main(
        [
            "--input",
            str(source),
            "--topic-kinds",
            "hashtag,mention",
            "--repost-horizon",
            "3650d",
            "--early-results-every",
            "5s",
            "--batch-lines",
            "500",
            "--timeout",
            "600",
            "--json-out",
            str(result_path),
        ]
    )
    result = json.loads(result_path.read_text())
    assert result["tables"]["topics"]["verdict"] == "equal", result
    assert result["tables"]["volume"]["verdict"] == "equal", result
    assert status == 0, result


@pytest.mark.parametrize("credit", [True, False])
def test_a_streaming_runs_record_says_whether_it_credits(credit):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.volume import run_manifest

    flag = "--credit-reposts" if credit else "--no-credit-reposts"
    options = PipelineOptions(["--streaming", "--landing", "in", flag])
    assert run_manifest(options, "run", "streaming")["credit_reposts"] is credit
