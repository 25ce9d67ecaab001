"""Social-media volume: posts -> per-window volume, topics and dead letters, as Parquet.

EXAMPLES

On one machine (DirectRunner; batch runs on Beam's FnApiRunner, 2 worker processes):

    python -m pipelines.volume --input 'sample/*.jsonl.gz' --output out \\
        --window 1h --timezone Asia/Shanghai \\
        --direct_num_workers 2 --direct_running_mode multi_processing

On a Flink cluster (see deploy/flink/README.md):

    python -m pipelines.volume --input '/shared/posts/*.jsonl.gz' --output /shared/out \\
        --runner FlinkRunner --flink_master localhost:8081 --parallelism 2 \\
        --environment_type EXTERNAL --environment_config localhost:50000 \\
        --setup_file ./setup.py

Streaming, on Prism (built once by ``deploy/prism/build.sh``), from a landing folder
that crawlers (or ``python -m pipelines.replay``) drop files into; ``_END`` in the
folder, Ctrl-C or SIGTERM stops it (``run_streaming.sh`` shows it on the sample):

    python -m pipelines.volume --streaming --landing landing --output out \
        --window 1h --allowed-lateness 6h --early-results-every 30s

Tables land in ``OUTPUT/<table>/date=YYYY-MM-DD/*.parquet`` (``../shared/CONTRACT.md``);
read them with ``polars.scan_parquet("OUTPUT/topics/**/*.parquet",
hive_partitioning=True)``. Exit status 0 when the run finished (dead letters or
not), 2 with a one-line reason on a usage error.
"""

import dataclasses
import datetime
import logging
import os
import shutil
import sys
import uuid
from zoneinfo import ZoneInfo

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.malloc import hand_back_freed_memory
from pipelines.options import (
    VolumeOptions,
    burst_params,
    duration_or_zero,
    usage_errors,
)
from pipelines.runners import (
    run_until_stopped,
    streaming_runner_problems,
    with_local_streaming_runner,
)
from transforms.aggregate import AggregateWindows
from transforms.bursts import (
    BURSTS_TAG,
    EPISODES_TAG,
    DetectBursts,
    bursts_table,
    episodes_table,
)
from transforms.extract import ExtractTopicsFn, parse_kinds
from transforms.landing import ReadLanding
from transforms.late import (
    LATE_POSTS,
    CountLatePosts,
    SplitLatePosts,
    streaming_windowing,
)
from transforms.privacy import load_or_create_key
from transforms.read import DEAD_LETTERS, ReadPosts
from transforms.redelivery import CountCopiesOnce
from transforms.reposts import AggregateCreditedWindows
from transforms.rolling import WriteRollingTables, prune_all_superseded
from transforms.spill import SPILL_FOLDER
from transforms.windows import parse_duration, window_fn_for
from transforms.write import (
    WriteDeadLetters,
    WriteRowsByDate,
    WriteWindowTables,
    publish,
    staging_dir,
    write_empty_tables,
    write_run_manifest,
)


def analyzer_config(options: VolumeOptions) -> dict:
    """Configuration of the Chinese text analyzer, picklable for the workers."""
    return {
        "user_dict_paths": tuple(options.user_dict or ()),
        "stopword_paths": tuple(options.stopwords or ()),
        "keyword_count": options.keywords_per_post,
    }


def write_bursts(
    bursts: dict, root: str, timezone: str, firing_seconds: int | None = None
) -> None:
    """The detector's outputs -> the ``bursts`` and ``burst_episodes`` tables, each
    row filed under the date of its window (bursts) or onset (episodes)."""
    outputs = (
        (BURSTS_TAG, "bursts", bursts_table, "start_us"),
        (EPISODES_TAG, "burst_episodes", episodes_table, "onset_us"),
    )
    for tag, table, to_table, instant in outputs:
        bursts[tag] | f"Write_{table}" >> WriteRowsByDate(
            root,
            table,
            timezone,
            instant_of=_row_instant(instant),
            to_table=to_table,
            row_key=_row_key(instant),
            firing_seconds=firing_seconds,
        )


def _row_instant(attribute: str):
    """((kind, topic), row) -> the row's ``attribute`` (epoch microseconds)."""
    return lambda keyed: getattr(keyed[1], attribute)


def _row_key(attribute: str):
    """((kind, topic), row) -> a string naming the row, for content-named files."""
    return lambda keyed: f"{keyed[0]}{getattr(keyed[1], attribute)}"


def build_pipeline(
    pipeline: beam.Pipeline, options: VolumeOptions, root: str, key: bytes
) -> None:
    """Wire the steps: read -> extract topics -> aggregate per window -> write, and
    the windows' topics -> burst detector -> bursts and episodes."""
    streaming = bool(options.view_as(StandardOptions).streaming)
    window_seconds = parse_duration(options.window)
    window_fn = window_fn_for(window_seconds, options.timezone)
    # Batch: rows and tables wait at their shuffles in files (``transforms.spill``).
    spill_dir = None if streaming else os.path.join(root, SPILL_FOLDER)
    if streaming:
        read = read_stream(pipeline, options, window_fn, root, key)
    else:
        read = pipeline | "ReadPosts" >> ReadPosts(options.input, key)
    summaries = read["posts"] | "ExtractTopics" >> beam.ParDo(
        ExtractTopicsFn(parse_kinds(options.topic_kinds), analyzer_config(options))
    )
    if streaming:
        windows = summaries | "AggregateWindows" >> AggregateWindows(
            window_fn, options.sketch_lg_k, stream_windowing(options)
        )
    else:
        windows = summaries | "AggregateWindows" >> AggregateCreditedWindows(
            window_fn, options.sketch_lg_k, options.credit_reposts, spill_dir
        )
    if streaming:
        windows | "WriteWindowTables" >> WriteRollingTables(root, options.timezone)
    else:
        windows | "WriteWindowTables" >> WriteWindowTables(
            root, options.timezone, spill_dir
        )
    bursts = windows | "DetectBursts" >> DetectBursts(
        burst_params(options), window_seconds * 1_000_000, streaming=streaming
    )
    write_bursts(bursts, root, options.timezone, window_seconds if streaming else None)
    read[DEAD_LETTERS] | "WriteDeadLetters" >> WriteDeadLetters(
        root, options.timezone, flush_seconds(options) if streaming else None
    )


def flush_seconds(options: VolumeOptions) -> int:
    """How often streaming writes dead letters and late-post counts: with the early
    results, or every 30 s when those are off."""
    return duration_or_zero(options.early_results_every) or 30


def stream_windowing(options: VolumeOptions) -> dict:
    return streaming_windowing(
        duration_or_zero(options.allowed_lateness),
        duration_or_zero(options.early_results_every),
    )


def read_stream(
    pipeline: beam.Pipeline, options: VolumeOptions, window_fn, root: str, key: bytes
) -> dict:
    """Streaming input: the landing folder's posts and dead letters. Posts beyond the
    allowed lateness are taken out here and counted into ``late_posts``."""
    # Before the stream ends, wait out the processing-time triggers (transforms.landing).
    settle = flush_seconds(options) + duration_or_zero(options.poll_interval) + 2
    read = pipeline | "ReadLanding" >> ReadLanding(
        options.landing, key, duration_or_zero(options.poll_interval), settle
    )
    remember = max(
        duration_or_zero(options.allowed_lateness),
        parse_duration(options.repost_horizon),
    )
    posts = read["posts"] | "CountCopiesOnce" >> CountCopiesOnce(window_fn, remember)
    split = posts | "SplitLatePosts" >> SplitLatePosts(
        window_fn, duration_or_zero(options.allowed_lateness)
    )
    (
        split[LATE_POSTS]
        | "CountLatePosts" >> CountLatePosts(flush_seconds(options))
        | "WriteLatePosts" >> WriteRollingTables(root, options.timezone)
    )
    return {"posts": split["posts"], DEAD_LETTERS: read[DEAD_LETTERS]}


def local_runner(options: PipelineOptions):
    """The runner for ``--runner DirectRunner`` (Beam's default) in batch.

    Beam 2.77's DirectRunner first tries to download the Prism runner and, offline,
    falls back after a delay; batch pipelines are best served by the FnApiRunner it
    would end on anyway, so it is chosen directly (``--direct_num_workers`` and
    ``--direct_running_mode`` still apply). Any other runner is left to Beam.
    """
    standard = options.view_as(StandardOptions)
    if standard.runner not in (None, "DirectRunner") or standard.streaming:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    )
    return fn_runner.FnApiRunner(provision_info=provision)


def run_manifest(options: PipelineOptions, run_id: str, mode: str) -> dict:
    """What a reader of the tables needs to know about the run that wrote them."""
    volume = options.view_as(VolumeOptions)
    return {
        "run_id": run_id,
        "mode": mode,
        "written_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "window": volume.window,
        "window_seconds": parse_duration(volume.window),
        "timezone": volume.timezone,
        "topic_kinds": list(parse_kinds(volume.topic_kinds)),
        "sketch": {"type": "HLL_4", "lg_k": volume.sketch_lg_k},
        "burst": dataclasses.asdict(burst_params(volume)),
        # Streaming counts reposts under their own text's topics only.
        "credit_reposts": bool(volume.credit_reposts) and mode == "batch",
        "repost_horizon": volume.repost_horizon,
        "repost_horizon_seconds": parse_duration(volume.repost_horizon),
        "inputs": list(volume.input or []),
        "runner": options.view_as(StandardOptions).runner or "DirectRunner",
        "apache_beam": beam.__version__,
    }


def run(argv: list[str] | None = None) -> int:
    """Run the pipeline; return the process exit status."""
    hand_back_freed_memory()
    options = PipelineOptions(argv)
    volume = options.view_as(VolumeOptions)
    problems = usage_errors(volume) + streaming_runner_problems(options)
    if problems:
        print(f"error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    key = load_or_create_key(volume.pseudonym_key_file)
    if options.view_as(StandardOptions).streaming:
        return run_streaming(with_local_streaming_runner(argv or [], options), key)
    output = os.path.abspath(volume.output)
    run_id = (
        datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
        + "-"
        + uuid.uuid4().hex[:8]
    )
    root = staging_dir(output, run_id)
    os.makedirs(root)
    try:
        with beam.Pipeline(runner=local_runner(options), options=options) as pipeline:
            build_pipeline(pipeline, volume, root, key)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    today = datetime.datetime.now(ZoneInfo(volume.timezone)).date().isoformat()
    write_empty_tables(root, today)
    write_run_manifest(root, run_manifest(options, run_id, "batch"))
    publish(root, output, run_id)
    print(f"tables written to {output}")
    return 0


def run_streaming(options: PipelineOptions, key: bytes) -> int:
    """Streaming: replace the output's tables with empty ones (readable at once), then
    write panes straight into them until the stream ends or the process is stopped."""
    volume = options.view_as(VolumeOptions)
    output = os.path.abspath(volume.output)
    run_id = (
        datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
        + "-"
        + uuid.uuid4().hex[:8]
    )
    staging = staging_dir(output, run_id)
    os.makedirs(staging)
    today = datetime.datetime.now(ZoneInfo(volume.timezone)).date().isoformat()
    write_empty_tables(staging, today)
    write_run_manifest(staging, run_manifest(options, run_id, "streaming"))
    publish(staging, output, run_id)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, volume, output, key)
    print(
        f"streaming from {volume.landing} into {output} (stop with Ctrl-C, or drop _END)",
        file=sys.stderr,
    )
    state = run_until_stopped(pipeline)
    # The run is over: only each window's latest pane file stays.
    prune_all_superseded(output)
    print(f"stream {str(state).lower()}; tables in {output}")
    return 0


def main() -> None:
    logging.getLogger().setLevel(logging.WARNING)
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
