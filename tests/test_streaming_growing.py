"""End to end, streaming: a landing file written slowly under its final name, its
lines cut across writes, loses no line; a file that stops mid-line ends with one
dead letter when the stream ends."""

import datetime
import json
import os
import signal
import time

import pytest

from tests.test_streaming_e2e import scan, start_stream, wait_for
from transforms.landing_folder import end_stream

pytestmark = [pytest.mark.streaming, pytest.mark.slow]

LINES = 1_000
START = datetime.datetime(2026, 11, 20, 10, 0, tzinfo=datetime.UTC)


def post_line(index: int) -> bytes:
    moment = START + datetime.timedelta(seconds=7 * index)
    record = {
        "id": f"slow-{index}",
        "user_id": f"u{index % 97}",
        "created_at": moment.isoformat(),
        "text": f"#慢慢写# 第{index}条",
    }
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def test_a_file_written_slowly_under_its_final_name_loses_no_line(prism, tmp_path):
    landing, out = tmp_path / "landing", tmp_path / "out"
    landing.mkdir()
    process = start_stream(landing, out, prism)
    try:
        wait_for(lambda: (out / "volume").exists(), 60, process, "the tables appear")
        content = b"".join(post_line(index) for index in range(LINES))
        # Forty writes over about eight seconds, each ending mid-way through a line;
        # the source polls every second, so it sees the file many times half-written.
        pieces = 40
        step = -(-len(content) // pieces)
        with open(landing / "slow.jsonl", "wb") as handle:
            for start in range(0, len(content), step):
                handle.write(content[start : start + step])
                handle.flush()
                time.sleep(0.2)
        # A second file stops mid-line: its last line never gets its end.
        cut = post_line(LINES) + post_line(LINES + 1)[:25]
        (landing / "cut.jsonl").write_bytes(cut)
        wait_for(
            lambda: scan(out, "volume")["posts"].sum() >= LINES + 1,
            90,
            process,
            "every complete line shows in the tables",
        )
        end_stream(str(landing))
        assert process.wait(timeout=120) == 0, process.stderr.read()[-3000:]
        stderr = process.stderr.read()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    volume = scan(out, "volume")
    dead = scan(out, "dead_letters")
    assert volume["posts"].sum() == LINES + 1
    assert volume["duplicates"].sum() == 0
    assert dead.height == 1, dead
    assert dead["source"].to_list() == [f"{landing / 'cut.jsonl'}:2"]
    # The run talks like a tool: no runner chatter, a closing summary.
    assert not [
        line for line in stderr.splitlines() if line.startswith(("INFO", "WARNING"))
    ], stderr[-2000:]
    assert f"read {LINES + 2:,} lines: {LINES + 1:,} posts" in stderr
