"""Reports over the pipeline's output folder (default ``out``, where run_local.sh
writes).

EXAMPLES

    python -m reports hot --day 2026-11-22             # the day's hot hashtags
    python -m reports hot --day 2026-11-22 --week      # the week (Mon-Sun) holding it
    python -m reports hot --day 2026-11-22 --kind all --top 20 --format csv --to hot.csv
    python -m reports hot --format html --to hot.html  # last whole day, charts embedded
    python -m reports timeline '#雅安地震#' --charts charts/  # + PNG charts in charts/
    python -m reports bursts --day 2026-11-22 --format json
    python -m reports volume --week --day 2026-11-22
    python -m reports summary --output out             # what run_local.sh prints

Days and weeks are local calendar days in --timezone, which should be the
pipeline's --timezone (both default to Asia/Shanghai). Participants over a day or
week are merged from the windows' HLL sketches, never summed.
"""

import argparse
import datetime
import sys
from pathlib import Path

from reports.periods import Period
from reports.queries import KINDS
from schemas.timezone import DEFAULT_TIMEZONE

DEFAULT_OUTPUT = "out"


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def _kinds(
    values: list[str] | None, default: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    if not values:
        return default
    if "all" in values:
        return None
    return tuple(dict.fromkeys(values))


def _common(parser: argparse.ArgumentParser, *, period_help: str) -> None:
    parser.add_argument(
        "--output",
        action="append",
        help=f"The pipeline's output folder (default {DEFAULT_OUTPUT}); repeat it to "
        "report over several (e.g. one run per day), which must share one pseudonym "
        "key.",
    )
    parser.add_argument("--day", type=_date, help=period_help)
    parser.add_argument(
        "--week",
        action="store_true",
        help="The Monday-to-Sunday week holding --day "
        "(default: the last whole day's week).",
    )
    parser.add_argument(
        "--timezone",
        default=None,
        help="IANA timezone of days and printed times (default: the pipeline's, "
        f"from the output's _run.json, else {DEFAULT_TIMEZONE}).",
    )
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json", "html"),
        default="table",
        help="table (default): readable terminal text; csv: the rows; json: rows "
        "and context; html: one self-contained file with charts.",
    )
    parser.add_argument(
        "--to", type=Path, help="Write to this file instead of standard output."
    )
    parser.add_argument(
        "--charts",
        type=Path,
        metavar="DIR",
        help="Also write the charts as PNG files here.",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    hot = commands.add_parser(
        "hot", help="Hot topics of a day or week, by distinct participants"
    )
    _common(
        hot,
        period_help="The report day, YYYY-MM-DD "
        "(default: the last whole day in the output).",
    )
    hot.add_argument(
        "--kind",
        action="append",
        choices=(*KINDS, "all"),
        help="Topic kind to rank; repeatable; 'all' for every kind (default hashtag).",
    )
    hot.add_argument(
        "--top", type=_positive, default=10, help="How many topics (default 10)."
    )

    timeline = commands.add_parser(
        "timeline", help="One topic window by window, bursts marked"
    )
    timeline.add_argument(
        "topic", help="The topic as written: 雅安地震, '#雅安地震#', @人民日报..."
    )
    _common(timeline, period_help="Only this day (default: everything in the output).")
    timeline.add_argument(
        "--kind",
        choices=KINDS,
        help="The topic's kind (default: the kind with the most posts).",
    )

    bursts = commands.add_parser("bursts", help="Burst episodes, strongest first")
    _common(bursts, period_help="Episodes overlapping this day (default: all).")
    bursts.add_argument(
        "--kind",
        action="append",
        choices=(*KINDS, "all"),
        help="Topic kind; repeatable (default all).",
    )
    bursts.add_argument("--top", type=_positive, help="At most this many episodes.")

    events = commands.add_parser(
        "events", help="Events: topics bursting together, most people first"
    )
    _common(events, period_help="Events overlapping this day (default: all).")
    events.add_argument("--top", type=_positive, help="At most this many events.")

    volume = commands.add_parser("volume", help="Overall posts and distinct authors")
    _common(volume, period_help="Only this day (default: everything in the output).")
    volume.add_argument(
        "--by",
        choices=("day", "window"),
        default="day",
        help="One row per local day (default) or per window.",
    )

    summary = commands.add_parser(
        "summary", help="Row counts, accounting, top topics, bursts"
    )
    summary.add_argument(
        "--output", default=DEFAULT_OUTPUT, help="The pipeline's output folder"
    )
    summary.add_argument("--top", type=_positive, default=10)
    return parser


def _period(args, parser, *, default_latest: bool) -> Period | None:
    from reports.queries import latest_complete_day

    day = args.day
    if day is None and (args.week or default_latest):
        day = latest_complete_day(args.output, args.timezone)
        if day is None:
            parser.exit(
                1, f"{args.output}: the volume table is empty; nothing to report\n"
            )
    if day is None:
        return None
    return (
        Period.week(day, args.timezone) if args.week else Period.day(day, args.timezone)
    )


def _remote_problem(output: str) -> str | None:
    """Why an object-store ``output`` (``s3://...``) cannot be read, or None (also
    for a local folder)."""
    from reports import remote

    return remote.output_problem(output) if remote.is_remote(output) else None


def _outputs(args, parser) -> str | tuple[str, ...]:
    """The --output folders, each resolved to the run its pointer names now (one
    run per folder for the whole report, even if a run publishes meanwhile): one
    folder, or several whose pseudonym keys agree."""
    from reports.tables import KeyMismatch, check_same_key, resolve_output

    folders = args.output or [DEFAULT_OUTPUT]
    for folder in folders:
        problem = _remote_problem(folder)
        if problem:
            parser.exit(2, f"--output {folder}: {problem}\n")
        if "://" not in folder and not Path(folder).is_dir():
            parser.exit(
                2,
                f"--output {folder}: no such folder (run the pipeline or "
                "./run_local.sh first)\n",
            )
    folders = [resolve_output(folder) for folder in folders]
    if len(folders) == 1:
        return folders[0]
    try:
        check_same_key(folders)
    except KeyMismatch as error:
        parser.exit(2, f"error: {error}\n")
    return tuple(folders)


def _check_output(args, parser) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from reports.queries import timezone_mismatches

    args.output = _outputs(args, parser)
    first = args.output if isinstance(args.output, str) else args.output[0]
    if args.timezone is None:
        from reports.tables import run_manifest

        args.timezone = run_manifest(first).get("timezone", DEFAULT_TIMEZONE)
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        parser.exit(2, f"--timezone {args.timezone}: unknown timezone\n")
    if args.command != "summary" and timezone_mismatches(args.output, args.timezone):
        print(
            f"warning: {args.output} was partitioned by dates of another timezone than "
            f"{args.timezone}; pass the pipeline's --timezone to get its days",
            file=sys.stderr,
        )


def _note_key(report, output: str | tuple[str, ...]) -> None:
    """Name the pseudonym key the report's tables were made with (by fingerprint)."""
    from reports.tables import key_fingerprint

    first = output if isinstance(output, str) else output[0]
    fingerprint = key_fingerprint(first)
    if fingerprint:
        report.notes.append(
            f"Pseudonym key fingerprint {fingerprint}: participants merge only with "
            "tables of the same key."
        )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "summary":
        from reports.summary import summary_text

        problem = _remote_problem(args.output)
        if problem:
            parser.exit(2, f"--output {args.output}: {problem}\n")
        if "://" not in args.output and not Path(args.output).is_dir():
            parser.exit(2, f"--output {args.output}: no such folder\n")
        print(summary_text(args.output, args.top))
        return 0
    _check_output(args, parser)

    from reports import commands
    from reports.render import draw_charts, render, write_charts

    if args.command == "hot":
        period = _period(args, parser, default_latest=True)
        report = commands.hot_report(
            args.output, period, kinds=_kinds(args.kind, ("hashtag",)), top=args.top
        )
    elif args.command == "timeline":
        period = _period(args, parser, default_latest=False)
        try:
            report = commands.timeline_report(
                args.output,
                args.topic,
                kind=args.kind,
                period=period,
                timezone=args.timezone,
            )
        except commands.TopicNotFound as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    elif args.command == "bursts":
        period = _period(args, parser, default_latest=False)
        report = commands.bursts_report(
            args.output,
            period,
            kinds=_kinds(args.kind, None),
            timezone=args.timezone,
            top=args.top,
        )
    elif args.command == "events":
        period = _period(args, parser, default_latest=False)
        report = commands.events_report(
            args.output, period, timezone=args.timezone, top=args.top
        )
    else:
        period = _period(args, parser, default_latest=False)
        report = commands.volume_report(
            args.output, period, timezone=args.timezone, by=args.by
        )

    _note_key(report, args.output)
    pngs = draw_charts(report) if args.format == "html" or args.charts else None
    if args.charts:
        for path in write_charts(pngs, args.charts):
            print(f"chart: {path}", file=sys.stderr)
    text = render(report, args.format, pngs)
    if args.to:
        args.to.parent.mkdir(parents=True, exist_ok=True)
        args.to.write_text(text, encoding="utf-8")
        print(f"{args.format}: {args.to}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
