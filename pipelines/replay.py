"""Replay a finished post file into a landing folder, at N times real speed.

EXAMPLES

Feed the sample into a landing folder 3600 times faster than it happened (an hour
of posts a second), then end the stream, while a streaming run watches the folder:

    python -m pipelines.replay --input sample/posts.jsonl.gz --landing landing \\
        --speed 3600 --end-stream
    python -m pipelines.volume --streaming --landing landing --output out

As fast as possible, in files of 10,000 lines (for benchmarks):

    python -m pipelines.replay --input posts.jsonl.gz --landing landing --speed 0

The real cascades, sorted by time first (the file is grouped by cascade):

    python -m pipelines.replay \\
        --input ../shared/data/weibo_cascades/weibo_cascades_dev.jsonl.gz \\
        --landing landing --speed 0 --in-time-order --end-stream

Lines keep the file's order (as its crawler delivered them) unless --in-time-order;
the replay clock follows the latest ``created_at``
(``transforms.landing_folder.replay_batches``). Each file dropped is written whole and
renamed into place, as the landing folder requires.
"""

import argparse
import os
import sys
import time

from transforms.landing_folder import (
    END_MARKER,
    end_stream,
    in_time_order,
    read_records_for_replay,
    replay,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.replay", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--input", required=True, help="A finished JSON Lines file (.jsonl or .gz)."
    )
    parser.add_argument(
        "--landing", required=True, help="The landing folder to drop files into."
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="Times real speed (60: a minute of posts per second); 0: no "
        "pacing. Default 60.",
    )
    parser.add_argument(
        "--batch-seconds",
        "--batch_seconds",
        type=float,
        default=1.0,
        help="Wall-clock seconds of replay per dropped file. Default 1.",
    )
    parser.add_argument(
        "--batch-lines",
        "--batch_lines",
        type=int,
        default=10_000,
        help="At most this many lines per dropped file. Default 10000.",
    )
    parser.add_argument(
        "--in-time-order",
        "--in_time_order",
        action="store_true",
        help="Sort the lines by created_at first (the real cascades are "
        "grouped by cascade; replayed as they are, most of their "
        "posts arrive too late for their windows).",
    )
    parser.add_argument(
        "--prefix",
        default=None,
        help="File name prefix (default: the input's name), so several "
        "replays can share a folder.",
    )
    parser.add_argument(
        "--end-stream",
        "--end_stream",
        action="store_true",
        help=f"Drop {END_MARKER} when done: a streaming run on the folder "
        "then finishes after these posts.",
    )
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problems = []
    if not os.path.isfile(args.input):
        problems.append(f"--input {args.input}: no such file")
    if args.speed < 0:
        problems.append("--speed must be 0 or more")
    if args.batch_seconds <= 0 or args.batch_lines <= 0:
        problems.append("--batch-seconds and --batch-lines must be positive")
    if problems:
        print(f"error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    os.makedirs(args.landing, exist_ok=True)
    prefix = args.prefix or os.path.basename(args.input).split(".")[0]
    start = time.monotonic()
    records = read_records_for_replay(args.input)
    if args.in_time_order:
        records = in_time_order(records)
    files, lines = replay(
        records,
        args.landing,
        args.speed,
        args.batch_seconds,
        args.batch_lines,
        prefix,
    )
    if args.end_stream:
        end_stream(args.landing)
    print(
        f"replayed {lines} lines in {files} files into {args.landing} "
        f"in {time.monotonic() - start:.1f} s"
    )
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
