"""Command-line options of the volume pipeline, as a Beam ``PipelineOptions`` subclass.

Every option is spelled with dashes (``--topic-kinds``); the underscore form
(``--topic_kinds``) that Beam users type by habit is accepted too. Beam's own options
(``--runner``, ``--direct_num_workers``, ``--flink_master``...) pass through.
"""

import argparse
import os
import tempfile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from schemas.sketch import DEFAULT_LG_K
from transforms.bursts import BurstParams
from transforms.extract import parse_kinds
from transforms.topics import TOPIC_KINDS
from transforms.windows import parse_duration


def _add(parser, name: str, **kwargs) -> None:
    """Declare ``--name-with-dashes`` with its ``--name_with_underscores`` alias."""
    flags = [f"--{name}"]
    if "-" in name:
        flags.append(f"--{name.replace('-', '_')}")
    parser.add_argument(*flags, dest=name.replace("-", "_"), **kwargs)


class VolumeOptions(PipelineOptions):
    """Options of ``python -m pipelines.volume`` (see ``../shared/CONTRACT.md``)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        _add(
            parser,
            "input",
            action="append",
            default=None,
            help="Glob of JSON Lines (.jsonl, .gz) or Parquet post files; repeatable.",
        )
        _add(
            parser,
            "output",
            default=None,
            help="Output folder; its tables are replaced by this run's.",
        )
        _add(
            parser,
            "window",
            default="1h",
            help="Event-time window: 1h, 30m, 1d... Windows of a day or more start at "
            "local midnight in --timezone. Default 1h.",
        )
        _add(
            parser,
            "timezone",
            default="Asia/Shanghai",
            help="IANA timezone of date partitions and day windows. Default Asia/Shanghai.",
        )
        _add(
            parser,
            "topic-kinds",
            default=",".join(TOPIC_KINDS),
            help="Comma-separated topic kinds to extract: hashtag, mention, entity, "
            "keyword. Default all four.",
        )
        _add(
            parser,
            "keywords-per-post",
            type=int,
            default=5,
            help="At most this many keywords per post. Default 5.",
        )
        _add(
            parser,
            "user-dict",
            action="append",
            default=None,
            help="Extra segmentation dictionary file (jieba format); repeatable.",
        )
        _add(
            parser,
            "stopwords",
            action="append",
            default=None,
            help="Extra stop-word file, one word per line; repeatable.",
        )
        _add(
            parser,
            "sketch-lg-k",
            type=int,
            default=DEFAULT_LG_K,
            help=f"log2 of HLL sketch buckets, 4..21 (default {DEFAULT_LG_K}: about "
            "0.8%% relative standard error).",
        )
        _add(
            parser,
            "burst-threshold",
            type=float,
            default=BurstParams.threshold,
            help="Standard deviations above a topic's expected participants that make "
            f"a window burst. Default {BurstParams.threshold}.",
        )
        _add(
            parser,
            "burst-min-participants",
            type=int,
            default=BurstParams.min_participants,
            help="Distinct participants a topic needs in a window to burst (minimum "
            f"support for new topics). Default {BurstParams.min_participants}.",
        )
        _add(
            parser,
            "burst-min-ratio",
            type=float,
            default=BurstParams.min_ratio,
            help="A bursting window has at least this many times the expected "
            f"participants. Default {BurstParams.min_ratio}.",
        )
        _add(
            parser,
            "burst-half-life",
            default="24h",
            help="Half-life of a topic's history (a duration, whole windows). Default 24h.",
        )
        _add(
            parser,
            "burst-warmup",
            default="12h",
            help="Nothing bursts this long after the stream's first window, while every "
            "topic is new. Default 12h.",
        )
        _add(
            parser,
            "burst-idle-expiry",
            default="7d",
            help="A topic silent this long forgets its history (its state is freed). "
            "Default 7d.",
        )
        _add(
            parser,
            "pseudonym-key-file",
            default=None,
            help="File holding the hex key for author pseudonyms. Default: "
            "$YUQING_PSEUDONYM_KEY, else ~/.config/yuqing/pseudonym.key "
            "(created once, mode 0600).",
        )
        # Streaming (with Beam's --streaming); see transforms/landing.py and late.py.
        _add(
            parser,
            "landing",
            default=None,
            help="With --streaming: the landing folder to watch instead of --input. "
            "Files ending .jsonl, .json, .ndjson, .gz or .parquet (not starting "
            "with . or _) are read once each, in order of arrival, as they "
            "appear; writers drop them whole (write, then rename). A file named "
            "_END ends the stream. Each run reads the folder from the start and "
            "replaces the output's tables.",
        )
        _add(
            parser,
            "allowed-lateness",
            default="6h",
            help="With --streaming: how long after the watermark passes a window's "
            "end a post still counts in it (a LATE pane rewrites the window). "
            "Later posts are counted per window in the late_posts table. The "
            "watermark is the latest created_at read. Default 6h: crawlers "
            "revisit accounts and repost cascades for hours.",
        )
        _add(
            parser,
            "early-results-every",
            default="30s",
            help="With --streaming: while a window is open, write its counts so far "
            "every this much processing time (0: only when it closes). Must be "
            "shorter than --allowed-lateness. Default 30s.",
        )
        _add(
            parser,
            "poll-interval",
            default="1s",
            help="With --streaming: how often the landing folder is listed. Default 1s.",
        )
        _add(
            parser,
            "credit-reposts",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="Count a repost also as a post of every topic of the post at the "
            "root of its repost chain (its author a participant of them). "
            "--no-credit-reposts counts a repost under its own text's topics only. "
            "Default on.",
        )
        _add(
            parser,
            "repost-horizon",
            default="7d",
            help="With --streaming: how long after the end of a post's first window "
            "its id is remembered, so that a redelivered copy counts once, in that "
            "window (or in late_posts beyond the allowed lateness); a copy read "
            "later counts as a new post. Never shorter than --allowed-lateness. "
            "Streaming does not credit reposts to their root's topics. Default 7d.",
        )


def usage_errors(options: VolumeOptions) -> list[str]:
    """Every problem with the options, one line each; empty when the run may start."""
    problems = []
    if options.view_as(StandardOptions).streaming:
        problems.extend(_streaming_problems(options))
    elif not options.input:
        problems.append("--input is required (a glob of post files)")
    else:
        for pattern in options.input:
            try:
                matched = FileSystems.match([pattern])[0].metadata_list
            except Exception as error:  # noqa: BLE001 - any filesystem's own error.
                problems.append(f"--input {pattern}: {error}")
                continue
            if not matched:
                problems.append(f"--input {pattern}: no file matched")
    if not options.output:
        problems.append("--output is required (a folder for the tables)")
    else:
        problem = _unwritable(options.output)
        if problem:
            problems.append(f"--output {options.output}: {problem}")
    try:
        parse_duration(options.window)
    except ValueError as error:
        problems.append(f"--window: {error}")
    try:
        ZoneInfo(options.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"--timezone {options.timezone!r} is not an IANA timezone name")
    try:
        parse_kinds(options.topic_kinds)
    except ValueError as error:
        problems.append(f"--topic-kinds: {error}")
    problems.extend(_burst_problems(options))
    try:
        parse_duration(options.repost_horizon)
    except ValueError as error:
        problems.append(f"--repost-horizon: {error}")
    if not 4 <= options.sketch_lg_k <= 21:
        problems.append("--sketch-lg-k must be between 4 and 21")
    if options.keywords_per_post < 0:
        problems.append("--keywords-per-post must be 0 or more")
    for path in (options.user_dict or []) + (options.stopwords or []):
        if not os.path.isfile(path):
            problems.append(
                f"{path}: no such file (given as --user-dict or --stopwords)"
            )
    return problems


def burst_params(options: VolumeOptions) -> BurstParams:
    """The detector's parameters, durations converted to whole windows (at least 1)."""
    window = parse_duration(options.window)

    def windows(text: str) -> int:
        return max(1, round(parse_duration(text) / window))

    return BurstParams(
        threshold=options.burst_threshold,
        min_participants=options.burst_min_participants,
        min_ratio=options.burst_min_ratio,
        half_life_windows=float(windows(options.burst_half_life)),
        warmup_windows=windows(options.burst_warmup),
        idle_windows=windows(options.burst_idle_expiry),
    )


def _burst_problems(options: VolumeOptions) -> list[str]:
    problems = []
    for flag in ("burst_half_life", "burst_warmup", "burst_idle_expiry"):
        try:
            parse_duration(getattr(options, flag))
        except ValueError as error:
            problems.append(f"--{flag.replace('_', '-')}: {error}")
    if options.burst_threshold <= 0:
        problems.append("--burst-threshold must be positive")
    if options.burst_min_participants < 1:
        problems.append("--burst-min-participants must be 1 or more")
    if options.burst_min_ratio < 1:
        problems.append("--burst-min-ratio must be 1 or more")
    return problems


def duration_or_zero(text: str) -> int:
    """A duration in seconds like ``parse_duration``, where ``0`` (or ``off``) is 0."""
    if str(text).strip().lower() in ("0", "0s", "off", "none"):
        return 0
    return parse_duration(text)


def _streaming_problems(options: VolumeOptions) -> list[str]:
    problems = []
    if options.input:
        problems.append(
            "--input is for batch runs; with --streaming give --landing FOLDER"
        )
    if not options.landing:
        problems.append(
            "--streaming needs --landing FOLDER (the folder files are dropped in)"
        )
    elif not os.path.isdir(options.landing):
        problems.append(f"--landing {options.landing}: not a folder")
    durations = {}
    for flag in ("allowed_lateness", "early_results_every", "poll_interval"):
        try:
            durations[flag] = duration_or_zero(getattr(options, flag))
        except ValueError as error:
            problems.append(f"--{flag.replace('_', '-')}: {error}")
    if durations.get("poll_interval") == 0:
        problems.append("--poll-interval must be positive")
    early, lateness = (
        durations.get("early_results_every"),
        durations.get("allowed_lateness"),
    )
    if early and lateness is not None and early >= lateness:
        # Prism 2.77 crashes when a window closes with an early timer pending
        # (deploy/prism/README.md, caveat 1); a longer lateness avoids it.
        problems.append("--early-results-every must be shorter than --allowed-lateness")
    return problems


def _unwritable(folder: str) -> str | None:
    """Why ``folder`` cannot take the output, or None when it can.

    Tried for real (create the folder, write and remove a probe file): permission
    bits say nothing to root, and a read-only mount shows only on writing.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as error:
        return f"not writable ({error.strerror or error})"
    return None
