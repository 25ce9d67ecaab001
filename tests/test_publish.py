"""Publishing a run: every table and ``_run.json`` switch together, a kill at any
step leaves the old run or the new one whole, and one run at a time writes an
output."""

import json
import os
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest

from schemas import tables
from schemas.tables import RUN_MANIFEST
from tests.conftest import PROJECT, run_volume
from transforms.publish import (
    PREVIOUS_LINK,
    OutputLock,
    OutputLocked,
    current_run,
    lock_path,
    prepare,
    previous_run,
    publish,
    remove_leftovers,
    resolve,
    run_dir,
    runs_dir,
)
from transforms.write import write_parquet_atomically, write_run_manifest

DATE = "2026-11-22"


def write_run(folder: str, run_id: str) -> None:
    """A complete run folder: each table one file named after the run, and its
    ``_run.json``."""
    for name, schema in tables.TABLES.items():
        write_parquet_atomically(
            schema.empty_table(),
            os.path.join(folder, name, f"date={DATE}", f"{run_id}.parquet"),
        )
    write_run_manifest(folder, {"run_id": run_id})


def new_run(output: str, run_id: str) -> None:
    write_run(prepare(output, run_id), run_id)


def read_whole_run(output: str) -> str | None:
    """The run a reader following the recipe sees (resolve once, read under it), after
    checking it is whole: every table present, each holding only files of the run
    ``_run.json`` names. None when there is no output at all."""
    if not os.path.lexists(output):
        return None
    folder = resolve(output)
    with open(os.path.join(folder, RUN_MANIFEST), encoding="utf-8") as handle:
        run_id = json.load(handle)["run_id"]
    for name in tables.TABLES:
        files = [
            file
            for _, _, names in os.walk(os.path.join(folder, name))
            for file in names
        ]
        assert files == [f"{run_id}.parquet"], (name, files, run_id)
        pq.read_table(os.path.join(folder, name, f"date={DATE}", files[0]))
    return run_id


def old_layout(output: str, run_id: str) -> None:
    """An output folder as older versions wrote it: tables right inside, plus the
    staging folder of a run killed mid-way."""
    write_run(output, run_id)
    os.makedirs(os.path.join(output, f".staging-{run_id}x", "_spill"))


def test_a_run_replaces_the_previous_one_whole_and_keeps_it_for_a_while(tmp_path):
    output = str(tmp_path / "out")
    for run_id in ("run1", "run2"):
        with OutputLock(output):
            new_run(output, run_id)
            publish(output, run_id)
            remove_leftovers(output)
    assert os.path.islink(output) and read_whole_run(output) == "run2"
    assert previous_run(output) == "run1" and os.path.isdir(run_dir(output, "run1"))
    # The contract's glob reads through the pointer.
    import polars as pl

    assert pl.scan_parquet(
        f"{output}/volume/**/*.parquet", hive_partitioning=True
    ).collect().columns[:2] == ["window_start", "window_end"]
    with OutputLock(output):
        new_run(output, "run3")
        publish(output, "run3")
        remove_leftovers(output)
    assert read_whole_run(output) == "run3"
    assert sorted(os.listdir(runs_dir(output))) == [PREVIOUS_LINK, "run2", "run3"]


def test_an_output_of_the_older_layout_moves_into_a_run_folder_once(tmp_path):
    output = str(tmp_path / "out")
    old_layout(output, "old")
    with OutputLock(output):
        new_run(output, "new")
        publish(output, "new")
        remove_leftovers(output)
    assert os.path.islink(output) and read_whole_run(output) == "new"
    legacy = os.path.join(runs_dir(output), previous_run(output))
    with open(os.path.join(legacy, RUN_MANIFEST)) as handle:
        assert json.load(handle)["run_id"] == "old"
    assert not [name for name in os.listdir(legacy) if name.startswith(".staging-")]


def publish_killed_at(output: str, run_id: str, kill_at: int) -> int:
    """Publish ``run_id`` in a child process that dies (``os._exit``, as kill -9
    would leave it) right after filesystem step ``kill_at``; returns the steps the
    publish has in all when it is not killed."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: publish, dying after step ``kill_at``
        os.close(read)
        steps = []

        def after_step(name: str) -> None:
            steps.append(name)
            if len(steps) == kill_at:
                os._exit(9)

        try:
            publish(output, run_id, after_step)
            os.write(write, str(len(steps)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        steps = handle.read()
    os.waitpid(pid, 0)
    return int(steps) if steps else -1


@pytest.mark.parametrize(
    "layout", ["pointer", "older-layout", "older-layout-no-exchange", "first-run"]
)
def test_a_publish_killed_between_any_two_steps_leaves_one_run_whole(
    tmp_path, layout, monkeypatch
):
    if layout == "older-layout-no-exchange":
        # Where renameat2 is missing, the one-time move of an older folder has a
        # moment without an output; never one of mixed runs.
        import transforms.publish

        monkeypatch.setattr(transforms.publish, "_exchange", lambda *paths: False)
    kill_at, total = 1, None
    while total is None or kill_at <= total:
        output = str(tmp_path / f"out{kill_at}")
        if layout == "pointer":
            new_run(output, "old")
            publish(output, "old")
        elif layout.startswith("older-layout"):
            old_layout(output, "old")
        new_run(output, "new")
        steps = publish_killed_at(output, "new", kill_at)
        if steps >= 0:
            total = steps
            assert read_whole_run(output) == "new"
            break
        seen = read_whole_run(output)
        expected = {"old", "new"}
        if layout in ("first-run", "older-layout-no-exchange"):
            expected.add(None)
        assert seen in expected, (kill_at, seen)
        # The next run cleans up after the killed one and publishes whole.
        with OutputLock(output):
            new_run(output, "next")
            publish(output, "next")
            remove_leftovers(output)
        assert read_whole_run(output) == "next"
        leftovers = [
            name
            for name in os.listdir(tmp_path)
            if ".link-" in name or name.startswith(".staging-")
        ]
        assert leftovers == []
        kept = set(os.listdir(runs_dir(output))) - {PREVIOUS_LINK}
        assert kept == {"next", previous_run(output)} - {None}, kept
        kill_at += 1
    assert total and total >= 2, "the fault test must have killed between steps"


def test_runs_killed_before_publishing_are_cleaned_at_the_next_run(tmp_path):
    output = str(tmp_path / "out")
    new_run(output, "run1")
    publish(output, "run1")
    new_run(output, "killed")  # a run killed mid-way: never published
    os.symlink("x", str(tmp_path / ".out.link-killed"))
    os.symlink("x", str(tmp_path / ".other.link-running"))
    with OutputLock(output):
        folder = prepare(output, "run2")
    assert not os.path.exists(run_dir(output, "killed"))
    assert not os.path.lexists(str(tmp_path / ".out.link-killed"))
    # Another output's run, beside this one, is not this run's to clean.
    assert os.path.lexists(str(tmp_path / ".other.link-running"))
    assert os.path.isdir(run_dir(output, "run1")) and os.path.isdir(folder)
    assert current_run(output) == "run1"


def test_a_second_lock_on_one_output_is_refused_naming_the_holder(tmp_path):
    output = str(tmp_path / "out")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from transforms.publish import OutputLock\n"
            f"OutputLock({output!r}).acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
        ],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLocked, match=f"pid {holder.pid}"):
            OutputLock(output).acquire()
        result = run_volume(["--input", __file__, "--output", output])
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: ")
        assert f"pid {holder.pid}" in errors[0] and "another run" in errors[0]
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops the lock with its holder: the next run may go.
    OutputLock(output).acquire().release()
    assert os.path.exists(lock_path(output))


def test_two_runs_into_one_output_never_mix(small_stream, tmp_path):
    path, truth, _ = small_stream
    output = str(tmp_path / "out")
    results = {}

    def start(name: str, kinds: str) -> None:
        results[name] = run_volume(
            ["--input", str(path), "--output", output, "--topic-kinds", kinds]
        )

    threads = [
        threading.Thread(target=start, args=("a", "hashtag")),
        threading.Thread(target=start, args=("b", "mention")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(result.returncode for result in results.values())
    assert codes in ([0, 0], [0, 2]), {k: r.stderr[-2000:] for k, r in results.items()}
    for result in results.values():
        if result.returncode == 2:
            assert "another run is writing this output" in result.stderr
    folder = resolve(output)
    with open(os.path.join(folder, RUN_MANIFEST)) as handle:
        kinds = json.load(handle)["topic_kinds"]
    import polars as pl

    written = pl.scan_parquet(f"{folder}/topics/**/*.parquet").collect()["kind"]
    assert set(written.unique()) <= set(kinds) and len(kinds) == 1
    assert not [n for n in os.listdir(tmp_path) if ".link-" in n]


def test_a_usage_error_creates_no_output_folder(tmp_path):
    output = tmp_path / "out"
    result = run_volume(
        ["--input", __file__, "--output", str(output), "--window", "1x"]
    )
    assert result.returncode == 2
    assert not os.path.lexists(output)


def test_an_output_given_as_a_symlink_of_the_users_own_is_followed(tmp_path):
    from transforms.publish import output_path

    real = tmp_path / "disk" / "out"
    real.mkdir(parents=True)
    (tmp_path / "out").symlink_to(real)
    path = output_path(str(tmp_path / "out"))
    assert path == str(real)
    new_run(path, "run1")
    publish(path, "run1")
    assert output_path(path) == path and current_run(path) == "run1"
    assert read_whole_run(str(tmp_path / "out")) == "run1"


def test_a_folder_holding_other_files_is_refused_not_moved(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    result = run_volume(["--input", __file__, "--output", str(home)])
    assert result.returncode == 2
    assert "not this pipeline's tables (notes.txt)" in result.stderr
    assert (home / "notes.txt").read_text() == "mine" and not home.is_symlink()


def test_a_run_killed_mid_way_leaves_the_previous_tables_and_its_leftovers_go(
    small_stream, tmp_path
):
    import signal
    import time

    from tests.conftest import TEST_KEY_HEX

    path, _, _ = small_stream
    output = str(tmp_path / "out")
    args = ["--input", str(path), "--output", output, "--topic-kinds", "hashtag"]
    assert run_volume(args).returncode == 0
    first = read_manifest_run(output)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.volume", *args],
        cwd=PROJECT,
        env={**os.environ, "YUQING_PSEUDONYM_KEY": TEST_KEY_HEX},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    runs = runs_dir(output)
    deadline = time.monotonic() + 60
    while len(set(os.listdir(runs)) - {PREVIOUS_LINK}) < 2:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert read_manifest_run(output) == first
    assert run_volume(args).returncode == 0
    assert read_manifest_run(output) != first
    assert set(os.listdir(runs)) == {
        PREVIOUS_LINK,
        current_run(output),
        previous_run(output),
    }
    assert previous_run(output) == first


def read_manifest_run(output: str) -> str:
    with open(os.path.join(resolve(output), RUN_MANIFEST), encoding="utf-8") as handle:
        return json.load(handle)["run_id"]


def test_reports_read_the_run_the_pointer_names_and_show_the_output_path(tmp_path):
    from reports.summary import summary_text
    from reports.tables import resolve_output

    output = str(tmp_path / "out")
    new_run(output, "run1")
    publish(output, "run1")
    assert resolve_output(output) == run_dir(output, "run1")
    text = summary_text(output, top=3)
    assert text.splitlines()[0] == f"Tables in {output} (run run1)"
    assert f"{output}/volume" in text and ".runs" not in text
