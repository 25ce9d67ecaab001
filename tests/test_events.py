"""Events: bursting topics carried by the same posts or people are one event, with
its timeline and representative posts (``transforms.event_model``,
``transforms.events``)."""

import datetime
import gzip
import json
import random

import datasketches
import numpy as np
import polars as pl
import pytest

from schemas.records import EventMember
from schemas.sketch import estimate, merged_estimate, new_sketch
from tests.conftest import read_table, run_volume
from transforms.carriers import top_carriers
from transforms.event_model import (
    EventAssembler,
    EventParams,
    assemble_events,
    assemble_events_by_window,
    group_members,
    shared_people,
)

HOUR_US = 3_600_000_000
T0 = 1_700_000_000 * 1_000_000
PARAMS = EventParams(min_participants=1)


def _sketch(authors) -> bytes:
    sketch = new_sketch()
    for author in authors:
        sketch.update(author)
    return sketch.serialize_compact()


def _member(kind, topic, hour, authors, carriers=(), posts=None) -> EventMember:
    authors = list(authors)
    sketch = _sketch(authors)
    return EventMember(
        kind,
        topic,
        T0 + hour * HOUR_US,
        T0 + (hour + 1) * HOUR_US,
        posts or len(authors),
        0,
        estimate(datasketches.hll_sketch.deserialize(sketch)),
        sketch,
        tuple(carriers),
    )


def _groups(members):
    return [
        {(members[i].kind, members[i].topic, members[i].start_us) for i in group}
        for group in group_members(members, HOUR_US, PARAMS)
    ]


def test_top_carriers_keeps_the_most_carrying_posts_per_topic():
    codes = np.array([0, 0, 0, 0, 1, 1, 1])
    carriers = np.array([9, 9, 9, 4, 4, 5, 6])
    reposts = np.array([1, 1, 0, 0, 0, 1, 1])
    code, carrier, posts, repost_counts = top_carriers(
        codes, carriers, reposts, per_topic=2
    )
    assert code.tolist() == [0, 0, 1, 1]
    assert carrier.tolist() == [9, 4, 4, 5]  # ties go to the smaller key
    assert posts.tolist() == [3, 1, 1, 1]
    assert repost_counts.tolist() == [2, 0, 0, 1]


def test_events_sharing_no_posts_or_people_stay_apart():
    first = _member("hashtag", "山城暴雨", 30, range(0, 60), [(1, 60, 59)])
    second = _member("hashtag", "高铁晚点", 30, range(1000, 1060), [(2, 60, 59)])
    assert len(_groups([first, second])) == 2


def test_topics_carried_by_one_post_are_one_event_across_windows():
    members = [
        _member("hashtag", "山城暴雨", 30, range(0, 60), [(1, 55, 54)]),
        # Another topic of the same source post, an hour later: other people.
        _member("entity", "重庆", 31, range(500, 560), [(1, 40, 40), (7, 5, 5)]),
    ]
    assert len(_groups(members)) == 1


def test_a_carrier_reposted_again_much_later_starts_a_new_event():
    members = [
        _member("hashtag", "山城暴雨", 30, range(0, 60), [(1, 55, 54)]),
        _member("entity", "重庆", 31, range(500, 560), [(1, 40, 40)]),
        # The same post spreading again a month later: another happening.
        _member("entity", "山城", 30 + 24 * 30, range(900, 960), [(1, 50, 49)]),
    ]
    assert len(_groups(members)) == 2


def test_a_minor_carrier_does_not_join_events():
    members = [
        _member("hashtag", "山城暴雨", 30, range(0, 100), [(1, 90, 89), (3, 2, 2)]),
        _member("hashtag", "高铁晚点", 30, range(1000, 1100), [(2, 90, 89), (3, 2, 2)]),
    ]
    assert len(_groups(members)) == 2


def test_one_event_spread_by_two_source_posts_is_one_event():
    members = [
        _member("hashtag", "法院致歉", 30, range(0, 80), [(1, 40, 39), (2, 40, 39)]),
        _member("keyword", "致歉", 30, range(0, 70), [(1, 35, 34), (2, 35, 34)]),
        _member("hashtag", "法院致歉", 31, range(80, 120), [(2, 40, 39)]),
    ]
    (event,) = assemble_events(members, HOUR_US, PARAMS)
    assert {key for key, _, _ in event.carriers} == {1, 2}
    assert event.label == "法院致歉" and event.label_kind == "hashtag"


def test_a_hashtag_and_the_same_words_as_a_keyword_are_one_event():
    members = [
        _member("hashtag", "雅安地震", 30, range(0, 60)),
        _member("keyword", "雅安地震", 31, range(200, 260)),
        _member("hashtag", "雅安地震", 40, range(300, 360)),  # much later: another
    ]
    groups = _groups(members)
    assert len(groups) == 2
    assert {("keyword", "雅安地震", T0 + 31 * HOUR_US)} < groups[0]


def test_topics_of_the_same_people_in_one_window_are_one_event():
    people = range(0, 80)
    members = [
        _member("hashtag", "雅安地震", 30, people),
        _member("entity", "雅安", 30, list(people)[10:]),
        _member("hashtag", "随手拍", 30, range(5000, 5080)),
    ]
    assert shared_people(members[0], members[1]) == 70
    groups = _groups(members)
    assert {len(group) for group in groups} == {2, 1}


def test_event_participants_are_the_union_not_the_sum():
    members = [
        _member("hashtag", "雅安地震", 30, range(0, 100)),
        _member("keyword", "雅安地震", 30, range(50, 150)),
        _member("hashtag", "雅安地震", 31, range(100, 200)),
    ]
    (event,) = assemble_events(members, HOUR_US, PARAMS)
    assert event.participants == 200
    assert event.participants == merged_estimate(member.sketch for member in members)
    assert [window.participants for window in event.windows] == [150, 100]
    assert event.peak_start_us == T0 + 30 * HOUR_US
    assert event.topics[0] == ("hashtag", "雅安地震", 200)


def test_small_events_are_not_published():
    members = [_member("hashtag", "小事", 30, range(0, 20))]
    assert assemble_events(members, HOUR_US, EventParams(min_participants=30)) == []
    assert len(assemble_events(members, HOUR_US, EventParams(min_participants=20)))


def test_event_ids_do_not_depend_on_the_order_members_arrive():
    members = [
        _member("hashtag", "雅安地震", 30, range(0, 60), [(1, 50, 49)]),
        _member("entity", "雅安", 31, range(100, 160), [(1, 50, 49)]),
        _member("hashtag", "高铁晚点", 35, range(900, 960)),
    ]
    forward = assemble_events(members, HOUR_US, PARAMS)
    backward = assemble_events(members[::-1], HOUR_US, PARAMS)
    assert [e.event_id for e in forward] == [e.event_id for e in backward]
    assert len({e.event_id for e in forward}) == 2


def _random_members(seed: int) -> list[EventMember]:
    """Members over 120 hours: a few words, carriers and circles of people, so that
    links by words, by carrier and by people all occur, near and far apart."""
    rng = random.Random(seed)
    words = ["雅安地震", "法院致歉", "高铁晚点", "气象局", "暴雨"]
    members = []
    for _ in range(rng.randint(1, 40)):
        circle = rng.randrange(6)
        authors = range(circle * 40, circle * 40 + rng.randint(5, 60))
        carriers = (
            [(rng.randrange(5), rng.randint(1, 50), 0)] if rng.random() < 0.5 else []
        )
        members.append(
            _member(
                rng.choice(["hashtag", "keyword", "entity"]),
                rng.choice(words),
                rng.randrange(120),
                authors,
                carriers,
            )
        )
    # One member per (kind, topic, window), as the pipeline gives.
    unique = {(m.kind, m.topic, m.start_us): m for m in members}
    return list(unique.values())


@pytest.mark.parametrize("seed", range(40))
def test_assembling_window_by_window_gives_the_events_of_all_members_at_once(seed):
    """Events closed as windows come (``EventAssembler``, as a stream closes them)
    equal the events of all members grouped at once."""
    members = _random_members(seed)
    params = EventParams(min_participants=20)
    assert assemble_events_by_window(members, HOUR_US, params) == assemble_events(
        members, HOUR_US, params
    )


def test_an_event_closes_once_no_later_member_can_join_it():
    assembler = EventAssembler(HOUR_US, PARAMS)
    assembler.add([_member("hashtag", "雅安地震", 30, range(0, 40), [(1, 40, 39)])])
    # Its carrier may join a member 24 windows on, or that member's support window.
    assert assembler.close_before(T0 + (30 + 25) * HOUR_US) == []
    assembler.add([_member("entity", "雅安", 54, range(100, 140), [(1, 40, 39)])])
    assert assembler.close_before(T0 + (54 + 25) * HOUR_US) == []
    (event,) = assembler.close_before(T0 + (54 + 26) * HOUR_US)
    assert {topic for _, topic, _ in event.topics} == {"雅安地震", "雅安"}
    assert assembler.close_all() == []


# A run of the pipeline over posts built for the purpose.

PHONE, EMAIL, ID_NUMBER = "13912345678", "li.si@example.com", "11010519491231002X"
START = datetime.datetime(2026, 5, 1, tzinfo=datetime.UTC)


def _line(post_id, user, hour, text, repost_of=None, minute=0) -> str:
    created = START + datetime.timedelta(hours=hour, minutes=minute)
    record = {
        "id": str(post_id),
        "user_id": f"u{user}",
        "created_at": created.isoformat(),
        "text": text,
    }
    if repost_of is not None:
        record["repost_of"] = str(repost_of)
    return json.dumps(record, ensure_ascii=False)


def _event_lines() -> list[str]:
    """Two days of quiet background, then at hour 30 two unrelated surges, each
    carried by reposts of one source post, and at hour 34 one surge spread by two
    source posts."""
    rng = random.Random(5)
    background = [f"日常{n}" for n in range(30)]
    lines, next_id = [], 10_000
    for hour in range(40):
        for _ in range(40):
            next_id += 1
            tag = rng.choice(background)
            lines.append(
                _line(next_id, rng.randrange(300), hour, f"#{tag}# 今天天气", None, 5)
            )
    surges = [
        (1, 30, f"#山城暴雨# 暴雨 联系电话{PHONE} 邮箱{EMAIL}", range(1000, 1080)),
        (2, 30, f"#高铁晚点# 列车 身份证{ID_NUMBER}", range(2000, 2080)),
        (3, 34, "#法院致歉# 判决书写错", range(3000, 3050)),
        (4, 34, "#法院致歉# 法院道歉声明", range(3050, 3100)),
    ]
    for source, hour, text, people in surges:
        lines.append(_line(source, 9_000 + source, hour, text, None, 1))
        for person in people:
            next_id += 1
            lines.append(_line(next_id, person, hour, "转发微博", source, 20))
    return lines


@pytest.fixture(scope="module")
def event_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("events")
    path = folder / "posts.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(_event_lines()) + "\n")
    out = folder / "out"
    result = run_volume(
        ["--input", str(path), "--output", str(out), "--topic-kinds", "hashtag"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_pipeline_writes_one_event_per_surge(event_run):
    events = read_table(event_run, "events").sort("onset", "label")
    assert events["label"].to_list() == ["山城暴雨", "高铁晚点", "法院致歉"]
    tops = [posts[0]["id"] for posts in events["representative_posts"].to_list()]
    assert tops == ["1", "2", tops[2]] and tops[2] in ("3", "4")
    two_sources = events.row(2, named=True)["representative_posts"]
    assert {post["id"] for post in two_sources} == {"3", "4"}
    assert all(post["reposts"] == 50 for post in two_sources)
    assert events["participants"].to_list() == [81, 81, 102]


def test_run_summary_lists_the_events_most_people_first(event_run):
    """The summary ``run_local.sh`` prints names each event once, with its people
    and what its first representative post says."""
    from reports.summary import summary_text

    text = summary_text(str(event_run))
    lines = text.splitlines()
    start = lines.index("Events: 3, most people first:")
    rows = lines[start + 3 : start + 6]
    assert [row.split("|")[1].strip() for row in rows] == [
        "法院致歉",
        "山城暴雨",
        "高铁晚点",
    ]
    assert [row.split("|")[3].strip() for row in rows] == ["102", "81", "81"]
    assert all(row.split("|")[5].strip() for row in rows)


def test_run_summary_says_when_there_are_no_events(tmp_path):
    from reports.summary import summary_text
    from tests.test_reports_fixture import write_known_output

    text = summary_text(str(write_known_output(tmp_path / "known")))
    assert "Events: none" in text


def test_event_windows_are_the_events_timeline(event_run):
    events = read_table(event_run, "events")
    windows = read_table(event_run, "event_windows")
    assert set(windows["event_id"]) == set(events["event_id"])
    joined = (
        windows.group_by("event_id")
        .agg(pl.len().alias("n"))
        .join(events.select("event_id", "windows"), on="event_id")
    )
    assert (joined["n"] == joined["windows"]).all()


def test_event_participants_equal_the_merged_sketch_of_its_topic_windows(event_run):
    events = read_table(event_run, "events")
    topics = read_table(event_run, "topics")
    bursts = read_table(event_run, "bursts").select("kind", "topic", "window_start")
    members = topics.join(bursts, on=["kind", "topic", "window_start"])
    for event in events.iter_rows(named=True):
        names = {(t["kind"], t["topic"]) for t in event["topics"]}
        sketches = [
            row["participants_sketch"]
            for row in members.iter_rows(named=True)
            if (row["kind"], row["topic"]) in names
        ]
        assert merged_estimate(sketches) == event["participants"]


def test_representative_posts_hold_no_personal_information_and_no_author(event_run):
    events = read_table(event_run, "events")
    everything = json.dumps(events.drop("participants_sketch").to_dicts(), default=str)
    for planted in (PHONE, EMAIL, ID_NUMBER, "u9001", "u1000"):
        assert planted not in everything
    fields = events.schema["representative_posts"].inner.fields
    assert {field.name for field in fields} == {"id", "created_at", "text", "reposts"}
    texts = [p["text"] for posts in events["representative_posts"] for p in posts]
    assert any("暴雨" in text for text in texts)


def test_event_ids_are_stable_across_reruns(event_run, tmp_path):
    path = next(event_run.parent.glob("posts.jsonl.gz"))
    out = tmp_path / "again"
    result = run_volume(
        ["--input", str(path), "--output", str(out), "--topic-kinds", "hashtag"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first = read_table(event_run, "events").sort("event_id")
    second = read_table(out, "events").sort("event_id")
    assert first["event_id"].to_list() == second["event_id"].to_list()


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "html"])
def test_events_report_lists_each_event_once_in_every_format(event_run, fmt):
    import contextlib
    import io

    from reports.__main__ import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["events", "--output", str(event_run), "--format", fmt]) == 0
    text = buffer.getvalue()
    for label in ("山城暴雨", "高铁晚点", "法院致歉"):
        assert text.count(label) >= 1
    assert PHONE not in text and EMAIL not in text
    if fmt == "csv":
        rows = pl.read_csv(io.StringIO(text))
        assert rows["label"].to_list()[0] == "法院致歉"  # most people first
        assert rows.height == 3
    if fmt == "html":
        assert "<img" in text  # the events' timelines


def test_hot_report_leads_with_the_events(event_run):
    from reports import commands
    from reports.periods import Period

    # Hours 30 and 34 of the stream fall on its second local day.
    day = (START + datetime.timedelta(hours=30)).date()
    report = commands.hot_report(str(event_run), Period.day(day))
    leading = [section for section in report.sections if section.leads]
    assert [section.heading for section in leading] == ["Events (most people first)"]
    assert set(leading[0].frame["label"]) == {"山城暴雨", "高铁晚点", "法院致歉"}


def test_min_event_participants_below_one_is_a_usage_error(event_run, tmp_path):
    path = next(event_run.parent.glob("posts.jsonl.gz"))
    result = run_volume(
        ["--input", str(path), "--output", str(tmp_path / "out")]
        + ["--min-event-participants", "0"]
    )
    assert result.returncode == 2
    assert "--min-event-participants must be 1 or more" in result.stderr


def test_run_manifest_records_the_event_settings(event_run):
    manifest = json.loads((event_run / "_run.json").read_text())
    assert manifest["events"]["min_participants"] == 30
    assert manifest["events"]["written"] is True
