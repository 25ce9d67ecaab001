"""Charts: Chinese labels render with a real CJK font (no missing-glyph warning),
and each chart shows what its frame holds."""

import datetime
import logging
import warnings

import matplotlib.dates as mdates
import pytest
from matplotlib.figure import Figure

from reports import charts, fonts, queries
from reports.periods import Period
from tests.test_reports_fixture import at, write_known_output

DAY = Period.day(datetime.date(2026, 11, 22))


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return str(write_known_output(tmp_path_factory.mktemp("known")))


def font_complaints(figure: Figure, caplog) -> list[str]:
    """Warnings and log lines about fonts or glyphs while drawing ``figure`` to PNG."""
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="matplotlib"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        png = charts.png_bytes(figure)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    messages = [str(warning.message) for warning in caught] + [
        record.getMessage() for record in caplog.records
    ]
    return [
        text for text in messages if "glyph" in text.lower() or "font" in text.lower()
    ]


def test_a_cjk_font_is_found_without_any_download():
    path = fonts.cjk_font_path()
    assert path is not None, (
        "install the report extra: pylopdf-fonts-zh-cn ships Noto Sans SC"
    )
    assert fonts._has_glyphs(path)
    assert fonts.font_families()[0] == fonts.cjk_font_family()


def test_missing_glyphs_are_detected_with_the_default_font(caplog):
    """The check below can fail: DejaVu Sans alone has no hanzi."""
    figure = Figure()
    figure.add_subplot().set_title("雅安地震", fontfamily="DejaVu Sans")
    assert any("missing from font" in text for text in font_complaints(figure, caplog))


def test_every_chart_renders_chinese_labels_without_missing_glyphs(known, caplog):
    figures = {
        "top topics": charts.top_topics_chart(
            queries.hot_topics(known, DAY), title="热门话题 2026-11-22"
        ),
        "timeline": charts.timeline_chart(
            queries.topic_timeline(known, "雅安地震", period=DAY)
        ),
        "volume": charts.volume_chart(queries.volume_timeline(known, DAY)),
        "episodes": charts.episodes_chart(queries.burst_episodes(known, DAY)),
        "empty": charts.timeline_chart(queries.topic_timeline(known, "不存在")),
    }
    for name, figure in figures.items():
        assert font_complaints(figure, caplog) == [], name


def test_timeline_chart_shades_consecutive_burst_windows_as_one_span(known):
    figure = charts.timeline_chart(
        queries.topic_timeline(known, "雅安地震", period=DAY)
    )
    axes = figure.axes[0]
    assert axes.get_title() == "#雅安地震# 话题走势 timeline"
    spans = [
        patch for patch in axes.patches if patch.get_label() == "爆发窗口 burst windows"
    ]
    assert len(spans) == 1
    start = spans[0].get_x()  # axvspan draws a Rectangle in data units along x
    assert mdates.num2date(start) == at(22, 8)
    assert mdates.num2date(start + spans[0].get_width()) == at(22, 10)


def test_top_topics_chart_labels_topics_as_written_largest_first(known):
    figure = charts.top_topics_chart(queries.hot_topics(known, DAY))
    axes = figure.axes[0]
    by_height = sorted(
        axes.get_yticklabels(), key=lambda label: -label.get_position()[1]
    )
    labels = [label.get_text() for label in by_height]
    assert labels == [
        "#法院致歉#",
        "#雅安地震#",
        "消息 · 关键词",
        "@人民日报",
        "#深夜食堂#",
    ]  # 雅安地震 once, as its strongest kind
    notes = sorted(text.get_text() for text in figure.axes[0].texts)
    assert notes == [
        "10  -50%",
        "30  +200%",
        "30  新 new",
        "40  新 new",
        "5  +67%",
    ]
