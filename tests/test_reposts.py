"""Reposts are participation: chains resolved to their root, reposts credited with
the root's topics (batch), and a run's tables counting them."""

import gzip
import json
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import FixedWindows

from schemas.records import Post
from tests.conftest import CASCADES, PROJECT, needs_shared, read_table, run_volume
from transforms.extract import ExtractTopicsFn
from transforms.reposts import (
    ChainEdges,
    CreditWindows,
    GatherRootTopicsFn,
    credited_topics,
    resolve_chains,
    select_rows,
)
from transforms.window_posts import WindowPosts, post_id_key

HOUR_US = 3_600_000_000
T0 = 1_700_000_000 * 1_000_000


def _edges(*rows: tuple) -> ChainEdges:
    """(id, parent id or None[, time]) -> the edges a run would gather."""
    edges = ChainEdges()
    for row in rows:
        post_id, parent = row[0], row[1]
        time_us = row[2] if len(row) > 2 else T0
        edges.add(
            post_id_key(post_id),
            None if parent is None else post_id_key(parent),
            time_us,
        )
    return edges


def _roots(lookup) -> dict[str, int | None]:
    """{id key: root key or None} for every id the lookup holds."""
    return {
        int(key): (int(root) if credited else None)
        for key, root, credited in zip(
            lookup.keys, lookup.root_keys, lookup.credited, strict=True
        )
    }


def _root_of(lookup, post_id: str) -> int | None:
    return _roots(lookup).get(post_id_key(post_id))


def test_one_hop_repost_resolves_to_its_source():
    lookup = resolve_chains(_edges(("s", None), ("r", "s")))
    assert _root_of(lookup, "r") == post_id_key("s")
    assert list(lookup.roots) == [post_id_key("s")]
    # A source alone (no copies) needs nothing from the lookup.
    assert _root_of(lookup, "s") is None


def test_deep_chain_resolves_exactly_in_logarithmic_passes():
    depth = 1_000
    rows = [("c0", None)] + [(f"c{i}", f"c{i - 1}") for i in range(1, depth + 1)]
    lookup = resolve_chains(_edges(*reversed(rows)))
    roots = _roots(lookup)
    assert len(roots) == depth
    assert set(roots.values()) == {post_id_key("c0")}
    assert lookup.passes <= depth.bit_length() + 1


def test_cycles_and_self_reposts_terminate_and_credit_nothing():
    lookup = resolve_chains(
        _edges(
            ("a", "b"),
            ("b", "c"),
            ("c", "a"),  # a cycle of three
            ("x", "y"),
            ("y", "x"),  # a cycle of two
            ("self", "self"),
            ("tail", "a"),  # leads into a cycle
            ("s", None),
            ("r", "s"),
        )
    )
    roots = _roots(lookup)
    assert roots == {post_id_key("r"): post_id_key("s")}


def test_a_chain_whose_source_is_missing_credits_nothing():
    lookup = resolve_chains(
        _edges(("r1", "gone"), ("r2", "r1"), ("r3", "r2"), ("s", None), ("k", "s"))
    )
    assert _root_of(lookup, "r1") is None
    assert _root_of(lookup, "r2") is None
    assert _root_of(lookup, "r3") is None
    assert _root_of(lookup, "k") == post_id_key("s")


def test_redelivered_copies_take_the_earliest_time():
    lookup = resolve_chains(
        _edges(("p", None, T0 + 5 * HOUR_US // 2), ("p", None, T0), ("q", None, T0))
    )
    row = lookup.find(post_id_key("p"))
    assert row >= 0 and int(lookup.first_times[row]) == T0
    assert not lookup.credited[row]
    assert lookup.find(post_id_key("q")) == -1


def test_no_credit_still_restamps_copies_but_credits_nothing():
    lookup = resolve_chains(
        _edges(("s", None), ("r", "s"), ("r", "s", T0 + HOUR_US)), credit=False
    )
    row = lookup.find(post_id_key("r"))
    assert int(lookup.first_times[row]) == T0
    assert not lookup.credited.any()
    assert len(lookup.roots) == 0


def test_credited_topics_are_a_set_union():
    own = (("hashtag", "a"), ("mention", "m"))
    root = (("hashtag", "a"), ("hashtag", "b"))
    assert credited_topics(own, root) == (
        ("hashtag", "a"),
        ("mention", "m"),
        ("hashtag", "b"),
    )
    assert credited_topics(own, ()) == own


def test_select_rows_keeps_chosen_rows_with_their_topics():
    posts = WindowPosts()
    posts.append(5, 1, True, [("hashtag", "a"), ("hashtag", "b")])
    posts.append(6, 2, False, [])
    posts.append(7, 3, False, [("hashtag", "c")])
    posts.append(8, 4, True, [("hashtag", "a")])
    part = select_rows(posts, np.array([True, False, True, True]))
    assert list(part.ids) == [5, 7, 8]
    assert [part.row_summary(row) for row in range(len(part))] == [
        (1, True, (("hashtag", "a"), ("hashtag", "b"))),
        (3, False, (("hashtag", "c"),)),
        (4, True, (("hashtag", "a"),)),
    ]


def test_root_topics_keep_the_smallest_copy_and_answer_by_key():
    gather = GatherRootTopicsFn()
    parts = [gather.create_accumulator() for _ in range(2)]
    gather.add_input(parts[0], (7, (("hashtag", "b"),)))
    gather.add_input(parts[1], (7, (("hashtag", "a"), ("mention", "m"))))
    gather.add_input(parts[1], (-3, (("hashtag", "b"),)))
    table = gather.extract_output(gather.merge_accumulators(parts))
    assert table.topics_of(7) == (("hashtag", "a"), ("mention", "m"))
    assert table.topics_of(-3) == (("hashtag", "b"),)
    assert table.topics_of(5) == ()
    assert len(table.pairs) == 3


def _post(post_id: str, author: int, hour: float, text: str, parent=None) -> Post:
    return Post(post_id, author, T0 + int(hour * HOUR_US), text, parent, None)


def window_rows(keyed) -> list[tuple]:
    """(bounds, WindowPosts) -> (post id key, window start hour, sorted topics) rows."""
    (start, _), posts = keyed
    posts.unpack()
    return [
        (
            posts.ids[row],
            (start - T0) // HOUR_US,
            tuple(sorted(topic for _, topic in posts.row_summary(row)[2])),
        )
        for row in range(len(posts))
    ]


def _run(posts: list[Post], expected: list[tuple], credit: bool = True) -> None:
    """Extraction (hashtags) and crediting into hourly windows; asserts (id, window
    hour, sorted topics) per copy."""
    expected = [(post_id_key(post_id), *rest) for post_id, *rest in expected]
    with TestPipeline() as pipeline:
        result = (
            pipeline
            | beam.Create(posts)
            | beam.ParDo(ExtractTopicsFn(["hashtag"]))
            | CreditWindows(FixedWindows(3600, offset=T0 // 1_000_000 % 3600), credit)
            | beam.FlatMap(window_rows)
        )
        assert_that(result, equal_to(expected))


def test_pipeline_credits_root_topics_in_any_input_order():
    posts = [
        _post("r2", 3, 0.5, "转发微博", "r1"),  # before its parent and the source
        _post("r1", 2, 0.2, "太过分了 #新闻#", "s"),
        _post("s", 1, 0.0, "#医疗# 人间惨剧"),
        _post("orphan", 4, 0.3, "#孤#", "never-seen"),
    ]
    _run(
        posts,
        [
            ("s", 0, ("医疗",)),
            ("r1", 0, tuple(sorted(("新闻", "医疗")))),
            ("r2", 0, ("医疗",)),
            ("orphan", 0, ("孤",)),
        ],
    )


def test_a_repost_that_adds_a_hashtag_passes_on_only_the_root_topics():
    posts = [
        _post("s", 1, 0.0, "#a#"),
        _post("r1", 2, 0.1, "#b# 转发", "s"),
        _post("r2", 3, 0.2, "转发微博", "r1"),
        _post("r3", 4, 0.3, "#b# 同意", "r1"),
        _post("r4", 5, 0.4, "#a# 又是", "r3"),
    ]
    _run(
        posts,
        [
            ("s", 0, ("a",)),
            ("r1", 0, ("a", "b")),
            ("r2", 0, ("a",)),
            ("r3", 0, ("a", "b")),
            ("r4", 0, ("a",)),
        ],
    )


def test_a_redelivered_repost_is_credited_and_restamped_to_its_first_copy():
    posts = [
        _post("s", 1, 0.0, "#a#"),
        _post("r", 2, 3.0, "转发微博", "s"),  # redelivered 2.5 hours later
        _post("r", 2, 0.5, "转发微博", "s"),
    ]
    _run(posts, [("s", 0, ("a",)), ("r", 0, ("a",)), ("r", 0, ("a",))])


def test_no_credit_keeps_own_topics_only():
    posts = [_post("s", 1, 0.0, "#a#"), _post("r", 2, 0.5, "#b#", "s")]
    _run(posts, [("s", 0, ("a",)), ("r", 0, ("b",))], credit=False)


def test_cycles_in_a_pipeline_terminate_and_keep_own_topics():
    posts = [
        _post("a", 1, 0.0, "#x#", "b"),
        _post("b", 2, 0.1, "#y#", "a"),
        _post("self", 3, 0.2, "#z#", "self"),
    ]
    _run(posts, [("a", 0, ("x",)), ("b", 0, ("y",)), ("self", 0, ("z",))])


def _write_lines(path, records: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _record(post_id, user, minute, text, parent=None) -> dict:
    record = {
        "id": post_id,
        "user_id": user,
        "created_at": f"2026-11-20T10:{minute:02d}:00+00:00",
        "text": text,
    }
    if parent is not None:
        record["repost_of"] = parent
    return record


@pytest.fixture(scope="module")
def chain_input(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reposts")
    records = [_record("1", "u0", 0, "#地震# 震感强烈")]
    records += [
        _record(
            str(100 + i), f"u{i + 1}", 1 + i % 50, "转发微博", str(99 + i) if i else "1"
        )
        for i in range(20)
    ]
    path = folder / "posts.jsonl.gz"
    _write_lines(path, records)
    return folder, path


@pytest.mark.parametrize("credit", [True, False])
def test_tables_count_reposts_as_participants_of_the_root_topic(chain_input, credit):
    folder, path = chain_input
    out = folder / f"out-{credit}"
    flag = "--credit-reposts" if credit else "--no-credit-reposts"
    result = run_volume(
        ["--input", str(path), "--output", str(out), "--topic-kinds", "hashtag", flag]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    topics = read_table(str(out), "topics").filter(topic="地震")
    volume = read_table(str(out), "volume")
    assert volume["posts"].sum() == 21 and volume["reposts"].sum() == 20
    if credit:
        assert topics["posts"].sum() == 21
        assert topics["participants"].sum() == 21
        assert topics["reposts"].sum() == 20
    else:
        assert topics["posts"].sum() == 1
    manifest = json.loads((out / "_run.json").read_text())
    assert manifest["credit_reposts"] is credit
    assert manifest["repost_horizon_seconds"] == 7 * 86_400


# The figures benchmarks/eval_bursts.py --seeds 0 --cascades reported; CI fails when
# a run falls more than CASCADES_MARGIN below them.
REPORTED = json.loads(
    (PROJECT / "benchmarks" / "eval_bursts_reported.json").read_text()
)
CASCADES_MARGIN = 0.05


@pytest.mark.slow
@needs_shared(CASCADES)
def test_surging_real_cascades_are_flagged_as_reported():
    bound = REPORTED["surging_flagged_share"] - CASCADES_MARGIN
    command = [
        sys.executable,
        "benchmarks/eval_bursts.py",
        "--seeds",
        "0",
        "--cascades",
        str(CASCADES),
        "--json",
        "--min-cascades-share",
        str(bound),
    ]
    result = subprocess.run(
        command, cwd=PROJECT, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["surging_cascades"] == REPORTED["surging_cascades"]
    assert figures["surging_flagged_share"] >= bound
