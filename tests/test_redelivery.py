"""A redelivered post counts once, in the window of its earliest copy (batch: across
the whole run); its other copies are that window's duplicates."""

import gzip
import json

import pytest

from tests.conftest import read_table, run_volume


def _record(post_id: str, user: str, at: str, text: str, parent=None) -> dict:
    record = {"id": post_id, "user_id": user, "created_at": at, "text": text}
    if parent is not None:
        record["repost_of"] = parent
    return record


@pytest.fixture(scope="module")
def redelivered_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redelivery")
    records = [
        _record("7001", "alice", "2026-11-20T10:10:00+00:00", "#地震# 震感强烈"),
        _record("7002", "bob", "2026-11-20T10:20:00+00:00", "转发微博", "7001"),
        _record("7003", "carol", "2026-11-20T12:05:00+00:00", "#天气# 晴"),
        # The same ids again, 2.5 hours later (a crawler's second visit), and the
        # repost a third time even later, listed before its first copy's hour.
        _record("7001", "alice", "2026-11-20T12:40:00+00:00", "#地震# 震感强烈"),
        _record("7002", "bob", "2026-11-20T12:50:00+00:00", "转发微博", "7001"),
        _record("7002", "bob", "2026-11-20T15:20:00+00:00", "转发微博", "7001"),
        "{not json",
    ]
    path = folder / "posts.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            line = record if isinstance(record, str) else json.dumps(record)
            handle.write(line + "\n")
    out = folder / "out"
    result = run_volume(
        ["--input", str(path), "--output", str(out), "--topic-kinds", "hashtag"]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return out, len(records)


def _hour(frame, hour: int):
    return frame.filter(frame["window_start"].dt.hour() == hour)


def test_copies_hours_apart_count_once_in_the_first_window(redelivered_run):
    out, _ = redelivered_run
    volume = read_table(str(out), "volume").sort("window_start")
    first = _hour(volume, 10)
    assert first["posts"].to_list() == [2]
    assert first["duplicates"].to_list() == [3]
    later = _hour(volume, 12)
    assert later["posts"].to_list() == [1] and later["duplicates"].to_list() == [0]
    assert _hour(volume, 15).height == 0


def test_accounting_identity_holds_with_redelivered_copies(redelivered_run):
    out, lines = redelivered_run
    volume = read_table(str(out), "volume")
    dead = read_table(str(out), "dead_letters")
    assert volume["posts"].sum() + volume["duplicates"].sum() + dead.height == lines


def test_topics_count_a_redelivered_post_once(redelivered_run):
    out, _ = redelivered_run
    topics = read_table(str(out), "topics").filter(topic="地震")
    assert topics["window_start"].dt.hour().to_list() == [10]
    assert topics["posts"].to_list() == [2]
    assert topics["participants"].to_list() == [2]
