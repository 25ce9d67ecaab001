"""Submit the volume pipeline to a portable Beam job service, Python steps in an
external worker pool: the one submission path of the Flink deployment and its test.

    python deploy/portable.py --job-endpoint localhost:8099 -- \\
        --input '/data/posts/*.jsonl.gz' --output /data/out

runs ``python -m pipelines.volume`` with::

    --runner=PortableRunner --job_endpoint=ENDPOINT
    --environment_type=EXTERNAL --environment_config=POOL (default localhost:50000)
    --setup_file=<this project's setup.py> --job_server_timeout=<ten years>
    --experiments=prism_disable_sdf_split

and the pipeline's own options after them (a later option wins). The job service is
Beam's Flink job server on a cluster (``deploy/flink/run.sh``, the Kubernetes
manifests) and Prism in the tests (``tests/test_portable.py``); nothing else differs.

``POOL`` is resolved by whoever starts the SDK workers (each Flink TaskManager, or
Prism): ``localhost:50000`` names the worker-pool sidecar beside each TaskManager.
The process is replaced by the pipeline's (``exec``), so SIGTERM reaches it and a
streaming job is cancelled. Exit status: the pipeline's, or 2 when the job endpoint
does not answer.
"""

import argparse
import os
import socket
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SETUP_FILE = PROJECT_ROOT / "setup.py"
DEFAULT_WORKER_POOL = "localhost:50000"
ENTRY_MODULE = "pipelines.volume"
# PortableRunner puts this deadline (300 s by default) on the job's state and message
# streams: a longer batch job, and every streaming job, would fail on the submitter.
JOB_DEADLINE_SECONDS = 10 * 365 * 86_400
# Prism splits bundles that carry timers and then fires some of the burst detector's
# timers twice (pipelines/runners.py); the landing source needs no runner splits.
# Runners other than Prism ignore the experiment.
RUNNER_EXPERIMENTS = ("prism_disable_sdf_split",)


def submission_args(
    job_endpoint: str,
    pipeline_args: list[str],
    worker_pool: str = DEFAULT_WORKER_POOL,
    setup_file: str | os.PathLike = DEFAULT_SETUP_FILE,
    artifact_endpoint: str | None = None,
) -> list[str]:
    """The arguments of ``python -m pipelines.volume`` for a portable submission:
    runner, environment and staging options first, ``pipeline_args`` last.

    ``artifact_endpoint``: where the submitter stages files, when the address the job
    service announces is not reachable from it (a job server bound to 0.0.0.0 in a
    pod announces 0.0.0.0).
    """
    return [
        "--runner=PortableRunner",
        f"--job_endpoint={job_endpoint}",
        *([f"--artifact_endpoint={artifact_endpoint}"] if artifact_endpoint else []),
        "--environment_type=EXTERNAL",
        f"--environment_config={worker_pool}",
        f"--setup_file={setup_file}",
        f"--job_server_timeout={JOB_DEADLINE_SECONDS}",
        *(f"--experiments={name}" for name in RUNNER_EXPERIMENTS),
        *pipeline_args,
    ]


def command(
    job_endpoint: str,
    pipeline_args: list[str],
    worker_pool: str = DEFAULT_WORKER_POOL,
    setup_file: str | os.PathLike = DEFAULT_SETUP_FILE,
    python: str = sys.executable,
    entry: str = ENTRY_MODULE,
    artifact_endpoint: str | None = None,
) -> list[str]:
    """The full command line: ``python -m pipelines.volume`` (or ``python SCRIPT``
    when ``entry`` ends in ``.py``) and its arguments."""
    start = [entry] if entry.endswith(".py") else ["-m", entry]
    return [
        python,
        *start,
        *submission_args(
            job_endpoint, pipeline_args, worker_pool, setup_file, artifact_endpoint
        ),
    ]


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the project root first on
    ``PYTHONPATH``: the pipeline graph names the same code the staged sdist holds."""
    env = dict(os.environ if base is None else base)
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + rest if rest else "")
    return env


def endpoint_problem(endpoint: str, timeout: float = 5.0) -> str | None:
    """Why ``host:port`` takes no connection, or None when it does.

    Checked first because, with the long job deadline, Beam would wait for an absent
    job service that long.
    """
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        return f"{endpoint!r} is not host:port"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout):
            return None
    except OSError as error:
        return f"no job service answers on {endpoint} ({error.strerror or error})"


def parse(argv: list[str]) -> argparse.Namespace:
    """This script's own arguments; ``pipeline_args`` holds those after ``--``."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="%(prog)s --job-endpoint HOST:PORT [options] -- PIPELINE_OPTIONS...",
    )
    parser.add_argument("--job-endpoint", required=True, help="job service host:port")
    parser.add_argument(
        "--artifact-endpoint",
        help="artifact staging host:port, when the job service announces one the "
        "submitter cannot reach",
    )
    parser.add_argument(
        "--worker-pool",
        default=DEFAULT_WORKER_POOL,
        help=f"the SDK worker pool, as the runner's workers reach it "
        f"(default {DEFAULT_WORKER_POOL})",
    )
    parser.add_argument(
        "--setup-file",
        default=str(DEFAULT_SETUP_FILE),
        help="setup.py staged with the job (default: this project's)",
    )
    parser.add_argument(
        "--entry",
        default=ENTRY_MODULE,
        help=f"module to run, or a .py script (default {ENTRY_MODULE})",
    )
    parser.add_argument("pipeline_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.pipeline_args[:1] == ["--"]:
        args.pipeline_args = args.pipeline_args[1:]
    return args


def command_of(argv: list[str], python: str = sys.executable) -> list[str]:
    """The command ``deploy/portable.py ARGV`` runs."""
    args = parse(argv)
    return command(
        args.job_endpoint,
        args.pipeline_args,
        args.worker_pool,
        args.setup_file,
        python=python,
        entry=args.entry,
        artifact_endpoint=args.artifact_endpoint,
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    problem = endpoint_problem(parse(argv).job_endpoint)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    to_run = command_of(argv)
    os.execve(to_run[0], to_run, environment())


if __name__ == "__main__":
    main()
