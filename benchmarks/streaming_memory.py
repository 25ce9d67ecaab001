#!/usr/bin/env python
"""Peak memory of a streaming run after 100k and after 1M replayed posts.

    .venv/bin/python benchmarks/streaming_memory.py                  # 100k, then 1M
    .venv/bin/python benchmarks/streaming_memory.py \\
        --checkpoints 100000 250000 500000 750000 1000000
    .venv/bin/python benchmarks/streaming_memory.py \\
        --max-backlog 0  # each phase dropped at once
    .venv/bin/python benchmarks/streaming_memory.py \\
        --topic-kinds hashtag,mention,entity,keyword
    .venv/bin/python benchmarks/streaming_memory.py \\
        -- --burst-idle-expiry 12h  # extra pipeline options

A generated stream (``sampledata``: 25,000 posts a day, so 1M posts span 40 days of
event time and hourly windows keep closing) is replayed, without pacing, into a
landing folder that ``python -m pipelines.volume --streaming`` watches on Prism.
At each checkpoint the script waits until every line dropped so far is accounted
for in the tables (latest panes: posts + duplicates + dead letters + late posts)
and prints the peak resident memory so far of the Python process (the SDK worker
runs in it, LOOPBACK) and of Prism, sampled every 0.2 s. Memory that does not grow
with the posts seen is the claim: state lives only for windows still open (window +
allowed lateness) and redelivered ids are deduplicated only within them.

Each checkpoint also reports the event time the replayed lines span and the
burst detector's topic keys, counted from the generated posts: (kind, topic) keys
seen so far, and keys with a count within the last ``--burst-idle-expiry`` of event
time (the keys whose state the detector still holds; the rest have expired).
Options after ``--`` go to the pipeline as they are.

Prints one line per checkpoint and the whole result as JSON (``--json-out FILE``).
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from pipelines.options import duration_or_zero  # noqa: E402
from reports.panes import read_latest_panes  # noqa: E402
from sampledata.generator import BEIJING, GeneratorConfig, generate  # noqa: E402
from transforms.landing_folder import drop_file, end_stream  # noqa: E402
from transforms.posts import InvalidPost, decode_json_line, parse_post  # noqa: E402
from transforms.topics import extract_hashtags, extract_mentions  # noqa: E402
from transforms.windows import parse_duration  # noqa: E402

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
POSTS_PER_DAY = 25_000
FILE_LINES = 10_000


class MemorySampler(threading.Thread):
    """Samples the RSS of a process and of its children until stopped."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.every = every
        self.peak = {"python": 0, "prism": 0, "total": 0}
        self.current = dict(self.peak)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                python = self.process.memory_info().rss
                children = self.process.children(recursive=True)
                prism = sum(
                    child.memory_info().rss
                    for child in children
                    if "prism" in child.name()
                )
            except psutil.Error:
                break
            self.current = {"python": python, "prism": prism, "total": python + prism}
            for name, value in self.current.items():
                self.peak[name] = max(self.peak[name], value)
            self.stopped.wait(self.every)


def start_streaming_run(
    landing: Path, out: Path, options: list[str], log: Path
) -> tuple[list[str], subprocess.Popen, MemorySampler]:
    """Start ``python -m pipelines.volume --streaming`` watching ``landing`` and
    writing ``out`` (the test key, ``options`` added, stderr to ``log``) with a
    memory sampler on it -> (the command, the process, the started sampler)."""
    command = [
        sys.executable,
        "-m",
        "pipelines.volume",
        "--streaming",
        "--landing",
        str(landing),
        "--output",
        str(out),
        *options,
    ]
    env = {**os.environ, "YUQING_PSEUDONYM_KEY": KEY, "PYTHONPATH": str(PROJECT)}
    process = subprocess.Popen(
        command,
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
        start_new_session=True,
    )
    sampler = MemorySampler(process.pid)
    sampler.start()
    return command, process, sampler


def accounted(out: Path) -> int:
    """Lines the tables account for now (latest pane of each window)."""
    volume = read_latest_panes(str(out), "volume")
    late = read_latest_panes(str(out), "late_posts")
    dead = read_latest_panes(str(out), "dead_letters")
    return (
        int(volume["posts"].sum() + volume["duplicates"].sum() + late["posts"].sum())
        + dead.height
    )


HOUR_US = 3_600_000_000


def valid_post_time_us(line: bytes) -> int | None:
    """The event time of a line that is a valid post (only those move the watermark)."""
    try:
        return parse_post(decode_json_line(line), bytes(32)).event_time_us
    except (InvalidPost, ValueError):
        return None


def lines_in_open_window(lines: list[bytes], tail: int = 20_000) -> int:
    """Lines (among the last ``tail``) in the hourly window of the latest valid post's
    event time: without early panes that window writes nothing until a later post
    closes it."""
    known = [
        moment
        for moment in map(valid_post_time_us, lines[-tail:])
        if moment is not None
    ]
    if not known:
        return 0
    open_start = max(known) - max(known) % HOUR_US
    return sum(1 for moment in known if moment >= open_start)


def reposts_waiting_for_source(lines: list[bytes]) -> int:
    """Reposts among ``lines`` whose chain does not reach its root within them: with
    crediting on, such a repost waits for its source until its window's end plus
    the allowed lateness before it is counted (``transforms.reposts_streaming``)."""
    parents = {}
    for line in lines:
        try:
            post = parse_post(decode_json_line(line), bytes(32))
        except (InvalidPost, ValueError):
            continue
        parents.setdefault(post.id, post.repost_of)
    waiting = 0
    for parent in parents.values():
        # A chain longer than the ids read, or a cycle, never reaches a root.
        for _ in range(len(parents) + 1):
            if parent is None:
                break
            if parent not in parents:
                waiting += 1
                break
            parent = parents[parent]
        else:
            waiting += 1
    return waiting


def mib(value: int) -> float:
    return round(value / 2**20, 1)


def option_value(options: list[str], name: str, default: str) -> str:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``options`` (last wins)."""
    value = default
    for index, option in enumerate(options):
        if option == f"--{name}" and index + 1 < len(options):
            value = options[index + 1]
        elif option.startswith(f"--{name}="):
            value = option.split("=", 1)[1]
    return value


class TopicKeys:
    """Counts the detector's (kind, topic) keys in the lines fed to it so far:
    keys seen, and keys last seen within ``horizon_s`` of the newest event time."""

    def __init__(self, kinds: set[str], horizon_s: int):
        self.kinds = kinds
        self.horizon_s = horizon_s
        self.last_seen: dict[tuple[str, str], float] = {}
        self.first_time = self.last_time = None

    def feed(self, lines: list[bytes]) -> None:
        for line in lines:
            try:
                post = json.loads(line)
                when = datetime.datetime.fromisoformat(post["created_at"]).timestamp()
                text = post["text"]
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # malformed lines become dead letters
            if not isinstance(text, str) or str(post.get("id", "")).startswith("bad"):
                continue  # the generator's malformed lines (dead letters)
            self.first_time = (
                when if self.first_time is None else min(self.first_time, when)
            )
            self.last_time = (
                when if self.last_time is None else max(self.last_time, when)
            )
            if "hashtag" in self.kinds:
                for topic in extract_hashtags(text):
                    self.last_seen[("hashtag", topic)] = max(
                        when, self.last_seen.get(("hashtag", topic), when)
                    )
            if "mention" in self.kinds:
                for topic in extract_mentions(text):
                    self.last_seen[("mention", topic)] = max(
                        when, self.last_seen.get(("mention", topic), when)
                    )

    def summary(self) -> dict:
        live = sum(
            1
            for when in self.last_seen.values()
            if when > self.last_time - self.horizon_s
        )
        return {
            "event_time_first": datetime.datetime.fromtimestamp(
                self.first_time, BEIJING
            ).isoformat(),
            "event_time_last": datetime.datetime.fromtimestamp(
                self.last_time, BEIJING
            ).isoformat(),
            "event_time_span_days": round(
                (self.last_time - self.first_time) / 86_400, 2
            ),
            "topic_keys_seen": len(self.last_seen),
            "topic_keys_within_expiry": live,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoints", type=int, nargs="+", default=[100_000, 1_000_000]
    )
    parser.add_argument("--topic-kinds", default="hashtag,mention")
    parser.add_argument("--allowed-lateness", default="6h")
    parser.add_argument("--early-results-every", default="2s")
    parser.add_argument(
        "--max-backlog",
        type=int,
        default=50_000,
        help="Lines dropped but not yet in the tables before the next file "
        "is held back; 0 drops each phase at once. Default 50000.",
    )
    parser.add_argument(
        "--timeout", type=float, default=3_600, help="Seconds per checkpoint."
    )
    parser.add_argument("--json-out", default=None)
    parser.add_argument(
        "--keep-log",
        default=None,
        help="Copy the pipeline's log (Prism's too) here at the end; with "
        "GODEBUG=gctrace=1 in the environment it shows Prism's live Go heap.",
    )
    parser.add_argument(
        "pipeline_options",
        nargs=argparse.REMAINDER,
        help="After --: options passed to the pipeline as they are, "
        "e.g. -- --burst-idle-expiry 12h",
    )
    args = parser.parse_args(argv)
    extra = args.pipeline_options
    if extra[:1] == ["--"]:
        extra = extra[1:]
    expiry = option_value(extra, "burst-idle-expiry", "7d")
    keys = TopicKeys(set(args.topic_kinds.split(",")), parse_duration(expiry))

    total = max(args.checkpoints)
    days = -(-total // POSTS_PER_DAY)
    print(f"generating {days} days x {POSTS_PER_DAY} posts", flush=True)
    # Event time ends before today: the watermark never passes the wall clock, so a
    # stream dated in the future would keep its windows open.
    start = datetime.datetime.now(BEIJING).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    start -= datetime.timedelta(days=days + 1)
    lines, truth = generate(
        GeneratorConfig(
            start=start,
            days=days,
            posts_per_day=POSTS_PER_DAY,
            authors=50_000,
            malformed_lines=days * 2,
            bursts=(),
        )
    )
    encoded = [line.encode("utf-8") + b"\n" for line in lines]
    del lines
    # Counted before the pipeline starts, so as not to take CPU from it.
    key_counts, fed = {}, 0
    for checkpoint in sorted(args.checkpoints):
        keys.feed(encoded[fed : min(checkpoint, len(encoded))])
        fed = min(checkpoint, len(encoded))
        key_counts[checkpoint] = keys.summary()
    reposts_waiting = {
        checkpoint: 0
        if "--no-credit-reposts" in extra
        else reposts_waiting_for_source(encoded[:checkpoint])
        for checkpoint in args.checkpoints
    }

    work = Path(tempfile.mkdtemp(prefix="yuqing-stream-bench-"))
    landing, out = work / "landing", work / "out"
    landing.mkdir()
    started = time.monotonic()
    command, process, sampler = start_streaming_run(
        landing,
        out,
        [
            "--window",
            "1h",
            "--topic-kinds",
            args.topic_kinds,
            "--allowed-lateness",
            args.allowed_lateness,
            "--early-results-every",
            args.early_results_every,
            *extra,
        ],
        work / "pipeline.log",
    )
    results = {
        "command": " ".join(command),
        "burst_idle_expiry": expiry,
        "cpus": os.cpu_count(),
        "checkpoints": [],
    }
    dropped = files = 0
    try:
        while not (out / "volume").exists():
            if process.poll() is not None:
                raise RuntimeError(
                    f"pipeline exited {process.returncode}: see {work}/pipeline.log"
                )
            time.sleep(0.2)
        for checkpoint in sorted(args.checkpoints):
            phase_start = time.monotonic()
            first = dropped
            while dropped < min(checkpoint, len(encoded)):
                # A replay paced by the pipeline: at most --max-backlog lines dropped
                # and not yet in the tables (0: drop the whole phase at once).
                while args.max_backlog and dropped - accounted(out) >= args.max_backlog:
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"pipeline exited {process.returncode}: "
                            f"see {work}/pipeline.log"
                        )
                    time.sleep(0.5)
                batch = encoded[dropped : min(dropped + FILE_LINES, checkpoint)]
                files += 1
                drop_file(str(landing), f"posts-{files:06d}.jsonl", b"".join(batch))
                dropped += len(batch)
            deadline = time.monotonic() + args.timeout
            # With early panes off, the newest window shows only once a later one
            # starts.
            waiting = (
                0
                if duration_or_zero(args.early_results_every)
                else lines_in_open_window(encoded[:dropped])
            ) + reposts_waiting[checkpoint]
            while (seen := accounted(out)) < dropped - waiting:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"pipeline exited {process.returncode}: see {work}/pipeline.log"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"checkpoint {checkpoint}: {seen}/{dropped} lines "
                        f"after {args.timeout} s"
                    )
                time.sleep(1.0)
            elapsed = time.monotonic() - phase_start
            row = {
                "lines": dropped,
                "peak_mib": {name: mib(value) for name, value in sampler.peak.items()},
                "current_mib": {
                    name: mib(value) for name, value in sampler.current.items()
                },
                "phase_seconds": round(elapsed, 1),
                "phase_lines_per_second": round((dropped - first) / elapsed),
                "wall_seconds": round(time.monotonic() - started, 1),
                **key_counts[checkpoint],
            }
            results["checkpoints"].append(row)
            print(
                f"after {dropped:>9,} lines: "
                f"peak RSS python {row['peak_mib']['python']} MiB, "
                f"prism {row['peak_mib']['prism']} MiB, "
                f"total {row['peak_mib']['total']} MiB "
                f"(now {row['current_mib']['total']} MiB); "
                f"{row['phase_lines_per_second']} lines/s "
                f"in this phase; event time {row['event_time_span_days']} days, "
                f"topic keys {row['topic_keys_seen']:,} seen, "
                f"{row['topic_keys_within_expiry']:,} within "
                f"{expiry}",
                flush=True,
            )
        end_stream(str(landing))
        process.wait(timeout=300)
        results["exit_status"] = process.returncode
    except RuntimeError:
        kept = Path(tempfile.gettempdir()) / "yuqing-streaming-memory-pipeline.log"
        shutil.copy(work / "pipeline.log", kept)
        print(f"the pipeline's log: {kept}", file=sys.stderr)
        raise
    finally:
        sampler.stopped.set()
        if args.keep_log:
            shutil.copy(work / "pipeline.log", args.keep_log)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    results["load_average"] = os.getloadavg()
    print(json.dumps(results, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
