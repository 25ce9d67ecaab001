"""End to end: ``python -m reports`` on the known output folder, in every format."""

import base64
import datetime
import io
import json
import re
import subprocess
import sys

import polars as pl
import pytest
from fontTools.ttLib import TTFont
from polars.testing import assert_frame_equal

from reports.__main__ import main
from tests.conftest import PROJECT, run_reports
from tests.test_reports_fixture import write_known_output

HOT_TABLE = """\
热门话题 Hot topics 2026-11-22
==========================
Period: 2026-11-22, local midnight to midnight in Asia/Shanghai.
Topics: hashtag; ranked by distinct participants merged over the day (not summed over windows); growth against 2026-11-21.
Overall: 445 posts by 85 distinct authors.

Events (most people first)
(none)

| rank | kind    | topic    | participants | posts | reposts | windows | peak_window_start | previous_participants | previous_posts | growth | kinds   |
|------|---------|----------|--------------|-------|---------|---------|-------------------|-----------------------|----------------|--------|---------|
| 1    | hashtag | 法院致歉 | 40           | 40    | 20      | 1       | 2026-11-22 20:00  | 0                     | 0              | new    | hashtag |
| 2    | hashtag | 雅安地震 | 30           | 360   | 120     | 12      | 2026-11-22 08:00  | 10                    | 10             | +200%  | hashtag |
| 3    | hashtag | 深夜食堂 | 5            | 5     | 0       | 1       | 2026-11-22 00:00  | 3                     | 3              | +67%   | hashtag |

Volume by day
| date       | windows | posts | reposts | duplicates | participants |
|------------|---------|-------|---------|------------|--------------|
| 2026-11-22 | 14      | 445   | 140     | 2          | 85           |
"""  # noqa: E501 - the report's table rows cannot wrap.


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return str(write_known_output(tmp_path_factory.mktemp("known")))


def test_hot_prints_a_terminal_table(known):
    result = run_reports("hot", "--day", "2026-11-22", "--output", known)
    assert result.returncode == 0, result.stderr
    assert result.stdout == HOT_TABLE


def test_hot_writes_csv(known, tmp_path):
    target = tmp_path / "hot.csv"
    assert (
        main(
            [
                "hot",
                "--day",
                "2026-11-22",
                "--output",
                known,
                "--kind",
                "all",
                "--top",
                "4",
                "--format",
                "csv",
                "--to",
                str(target),
            ]
        )
        == 0
    )
    got = pl.read_csv(target)
    expected = pl.DataFrame(
        {
            "rank": [1, 2, 3, 4],
            "kind": ["hashtag", "hashtag", "keyword", "mention"],
            "topic": ["法院致歉", "雅安地震", "消息", "人民日报"],
            "participants": [40, 30, 30, 10],
            "posts": [40, 360, 30, 10],
            "reposts": [20, 120, 0, 0],
            "windows": [1, 12, 1, 2],
            "peak_window_start": [
                "2026-11-22T20:00:00+08:00",
                "2026-11-22T08:00:00+08:00",
                "2026-11-22T12:00:00+08:00",
                "2026-11-22T09:00:00+08:00",
            ],
            "previous_participants": [0, 10, 0, 20],
            "previous_posts": [0, 10, 0, 20],
            "growth": [None, 2.0, None, -0.5],
            # 雅安地震 is listed once, with the kinds it appears as.
            "kinds": ["hashtag", "hashtag, keyword", "keyword", "mention"],
        }
    )
    assert_frame_equal(got, expected)


def test_hot_week_writes_json(known, capsys):
    assert (
        main(
            [
                "hot",
                "--day",
                "2026-11-20",
                "--week",
                "--output",
                known,
                "--format",
                "json",
            ]
        )
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert document["report"] == "hot"
    assert document["period"] == {
        "label": "2026-11-16 to 2026-11-22",
        "timezone": "Asia/Shanghai",
        "start": "2026-11-16T00:00:00+08:00",
        "end": "2026-11-23T00:00:00+08:00",
    }
    assert [
        (
            row["topic"],
            row["participants"],
            row["posts"],
            row["previous_participants"],
            row["growth"],
        )
        for row in document["rows"]
    ] == [
        ("法院致歉", 40, 40, 0, None),
        ("雅安地震", 30, 370, 5, 5.0),
        ("深夜食堂", 8, 8, 0, None),
    ]
    assert document["sections"]["Volume by day"] == [
        {
            "date": "2026-11-21",
            "windows": 3,
            "posts": 33,
            "reposts": 0,
            "duplicates": 0,
            "participants": 33,
        },
        {
            "date": "2026-11-22",
            "windows": 14,
            "posts": 445,
            "reposts": 140,
            "duplicates": 2,
            "participants": 85,
        },
    ]


def test_hot_writes_a_self_contained_html_report_and_pngs(known, tmp_path):
    target = tmp_path / "report" / "hot.html"
    charts = tmp_path / "charts"
    assert (
        main(
            [
                "hot",
                "--day",
                "2026-11-22",
                "--output",
                known,
                "--format",
                "html",
                "--to",
                str(target),
                "--charts",
                str(charts),
            ]
        )
        == 0
    )
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<meta charset='utf-8'>" in page
    # Nothing is fetched when the file is opened: no external scripts, styles or images.
    assert not re.search(r"(src|href)=['\"](?!data:)", page)
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 2
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert sorted(path.name for path in charts.iterdir()) == [
        "hot-topics-2026-11-22.png",
        "volume-2026-11-22.png",
    ]
    assert (charts / "hot-topics-2026-11-22.png").read_bytes() == base64.b64decode(
        images[0]
    )
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert [
        "2",
        "hashtag",
        "雅安地震",
        "30",
        "360",
        "120",
        "12",
        "2026-11-22 08:00",
        "10",
        "10",
        "+200%",
        "hashtag",
    ] in cells
    assert "热门话题 Hot topics 2026-11-22" in page
    # Chinese text shows without Chinese fonts installed: the page carries the few
    # glyphs it uses.
    embedded = re.search(r"url\(data:font/otf;base64,([A-Za-z0-9+/=]+)\)", page)
    assert embedded is not None
    charmap = TTFont(io.BytesIO(base64.b64decode(embedded.group(1)))).getBestCmap()
    assert {ord(char) for char in "热门话题雅安地震法院致歉深夜食堂"} <= set(charmap)
    assert len(charmap) < 200


def test_timeline_command_table_and_csv(known, tmp_path, capsys):
    assert (
        main(["timeline", "#雅安地震#", "--day", "2026-11-22", "--output", known]) == 0
    )
    text = capsys.readouterr().out
    assert "#雅安地震#: 360 posts in 14 windows; 2 bursting windows." in text
    assert "Also found as: keyword (choose with --kind)." in text
    assert (
        "| 2026-11-22 09:00 | 2026-11-22 10:00 | hashtag | 雅安地震 | 30    "
        "| 30           | 10      | yes      | 2.5      | 6.5   |" in text
    )
    target = tmp_path / "timeline.csv"
    assert (
        main(
            [
                "timeline",
                "雅安地震",
                "--day",
                "2026-11-22",
                "--output",
                known,
                "--format",
                "csv",
                "--to",
                str(target),
            ]
        )
        == 0
    )
    got = pl.read_csv(target)
    assert got.height == 14
    assert got.filter(pl.col("bursting"))["window_start"].to_list() == [
        "2026-11-22T08:00:00+08:00",
        "2026-11-22T09:00:00+08:00",
    ]


def test_timeline_of_an_unknown_topic_fails_with_suggestions(known):
    result = run_reports("timeline", "雅安", "--output", known)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: topic '雅安' does not occur in the period; "
        "topics containing it: #雅安地震#, 雅安地震 · 关键词"
    )


def test_bursts_command_json_and_table(known, capsys):
    assert (
        main(["bursts", "--day", "2026-11-22", "--output", known, "--format", "json"])
        == 0
    )
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [
        (row["topic"], row["onset"], row["end"], row["peak_score"]) for row in rows
    ] == [
        ("法院致歉", "2026-11-22T20:00:00+08:00", "2026-11-22T21:00:00+08:00", 12.0),
        ("雅安地震", "2026-11-22T08:00:00+08:00", "2026-11-22T10:00:00+08:00", 8.0),
        ("深夜食堂", "2026-11-21T23:00:00+08:00", "2026-11-22T01:00:00+08:00", 4.0),
    ]
    assert main(["bursts", "--output", known, "--timezone", "UTC"]) == 0
    text = capsys.readouterr().out
    assert (
        "| hashtag | 旧闻     | 2026-11-20 01:00 | 2026-11-20 01:00  "
        "| 2026-11-20 02:00 | 1       | 50" in text
    )


def test_volume_command_by_day_csv(known, capsys):
    assert main(["volume", "--output", known, "--format", "csv"]) == 0
    got = pl.read_csv(io.StringIO(capsys.readouterr().out), try_parse_dates=True)
    assert got.rows() == [
        (datetime.date(2026, 11, 10), 1, 5, 0, 0, 5),
        (datetime.date(2026, 11, 21), 3, 33, 0, 0, 33),
        (datetime.date(2026, 11, 22), 14, 445, 140, 2, 85),
        (datetime.date(2026, 11, 23), 1, 2, 0, 0, 2),
    ]


def test_hot_defaults_to_the_last_whole_day(known, capsys):
    assert (
        main(["hot", "--output", known, "--kind", "mention", "--format", "json"]) == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert document["period"]["label"] == "2026-11-22"
    assert [
        (row["topic"], row["participants"], row["growth"]) for row in document["rows"]
    ] == [("人民日报", 10, -0.5)]


def test_warns_when_the_folder_was_partitioned_in_another_timezone(known, capsys):
    assert (
        main(
            [
                "hot",
                "--day",
                "2026-11-22",
                "--output",
                known,
                "--timezone",
                "UTC",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    assert (
        "partitioned by dates of another timezone than UTC" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hot", "--day", "22/11/2026"], "not a date (YYYY-MM-DD): '22/11/2026'"),
        (
            ["hot", "--day", "2026-11-22", "--timezone", "Mars/Olympus"],
            "--timezone Mars/Olympus: unknown timezone",
        ),
        (
            ["hot", "--output", "/nonexistent/out"],
            "--output /nonexistent/out: no such folder",
        ),
        (["hot", "--top", "0"], "not a positive whole number: '0'"),
    ],
    ids=["bad-day", "bad-timezone", "missing-folder", "zero-top"],
)
def test_usage_errors_exit_2_with_one_line(known, args, message):
    if "--output" not in args:
        args = [*args, "--output", known]
    result = run_reports(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_summary_command_as_run_local_calls_it(known):
    result = run_reports("summary", "--output", known)
    assert result.returncode == 0, result.stderr
    assert (
        "Input lines 488 = 485 distinct posts + 2 redelivered duplicates "
        "+ 1 dead letters; 100 participants" in result.stdout
    )


def test_table_csv_and_json_need_no_matplotlib(known):
    """Workers and slim installs have only install_requires (no matplotlib)."""
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from reports.__main__ import main\n"
        f"for fmt in ('table', 'csv', 'json'):\n"
        f"    assert main(['hot', '--day', '2026-11-22', '--output', {known!r}, "
        "'--format', fmt]) == 0\n"
        f"    assert main(['timeline', '雅安地震', '--output', {known!r}, "
        "'--format', fmt]) == 0\n"
        f"    assert main(['bursts', '--output', {known!r}, '--format', fmt]) == 0\n"
        f"    assert main(['volume', '--output', {known!r}, '--format', fmt]) == 0\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "法院致歉" in result.stdout


def test_timezone_defaults_to_the_pipelines(known, tmp_path, capsys):
    # A folder written with --timezone UTC: without --timezone, days are UTC days.
    import shutil

    copy = tmp_path / "utc"
    shutil.copytree(known, copy)
    (copy / "_run.json").write_text(json.dumps({"timezone": "UTC"}))
    assert (
        main(
            ["volume", "--day", "2026-11-22", "--output", str(copy), "--format", "json"]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "UTC" in json.loads(captured.out)["period"]["timezone"]
    assert "partitioned by dates of another timezone than UTC" in captured.err
