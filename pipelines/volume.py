"""Social-media volume: posts -> per-window volume, topics and dead letters, as Parquet.

EXAMPLES

On one machine (DirectRunner; batch runs on Beam's FnApiRunner, 2 worker processes):

    python -m pipelines.volume --input 'sample/*.jsonl.gz' --output out \\
        --window 1h --timezone Asia/Shanghai \\
        --direct_num_workers 2 --direct_running_mode multi_processing

On a Flink cluster (see deploy/flink/README.md):

    python -m pipelines.volume \\
        --input '/shared/posts/*.jsonl.gz' --output /shared/out \\
        --runner FlinkRunner --flink_master localhost:8081 --parallelism 2 \\
        --environment_type EXTERNAL --environment_config localhost:50000 \\
        --setup_file ./setup.py

Streaming, on Prism (built once by ``deploy/prism/build.sh``), from a landing folder
that crawlers (or ``python -m pipelines.replay``) drop files into; ``_END`` in the
folder, Ctrl-C or SIGTERM stops it (``run_streaming.sh`` shows it on the sample):

    python -m pipelines.volume --streaming --landing landing --output out \
        --window 1h --allowed-lateness 6h --early-results-every 30s

Tables land in ``OUTPUT/<table>/date=YYYY-MM-DD/*.parquet`` (``../shared/CONTRACT.md``);
``OUTPUT`` is a pointer to the run folder of the latest run, switched at once when a
run finishes (``transforms.publish``). Read them with
``polars.scan_parquet(f"{os.path.realpath(OUTPUT)}/topics/**/*.parquet",
hive_partitioning=True)``: resolving the pointer once keeps every table of a report
from the same run. Exit status 0 when the run finished (dead letters or not), 1 with
one ``error:`` line when it failed, 2 with a one-line reason on a usage error or
when another run is writing the same output. Quiet by default: ``--log-level``,
``--log-file`` and ``--debug`` show more.
"""

import dataclasses
import datetime
import logging
import os
import shutil
import sys
import traceback
from zoneinfo import ZoneInfo

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.console import (
    Progress,
    RunFailure,
    console_settings,
    failure_line,
    quiet_console,
    run_summary,
)
from pipelines.malloc import hand_back_freed_memory
from pipelines.options import (
    VolumeOptions,
    burst_params,
    duration_or_zero,
    event_params,
    help_text,
    unknown_option_problems,
    usage_errors,
)
from pipelines.runners import (
    local_runner,
    run_until_stopped,
    streaming_runner_problems,
    with_local_streaming_runner,
    workers_elsewhere,
)
from schemas.keys import PseudonymKeySource
from transforms import object_store
from transforms.aggregate import AggregateWindows
from transforms.burst_tables import WriteBurstTables
from transforms.bursts import BURSTS_TAG, DetectBursts
from transforms.events import WriteEvents, evidence_floor
from transforms.events_streaming import WriteEventsInStream, text_retention_us
from transforms.extract import ExtractTopicsFn, parse_kinds
from transforms.late import (
    streaming_windowing,
)
from transforms.privacy import (
    PseudonymKeyError,
    PseudonymKeyUnreadable,
    resolve_key_source,
)
from transforms.publish import (
    OutputLock,
    OutputLocked,
    new_run_id,
    output_path,
    publish,
    remove_leftovers,
)
from transforms.publish import discard as discard_run
from transforms.publish import prepare as prepare_run
from transforms.read import DEAD_LETTERS, ReadPosts
from transforms.reposts import AggregateCreditedWindows
from transforms.rolling import WriteRollingTables, prune_all_superseded
from transforms.slice_windows import SummarizeSlicesFn
from transforms.spill import SPILL_FOLDER
from transforms.stream_input import ReadStreamPosts, StreamInputSettings
from transforms.windows import parse_duration, window_fn_for
from transforms.write import (
    WriteDeadLetters,
    WriteWindowTables,
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


def build_pipeline(
    pipeline: beam.Pipeline,
    options: VolumeOptions,
    root: str,
    key_source: PseudonymKeySource,
) -> None:
    """Wire the steps: read -> extract topics -> aggregate per window -> write, and
    the windows' topics -> burst detector -> bursts and episodes. The read steps get
    where the workers find the pseudonym key, never the key."""
    streaming = bool(options.view_as(StandardOptions).streaming)
    window_seconds = parse_duration(options.window)
    window_fn = window_fn_for(window_seconds, options.timezone)
    # Batch: rows and tables wait at their shuffles in files (``transforms.spill``).
    spill_dir = None if streaming else os.path.join(root, SPILL_FOLDER)
    if streaming:
        read = pipeline | "ReadStream" >> ReadStreamPosts(
            stream_input_settings(options, root), window_fn, key_source
        )
    else:
        # Each file slice is parsed, summarized and gathered per window at once.
        summarize = SummarizeSlicesFn(
            key_source,
            options.max_line_bytes,
            window_fn,
            parse_kinds(options.topic_kinds),
            analyzer_config(options),
            spill_dir,
        )
        read = pipeline | "ReadPosts" >> ReadPosts(
            options.input,
            key_source,
            max_line_bytes=options.max_line_bytes,
            summarize_fn=summarize,
        )
    if "summaries" in read:
        # Streaming with crediting: topics were extracted before the chains.
        summaries = read["summaries"]
    elif "parts" in read:
        summaries = {"parts": read["parts"], "edges": read["edges"]}
    else:
        summaries = read["posts"] | "ExtractTopics" >> beam.ParDo(
            ExtractTopicsFn(parse_kinds(options.topic_kinds), analyzer_config(options))
        )
    if streaming:
        windows = summaries | "AggregateWindows" >> AggregateWindows(
            window_fn,
            options.sketch_lg_k,
            stream_windowing(options),
            carriers_from=evidence_floor(options.burst_min_participants),
        )
    else:
        windows = summaries | "AggregateWindows" >> AggregateCreditedWindows(
            window_fn,
            options.sketch_lg_k,
            options.credit_reposts,
            spill_dir,
            carriers_from=evidence_floor(options.burst_min_participants),
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
    bursts | "WriteBursts" >> WriteBurstTables(
        root, options.timezone, window_seconds if streaming else None
    )
    if streaming:
        inputs = {
            "windows": windows,
            "bursts": bursts[BURSTS_TAG],
            "posts": read["read"],
        }
        inputs | "WriteEvents" >> WriteEventsInStream(
            root,
            options.timezone,
            window_seconds * 1_000_000,
            evidence_floor(options.burst_min_participants),
            event_params(options),
            stream_text_retention_us(options),
            window_seconds,
        )
    else:
        inputs = {
            "windows": windows,
            "bursts": bursts[BURSTS_TAG],
            "slices": read["slices"],
        }
        inputs | "WriteEvents" >> WriteEvents(
            root,
            options.timezone,
            window_seconds * 1_000_000,
            options.burst_min_participants,
            event_params(options),
            key_source,
            options.max_line_bytes,
        )
    read[DEAD_LETTERS] | "WriteDeadLetters" >> WriteDeadLetters(
        root, options.timezone, flush_seconds(options) if streaming else None
    )


def flush_seconds(options: VolumeOptions) -> int:
    """How often streaming writes dead letters and late-post counts: with the early
    results, or every 30 s when those are off."""
    return duration_or_zero(options.early_results_every) or 30


def stream_text_retention_us(options: VolumeOptions) -> int:
    """How long a stream keeps a post's text for the events' representative posts."""
    lateness = duration_or_zero(options.allowed_lateness)
    return text_retention_us(
        max(lateness, parse_duration(options.repost_horizon)) * 1_000_000,
        lateness * 1_000_000,
        parse_duration(options.window) * 1_000_000,
        event_params(options),
    )


def stream_windowing(options: VolumeOptions) -> dict:
    return streaming_windowing(
        duration_or_zero(options.allowed_lateness),
        duration_or_zero(options.early_results_every),
    )


def stream_input_settings(options: VolumeOptions, root: str) -> StreamInputSettings:
    """The streaming input's settings from the run's options."""
    # Before the stream ends, wait out the processing-time triggers
    # (transforms.landing).
    settle = flush_seconds(options) + duration_or_zero(options.poll_interval) + 2
    return StreamInputSettings(
        landing=options.landing,
        poll_seconds=duration_or_zero(options.poll_interval),
        settle_seconds=settle,
        stable_seconds=duration_or_zero(options.settle_time),
        max_line_bytes=options.max_line_bytes,
        lateness_seconds=duration_or_zero(options.allowed_lateness),
        remember_seconds=max(
            duration_or_zero(options.allowed_lateness),
            parse_duration(options.repost_horizon),
        ),
        flush_seconds=flush_seconds(options),
        credit_reposts=bool(options.credit_reposts),
        topic_kinds=tuple(parse_kinds(options.topic_kinds)),
        analyzer_config=analyzer_config(options),
        root=root,
        timezone=options.timezone,
    )


def run_manifest(
    options: PipelineOptions,
    run_id: str,
    mode: str,
    key_source: PseudonymKeySource | None = None,
) -> dict:
    """What a reader of the tables needs to know about the run that wrote them;
    ``key_fingerprint`` tells which pseudonym key made the sketches (only tables of
    one key merge), never the key."""
    volume = options.view_as(VolumeOptions)
    return {
        "key_fingerprint": None if key_source is None else key_source.fingerprint,
        "run_id": run_id,
        "mode": mode,
        "written_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "window": volume.window,
        "window_seconds": parse_duration(volume.window),
        "timezone": volume.timezone,
        "topic_kinds": list(parse_kinds(volume.topic_kinds)),
        "sketch": {"type": "HLL_4", "lg_k": volume.sketch_lg_k},
        "burst": dataclasses.asdict(burst_params(volume)),
        "credit_reposts": bool(volume.credit_reposts),
        "repost_horizon": volume.repost_horizon,
        "repost_horizon_seconds": parse_duration(volume.repost_horizon),
        "events": {**dataclasses.asdict(event_params(volume)), "written": True},
        "inputs": list(volume.input or []),
        "max_line_bytes": volume.max_line_bytes,
        "runner": options.view_as(StandardOptions).runner or "DirectRunner",
        "apache_beam": beam.__version__,
    }


def run(argv: list[str] | None = None) -> int:
    """Run the pipeline; return the process exit status (0 done, 2 usage error or
    output locked). Runtime failures raise; ``main`` turns them into one line."""
    hand_back_freed_memory()
    argv = list(argv or [])
    if {"-h", "--help"} & set(argv):
        print(help_text())
        return 0
    problems = unknown_option_problems(argv)
    if problems:
        return usage_error(problems)
    options = PipelineOptions(argv)
    # Object stores read their credentials and endpoint from the options.
    FileSystems.set_options(options)
    volume = options.view_as(VolumeOptions)
    if volume.help_beam:
        print(help_text(full_beam=True))
        return 0
    problems = usage_errors(volume) + streaming_runner_problems(options)
    if problems:
        return usage_error(problems)
    try:
        key_source = pseudonym_key_source(options)
    except PseudonymKeyUnreadable as error:
        raise RunFailure(str(error)) from None
    except PseudonymKeyError as error:
        # A weak or malformed key is the user's to fix, like a bad option.
        return usage_error([str(error)])
    if object_store.is_remote(volume.output):
        # No lock on an object store: concurrent runs each publish whole runs.
        argv = with_worker_log_level(argv, volume.log_level)
        options = PipelineOptions(argv)
        output = volume.output.rstrip("/")
        return run_batch(with_local_streaming_runner(argv, options), key_source, output)
    output = output_path(volume.output)
    try:
        lock = OutputLock(output).acquire()
    except OutputLocked as error:
        return usage_error([f"--output {volume.output}: {error}"])
    try:
        argv = with_worker_log_level(argv, volume.log_level)
        options = PipelineOptions(argv)
        if options.view_as(StandardOptions).streaming:
            return run_streaming(with_local_streaming_runner(argv, options), key_source)
        return run_batch(with_local_streaming_runner(argv, options), key_source, output)
    finally:
        lock.release()


def pseudonym_key_source(options: PipelineOptions) -> PseudonymKeySource:
    """Where the workers read the pseudonym key, checked here by reading it
    (``transforms.privacy.resolve_key_source``); a run whose workers are elsewhere
    needs an explicit key and never creates one. Raises ``PseudonymKeyError`` with
    one line that never holds the key's content."""
    volume = options.view_as(VolumeOptions)
    _, source = resolve_key_source(
        volume.pseudonym_key_file, remote=workers_elsewhere(options)
    )
    return source


def usage_error(problems: list[str]) -> int:
    print(f"error: {'; '.join(problems)}", file=sys.stderr)
    return 2


def with_worker_log_level(argv: list[str], level: str) -> list[str]:
    """``argv`` with Beam's worker processes logging at ``level`` (they log at INFO
    otherwise), unless ``--default_sdk_harness_log_level`` was given."""
    if any("sdk_harness_log_level" in arg for arg in argv):
        return argv
    return [*argv, f"--default_sdk_harness_log_level={level.upper()}"]


def run_batch(
    options: PipelineOptions, key_source: PseudonymKeySource, output: str
) -> int:
    """Batch: write every table and ``_run.json`` into a run folder of their own,
    then publish them in one atomic switch of the output's pointer (on an object
    store: one upload of ``_current.json``, ``transforms.object_store``)."""
    volume = options.view_as(VolumeOptions)
    run_id = new_run_id()
    # An object store has no rename: its runs publish by a pointer file.
    store = object_store if object_store.is_remote(output) else None
    root = store.prepare(output, run_id) if store else prepare_run(output, run_id)
    try:
        with Progress("running"):
            pipeline = beam.Pipeline(runner=local_runner(options), options=options)
            build_pipeline(pipeline, volume, root, key_source)
            result = pipeline.run()
            result.wait_until_finish()
        if store:
            store.delete_tree(os.path.join(root, SPILL_FOLDER))
        else:
            shutil.rmtree(os.path.join(root, SPILL_FOLDER), ignore_errors=True)
        today = datetime.datetime.now(ZoneInfo(volume.timezone)).date().isoformat()
        write_empty_tables(root, today)
        write_run_manifest(root, run_manifest(options, run_id, "batch", key_source))
    except BaseException:
        (store.discard if store else discard_run)(output, run_id)
        raise
    if store:
        store.remove_old_runs(output, store.publish(output, run_id))
    else:
        publish(output, run_id)
        remove_leftovers(output)
    for line in run_summary(root, result):
        print(line, file=sys.stderr)
    print(f"tables written to {output}")
    return 0


def run_streaming(options: PipelineOptions, key_source: PseudonymKeySource) -> int:
    """Streaming: publish a run folder of empty tables at once (readable from the
    start), then write panes into it until the stream ends or the process is
    stopped. The caller holds the output's lock for the whole run."""
    volume = options.view_as(VolumeOptions)
    output = output_path(volume.output)
    run_id = new_run_id()
    root = prepare_run(output, run_id)
    today = datetime.datetime.now(ZoneInfo(volume.timezone)).date().isoformat()
    write_empty_tables(root, today)
    write_run_manifest(root, run_manifest(options, run_id, "streaming", key_source))
    publish(output, run_id)
    remove_leftovers(output)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, volume, root, key_source)
    print(
        f"streaming from {volume.landing} into {output} "
        "(stop with Ctrl-C, or drop _END)",
        file=sys.stderr,
    )
    state = run_until_stopped(pipeline)
    # The run is over: only each window's latest pane file stays.
    prune_all_superseded(root)
    for line in run_summary(root):
        print(line, file=sys.stderr)
    print(f"stream {str(state).lower()}; tables in {output}")
    return 0


def main() -> None:
    """The command: one ``error:`` line and exit 1 on any failure (the traceback with
    ``--debug`` or in ``--log-file``); Beam's chatter kept out of the terminal."""
    argv = sys.argv[1:]
    settings = console_settings(argv)
    with quiet_console(settings):
        try:
            status = run(argv)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            status = 130
        except Exception as error:  # noqa: BLE001 - every failure says one line.
            print(f"error: {failure_line(error)}", file=sys.stderr)
            if settings.log_file:
                logging.getLogger(__name__).error("run failed", exc_info=True)
            if settings.debug:
                traceback.print_exc(file=sys.stderr)
            status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
