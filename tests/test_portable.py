"""The portable path a Flink deployment takes, end to end, with Prism as the job
service: the pipeline is submitted from a folder outside the repository through
``deploy/portable.py`` (the submission code of ``deploy/flink/run.sh`` and the
Kubernetes manifests), and its Python steps run in the project's external worker pool
(``deploy/flink/worker_pool.py``, a separate process, as the TaskManager's sidecar is).

The workers import the project from the sdist ``--setup_file`` stages, unpacked and
laid out as an install (``deploy/flink/worker.Dockerfile`` installs the project into
the sidecar image the same way), never from the checkout. They get the pseudonym key
the way a cluster's workers do: a key file at the path ``--pseudonym-key-file`` names
(the Secret mounted on every worker-pool container), no ``$YUQING_PSEUDONYM_KEY`` and
a ``$HOME`` without a key file; the pipeline itself carries no key. Batch tables must
equal the DirectRunner's on the same input, streaming tables a batch run's over the
same posts.

    .venv/bin/python -m pytest -m portable tests/test_portable.py
"""

import os
import signal
import socket
import subprocess
import sys
import tarfile
import time

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from reports.panes import read_latest_panes
from tests.conftest import (
    PROJECT,
    STREAM_COMMON,
    STREAM_LATENESS,
    TEST_KEY_HEX,
    read_table,
)
from transforms.landing_folder import drop_file, end_stream

sys.path.insert(0, str(PROJECT / "deploy"))
import portable  # noqa: E402

pytestmark = [pytest.mark.portable, pytest.mark.slow]

WORKER_POOL = PROJECT / "deploy" / "flink" / "worker_pool.py"
START_TIMEOUT = 60
JOB_TIMEOUT = 600
KEY_VARIABLES = ("YUQING_PSEUDONYM_KEY", "YUQING_PSEUDONYM_KEY_FILE")
# Batch tables compared row for row; each without the columns that differ between
# runs by construction: the partition of a dead letter (the day it was read) and its
# time, and sketch bytes (they depend on the order authors were added; their
# estimates, ``participants``, are compared exactly).
BATCH_TABLES = (
    "volume",
    "topics",
    "bursts",
    "burst_episodes",
    "dead_letters",
    "events",
    "event_windows",
)
VARYING = ("date", "read_at", "participants_sketch")
COMMON = STREAM_COMMON
STREAMING = [
    "--streaming",
    *COMMON,
    *STREAM_LATENESS,
    "--early-results-every",
    "2s",
    "--poll-interval",
    "1s",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log_path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited ({process.returncode}): {tail(log_path)}")
        try:
            with socket.create_connection(("localhost", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{what} did not listen on {port}: {tail(log_path)}")


def tail(path, chars: int = 3000) -> str:
    try:
        return open(path, errors="replace").read()[-chars:] or "(nothing)"
    except OSError:
        return "(no log)"


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def start_logged(argv: list[str], log_path, **kwargs) -> subprocess.Popen:
    with open(log_path, "w") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )


def without_key(env: dict[str, str], home) -> dict[str, str]:
    """``env`` with no pseudonym key in it and a ``$HOME`` holding no key file."""
    return {
        **{name: value for name, value in env.items() if name not in KEY_VARIABLES},
        "HOME": str(home),
    }


@pytest.fixture(scope="module")
def installed_project(tmp_path_factory):
    """The project as the workers get it: the sdist ``--setup_file`` stages (built the
    way Beam's stager builds it without ``build``: ``setup.py sdist``), unpacked and
    laid out as an install does (packages and package data), in a folder of its own."""
    work = tmp_path_factory.mktemp("worker-site")
    site = work / "site-packages"

    def setup_py(*args: str, cwd) -> None:
        done = subprocess.run(
            [sys.executable, "setup.py", "--quiet", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    setup_py("sdist", "--dist-dir", str(work), cwd=PROJECT)
    (sdist,) = work.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    (source,) = (work / "unpacked").iterdir()
    setup_py("build_py", "--build-lib", str(site), cwd=source)
    return site


@pytest.fixture(scope="module")
def mounted_key(tmp_path_factory) -> str:
    """The key file as a Secret mounted on the submitter and on every worker: one
    path, readable by both (here one machine, so one file)."""
    path = tmp_path_factory.mktemp("secret") / "pseudonym.key"
    path.write_text(TEST_KEY_HEX + "\n")
    path.chmod(0o400)
    return str(path)


@pytest.fixture(scope="module")
def worker_pool(installed_project, mounted_key, tmp_path_factory):
    """The project's worker pool on a free loopback port, its workers importing the
    installed copy, with the mounted key file and no key variable: (``localhost:PORT``,
    its log file)."""
    folder = tmp_path_factory.mktemp("worker-pool")
    venv_bin = os.path.dirname(sys.executable)
    env = without_key(os.environ, folder)
    # The pool forks ``python`` from PATH for each SDK worker.
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(installed_project)
    located = subprocess.run(
        [
            "python",
            "-c",
            "import pipelines, transforms as t; print(pipelines.__file__, t.__file__)",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    assert located.returncode == 0, located.stderr
    assert all(
        path.startswith(str(installed_project)) for path in located.stdout.split()
    ), f"workers would import the project from {located.stdout}"
    port = free_port()
    log_path = folder / "worker-pool.log"
    process = start_logged(
        [sys.executable, str(WORKER_POOL), "--bind", f"localhost:{port}"],
        log_path,
        cwd=folder,
        env=env,
    )
    try:
        wait_for_port(port, process, log_path, "the worker pool")
        yield f"localhost:{port}", log_path
    finally:
        stop(process)


@pytest.fixture(scope="module")
def job_service(prism, tmp_path_factory):
    """Prism as a standalone job service on a free loopback port: (``localhost:PORT``,
    its log file)."""
    folder = tmp_path_factory.mktemp("job-service")
    port = free_port()
    log_path = folder / "prism.log"
    process = start_logged(
        [
            prism,
            f"--job_port={port}",
            "--serve_http=false",
            "--log_level=warn",
        ],
        log_path,
        cwd=folder,
    )
    try:
        wait_for_port(port, process, log_path, "Prism's job service")
        yield f"localhost:{port}", log_path
    finally:
        stop(process)


@pytest.fixture
def submitter_env(tmp_path) -> dict[str, str]:
    """A submitter's environment: no key variable, and a ``$HOME`` of its own."""
    home = tmp_path / "submitter-home"
    home.mkdir()
    return without_key(os.environ, home)


def submit(
    job_service,
    worker_pool,
    pipeline_args: list[str],
    env: dict[str, str],
    key_args: list[str],
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a submission through deploy/portable.py,
    ``key_args`` (``--pseudonym-key-file PATH``) after the pipeline's arguments."""
    argv = portable.command(
        job_service[0],
        [*pipeline_args, *key_args],
        worker_pool=worker_pool[0],
        setup_file=PROJECT / "setup.py",
    )
    return argv, portable.environment(env)


def failure(what: str, result_text: str, job_service, worker_pool) -> str:
    return (
        f"{what}:\n{result_text[-4000:]}\n--- Prism\n{tail(job_service[1])}"
        f"\n--- worker pool\n{tail(worker_pool[1])}"
    )


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.drop(*[name for name in VARYING if name in frame.columns])
    flat = [name for name, dtype in frame.schema.items() if not dtype.is_nested()]
    return frame.sort(flat)


def assert_same_table(table: str, got: pl.DataFrame, expected: pl.DataFrame) -> None:
    try:
        assert_frame_equal(comparable(got), comparable(expected))
    except AssertionError as error:
        raise AssertionError(f"table {table}: {error}") from None


def test_batch_through_the_job_service_equals_direct_runner(
    job_service,
    worker_pool,
    mounted_key,
    small_stream,
    small_run,
    submitter_env,
    tmp_path,
):
    path, truth, _ = small_stream
    direct_out, _ = small_run
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    out = tmp_path / "tables"
    argv, env = submit(
        job_service,
        worker_pool,
        ["--input", str(path), "--output", str(out)],
        submitter_env,
        ["--pseudonym-key-file", mounted_key],
    )
    result = subprocess.run(
        argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT
    )
    assert result.returncode == 0, failure(
        "the portable batch run failed", result.stderr, job_service, worker_pool
    )

    for table in BATCH_TABLES:
        assert_same_table(table, read_table(out, table), read_table(direct_out, table))
    assert read_table(out, "dead_letters").height == truth.malformed
    assert read_table(out, "volume")["posts"].sum() == truth.posts


def test_flink_run_script_submits_the_same_way(
    job_service,
    worker_pool,
    mounted_key,
    small_stream,
    small_run,
    submitter_env,
    tmp_path,
):
    """deploy/flink/run.sh with a job endpoint given: the script Flink runs take,
    here through Prism; on Flink only the endpoint (its job server) differs."""
    path, _, _ = small_stream
    direct_out, _ = small_run
    out = tmp_path / "tables"
    pool_port = worker_pool[0].rpartition(":")[2]
    result = subprocess.run(
        [
            str(PROJECT / "deploy" / "flink" / "run.sh"),
            "--job-endpoint",
            job_service[0],
            "--input",
            str(path),
            "--output",
            str(out),
            "--pseudonym-key-file",
            mounted_key,
        ],
        env={
            **submitter_env,
            "WORKER_POOL_PORT": pool_port,
            "PYTHON": sys.executable,
        },
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
    )
    assert result.returncode == 0, failure(
        "run.sh failed", result.stderr, job_service, worker_pool
    )
    for table in BATCH_TABLES:
        assert_same_table(table, read_table(out, table), read_table(direct_out, table))


@pytest.mark.streaming
def test_streaming_through_the_job_service_equals_batch(
    job_service, worker_pool, mounted_key, stream_parts, submitter_env, tmp_path
):
    paths, truth, batch = stream_parts
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    landing, out = tmp_path / "landing", tmp_path / "tables"
    landing.mkdir()
    argv, env = submit(
        job_service,
        worker_pool,
        ["--landing", str(landing), "--output", str(out), *STREAMING],
        submitter_env,
        ["--pseudonym-key-file", mounted_key],
    )
    log_path = tmp_path / "submitter.log"
    process = start_logged(argv, log_path, cwd=workdir, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (out / "volume").exists():
            assert process.poll() is None and time.monotonic() < deadline, failure(
                "the streaming run published no tables",
                tail(log_path),
                job_service,
                worker_pool,
            )
            time.sleep(0.3)
        for part in paths:
            drop_file(str(landing), part.name, part.read_bytes())
        end_stream(str(landing))
        try:
            status = process.wait(timeout=JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        assert status == 0, failure(
            f"the streaming run ended with {status}",
            tail(log_path),
            job_service,
            worker_pool,
        )
    finally:
        stop(process)

    for table in ("volume", "topics"):
        assert_same_table(
            table, read_latest_panes(str(out), table), read_table(batch, table)
        )
    dead = read_latest_panes(str(out), "dead_letters")
    assert dead.height == read_table(batch, "dead_letters").height == truth.malformed
    assert read_latest_panes(str(out), "volume")["posts"].sum() == truth.posts


def test_workers_without_the_submitters_key_fail_the_job_in_one_line(
    job_service, worker_pool, small_stream, submitter_env, tmp_path
):
    """The key only on the submitter (``$YUQING_PSEUDONYM_KEY``, which the pipeline
    does not carry to the workers): the workers refuse to start, and the submitter
    prints the worker's one line, naming the variable and the step."""
    path, _, _ = small_stream
    argv, env = submit(
        job_service,
        worker_pool,
        ["--input", str(path), "--output", str(tmp_path / "tables")],
        {**submitter_env, "YUQING_PSEUDONYM_KEY": TEST_KEY_HEX},
        [],
    )
    result = subprocess.run(
        argv,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
    )
    assert result.returncode == 1, failure(
        "the run without a key on the workers", result.stderr, job_service, worker_pool
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "$YUQING_PSEUDONYM_KEY is not set on worker" in errors[0], errors[0]
    assert TEST_KEY_HEX not in result.stderr
