"""The pipeline over the privacy corpus: no planted value and no author id anywhere.

Every text of ``benchmarks/privacy.py``'s corpus goes in as a post (planted values
written every way, look-alikes) or as a rejected line (the dead-letter forms: JSON
with and without escapes, Python repr, cut off), plus a few lines rejected for other
reasons. Then every string of every table, ``_run.json`` and every line the run
logged is searched for every planted value (digits, with escapes read and
separators dropped; addresses) and every raw author id: none may be found. Keys
of weak forms stop the run with exit 2 and one line; the manifest names the key by
its fingerprint only.
"""

import datetime
import json
import re

import polars as pl
import pytest

from benchmarks.privacy import make_corpus
from reports.summary import summary_text
from tests.conftest import TEST_KEY_HEX, run_volume
from transforms.privacy import PLACEHOLDERS, fold_escaped, key_fingerprint

_NOT_DIGIT = re.compile(r"[^0-9x]")


def _corpus_lines(tmp_path):
    cases = make_corpus(seed=23, per_kind=48)
    start = datetime.datetime(2026, 11, 20, 8, tzinfo=datetime.UTC)
    lines, secrets, authors = [], set(), set()
    for number, case in enumerate(cases):
        if case.dead_letter:
            lines.append(case.text)
            user_id = case.extra["user_id"]
            raw_id = user_id["v"] if isinstance(user_id, dict) else user_id
            if len(raw_id) >= 3:
                authors.add(raw_id.lower())
        else:
            created = start + datetime.timedelta(minutes=number % 600)
            lines.append(
                json.dumps(
                    {
                        "id": str(10**15 + number),
                        "user_id": case.account or f"author{number:09d}",
                        "created_at": created.isoformat(),
                        "text": case.text,
                    },
                    ensure_ascii=number % 2 == 0,
                )
            )
            authors.add((case.account or f"author{number:09d}").lower())
        if case.form != "lookalike":
            secrets.add((case.kind, case.secret))
    # Rejected for other reasons, with personal data and the author id in them.
    lines += [
        '{"id": 1, "user_id": "leaky_author_01", "text": "电话13912345678", oops',
        "{'id': 2, 'user_id': 'leaky_author_02', 'text': '身份证110101197701275795'}",
        '{"id": 3, "user_id": "leaky_author_03", "created_at": "电话13812345678"}',
        '{"id": 4, "user_id": "leaky_author_04", "created_at": 1700000000}',
        "",
    ]
    authors |= {f"leaky_author_0{index}" for index in range(1, 5)}
    secrets |= {("mobile", "13912345678"), ("mobile", "13812345678")}
    secrets.add(("id18", "110101197701275795"))
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, secrets, authors, len(lines)


def _strings(value, into: list) -> None:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, into)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _strings(item, into)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("privacy")
    path, secrets, authors, lines = _corpus_lines(tmp_path)
    out = tmp_path / "out"
    result = run_volume(["--input", str(path), "--output", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result, secrets, authors, lines


def test_no_planted_value_and_no_author_id_in_any_table_or_log(corpus_run):
    out, result, secrets, authors, _ = corpus_run
    texts = [*result.stdout.splitlines(), *result.stderr.splitlines()]
    texts.append((out / "_run.json").read_text(encoding="utf-8"))
    tables = [entry for entry in sorted(out.iterdir()) if entry.is_dir()]
    assert {"topics", "dead_letters", "volume"} <= {table.name for table in tables}
    for table in tables:
        if not list(table.rglob("*.parquet")):
            continue
        frame = pl.scan_parquet(f"{table}/**/*.parquet", hive_partitioning=True)
        frame = frame.collect()
        for column, dtype in frame.schema.items():
            if dtype == pl.String or isinstance(dtype, (pl.List, pl.Struct)):
                for value in frame[column].drop_nulls().to_list():
                    _strings(value, texts)
    assert len(texts) > 400
    leaks = []
    for text in texts:
        folded = fold_escaped(text).text
        digits = _NOT_DIGIT.sub("", folded)
        tokens = set(re.findall(r"[\w.@\-]+", folded))
        for kind, secret in secrets:
            if kind in ("email", "account"):
                if secret in folded:
                    leaks.append((kind, secret, text[:200]))
            elif secret.rstrip("x") in digits:
                leaks.append((kind, secret, text[:200]))
        for author in authors & tokens:
            leaks.append(("author id", author, text[:200]))
    assert not leaks, leaks[:10]


def test_accounting_and_no_placeholder_topics(corpus_run):
    out, _, _, _, lines = corpus_run
    topics = pl.scan_parquet(f"{out}/topics/**/*.parquet").collect()
    placeholders = [placeholder.lower() for placeholder in PLACEHOLDERS]
    bad = topics.filter(
        pl.any_horizontal(
            [pl.col("topic").str.contains(re.escape(text)) for text in placeholders]
        )
        | pl.col("topic").str.contains("<")
    )
    assert bad.is_empty(), bad["topic"].to_list()[:10]
    dead = pl.scan_parquet(f"{out}/dead_letters/**/*.parquet").collect()
    posts = pl.scan_parquet(f"{out}/volume/**/*.parquet").collect()["posts"].sum()
    assert posts + dead.height == lines
    assert dead["raw"].str.contains("<masked>").sum() >= dead.height - 2


def test_manifest_records_the_key_fingerprint_not_the_key(corpus_run):
    out, *_ = corpus_run
    text = (out / "_run.json").read_text(encoding="utf-8")
    manifest = json.loads(text)
    key = bytes.fromhex(TEST_KEY_HEX)
    assert manifest["key_fingerprint"] == key_fingerprint(key)
    assert TEST_KEY_HEX not in text and TEST_KEY_HEX[:16] not in text
    assert key_fingerprint(key) in summary_text(str(out))


@pytest.mark.parametrize(
    "env, message",
    [
        ({"YUQING_PSEUDONYM_KEY": ""}, "empty"),
        ({"YUQING_PSEUDONYM_KEY": "password"}, "not hex"),
        ({"YUQING_PSEUDONYM_KEY": "ab" * 16}, "16 bytes"),
    ],
    ids=["empty", "not-hex", "short"],
)
def test_weak_key_is_a_one_line_usage_error(tmp_path, env, message):
    posts = tmp_path / "posts.jsonl"
    posts.write_text("{}\n")
    result = run_volume(
        ["--input", str(posts), "--output", str(tmp_path / "out")], env=env
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_weak_key_file_is_a_one_line_usage_error(tmp_path):
    posts = tmp_path / "posts.jsonl"
    posts.write_text("{}\n")
    key_file = tmp_path / "empty.key"
    key_file.write_text("\n")
    result = run_volume(
        [
            "--input",
            str(posts),
            "--output",
            str(tmp_path / "out"),
            "--pseudonym-key-file",
            str(key_file),
        ]
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "empty" in lines[0] and str(key_file) in lines[0]
