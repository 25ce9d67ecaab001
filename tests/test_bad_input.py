"""Bad input, line by line: one line, value or file never costs other lines or the run.

Each test names the row of the failure table it covers (silent loss, poison pill,
crash on a value, no valid post, runaway cost, first line, input dates) and asserts
the accounting identity (lines = posts + duplicates + dead letters) or the exit status.
"""

import datetime
import gzip
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.records import DeadLetter, Post
from tests.conftest import (
    POST_LINE_CREATED,
    TEST_KEY_HEX,
    key_source_for_tests,
    post_line,
    read_table,
    run_volume,
)
from transforms.extract import ExtractTopicsFn, post_topics
from transforms.files import (
    MAX_RAW_BYTES,
    FileSlice,
    OverlongLine,
    bounded_lines,
    json_lines_slices,
    read_slice,
)
from transforms.posts import MAX_TEXT_CHARS, parse_post
from transforms.read import ParsePostsFn, ParseSlicesFn, parse_record
from transforms.topics import KIND_HASHTAG, KIND_KEYWORD

KEY = bytes.fromhex(TEST_KEY_HEX)
KEY_SOURCE = key_source_for_tests()
CREATED = POST_LINE_CREATED
BOM = b"\xef\xbb\xbf"
# A lone surrogate written as a JSON escape: valid JSON, not valid Unicode.
SURROGATE = "u\\ud800"


def raw_line(**escaped) -> bytes:
    """A post line whose given fields are written verbatim (JSON escapes kept)."""
    fields = {"id": '"r1"', "user_id": '"u1"', "created_at": f'"{CREATED}"'}
    fields["text"] = '"文本"'
    fields.update(escaped)
    body = ", ".join(f'"{name}": {value}' for name, value in fields.items())
    return ("{" + body + "}\n").encode("utf-8")


def outcomes(outputs) -> tuple[list[Post], list[DeadLetter]]:
    posts = [output for output in outputs if isinstance(output, Post)]
    letters = [output.value for output in outputs if hasattr(output, "tag")]
    assert len(posts) + len(letters) == len(list(outputs))
    return posts, letters


def parse_lines(lines: list[bytes]) -> tuple[list[Post], list[DeadLetter]]:
    return outcomes(list(ParsePostsFn(KEY_SOURCE).parse(lines, "f.jsonl", 1, 0)))


# --- silent loss and crash on a value: lone surrogates -------------------------------


def test_a_surrogate_user_id_costs_its_own_line_only(tmp_path):
    """Silent loss: the surrogate line is one dead letter, the 5,900 after it count."""
    lines = [post_line(number) for number in range(6_001)]
    lines[100] = raw_line(user_id=f'"{SURROGATE}"')
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"".join(lines))
    outputs = list(
        ParseSlicesFn(KEY_SOURCE).process(FileSlice(str(path), 1, 6_001, 0, 0))
    )
    posts, letters = outcomes(outputs)
    assert (len(posts), len(letters)) == (6_000, 1)
    (letter,) = letters
    assert letter.source == f"{path}:101"
    assert letter.stage == "parse"
    assert letter.error.startswith("user_id: not valid Unicode")
    assert "ud800" not in letter.raw and "<masked>" in letter.raw


@pytest.mark.parametrize(
    "field",
    ["id", "user_id", "repost_of"],
)
def test_an_identifier_with_a_lone_surrogate_is_a_dead_letter(field):
    posts, letters = parse_lines([raw_line(**{field: f'"{SURROGATE}"'})])
    assert posts == []
    assert letters[0].error.startswith(f"{field}: not valid Unicode")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"a\\ud800b"', "a\ufffdb"),
        ('"\\udfff"', "\ufffd"),
        ('"\\ud83d\\ude00 ok"', "\U0001f600 ok"),  # a pair is one character
    ],
    ids=["lone-high", "lone-low", "valid-pair"],
)
def test_text_with_a_lone_surrogate_counts_with_a_replacement_character(text, expected):
    (post,), letters = parse_lines([raw_line(text=text, source='"we\\udc00ibo"')])
    assert letters == []
    assert post.text == expected
    assert post.source == "we\ufffdibo"
    post.text.encode("utf-8")  # writable as UTF-8 by every later step


# --- poison pill: nesting ------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 10_000 + b"]" * 10_000 + b"\n",
        b'{"a": ' + b"[" * 100_000 + b"\n",
        # Within orjson's limit, but a 2^70 id sends the line to the standard
        # library, which recurses.
        b'{"id": 1180591620717411303424, "x": ' + b"[" * 1_000 + b"]" * 1_000 + b"}\n",
    ],
    ids=["deep-array", "deep-unclosed", "deep-with-big-integer"],
)
def test_deep_nesting_is_a_dead_letter(line):
    posts, letters = parse_lines([post_line(1), line, post_line(2)])
    assert len(posts) == 2
    (letter,) = letters
    assert "nested" in letter.error
    assert letter.source == "f.jsonl:2"


# --- runaway cost: long lines, long texts --------------------------------------------


def _write_in_pieces(path, pieces) -> None:
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as handle:
        for piece in pieces:
            handle.write(piece)


def test_a_line_over_the_bound_is_read_in_pieces_never_whole(tmp_path):
    """Runaway cost: a 20 MB line is skipped holding at most a couple of MB."""
    path = tmp_path / "long.jsonl"
    size = 20 * 1024 * 1024
    _write_in_pieces(
        path,
        [
            post_line(1),
            b'{"text": "',
            *(b"a" * (1024 * 1024) for _ in range(20)),
            b'"}\n',
            post_line(2),
        ],
    )
    tracemalloc.start()
    try:
        with open(path, "rb") as handle:
            records = list(bounded_lines(handle, max_line_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    first, long, last = records
    assert isinstance(long, OverlongLine)
    assert long.size == size + len(b'{"text": "') + len(b'"}\n')
    assert len(long.head) <= 2 * MAX_RAW_BYTES
    assert (first, last) == (post_line(1), post_line(2))


@pytest.mark.parametrize("name", ["posts.jsonl", "posts.jsonl.gz"])
def test_slicing_and_reading_number_lines_alike_around_long_lines(tmp_path, name):
    """The slicing pass and the reading pass cut lines at the same places, so a
    dead letter's line number is the line's number in the file."""
    bound = 300
    lines = [post_line(number) for number in range(25_000)]
    long_numbers = {1, 9_999, 10_000, 10_001, 17_777, 24_999}
    for number in long_numbers:
        lines[number - 1] = b'{"text": "' + b"x" * (bound + number % 7) + b'"}\n'
    lines[-1] = lines[-1].rstrip(b"\n")  # the last line without its end
    path = tmp_path / name
    _write_in_pieces(path, lines)
    slices, count, error = json_lines_slices(str(path), max_line_bytes=bound)
    assert (count, error) == (len(lines), None)
    assert len(slices) > 1
    read = [
        (piece.first_number + offset, record)
        for piece in slices
        for offset, record in enumerate(read_slice(piece, max_line_bytes=bound))
    ]
    assert len(read) == len(lines)
    assert {n for n, r in read if isinstance(r, OverlongLine)} == long_numbers
    assert all(r == lines[n - 1] for n, r in read if not isinstance(r, OverlongLine))
    parser = ParseSlicesFn(KEY_SOURCE, max_line_bytes=bound)
    posts, letters = outcomes(
        [output for piece in slices for output in parser.process(piece)]
    )
    assert len(posts) + len(letters) == len(lines)
    assert sorted(int(letter.source.rpartition(":")[2]) for letter in letters) == (
        sorted(long_numbers)
    )
    assert all(letter.error.startswith("line too long") for letter in letters)
    assert all(letter.stage == "read" for letter in letters)


@pytest.mark.parametrize("length", [1_000_000, 300_000], ids=["1MB", "300KB"])
def test_quadratic_bait_in_text_counts_and_finishes(length):
    """Runaway cost: a post whose text is ``"1 " + "a" * N`` is masked and analysed
    on a bounded prefix only (finishing at all is the assertion)."""
    text = "1 " + "a" * length + " #尾巴#"
    line = post_line(1, text=text)
    (post,), letters = parse_lines([line])
    assert letters == []
    assert len(post.text) <= MAX_TEXT_CHARS
    assert post_topics(post.text, (KIND_HASHTAG,)) == ()  # the tail is not analysed


@pytest.mark.parametrize("length", [1_000_000, 300_000], ids=["1MB", "300KB"])
def test_quadratic_bait_in_a_dead_letter_is_cut_before_masking(length):
    """Runaway cost: a rejected 1 MB line costs a bounded prefix's masking."""
    line = ('{"id": 1, "text": "1 ' + "a" * length + "\n").encode()
    letter = parse_record(line, KEY, "f.jsonl:1", 0)
    assert isinstance(letter, DeadLetter)
    assert len(letter.raw.encode("utf-8")) <= MAX_RAW_BYTES


def test_a_cut_never_leaves_half_a_phone_number_unmasked():
    text = "字" * (MAX_TEXT_CHARS - 5) + "13812345678 后面"
    post = parse_post(
        {"id": "1", "user_id": "u", "created_at": CREATED, "text": text}, KEY
    )
    assert post.text == "字" * (MAX_TEXT_CHARS - 5)


def test_topics_come_from_the_bounded_prefix():
    head = "#前面# " + "字" * 100
    text = head + "字" * MAX_TEXT_CHARS + " #后面#"
    assert post_topics(text, (KIND_HASHTAG,)) == ((KIND_HASHTAG, "前面"),)


class _FailingAnalyzer:
    def analyze(self, text, hashtags):
        raise RuntimeError("segmenter fault")


def test_a_post_whose_extraction_raises_still_counts_without_topics():
    post = parse_post(
        {"id": "1", "user_id": "u", "created_at": CREATED, "text": "#话题# 文本"}, KEY
    )
    extract = ExtractTopicsFn((KIND_HASHTAG, KIND_KEYWORD))
    extract._analyzer = _FailingAnalyzer()
    (stamped,) = list(extract.process(post))
    assert stamped.value.id == post.id
    assert stamped.value.topics == ()


# --- first line: a byte-order mark ---------------------------------------------------


@pytest.mark.parametrize("name", ["posts.jsonl", "posts.jsonl.gz"])
def test_a_bom_at_the_start_of_a_file_is_ignored(tmp_path, name):
    path = tmp_path / name
    _write_in_pieces(path, [BOM + post_line(1), post_line(2)])
    slices, count, _ = json_lines_slices(str(path))
    posts, letters = outcomes(list(ParseSlicesFn(KEY_SOURCE).process(slices[0])))
    assert (count, [post.id for post in posts], letters) == (2, ["1", "2"], [])


# --- input dates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "created_at",
    [
        "Wed Nov 21 10:00:00 +0800 2026",
        "wed nov 21 10:00:00 +0800 2026",
        "2026-11-21t02:00:00z",
        "2026-11-21T02:00:00Z",
        "2026-11-21 10:00:00+08:00",
    ],
    ids=["weibo-api", "weibo-api-lower", "rfc3339-lower", "rfc3339-upper", "space"],
)
def test_the_platforms_date_forms_count(created_at):
    (post,), letters = parse_lines([post_line(1, created_at=created_at)])
    expected = datetime.datetime(2026, 11, 21, 2, tzinfo=datetime.UTC)
    assert post.event_time_us == int(expected.timestamp()) * 1_000_000


# --- Parquet rows pyarrow cannot convert ---------------------------------------------


def test_an_unconvertible_parquet_row_is_a_dead_letter_alone(tmp_path):
    path = tmp_path / "posts.parquet"
    times = pa.array([1_700_000_000_000_000, 2**62, 1_700_000_000_000_001])
    table = pa.table(
        {
            "id": ["1", "2", "3"],
            "user_id": ["a", "b", "c"],
            "created_at": times.cast(pa.timestamp("us", tz="UTC")),
            "text": ["一", "二", "三"],
        }
    )
    pq.write_table(table, path)
    piece = FileSlice(str(path), 1, 3, 0, 0)
    posts, letters = outcomes(list(ParseSlicesFn(KEY_SOURCE).process(piece)))
    assert [post.id for post in posts] == ["1", "3"]
    (letter,) = letters
    assert letter.source == f"{path}:2" and letter.error.startswith("row unreadable")


# --- end to end: no valid post, and a zoo of bad lines among good ones --------------


def _bad_files(tmp_path) -> dict:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.jsonl").write_bytes(b"")
    (folder / "bad.jsonl").write_bytes(b"junk\n\n[1]\n" + raw_line(id=f'"{SURROGATE}"'))
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), folder / "wrong.parquet")
    (folder / "fake.jsonl.gz").write_bytes(b"not gzip at all\n")
    (folder / "a-folder.jsonl").mkdir()
    return {
        "empty-file": (folder / "empty.jsonl", 0, None),
        "only-bad-lines": (folder / "bad.jsonl", 4, "not valid JSON"),
        "wrong-schema-parquet": (folder / "wrong.parquet", 2, "missing (required)"),
        "gz-not-gzip": (folder / "fake.jsonl.gz", 1, "BadGzipFile"),
        "input-naming-a-folder": (folder / "a-folder.jsonl", 1, "IsADirectory"),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "empty-file",
        "only-bad-lines",
        "wrong-schema-parquet",
        "gz-not-gzip",
        "input-naming-a-folder",
    ],
)
def test_a_run_with_no_valid_post_writes_dead_letters_and_empty_tables(tmp_path, kind):
    path, dead, reason = _bad_files(tmp_path)[kind]
    out = tmp_path / "out"
    result = run_volume(["--input", str(path), "--output", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    letters = read_table(out, "dead_letters")
    assert letters.height == dead
    if reason:
        assert any(reason in error for error in letters["error"])
    for table in ("volume", "topics", "bursts", "burst_episodes"):
        assert read_table(out, table).height == 0


def test_a_glob_matching_nothing_stays_a_usage_error(tmp_path):
    result = run_volume(
        ["--input", str(tmp_path / "nothing*.jsonl"), "--output", str(tmp_path / "o")]
    )
    assert result.returncode == 2
    assert "no file matched" in result.stderr


def test_every_line_of_a_zoo_is_accounted_for_end_to_end(tmp_path):
    """Poison pills, surrogates, long lines, BOM, platform dates and a redelivery,
    among good posts: lines = posts + duplicates + dead letters, exit 0."""
    good = [post_line(number) for number in range(3_000)]
    zoo = [
        raw_line(user_id=f'"{SURROGATE}"'),
        raw_line(id=f'"{SURROGATE}"'),
        raw_line(text='"a\\ud800b"'),  # counts
        b"[" * 10_000 + b"]" * 10_000 + b"\n",
        b'{"text": "' + b"a" * 3_000_000 + b'"}\n',
        post_line(9_001, text="1 " + "a" * 500_000),  # counts
        post_line(9_002, created_at="Wed Nov 21 10:00:00 +0800 2026"),  # counts
        post_line(9_003, created_at="2026-11-21t02:00:00z"),  # counts
        post_line(7),  # a redelivery: counts as a duplicate
        b"\xff\xfe\n",
        b"\n",
    ]
    lines = [BOM + good[0], *good[1:1_000], *zoo, *good[1_000:]]
    path = tmp_path / "posts.jsonl.gz"
    _write_in_pieces(path, lines)
    out = tmp_path / "out"
    result = run_volume(
        ["--input", str(path), "--output", str(out), "--max-line-bytes", "2000000"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    volume = read_table(out, "volume")
    letters = read_table(out, "dead_letters")
    posts, duplicates = volume["posts"].sum(), volume["duplicates"].sum()
    assert posts + duplicates + letters.height == len(lines)
    assert (posts, duplicates, letters.height) == (3_004, 1, 6)
    assert letters.filter(letters["error"].str.starts_with("line too long")).height == 1
    manifest = json.loads((out / "_run.json").read_text())
    assert manifest["max_line_bytes"] == 2_000_000


def test_a_landing_file_with_poison_lines_is_read_to_its_end(tmp_path):
    """Poison pill, streaming: the landing reader parses through the same line path,
    so a deep or surrogate line is a dead letter and the file is read on."""
    from transforms.landing import WatchLandingFolderFn

    path = tmp_path / "drop.jsonl"
    _write_in_pieces(
        path,
        [
            BOM + post_line(1),
            b"[" * 10_000 + b"]" * 10_000 + b"\n",
            raw_line(user_id=f'"{SURROGATE}"'),
            b'{"text": "' + b"a" * 2_000_000 + b'"}\n',
            post_line(2),
        ],
    )
    posts, letters = outcomes(list(WatchLandingFolderFn(KEY_SOURCE)._read(str(path))))
    assert [post.id for post in posts] == ["1", "2"]
    assert [letter.source for letter in letters] == [f"{path}:{n}" for n in (2, 3, 4)]


def test_a_file_name_that_is_not_utf8_is_read_like_any_other(tmp_path):
    """Crash on a value: the name of a file is a value too."""
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    name = os.path.join(os.fsencode(folder), b"posts-\xff.jsonl")
    with open(name, "wb") as handle:
        handle.write(b"junk\n" + post_line(1) + post_line(2))
    out = tmp_path / "out"
    result = run_volume(["--input", str(folder / "*"), "--output", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    letters = read_table(out, "dead_letters")
    assert read_table(out, "volume")["posts"].sum() == 2
    assert letters["source"].to_list() == [f"{folder}/posts-\ufffd.jsonl:1"]


def test_a_masking_failure_is_the_records_dead_letter_and_withholds_it(monkeypatch):
    """Whatever a privacy step raises on one record stays that record's: the line
    is a dead letter of stage ``privacy``, and a dead letter that cannot be masked
    keeps neither raw line nor reason."""
    import transforms.posts
    import transforms.read

    def broken(text, *args, **kwargs):
        raise RuntimeError(f"pattern fault on {text}")

    monkeypatch.setattr(transforms.posts, "mask_pii", broken)
    letter = parse_record(post_line(1, text="电话13812345678"), KEY, "f:1", 0)
    assert (letter.stage, letter.error.split(":")[0]) == ("privacy", "privacy")
    monkeypatch.setattr(transforms.read, "mask_dead_letter", broken)
    posts, letters = parse_lines([post_line(2), b"not json 13812345678\n"])
    assert posts == []
    assert all(letter.raw == "" for letter in letters)
    assert all("13812345678" not in letter.error for letter in letters)
    assert letters[0].error.startswith("privacy failed; raw line and reason withheld")
