"""End to end: the command into a temp folder, tables read back with polars."""

import collections
import datetime
import gzip
import json
import os
import re
import subprocess
import sys
import unicodedata

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import CASCADES, PROJECT, needs_shared, read_table, run_volume

SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))


def _event_seconds(value) -> float:
    if isinstance(value, int):
        return value / 1000 if value >= 100_000_000_000 else value
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("no offset")
    return moment.timestamp()


def _reference_volume(lines: list[str]) -> pl.DataFrame:
    """Per-hour distinct posts and exact distinct authors, computed without Beam."""
    posts: dict[int, dict[str, str]] = collections.defaultdict(dict)
    for line in lines:
        try:
            record = json.loads(line)
            hour = int(_event_seconds(record["created_at"]) // 3600 * 3600)
            if not isinstance(record.get("text"), str) or "user_id" not in record:
                continue
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        posts[hour][str(record["id"])] = str(record["user_id"])
    rows = [
        {
            "window_start": datetime.datetime.fromtimestamp(hour, datetime.UTC),
            "posts": len(by_id),
            "participants": len(set(by_id.values())),
        }
        for hour, by_id in sorted(posts.items())
    ]
    return pl.DataFrame(rows).with_columns(
        pl.col("window_start").dt.cast_time_unit("us"),
        pl.col("posts").cast(pl.Int64),
        pl.col("participants").cast(pl.Int64),
    )


def test_accounting_holds_on_the_sample(small_stream, small_run):
    _, truth, _ = small_stream
    out, _ = small_run
    volume = read_table(out, "volume")
    dead = read_table(out, "dead_letters")
    assert volume["posts"].sum() == truth.posts
    assert volume["duplicates"].sum() == truth.duplicates
    assert dead.height == truth.malformed
    assert (
        volume["posts"].sum() + volume["duplicates"].sum() + dead.height == truth.lines
    )


def test_volume_matches_a_plain_python_count(small_stream, small_run):
    _, _, lines = small_stream
    out, _ = small_run
    got = (
        read_table(out, "volume")
        .select("window_start", "posts", "participants")
        .sort("window_start")
    )
    expected = _reference_volume(lines)
    assert_frame_equal(
        got.select("window_start", "posts"), expected.select("window_start", "posts")
    )
    # Participants are HLL estimates; below a few hundred authors they are exact.
    assert (got["participants"] - expected["participants"]).abs().max() <= max(
        1, int(expected["participants"].max() * 0.02)
    )


def test_topics_carry_all_four_kinds(small_run):
    out, _ = small_run
    kinds = set(read_table(out, "topics")["kind"].unique().to_list())
    assert kinds == {"hashtag", "mention", "entity", "keyword"}


def test_planted_surge_bursts_in_its_first_window(small_stream, small_run):
    _, truth, _ = small_stream
    out, _ = small_run
    (planted,) = truth.bursts
    onset = datetime.datetime.fromisoformat(planted["onset"]).astimezone(datetime.UTC)
    hashtags = read_table(out, "bursts").filter(pl.col("kind") == "hashtag")
    assert hashtags["topic"].unique().to_list() == [planted["hashtag"]]
    assert hashtags["window_start"].min() == onset.replace(
        minute=0, second=0, microsecond=0
    )
    (episode,) = (
        read_table(out, "burst_episodes")
        .filter(pl.col("kind") == "hashtag")
        .iter_rows(named=True)
    )
    assert episode["onset"] == hashtags["window_start"].min()
    assert episode["windows"] == hashtags.height


def test_contract_checker_passes(small_run):
    out, _ = small_run
    checker = PROJECT.parent / "shared" / "tools" / "check_contract.py"
    if not checker.exists():
        pytest.skip("../shared/tools/check_contract.py is absent")
    result = subprocess.run(
        [sys.executable, str(checker), str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_dead_letters_say_why_and_where(small_run):
    out, _ = small_run
    dead = read_table(out, "dead_letters")
    assert dead["source"].str.contains(r"posts\.jsonl\.gz:\d+$").all()
    assert dead["error"].str.len_chars().min() > 5
    assert (dead["raw"].str.len_bytes() <= 10 * 1024).all()
    reasons = set(dead["error"].to_list())
    assert "created_at: 'yesterday' is not ISO-8601 or epoch" in reasons
    assert "user_id: missing (required)" in reasons


def test_no_raw_user_id_or_personal_data_anywhere(small_stream, small_run):
    _, truth, lines = small_stream
    out, result = small_run
    user_ids = {
        json.loads(line)["user_id"]
        for line in lines
        if line.startswith("{") and '"user_id"' in line and line.endswith("}")
    }
    secrets = set(truth.pii)
    assert secrets, "the sample must carry personal data for this test to mean anything"
    texts = [result.stdout, result.stderr]
    for entry in sorted(os.listdir(out)):
        if not (out / entry).is_dir():
            texts.append((out / entry).read_text(encoding="utf-8"))  # _run.json
            continue
        frame = pl.scan_parquet(f"{out}/{entry}/**/*.parquet").collect()
        for column, dtype in frame.schema.items():
            if dtype == pl.String:
                texts.extend(frame[column].drop_nulls().to_list())
    blob = "\n".join(texts)
    tokens = set(re.findall(r"[A-Za-z0-9_@.\-]+", blob))
    leaked_ids = user_ids & tokens
    assert not leaked_ids, f"raw user ids in output: {sorted(leaked_ids)[:5]}"
    leaked = [secret for secret in secrets if secret in blob]
    assert not leaked, f"personal data in output: {leaked[:5]}"


def test_usage_errors_exit_nonzero_with_one_line(tmp_path):
    cases = [
        (
            [
                "--input",
                str(tmp_path / "nothing*.jsonl"),
                "--output",
                str(tmp_path / "o"),
            ],
            "no file matched",
        ),
        (["--output", str(tmp_path / "o")], "--input is required"),
        (
            ["--input", __file__, "--output", str(tmp_path / "o"), "--window", "1x"],
            "--window",
        ),
        (
            [
                "--input",
                __file__,
                "--output",
                str(tmp_path / "o"),
                "--timezone",
                "Mars/Olympus",
            ],
            "IANA",
        ),
        (["--input", __file__, "--output", "/proc/forbidden/out"], "not writable"),
    ]
    for args, message in cases:
        result = run_volume(args)
        assert result.returncode == 2, (args, result.stderr)
        lines = [
            line for line in result.stderr.splitlines() if line.startswith("error:")
        ]
        assert len(lines) == 1 and message in lines[0], result.stderr


def test_rerun_replaces_tables_and_reads_parquet_input(small_stream, tmp_path):
    path, truth, lines = small_stream
    # The same posts as Parquet (created_at kept as strings and integers, as in JSON).
    records = [
        json.loads(line)
        for line in lines
        if line.startswith("{") and line.endswith("}")
    ]
    good = [
        r
        for r in records
        if isinstance(r.get("text"), str)
        and "user_id" in r
        and "id" in r
        and r.get("created_at") not in ("yesterday", "2026-11-21 10:00:00")
    ]
    parquet_path = tmp_path / "posts.parquet"
    frame = pl.DataFrame(
        {
            "id": [str(r["id"]) for r in good],
            "user_id": [r["user_id"] for r in good],
            "created_at": [
                str(r["created_at"])
                if isinstance(r["created_at"], str)
                else datetime.datetime.fromtimestamp(
                    _event_seconds(r["created_at"]), SHANGHAI
                ).isoformat()
                for r in good
            ],
            "text": [r["text"] for r in good],
            "repost_of": [r.get("repost_of") for r in good],
        }
    )
    frame.write_parquet(parquet_path)
    out = tmp_path / "out"
    first = run_volume(
        ["--input", str(path), "--output", str(out), "--topic-kinds", "hashtag"]
    )
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_volume(
        ["--input", str(parquet_path), "--output", str(out), "--topic-kinds", "hashtag"]
    )
    assert second.returncode == 0, second.stderr[-2000:]
    volume = read_table(out, "volume")
    assert volume["posts"].sum() == truth.posts
    assert volume["duplicates"].sum() == len(good) - truth.posts
    assert read_table(out, "dead_letters").height == 0
    assert [name for name in os.listdir(out) if name.startswith(".")] == []


def _distinct_records(lines: list[str]):
    """The JSON records of ``lines``, each post id once (the first copy)."""
    seen_ids = set()
    for line in lines:
        record = json.loads(line)
        if record["id"] not in seen_ids:
            seen_ids.add(record["id"])
            yield record


@pytest.mark.slow
@needs_shared(CASCADES)
def test_real_cascades_accounting_hashtags_and_chains(tmp_path):
    out = tmp_path / "out"
    result = run_volume(["--input", str(CASCADES), "--output", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(read_table(out, "topics")["kind"].unique().to_list()) == {
        "hashtag",
        "mention",
        "entity",
        "keyword",
    }
    with gzip.open(CASCADES, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    volume = read_table(out, "volume")
    dead = read_table(out, "dead_letters")
    assert volume["posts"].sum() + volume["duplicates"].sum() + dead.height == len(
        lines
    )

    topics = read_table(out, "topics")
    hashtags = topics.filter(pl.col("kind") == "hashtag")
    # Independent count: distinct #...# spans per post, by a plain regex.
    expected = collections.Counter()
    chain_only = collections.Counter()
    for record in _distinct_records(lines):
        spans = re.findall(
            r"#([^#\n]+)#", unicodedata.normalize("NFKC", record["text"])
        )
        for tag in {" ".join(span.split()).lower() for span in spans if span.strip()}:
            expected[tag] += 1
        for name in re.findall(r"//@([\w\-]+)", record["text"]):
            chain_only[name.lower()] += 1
    got = dict(hashtags.group_by("topic").agg(pl.col("posts").sum()).iter_rows())
    missing = {tag: count for tag, count in expected.items() if got.get(tag, 0) < count}
    assert not missing, f"hashtags not found: {list(missing.items())[:5]}"

    mentions = dict(
        topics.filter(pl.col("kind") == "mention")
        .group_by("topic")
        .agg(pl.col("posts").sum())
        .iter_rows()
    )
    assert chain_only, "the real data has //@name repost chains"
    # A chain name counts as a mention only in posts that @-mention it in prose.
    prose_mentions = collections.Counter()
    for record in _distinct_records(lines):
        prose = re.sub(r"//@[\w\-]+", " ", record["text"])
        for name in {name.lower() for name in re.findall(r"@([\w\-]+)", prose)}:
            prose_mentions[name] += 1
    for name in chain_only:
        assert mentions.get(name, 0) == prose_mentions[name], name


def test_run_manifest_records_how_the_tables_were_made(small_run):
    out, _ = small_run
    manifest = json.loads((out / "_run.json").read_text())
    assert (manifest["window_seconds"], manifest["timezone"], manifest["sketch"]) == (
        3600,
        "Asia/Shanghai",
        {"type": "HLL_4", "lg_k": 14},
    )
    assert manifest["topic_kinds"] == ["hashtag", "mention", "entity", "keyword"]
    assert manifest["mode"] == "batch" and manifest["apache_beam"].startswith("2.77")
