"""Reading input files: slices that cover every line once, and what breaks them."""

import gzip

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from polars.testing import assert_frame_equal

from tests.conftest import (
    TEST_KEY_HEX,
    key_source_for_tests,
    post_line,
    read_table,
    run_volume,
)
from transforms.files import (
    MAX_SLICES_PER_GZIP_FILE,
    MIN_SLICE_LINES,
    FileSlice,
    group_units,
    json_lines_slices,
    parquet_slices,
    read_slice,
    slice_target,
)
from transforms.read import DEAD_LETTERS, ParseSlicesFn, ReadPosts

KEY = bytes.fromhex(TEST_KEY_HEX)
KEY_SOURCE = key_source_for_tests()


@pytest.mark.parametrize(
    ("sizes", "target", "runs"),
    [
        ([2, 2, 2, 2, 1], 4, [(0, 2), (2, 2), (4, 1)]),
        ([5, 1, 1], 4, [(0, 1), (1, 2)]),
        ([3, 0, 0], 3, [(0, 3)]),
        ([0, 0], 5, [(0, 2)]),
        ([], 4, []),
    ],
    ids=[
        "even-runs-and-a-short-tail",
        "big-unit-alone",
        "empty-units-join-the-run-before",
        "all-empty",
        "no-units",
    ],
)
def test_group_units_covers_every_unit_once_in_order(sizes, target, runs):
    assert group_units(sizes, target) == runs


def test_slice_target_bounds_slices_per_file():
    assert slice_target(100) == MIN_SLICE_LINES
    assert slice_target(1_000_000) == 1_000_000 // MAX_SLICES_PER_GZIP_FILE
    assert slice_target(0) == MIN_SLICE_LINES


def _lines(count: int) -> list[bytes]:
    # A blank line and a line that is not JSON are lines too: they become dead letters.
    lines = [post_line(number) for number in range(count)]
    lines[7] = b"\n"
    lines[11] = b"not json\n"
    lines[-1] = lines[-1].rstrip(b"\n")  # the last line without its newline
    return lines


@pytest.mark.parametrize("name", ["posts.jsonl", "posts.jsonl.gz"])
def test_slices_read_back_every_line_once_in_order(tmp_path, name):
    lines = _lines(MIN_SLICE_LINES * 3 + 123)
    path = tmp_path / name
    (gzip.open if name.endswith(".gz") else open)(path, "wb").write(b"".join(lines))
    slices, count, error = json_lines_slices(str(path))
    assert (count, error) == (len(lines), None)
    assert len(slices) == 4
    assert [piece.first_number for piece in slices] == [
        1,
        *(1 + sum(p.count for p in slices[:i]) for i in range(1, 4)),
    ]
    read = [line for piece in slices for line in read_slice(piece)]
    assert read == lines


@pytest.mark.parametrize(
    ("name", "slices"),
    [("posts.jsonl.gz", MAX_SLICES_PER_GZIP_FILE), ("posts.jsonl", 12)],
)
def test_a_gzip_file_is_cut_in_few_slices_a_plain_one_in_as_many_as_it_fills(
    tmp_path, name, slices
):
    path = tmp_path / name
    (gzip.open if name.endswith(".gz") else open)(path, "wb").write(
        b"".join(_lines(MIN_SLICE_LINES * 12))
    )
    assert len(json_lines_slices(str(path))[0]) == slices


def test_truncated_gzip_keeps_the_lines_before_the_break(tmp_path):
    lines = _lines(MIN_SLICE_LINES * 2)
    whole = gzip.compress(b"".join(lines))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    slices, count, error = json_lines_slices(str(path))
    assert isinstance(error, EOFError)
    assert 0 < count < len(lines)
    assert [line for piece in slices for line in read_slice(piece)] == lines[:count]


def test_parquet_slices_are_runs_of_row_groups(tmp_path):
    rows = MIN_SLICE_LINES * 2 + 500
    table = pa.table({"id": [str(n) for n in range(rows)], "text": ["话题"] * rows})
    path = tmp_path / "posts.parquet"
    pq.write_table(table, path, row_group_size=4_000)
    slices, count, _ = parquet_slices(str(path))
    assert count == rows
    assert [(piece.first_number, piece.count, piece.start) for piece in slices] == [
        (1, 12_000, 0),
        (12_001, 8_500, 3),
    ]
    assert [row["id"] for piece in slices for row in read_slice(piece)] == table.column(
        "id"
    ).to_pylist()


def test_a_file_that_shrank_since_slicing_ends_its_slice_with_a_dead_letter(tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"".join(post_line(number) for number in range(60)))
    outputs = list(
        ParseSlicesFn(KEY_SOURCE).process(FileSlice(str(path), 1, 100, 0, 0))
    )
    posts = [output for output in outputs if not hasattr(output, "tag")]
    (letter,) = [output.value for output in outputs if hasattr(output, "tag")]
    assert len(posts) == 60
    assert (
        letter.source == f"{path}:61" and "file unreadable from line 61" in letter.error
    )


def test_read_posts_accounts_for_every_line_of_every_file(tmp_path):
    big = _lines(MIN_SLICE_LINES + 4_000)
    (tmp_path / "big.jsonl.gz").write_bytes(gzip.compress(b"".join(big)))
    small = [post_line(number) for number in range(100_000, 100_050)]
    (tmp_path / "small.jsonl").write_bytes(b"".join(small))
    cut = gzip.compress(
        b"".join(post_line(number) for number in range(200_000, 230_000))
    )
    (tmp_path / "cut.jsonl.gz").write_bytes(cut[: len(cut) // 2])
    _, readable, _ = json_lines_slices(str(tmp_path / "cut.jsonl.gz"))

    with TestPipeline() as pipeline:
        read = pipeline | ReadPosts([str(tmp_path / "*")], KEY_SOURCE)
        counts = (
            (read["posts"], read[DEAD_LETTERS])
            | "Both" >> beam.Flatten()
            | "Kind"
            >> beam.Map(
                lambda out: (
                    "post" if hasattr(out, "event_time_us") else out.error.split(":")[0]
                )
            )
            | "Count" >> beam.combiners.Count.PerElement()
        )
        assert_that(
            counts,
            equal_to(
                [
                    ("post", len(big) - 2 + len(small) + readable),
                    ("not valid JSON", 1),
                    ("blank line", 1),
                    (f"file unreadable from line {readable + 1}", 1),
                ]
            ),
        )


@pytest.mark.slow
def test_one_and_two_workers_write_the_same_tables(tmp_path):
    from sampledata.generator import GeneratorConfig, generate, write_lines

    lines, _ = generate(GeneratorConfig(days=2, posts_per_day=12_000, authors=4_000))
    path = write_lines(lines, tmp_path / "posts.jsonl.gz")
    assert len(json_lines_slices(str(path))[0]) > 1
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        args = [
            "--input",
            str(path),
            "--output",
            str(out),
            "--direct_num_workers",
            str(workers),
        ]
        if workers > 1:
            args += ["--direct_running_mode", "multi_processing"]
        result = run_volume(args)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[workers] = out
    for table in ("volume", "topics", "bursts", "dead_letters"):
        one, two = (read_table(outputs[w], table) for w in (1, 2))
        if table == "dead_letters":
            one, two = (frame.drop("read_at") for frame in (one, two))
        key = [
            c for c in ("window_start", "kind", "topic", "source") if c in one.columns
        ]
        assert_frame_equal(one.sort(key), two.sort(key))
    assert read_table(outputs[1], "volume")["posts"].sum() > 20_000


def test_empty_files_give_no_records_and_no_dead_letters(tmp_path):
    pq.write_table(
        pa.table({"id": pa.array([], pa.string())}), tmp_path / "empty.parquet"
    )
    (tmp_path / "empty.jsonl").write_bytes(b"")
    parquet, rows, _ = parquet_slices(str(tmp_path / "empty.parquet"))
    lines_slices, lines, error = json_lines_slices(str(tmp_path / "empty.jsonl"))
    assert (rows, lines, lines_slices, error) == (0, 0, [], None)
    assert [record for piece in parquet for record in read_slice(piece)] == []
