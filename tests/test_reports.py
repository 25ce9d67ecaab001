"""Report queries on a small output folder whose every figure is known
(``tests/test_reports_fixture.py`` lists its posts), with exact expected rows."""

import datetime
import random

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from reports import queries
from reports.periods import Period
from reports.queries import (
    burst_episodes,
    bursts,
    daily_volume,
    hot_topics,
    latest_day,
    summed_participants,
    timezone_mismatches,
    topic_timeline,
    volume_timeline,
    volume_totals,
)
from reports.summary import summary_text
from schemas.tables import TABLES
from schemas.topics import normalize_typed_topic
from tests.test_reports_fixture import (
    EPISODE_COLUMNS,
    HOURLY_AUTHORS,
    HOURLY_TAG,
    SAMPLE_DAYS,
    Post,
    aggregate,
    at,
    pipeline_sample,
    write_known_output,
)

TZ = "Asia/Shanghai"
DAY = Period.day(datetime.date(2026, 11, 22))
WEEK = Period.week(datetime.date(2026, 11, 22))


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return str(write_known_output(tmp_path_factory.mktemp("known")))


def local(frame: pl.DataFrame) -> pl.DataFrame:
    """Expected frames are written in UTC; reports return the period's timezone."""
    return frame.with_columns(
        pl.col(name).dt.convert_time_zone(TZ)
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime)
    )


def expected_hot(rows: list[tuple]) -> pl.DataFrame:
    return local(pl.DataFrame(rows, schema=queries.HOT_TOPICS_SCHEMA, orient="row"))


# --- periods -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "start", "end", "previous_first_day"),
    [
        (
            Period.day(datetime.date(2026, 11, 22)),
            "2026-11-21T16:00:00+00:00",
            "2026-11-22T16:00:00+00:00",
            datetime.date(2026, 11, 21),
        ),
        (
            Period.week(datetime.date(2026, 11, 22)),
            "2026-11-15T16:00:00+00:00",
            "2026-11-22T16:00:00+00:00",
            datetime.date(2026, 11, 9),
        ),
        (
            Period.week(datetime.date(2026, 11, 16)),
            "2026-11-15T16:00:00+00:00",
            "2026-11-22T16:00:00+00:00",
            datetime.date(2026, 11, 9),
        ),
        # The day Berlin leaves summer time has 25 hours.
        (
            Period.day(datetime.date(2026, 10, 25), "Europe/Berlin"),
            "2026-10-24T22:00:00+00:00",
            "2026-10-25T23:00:00+00:00",
            datetime.date(2026, 10, 24),
        ),
    ],
    ids=["shanghai-day", "week-from-sunday", "week-from-monday", "berlin-25-hour-day"],
)
def test_period_bounds(period, start, end, previous_first_day):
    assert period.start.isoformat() == start
    assert period.end.isoformat() == end
    assert period.previous().first_day == previous_first_day
    assert period.previous().days == period.days


def test_period_rejects_unknown_timezone():
    with pytest.raises(Exception, match="Mars"):
        Period.day(datetime.date(2026, 11, 22), "Mars/Olympus")


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("雅安地震", "雅安地震"),
        ("#雅安地震#", "雅安地震"),
        ("＃雅安地震＃", "雅安地震"),
        ("@人民日报", "人民日报"),
        ("#Beam", "beam"),
        ("  ＢＥＡＭ ", "beam"),
    ],
    ids=[
        "plain",
        "paired-marks",
        "full-width-marks",
        "mention",
        "latin-tag",
        "full-width-latin",
    ],
)
def test_normalize_typed_topic(typed, stored):
    assert normalize_typed_topic(typed) == stored


# --- hot topics ---------------------------------------------------------------

# The kinds column: a topic ranked over all kinds is listed once, with its kinds.
H, M, HK = "hashtag", "mention", "hashtag, keyword"


def test_hot_topics_of_a_day(known):
    got = hot_topics(known, DAY, limit=10)
    expected = expected_hot(
        [
            (1, "hashtag", "法院致歉", 40, 40, 20, 1, at(22, 20), 0, 0, None, H),
            (2, "hashtag", "雅安地震", 30, 360, 120, 12, at(22, 8), 10, 10, 2.0, HK),
            (3, "keyword", "消息", 30, 30, 0, 1, at(22, 12), 0, 0, None, "keyword"),
            (4, "mention", "人民日报", 10, 10, 0, 2, at(22, 9), 20, 20, -0.5, M),
            (5, "hashtag", "深夜食堂", 5, 5, 0, 1, at(22, 0), 3, 3, 5 / 3 - 1, H),
        ]
    )
    assert_frame_equal(got, expected)


def test_hot_topics_of_a_week(known):
    got = hot_topics(known, WEEK, limit=10)
    expected = expected_hot(
        [
            (1, "hashtag", "法院致歉", 40, 40, 20, 1, at(22, 20), 0, 0, None, H),
            (2, "hashtag", "雅安地震", 30, 370, 120, 13, at(22, 8), 5, 5, 5.0, HK),
            (3, "keyword", "消息", 30, 30, 0, 1, at(22, 12), 0, 0, None, "keyword"),
            (4, "mention", "人民日报", 20, 30, 0, 3, at(21, 15), 0, 0, None, M),
            (5, "hashtag", "深夜食堂", 8, 8, 0, 2, at(22, 0), 0, 0, None, H),
        ]
    )
    assert_frame_equal(got, expected)


def test_summing_hourly_participants_overcounts_people_who_post_every_hour(known):
    """a0..a29 post #雅安地震# in each of 12 hours: 30 people, not 360."""
    assert summed_participants(known, "雅安地震", "hashtag", DAY) == 360
    hot = hot_topics(known, DAY, kinds=("hashtag",))
    assert hot.filter(pl.col("topic") == "雅安地震")["participants"].item() == 30
    # Summing would also rank it above #法院致歉#, which really drew more people.
    assert hot["topic"].to_list()[:2] == ["法院致歉", "雅安地震"]


def test_hot_topics_filters_kinds_and_limits(known):
    got = hot_topics(known, DAY, kinds=("mention", "keyword"), limit=2)
    assert got.select("rank", "kind", "topic", "participants").rows() == [
        (1, "keyword", "消息", 30),
        (2, "mention", "人民日报", 10),
    ]


def test_hot_topics_growth_is_unknown_where_the_folder_has_no_previous_period(known):
    got = hot_topics(known, Period.day(datetime.date(2026, 11, 10)))
    assert got.select(
        "topic", "participants", "previous_participants", "growth"
    ).rows() == [("雅安地震", 5, None, None)]


def test_hot_topics_of_the_whole_folder_has_no_previous(known):
    got = hot_topics(known, None, kinds=("hashtag",))
    assert got.select(
        "topic", "participants", "posts", "previous_participants"
    ).rows() == [
        ("法院致歉", 40, 40, None),
        ("雅安地震", 30, 375, None),
        ("深夜食堂", 8, 8, None),
    ]


def _random_topics_folder(root):
    """200 topics with overlapping audiences and uneven activity, over a day."""
    rng = random.Random(3)
    posts = []
    for number in range(200):
        audience = [f"p{rng.randrange(400)}" for _ in range(rng.randint(1, 60))]
        hours = rng.sample(range(24), rng.randint(1, 12))
        for hour in hours:
            for author in rng.sample(audience, rng.randint(1, len(audience))):
                posts.append(Post(at(22, hour), author, (("hashtag", f"t{number}"),)))
    volume, topics = aggregate(posts)
    from tests.test_reports_fixture import _local_date, _write

    _write(root, "volume", volume, _local_date("window_start"))
    _write(root, "topics", topics, _local_date("window_start"))
    return str(root)


def test_top_k_prunes_merges_yet_equals_the_full_ranking(tmp_path, monkeypatch):
    output = _random_topics_folder(tmp_path)
    full = hot_topics(output, DAY, limit=None)
    assert full.height == 200
    merges = []
    real = queries.merged_estimate
    monkeypatch.setattr(
        queries,
        "merged_estimate",
        lambda blobs, lg_k: merges.append(1) or real(blobs, lg_k),
    )
    for limit in (1, 5, 20):
        merges.clear()
        top = hot_topics(output, DAY, limit=limit)
        assert_frame_equal(top, full.head(limit))
        assert len(merges) < 200  # candidates below the k-th best were never merged


# --- timeline -----------------------------------------------------------------


def _timeline_row(
    hour,
    posts,
    people,
    reposts,
    expected=None,
    score=None,
    day=22,
    kind="hashtag",
    topic="雅安地震",
):
    return (
        at(day, hour),
        at(day, hour) + datetime.timedelta(hours=1),
        kind,
        topic,
        posts,
        people,
        reposts,
        score is not None,
        expected,
        score,
    )


def test_topic_timeline_of_a_day(known):
    got = topic_timeline(known, "#雅安地震#", period=DAY)
    rows = [_timeline_row(0, 0, 0, 0)]
    rows += [
        _timeline_row(8, 30, 30, 10, 2.0, 8.0),
        _timeline_row(9, 30, 30, 10, 2.5, 6.5),
    ]
    rows += [_timeline_row(hour, 30, 30, 10) for hour in range(10, 20)]
    rows += [_timeline_row(20, 0, 0, 0)]
    expected = local(pl.DataFrame(rows, schema=queries.TIMELINE_SCHEMA, orient="row"))
    assert_frame_equal(got, expected)


def test_topic_timeline_picks_the_kind_with_most_posts_unless_told(known):
    assert set(topic_timeline(known, "雅安地震", period=DAY)["kind"]) == {"hashtag"}
    keyword = topic_timeline(known, "雅安地震", kind="keyword", period=DAY)
    assert keyword.filter(pl.col("posts") > 0).select(
        "window_start", "posts", "participants"
    ).rows() == [(at(22, 12).astimezone(keyword["window_start"][0].tzinfo), 3, 3)]


def test_topic_timeline_of_an_unknown_topic_is_empty(known):
    got = topic_timeline(known, "不存在", period=DAY)
    assert got.is_empty()
    assert list(got.schema) == list(queries.TIMELINE_SCHEMA)
    assert queries.similar_topics(known, "雅安").rows() == [
        ("hashtag", "雅安地震", 375),
        ("keyword", "雅安地震", 3),
    ]


# --- bursts -------------------------------------------------------------------


def test_burst_episodes_of_a_day_include_one_that_crossed_midnight(known):
    got = burst_episodes(known, DAY)
    expected = local(
        pl.DataFrame(
            [
                (
                    "hashtag",
                    "法院致歉",
                    at(22, 20),
                    at(22, 20),
                    at(22, 21),
                    1,
                    40,
                    12.0,
                    40,
                ),
                (
                    "hashtag",
                    "雅安地震",
                    at(22, 8),
                    at(22, 8),
                    at(22, 10),
                    2,
                    30,
                    8.0,
                    60,
                ),
                ("hashtag", "深夜食堂", at(21, 23), at(22, 0), at(22, 1), 2, 5, 4.0, 8),
            ],
            schema=dict(
                zip(
                    EPISODE_COLUMNS,
                    [
                        pl.String,
                        pl.String,
                        *[pl.Datetime("us", "UTC")] * 3,
                        pl.Int64,
                        pl.Int64,
                        pl.Float64,
                        pl.Int64,
                    ],
                    strict=True,
                )
            ),
            orient="row",
        )
    )
    assert_frame_equal(got, expected)
    assert burst_episodes(known, Period.day(datetime.date(2026, 11, 21)))[
        "topic"
    ].to_list() == ["深夜食堂"]
    assert burst_episodes(known)["topic"].to_list() == [
        "旧闻",
        "法院致歉",
        "雅安地震",
        "深夜食堂",
    ]
    assert burst_episodes(known, DAY, kinds=("mention",)).is_empty()


def test_bursting_windows_of_a_day(known):
    got = bursts(known, period=DAY)
    assert got.select("topic", "window_start", "score").rows() == [
        ("法院致歉", at(22, 20), 12.0),
        ("雅安地震", at(22, 8), 8.0),
        ("雅安地震", at(22, 9), 6.5),
        ("深夜食堂", at(22, 0), 4.0),
    ]
    assert got.schema["window_start"] == pl.Datetime("us", TZ)


# --- volume -------------------------------------------------------------------


def test_volume_timeline_of_a_day(known):
    got = volume_timeline(known, DAY)
    rows = [
        (0, 5, 5, 0, 0),
        (8, 30, 30, 10, 0),
        (9, 35, 35, 10, 0),
        (10, 35, 35, 10, 0),
        (11, 30, 30, 10, 0),
        (12, 60, 30, 10, 0),
    ]
    rows += [(hour, 30, 30, 10, 0) for hour in range(13, 20)]
    rows += [(20, 40, 40, 20, 2)]
    expected = local(
        pl.DataFrame(
            [
                (at(22, h), at(22, h) + datetime.timedelta(hours=1), *rest)
                for h, *rest in rows
            ],
            schema={
                "window_start": pl.Datetime("us", "UTC"),
                "window_end": pl.Datetime("us", "UTC"),
                "posts": pl.Int64,
                "participants": pl.Int64,
                "reposts": pl.Int64,
                "duplicates": pl.Int64,
            },
            orient="row",
        )
    )
    assert_frame_equal(got, expected)


def test_daily_volume_merges_participants_per_local_day(known):
    got = daily_volume(known)
    expected = pl.DataFrame(
        [
            (datetime.date(2026, 11, 10), 1, 5, 0, 0, 5),
            (datetime.date(2026, 11, 21), 3, 33, 0, 0, 33),
            (datetime.date(2026, 11, 22), 14, 445, 140, 2, 85),
            (datetime.date(2026, 11, 23), 1, 2, 0, 0, 2),
        ],
        schema={
            "date": pl.Date,
            "windows": pl.UInt32,
            "posts": pl.Int64,
            "reposts": pl.Int64,
            "duplicates": pl.Int64,
            "participants": pl.Int64,
        },
        orient="row",
    )
    assert_frame_equal(got, expected)
    # Summing the 22nd's windows would claim 5+30+35+35+30+30+30*7+40 = 415 people.
    assert volume_timeline(known, DAY)["participants"].sum() == 415


def test_volume_totals_of_a_day(known):
    assert volume_totals(known, DAY) == {
        "posts": 445,
        "duplicates": 2,
        "dead_letters": 1,
        "late_posts": 0,
        "input_lines": 448,
        "participants": 85,
    }


def test_a_running_streams_windows_count_their_latest_pane_only(tmp_path):
    # A streaming run writes each pane of a window as a new file; a reader between a
    # window's early pane and its final pane must count the final one only.
    from tests.test_reports_fixture import _local_date

    window = datetime.datetime(2026, 11, 24, 10, tzinfo=datetime.UTC)
    panes = []
    for posts in (12, 40):
        volume, _ = aggregate(
            [
                Post(window + datetime.timedelta(minutes=i % 60), f"a{i % 7}", ())
                for i in range(posts)
            ]
        )
        panes.append(volume)
    folder = (
        tmp_path
        / "volume"
        / f"date={_local_date('window_start')(panes[0][0]).isoformat()}"
    )
    folder.mkdir(parents=True)
    for pane, rows in enumerate(panes):
        pq.write_table(
            pa.Table.from_pylist(rows, schema=TABLES["volume"]),
            folder / f"20261124T100000Z-pane{pane:06d}.parquet",
        )
    (tmp_path / "late_posts" / "date=2026-11-24").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "window_start": window - datetime.timedelta(hours=1),
                    "window_end": window,
                    "posts": 3,
                }
            ],
            schema=TABLES["late_posts"],
        ),
        tmp_path
        / "late_posts"
        / "date=2026-11-24"
        / "20261124T090000Z-pane000000.parquet",
    )
    totals = volume_totals(str(tmp_path))
    assert (totals["posts"], totals["participants"], totals["late_posts"]) == (40, 7, 3)
    assert totals["input_lines"] == 40 + 3


def test_latest_day_and_timezone_check(known, tmp_path):
    assert latest_day(known) == datetime.date(2026, 11, 23)
    # The 23rd ends after the folder's last window (10:00): the 22nd is the last
    # whole day.
    assert queries.latest_complete_day(known) == datetime.date(2026, 11, 22)
    assert queries.latest_complete_day(known, "UTC") == datetime.date(2026, 11, 22)
    partial = aggregate([Post(at(23, 9), "e0", ())])
    from tests.test_reports_fixture import _local_date, _write

    _write(tmp_path, "volume", partial[0], _local_date("window_start"))
    assert queries.latest_complete_day(str(tmp_path)) == datetime.date(2026, 11, 23)
    assert timezone_mismatches(known, TZ) == 0
    # Only the window at local midnight of the 22nd falls on another date in UTC.
    assert timezone_mismatches(known, "UTC") == 1


def test_reports_of_an_empty_folder_are_empty_frames_with_columns(tmp_path):
    assert hot_topics(str(tmp_path), DAY).columns == list(queries.HOT_TOPICS_SCHEMA)
    assert burst_episodes(str(tmp_path), DAY).columns == EPISODE_COLUMNS
    assert volume_timeline(str(tmp_path), DAY).is_empty()
    assert topic_timeline(str(tmp_path), "雅安地震").is_empty()
    assert latest_day(str(tmp_path)) is None
    assert queries.latest_complete_day(str(tmp_path)) is None


def test_summary_still_reads_the_folder(known):
    text = summary_text(known, top=3)
    assert (
        "Input lines 488 = 485 distinct posts + 2 redelivered duplicates "
        "+ 1 dead letters; " in text
    )
    assert "| keyword | 消息     | 30           | 30    | 0       | 1       |" in text


# --- on the pipeline's own output -------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return str(pipeline_sample(tmp_path_factory))


def test_pipeline_output_people_posting_hourly_count_once_a_day(sample):
    """HOURLY_AUTHORS people post #每小时打卡# every hour: the day's figure is theirs,
    the summed hourly figure 24 times too many."""
    for day in range(SAMPLE_DAYS):
        period = Period.day(datetime.date(2026, 11, 20 + day))
        assert (
            summed_participants(sample, HOURLY_TAG, "hashtag", period)
            == 24 * HOURLY_AUTHORS
        )
        hot = hot_topics(sample, period, kinds=("hashtag",), limit=None)
        assert (
            hot.filter(pl.col("topic") == HOURLY_TAG)["participants"].item()
            == HOURLY_AUTHORS
        )
    both_days = Period(datetime.date(2026, 11, 20), SAMPLE_DAYS)
    hot = hot_topics(sample, both_days, kinds=("hashtag",), limit=None)
    row = hot.filter(pl.col("topic") == HOURLY_TAG).row(0, named=True)
    assert (row["participants"], row["posts"], row["windows"]) == (
        HOURLY_AUTHORS,
        HOURLY_AUTHORS * 24 * SAMPLE_DAYS,
        24 * SAMPLE_DAYS,
    )
