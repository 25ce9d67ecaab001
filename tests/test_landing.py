"""The landing source with files still being written: growing JSON Lines files are
read line by line as they grow, files readable only whole wait until they settle."""

import json
import os

import pytest

from transforms.landing import LandingRestriction, LandingTracker
from transforms.landing_folder import (
    LandingFile,
    is_growable,
    is_settled,
    list_landing,
    read_new_lines,
)


def line(index: int) -> bytes:
    return json.dumps({"id": str(index), "text": "x"}).encode() + b"\n"


def test_a_growing_file_is_read_to_its_last_complete_line_then_from_there(tmp_path):
    path = tmp_path / "slow.jsonl"
    whole = line(1) + line(2) + line(3)
    cut = len(line(1)) + 5  # mid-way through the second line
    path.write_bytes(whole[:cut])
    first = read_new_lines(str(path), 0, 1, max_lines=100)
    assert first.lines == [line(1)] and first.first_number == 1
    assert (first.next_offset, first.next_number) == (len(line(1)), 2)
    with open(path, "ab") as handle:
        handle.write(whole[cut:])
    second = read_new_lines(str(path), first.next_offset, first.next_number, 100)
    assert second.lines == [line(2), line(3)] and second.first_number == 2
    assert second.next_offset == len(whole) and second.next_number == 4
    assert read_new_lines(str(path), len(whole), 4, 100).lines == []


def test_a_file_that_stops_mid_line_gives_its_tail_only_when_the_stream_ends(tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_bytes(line(1) + b'{"id": "2", "te')
    assert read_new_lines(str(path), 0, 1, 100).lines == [line(1)]
    final = read_new_lines(str(path), len(line(1)), 2, 100, final=True)
    assert final.lines == [b'{"id": "2", "te'] and final.next_number == 3


def test_lines_per_read_are_bounded_and_a_bom_is_not_part_of_the_first(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + line(1) + line(2) + line(3))
    first = read_new_lines(str(path), 0, 1, max_lines=2)
    assert first.lines == [line(1), line(2)]
    rest = read_new_lines(str(path), first.next_offset, first.next_number, 2)
    assert rest.lines == [line(3)] and rest.first_number == 3


@pytest.mark.parametrize(
    "name, growable",
    [("a.jsonl", True), ("a.ndjson", True), ("a.json", True), ("a.jsonl.gz", False)]
    + [("a.parquet", False)],
)
def test_only_plain_json_lines_files_are_read_as_they_grow(name, growable):
    assert is_growable(f"/landing/{name}") is growable


def test_a_whole_file_waits_until_unchanged_for_the_settle_time(tmp_path):
    (tmp_path / "a.jsonl.gz").write_bytes(b"")
    os.utime(tmp_path / "a.jsonl.gz", (1_000, 1_000))
    (file,), _ = list_landing(str(tmp_path))
    assert file.size == 0 and file.modified == 1_000
    assert is_settled(LandingFile("x", 100.0, 5), now_seconds=103.0, settle_seconds=2)
    assert not is_settled(LandingFile("x", 100.0, 5), 101.0, 2)


def test_the_tracker_carries_each_files_offset_through_a_checkpoint():
    tracker = LandingTracker(
        LandingRestriction(frozenset(), offsets=(("/l/a.jsonl", 10, 2),))
    )
    assert tracker.try_claim(("lines", ("/l/a.jsonl", 30, 5)))
    assert tracker.try_claim(("lines", ("/l/b.jsonl", 7, 2)))
    primary, residual = tracker.try_split(0)
    assert primary.finished and not residual.finished
    assert residual.offsets == (("/l/a.jsonl", 30, 5), ("/l/b.jsonl", 7, 2))
    forgetting = LandingTracker(residual)
    assert forgetting.try_claim(("forget", "/l/a.jsonl"))
    assert forgetting.current_restriction().offsets == (("/l/b.jsonl", 7, 2),)


def test_a_settled_file_without_a_final_newline_gives_its_last_whole_line(tmp_path):
    path = tmp_path / "no-newline.jsonl"
    last = line(2).rstrip(b"\n")
    path.write_bytes(line(1) + last)
    waiting = read_new_lines(str(path), 0, 1, 100, settled=False)
    assert waiting.lines == [line(1)]
    settled = read_new_lines(str(path), 0, 1, 100, settled=True)
    assert settled.lines == [line(1), last] and settled.next_number == 3
    # The writer goes on after all: the newline ending the line taken is no blank
    # line of its own, and the next line follows.
    with open(path, "ab") as handle:
        handle.write(b"\n" + line(3))
    more = read_new_lines(str(path), settled.next_offset, 3, 100)
    assert more.lines == [line(3)] and more.first_number == 3


def test_a_settled_file_cut_mid_line_waits_for_the_stream_end(tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_bytes(line(1) + b'{"id": "2", "te')
    assert read_new_lines(str(path), 0, 1, 100, settled=True).lines == [line(1)]


def test_a_growing_line_over_the_bound_is_one_overlong_line_once_it_ends(tmp_path):
    """A line over ``--max-line-bytes`` written slowly: nothing of it is taken while
    its end is missing, then it is one ``OverlongLine`` (a dead letter downstream)
    and the lines after it are read with their own numbers."""
    from transforms.files import OverlongLine

    path = tmp_path / "long.jsonl"
    long_line = b'{"id": "2", "text": "' + b"a" * 5_000
    path.write_bytes(line(1) + long_line)
    first = read_new_lines(str(path), 0, 1, 100, max_line_bytes=1_000)
    assert first.lines == [line(1)] and first.next_offset == len(line(1))
    with open(path, "ab") as handle:
        handle.write(b'"}\n' + line(3))
    second = read_new_lines(
        str(path), first.next_offset, first.next_number, 100, max_line_bytes=1_000
    )
    overlong, after = second.lines
    assert isinstance(overlong, OverlongLine)
    assert overlong.size == len(long_line) + 3 and overlong.limit == 1_000
    assert after == line(3) and second.next_number == 4
    assert second.next_offset == path.stat().st_size


def test_an_unfinished_overlong_line_is_taken_when_the_stream_ends(tmp_path):
    from transforms.files import OverlongLine

    path = tmp_path / "cut-long.jsonl"
    path.write_bytes(line(1) + b"x" * 3_000)
    final = read_new_lines(
        str(path), len(line(1)), 2, 100, final=True, max_line_bytes=1_000
    )
    (overlong,) = final.lines
    assert isinstance(overlong, OverlongLine) and overlong.size == 3_000
    assert final.next_offset == path.stat().st_size and final.next_number == 3
