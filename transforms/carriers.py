"""Top carriers: per topic and window, the posts whose spread carried it most (a
post carries itself and the reposts whose chain root it is), the evidence events
are told apart by (``transforms.event_model``).
"""

import numpy as np

from transforms.window_posts import WindowPosts

# Carriers kept per topic and window: the posts whose spread carried it most.
CARRIERS_PER_TOPIC = 3


def flat_topic_rows(
    rows: np.ndarray, topic_ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows' positions in ``topic_codes`` -> (index of every code of those rows,
    the row each belongs to), row by row."""
    stops = topic_ends[rows]
    starts = np.where(rows > 0, topic_ends[np.maximum(rows - 1, 0)], 0)
    counts = stops - starts
    offsets = np.cumsum(counts) - counts
    index = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(
        starts - offsets, counts
    )
    return index, np.repeat(rows, counts)


def top_carriers(
    codes: np.ndarray,
    carriers: np.ndarray,
    reposts: np.ndarray,
    per_topic: int = CARRIERS_PER_TOPIC,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One (topic code, carrier, is repost) per post and topic -> the ``per_topic``
    carriers of most posts per code, as arrays (code, carrier, posts, reposts),
    by code, then posts descending, then carrier (ties go to the smaller key).

    >>> top_carriers(np.array([0, 0, 0, 1]), np.array([7, 7, 5, 5]),
    ...              np.array([1, 1, 0, 0]), per_topic=1)[:3]
    (array([0, 1]), array([7, 5]), array([2, 1]))
    """
    if not len(codes):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    order = np.lexsort((carriers, codes))
    codes, carriers, reposts = codes[order], carriers[order], reposts[order]
    first = np.concatenate(
        ([True], (codes[1:] != codes[:-1]) | (carriers[1:] != carriers[:-1]))
    )
    starts = np.flatnonzero(first)
    group_codes, group_carriers = codes[starts], carriers[starts]
    posts = np.diff(np.append(starts, len(codes)))
    group_reposts = np.add.reduceat(reposts.astype(np.int64), starts)
    ranked = np.lexsort((group_carriers, -posts, group_codes))
    ranked_codes = group_codes[ranked]
    code_starts = np.flatnonzero(
        np.concatenate(([True], ranked_codes[1:] != ranked_codes[:-1]))
    )
    rank = np.arange(len(ranked)) - np.repeat(
        code_starts, np.diff(np.append(code_starts, len(ranked)))
    )
    keep = ranked[rank < per_topic]
    return group_codes[keep], group_carriers[keep], posts[keep], group_reposts[keep]


def carrier_columns(
    accumulator: WindowPosts,
    rows: list[int],
    per_code: list[list | None],
    carriers_from: int,
) -> dict[str, list]:
    """The top carriers of the window's topics of at least ``carriers_from`` posts
    (``per_code``: [posts, reposts, sketch] per topic code, as counted)."""
    eligible = np.array(
        [entry is not None and entry[0] >= carriers_from for entry in per_code],
        dtype=np.bool_,
    )
    columns: dict[str, list] = {
        name: [] for name in ("kind", "topic", "post_key", "posts", "reposts")
    }
    if not eligible.any():
        return columns
    row_index = np.array(rows, dtype=np.int64)
    index, of_row = flat_topic_rows(
        row_index, np.frombuffer(accumulator.topic_ends, dtype=np.int64)
    )
    codes = np.frombuffer(accumulator.topic_codes, dtype=np.int32)[index]
    keep = eligible[codes]
    of_row = of_row[keep]
    found = top_carriers(
        codes[keep].astype(np.int64),
        np.frombuffer(accumulator.carriers, dtype=np.int64)[of_row],
        np.frombuffer(accumulator.reposts, dtype=np.uint8)[of_row],
    )
    pairs = accumulator.pairs
    for code, carrier, posts, reposts in zip(*(a.tolist() for a in found), strict=True):
        columns["kind"].append(pairs[code][0])
        columns["topic"].append(pairs[code][1])
        columns["post_key"].append(carrier)
        columns["posts"].append(posts)
        columns["reposts"].append(reposts)
    return columns
