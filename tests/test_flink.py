"""The volume pipeline on a local Flink cluster gives DirectRunner's tables.

deploy/flink/setup.sh fetches Flink and Beam's job server, deploy/flink/cluster.sh
starts a JobManager, a TaskManager (2 slots) and a Beam worker pool on loopback, and
deploy/flink/run.sh submits ``pipelines.volume`` with ``--environment_type EXTERNAL``.
Each table is then compared with the DirectRunner run of the same input (rows, posts,
participants). A failing job fails the test with Flink's own exception (REST
``/jobs/<id>/exceptions``, else the log tail) as soon as Flink records it.

    .venv/bin/python -m pytest -m flink tests/test_flink.py
"""

import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import PROJECT, TEST_KEY_HEX, read_table

FLINK_DIR = PROJECT / "deploy" / "flink"
sys.path.insert(0, str(FLINK_DIR))
from flink_errors import describe_failures, jobs_since, root_exception  # noqa: E402

pytestmark = [pytest.mark.flink, pytest.mark.slow]

REST = "http://localhost:8081"
SETUP_TIMEOUT = 1800  # first download: ~320 MB from PyPI, ~200 MB from Maven
JOB_TIMEOUT = 1200
KEYS = ("window_start", "window_end", "kind", "topic", "date", "source", "error")
COUNTS = ("posts", "participants", "reposts")


def tail(text: str, chars: int = 3000) -> str:
    return text[-chars:] if text else "(nothing)"


@pytest.fixture(scope="module")
def flink_paths() -> dict:
    """setup.sh's KEY=path lines; skips only when a registry cannot serve us."""
    result = subprocess.run(
        [str(FLINK_DIR / "setup.sh")],
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT,
    )
    if result.returncode == 2:
        pytest.skip(f"package registries unreachable: {tail(result.stderr, 800)}")
    if result.returncode == 3:
        missing = [x for x in result.stderr.splitlines() if "does not serve" in x]
        pytest.skip(
            "Flink is set up but Beam's Flink job server jar cannot be had here "
            f"({missing[0].split('error: ')[-1] if missing else 'see setup.sh'}); "
            "set BEAM_FLINK_JOB_SERVER_JAR=/path/to/jar to run this test"
        )
    assert result.returncode == 0, f"setup.sh failed:\n{tail(result.stderr)}"
    return dict(
        line.split("=", 1) for line in result.stdout.splitlines() if "=" in line
    )


@pytest.fixture(scope="module")
def flink_cluster(flink_paths):
    """A running local cluster; stopped afterwards whatever happened."""
    cluster = str(FLINK_DIR / "cluster.sh")
    try:
        started = subprocess.run(
            [cluster, "start"], capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, (
            f"Flink cluster did not start:\n{tail(started.stderr, 6000)}"
        )
        yield flink_paths
    finally:
        subprocess.run([cluster, "stop"], capture_output=True, text=True, timeout=180)


def flink_failure(since_ms: int) -> str:
    """Flink's exception for a job submitted since ``since_ms``, '' if none yet.

    Counts a job as failing at its first recorded exception, even while Flink
    restarts it: a correct pipeline raises none.
    """
    try:
        for job in jobs_since(REST, since_ms):
            error = root_exception(REST, job["jid"])
            if error:
                return f"Flink job {job['jid']} ({job['state']}):\n{error}"
    except OSError:
        return ""
    return ""


def run_on_flink(args: list[str], log_dir: str, log_file) -> str:
    """deploy/flink/run.sh ARGS; fails the test with Flink's error if the job fails."""
    since_ms = int(time.time() * 1000) - 1000
    env = {**os.environ, "YUQING_PSEUDONYM_KEY": TEST_KEY_HEX}
    with open(log_file, "w") as sink:
        proc = subprocess.Popen(
            [str(FLINK_DIR / "run.sh"), *args],
            cwd=PROJECT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + JOB_TIMEOUT
    failure = ""
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            failure = flink_failure(since_ms)
            if failure:
                break
            time.sleep(2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # run.sh, Python, the job server
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = open(log_file, errors="replace").read()
    if failure:
        pytest.fail(f"{failure}\n--- run.sh output\n{tail(text)}", pytrace=False)
    if proc.returncode != 0:
        flink_says = describe_failures(REST, since_ms, log_dir)
        reason = (
            "timed out"
            if time.monotonic() >= deadline
            else (f"exited {proc.returncode}")
        )
        pytest.fail(
            f"Flink run {reason}. Flink says:\n{flink_says}\n"
            f"--- run.sh output\n{tail(text)}",
            pytrace=False,
        )
    return text


def tables_in(out) -> set[str]:
    return {p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")}


def comparable(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Rows reduced to keys and counts, in a runner-independent order."""
    keys = [c for c in KEYS if c in frame.columns]
    if table == "dead_letters":
        keys = [c for c in keys if c != "date"]  # the day the line was read
    columns = keys + [c for c in COUNTS if c in frame.columns]
    return frame.select(columns).sort(columns)


def test_volume_on_flink_matches_direct_runner(
    flink_cluster, small_stream, small_run, tmp_path
):
    path, _, _ = small_stream
    direct_out, _ = small_run
    flink_out = tmp_path / "tables"

    # The key as a cluster's workers get it: a file at the path the option names
    # (the worker pool runs on this machine, so it reads the same file).
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(TEST_KEY_HEX + "\n")
    run_on_flink(
        ["--input", str(path), "--output", str(flink_out)]
        + ["--pseudonym-key-file", str(key_file)],
        flink_cluster["FLINK_LOG_DIR"],
        tmp_path / "run.log",
    )

    assert tables_in(flink_out) == tables_in(direct_out)
    for table in sorted(tables_in(direct_out)):
        direct = read_table(direct_out, table)
        flink = read_table(flink_out, table)
        assert flink.height == direct.height, f"{table}: rows differ"
        for column in ("posts", "participants"):
            if column in direct.columns:
                assert flink[column].sum() == direct[column].sum(), (
                    f"{table}.{column}: totals differ"
                )
        assert_frame_equal(
            comparable(flink, table), comparable(direct, table), check_dtypes=True
        )
