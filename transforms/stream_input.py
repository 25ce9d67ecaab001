"""Streaming input as one composite: the landing folder's posts, each id counted
once, reposts credited with their chain root's topics, posts beyond the allowed
lateness counted into ``late_posts``; and the dead letters."""

import dataclasses

import apache_beam as beam
from apache_beam.transforms.window import WindowFn

from schemas.keys import PseudonymKeySource
from transforms.landing import ReadLanding
from transforms.late import LATE_POSTS, CountLatePosts, SplitLatePosts
from transforms.read import DEAD_LETTERS
from transforms.redelivery import CountCopiesOnce
from transforms.reposts_streaming import CreditRepostsInStream, with_event_time
from transforms.rolling import WriteRollingTables


@dataclasses.dataclass(frozen=True)
class StreamInputSettings:
    """What the streaming input needs of the run's options (durations in seconds)."""

    landing: str
    poll_seconds: int
    settle_seconds: int
    stable_seconds: int
    max_line_bytes: int
    lateness_seconds: int
    remember_seconds: int
    flush_seconds: int
    credit_reposts: bool
    topic_kinds: tuple[str, ...]
    analyzer_config: dict
    root: str
    timezone: str


class ReadStreamPosts(beam.PTransform):
    """PBegin -> {"posts": Post} (no crediting) or {"summaries": PostSummary} (with
    ``credit_reposts``: topics extracted, reposts credited by
    ``transforms.reposts_streaming``, judged late on their read stamp), and
    {"dead_letters": DeadLetter}. Late posts are written to ``late_posts`` here."""

    def __init__(
        self,
        settings: StreamInputSettings,
        window_fn: WindowFn,
        key_source: PseudonymKeySource,
    ):
        super().__init__()
        self._settings = settings
        self._window_fn = window_fn
        self._key_source = key_source

    def expand(self, pipeline: beam.pvalue.PBegin):
        settings, window_fn = self._settings, self._window_fn
        read = pipeline | "ReadLanding" >> ReadLanding(
            settings.landing,
            self._key_source,
            settings.poll_seconds,
            settings.settle_seconds,
            stable_seconds=settings.stable_seconds,
            max_line_bytes=settings.max_line_bytes,
        )
        posts = read["posts"] | "CountCopiesOnce" >> CountCopiesOnce(
            window_fn, settings.remember_seconds
        )
        if settings.credit_reposts:
            posts = posts | "CreditReposts" >> CreditRepostsInStream(
                window_fn,
                settings.lateness_seconds,
                settings.remember_seconds,
                settings.topic_kinds,
                settings.analyzer_config,
            )
        split = posts | "SplitLatePosts" >> SplitLatePosts(
            window_fn, settings.lateness_seconds
        )
        (
            split[LATE_POSTS]
            | "CountLatePosts" >> CountLatePosts(settings.flush_seconds)
            | "WriteLatePosts" >> WriteRollingTables(settings.root, settings.timezone)
        )
        # Every post read, copies too: the events' representative texts.
        outputs = {"read": read["posts"], DEAD_LETTERS: read[DEAD_LETTERS]}
        if settings.credit_reposts:
            summaries = split["posts"] | "WithEventTime" >> beam.Map(with_event_time)
            return {"summaries": summaries, **outputs}
        return {"posts": split["posts"], **outputs}
