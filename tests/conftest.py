"""Shared fixtures: paths to ../shared data, small generated streams, pipeline runs."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

PROJECT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"
CASCADES = SHARED_DATA / "weibo_cascades" / "weibo_cascades_dev.jsonl.gz"
WEIBO_NER = SHARED_DATA / "weibo_ner"
# A fixed key: tests must not create or read the user's own key file.
TEST_KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
# The variable DoFns built by tests read the test key from (a worker's environment).
TEST_KEY_VAR = "YUQING_TEST_PSEUDONYM_KEY"


def key_source_for_tests():
    """A key source naming ``$YUQING_TEST_PSEUDONYM_KEY``, set here to the test key:
    what a DoFn built directly by a test gets instead of the key."""
    from schemas.keys import PseudonymKeySource
    from transforms.privacy import key_fingerprint

    os.environ[TEST_KEY_VAR] = TEST_KEY_HEX
    return PseudonymKeySource(
        None, TEST_KEY_VAR, key_fingerprint(bytes.fromhex(TEST_KEY_HEX))
    )


# The event time of the posts ``post_line`` builds.
POST_LINE_CREATED = "2026-11-21T10:00:00+08:00"


def post_line(number: int, **fields) -> bytes:
    """A valid JSON Lines post (id ``number``, one of 97 authors, a hashtag), its
    fields overridden by ``fields``, with its newline."""
    record = {
        "id": str(number),
        "user_id": f"u{number % 97}",
        "created_at": POST_LINE_CREATED,
        "text": f"第{number}条 #雅安地震#",
        **fields,
    }
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def needs_shared(path: pathlib.Path):
    """Skip, saying why, where ../shared/data is absent (a user's fresh clone)."""
    return pytest.mark.skipif(
        not path.exists(),
        reason=f"{path} is absent: ../shared/data is not beside this clone",
    )


def run_volume(
    args: list[str], env: dict | None = None, timeout: int = 900
) -> subprocess.CompletedProcess:
    """``python -m pipelines.volume ARGS`` as a user runs it, output captured."""
    full_env = {**os.environ, "YUQING_PSEUDONYM_KEY": TEST_KEY_HEX, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.volume", *args],
        cwd=PROJECT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_reports(
    *args: str, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m reports ARGS`` as a user runs it, ``env`` added to the
    environment, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "reports", *args],
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def small_stream(tmp_path_factory):
    """A small generated stream (2 days, one planted surge) and its truth."""
    import datetime

    from sampledata.generator import (
        GeneratorConfig,
        PlantedBurst,
        generate,
        write_lines,
    )

    start = GeneratorConfig().start
    config = GeneratorConfig(
        days=2,
        posts_per_day=3_000,
        authors=1_500,
        malformed_lines=14,
        pii_share=0.01,
        bursts=(
            PlantedBurst("雅安地震", start + datetime.timedelta(days=1, hours=10), 300),
        ),
    )
    lines, truth = generate(config)
    folder = tmp_path_factory.mktemp("stream")
    path = write_lines(lines, folder / "posts.jsonl.gz")
    return path, truth, lines


# The options the streaming tests and their batch reference share.
STREAM_COMMON = ["--window", "1h", "--topic-kinds", "hashtag,mention"]
# A day of lateness: the generated posts are not in time order across the parts,
# and some reposts come a file before their source; within the lateness the source
# credits them, as batch does (``transforms.reposts_streaming``).
STREAM_LATENESS = ["--allowed-lateness", "1d"]


@pytest.fixture(scope="session")
def stream_parts(small_stream, tmp_path_factory):
    """``small_stream`` cut into four files in arrival order, and the batch run over
    them with ``STREAM_COMMON``, the reference a streaming run must end equal to:
    (part paths, truth, batch output folder)."""
    _, truth, lines = small_stream
    folder = tmp_path_factory.mktemp("parts")
    size = -(-len(lines) // 4)
    paths = []
    for index in range(4):
        path = folder / f"part-{index}.jsonl"
        path.write_text(
            "\n".join(lines[index * size : (index + 1) * size]) + "\n", encoding="utf-8"
        )
        paths.append(path)
    batch = tmp_path_factory.mktemp("batch") / "tables"
    result = run_volume(
        ["--input", str(folder / "*.jsonl"), "--output", str(batch), *STREAM_COMMON]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return paths, truth, batch


@pytest.fixture(scope="session")
def small_run(small_stream, tmp_path_factory):
    """The pipeline run once over ``small_stream``: (output folder, completed
    process)."""
    path, _, _ = small_stream
    out = tmp_path_factory.mktemp("out") / "tables"
    result = run_volume(["--input", str(path), "--output", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def read_table(out, table):
    import polars as pl

    return pl.scan_parquet(
        f"{out}/{table}/**/*.parquet", hive_partitioning=True
    ).collect()


def load_truth(path) -> dict:
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def pytest_addoption(parser):
    parser.addoption(
        "--test-pipeline-options",
        default="--runner=FnApiRunner",
        help="Options for every TestPipeline of the batch suite, as Beam's own suite "
        "takes them; e.g. '--runner=FlinkRunner --flink_master=localhost:8081 ...'.",
    )


def pytest_configure(config):
    from apache_beam.testing.test_pipeline import TestPipeline

    TestPipeline.pytest_test_pipeline_options = config.getoption(
        "--test-pipeline-options"
    )


def pytest_collection_modifyitems(config, items):
    """Tests on the S3 server last, in their order: SeaweedFS may still be building
    in the background (``run_tests.sh`` starts it), and every other test runs
    meanwhile."""
    on_server = [item for item in items if "s3_server" in item.fixturenames]
    moved = set(on_server)
    items[:] = [item for item in items if item not in moved] + on_server


@pytest.fixture(scope="session")
def prism() -> str:
    """The Prism binary (the local streaming runner), built once by the project's own
    setup step, ``deploy/prism/build.sh``, if it is missing."""
    import shutil

    from pipelines.runners import default_prism_path, prism_binary

    path = prism_binary()
    if path is None:
        if shutil.which("go") is None:
            pytest.skip(
                f"Prism is not built ({default_prism_path()}) and the Go toolchain is "
                "absent: run deploy/prism/build.sh where Go >= 1.24 is installed"
            )
        subprocess.run(
            [str(PROJECT / "deploy" / "prism" / "build.sh")],
            check=True,
            capture_output=True,
            timeout=1_200,
        )
        path = prism_binary()
    assert path is not None
    return path


def streaming_options(prism: str):
    """Pipeline options for a TestStream pipeline on Prism."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(
        [
            "--runner=PrismRunner",
            f"--prism_location={prism}",
            "--prism_log_level=error",
            "--streaming",
        ]
    )
