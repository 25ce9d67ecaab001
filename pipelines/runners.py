"""Which runner a local run uses, and how a streaming job is run and stopped.

Batch on ``DirectRunner`` runs on Beam's FnApiRunner (``pipelines.volume``). A
streaming run with no runner named (or ``DirectRunner``/``PrismRunner``) runs on
Prism, Beam's Go runner, from the binary ``deploy/prism/build.sh`` builds once from
the Go module proxy: Beam would otherwise try to download it at run time. Prism is
the only local runner that runs an unbounded source, keeps timers' output, and
can be cancelled (``deploy/prism/README.md`` has the measurements).
"""

import os
import signal
import sys
import threading

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    PortableOptions,
    PrismRunnerOptions,
    StandardOptions,
)
from apache_beam.runners.runner import PipelineState

PRISM_ENV_VAR = "YUQING_PRISM"
LOCAL_RUNNERS = (None, "DirectRunner", "PrismRunner")
# Runners whose workers run on this machine, and the environments that keep them
# there (in this process, or processes it forks).
LOCAL_RUNNER_NAMES = frozenset(
    {
        "DirectRunner",
        "SwitchingDirectRunner",
        "BundleBasedDirectRunner",
        "FnApiRunner",
        "PrismRunner",
    }
)
LOCAL_ENVIRONMENTS = frozenset({"LOOPBACK", "PROCESS"})
BUILD_SCRIPT = "deploy/prism/build.sh"
# Prism's switch for its dynamic splits of running bundles (internal/execute.go).
PRISM_NO_SPLITS = "prism_disable_sdf_split"
# Ten years: the life of a monitoring job, not a request's.
STREAM_DEADLINE_SECONDS = 10 * 365 * 86_400


def local_runner(options: PipelineOptions):
    """The runner for ``--runner DirectRunner`` (Beam's default) in batch.

    Beam's DirectRunner may first try to download the Prism runner and, offline,
    fall back after a delay; batch pipelines are best served by the FnApiRunner it
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


def workers_elsewhere(options: PipelineOptions) -> str | None:
    """Why the run's workers may not be on this machine (the option that says so,
    e.g. ``--runner PortableRunner``), or None for a local run: a local runner
    (``DirectRunner``, the FnApiRunner, a Prism the pipeline starts itself) with
    workers in this process or forked from it (no environment named, ``LOOPBACK``
    or ``PROCESS``). Such workers see no file or variable of this machine."""
    standard = options.view_as(StandardOptions)
    runner = (standard.runner or "DirectRunner").rpartition(".")[2]
    if runner not in LOCAL_RUNNER_NAMES:
        return f"--runner {standard.runner}"
    portable = options.view_as(PortableOptions)
    if portable.job_endpoint and portable.job_endpoint != "embed":
        return f"--job_endpoint {portable.job_endpoint}"
    environment = portable.environment_type
    if environment and environment.upper() not in LOCAL_ENVIRONMENTS:
        return f"--environment_type {environment}"
    return None


def prism_version() -> str:
    """The Prism release matching the Python SDK: ``v2.77.0`` for apache-beam 2.77.0."""
    return "v" + beam.__version__.split(".dev")[0].split("rc")[0]


def default_prism_path() -> str:
    """Where ``deploy/prism/build.sh`` puts the binary (``$YUQING_CACHE`` or
    ``~/.cache/yuqing``, then ``prism/<version>/prism``)."""
    cache = os.environ.get("YUQING_CACHE") or os.path.expanduser("~/.cache/yuqing")
    return os.path.join(cache, "prism", prism_version(), "prism")


def prism_binary() -> str | None:
    """The Prism binary to use: ``$YUQING_PRISM``, else the build script's output, if
    it exists."""
    path = os.environ.get(PRISM_ENV_VAR) or default_prism_path()
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def uses_local_streaming_runner(options: PipelineOptions) -> bool:
    """Whether the run goes to the local Prism binary: a streaming run on a local
    runner, or any run naming ``PrismRunner``."""
    standard = options.view_as(StandardOptions)
    if standard.runner == "PrismRunner":
        return True
    return bool(standard.streaming) and standard.runner in LOCAL_RUNNERS


def streaming_runner_problems(options: PipelineOptions) -> list[str]:
    """Why a streaming run cannot start on this machine, one line each."""
    if not uses_local_streaming_runner(options):
        return []
    given = options.view_as(PrismRunnerOptions).prism_location
    if given:
        return (
            [] if os.path.isfile(given) else [f"--prism_location {given}: no such file"]
        )
    if prism_binary() is None:
        mode = (
            "--streaming runs"
            if options.view_as(StandardOptions).streaming
            else "--runner PrismRunner runs"
        )
        return [
            f"{mode} on Prism, not found at {default_prism_path()}: "
            f"build it once with {BUILD_SCRIPT} (needs Go), or set ${PRISM_ENV_VAR}"
        ]
    return []


def with_local_streaming_runner(
    argv: list[str], options: PipelineOptions
) -> PipelineOptions:
    """``options`` with Prism named explicitly for a local streaming run.

    ``DirectRunner`` would switch to Prism only after trying a download, and not at
    all for pipelines with processing-time triggers: so the runner is named.
    """
    if not uses_local_streaming_runner(options):
        return options
    extra = ["--runner=PrismRunner"]
    if not options.view_as(PrismRunnerOptions).prism_location:
        extra.append(f"--prism_location={prism_binary()}")
    if not any(
        arg.startswith(("--prism_log_level", "--prism-log-level")) for arg in argv
    ):
        extra.append("--prism_log_level=warn")
    if not any(
        arg.startswith(("--job_server_timeout", "--job-server-timeout")) for arg in argv
    ):
        # Beam puts this deadline (300 s by default) on the job's state and message
        # streams too: a streaming run would fail after five minutes.
        extra.append(f"--job_server_timeout={STREAM_DEADLINE_SECONDS}")
    # Prism 2.77 splits a slow bundle even when it carries timers, and then fires
    # some of the burst detector's timers twice and loses others (its log: "Unexpected
    # split on a bundle with timers", apache/beam#35771): the real cascades' streaming
    # bursts came out with rows doubled and rows missing. The landing source
    # checkpoints by itself and needs no runner splits.
    extra.append(f"--experiments={PRISM_NO_SPLITS}")
    return PipelineOptions([*argv, *extra])


def run_until_stopped(pipeline: beam.Pipeline) -> str:
    """Run an unbounded pipeline until it finishes (the source saw ``_END``) or the
    process gets SIGINT or SIGTERM, which cancel the job. Returns the final state;
    a failed job raises as ``wait_until_finish`` does.

    Prism has no drain: a cancelled job stops at once, and windows still open keep
    the last pane written (early panes make that recent). The job is waited for in a
    thread: ``wait_until_finish(duration=...)`` can't be called twice on one result.
    """
    result = pipeline.run()
    finished = threading.Event()
    stop = threading.Event()
    outcome: dict = {}

    def wait() -> None:
        try:
            outcome["state"] = result.wait_until_finish()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller.
            outcome["error"] = error
        finally:
            finished.set()

    def request_stop(signum, frame) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, request_stop)
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        threading.Thread(target=wait, name="wait_for_job", daemon=True).start()
        while not finished.wait(0.2):
            if stop.is_set():
                print("stopping: cancelling the streaming job", file=sys.stderr)
                result.cancel()
                finished.wait(30)
                return PipelineState.CANCELLED
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["state"]
