#!/usr/bin/env python
"""Throughput of the batch volume pipeline against a plain Python loop (issue 8).

  .venv/bin/python benchmarks/throughput.py                        # N = 100k and 1M
  .venv/bin/python benchmarks/throughput.py --posts 100000 --repeat 3
  .venv/bin/python benchmarks/throughput.py --posts 100000 --large # and the large day
  .venv/bin/python benchmarks/throughput.py --posts --large        # the large day only
  .venv/bin/python benchmarks/throughput.py --json-out bench.json  # figures as JSON too
  .venv/bin/python benchmarks/throughput.py --posts 1000000 --shape backfill
  .venv/bin/python benchmarks/throughput.py --posts --input FILE   # a given input only

For each N the sample generator (``python -m sampledata --posts-per-day N/3 --days
3``: the bundled sample's shape, all four topic kinds, 1% redelivered copies, 25
malformed lines) writes a ``.jsonl.gz`` once into ``--data-dir``; ``--shape
backfill`` spreads the N posts over 730 days instead (thousands of sparse hourly
windows, as a backfill of an archive). ``--input FILE`` measures a given file (any
contract input: JSON Lines, ``.gz`` or not, or Parquet) first. For each, in one
run:

- ``python -m pipelines.volume`` on the DirectRunner (Beam's FnApiRunner) with the full
  default extraction, with 1 worker (``in_memory``) and with 2 (``--direct_num_workers
  2 --direct_running_mode multi_processing``): wall time from process start to exit
  (imports and dictionary loading included), input lines per second, and peak RSS of
  the whole process tree (the parent and its worker processes, sampled every 0.1 s;
  the sum of each process's own high-water mark ``VmHWM`` is printed as an upper
  bound);
- the plain loop: the same posts through the project's own pure functions in one
  process (``read_chunks``/``parse_record`` with privacy, ``post_topics`` with a
  ``TextAnalyzer``, ``add_post`` per ``window_bounds`` key, reposts credited to
  their chain roots' topics with ``transforms.reposts``' functions as the pipeline
  does by default, ``aggregate_window``, ``window_tables`` and one Parquet file per
  table and date; no bursts), timed without its setup: the lower bound of Python
  work per post; the pipeline's ratio to it; and whether its topics table equals
  the pipeline's;
- the split of time per stage (parse, privacy, segmentation, extraction,
  aggregation, write) from cProfile, of the plain loop and of a 1-worker pipeline run
  (in_memory: the SDK harness runs the bundles in the profiled thread), at the first
  input; in the pipeline's, what no stage claims is Beam (runner, coders, shuffle,
  metrics, startup); and the same profiles' own time by module (each
  ``transforms`` module, Beam, pyarrow, numpy), a built-in's time counted to the
  module that called it;
- Flink: the reason there are no figures (no job server jar here).

``--large`` adds the 990,000-author day (``python -m sampledata --large``): time and
peak RSS of the pipeline with 2 workers, the hashtag's participants over the day
merged from the ``topics`` table's sketches, the error against 990,000, and whether
the ``bursts`` table flags the surge's first hourly window.

The machine's load average is printed before and after every measurement: the
figures are only comparable between runs on an equally idle machine.
"""

import argparse
import collections
import cProfile
import datetime
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
import psutil

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from sampledata.__main__ import LARGE_HASHTAG  # noqa: E402
from schemas.records import DeadLetter  # noqa: E402
from schemas.sketch import DEFAULT_LG_K, merged_estimate  # noqa: E402
from transforms.aggregate import (  # noqa: E402
    add_post,
    aggregate_window,
    window_bounds,
    window_tables,
)
from transforms.extract import post_topics, summarize  # noqa: E402
from transforms.files import read_chunks  # noqa: E402
from transforms.read import parse_record  # noqa: E402
from transforms.reposts import (  # noqa: E402
    ChainEdges,
    GatherRootTopicsFn,
    chain_edge,
    credit_window,
    resolve_chains,
    window_root_topics,
)
from transforms.topics import TOPIC_KINDS  # noqa: E402
from transforms.window_posts import WindowPosts  # noqa: E402
from transforms.windows import local_date, window_fn_for  # noqa: E402
from transforms.write import (  # noqa: E402
    concat_window_tables,
    date_file_name,
    partition_dir,
    write_parquet_atomically,
)

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
TIMEZONE = "Asia/Shanghai"
WINDOW_SECONDS = 3600
SEED = 7
DAYS = 3
# The backfill shape: posts spread over two years of hourly windows.
BACKFILL_DAYS = 730
LARGE_PARTICIPANTS = 990_000
MB = 1024 * 1024

TARGETS = {
    "posts_per_s_2_workers": 5_000,
    "ratio_to_loop_1_worker": 0.5,
    "speedup_2_workers_real": 1.6,
    "peak_rss_mb_1m": 2_048,
    "large_day_seconds": 600,
    "large_estimate_error": 0.02,
}
FLINK_BLOCKED = (
    "not measured: Beam's Flink job server jar (org.apache.beam:beam-runners-flink-"
    "2.2-job-server:2.77.0) is not served by this workplace's Maven registry, so no "
    "job can be submitted (deploy/flink/README.md)"
)

# Stage -> functions whose cumulative profiled time belongs to it, as
# (file name ending, function name); a stage's own time excludes the stages nested
# in it (privacy inside parse, segmentation inside extraction).
STAGE_FUNCTIONS = {
    "read": [
        ("transforms/read.py", "index_json_lines"),
        ("transforms/read.py", "read_slice"),
        ("transforms/files.py", "read_chunks"),
        ("benchmarks/throughput.py", "read_records"),
    ],
    "parse": [
        ("transforms/posts.py", "decode_json_line"),
        ("transforms/posts.py", "parse_post"),
    ],
    "privacy": [
        ("transforms/privacy/keys.py", "pseudonymize_to_int"),
        ("transforms/privacy/masking.py", "mask_pii"),
    ],
    "segmentation": [("~", "<method 'tag' of 'builtins.Jieba' objects>")],
    "extraction": [("transforms/extract.py", "post_topics")],
    "aggregation": [
        ("transforms/reposts.py", "resolve_chains"),
        ("transforms/reposts.py", "window_root_topics"),
        ("transforms/reposts.py", "credit_window"),
        ("transforms/aggregate.py", "add_post"),
        ("transforms/aggregate.py", "merge_window_posts"),
        ("transforms/aggregate.py", "aggregate_window"),
        ("transforms/aggregate.py", "window_bounds"),
    ],
    "write": [
        ("transforms/aggregate.py", "window_tables"),
        ("transforms/write.py", "concat_window_tables"),
        ("transforms/write.py", "write_parquet_atomically"),
        ("transforms/write.py", "dead_letters_table"),
        ("transforms/write.py", "write_empty_tables"),
        ("transforms/write.py", "publish"),
    ],
    # Pipeline only: building the text analyzer in ExtractTopicsFn.setup(), and Beam
    # 2.77's state cache weighing every cached state value of the burst detector with
    # objsize (which walks the globals of every loaded module per call).
    "analyzer_setup": [("transforms/extract.py", "setup")],
    "state_cache_sizing": [
        ("apache_beam/runners/worker/statecache.py", "get_deep_size")
    ],
}
NESTED = {"parse": ("privacy",), "extraction": ("segmentation",)}


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def log(text: str) -> None:
    print(text, flush=True)


# --- inputs ---------------------------------------------------------------------


def ensure_input(
    data_dir: Path, posts: int | None, shape: str = "dense"
) -> tuple[Path, dict]:
    """The generated ``.jsonl.gz`` of ``posts`` posts (None: the large day) and its
    truth, made once by ``python -m sampledata``: ``dense`` spreads them over
    ``DAYS`` days, ``backfill`` over ``BACKFILL_DAYS`` (thousands of sparse hourly
    windows, as an archive's backfill)."""
    if posts is None:
        path = data_dir / f"large-day-seed{SEED}.jsonl.gz"
        args = ["--large"]
    else:
        days = BACKFILL_DAYS if shape == "backfill" else DAYS
        per_day = -(-posts // days)
        prefix = "backfill-" if shape == "backfill" else ""
        path = data_dir / f"{prefix}posts-{posts}-seed{SEED}.jsonl.gz"
        args = ["--posts-per-day", str(per_day), "--days", str(days)]
    truth_path = path.with_name(path.name + ".truth.json")
    if not truth_path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sampledata",
                "--out",
                str(path),
                "--seed",
                str(SEED),
                *args,
            ],
            cwd=PROJECT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        log(f"  generated {path} in {time.perf_counter() - started:.1f} s")
    return path, json.loads(truth_path.read_text(encoding="utf-8"))


# --- the pipeline ------------------------------------------------------------------


class TreeMemory(threading.Thread):
    """Peak RSS of a process and all its descendants, sampled until it exits."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.every = every
        self.peak_total = 0
        self.peak_parent = 0
        self.peak_processes = 0
        self.hwm: dict[int, int] = {}  # pid -> VmHWM, the kernel's own peak RSS
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for process in processes:
                try:
                    rss = process.memory_info().rss
                    self.hwm[process.pid] = max(
                        self.hwm.get(process.pid, 0), _vm_hwm(process.pid)
                    )
                except (psutil.Error, OSError):
                    continue
                total += rss
                if process.pid == self.root.pid:
                    self.peak_parent = max(self.peak_parent, rss)
            self.peak_total = max(self.peak_total, total)
            self.peak_processes = max(self.peak_processes, len(processes))
            self.stopped.wait(self.every)


def _children_cpu() -> float:
    """User + system CPU seconds of every waited-for descendant (a pipeline's
    workers included): less sensitive than wall time to a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _vm_hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def pipeline_command(path: Path, out: Path, workers: int) -> list[str]:
    command = [
        "-m",
        "pipelines.volume",
        "--input",
        str(path),
        "--output",
        str(out),
        "--window",
        "1h",
        "--timezone",
        TIMEZONE,
        "--direct_num_workers",
        str(workers),
    ]
    if workers > 1:
        command += ["--direct_running_mode", "multi_processing"]
    return command


def run_pipeline(
    path: Path, out: Path, workers: int, lines: int, profile: Path | None = None
) -> dict:
    """One run of ``python -m pipelines.volume``; wall time and peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += pipeline_command(path, out, workers)
    env = {**os.environ, "YUQING_PSEUDONYM_KEY": KEY_HEX, "PYTHONPATH": str(PROJECT)}
    before = load()
    cpu_before = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    memory = TreeMemory(process.pid)
    memory.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    memory.stopped.set()
    memory.join()
    if process.returncode != 0:
        raise RuntimeError(
            f"pipeline failed ({process.returncode}): {stderr.decode()[-2000:]}"
        )
    return {
        "workers": workers,
        "mode": "multi_processing" if workers > 1 else "in_memory",
        "seconds": round(seconds, 2),
        "posts_per_s": round(lines / seconds),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(memory.peak_total / MB),
        "peak_rss_parent_mb": round(memory.peak_parent / MB),
        "peak_rss_hwm_sum_mb": round(sum(memory.hwm.values()) / MB),
        "processes": memory.peak_processes,
        "load_before": before,
        "load_after": load(),
    }


# --- the plain loop -------------------------------------------------------------------


def read_records(path: Path):
    """(source, record) of every line or row of a contract input file, read as the
    pipeline reads them (``transforms.files.read_chunks``)."""
    for chunk in read_chunks(str(path)):
        for offset, record in enumerate(chunk.records):
            yield f"{chunk.path}:{chunk.first_number + offset}", record


def count_records(path: Path) -> int:
    return sum(len(chunk.records) for chunk in read_chunks(str(path)))


def credit_windows(
    windows: dict[tuple[int, int], WindowPosts],
    edges: ChainEdges,
    window_fn,
    credit: bool = True,
) -> dict[tuple[int, int], WindowPosts]:
    """The windows' rows with reposts credited to their chain roots' topics and
    redelivered ids moved to their earliest copy's window: what the pipeline's
    ``AggregateCreditedWindows`` does in its gathers, with the same pure functions
    (``resolve_chains``, ``window_root_topics``, ``credit_window``)."""
    lookup = resolve_chains(edges, credit)
    gather = GatherRootTopicsFn()
    roots = gather.create_accumulator()
    for posts in windows.values():
        for row in window_root_topics(posts, lookup):
            gather.add_input(roots, row)
    root_topics = gather.extract_output(roots)
    credited: dict[tuple[int, int], WindowPosts] = {}
    for bounds, posts in windows.items():
        parts = credit_window(
            bounds,
            posts,
            lookup,
            root_topics,
            lambda time_us: window_bounds(window_fn, time_us),
        )
        for target, part in parts:
            held = credited.get(target)
            if held is None:
                credited[target] = part
            else:
                held.extend(part)
    return credited


def plain_loop(path: Path, key: bytes, analyzer, out: Path) -> dict:
    """Read, parse, mask, extract, aggregate per window (reposts credited, as the
    pipeline does by default) and write, in one Python loop."""
    window_fn = window_fn_for(WINDOW_SECONDS, TIMEZONE)
    windows: dict[tuple[int, int], WindowPosts] = {}
    edges = ChainEdges()
    rejected = 0
    for source, record in read_records(path):
        post = parse_record(record, key, source, 0)
        if isinstance(post, DeadLetter):
            rejected += 1
            continue
        topics = post_topics(post.text, TOPIC_KINDS, analyzer)
        bounds = window_bounds(window_fn, post.event_time_us)
        accumulator = windows.get(bounds)
        if accumulator is None:
            accumulator = windows[bounds] = WindowPosts()
        summary = summarize(post, topics)
        add_post(accumulator, summary)
        edges.add(*chain_edge(summary, post.event_time_us))
    windows = credit_windows(windows, edges, window_fn)
    by_date = collections.defaultdict(list)
    for (start_us, end_us), accumulator in windows.items():
        tables = window_tables(
            aggregate_window(accumulator, DEFAULT_LG_K), start_us, end_us
        )
        by_date[local_date(start_us, TIMEZONE)].append((start_us, end_us, tables))
    for date, elements in by_date.items():
        for name, table in concat_window_tables(elements).items():
            if table.num_rows:
                write_parquet_atomically(
                    table,
                    os.path.join(
                        partition_dir(str(out), name, date), date_file_name(date)
                    ),
                )
    return {"windows": len(windows), "rejected": rejected}


def time_loop(
    path: Path, lines: int, out: Path, repeat: int, profile: Path | None
) -> dict:
    from transforms.text import TextAnalyzer

    key = bytes.fromhex(KEY_HEX)
    started = time.perf_counter()
    analyzer = TextAnalyzer()
    setup = time.perf_counter() - started
    runs, cpu = [], []
    before = load()
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        started, cpu_started = time.perf_counter(), time.process_time()
        plain_loop(path, key, analyzer, out)
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    result = {
        "seconds": round(min(runs), 2),
        "cpu_seconds": round(min(cpu), 2),
        "seconds_runs": [round(run, 2) for run in runs],
        "posts_per_s": round(lines / min(runs)),
        "setup_seconds": round(setup, 2),
        "load_before": before,
        "load_after": load(),
    }
    if profile is not None:
        shutil.rmtree(out, ignore_errors=True)
        profiler = cProfile.Profile()
        profiler.runcall(plain_loop, path, key, analyzer, out)
        profiler.dump_stats(str(profile))
    return result


# --- profiles -------------------------------------------------------------------------


def stage_split(profile: Path, total_seconds: float | None = None) -> dict:
    """Seconds and shares per stage from a cProfile dump; ``other`` is what no stage
    claims (for a pipeline: Beam's runner, coders and shuffle, the burst detector
    outside its state cache, imports)."""
    stats = pstats.Stats(str(profile)).stats
    cumulative = {}
    for stage, wanted in STAGE_FUNCTIONS.items():
        cumulative[stage] = sum(
            entry[3]
            for (filename, _, name), entry in stats.items()
            if any(
                filename.endswith(suffix) and name == function
                for suffix, function in wanted
            )
        )
    own = dict(cumulative)
    for stage, nested in NESTED.items():
        own[stage] = max(0.0, own[stage] - sum(cumulative[inner] for inner in nested))
    total = total_seconds or sum(entry[2] for entry in stats.values())
    own["other"] = max(0.0, total - sum(own.values()))
    return {
        "profiled_seconds": round(total, 2),
        "seconds": {stage: round(value, 2) for stage, value in own.items()},
        "share": {stage: round(value / total, 3) for stage, value in own.items()},
    }


def module_group(filename: str) -> str:
    """Where a profiled function lives: a ``transforms`` module (its subpackages as
    one), the benchmark, Beam, pyarrow, numpy, or other Python."""
    ours = f"{PROJECT}/transforms/"
    if filename.startswith(ours):
        inner = filename[len(ours) :]
        return "transforms/" + inner.split("/", 1)[0].removesuffix(".py")
    if filename.endswith("benchmarks/throughput.py"):
        return "benchmark loop"
    for package in ("apache_beam", "pyarrow", "numpy", "polars", "datasketches"):
        if f"/{package}/" in filename:
            return package
    return "other"


def module_split(profile: Path, total_seconds: float | None = None) -> dict:
    """Own time per ``module_group`` from a cProfile dump, a built-in function's time
    counted to the module of the function that called it (pickling, Arrow's C++,
    rjieba), so each transforms module carries the C work it asks for."""
    stats = pstats.Stats(str(profile)).stats
    seconds: dict[str, float] = collections.defaultdict(float)
    for (filename, _, _), (_, _, own, _, callers) in stats.items():
        if filename == "~" and callers:
            for (caller_file, _, _), caller_stats in callers.items():
                seconds[module_group(caller_file)] += caller_stats[2]
        else:
            seconds[module_group(filename)] += own
    total = total_seconds or sum(seconds.values())
    ordered = sorted(seconds.items(), key=lambda item: item[1], reverse=True)
    return {
        "profiled_seconds": round(total, 2),
        "seconds": {group: round(value, 2) for group, value in ordered},
        "share": {group: round(value / total, 3) for group, value in ordered},
    }


def top_functions(profile: Path, count: int = 12) -> list[dict]:
    """The functions with the most own time: where the 'other' time goes."""
    stats = pstats.Stats(str(profile)).stats
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:count]
    return [
        {
            "function": f"{Path(filename).name}:{line}:{name}",
            "calls": entry[1],
            "own_seconds": round(entry[2], 2),
        }
        for (filename, line, name), entry in rows
    ]


# --- checks on the tables -------------------------------------------------------------


def topics_frame(out: Path) -> pl.DataFrame:
    return (
        pl.read_parquet(f"{out}/topics/**/*.parquet", hive_partitioning=False)
        .select(
            "window_start",
            "kind",
            "topic",
            "posts",
            "participants",
            "reposts",
            "participants_sketch",
        )
        .sort("window_start", "kind", "topic")
    )


def read_table(out: Path, table: str) -> pl.DataFrame:
    """Every file of one table of a batch run's output (an empty frame when none)."""
    files = list(out.glob(f"{table}/**/*.parquet"))
    return pl.read_parquet(files, hive_partitioning=False) if files else pl.DataFrame()


def output_size(out: Path) -> dict:
    """Rows and in-memory (Arrow) megabytes of each table a run wrote: what the
    output itself needs, against which the pipeline's memory growth is judged."""
    size = {}
    for table in ("volume", "topics", "bursts", "burst_episodes", "dead_letters"):
        frame = read_table(out, table)
        size[table] = {
            "rows": frame.height,
            "mb": round(frame.estimated_size() / MB, 1),
        }
    return size


def compare_topics(expected: pl.DataFrame, got: pl.DataFrame) -> str:
    """``equal``, or which columns differ. HLL estimates and sketch bytes depend on the
    order authors were added in, which differs when bundles split differently."""
    if expected.equals(got):
        return "equal"
    if expected.height != got.height:
        return f"differ: {expected.height} vs {got.height} rows"
    differing = [
        column
        for column in expected.columns
        if not expected[column].equals(got[column])
    ]
    return "differ in " + ", ".join(differing)


def large_day_checks(out: Path, truth: dict) -> dict:
    """The large hashtag's participants over its day, and whether the surge's first
    window is in the bursts table."""
    burst = next(item for item in truth["bursts"] if item["hashtag"] == LARGE_HASHTAG)
    onset = datetime.datetime.fromisoformat(burst["onset"])
    day = onset.date().isoformat()
    topics = pl.read_parquet(f"{out}/topics/date={day}/*.parquet").filter(
        (pl.col("kind") == "hashtag") & (pl.col("topic") == LARGE_HASHTAG)
    )
    estimate = merged_estimate(topics["participants_sketch"].to_list())
    bursts = pl.read_parquet(
        f"{out}/bursts/**/*.parquet", hive_partitioning=False
    ).filter((pl.col("kind") == "hashtag") & (pl.col("topic") == LARGE_HASHTAG))
    starts = sorted(bursts["window_start"].to_list())
    onset_utc = onset.astimezone(datetime.UTC)
    return {
        "hashtag": LARGE_HASHTAG,
        "day": day,
        "windows_with_hashtag": topics.height,
        "estimated_participants": estimate,
        "true_participants": truth["hashtag_authors"][LARGE_HASHTAG],
        "error_vs_990000": round(
            (estimate - LARGE_PARTICIPANTS) / LARGE_PARTICIPANTS, 5
        ),
        "surge_first_window": onset_utc.isoformat(),
        "flagged_in_first_window": any(start == onset_utc for start in starts),
        "bursting_windows": [start.isoformat() for start in starts],
    }


# --- printing -------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def print_split(title: str, split: dict) -> None:
    log(f"  {title} ({split['profiled_seconds']} s profiled):")
    for stage, seconds in split["seconds"].items():
        if seconds < 0.005:
            continue
        log(f"    {stage:<24} {seconds:>8.2f} s  {100 * split['share'][stage]:5.1f}%")


def measure_size(args, posts: int, profile_here: bool) -> dict:
    """The figures of a generated input of ``posts`` posts in ``args.shape``."""
    path, truth = ensure_input(args.data_dir, posts, args.shape)
    log(
        f"\n== {args.shape}, N = {posts:,} requested: {truth['posts']:,} posts, "
        f"{truth['lines']:,} input lines ({path.name})"
    )
    size = measure_input(
        args, path, truth["lines"], profile_here, f"{args.shape}-{posts}"
    )
    size["posts"] = truth["posts"]
    size["shape"] = args.shape
    return size


def measure_file(args, path: Path, profile_here: bool) -> dict:
    """The figures of a given input file (any contract input)."""
    lines = count_records(path)
    log(f"\n== input {path}: {lines:,} input lines")
    size = measure_input(args, path, lines, profile_here, f"input-{path.name}")
    size["shape"] = "input"
    return size


def measure_input(args, path: Path, lines: int, profile_here: bool, label: str) -> dict:
    """Plain loop, pipeline at each worker count, tables compared, profiles."""
    size: dict = {"lines": lines, "input": str(path)}
    work = Path(tempfile.mkdtemp(prefix="throughput-", dir=args.work_dir))
    try:
        loop_out = work / "loop"
        loop_profile = work / "loop.prof" if profile_here else None
        size["loop"] = time_loop(path, lines, loop_out, args.repeat, loop_profile)
        loop = size["loop"]
        log(
            f"  plain loop   {loop['seconds']:>7.2f} s  "
            f"{loop['posts_per_s']:>7,} posts/s  "
            f"CPU {loop['cpu_seconds']} s  (runs {loop['seconds_runs']}, "
            f"setup {loop['setup_seconds']} s, load {loop['load_before']})"
        )
        for workers in args.workers:
            runs = []
            for _ in range(args.repeat):
                runs.append(run_pipeline(path, work / f"out-{workers}", workers, lines))
            best = min(runs, key=lambda run: run["seconds"])
            best["seconds_runs"] = [run["seconds"] for run in runs]
            best["cpu_seconds_runs"] = [run["cpu_seconds"] for run in runs]
            best["peak_rss_mb_max"] = max(run["peak_rss_mb"] for run in runs)
            best["ratio_to_loop"] = round(best["posts_per_s"] / loop["posts_per_s"], 3)
            size[f"pipeline_{workers}"] = best
            if workers > 1 and "pipeline_1" in size:
                best["speedup_over_1_worker"] = round(
                    size["pipeline_1"]["seconds"] / best["seconds"], 3
                )
            log(
                f"  pipeline w={workers} {best['seconds']:>7.2f} s  "
                f"{best['posts_per_s']:>7,} posts/s  "
                f"ratio to loop {best['ratio_to_loop']:.2f}  "
                + (
                    f"x{best['speedup_over_1_worker']:.2f} of 1 worker  "
                    if "speedup_over_1_worker" in best
                    else ""
                )
                + f"CPU {best['cpu_seconds']} s  peak RSS {best['peak_rss_mb']} MB "
                f"(parent {best['peak_rss_parent_mb']}, "
                f"sum of HWM {best['peak_rss_hwm_sum_mb']}, "
                f"{best['processes']} processes)  runs {best['seconds_runs']}  "
                f"load {best['load_before']}"
            )
        size["output"] = output_size(work / f"out-{args.workers[0]}")
        log(
            "  output: "
            + ", ".join(
                f"{table} {figures['rows']:,} rows ({figures['mb']} MB in memory)"
                for table, figures in size["output"].items()
            )
        )
        loop_topics = topics_frame(loop_out)
        for workers in args.workers:
            size[f"loop_topics_equal_pipeline_{workers}"] = compare_topics(
                loop_topics, topics_frame(work / f"out-{workers}")
            )
            log(
                f"  plain loop's topics table vs the pipeline's (w={workers}): "
                f"{size[f'loop_topics_equal_pipeline_{workers}']}"
            )
        if profile_here:
            size["profile_loop"] = stage_split(loop_profile)
            print_split("stage split, cProfile of the plain loop", size["profile_loop"])
            pipe_profile = work / "pipeline.prof"
            run = run_pipeline(
                path, work / "out-profiled", 1, lines, profile=pipe_profile
            )
            size["profile_pipeline_1"] = stage_split(pipe_profile, run["seconds"])
            size["profile_pipeline_1"]["top_own_time"] = top_functions(pipe_profile)
            print_split(
                "stage split, cProfile of the pipeline, 1 worker (in_memory)",
                size["profile_pipeline_1"],
            )
            size["modules_pipeline_1"] = module_split(pipe_profile, run["seconds"])
            print_split(
                "own time by module (built-ins counted to their caller), pipeline, "
                "1 worker",
                size["modules_pipeline_1"],
            )
            size["modules_loop"] = module_split(loop_profile)
            print_split("own time by module, plain loop", size["modules_loop"])
            log("    most own time:")
            for row in size["profile_pipeline_1"]["top_own_time"]:
                log(
                    f"      {row['own_seconds']:>7.2f} s  {row['calls']:>9,}  "
                    f"{row['function']}"
                )
            if args.keep_profiles:
                args.keep_profiles.mkdir(parents=True, exist_ok=True)
                shutil.copy(loop_profile, args.keep_profiles / f"loop-{label}.prof")
                shutil.copy(pipe_profile, args.keep_profiles / f"pipeline-{label}.prof")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return size


def measure_large(args) -> dict:
    path, truth = ensure_input(args.data_dir, None)
    lines = truth["lines"]
    log(
        f"\n== large day: {truth['posts']:,} posts, {lines:,} input lines ({path.name})"
    )
    work = Path(tempfile.mkdtemp(prefix="throughput-large-", dir=args.work_dir))
    try:
        large = run_pipeline(path, work / "out", 2, lines)
        large.update(large_day_checks(work / "out", truth))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    large["posts"] = truth["posts"]
    large["lines"] = lines
    log(
        f"  pipeline w=2 {large['seconds']:.1f} s "
        f"(target <= {TARGETS['large_day_seconds']} s: "
        f"{verdict(large['seconds'] <= TARGETS['large_day_seconds'])}), "
        f"{large['posts_per_s']:,} posts/s, "
        f"peak RSS {large['peak_rss_mb']} MB "
        f"(HWM sum {large['peak_rss_hwm_sum_mb']}), load {large['load_before']}"
    )
    error = large["error_vs_990000"]
    log(
        f"  #{LARGE_HASHTAG}# on {large['day']}: "
        f"{large['estimated_participants']:,} estimated participants "
        f"(true {large['true_participants']:,}); error vs 990,000 {100 * error:+.2f}% "
        f"(target within 2%: {verdict(abs(error) <= TARGETS['large_estimate_error'])})"
    )
    log(
        f"  burst flagged in the surge's first window ({large['surge_first_window']}): "
        f"{large['flagged_in_first_window']}; "
        f"bursting windows: {len(large['bursting_windows'])}"
    )
    return large


def targets_summary(result: dict) -> list[dict]:
    rows = []
    sizes = result["sizes"]
    for posts, size in sizes.items():
        two = size.get("pipeline_2")
        if two:
            rows.append(
                {
                    "target": f"posts/s with 2 workers, N={posts}",
                    "wanted": f">= {TARGETS['posts_per_s_2_workers']}",
                    "measured": two["posts_per_s"],
                    "met": two["posts_per_s"] >= TARGETS["posts_per_s_2_workers"],
                }
            )
        one = size.get("pipeline_1")
        if one:
            rows.append(
                {
                    "target": f"ratio to plain loop at 1 worker, N={posts}",
                    "wanted": f">= {TARGETS['ratio_to_loop_1_worker']}",
                    "measured": one["ratio_to_loop"],
                    "met": one["ratio_to_loop"] >= TARGETS["ratio_to_loop_1_worker"],
                }
            )
        if size["shape"] != "dense" and two and one:
            rows.append(
                {
                    "target": f"2 workers over 1 worker, {posts}",
                    "wanted": f">= {TARGETS['speedup_2_workers_real']}",
                    "measured": two["speedup_over_1_worker"],
                    "met": two["speedup_over_1_worker"]
                    >= TARGETS["speedup_2_workers_real"],
                }
            )
        if size["lines"] >= 1_000_000:
            peak = max(
                size[key]["peak_rss_mb_max"]
                for key in size
                if key.startswith("pipeline_")
            )
            rows.append(
                {
                    "target": f"peak RSS, N={posts}",
                    "wanted": f"<= {TARGETS['peak_rss_mb_1m']} MB",
                    "measured": peak,
                    "met": peak <= TARGETS["peak_rss_mb_1m"],
                }
            )
    dense = sorted(
        (label for label, size in sizes.items() if size["shape"] == "dense"),
        key=lambda label: sizes[label]["lines"],
    )
    if len(dense) >= 2:
        small, big = dense[0], dense[-1]
        for key in sizes[small]:
            if key.startswith("pipeline_") and key in sizes[big]:
                output_growth = sum(
                    sizes[big]["output"][table]["mb"]
                    - sizes[small]["output"][table]["mb"]
                    for table in sizes[big]["output"]
                )
                rows.append(
                    {
                        "target": f"peak RSS growth {key}, N={small} -> {big}",
                        "wanted": "flat (output-sized)",
                        "measured": f"{sizes[small][key]['peak_rss_mb']} -> "
                        f"{sizes[big][key]['peak_rss_mb']} MB "
                        f"(output +{output_growth:.0f} MB)",
                        "met": None,
                    }
                )
    large = result.get("large")
    if large:
        rows.append(
            {
                "target": "large day end to end",
                "wanted": f"<= {TARGETS['large_day_seconds']} s",
                "measured": large["seconds"],
                "met": large["seconds"] <= TARGETS["large_day_seconds"],
            }
        )
        rows.append(
            {
                "target": "large day estimate error",
                "wanted": "within 2% of 990,000",
                "measured": large["error_vs_990000"],
                "met": abs(large["error_vs_990000"]) <= TARGETS["large_estimate_error"],
            }
        )
        rows.append(
            {
                "target": "large day burst in first window",
                "wanted": True,
                "measured": large["flagged_in_first_window"],
                "met": large["flagged_in_first_window"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--posts",
        type=int,
        nargs="*",
        default=[100_000, 1_000_000],
        help="Sizes N to measure (default 100000 1000000); "
        "none with --large: the large day only.",
    )
    parser.add_argument(
        "--shape",
        choices=("dense", "backfill"),
        default="dense",
        help=f"Generated inputs: dense ({DAYS} days, the default) or backfill (the "
        f"posts spread over {BACKFILL_DAYS} days of sparse hourly windows).",
    )
    parser.add_argument(
        "--input",
        type=Path,
        action="append",
        default=[],
        help="An input file (any contract input) to measure before the generated "
        "sizes; repeatable. Pass --posts with no size to measure only these.",
    )
    parser.add_argument(
        "--large", action="store_true", help="Also the 990,000-author day (2 workers)."
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="Pipeline worker counts (default 1 2).",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="Runs of each measurement; the fastest is reported.",
    )
    parser.add_argument("--no-profile", action="store_true", help="Skip the profiles.")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "yuqing-throughput",
        help="Where generated inputs are kept between runs.",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="Where outputs go while measured (default: temp).",
    )
    parser.add_argument(
        "--keep-profiles",
        type=Path,
        default=None,
        help="Copy the cProfile dumps into this folder.",
    )
    parser.add_argument(
        "--json-out",
        type=Path,
        default=None,
        help="Write all figures as one JSON object.",
    )
    args = parser.parse_args(argv)

    result: dict = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_mb": round(psutil.virtual_memory().total / MB),
            "load_at_start": load(),
        },
        "git": subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
        ).stdout.strip(),
        "targets": TARGETS,
        "sizes": {},
    }
    log(
        f"load average at start {result['machine']['load_at_start']} "
        f"on {os.cpu_count()} CPUs ({result['git']})"
    )
    profile_first = not args.no_profile
    for path in args.input:
        result["sizes"][f"input:{path.name}"] = measure_file(
            args, path, profile_here=profile_first
        )
        profile_first = False
    for posts in args.posts:
        label = str(posts) if args.shape == "dense" else f"{args.shape}-{posts}"
        result["sizes"][label] = measure_size(args, posts, profile_here=profile_first)
        profile_first = False
    result["flink"] = {
        "parallelism_1": None,
        "parallelism_2": None,
        "reason": FLINK_BLOCKED,
    }
    log(f"\n== Flink at parallelism 1 and 2: {FLINK_BLOCKED}")
    if args.large:
        result["large"] = measure_large(args)
    result["load_at_end"] = load()
    result["target_checks"] = targets_summary(result)
    log("\n== targets")
    for row in result["target_checks"]:
        met = "" if row["met"] is None else verdict(row["met"])
        log(
            f"  {row['target']:<48} wanted {str(row['wanted']):<22} "
            f"measured {str(row['measured']):<18} {met}"
        )
    log(f"load average at end {result['load_at_end']}")
    if args.json_out:
        args.json_out.write_text(
            json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        log(f"figures -> {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
