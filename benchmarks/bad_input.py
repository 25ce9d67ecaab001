#!/usr/bin/env python
"""Time and memory per line of bad input through the line path (issue 15).

    .venv/bin/python benchmarks/bad_input.py              # every kind, line path only
    .venv/bin/python benchmarks/bad_input.py --pipeline   # and one pipeline run
    .venv/bin/python benchmarks/bad_input.py --kinds deep-nesting,line-50MB

For each kind of bad input a file is written once into ``--data-dir``; then a fresh
Python process reads it through the line path, as a batch worker does: the file is
sliced (``json_lines_slices``), each slice read and parsed (``ParseSlicesFn``:
decoding, validation, masking, pseudonymizing, dead letters), and each post's topics
extracted (``post_topics`` with a ``TextAnalyzer``, all four kinds). Printed per kind:
lines, what they became, seconds in all and per line, the process's peak RSS, and
what the line path added to the RSS it had before (imports and the analyzer loaded).
The last row is the worst case over the kinds. ``--pipeline`` also runs
``python -m pipelines.volume`` once over all the files (1 worker) and prints its
wall time, its peak RSS and whether lines = posts + duplicates + dead letters.

The machine's load average is printed: figures only compare between runs on an
equally idle machine.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

KEY_HEX = "00" * 32
MB = 1024 * 1024
CREATED = "2026-11-21T10:00:00+08:00"


def _post(number: int, **fields) -> bytes:
    record = {
        "id": str(number),
        "user_id": f"u{number % 97}",
        "created_at": CREATED,
        "text": f"第{number}条微博 #话题# 今天天气很好",
        **fields,
    }
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def _write(path: Path, pieces) -> None:
    with open(path, "wb") as handle:
        for piece in pieces:
            handle.write(piece)


def _bait(size: int) -> list[bytes]:
    """``"1 " + "a" * size``, in pieces of at most 1 MB."""
    return [b"1 "] + [b"a" * min(MB, size - start) for start in range(0, size, MB)]


def _kinds() -> dict:
    """Kind -> a function writing its file."""
    head = b'{"id": "1", "user_id": "u1", "created_at": "' + CREATED.encode()
    tail = b'"}\n'
    return {
        "good-posts": lambda p: _write(p, (_post(n) for n in range(10_000))),
        "many-bad-lines": lambda p: _write(
            p,
            (b"not json %d\n" % n if n % 2 else b"[%d]\n" % n for n in range(100_000)),
        ),
        "deep-nesting": lambda p: _write(p, [b"[" * 10_000 + b"]" * 10_000 + b"\n"]),
        "deep-unclosed-1MB": lambda p: _write(p, [b'{"a": ' + b"[" * MB + b"\n"]),
        "surrogate-ids": lambda p: _write(
            p,
            (
                b'{"id": "%d", "user_id": "u\\ud800", "created_at": "%s", '
                b'"text": "x"}\n' % (n, CREATED.encode())
                for n in range(10_000)
            ),
        ),
        "surrogate-text-1MB": lambda p: _write(
            p, [head + b'", "text": "' + b"\\ud800\\u4e2d" * (MB // 12 - 100) + tail]
        ),
        "bait-text-1MB": lambda p: _write(
            p, [head + b'", "text": "', *_bait(MB - 200), tail]
        ),
        "bait-dead-letter-1MB": lambda p: _write(
            p, [b'{"id": "1", "text": "', *_bait(MB - 200), tail]
        ),
        "digits-text-1MB": lambda p: _write(
            p, [head + b'", "text": "', b"13812345678 " * (MB // 13), tail]
        ),
        "line-1MB-over-bound": lambda p: _write(
            p, [head + b'", "text": "', *_bait(MB + 10), tail]
        ),
        "line-50MB": lambda p: _write(
            p, [head + b'", "text": "', *_bait(50 * MB), tail, _post(2)]
        ),
    }


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure_one(path: str) -> dict:
    """The line path over one file, in this process: figures as a dict."""
    from schemas.keys import PseudonymKeySource
    from schemas.records import Post
    from transforms.extract import post_topics
    from transforms.files import json_lines_slices
    from transforms.privacy import key_fingerprint
    from transforms.read import ParseSlicesFn
    from transforms.text import TextAnalyzer
    from transforms.topics import TOPIC_KINDS

    analyzer = TextAnalyzer()
    analyzer.analyze("预热分词器 #话题#", ())
    os.environ["YUQING_BENCHMARK_PSEUDONYM_KEY"] = KEY_HEX
    parser = ParseSlicesFn(
        PseudonymKeySource(
            None,
            "YUQING_BENCHMARK_PSEUDONYM_KEY",
            key_fingerprint(bytes.fromhex(KEY_HEX)),
        )
    )
    before = _rss_mb()
    start = time.perf_counter()
    slices, lines, _ = json_lines_slices(path)
    posts = letters = topics = 0
    for piece in slices:
        for output in parser.process(piece):
            if isinstance(output, Post):
                posts += 1
                topics += len(post_topics(output.text, TOPIC_KINDS, analyzer))
            else:
                letters += 1
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "lines": lines,
        "posts": posts,
        "dead_letters": letters,
        "topics": topics,
        "seconds": seconds,
        "peak_mb": peak,
        "added_mb": max(0.0, peak - before),
    }


def _run_child(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _pipeline(files: list[Path], folder: Path) -> str:
    out = folder / "out"
    env = {**os.environ, "YUQING_PSEUDONYM_KEY": KEY_HEX}
    args = [sys.executable, "-m", "pipelines.volume", "--output", str(out)]
    for path in files:
        args += ["--input", str(path)]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=PROJECT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        return f"pipeline: exit {done.returncode}: {done.stderr.strip()[-300:]}"
    import polars as pl

    def table(name):
        return pl.scan_parquet(
            f"{out}/{name}/**/*.parquet", hive_partitioning=True
        ).collect()

    volume, letters = table("volume"), table("dead_letters")
    counted = volume["posts"].sum() + volume["duplicates"].sum() + letters.height
    lines = sum(_file_lines(path) for path in files)
    return (
        f"pipeline over all files: {seconds:.1f} s, peak RSS {peak:.0f} MB "
        f"(largest process), lines {lines} = posts + duplicates + dead letters "
        f"{counted}: {'yes' if counted == lines else 'NO'}"
    )


def _file_lines(path: Path) -> int:
    """Lines of a file: each end of line closes one, what follows the last is one."""
    ends, last = 0, b""
    with open(path, "rb") as handle:
        while chunk := handle.read(MB):
            ends += chunk.count(b"\n")
            last = chunk[-1:]
    return ends + (1 if last and last != b"\n" else 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="Where the files go.")
    parser.add_argument("--kinds", default=None, help="Comma-separated kinds.")
    parser.add_argument("--pipeline", action="store_true")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure_one(args.measure)))
        return 0
    kinds = _kinds()
    chosen = args.kinds.split(",") if args.kinds else list(kinds)
    folder = Path(args.data_dir or tempfile.mkdtemp(prefix="bad-input-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.2f}; files in {folder}")
    header = (
        f"{'kind':<22}{'lines':>8}{'posts':>7}{'dead':>7}{'seconds':>9}"
        f"{'s/line':>10}{'peak MB':>9}{'added MB':>9}"
    )
    print(header)
    files, slowest, largest = [], ("", -1.0), ("", -1.0)
    for kind in chosen:
        path = folder / f"{kind}.jsonl"
        if not path.exists():
            kinds[kind](path)
        files.append(path)
        row = _run_child(path)
        per_line = row["seconds"] / max(1, row["lines"])
        print(
            f"{kind:<22}{row['lines']:>8}{row['posts']:>7}{row['dead_letters']:>7}"
            f"{row['seconds']:>9.3f}{per_line:>10.5f}{row['peak_mb']:>9.0f}"
            f"{row['added_mb']:>9.0f}"
        )
        slowest = max(slowest, (kind, per_line), key=lambda pair: pair[1])
        largest = max(largest, (kind, row["added_mb"]), key=lambda pair: pair[1])
    print(
        f"worst case: {slowest[1]:.4f} s per line ({slowest[0]}); "
        f"{largest[1]:.0f} MB added to RSS ({largest[0]})"
    )
    if args.pipeline:
        print(_pipeline(files, folder))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
