"""Output on an object store: a real S3 API server (SeaweedFS) on loopback.

A batch run to ``s3://`` writes a run folder and then the pointer ``_current.json``
(``transforms.object_store``); read back with polars through the documented recipe
it equals the local output of the same input, and a reader during a rerun sees only
whole runs. A scheme with no filesystem is a one-line usage error.

The tests on the server are marked slow: SeaweedFS is built from the Go module
proxy on first use (``deploy/seaweedfs/build.sh``, many minutes on a cold cache).
"""

import fcntl
import json
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time

import polars as pl
import pytest

from schemas.tables import TABLES
from tests.conftest import (
    PROJECT,
    TEST_KEY_HEX,
    read_table,
    run_reports,
    run_volume,
)

BUCKET = "yuqing-test"
ACCESS_KEY = "yuqingtestkey"
SECRET_KEY = "yuqingtestsecret"
# Columns that differ between two runs of one input: when dead letters were read.
RUN_TIME_COLUMNS = {"read_at"}
# How long the tests wait for SeaweedFS to be built (a cold build takes minutes).
BUILD_WAIT_SECONDS = 30 * 60


# --- Unknown schemes (no server needed) -------------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--output", "foo://bucket/out"),
        ("--output", "s3x://bucket/out"),
        ("--input", "foo://bucket/posts/*.jsonl"),
    ],
)
def test_a_scheme_without_filesystem_is_a_one_line_usage_error(
    flag, value, small_stream, tmp_path
):
    path, _, _ = small_stream
    args = {"--input": str(path), "--output": str(tmp_path / "out"), flag: value}
    result = run_volume([item for pair in args.items() for item in pair])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{flag} {value}: no filesystem for" in lines[0]
    scheme_folder = value.split("/", 1)[0]
    assert not (PROJECT / scheme_folder).exists()


def test_gs_without_the_gcp_extra_names_the_extra(small_stream, tmp_path):
    from transforms.object_store import filesystem_problem

    if filesystem_problem("gs://bucket/x") is None:
        pytest.skip("apache-beam[gcp] is installed here: gs:// has a filesystem")
    path, _, _ = small_stream
    result = run_volume(["--input", str(path), "--output", "gs://bucket/out"])
    assert result.returncode == 2
    assert "apache-beam[gcp]" in result.stderr
    assert not (PROJECT / "gs:").exists()


def test_streaming_to_an_object_store_is_refused(tmp_path):
    result = run_volume(
        ["--streaming", "--landing", str(tmp_path), "--output", "s3://b/out"]
    )
    assert result.returncode == 2
    assert "object stores take batch runs" in result.stderr


def test_reports_on_a_scheme_without_filesystem_is_a_one_line_usage_error():
    result = run_reports("summary", "--output", "foo://bucket/out")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("--output foo://bucket/out: cannot read _current.json")


# --- The S3 server ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _build_running(lock: pathlib.Path) -> bool:
    """True while a ``build.sh`` holds its lock (``flock`` on ``lock``)."""
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _weed_binary() -> str:
    """SeaweedFS's ``weed``: already built, or built by ``deploy/seaweedfs/build.sh``
    in the background (``run_tests.sh`` starts that build before the tests; this
    starts it when nothing did) and waited for, at most ``BUILD_WAIT_SECONDS``.
    Skips where the binary is missing and Go is absent."""
    script = PROJECT / "deploy" / "seaweedfs" / "build.sh"
    where = subprocess.run(
        [str(script), "--where"], capture_output=True, text=True, check=True
    )
    binary = pathlib.Path(where.stdout.strip())
    if os.access(binary, os.X_OK):
        return str(binary)
    if shutil.which("go") is None:
        pytest.skip(
            f"SeaweedFS is not built ({binary}) and the Go toolchain is absent: "
            "run deploy/seaweedfs/build.sh where Go is installed"
        )
    if shutil.which("flock") is None:  # no lock to wait on: build here
        built = subprocess.run([str(script)], capture_output=True, text=True)
        assert built.returncode == 0, built.stderr[-3000:]
        return built.stdout.strip().splitlines()[-1]
    log, lock = binary.parent / "build.log", binary.parent / ".build.lock"
    subprocess.run([str(script), "--background"], check=True)
    deadline = time.monotonic() + BUILD_WAIT_SECONDS
    while not os.access(binary, os.X_OK):
        running = _build_running(lock)
        if running and time.monotonic() < deadline:
            time.sleep(2)
            continue
        if os.access(binary, os.X_OK):
            break
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        if running:
            pytest.fail(
                f"SeaweedFS was not built within {BUILD_WAIT_SECONDS // 60} minutes "
                f"({script}, still building); {log} ends:\n{tail}"
            )
        pytest.fail(f"SeaweedFS did not build ({script}); {log} ends:\n{tail}")
    return str(binary)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """A SeaweedFS server with its S3 API on a loopback port, one bucket created;
    yields the endpoint URL. Stopped (and its data removed) afterwards."""
    boto3 = pytest.importorskip("boto3", reason="apache-beam[aws] is not installed")
    weed = _weed_binary()
    data = tmp_path_factory.mktemp("seaweedfs")
    config = data / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "yuqing",
                        "credentials": [
                            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}
                        ],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
    command = [
        weed,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={grpc['master']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={grpc['volume']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={grpc['filer']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={grpc['s3']}",
        f"-s3.port.iceberg={_free_port()}",
        f"-s3.port.lance={_free_port()}",
        f"-s3.config={config}",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=50",
    ]
    log = open(data / "weed.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (data / "weed.log").read_text(errors="replace")[-3000:]
                    pytest.fail(f"SeaweedFS did not start: {tail}")
                time.sleep(0.5)
        yield endpoint
    finally:
        # Killed, not stopped: its data is thrown away, and a graceful stop of
        # every SeaweedFS service takes many seconds.
        process.kill()
        process.wait()
        log.close()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The environment a reader (and boto3) takes the endpoint and keys from."""
    env = {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from apache_beam.io.filesystems import FileSystems

    FileSystems.set_options(None)
    return env


def s3_options(endpoint: str) -> list[str]:
    """Beam's S3 options naming the server: how the pipeline gets them."""
    return [
        f"--s3_endpoint_url={endpoint}",
        f"--s3_access_key_id={ACCESS_KEY}",
        f"--s3_secret_access_key={SECRET_KEY}",
        "--s3_region_name=us-east-1",
    ]


def read_current(output: str, table: str) -> pl.DataFrame:
    """The documented recipe (docs/operations.md), polars alone, endpoint and keys
    from the environment: read the pointer once, scan the run folder it names."""
    run = f"{output}/" + pl.read_ndjson(f"{output}/_current.json")["folder"][0]
    return pl.scan_parquet(
        f"{run}/{table}/**/*.parquet", hive_partitioning=True
    ).collect()


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """A table's rows in a fixed order, without the sketch bytes (participants are
    compared as the counts they give) and without times of the run itself."""
    dropped = [
        name
        for name in frame.columns
        if name == "participants_sketch" or name in RUN_TIME_COLUMNS
    ]
    frame = frame.drop(dropped)
    return frame.sort(frame.columns, nulls_last=True)


def list_keys(endpoint: str, prefix: str) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=prefix
    ):
        keys.extend(item["Key"] for item in page.get("Contents", ()))
    return keys


# --- Batch runs on S3 -------------------------------------------------------------


@pytest.fixture(scope="module")
def local_and_s3_runs(s3_server, small_stream, tmp_path_factory):
    """One input run to a local folder and to ``s3://BUCKET/same``: the two outputs
    and the two runs' printed lines (stderr, then stdout)."""
    path, _, _ = small_stream
    local = tmp_path_factory.mktemp("local") / "out"
    output = f"s3://{BUCKET}/same"
    printed = []
    for argv in (
        ["--input", str(path), "--output", str(local)],
        ["--input", str(path), "--output", output, *s3_options(s3_server)],
    ):
        result = run_volume(argv)
        assert result.returncode == 0, result.stderr[-3000:]
        printed.append((result.stderr + result.stdout).splitlines())
    return local, output, printed


@pytest.mark.slow
def test_batch_output_on_s3_equals_local_output(local_and_s3_runs, s3_env):
    local, output, _ = local_and_s3_runs
    for table in TABLES:
        remote = read_current(output, table)
        here = read_table(local, table)
        assert remote.schema == here.schema, table
        assert comparable(remote).equals(comparable(here)), table
    assert read_current(output, "topics").height > 0


@pytest.mark.slow
def test_a_run_to_s3_prints_the_summary_of_a_local_run(local_and_s3_runs):
    local, output, (here, there) = local_and_s3_runs
    assert here[-1] == f"tables written to {local}"
    assert there[-1] == f"tables written to {output}"
    summary = [line for line in here if line.startswith(("read ", "wrote "))]
    assert len(summary) == 2, here
    assert [line for line in there if line.startswith(("read ", "wrote "))] == summary


@pytest.mark.slow
def test_s3_output_layout_is_a_run_folder_and_a_pointer(local_and_s3_runs, s3_server):
    _, output, _ = local_and_s3_runs
    keys = list_keys(s3_server, "same/")
    pointer = json.loads(_object_text(s3_server, "same/_current.json"))
    run = pointer["run_id"]
    assert pointer["folder"] == f"runs/{run}"
    assert f"same/runs/{run}/_run.json" in keys
    assert not [key for key in keys if "/_spill/" in key]
    assert all(
        key == "same/_current.json" or key.startswith(f"same/runs/{run}/")
        for key in keys
    )
    for table in TABLES:
        assert any(key.startswith(f"same/runs/{run}/{table}/date=") for key in keys)


def _object_text(endpoint: str, key: str) -> str:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode("utf-8")


@pytest.mark.slow
def test_reports_follow_the_pointer_on_s3(local_and_s3_runs, s3_env, s3_server):
    from reports.tables import resolve_output, row_counts, run_manifest, scan

    local, output, _ = local_and_s3_runs
    resolved = resolve_output(output)
    run = json.loads(_object_text(s3_server, "same/_current.json"))["run_id"]
    assert resolved == f"{output}/runs/{run}"
    assert run_manifest(resolved)["run_id"] == run
    assert row_counts(resolved) == row_counts(resolve_output(str(local)))
    remote = scan(resolved, "volume").collect()
    assert comparable(remote).equals(comparable(read_table(local, "volume")))


@pytest.mark.slow
def test_reports_command_reads_s3(local_and_s3_runs, s3_env, s3_server):
    """``python -m reports`` on an ``s3://`` output, keys and endpoint in the
    environment, shows the same summary as on the local output."""
    local, output, _ = local_and_s3_runs
    shown = {}
    for name, folder in (("local", str(local)), ("s3", output)):
        result = run_reports("summary", "--output", folder, env=s3_env)
        assert result.returncode == 0, result.stderr[-3000:]
        lines = result.stdout.splitlines()
        assert folder in lines[0]
        shown[name] = [line.replace(folder, "OUT") for line in lines[1:]]
    assert shown["s3"] == shown["local"]


@pytest.mark.slow
def test_reports_on_an_s3_output_without_a_published_run_exit_2(s3_env):
    output = f"s3://{BUCKET}/never-published"
    result = run_reports("hot", "--output", output, env=s3_env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"--output {output}: no run was published there (no _current.json)"
    )


@pytest.mark.slow
def test_a_reader_during_reruns_sees_only_whole_runs(
    s3_server, s3_env, small_stream, monkeypatch
):
    """Reruns in this process, every object write recorded: each run's objects are
    all written before the pointer names it, and a reader polling meanwhile finds
    every table and ``_run.json`` of the run the pointer names. Retention keeps
    the current and the previous run."""
    from pipelines.volume import run as run_pipeline
    from reports.tables import resolve_output
    from transforms import object_store

    path, _, _ = small_stream
    output = f"s3://{BUCKET}/rerun"
    writes: list[str] = []
    original = object_store.write_bytes

    def recording(target: str, data: bytes) -> None:
        original(target, data)
        writes.append(target)

    monkeypatch.setattr(object_store, "write_bytes", recording)
    monkeypatch.setenv("YUQING_PSEUDONYM_KEY", TEST_KEY_HEX)
    # Endpoint and keys from the environment only (``s3_env``), as the docs advise.
    argv = ["--input", str(path), "--output", output]

    seen: dict[str, set[str]] = {}
    problems: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.wait(0.1):
            try:
                folder = resolve_output(output)
            except Exception as error:  # noqa: BLE001 - reported below
                problems.append(f"pointer: {error}")
                continue
            if folder == output:
                continue  # nothing published yet
            files = object_store.list_files(folder)
            names = {name[len(folder) + 1 :].split("/", 1)[0] for name in files}
            seen.setdefault(folder, set()).update(names)
            missing = {*TABLES, "_run.json"} - names
            if missing:
                problems.append(f"{folder} lacks {sorted(missing)}")

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        runs = []
        for _ in range(3):
            assert run_pipeline(list(argv)) == 0
            runs.append(object_store.read_pointer(output)["run_id"])
    finally:
        stop.set()
        watcher.join()
    assert not problems, problems[:5]
    assert len(seen) >= 2, seen.keys()

    pointer_path = f"{output}/_current.json"
    pointer_writes = [i for i, target in enumerate(writes) if target == pointer_path]
    assert len(pointer_writes) == 3
    for run, at in zip(runs, pointer_writes, strict=True):
        own = [i for i, target in enumerate(writes) if f"/runs/{run}/" in target]
        assert any("/volume/date=" in writes[i] for i in own), run
        assert max(own) < at, run

    pointer = object_store.read_pointer(output)
    assert pointer["run_id"] == runs[2] and pointer["previous"] == runs[1]
    assert sorted(object_store.run_folders(output)) == sorted(runs[1:])


@pytest.mark.slow
def test_remove_old_runs_keeps_young_unpublished_runs(s3_server, s3_env):
    """A run folder the pointer does not name (another run still writing) stays
    until it is older than the grace; the run pushed out of the pointer goes."""
    import datetime

    from transforms import object_store

    output = f"s3://{BUCKET}/retention"
    now = datetime.datetime(2026, 1, 10, tzinfo=datetime.UTC)
    ids = {
        "old_published": "20260101T000000-00000001",
        "previous": "20260109T000000-00000002",
        "current": "20260109T120000-00000003",
        "writing": "20260109T110000-00000004",
        "killed": "20260105T000000-00000005",
    }
    for run_id in ids.values():
        object_store.write_bytes(f"{object_store.run_root(output, run_id)}/x", b"1")
    pointer = {
        "run_id": ids["current"],
        "previous": ids["previous"],
        "replaced_previous": ids["old_published"],
    }
    removed = object_store.remove_old_runs(output, pointer, now=now)
    assert sorted(removed) == sorted([ids["old_published"], ids["killed"]])
    assert sorted(object_store.run_folders(output)) == sorted(
        [ids["previous"], ids["current"], ids["writing"]]
    )


@pytest.mark.slow
def test_wrong_credentials_are_a_usage_error(s3_server, small_stream):
    path, _, _ = small_stream
    options = [
        option
        for option in s3_options(s3_server)
        if not option.startswith("--s3_secret_access_key")
    ]
    result = run_volume(
        [
            "--input",
            str(path),
            "--output",
            f"s3://{BUCKET}/denied",
            *options,
            "--s3_secret_access_key=not-the-secret",
        ]
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"--output s3://{BUCKET}/denied: not writable" in result.stderr


@pytest.mark.slow
def test_input_from_s3(s3_server, s3_env, small_stream, tmp_path):
    """Posts read from ``s3://`` through Beam's FileSystems give the same tables."""
    from transforms import object_store

    path, _, _ = small_stream
    target = f"s3://{BUCKET}/input/posts.jsonl.gz"
    object_store.write_bytes(target, path.read_bytes())
    result = run_volume(
        [
            "--input",
            f"s3://{BUCKET}/input/*.jsonl.gz",
            "--output",
            str(tmp_path / "out"),
            *s3_options(s3_server),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    posts = read_table(tmp_path / "out", "volume")["posts"].sum()
    assert posts > 0
    assert os.path.islink(tmp_path / "out")
