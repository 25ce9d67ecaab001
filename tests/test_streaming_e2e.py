"""End to end, streaming: ``python -m pipelines.volume --streaming`` on a landing
folder, files dropped while it runs, the growing tables read with polars, the run
stopped, and the final tables compared with a batch run over the same posts."""

import datetime
import json
import os
import signal
import subprocess
import sys
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
)
from transforms.landing_folder import drop_file, end_stream

pytestmark = [pytest.mark.streaming, pytest.mark.slow]

COMMON = STREAM_COMMON
STREAMING = [
    "--streaming",
    *STREAM_LATENESS,
    "--early-results-every",
    "2s",
    "--poll-interval",
    "1s",
]
STRAGGLERS = 5


def scan(out, table: str) -> pl.DataFrame:
    """A table as a reader of a running stream reads it: the latest pane per window."""
    return read_latest_panes(str(out), table)


def totals(out) -> tuple[int, int]:
    """(posts, late posts) in the tables as they are now."""
    return int(scan(out, "volume")["posts"].sum()), int(
        scan(out, "late_posts")["posts"].sum()
    )


def comparable(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    # Sketch bytes depend on the order authors were added; their estimates are the
    # ``participants`` column, compared exactly.
    return frame.drop("date", "participants_sketch", strict=False).sort(keys)


def start_stream(
    landing, out, prism_path, options: tuple[str, ...] = (*COMMON, *STREAMING)
) -> subprocess.Popen:
    """``python -m pipelines.volume --landing LANDING --output OUT OPTIONS`` on
    Prism, in a session of its own (kill the group to stop its Prism too)."""
    env = {
        **os.environ,
        "YUQING_PSEUDONYM_KEY": TEST_KEY_HEX,
        "YUQING_PRISM": prism_path,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.volume",
            "--landing",
            str(landing),
            "--output",
            str(out),
            *options,
        ],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(condition, timeout: float, process: subprocess.Popen, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(
                f"the streaming run exited ({process.returncode}) before {what}: "
                f"{process.stderr.read()[-3000:]}"
            )
        time.sleep(0.3)
    # The whole session: the pipeline's Prism too, which outlives a killed parent.
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}: {process.stderr.read()[-3000:]}")


def straggler_lines(first_line: str) -> bytes:
    """New posts dated an hour into the stream: beyond a 1 d lateness by the end."""
    record = json.loads(first_line)
    start = (
        datetime.datetime.fromisoformat(record["created_at"])
        if isinstance(record["created_at"], str)
        else None
    )
    start = start or datetime.datetime.fromtimestamp(record["created_at"], datetime.UTC)
    moment = (start + datetime.timedelta(hours=1)).isoformat()
    return b"".join(
        json.dumps(
            {
                "id": f"straggler-{index}",
                "user_id": f"s{index}",
                "created_at": moment,
                "text": "#迟到#",
            },
            ensure_ascii=False,
        ).encode()
        + b"\n"
        for index in range(STRAGGLERS)
    )


def test_growing_tables_end_as_the_batch_run(stream_parts, prism, tmp_path):
    paths, truth, batch = stream_parts
    landing, out = tmp_path / "landing", tmp_path / "out"
    landing.mkdir()
    process = start_stream(landing, out, prism)
    try:
        wait_for(lambda: (out / "volume").exists(), 60, process, "the tables appear")
        seen = [totals(out)]
        # Bounds set at about four times what a run needs on 2 cores under a load of
        # 14 (a part: up to 40 s; the drain after _END, which fires every crediting
        # stage's timers at once: 75 s); a quiet machine needs a fraction of that.
        for path in paths:
            drop_file(str(landing), path.name, path.read_bytes())
            before = seen[-1][0]
            seen.append(
                wait_for(
                    lambda before=before: (now := totals(out))[0] > before and now,
                    180,
                    process,
                    f"{path.name} shows in the tables",
                )
            )
        drop_file(
            str(landing),
            "stragglers.jsonl",
            straggler_lines(paths[0].read_text().splitlines()[0]),
        )
        wait_for(
            lambda: totals(out)[1] == STRAGGLERS, 180, process, "late posts are counted"
        )
        end_stream(str(landing))
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    # The tables grew while the run went on, and never shrank.
    posts_seen = [posts for posts, _ in seen]
    assert (
        posts_seen == sorted(posts_seen) and len(set(posts_seen)) == len(paths) + 1
    ), seen

    volume, batch_volume = scan(out, "volume"), scan(batch, "volume")
    assert_frame_equal(
        comparable(volume, ["window_start"]), comparable(batch_volume, ["window_start"])
    )
    keys = ["window_start", "kind", "topic"]
    assert_frame_equal(
        comparable(scan(out, "topics"), keys), comparable(scan(batch, "topics"), keys)
    )
    # The planted surge is one event, written when it closed, as batch writes it;
    # none is open any more.
    batch_events = scan(batch, "events")
    assert batch_events.height >= 1 and scan(out, "open_events").height == 0
    for table, keys in (
        ("events", ["event_id"]),
        ("event_windows", ["event_id", "window_start"]),
    ):
        assert_frame_equal(
            comparable(scan(out, table), keys), comparable(scan(batch, table), keys)
        )
    dead = scan(out, "dead_letters")
    assert dead.height == scan(batch, "dead_letters").height == truth.malformed
    late = scan(out, "late_posts").filter(pl.col("posts") > 0)
    assert late["posts"].to_list() == [STRAGGLERS]
    # Every line ends in exactly one place.
    assert (
        volume["posts"].sum()
        + volume["duplicates"].sum()
        + dead.height
        + late["posts"].sum()
        == truth.lines + STRAGGLERS
    )
    checker = PROJECT.parent / "shared" / "tools" / "check_contract.py"
    if checker.exists():
        check = subprocess.run(
            [sys.executable, str(checker), str(out)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_stopping_with_sigterm_keeps_the_latest_panes(stream_parts, prism, tmp_path):
    """Stopped without ``_END``: the run cancels and exits 0; early panes already hold
    every post, the last window's too, though it never closed."""
    paths, truth, batch = stream_parts
    landing, out = tmp_path / "landing", tmp_path / "out"
    landing.mkdir()
    for path in paths:
        drop_file(str(landing), path.name, path.read_bytes())
    process = start_stream(landing, out, prism)
    try:
        # Generous: crediting reposts adds keyed stages before the first pane.
        wait_for(
            lambda: (out / "volume").exists() and totals(out)[0] == truth.posts,
            240,
            process,
            "every post shows in early panes",
        )
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0, process.stderr.read()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    keys = ["window_start"]
    assert_frame_equal(
        comparable(scan(out, "volume"), keys), comparable(scan(batch, "volume"), keys)
    )
