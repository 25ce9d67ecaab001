"""The pseudonym key on a cluster: it never travels in the pipeline (graph or
options), each worker reads it from its own file or environment and refuses a key
other than the submitter's, and a run whose workers are elsewhere needs an explicit
key and never creates one."""

import base64
import bz2
import json
import os
import pickle
import re
import subprocess
import sys
import zlib

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import (
    JobServiceHandle,
    PortableRunner,
)

from pipelines import volume
from pipelines.console import failure_line
from pipelines.options import VolumeOptions
from pipelines.runners import workers_elsewhere
from schemas.keys import PseudonymKeySource
from tests.conftest import PROJECT, TEST_KEY_HEX
from transforms.privacy import (
    PseudonymKeyError,
    PseudonymKeyMismatch,
    key_fingerprint,
    load_key_from_source,
    resolve_key_source,
)
from transforms.read import ParsePostsFn, ReadPosts

KEY = bytes.fromhex(TEST_KEY_HEX)
OTHER_KEY_HEX = "ff" * 32
PORTABLE = [
    "--runner=PortableRunner",
    "--job_endpoint=localhost:1",
    "--environment_type=EXTERNAL",
    "--environment_config=localhost:2",
]
KEY_VARIABLES = ("YUQING_PSEUDONYM_KEY", "YUQING_PSEUDONYM_KEY_FILE")
POST = '{"id": "1", "user_id": "u1", "created_at": "2026-11-20T08:00:00Z", "text": "a"}'
# Beam pickles DoFns, coders and window functions with bz2 (or zlib) and base64.
COMPRESSED_STARTS = (b"QlpoO", b"eNo", b"eJ", b"eNr")
BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]+={0,2}")


def key_traces(blob: bytes, key: bytes) -> tuple[list[str], int]:
    """Where ``key`` (raw, or as hex in either case) shows in ``blob``, also inside
    every base64 run of compressed bytes ``blob`` holds (pickled payloads); and how
    many such payloads were opened."""
    needles = (key, key.hex().encode(), key.hex().upper().encode())
    found = [f"raw:{index}" for index, needle in enumerate(needles) if needle in blob]
    opened = 0
    for start in COMPRESSED_STARTS:
        for at in (match.start() for match in re.finditer(re.escape(start), blob)):
            run = BASE64_RUN.match(blob, at).group()
            data = base64.b64decode(run[: len(run) // 4 * 4] + b"==", validate=False)
            for decompressor in (bz2.BZ2Decompressor(), zlib.decompressobj()):
                try:
                    plain = decompressor.decompress(data)
                except (OSError, zlib.error, ValueError):
                    continue
                opened += 1
                found += [
                    f"payload at {at}"
                    for needle in needles
                    if needle in plain or needle in key_traces(plain, key)[0]
                ]
    return found, opened


def clean_env(home) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    return {**env, "HOME": str(home), "PYTHONPATH": str(PROJECT)}


# --- which runs have workers elsewhere ------------------------------------------


@pytest.mark.parametrize(
    "argv, reason",
    [
        ([], None),
        (["--runner=DirectRunner", "--direct_num_workers=2"], None),
        (["--runner=PrismRunner", "--streaming"], None),
        (["--runner=DirectRunner", "--environment_type=LOOPBACK"], None),
        (PORTABLE, "--runner PortableRunner"),
        (["--runner=FlinkRunner"], "--runner FlinkRunner"),
        (["--runner=PrismRunner", "--job_endpoint=host:8099"], "--job_endpoint"),
        (["--environment_type=EXTERNAL"], "--environment_type EXTERNAL"),
        (["--environment_type=DOCKER"], "--environment_type DOCKER"),
    ],
    ids=[
        "default",
        "direct-multi-process",
        "local-prism",
        "loopback",
        "portable",
        "flink",
        "prism-job-endpoint",
        "external",
        "docker",
    ],
)
def test_runs_with_workers_elsewhere_are_told_apart(argv, reason):
    got = workers_elsewhere(PipelineOptions(argv))
    if reason is None:
        assert got is None
    else:
        assert got is not None and got.startswith(reason)


# --- the submitter: where the key is, never the key --------------------------------


def test_local_run_names_the_default_file_it_creates(tmp_path, monkeypatch):
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    key, source = resolve_key_source(None)
    path = tmp_path / ".config" / "yuqing" / "pseudonym.key"
    assert source == PseudonymKeySource(str(path), None, key_fingerprint(key))
    assert path.read_text().strip() == key.hex()
    assert load_key_from_source(source) == key


def test_env_key_is_named_by_its_variable(monkeypatch):
    monkeypatch.setenv("YUQING_PSEUDONYM_KEY", TEST_KEY_HEX)
    key, source = resolve_key_source("", remote="--runner PortableRunner")
    assert key == KEY
    assert source == PseudonymKeySource(
        None, "YUQING_PSEUDONYM_KEY", key_fingerprint(KEY)
    )
    assert TEST_KEY_HEX not in repr(source) and KEY not in pickle.dumps(source)


@pytest.mark.parametrize("env_file", [False, True], ids=["default-file", "env-file"])
def test_remote_run_without_an_explicit_key_creates_none(
    tmp_path, monkeypatch, env_file
):
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if env_file:
        monkeypatch.setenv("YUQING_PSEUDONYM_KEY_FILE", str(tmp_path / "k.key"))
    with pytest.raises(PseudonymKeyError) as raised:
        resolve_key_source(None, remote="--runner FlinkRunner")
    message = str(raised.value)
    assert "\n" not in message
    assert "--runner FlinkRunner" in message
    assert "--pseudonym-key-file" in message and "$YUQING_PSEUDONYM_KEY" in message
    assert not any(tmp_path.rglob("*.key"))


def test_remote_run_never_creates_the_named_key_file(tmp_path):
    path = tmp_path / "secret" / "pseudonym.key"
    with pytest.raises(PseudonymKeyError, match="does not exist"):
        resolve_key_source(str(path), remote="--runner PortableRunner")
    assert not path.exists()


@pytest.mark.parametrize(
    "extra",
    [
        PORTABLE,
        ["--runner=FlinkRunner", "--flink_master=localhost:1"],
        ["--environment_type=EXTERNAL", "--environment_config=localhost:2"],
    ],
    ids=["portable", "flink", "external"],
)
def test_remote_run_without_a_key_exits_2_with_one_line(tmp_path, extra):
    posts = tmp_path / "posts.jsonl"
    posts.write_text(POST + "\n")
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.volume", "--input", str(posts)]
        + ["--output", str(tmp_path / "out"), *extra],
        cwd=tmp_path,
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert "--pseudonym-key-file" in lines[0] and "no key is created" in lines[0]
    assert not any(home.rglob("*.key")) and not (tmp_path / "out").exists()


# --- the worker: reads its own key, refuses another --------------------------------


def test_worker_with_another_key_fails_naming_both_fingerprints(monkeypatch):
    source = PseudonymKeySource(None, "YUQING_TEST_WORKER_KEY", key_fingerprint(KEY))
    monkeypatch.setenv("YUQING_TEST_WORKER_KEY", OTHER_KEY_HEX)
    parser = ParsePostsFn(source)
    with pytest.raises(PseudonymKeyMismatch) as raised:
        parser.setup()
    message = str(raised.value)
    other = key_fingerprint(bytes.fromhex(OTHER_KEY_HEX))
    assert "\n" not in message
    assert "$YUQING_TEST_WORKER_KEY" in message
    assert f"has fingerprint {other}" in message
    assert f"the submitter's has {key_fingerprint(KEY)}" in message
    assert OTHER_KEY_HEX not in message and TEST_KEY_HEX not in message


def test_worker_without_the_key_file_says_where_to_mount_it(tmp_path):
    source = PseudonymKeySource(str(tmp_path / "absent.key"), None, "0" * 16)
    with pytest.raises(PseudonymKeyError, match="not found on worker .*mount"):
        load_key_from_source(source)
    assert not (tmp_path / "absent.key").exists()


def test_worker_without_the_variable_says_to_set_it(monkeypatch):
    monkeypatch.delenv("YUQING_TEST_WORKER_KEY", raising=False)
    source = PseudonymKeySource(None, "YUQING_TEST_WORKER_KEY", "0" * 16)
    with pytest.raises(PseudonymKeyError, match=r"\$YUQING_TEST_WORKER_KEY is not set"):
        load_key_from_source(source)


def test_a_dofn_set_up_pickles_without_its_key(monkeypatch):
    monkeypatch.setenv("YUQING_TEST_WORKER_KEY", TEST_KEY_HEX)
    parser = ParsePostsFn(
        PseudonymKeySource(None, "YUQING_TEST_WORKER_KEY", key_fingerprint(KEY))
    )
    parser.setup()
    assert parser.pseudonym_key() == KEY
    assert not key_traces(pickle.dumps(parser), KEY)[0]


def test_job_fails_with_the_fingerprint_line_when_a_worker_has_another_key(
    tmp_path, monkeypatch
):
    """The submitter's key and the workers' differ: the job fails, and the one line
    the command prints is the worker's."""
    monkeypatch.setenv("YUQING_TEST_WORKER_KEY", OTHER_KEY_HEX)
    posts = tmp_path / "posts.jsonl"
    posts.write_text(POST + "\n")
    source = PseudonymKeySource(None, "YUQING_TEST_WORKER_KEY", key_fingerprint(KEY))
    pipeline = beam.Pipeline(runner=fn_runner.FnApiRunner())
    pipeline | ReadPosts([str(posts)], source)
    with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever Beam wraps it in.
        pipeline.run().wait_until_finish()
    line = failure_line(raised.value)
    assert "PseudonymKeyMismatch" in line, line
    assert f"the submitter's has {key_fingerprint(KEY)}" in line


# --- the pipeline the job service receives -----------------------------------------


class Submitted(Exception):
    """Raised by the fake job service once it holds what a real one would get."""


@pytest.fixture
def captured_submission(monkeypatch):
    """PortableRunner's job service replaced by one that keeps the pipeline proto
    and the options (as the Prepare request carries them) and stops the run."""
    captured: dict = {}

    class Handle:
        def __init__(self, options):
            self.options = options

        def submit(self, proto_pipeline):
            captured["pipeline"] = proto_pipeline.SerializeToString()
            encoded = JobServiceHandle.encode_pipeline_options(
                self.options.get_all_options(retain_unknown_options=True)
            )
            captured["options"] = encoded.SerializeToString()
            raise Submitted

    monkeypatch.setattr(
        PortableRunner, "create_job_service", lambda self, options: Handle(options)
    )
    return captured


def write_key_file(folder) -> str:
    folder.mkdir(exist_ok=True)
    path = folder / "pseudonym.key"
    path.write_text(TEST_KEY_HEX + "\n")
    return str(path)


@pytest.mark.parametrize("mode", ["batch", "streaming"])
@pytest.mark.parametrize("given", ["file", "env"])
def test_submitted_pipeline_and_options_hold_no_key(
    tmp_path, monkeypatch, captured_submission, mode, given
):
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    posts = tmp_path / "posts.jsonl"
    posts.write_text(POST + "\n")
    args = [*PORTABLE, "--output", str(tmp_path / "out")]
    if mode == "batch":
        args += ["--input", str(posts)]
    else:
        (tmp_path / "landing").mkdir()
        args += ["--streaming", "--landing", str(tmp_path / "landing")]
    if given == "file":
        args += ["--pseudonym-key-file", write_key_file(tmp_path / "secret")]
    else:
        monkeypatch.setenv("YUQING_PSEUDONYM_KEY", TEST_KEY_HEX)
    with pytest.raises(Submitted):
        volume.run(args)

    proto = captured_submission["pipeline"]
    traces, opened = key_traces(proto, KEY)
    assert not traces
    assert opened >= 5, "the pickled payloads were not found in the proto"
    assert b"PseudonymKeySource" in b"".join(
        plain for plain in pickled_payloads(proto)
    ), "the read step's key source was not among the payloads searched"
    assert not key_traces(captured_submission["options"], KEY)[0]
    assert TEST_KEY_HEX not in json.dumps(
        PipelineOptions(args).get_all_options(), default=str
    )


def pickled_payloads(blob: bytes) -> list[bytes]:
    """The decompressed pickles inside ``blob`` (as ``key_traces`` opens them)."""
    plains = []
    for start in COMPRESSED_STARTS:
        for at in (match.start() for match in re.finditer(re.escape(start), blob)):
            run = BASE64_RUN.match(blob, at).group()
            data = base64.b64decode(run[: len(run) // 4 * 4] + b"==", validate=False)
            for decompressor in (bz2.BZ2Decompressor(), zlib.decompressobj()):
                try:
                    plains.append(decompressor.decompress(data))
                except (OSError, zlib.error, ValueError):
                    continue
    return plains


def test_the_search_finds_a_key_held_by_a_step(tmp_path):
    """The check above can fail: a step holding the key shows in the proto."""
    pipeline = beam.Pipeline(options=PipelineOptions(PORTABLE))
    (pipeline | beam.Create(["a"]) | beam.Map(lambda text, key=KEY: (text, len(key))))
    proto = pipeline.to_runner_api().SerializeToString()
    assert key_traces(proto, KEY)[0]
    assert KEY not in proto, "the key is only found inside a pickled payload"


def test_local_pipeline_holds_no_key(tmp_path, monkeypatch):
    """The graph a local run builds (and pickles for its worker processes)."""
    options = PipelineOptions(["--input", str(tmp_path / "*.jsonl")])
    monkeypatch.setenv("YUQING_TEST_PIPELINE_KEY", TEST_KEY_HEX)
    source = PseudonymKeySource(None, "YUQING_TEST_PIPELINE_KEY", key_fingerprint(KEY))
    pipeline = beam.Pipeline(options=options)
    volume.build_pipeline(
        pipeline, options.view_as(VolumeOptions), str(tmp_path / "out"), source
    )
    proto = pipeline.to_runner_api().SerializeToString()
    traces, opened = key_traces(proto, KEY)
    assert not traces and opened >= 5


def test_building_the_pipeline_reads_no_key(tmp_path):
    """The submitter only names the key: applying the read steps never reads it
    (Beam inspects a DoFn's attributes then), so an absent key file is no error
    until a worker sets up."""
    source = PseudonymKeySource(str(tmp_path / "absent.key"), None, "0" * 16)
    pipeline = beam.Pipeline(options=PipelineOptions(PORTABLE))
    pipeline | ReadPosts([str(tmp_path / "*.jsonl")], source)
    assert pipeline.to_runner_api().components.transforms
