"""Per-window aggregates: dedup, counts, sketches; pure functions and the transform."""

import pickle

import apache_beam as beam
import datasketches
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import FixedWindows, TimestampedValue

from schemas.records import PostSummary
from schemas.sketch import merge_sketches, merged_estimate
from transforms.aggregate import (
    AggregateWindows,
    add_post,
    aggregate_window,
    merge_window_posts,
    window_bounds,
)
from transforms.window_posts import (
    PACK_MIN_ROWS,
    ROW_ARRAYS,
    SPILL_ROWS,
    WindowPosts,
    pack_rows,
    post_id_key,
)
from transforms.windows import LocalDayWindows

HASHTAG = ("hashtag", "雅安地震")
MENTION = ("mention", "人民日报")


def _posts(*posts: PostSummary) -> WindowPosts:
    accumulator = WindowPosts()
    for post in posts:
        add_post(accumulator, post)
    return accumulator


def test_duplicates_count_once_and_are_tallied():
    post = PostSummary("p1", 1, False, (HASHTAG,))
    accumulator = _posts(post, post, PostSummary("p2", 2, True, (HASHTAG, MENTION)))
    result = aggregate_window(accumulator)
    assert (result.posts, result.duplicates, result.reposts, result.participants) == (
        2,
        1,
        1,
        2,
    )
    topics = dict(
        zip(
            zip(
                result.topic_columns["kind"], result.topic_columns["topic"], strict=True
            ),
            result.topic_columns["posts"],
            strict=True,
        )
    )
    assert topics == {HASHTAG: 2, MENTION: 1}


def test_merge_counts_overlaps_as_duplicates():
    left = _posts(
        PostSummary("p1", 1, False, (HASHTAG,)), PostSummary("p2", 2, False, (HASHTAG,))
    )
    right = _posts(
        PostSummary("p2", 2, False, (HASHTAG,)), PostSummary("p3", 3, False, (MENTION,))
    )
    result = aggregate_window(merge_window_posts([left, right]))
    assert (result.posts, result.duplicates, result.participants) == (3, 1, 3)
    assert result.topic_columns["posts"] == [2, 1]


def test_differing_copies_keep_the_same_one_whatever_the_order():
    small = PostSummary("p1", 1, False, (HASHTAG,))
    large = PostSummary("p1", 9, True, (MENTION,))
    expected = aggregate_window(_posts(small))
    for copies in ([small, large], [large, small]):
        result = aggregate_window(_posts(*copies))
        assert (result.posts, result.duplicates) == (1, 1)
        assert result.topic_columns == expected.topic_columns
        assert result.participants_sketch == expected.participants_sketch
    bundled = aggregate_window(merge_window_posts([_posts(large), _posts(small)]))
    assert bundled.topic_columns == expected.topic_columns


def test_post_id_keys_tell_every_distinct_id_apart():
    ids = [
        "0",
        "7",
        "007",
        "3500000070034102",
        "999999999999999999",
        "1000000000000000000",
        "１２",
        "12",
        "a1",
        "微博1",
    ]
    keys = [post_id_key(post_id) for post_id in ids]
    assert len(set(keys)) == len(ids)
    # Weibo's decimal ids are their own keys; anything else gets a negative one.
    assert keys[:2] == [0, 7] and keys[3] == 3500000070034102 and keys[7] == 12
    assert all(key < 0 for key in (keys[2], keys[5], keys[6], keys[8], keys[9]))
    assert post_id_key("a1") == post_id_key("a1")


def test_accumulator_survives_pickling_between_bundles():
    accumulator = _posts(
        PostSummary("p1", 1, True, (HASHTAG, MENTION)),
        PostSummary("p2", 2, False, (MENTION,)),
    )
    restored = pickle.loads(pickle.dumps(accumulator))
    add_post(restored, PostSummary("p3", 3, False, (MENTION,)))
    result = aggregate_window(restored)
    assert (result.posts, result.reposts) == (3, 1)
    assert dict(
        zip(result.topic_columns["topic"], result.topic_columns["posts"], strict=True)
    ) == {"雅安地震": 1, "人民日报": 3}


@pytest.mark.parametrize(
    ("topics_per_post", "distinct_topics"),
    [(0, 0), (3, 200), (300, 70_000)],
    ids=["no-topics", "narrow-codes", "wide-counts-and-codes"],
)
def test_accumulator_pickles_packed_and_restores_every_row(
    topics_per_post, distinct_topics
):
    accumulator = WindowPosts()
    for row in range(400):
        topics = (
            [
                ("keyword", f"t{(row * 7919 + n) % distinct_topics}")
                for n in range(topics_per_post)
            ]
            if distinct_topics
            else []
        )
        accumulator.append(
            row * 2**40 - 2**62, -row * 31, row % 3 == 0, dict.fromkeys(topics)
        )
    packed = pickle.dumps(accumulator)
    restored = pickle.loads(packed)
    for name in (*ROW_ARRAYS, "pairs"):
        assert getattr(restored, name) == getattr(accumulator, name), name
    assert aggregate_window(restored) == aggregate_window(accumulator)
    # The rows cross the shuffle in fewer bytes than the arrays hold them in.
    arrays = ROW_ARRAYS
    raw = sum(len(bytes(getattr(accumulator, name))) for name in arrays)
    assert (
        len(pickle.dumps(pack_rows(*(getattr(accumulator, name) for name in arrays))))
        < raw / 2
    )


def test_a_small_window_crosses_as_its_arrays_and_restores_every_row():
    accumulator = WindowPosts()
    for row in range(PACK_MIN_ROWS - 1):
        topics = [("hashtag", f"t{row % 5}")] if row % 4 else []
        carrier = row % 7 if row % 2 else None  # some rows carried by another post
        accumulator.append(
            row * 2**40 - 2**62, -row * 31, row % 3 == 0, topics, carrier
        )
    restored = pickle.loads(pickle.dumps(accumulator))
    for name in (*ROW_ARRAYS, "pairs"):
        assert getattr(restored, name) == getattr(accumulator, name), name
    assert aggregate_window(restored) == aggregate_window(accumulator)
    add_post(restored, PostSummary("7", 7, True, (("hashtag", "t1"),)))
    assert aggregate_window(restored).posts == PACK_MIN_ROWS


def test_spilled_rows_aggregate_as_if_kept_in_memory(tmp_path):
    blocks = SPILL_ROWS
    posts = [
        PostSummary(
            str(n % 9_000),
            n % 1_234,
            n % 5 == 0,
            ((("hashtag", f"t{n % 37}"),) if n % 3 else ()) + (MENTION,),
        )
        for n in range(3 * blocks + 100)
    ]
    # Two bundles, their topics first seen in different orders, merged after the
    # shuffle; the first ends with 100 rows too few for a file, which travel packed.
    first = WindowPosts(str(tmp_path))
    for post in posts[: 2 * blocks + 100]:
        add_post(first, post)
    second = WindowPosts(str(tmp_path))
    for post in reversed(posts[2 * blocks + 100 :]):
        add_post(second, post)
    shuffled = [pickle.dumps(first), pickle.dumps(second)]
    assert len(list(tmp_path.iterdir())) == 3  # whole blocks of rows went to files...
    assert (
        max(map(len, shuffled)) < 20_000
    )  # ...and only their names (and topics) travel
    merged = merge_window_posts(pickle.loads(blob) for blob in shuffled)
    assert len(merged) == len(posts)
    assert aggregate_window(merged) == aggregate_window(_posts(*posts))


def test_same_author_many_posts_is_one_participant():
    result = aggregate_window(
        _posts(*(PostSummary(f"p{i}", 42, False, (HASHTAG,)) for i in range(50)))
    )
    assert result.posts == 50 and result.participants == 1
    assert result.topic_columns["participants"] == [1]


@pytest.mark.slow
def test_participants_within_two_percent_for_100k_authors():
    posts = [
        PostSummary(f"p{i}", i * 7919 + 13, False, (HASHTAG,)) for i in range(100_000)
    ]
    result = aggregate_window(_posts(*posts))
    (participants,) = result.topic_columns["participants"]
    assert abs(participants - 100_000) / 100_000 < 0.02
    sketch = datasketches.hll_sketch.deserialize(
        result.topic_columns["participants_sketch"][0]
    )
    assert abs(sketch.get_estimate() - 100_000) / 100_000 < 0.02


def test_sketches_of_two_windows_merge_to_the_union():
    first = aggregate_window(
        _posts(*(PostSummary(f"a{i}", i, False, (HASHTAG,)) for i in range(3_000)))
    )
    second = aggregate_window(
        _posts(
            *(PostSummary(f"b{i}", i, False, (HASHTAG,)) for i in range(2_000, 6_000))
        )
    )
    blobs = [
        first.topic_columns["participants_sketch"][0],
        second.topic_columns["participants_sketch"][0],
    ]
    union = merged_estimate(blobs)
    assert abs(union - 6_000) / 6_000 < 0.02
    summed = (
        first.topic_columns["participants"][0] + second.topic_columns["participants"][0]
    )
    assert summed > 6_900  # summing windows would count the 1,000 shared authors twice
    assert merged_estimate([merge_sketches(blobs)]) == union


# SAMPLE_DATA: (event second, post) pairs over two one-hour windows.
SAMPLE_DATA = [
    (10, PostSummary("p1", 1, False, (HASHTAG,))),
    (20, PostSummary("p1", 1, False, (HASHTAG,))),  # redelivered
    (30, PostSummary("p2", 2, True, (HASHTAG, MENTION))),
    (3_700, PostSummary("p3", 1, False, (MENTION,))),
]


@pytest.mark.parametrize(
    "windowing", [None, {}], ids=["explicit-window-keys", "beam-windows"]
)
def test_aggregate_windows_transform_per_window(windowing):
    with TestPipeline() as pipeline:
        tables = (
            pipeline
            | "Create" >> beam.Create(SAMPLE_DATA)
            | "Stamp" >> beam.Map(lambda pair: TimestampedValue(pair[1], pair[0]))
            | "Aggregate" >> AggregateWindows(FixedWindows(3600), windowing=windowing)
        )
        volume = tables | "VolumeRows" >> beam.FlatMap(
            lambda element: [
                (
                    row["window_start"].timestamp(),
                    row["posts"],
                    row["duplicates"],
                    row["participants"],
                )
                for row in element[2]["volume"].to_pylist()
            ]
        )
        topics = tables | "TopicRows" >> beam.FlatMap(
            lambda element: [
                (
                    row["window_start"].timestamp(),
                    row["kind"],
                    row["topic"],
                    row["posts"],
                    row["reposts"],
                )
                for row in element[2]["topics"].to_pylist()
            ]
        )
        assert_that(
            volume, equal_to([(0.0, 2, 1, 2), (3600.0, 1, 0, 1)]), label="Volume"
        )
        assert_that(
            topics,
            equal_to(
                [
                    (0.0, "hashtag", "雅安地震", 2, 1),
                    (0.0, "mention", "人民日报", 1, 1),
                    (3600.0, "mention", "人民日报", 1, 0),
                ]
            ),
            label="Topics",
        )


def test_window_bounds_follow_the_window_function():
    hour = 3_600_000_000
    assert window_bounds(FixedWindows(3600), 5 * hour + 17) == (5 * hour, 6 * hour)
    # A Beijing day starts at 16:00 UTC the day before.
    start, end = window_bounds(LocalDayWindows(1, "Asia/Shanghai"), 20 * hour)
    assert (start, end) == (16 * hour, 40 * hour)


def test_sketches_do_not_depend_on_arrival_order_or_bundling():
    # Enough authors that the sketches leave DataSketches' exact coupon modes.
    posts = [
        PostSummary(f"p{i:05d}", i * 7919 % 50_021, i % 3 == 0, (HASHTAG,))
        for i in range(5_000)
    ]
    in_order = aggregate_window(_posts(*posts))
    reversed_order = aggregate_window(_posts(*reversed(posts)))
    bundled = aggregate_window(
        merge_window_posts([_posts(*posts[1::2]), _posts(*posts[::2])])
    )
    for result in (reversed_order, bundled):
        assert result.participants_sketch == in_order.participants_sketch
        assert result.topic_columns == in_order.topic_columns
