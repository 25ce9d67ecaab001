"""Streaming: a redelivered post counts once, in the window of its first copy.

Batch runs restamp copies in ``transforms.reposts`` (every copy of an id takes the
earliest copy's event time, across the whole run). A stream cannot wait for the
earliest copy, so here each id remembers the event time of the first copy read, and
a later copy is restamped to it: the window's accumulating panes then count the copy
as a duplicate of the first, whichever window its own ``created_at`` falls in. This
runs before ``transforms.late.SplitLatePosts``, so lateness is judged on the time
the copy is counted at: a copy read after the first copy's window closed for good is
counted in ``late_posts`` for that window.

State: one integer per id (ReadModifyWrite state, cleared by an event-time timer,
both supported by Flink's portable runner), kept until the watermark passes the end
of the first copy's window plus ``remember_seconds`` (``--repost-horizon``, at least
the allowed lateness): a copy read later than that counts as a new post.
"""

import typing
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import WindowFn
from apache_beam.utils.timestamp import Timestamp

from schemas.records import Post
from transforms.aggregate import window_bounds


def counted_time(first_time_us: int | None, event_time_us: int) -> int:
    """The event time a copy is counted at: the first copy's, when one was read."""
    return event_time_us if first_time_us is None else first_time_us


class FirstCopyFn(beam.DoFn):
    """(post id, Post) -> the Post, its ``event_time_us`` the first copy's."""

    FIRST_TIME = userstate.ReadModifyWriteStateSpec("first_time_us", VarIntCoder())
    FORGET = userstate.TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, window_fn: WindowFn, remember_seconds: int):
        self._window_fn = window_fn
        self._remember_us = remember_seconds * 1_000_000
        self._restamped = Metrics.counter(self.__class__, "copies_restamped")

    def process(
        self,
        element: tuple[str, Post],
        first_time=beam.DoFn.StateParam(FIRST_TIME),
        forget=beam.DoFn.TimerParam(FORGET),
    ) -> Iterable[Post]:
        _, post = element
        held = first_time.read()
        if held is None:
            first_time.write(post.event_time_us)
            _, end_us = window_bounds(self._window_fn, post.event_time_us)
            forget.set(Timestamp(micros=end_us + self._remember_us))
            yield post
            return
        if held != post.event_time_us:
            self._restamped.inc()
        yield post._replace(event_time_us=counted_time(held, post.event_time_us))

    @userstate.on_timer(FORGET)
    def forget_id(self, first_time=beam.DoFn.StateParam(FIRST_TIME)):
        first_time.clear()


class CountCopiesOnce(beam.PTransform):
    """PCollection[Post] (streaming) -> the same posts, later copies of an id
    restamped to its first copy's event time (see the module doc)."""

    def __init__(self, window_fn: WindowFn, remember_seconds: int):
        super().__init__()
        self._window_fn = window_fn
        self._remember = remember_seconds

    def expand(self, posts: beam.PCollection) -> beam.PCollection:
        return (
            posts
            | "KeyById"
            >> beam.Map(lambda post: (post.id, post)).with_output_types(
                beam.typehints.KV[str, typing.Any]
            )
            | "FirstCopy" >> beam.ParDo(FirstCopyFn(self._window_fn, self._remember))
        )
