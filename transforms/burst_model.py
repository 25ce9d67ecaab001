"""The burst model: which topics draw far more people than their own history says.

The model (SigniTrend, Schubert et al., KDD 2014, on shares rather than raw counts):
for every (kind, topic) the detector keeps an exponentially weighted mean and
variance of the topic's *share* of the window's participants (topic participants /
all participants of that window). A window's expected participants are that mean
share times the window's total, so the night-time dip and the evening peak of all
traffic move the expectation with them and are not bursts. The score is how many
standard deviations the window's participants lie above the expectation; the
deviation is floored at the Poisson deviation sqrt(expected) (and at 1), because a
topic seen a few times has no variance estimate worth trusting. A window bursts when

- the score reaches ``threshold``,
- participants reach ``min_participants`` (minimum support: new rare topics, with no
  history and so a huge score, stay quiet until enough distinct people join); for a
  topic expected to draw less than one person (new, or rare), its participants of
  the window before count too, so a surge of a new topic that straddles a window
  boundary is judged on all of its people, and
- participants are at least ``min_ratio`` times the expectation (a steady large topic
  wobbling by a few standard deviations is not news),

and the stream is past its warm-up (every topic is "new" in a stream's first hours).

Why shares with an EWMA rather than a Poisson test against a seasonal baseline: a
seasonal baseline needs a week of history per topic before it says anything, while
the monitoring needs to judge hashtags born an hour ago; the share model needs no
season. docs/bursts.md has its recall, precision and latency on planted streams
(``benchmarks/eval_bursts.py``).

Windows a topic is absent from count as share 0 (the history decays through them).
A topic idle for ``idle_windows`` starts afresh, as if new; the streaming state is
expired by a timer at the same point, so batch and streaming give the same rows.

Pure functions only; ``transforms.bursts`` applies them in Beam.
"""

import dataclasses
import functools
import math
from collections.abc import Iterable
from typing import NamedTuple

# Decay through at most this many absent windows one by one; beyond it the history
# is effectively zero anyway (and the idle expiry resets it).
MAX_DECAY_STEPS = 10_000


@dataclasses.dataclass(frozen=True)
class BurstParams:
    """Thresholds and memory of the detector, in windows of the pipeline's size."""

    threshold: float = 4.0
    min_participants: int = 30
    min_ratio: float = 2.0
    half_life_windows: float = 24.0
    warmup_windows: int = 12
    idle_windows: int = 24 * 7

    @functools.cached_property
    def alpha(self) -> float:
        """EWMA weight of the newest window for the configured half-life (computed
        once: the detector reads it several times per topic and window)."""
        return 1.0 - 0.5 ** (1.0 / self.half_life_windows)


class WindowCount(NamedTuple):
    """One topic in one window, with what the detector needs of the window."""

    start_us: int
    end_us: int
    posts: int
    participants: int
    # All participants of the window (the volume row), for the share.
    window_participants: int
    # Start of the first window of the stream, for the warm-up.
    stream_start_us: int


class Episode(NamedTuple):
    """Consecutive bursting windows of one topic."""

    onset_us: int
    end_us: int
    peak_start_us: int
    peak_participants: int
    peak_score: float
    windows: int
    posts: int


class TopicHistory(NamedTuple):
    """The state kept per topic between windows."""

    mean: float
    variance: float
    last_end_us: int
    episode: Episode | None
    # Participants of the topic's last window judged (for the support of the next).
    last_participants: int = 0


class Burst(NamedTuple):
    """A row of the ``bursts`` table (without kind and topic)."""

    start_us: int
    end_us: int
    posts: int
    participants: int
    expected: float
    score: float
    # Participants of the window before, when they counted toward this window's
    # minimum support (a new topic's surge straddling a window boundary), else 0.
    previous_participants: int = 0


def decay(
    mean: float, variance: float, alpha: float, steps: int, first_seen: int
) -> tuple[float, float]:
    """The EW mean and variance after ``steps`` windows with share 0, the first of
    them ``first_seen`` windows after the stream's start."""
    keep = 1.0 - alpha
    for seen in range(first_seen, first_seen + min(steps, MAX_DECAY_STEPS)):
        weight = 1.0 - keep**seen
        delta = -mean / weight if weight > 0 else 0.0
        variance = keep * (variance + alpha * delta * delta)
        mean -= alpha * mean
    return mean, variance


def expectation(
    window_participants: int, mean: float, variance: float
) -> tuple[float, float]:
    """(expected participants, their standard deviation) of a topic in a window of
    ``window_participants`` from the history of its share; the deviation is at least
    the Poisson one and at least 1."""
    expected = mean * window_participants
    deviation = max(
        math.sqrt(variance) * window_participants, math.sqrt(max(expected, 1.0)), 1.0
    )
    return expected, deviation


def judge_window(
    history: TopicHistory | None,
    count: WindowCount,
    params: BurstParams,
    window_us: int,
) -> tuple[TopicHistory, Burst | None, list[Episode]]:
    """Judge one window of a topic; return the new history, the burst row if the
    window bursts, and the episodes this window closes (at most two: one ended by a
    gap before this window, one ended by this window not bursting).

    Windows must come in event-time order; ``window_us`` is the nominal window size
    (day windows across a daylight-saving change are an hour off, which only shifts
    the decay by a fraction of a window).
    """
    alpha = params.alpha
    closed: list[Episode] = []
    # Participants of the window just before, when the topic had one (else 0).
    previous = 0
    if history is not None:
        gap = max(0, round((count.start_us - history.last_end_us) / window_us))
        previous = history.last_participants if gap == 0 else 0
        if gap >= params.idle_windows:
            if history.episode is not None:
                closed.append(history.episode)
            history = None
        elif gap > 0:
            first_absent = round(
                (history.last_end_us - count.stream_start_us) / window_us
            )
            mean, variance = decay(
                history.mean, history.variance, alpha, gap, first_absent
            )
            if history.episode is not None:
                closed.append(history.episode)
            history = TopicHistory(mean, variance, history.last_end_us, None)
    if history is None:
        mean, variance, episode = 0.0, 0.0, None
    else:
        mean, variance, episode = history.mean, history.variance, history.episode

    # The averages start at zero when the stream starts (a topic absent so far has
    # had share 0 all along); dividing by the weight seen since then removes that
    # start-up bias, as Adam does for its moments.
    seen = max(0, round((count.start_us - count.stream_start_us) / window_us))
    weight = 1.0 - (1.0 - alpha) ** seen
    mean_hat = mean / weight if weight > 0 else 0.0
    variance_hat = variance / weight if weight > 0 else 0.0
    expected, deviation = expectation(count.window_participants, mean_hat, variance_hat)
    score = (count.participants - expected) / deviation
    warm = count.start_us >= count.stream_start_us + params.warmup_windows * window_us
    counted_previous = previous if expected < 1.0 else 0
    bursting = (
        warm
        and count.participants + counted_previous >= params.min_participants
        and score >= params.threshold
        and count.participants >= params.min_ratio * expected
    )
    burst = None
    if bursting:
        burst = Burst(
            count.start_us,
            count.end_us,
            count.posts,
            count.participants,
            expected,
            score,
            counted_previous,
        )
        if episode is None:
            episode = Episode(
                count.start_us,
                count.end_us,
                count.start_us,
                count.participants,
                score,
                1,
                count.posts,
            )
        else:
            peak = count.participants > episode.peak_participants
            episode = Episode(
                onset_us=episode.onset_us,
                end_us=count.end_us,
                peak_start_us=count.start_us if peak else episode.peak_start_us,
                peak_participants=max(count.participants, episode.peak_participants),
                peak_score=max(score, episode.peak_score),
                windows=episode.windows + 1,
                posts=episode.posts + count.posts,
            )
    elif episode is not None:
        closed.append(episode)
        episode = None

    # The mean learns from every window, so a lasting shift is absorbed within about
    # a half-life; the variance learns from a winsorized share (capped at the
    # threshold), so a surge does not widen the deviation that judges its own next
    # windows. Deviations are taken from the debiased mean.
    total = max(count.window_participants, 1)
    share = count.participants / total
    if weight > 0:
        ceiling = (expected + params.threshold * deviation) / total
        delta = min(share, ceiling) - mean_hat
        variance = (1.0 - alpha) * (variance + alpha * delta * delta)
    mean += alpha * (share - mean)
    history = TopicHistory(mean, variance, count.end_us, episode, count.participants)
    return history, burst, closed


def is_later_pane(count: WindowCount, kept: WindowCount | None) -> bool:
    """Whether ``count`` is a later pane of its window than ``kept`` (None: no pane
    yet). Panes accumulate, so the later pane has the most participants and posts; of
    two equal ones the first kept stays."""
    return kept is None or (count.participants, count.posts) > (
        kept.participants,
        kept.posts,
    )


def latest_panes(counts: Iterable[WindowCount]) -> list[WindowCount]:
    """One count per window, in window order: of several panes of a window (early
    results, then the on-time pane) the latest (``is_later_pane``)."""
    best: dict[int, WindowCount] = {}
    for count in counts:
        if is_later_pane(count, best.get(count.start_us)):
            best[count.start_us] = count
    return [best[start] for start in sorted(best)]


def may_burst(most_participants: int, params: BurstParams) -> bool:
    """Whether a topic whose largest window drew ``most_participants`` people can
    burst at all: a window's support counts its own people and at most those of the
    window before, so a topic never reaching half the minimum support has no burst
    and no episode, whatever its history."""
    return 2 * most_participants >= params.min_participants


def judge_topic(
    counts: Iterable[WindowCount], params: BurstParams, window_us: int
) -> tuple[list[Burst], list[Episode]]:
    """All windows of one topic, in any order -> its bursts and its episodes (one
    still open at the end closed there): what the streaming detector emits once the
    watermark has passed them all."""
    counts = list(counts)
    if not counts or not may_burst(max(c.participants for c in counts), params):
        return [], []
    history, bursts, episodes = None, [], []
    for count in latest_panes(counts):
        history, burst, closed = judge_window(history, count, params, window_us)
        episodes.extend(closed)
        if burst is not None:
            bursts.append(burst)
    if history is not None and history.episode is not None:
        episodes.append(history.episode)
    return bursts, episodes
