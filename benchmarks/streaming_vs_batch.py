#!/usr/bin/env python
"""Replay a finished file through the streaming pipeline and compare its final tables
with a batch run over the same file: by default, the real Weibo cascades.

    # the cascades, in time order; then as the file lists them; then the sample
    .venv/bin/python benchmarks/streaming_vs_batch.py
    .venv/bin/python benchmarks/streaming_vs_batch.py --file-order
    .venv/bin/python benchmarks/streaming_vs_batch.py \
        --input sample/posts.jsonl.gz --json-out r.json

Steps: ``python -m pipelines.volume`` in batch over the file; then the same command
with ``--streaming`` on Prism watching an empty landing folder, while the file is
replayed into it without pacing (``transforms.landing_folder.replay``, files of
``--batch-lines`` lines, sorted by ``created_at`` first unless ``--file-order``) and
the stream is ended; the run finishes by itself once its last windows have fired.
Then the latest pane of every window (``reports.panes.read_latest_panes``) is
compared with the batch tables, and the lines are accounted for.

The cascades file is grouped by cascade, so event time jumps back years between
cascades: replayed in file order, a streaming run whose watermark follows the
latest ``created_at`` counts most posts in ``late_posts`` (the comparison then shows
where they went). In time order the streaming tables must equal the batch ones:
``volume`` and ``topics`` row for row (sketch bytes aside: they depend on the order
authors were added, their estimates are the ``participants`` column, compared
exactly), ``bursts``, ``burst_episodes``, ``events`` and ``event_windows`` row for
row. Both runs credit reposts
with their chain root's topics (``--no-credit-reposts`` turns it off in both);
streaming credits a repost only when its source was read within
``--repost-horizon`` of the source's window, so a replay compares exactly with a
horizon longer than the cascades' longest gap from source to repost.

Early panes come every 30 s, the pipeline's default (``--early-results-every 0``
turns them off). A replay of years without pacing opens thousands of windows at
once, each with its own processing-time trigger.

Prints the figures and the verdicts; ``--json-out`` writes them as one object.
Exits 1 when a table that must match does not.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "benchmarks"))

from streaming_memory import KEY, mib, start_streaming_run  # noqa: E402
from throughput import read_table  # noqa: E402

from reports.panes import read_latest_panes  # noqa: E402
from transforms.landing_folder import (  # noqa: E402
    end_stream,
    in_time_order,
    read_records_for_replay,
    replay,
)

CASCADES = (
    PROJECT.parent
    / "shared"
    / "data"
    / "weibo_cascades"
    / "weibo_cascades_dev.jsonl.gz"
)
# Table -> the columns that identify a row.
ROW_KEYS = {
    "volume": ["window_start"],
    "topics": ["window_start", "kind", "topic"],
    "bursts": ["window_start", "kind", "topic"],
    "burst_episodes": ["onset", "kind", "topic"],
    "events": ["event_id"],
    "event_windows": ["event_id", "window_start"],
}


def read_stream(out: Path, table: str) -> pl.DataFrame:
    if not list(out.glob(f"{table}/**/*.parquet")):
        return pl.DataFrame()
    return read_latest_panes(str(out), table).drop("date", strict=False)


def comparable(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    if frame.is_empty():
        return frame
    return frame.drop("participants_sketch", "date", strict=False).sort(ROW_KEYS[table])


def compare(batch: pl.DataFrame, stream: pl.DataFrame, table: str) -> dict:
    """Rows of each side, and ``equal`` or how they differ."""
    batch, stream = comparable(batch, table), comparable(stream, table)
    result = {"batch_rows": batch.height, "stream_rows": stream.height}
    if batch.equals(stream):
        result["verdict"] = "equal"
        return result
    keys = ROW_KEYS[table]
    only_batch = (
        batch.join(stream, on=keys, how="anti").height
        if stream.height
        else batch.height
    )
    only_stream = (
        stream.join(batch, on=keys, how="anti").height
        if batch.height
        else stream.height
    )
    result["verdict"] = (
        f"differ: {only_batch} rows only in batch, {only_stream} only in streaming"
    )
    return result


def run_batch(source: Path, out: Path, options: list[str]) -> float:
    env = {**os.environ, "YUQING_PSEUDONYM_KEY": KEY}
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.volume",
            "--input",
            str(source),
            "--output",
            str(out),
            *options,
        ],
        cwd=PROJECT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.monotonic() - started


def run_stream(
    records: list[bytes],
    work: Path,
    options: list[str],
    batch_lines: int,
    timeout: float,
) -> dict:
    """Streaming run fed ``records`` through a landing folder; its figures."""
    landing, out = work / "landing", work / "stream"
    landing.mkdir()
    started = time.monotonic()
    _, process, sampler = start_streaming_run(
        landing, out, options, work / "stream.log"
    )
    try:
        files, lines = replay(
            records, str(landing), speed=0, batch_lines=batch_lines, prefix="replay"
        )
        end_stream(str(landing))
        replayed = time.monotonic() - started
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The whole session: the pipeline's Prism too, which outlives its parent.
        os.killpg(process.pid, signal.SIGKILL)
        raise SystemExit(
            f"the streaming run did not finish within {timeout:.0f} s "
            f"(log: {work / 'stream.log'})"
        ) from None
    finally:
        sampler.stopped.set()
    if code != 0:
        raise SystemExit(
            f"the streaming run exited {code}: "
            f"{(work / 'stream.log').read_text()[-3000:]}"
        )
    return {
        "files": files,
        "lines": lines,
        "replay_seconds": round(replayed, 1),
        "seconds": round(time.monotonic() - started, 1),
        "peak_mib": {name: mib(value) for name, value in sampler.peak.items()},
        "out": out,
    }


def accounting(out: Path, stream: bool) -> dict:
    read = read_stream if stream else read_table
    volume, dead = read(out, "volume"), read(out, "dead_letters")
    late = read(out, "late_posts") if stream else pl.DataFrame()
    figures = {
        "windows": volume.height,
        "posts": int(volume["posts"].sum()),
        "duplicates": int(volume["duplicates"].sum()),
        "dead_letters": dead.height,
        "late_posts": int(late["posts"].sum()) if late.height else 0,
    }
    figures["accounted_lines"] = sum(
        figures[name] for name in ("posts", "duplicates", "dead_letters", "late_posts")
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=CASCADES)
    parser.add_argument(
        "--file-order",
        action="store_true",
        help="Replay the lines as the file lists them, not sorted by created_at.",
    )
    parser.add_argument("--window", default="1h")
    parser.add_argument("--topic-kinds", default="hashtag,mention,entity,keyword")
    parser.add_argument("--allowed-lateness", default="6h")
    parser.add_argument("--early-results-every", default="30s")
    parser.add_argument(
        "--repost-horizon",
        default="7d",
        help="Passed to both runs: how long streaming remembers a source for its "
        "reposts (batch credits at any distance).",
    )
    parser.add_argument(
        "--no-credit-reposts",
        action="store_true",
        help="Count reposts under their own topics only, in both runs.",
    )
    parser.add_argument("--batch-lines", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=3_600)
    parser.add_argument(
        "--keep", type=Path, default=None, help="Keep the outputs in this folder."
    )
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)

    common = ["--window", args.window, "--topic-kinds", args.topic_kinds]
    common += ["--repost-horizon", args.repost_horizon]
    common += ["--no-credit-reposts"] if args.no_credit_reposts else []
    streaming = [
        "--allowed-lateness",
        args.allowed_lateness,
        "--early-results-every",
        args.early_results_every,
    ]
    work = Path(tempfile.mkdtemp(prefix="yuqing-stream-vs-batch-"))
    try:
        records = list(read_records_for_replay(str(args.input)))
        if not args.file_order:
            records = in_time_order(records)
        order = "in file order" if args.file_order else "in time order"
        print(f"{args.input.name}: {len(records):,} lines, replayed {order}")
        batch_seconds = run_batch(args.input, work / "batch", common)
        print(f"batch run: {batch_seconds:.1f} s")
        stream = run_stream(
            records, work, common + streaming, args.batch_lines, args.timeout
        )
        print(
            f"streaming run on Prism: {stream['seconds']} s ({stream['files']} files "
            f"replayed in {stream['replay_seconds']} s), peak RSS python "
            f"{stream['peak_mib']['python']} MiB, prism {stream['peak_mib']['prism']} "
            f"MiB, total {stream['peak_mib']['total']} MiB"
        )
        result = {
            "input": str(args.input),
            "order": "file" if args.file_order else "time",
            "lines": len(records),
            "options": common + streaming,
            "batch_seconds": round(batch_seconds, 1),
            "stream": {key: value for key, value in stream.items() if key != "out"},
            "batch_accounting": accounting(work / "batch", stream=False),
            "stream_accounting": accounting(stream["out"], stream=True),
            "tables": {
                table: compare(
                    read_table(work / "batch", table),
                    read_stream(stream["out"], table),
                    table,
                )
                for table in ROW_KEYS
            },
        }
        for side in ("batch", "stream"):
            figures = result[f"{side}_accounting"]
            print(
                f"{side:>6}: {figures['windows']:,} windows, {figures['posts']:,} "
                f"posts, {figures['duplicates']:,} duplicates, "
                f"{figures['dead_letters']:,} dead letters, {figures['late_posts']:,} "
                f"late posts: {figures['accounted_lines']:,} of {len(records):,} lines"
            )
        for table, comparison in result["tables"].items():
            print(
                f"{table:>15}: batch {comparison['batch_rows']:,} rows, "
                f"streaming {comparison['stream_rows']:,}: {comparison['verdict']}"
            )
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    every_line = all(
        result[f"{side}_accounting"]["accounted_lines"] == len(records)
        for side in ("batch", "stream")
    )
    must_match = args.file_order or all(
        table["verdict"] == "equal" for table in result["tables"].values()
    )
    return 0 if every_line and must_match else 1


if __name__ == "__main__":
    sys.exit(main())
