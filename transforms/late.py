"""Late posts: event-time windowing for streaming, and the posts it would drop.

A streaming run counts a post in its window while the window is open: until the
watermark passes the window's end plus the allowed lateness. A post arriving after
that is *beyond the lateness*: Beam would drop it without a trace, so
``SplitLatePosts`` takes it out first and ``CountLatePosts`` counts it per window in
the ``late_posts`` table. Every input line therefore ends in exactly one place:

    lines = sum(volume.posts) + sum(volume.duplicates) + dead letters
            + sum(late_posts.posts)

A post that is late but within the lateness is counted normally: its window fires
again (a LATE pane) and the window's files are rewritten with it included.

The split needs the watermark a post was read under: ``transforms.landing`` stamps,
as every element's Beam timestamp, the latest event time read before the post's file
(the watermark it reports a few seconds later; the runner's watermark is never
ahead of it, so a post the split lets through is never dropped). Posts keep that
stamp through this split and get their event time afterwards (``ExtractTopicsFn``).
"""

from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, userstate, window
from apache_beam.transforms.window import WindowFn
from apache_beam.utils.windowed_value import PaneInfo, PaneInfoTiming, WindowedValue

from schemas import tables
from schemas.records import Post, WindowTables
from transforms.aggregate import window_bounds

LATE_POSTS = "late_posts"
# The aggregation keeps a window this much longer than the split does, so a post
# the split let through is never dropped by the runner at the edge (watermarks are
# kept in milliseconds by some runners, microseconds here).
LATENESS_MARGIN_SECONDS = 1


def is_beyond_lateness(
    window_end_us: int, allowed_lateness_us: int, watermark_us: int
) -> bool:
    """Whether a post of the window ending at ``window_end_us``, read under
    ``watermark_us``, comes after its window closed for good."""
    return window_end_us + allowed_lateness_us <= watermark_us


def streaming_windowing(
    allowed_lateness_seconds: int, early_every_seconds: int
) -> dict:
    """Keyword arguments of ``beam.WindowInto`` for the aggregation in streaming.

    Each window fires when the watermark passes its end (ON_TIME), every
    ``early_every_seconds`` of processing time before that while posts arrive (EARLY;
    0 turns early panes off), and once per bundle of late posts within the lateness
    (LATE). Panes accumulate: each holds every post of the window so far, so a
    redelivered copy is dropped against all earlier copies, and a reader needs only
    the latest pane. ``late=AfterCount(1)`` also keeps Prism 2.77 from a crash when a
    window closes with an early timer pending (``deploy/prism/README.md``).
    """
    early = (
        trigger.AfterProcessingTime(early_every_seconds)
        if early_every_seconds
        else None
    )
    return {
        "trigger": trigger.AfterWatermark(early=early, late=trigger.AfterCount(1)),
        "allowed_lateness": allowed_lateness_seconds + LATENESS_MARGIN_SECONDS,
        "accumulation_mode": trigger.AccumulationMode.ACCUMULATING,
    }


class SplitLatePostsFn(beam.DoFn):
    """Post (timestamped with the watermark it was read under) -> the same Post
    (main output), or (window_start_us, window_end_us) on ``LATE_POSTS`` when the
    post's window closed before it was read."""

    def __init__(self, window_fn: WindowFn, allowed_lateness_seconds: int):
        self._window_fn = window_fn
        self._lateness_us = allowed_lateness_seconds * 1_000_000
        self._late = Metrics.counter(self.__class__, "late_posts")

    def process(self, post: Post, timestamp=beam.DoFn.TimestampParam) -> Iterable:
        start_us, end_us = window_bounds(self._window_fn, post.event_time_us)
        if is_beyond_lateness(end_us, self._lateness_us, timestamp.micros):
            self._late.inc()
            yield beam.pvalue.TaggedOutput(LATE_POSTS, (start_us, end_us))
        else:
            yield post


class SplitLatePosts(beam.PTransform):
    """PCollection[Post] -> {"posts": PCollection[Post], "late_posts":
    PCollection[(window_start_us, window_end_us)]}."""

    def __init__(self, window_fn: WindowFn, allowed_lateness_seconds: int):
        super().__init__()
        self._window_fn = window_fn
        self._lateness = allowed_lateness_seconds

    def expand(self, posts: beam.PCollection):
        split = posts | "SplitByLateness" >> beam.ParDo(
            SplitLatePostsFn(self._window_fn, self._lateness)
        ).with_outputs(LATE_POSTS, main="posts")
        return {"posts": split.posts, LATE_POSTS: split[LATE_POSTS]}


def late_posts_table(window_start_us: int, window_end_us: int, posts: int) -> pa.Table:
    """One ``late_posts`` row."""
    return pa.Table.from_pydict(
        {
            "window_start": [window_start_us],
            "window_end": [window_end_us],
            "posts": [posts],
        },
        schema=tables.LATE_POSTS,
    )


def add_late_posts(so_far: tuple[int, int] | None, posts: int) -> tuple[int, int]:
    """(late posts counted so far, panes written so far) of a window, or None for a
    window with none yet -> the same after ``posts`` more in one more pane."""
    counted, panes = so_far or (0, 0)
    return counted + posts, panes + 1


class RunningLateCountFn(beam.DoFn):
    """((window_start_us, window_end_us), late posts since the last firing) ->
    ((window_start_us, window_end_us), late posts so far), as pane N of that
    window's count, N counting this window's outputs.

    The pane is numbered here rather than taken from the firing: firings of one
    window may reach this step in any order, and a reader keeps the highest pane,
    which must be the highest total. State: two integers per window that ever had a
    late post.
    """

    COUNTED = userstate.ReadModifyWriteStateSpec("counted", PickleCoder())

    def process(
        self,
        element: tuple[tuple[int, int], int],
        timestamp=beam.DoFn.TimestampParam,
        window=beam.DoFn.WindowParam,
        counted=beam.DoFn.StateParam(COUNTED),
    ):
        bounds, posts = element
        total, panes = add_late_posts(counted.read(), posts)
        counted.write((total, panes))
        index = panes - 1
        yield WindowedValue(
            (bounds, total),
            timestamp,
            (window,),
            PaneInfo(index == 0, False, PaneInfoTiming.EARLY, index, index),
        )


class CountLatePosts(beam.PTransform):
    """PCollection[(window_start_us, window_end_us)] ->
    PCollection[(window_start_us, window_end_us, {"late_posts": pa.Table})],
    the running count of each window's late posts.

    The windows these posts belong to are closed, so the counting happens in the
    global window, firing every ``flush_seconds`` of processing time while late posts
    come in. Each firing counts the posts since the previous one (discarding panes:
    a runner that keeps accumulating panes' inputs, as Prism does, would hold every
    late post for the whole run), and ``RunningLateCountFn`` adds them up, so each
    element holds the window's count so far and its file replaces the previous one.
    """

    def __init__(self, flush_seconds: int):
        super().__init__()
        self._flush = flush_seconds

    def expand(self, late: beam.PCollection) -> beam.PCollection:
        return (
            late
            | "InGlobalWindow"
            >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterProcessingTime(self._flush)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
            | "CountSinceLastFiring" >> beam.combiners.Count.PerElement()
            | "RunningCount" >> beam.ParDo(RunningLateCountFn())
            | "ToTable"
            >> beam.MapTuple(
                lambda bounds, count: (
                    *bounds,
                    {LATE_POSTS: late_posts_table(*bounds, count)},
                )
            ).with_output_types(WindowTables)
        )
