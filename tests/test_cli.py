"""The command as a tool: --help, one-line failures with their exit status, quiet
output with a closing summary."""

import argparse
import errno
import os
import re

import pytest

from pipelines.console import failure_line, run_summary
from pipelines.options import VolumeOptions, help_text, unknown_option_problems
from tests.conftest import run_volume


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_help_lists_every_option_with_its_default():
    result = run_volume(["--help"])
    assert result.returncode == 0, result.stderr
    text = result.stdout
    parser = argparse.ArgumentParser()
    VolumeOptions._add_argparse_args(parser)
    flags = [flag for action in parser._actions for flag in action.option_strings]
    starts = sorted(
        (match.start(), match.group(1))
        for match in re.finditer(r"^  (--[\w-]+)", text, flags=re.MULTILINE)
    )
    blocks = {
        flag: " ".join(text[start:next_start].split())
        for (start, flag), (next_start, _) in zip(
            starts, [*starts[1:], (len(text), "")], strict=True
        )
    }
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        name = action.option_strings[0]
        assert name in blocks, f"{name} missing from --help"
        if action.default not in (None, False):
            assert "default" in blocks[name].lower(), blocks[name]
    assert set(flags) - {"-h", "--help"} <= set(re.findall(r"--[\w-]+", text))
    for beam_option in ("--runner", "--direct_num_workers", "--flink_master"):
        assert beam_option in blocks
    assert "--help-beam" in text


def test_help_beam_lists_all_of_beams_options():
    text = help_text(full_beam=True)
    for option in ("--job_server_timeout", "--temp_location", "--sdk_location"):
        assert option in text


@pytest.mark.parametrize(
    "argv, named, suggested",
    [
        (["--windw", "30m"], "--windw", "--window"),
        (["--direct_num_worker=2"], "--direct_num_worker", "--direct_num_workers"),
        (["--topic-kind", "hashtag"], "--topic-kind", "--topic-kinds"),
    ],
)
def test_an_unknown_option_is_named_with_the_closest_known_one(argv, named, suggested):
    (problem,) = unknown_option_problems(["--input", "x", *argv])
    assert f"unknown option {named};" in problem and suggested in problem


def test_beams_own_options_and_ours_in_both_spellings_are_known():
    argv = [
        "--input=a",
        "--output",
        "o",
        "--topic_kinds",
        "hashtag",
        "--runner",
        "DirectRunner",
        "--direct_running_mode",
        "multi_processing",
        "--job_server_timeout=60",
        "--streaming",
        "--log-level",
        "info",
    ]
    assert unknown_option_problems(argv) == []


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--windw", "30m"], "unknown option --windw; did you mean --window?"),
        (["--window", "36h"], "--window 36h: a window longer than a day"),
        (["--runner", "NoSuchRunner"], "--runner NoSuchRunner: no such runner"),
        (["--log-level", "loud"], "--log-level must be one of"),
    ],
)
def test_usage_errors_exit_2_with_one_line(extra, message, tmp_path):
    output = tmp_path / "out"
    result = run_volume(["--input", __file__, "--output", str(output), *extra])
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith("error: ") and message in line, line
    assert not os.path.lexists(output)


def test_an_unreadable_key_fails_in_one_line_and_the_traceback_waits_for_debug(
    small_stream, tmp_path
):
    path, _, _ = small_stream
    key = tmp_path / "key"
    key.mkdir()  # a folder where the key file should be: the system cannot read it
    args = ["--input", str(path), "--output", str(tmp_path / "out")]
    args += ["--pseudonym-key-file", str(key)]
    env = {"YUQING_PSEUDONYM_KEY": ""}
    result = run_volume(args, env=env)
    assert result.returncode == 1, result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: pseudonym key file {key}: "), line
    debug = run_volume([*args, "--debug"], env=env)
    assert debug.returncode == 1
    assert error_lines(debug.stderr)[0] == line
    assert "Traceback (most recent call last)" in debug.stderr
    log = tmp_path / "run.log"
    logged = run_volume([*args, "--log-file", str(log)], env=env)
    assert error_lines(logged.stderr) == [line]
    assert "Traceback (most recent call last)" in log.read_text()


def test_a_malformed_key_is_a_usage_error_that_never_shows_the_key(
    small_stream, tmp_path
):
    path, _, _ = small_stream
    key = tmp_path / "key"
    key.write_text("this is not hex\n")
    args = ["--input", str(path), "--output", str(tmp_path / "out")]
    args += ["--pseudonym-key-file", str(key)]
    result = run_volume(args, env={"YUQING_PSEUDONYM_KEY": ""})
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: pseudonym key file {key} is not hex"), line
    assert "this is not hex" not in result.stderr


def test_failure_lines_say_what_failed_in_one_line():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/x.parquet")
    assert failure_line(full) == "no space left on device (/data/out/x.parquet)"
    worker = RuntimeError(
        "Pipeline job failed:\nTraceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "    raise ValueError('boom')\nValueError: boom [while running 'Parse']\n"
    )
    assert failure_line(worker) == "ValueError: boom [while running 'Parse']"
    assert failure_line(KeyError("k")) == "KeyError: 'k'"


def test_a_run_is_quiet_and_ends_with_a_summary_from_its_tables(
    small_stream, small_run
):
    _, truth, _ = small_stream
    out, result = small_run
    assert result.stdout.strip().endswith(f"tables written to {out}")
    chatter = [
        line
        for line in result.stderr.splitlines()
        if line.startswith(("INFO", "WARNING", "DEBUG"))
    ]
    assert chatter == [], chatter[:5]
    summary = run_summary(os.path.realpath(out))
    for line in summary:
        assert line in result.stderr
    assert summary[0].startswith(f"read {truth.lines:,} lines: {truth.posts:,} posts")
    assert summary[1].startswith("dead letters by reason: ")
    reasons = re.findall(r"([^,:]+?) (\d[\d,]*)(?:,|$)", summary[1].split(": ", 1)[1])
    assert sum(int(count.replace(",", "")) for _, count in reasons) == truth.malformed


def test_log_level_and_log_file_show_the_workers(small_stream, tmp_path):
    path, _, _ = small_stream
    log = tmp_path / "run.log"
    result = run_volume(
        [
            "--input",
            str(path),
            "--output",
            str(tmp_path / "out"),
            "--topic-kinds",
            "hashtag",
            "--log-level",
            "info",
            "--log-file",
            str(log),
            "--direct_num_workers",
            "2",
            "--direct_running_mode",
            "multi_processing",
        ]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not [line for line in result.stderr.splitlines() if "INFO" in line]
    assert "sdk_worker" in log.read_text() or "harness" in log.read_text()


def test_batch_on_prism_runs(small_stream, prism, tmp_path):
    path, truth, _ = small_stream
    out = tmp_path / "out"
    result = run_volume(
        ["--input", str(path), "--output", str(out), "--runner", "PrismRunner"],
        env={"YUQING_PRISM": prism},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"read {truth.lines:,} lines" in result.stderr


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 64 KB tmpfs (needs the right to mount: root in a container)."""
    import subprocess

    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here to fill a disk")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_fails_in_one_line_and_leaves_no_run_folder(
    small_stream, full_disk
):
    path, _, _ = small_stream
    output = full_disk / "out"
    result = run_volume(["--input", str(path), "--output", str(output)])
    assert result.returncode == 1, result.stderr[-2000:]
    *progress, line = error_lines(result.stderr)
    assert line.startswith("error: no space left on device"), result.stderr[-2000:]
    assert all(text.startswith("running: ") for text in progress), progress
    assert not os.path.lexists(output)
    assert os.listdir(full_disk / ".out.runs") == []
