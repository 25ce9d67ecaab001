"""From a post to its topics: the ExtractTopics step.

Hashtags and mentions come from ``transforms.topics``; entities and keywords from the
Chinese text analyzer in ``transforms.text``, built once per worker in ``setup()``.
"""

import logging
import re
from collections.abc import Iterable, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas.records import Post, PostSummary
from transforms.posts import MAX_TEXT_CHARS
from transforms.privacy import PLACEHOLDERS
from transforms.topics import (
    KIND_ENTITY,
    KIND_HASHTAG,
    KIND_KEYWORD,
    KIND_MENTION,
    TOPIC_KINDS,
    extract_hashtags,
    extract_mentions,
)


def parse_kinds(text: str) -> tuple[str, ...]:
    """``"hashtag,mention"`` -> ``("hashtag", "mention")``; unknown kinds raise."""
    kinds = tuple(
        dict.fromkeys(part.strip() for part in text.split(",") if part.strip())
    )
    unknown = [kind for kind in kinds if kind not in TOPIC_KINDS]
    if unknown or not kinds:
        raise ValueError(
            f"unknown topic kind(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(TOPIC_KINDS)}"
        )
    return kinds


# A placeholder of masked personal information, however it is cased.
_PLACEHOLDER = re.compile("|".join(map(re.escape, PLACEHOLDERS)), re.IGNORECASE)


def without_placeholders(text: str) -> str:
    """``text`` with every masking placeholder (``<PHONE>``...) made a space, so no
    hashtag, mention, entity or keyword is ever made of one: ``#<IDCARD>#`` is no
    topic, ``#报警<PHONE>#`` is ``报警``."""
    if "<" not in text:
        return text
    return _PLACEHOLDER.sub(" ", text)


def post_topics(
    text: str, kinds: Sequence[str], analyzer=None
) -> tuple[tuple[str, str], ...]:
    """The (kind, topic) pairs of one masked post text, each pair once, taken from
    its first ``MAX_TEXT_CHARS`` characters (``parse_post`` keeps no more).

    ``analyzer`` (a ``transforms.text.TextAnalyzer``) is needed only for the
    ``entity`` and ``keyword`` kinds.
    """
    text = without_placeholders(text[:MAX_TEXT_CHARS])
    hashtags = extract_hashtags(text)
    pairs: list[tuple[str, str]] = []
    if KIND_HASHTAG in kinds:
        pairs.extend((KIND_HASHTAG, tag) for tag in hashtags)
    if KIND_MENTION in kinds:
        pairs.extend((KIND_MENTION, name) for name in extract_mentions(text))
    if analyzer is not None and (KIND_ENTITY in kinds or KIND_KEYWORD in kinds):
        entities, keywords = analyzer.analyze(text, hashtags)
        if KIND_ENTITY in kinds:
            pairs.extend((KIND_ENTITY, entity) for entity in entities)
        if KIND_KEYWORD in kinds:
            pairs.extend((KIND_KEYWORD, keyword) for keyword in keywords)
    return tuple(dict.fromkeys(pairs))


def summarize(post: Post, topics: tuple[tuple[str, str], ...]) -> PostSummary:
    return PostSummary(
        post.id, post.author, post.repost_of is not None, topics, post.repost_of
    )


class ExtractTopicsFn(beam.DoFn):
    """Post -> PostSummary stamped with the post's event time.

    A post whose extraction raises still counts, with no topics: it is a valid post
    (its line is accounted for), and a fault of the extractors must cost neither the
    run nor the post's place in ``volume``. The ``extraction_failures`` counter
    counts such posts.
    """

    def __init__(self, kinds: Sequence[str], analyzer_config: dict | None = None):
        self._kinds = tuple(kinds)
        self._analyzer_config = dict(analyzer_config or {})
        self._analyzer = None
        self._topics = Metrics.counter(self.__class__, "topics_extracted")
        self._failures = Metrics.counter(self.__class__, "extraction_failures")

    def setup(self) -> None:
        if KIND_ENTITY in self._kinds or KIND_KEYWORD in self._kinds:
            # Imported here: loading dictionaries is slow and only some runs need it.
            from transforms.text import TextAnalyzer

            self._analyzer = TextAnalyzer(**self._analyzer_config)

    def process(self, post: Post) -> Iterable[TimestampedValue]:
        yield TimestampedValue(self.summary(post), Timestamp(micros=post.event_time_us))

    def summary(self, post: Post) -> PostSummary:
        """The post's summary with its topics (none when extraction fails)."""
        try:
            topics = post_topics(post.text, self._kinds, self._analyzer)
        except Exception as error:  # noqa: BLE001 - the post counts, without topics.
            self._failures.inc()
            logging.warning(
                "topic extraction failed on post %s (%s); counted without topics",
                post.id,
                type(error).__name__,
            )
            topics = ()
        self._topics.inc(len(topics))
        return summarize(post, topics)
