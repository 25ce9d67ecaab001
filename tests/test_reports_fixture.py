"""Output folders for the report tests (no tests here).

``write_known_output`` writes a small folder whose every figure is known by hand:
posts are listed below, aggregated per hour window the way the pipeline does (distinct
posts, distinct authors and their HLL sketch, reposts), partitioned by local date in
Asia/Shanghai. The bursts and burst_episodes rows are given literally, with the
schemas the detector writes.

The posts (local times, 2026-11):
- #雅安地震#: a0..a29 post every hour 08:00-19:00 on the 22nd (a0..a9 repost), so
  each window has 30 participants, the day 30, and summed windows 360; a0..a9 once
  at 10:00 on the 21st; a0..a4 once at 10:00 on the 10th (the previous week).
- #法院致歉#: b0..b39 at 20:00 on the 22nd (b0..b19 repost); new that day.
- @人民日报 (mention): c0..c4 at 09:00 and c5..c9 at 10:00 on the 22nd; c0..c19 at
  15:00 on the 21st.
- 消息 (keyword): a0..a29 at 12:00 on the 22nd; those of a0..a2 also carry the
  keyword 雅安地震.
- #深夜食堂#: d0..d4 at 00:00 on the 22nd, d5..d7 at 23:00 on the 21st (the day
  boundary).
- 北京 (entity): e0, e1 at 09:00 on the 23rd.
Two redelivered duplicates were dropped in the 20:00 window of the 22nd.
"""

import dataclasses
import datetime
import json
import pathlib
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.sketch import new_sketch
from schemas.tables import TABLES

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = datetime.UTC
HOUR = datetime.timedelta(hours=1)


def at(day: int, hour: int) -> datetime.datetime:
    """2026-11-``day`` ``hour``:00 in Shanghai, as UTC."""
    return datetime.datetime(2026, 11, day, hour, tzinfo=SHANGHAI).astimezone(UTC)


@dataclasses.dataclass(frozen=True)
class Post:
    when: datetime.datetime
    author: str
    topics: tuple[tuple[str, str], ...]
    repost: bool = False


def known_posts() -> list[Post]:
    posts = []
    yaan = (("hashtag", "雅安地震"),)
    for hour in range(8, 20):
        posts += [Post(at(22, hour), f"a{i}", yaan, repost=i < 10) for i in range(30)]
    posts += [Post(at(21, 10), f"a{i}", yaan) for i in range(10)]
    posts += [Post(at(10, 10), f"a{i}", yaan) for i in range(5)]
    posts += [
        Post(at(22, 20), f"b{i}", (("hashtag", "法院致歉"),), repost=i < 20)
        for i in range(40)
    ]
    mention = (("mention", "人民日报"),)
    posts += [Post(at(22, 9), f"c{i}", mention) for i in range(5)]
    posts += [Post(at(22, 10), f"c{i}", mention) for i in range(5, 10)]
    posts += [Post(at(21, 15), f"c{i}", mention) for i in range(20)]
    posts += [
        Post(
            at(22, 12),
            f"a{i}",
            (("keyword", "消息"),) + ((("keyword", "雅安地震"),) if i < 3 else ()),
        )
        for i in range(30)
    ]
    posts += [Post(at(22, 0), f"d{i}", (("hashtag", "深夜食堂"),)) for i in range(5)]
    posts += [
        Post(at(21, 23), f"d{i}", (("hashtag", "深夜食堂"),)) for i in range(5, 8)
    ]
    posts += [Post(at(23, 9), f"e{i}", (("entity", "北京"),)) for i in range(2)]
    return posts


DUPLICATES = {at(22, 20): 2}

# What the detector flagged: (kind, topic, window_start, posts, participants,
# expected, score).
BURST_ROWS = [
    ("hashtag", "雅安地震", at(22, 8), 30, 30, 2.0, 8.0),
    ("hashtag", "雅安地震", at(22, 9), 30, 30, 2.5, 6.5),
    ("hashtag", "法院致歉", at(22, 20), 40, 40, 0.5, 12.0),
    ("hashtag", "深夜食堂", at(21, 23), 3, 3, 0.2, 3.0),
    ("hashtag", "深夜食堂", at(22, 0), 5, 5, 0.3, 4.0),
    ("hashtag", "旧闻", at(20, 9), 50, 50, 1.0, 20.0),
]
# The columns of a burst_episodes row, in the table's order.
EPISODE_COLUMNS = [
    "kind",
    "topic",
    "onset",
    "peak_window_start",
    "end",
    "windows",
    "peak_participants",
    "peak_score",
    "posts",
]
EPISODE_ROWS = [
    ("hashtag", "雅安地震", at(22, 8), at(22, 8), at(22, 10), 2, 30, 8.0, 60),
    ("hashtag", "法院致歉", at(22, 20), at(22, 20), at(22, 21), 1, 40, 12.0, 40),
    ("hashtag", "深夜食堂", at(21, 23), at(22, 0), at(22, 1), 2, 5, 4.0, 8),
    ("hashtag", "旧闻", at(20, 9), at(20, 9), at(20, 10), 1, 50, 20.0, 50),
]


def _sketch(authors) -> bytes:
    sketch = new_sketch()
    for author in sorted(authors):
        sketch.update(author)
    return sketch.serialize_compact()


def _write(root: pathlib.Path, table: str, rows: list[dict], date_of) -> None:
    by_date: dict[datetime.date, list[dict]] = {}
    for row in rows:
        by_date.setdefault(date_of(row), []).append(row)
    for day, day_rows in sorted(by_date.items()):
        folder = root / table / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pylist(day_rows, schema=TABLES[table]),
            folder / "part-0.parquet",
        )


def _local_date(column: str):
    return lambda row: row[column].astimezone(SHANGHAI).date()


def aggregate(posts: list[Post]) -> tuple[list[dict], list[dict]]:
    """Rows of the volume and topics tables for ``posts`` in one-hour windows."""
    windows: dict[datetime.datetime, list[Post]] = {}
    for post in posts:
        windows.setdefault(post.when, []).append(post)
    volume, topics = [], []
    for start, in_window in sorted(windows.items()):
        volume.append(
            {
                "window_start": start,
                "window_end": start + HOUR,
                "posts": len(in_window),
                "participants": len({post.author for post in in_window}),
                "reposts": sum(post.repost for post in in_window),
                "duplicates": DUPLICATES.get(start, 0),
                "participants_sketch": _sketch({post.author for post in in_window}),
            }
        )
        by_topic: dict[tuple[str, str], list[Post]] = {}
        for post in in_window:
            for key in post.topics:
                by_topic.setdefault(key, []).append(post)
        for (kind, topic), about in sorted(by_topic.items()):
            topics.append(
                {
                    "window_start": start,
                    "window_end": start + HOUR,
                    "kind": kind,
                    "topic": topic,
                    "posts": len(about),
                    "participants": len({post.author for post in about}),
                    "participants_sketch": _sketch({post.author for post in about}),
                    "reposts": sum(post.repost for post in about),
                }
            )
    return volume, topics


def write_known_output(root: pathlib.Path) -> pathlib.Path:
    volume, topics = aggregate(known_posts())
    _write(root, "volume", volume, _local_date("window_start"))
    _write(root, "topics", topics, _local_date("window_start"))
    bursts = [
        dict(
            zip(
                (
                    "kind",
                    "topic",
                    "window_start",
                    "posts",
                    "participants",
                    "expected",
                    "score",
                ),
                row,
                strict=True,
            )
        )
        | {"window_end": row[2] + HOUR}
        for row in BURST_ROWS
    ]
    _write(root, "bursts", bursts, _local_date("window_start"))
    episodes = [
        dict(
            zip(
                EPISODE_COLUMNS,
                row,
                strict=True,
            )
        )
        for row in EPISODE_ROWS
    ]
    _write(root, "burst_episodes", episodes, _local_date("onset"))
    dead = [
        {
            "raw": '{"id": 1',
            "error": "not valid JSON: truncated",
            "source": "posts.jsonl:7",
            "stage": "parse",
            "read_at": at(23, 12),
        }
    ]
    _write(root, "dead_letters", dead, _local_date("read_at"))
    return root


# A generated stream for the notebook and the pipeline-level tests: two days of
# background with one planted surge, plus HOURLY_AUTHORS people who each post
# #每小时打卡# once every hour of both days.
HOURLY_TAG = "每小时打卡"
HOURLY_AUTHORS = 25
SAMPLE_DAYS = 2


def pipeline_sample(tmp_path_factory) -> pathlib.Path:
    """The volume pipeline's output over the generated stream, run once per session
    (the notebook and the report tests share it)."""
    from sampledata.generator import (
        GeneratorConfig,
        PlantedBurst,
        generate,
        write_lines,
    )
    from tests.conftest import run_volume

    root = tmp_path_factory.getbasetemp() / "reports-pipeline-sample"
    out = root / "out"
    if (root / "DONE").exists():
        return out
    start = GeneratorConfig().start
    config = GeneratorConfig(
        days=SAMPLE_DAYS,
        posts_per_day=1_200,
        authors=600,
        malformed_lines=3,
        hashtags=40,
        bursts=(
            PlantedBurst("雅安地震", start + datetime.timedelta(days=1, hours=10), 250),
        ),
    )
    lines, _ = generate(config)
    for hour in range(SAMPLE_DAYS * 24):
        when = start + datetime.timedelta(hours=hour, minutes=17)
        for person in range(HOURLY_AUTHORS):
            lines.append(
                json.dumps(
                    {
                        "id": f"77{hour:03d}{person:03d}",
                        "user_id": f"hourly{person}",
                        "created_at": when.isoformat(),
                        "text": f"#{HOURLY_TAG}# 第{hour}小时",
                    },
                    ensure_ascii=False,
                )
            )
    path = write_lines(lines, root / "posts.jsonl.gz")
    result = run_volume(["--input", str(path), "--output", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    (root / "DONE").touch()
    return out
