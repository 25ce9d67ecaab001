"""Command-line options of the volume pipeline, as a Beam ``PipelineOptions`` subclass.

Every option is spelled with dashes (``--topic-kinds``); the underscore form
(``--topic_kinds``) that Beam users type by habit is accepted too. Beam's own options
(``--runner``, ``--direct_num_workers``, ``--flink_master``...) pass through.
"""

import argparse
import difflib
import os
import tempfile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
    _BeamArgumentParser,
)

from schemas.sketch import DEFAULT_LG_K
from schemas.timezone import DEFAULT_TIMEZONE
from transforms import object_store
from transforms.burst_model import BurstParams
from transforms.event_model import EventParams
from transforms.extract import parse_kinds
from transforms.files import DEFAULT_MAX_LINE_BYTES
from transforms.publish import foreign_entries, output_path, runs_dir
from transforms.topics import TOPIC_KINDS
from transforms.windows import parse_duration, window_fn_for

LOG_LEVELS = ("debug", "info", "warning", "error")
# Beam's options shown by --help (all of them: --help-beam).
COMMON_BEAM_OPTIONS = (
    "runner",
    "streaming",
    "direct_num_workers",
    "direct_running_mode",
    "flink_master",
    "parallelism",
    "environment_type",
    "environment_config",
    "setup_file",
    "prism_location",
)
PROG = "python -m pipelines.volume"


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
            help="Output folder: a pointer to this run's tables, switched at once "
            "when the run finishes (docs/operations.md).",
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
            default=DEFAULT_TIMEZONE,
            help="IANA timezone of date partitions and day windows. "
            "Default Asia/Shanghai.",
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
            help="Half-life of a topic's history (a duration, whole windows). "
            "Default 24h.",
        )
        _add(
            parser,
            "burst-warmup",
            default="12h",
            help="Nothing bursts this long after the stream's first window, while "
            "every topic is new. Default 12h.",
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
            help="File holding the hex key (at least 32 bytes) for author "
            "pseudonyms; wins over $YUQING_PSEUDONYM_KEY. Default: "
            "$YUQING_PSEUDONYM_KEY, else the file $YUQING_PSEUDONYM_KEY_FILE, else "
            "~/.config/yuqing/pseudonym.key. A missing file is created once (mode "
            "0600), except for a run whose workers are elsewhere (PortableRunner, "
            "FlinkRunner, --job_endpoint, --environment_type EXTERNAL): it needs this "
            "option or $YUQING_PSEUDONYM_KEY, and the workers read the key themselves "
            "(docs/privacy.md).",
        )
        _add(
            parser,
            "max-line-bytes",
            type=int,
            default=DEFAULT_MAX_LINE_BYTES,
            help="A JSON line longer than this many bytes is not read: it becomes a "
            "dead letter (its first 10 KB kept, masked). Default "
            f"{DEFAULT_MAX_LINE_BYTES} (1 MiB).",
        )
        # Streaming (with Beam's --streaming); see transforms/landing.py and late.py.
        _add(
            parser,
            "landing",
            default=None,
            help="With --streaming: the landing folder to watch instead of --input. "
            "Files ending .jsonl, .json, .ndjson, .gz or .parquet (not starting "
            "with . or _) are read in order of arrival as they appear. A plain "
            "JSON Lines file is read up to its last complete line and again as it "
            "grows; a .gz or Parquet file once unchanged for --settle-time. A file "
            "named _END ends the stream. Each run reads the folder from the start "
            "and replaces the output's tables.",
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
            help="With --streaming: how often the landing folder is listed. "
            "Default 1s.",
        )
        _add(
            parser,
            "settle-time",
            default="2s",
            help="With --streaming: a .gz or Parquet landing file (readable only "
            "whole) is read once it has not changed for this long; so is the last "
            "line of a JSON Lines file that does not end in a newline, if it is "
            "whole JSON (a line cut mid-way waits for the stream's end). Default 2s.",
        )
        # How the command talks: pipelines/volume.py's main().
        _add(
            parser,
            "log-level",
            default="error",
            type=str.lower,
            help="How much Beam and its workers log to stderr: debug, info, warning "
            "or error. Default error (quiet: progress and summary only).",
        )
        _add(
            parser,
            "log-file",
            default=None,
            help="Append every log line of the run, workers included, and the "
            "traceback of a failure to this file. Default none.",
        )
        _add(
            parser,
            "debug",
            action="store_true",
            default=False,
            help="On a failure, print the traceback after the one-line error.",
        )
        _add(
            parser,
            "help-beam",
            action="store_true",
            default=False,
            help="List every option of Apache Beam's own and exit.",
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
            "A source is remembered as long for its reposts' credit. Default 7d.",
        )
        _add(
            parser,
            "min-event-participants",
            type=int,
            default=EventParams.min_participants,
            help="Distinct people an event needs to be published in the events "
            "tables. "
            f"Default {EventParams.min_participants}.",
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
            problem = object_store.filesystem_problem(pattern)
            if problem:
                problems.append(f"--input {pattern}: {problem}")
                continue
            try:
                matched = FileSystems.match([pattern])[0].metadata_list
            except Exception as error:  # noqa: BLE001 - any filesystem's own error.
                problems.append(f"--input {pattern}: {error}")
                continue
            if not matched:
                problems.append(f"--input {pattern}: no file matched")
    streaming_remote = options.view_as(StandardOptions).streaming and (
        object_store.is_remote(options.output or "")
    )
    if not options.output:
        problems.append("--output is required (a folder for the tables)")
    elif not streaming_remote:  # refused in _streaming_problems
        problem = _unwritable(options.output)
        if problem:
            problems.append(f"--output {options.output}: {problem}")
    try:
        window_fn_for(parse_duration(options.window), options.timezone)
    except ValueError as error:
        problems.append(f"--window {options.window}: {error}")
    except (ZoneInfoNotFoundError, KeyError):
        pass  # the timezone's own problem, below
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
    if options.log_level not in LOG_LEVELS:
        problems.append(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
    problems.extend(runner_problems(options))
    if options.max_line_bytes < 1:
        problems.append("--max-line-bytes must be 1 or more")
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


def event_params(options: VolumeOptions) -> EventParams:
    """How bursting topics are grouped into events, and which are published."""
    return EventParams(min_participants=options.min_event_participants)


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
    if options.min_event_participants < 1:
        problems.append("--min-event-participants must be 1 or more")
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
    if options.output and object_store.is_remote(options.output):
        problems.append(
            f"--output {options.output}: streaming output must be a local or shared "
            "folder (its pane files are renamed into place); object stores take "
            "batch runs"
        )
    if not options.landing:
        problems.append(
            "--streaming needs --landing FOLDER (the folder files are dropped in)"
        )
    elif not os.path.isdir(options.landing):
        problems.append(f"--landing {options.landing}: not a folder")
    durations = {}
    for flag in (
        "allowed_lateness",
        "early_results_every",
        "poll_interval",
        "settle_time",
    ):
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


def _unwritable(output: str) -> str | None:
    """Why ``output`` cannot take the tables, or None when it can.

    Tried for real (create the runs folder beside the output, write and remove a
    probe file): permission bits say nothing to root, and a read-only mount shows
    only on writing. The output itself is left alone: it becomes the run's pointer.
    An object store output (``scheme://``) gets a probe object instead.
    """
    if object_store.is_remote(output):
        return object_store.probe_problem(output)
    output = output_path(output)
    if os.path.exists(output) and not os.path.isdir(output):
        return "exists and is not a folder"
    foreign = foreign_entries(output)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        return (
            f"holds files that are not this pipeline's tables ({shown}); "
            "give a new folder"
        )
    folder = runs_dir(output)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as error:
        return f"not writable ({error.strerror or error})"
    return None


# --- The command line as a whole ------------------------------------------------


def _all_option_classes() -> list[type]:
    """Every ``PipelineOptions`` subclass loaded (Beam's and ours), once each."""
    found, pending = {}, list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        found.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)
        pending.extend(cls.__subclasses__())
    return list(found.values())


def beam_parser() -> argparse.ArgumentParser:
    """A parser of every option Beam and ``VolumeOptions`` declare, as Beam parses."""
    parser = _BeamArgumentParser(allow_abbrev=False, prog=PROG, add_help=False)
    seen = set()
    for cls in _all_option_classes():
        if cls is VolumeOptions:
            continue
        scratch = _BeamArgumentParser(allow_abbrev=False, add_help=False)
        cls._add_argparse_args(scratch)  # noqa: SLF001 - Beam's own protocol.
        for action in scratch._actions:  # noqa: SLF001
            if not seen.intersection(action.option_strings):
                seen.update(action.option_strings)
                parser._add_action(action)  # noqa: SLF001
    VolumeOptions._add_argparse_args(parser)  # noqa: SLF001
    parser.add_argument("-h", "--help", action="store_true", default=False)
    return parser


def unknown_option_problems(argv: list[str]) -> list[str]:
    """One line for the first argument no option of Beam's or ours takes, naming
    the closest known option. Beam itself drops such arguments with a warning."""
    parser = beam_parser()
    try:
        _, unknown = parser.parse_known_args(argv)
    except SystemExit:  # argparse's own message went to stderr already
        return ["the command line could not be parsed (see above)"]
    for argument in unknown:
        if argument == "--":
            break
        if not argument.startswith("-"):
            return [f"unexpected argument {argument!r} (options start with --)"]
        name = argument.split("=", 1)[0]
        known = [
            flag for flag in parser._option_string_actions if flag.startswith("--")
        ]  # noqa: SLF001
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return [f"unknown option {name}{hint} (--help lists them)"]
    return []


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help lines end with the option's default, unless the text names it already."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if (
            "default" not in text.lower()
            and action.default not in (None, False, argparse.SUPPRESS)
            and action.option_strings
        ):
            text += " Default %(default)s."
        return text


def help_text(full_beam: bool = False) -> str:
    """``--help``: every option of the pipeline with its default, then Beam's most
    used ones (``full_beam``: all of Beam's)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s --input GLOB --output DIR [options]\n"
        "       %(prog)s --streaming --landing FOLDER --output DIR [options]",
        formatter_class=_DefaultsFormatter,
        description="Posts -> per-window volume, topics, bursts and dead letters, "
        "as Parquet tables under --output.",
        epilog="Exit status: 0 the run finished (dead letters or not); 1 it failed "
        "(one error: line; the traceback with --debug or in --log-file); 2 a usage "
        "error, or another run is writing the same output. All of Beam's options: "
        f"{PROG} --help-beam.",
    )
    VolumeOptions._add_argparse_args(parser)  # noqa: SLF001
    beam = beam_parser()
    by_dest = {
        action.dest: action
        for action in beam._actions  # noqa: SLF001
        if action.dest != "help"
    }
    volume_dests = {action.dest for action in parser._actions}  # noqa: SLF001
    group = parser.add_argument_group(
        "Apache Beam options" if full_beam else "Apache Beam options (most used)"
    )
    names = by_dest if full_beam else COMMON_BEAM_OPTIONS
    for dest in names:
        if dest in by_dest and dest not in volume_dests:
            group._add_action(by_dest[dest])  # noqa: SLF001
    return parser.format_help()


def runner_problems(options: PipelineOptions) -> list[str]:
    """A runner name Beam does not know, one line naming the closest one."""
    runner = options.view_as(StandardOptions).runner
    if runner is None or not isinstance(runner, str) or "." in runner:
        return []
    known = StandardOptions.KNOWN_RUNNER_NAMES
    lowered = {name.lower() for name in known}
    if runner.lower() in lowered or f"{runner.lower()}runner" in lowered:
        return []
    close = difflib.get_close_matches(runner, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else ""
    return [
        f"--runner {runner}: no such runner{hint} (known: {', '.join(known)}, "
        "or a runner class's full dotted name)"
    ]
