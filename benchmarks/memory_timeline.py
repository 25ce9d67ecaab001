#!/usr/bin/env python
"""Where a batch run's memory goes: RSS of each process against the stage running.

    .venv/bin/python benchmarks/memory_timeline.py -- \\
        --input posts.jsonl.gz --output /tmp/out
    .venv/bin/python benchmarks/memory_timeline.py -- \\
        --input posts.jsonl.gz --output /tmp/out \\
        --direct_num_workers 2 --direct_running_mode multi_processing

Runs ``pipelines.volume`` in this process with the arguments after ``--`` and prints,
each time Beam's FnApiRunner starts a bundle of a stage, the seconds since start, the
RSS of this process and of each worker process (MB), and the stage's first step;
then the peak RSS of the process tree and when it was reached. Batch only: the
FnApiRunner runs one stage at a time, so the line before a jump names what holds
the memory. ``YUQING_PSEUDONYM_KEY`` is set to a fixed test key unless given.
"""

import logging
import os
import sys
import threading
import time
from pathlib import Path

import psutil

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
# The FnApiRunner's logger of bundles (apache_beam/runners/portability/fn_api_runner).
BUNDLE_LOGGER = "apache_beam.runners.portability.fn_api_runner.fn_runner.run_bundle"
STAGE_PREFIX = "Running bundle for stage "
MB = 1024 * 1024


class TreeSampler(threading.Thread):
    """RSS of this process and its descendants (MB), every ``every`` seconds."""

    def __init__(self, started: float, every: float = 0.1):
        super().__init__(daemon=True)
        self.started, self.every = started, every
        self.latest: list[int] = []
        self.peak: tuple[float, int, list[int]] = (0.0, 0, [])
        self.me = psutil.Process()

    def run(self) -> None:
        while True:
            sizes = [self.me.memory_info().rss // MB]
            for child in self.me.children(recursive=True):
                try:
                    sizes.append(child.memory_info().rss // MB)
                except psutil.Error:
                    pass
            self.latest = sizes
            if sum(sizes) > self.peak[1]:
                self.peak = (time.perf_counter() - self.started, sum(sizes), sizes)
            time.sleep(self.every)


class StageLines(logging.Handler):
    """Prints a line for each bundle the runner starts."""

    def __init__(self, sampler: TreeSampler):
        super().__init__(logging.DEBUG)
        self.sampler = sampler

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith(STAGE_PREFIX):
            return
        stage = message[len(STAGE_PREFIX) :].split("\n")[0].lstrip("(")
        elapsed = time.perf_counter() - self.sampler.started
        sizes = self.sampler.latest
        print(f"{elapsed:8.2f} s  {sum(sizes):6d} MB {sizes}  {stage[:90]}", flush=True)


def main(argv: list[str]) -> int:
    arguments = argv[argv.index("--") + 1 :] if "--" in argv else argv
    os.environ.setdefault(
        "YUQING_PSEUDONYM_KEY", "00112233445566778899aabbccddeeff" * 2
    )
    logging.getLogger().setLevel(logging.WARNING)
    sampler = TreeSampler(time.perf_counter())
    sampler.start()
    logger = logging.getLogger(BUNDLE_LOGGER)
    logger.addHandler(StageLines(sampler))
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    from pipelines.volume import run

    status = run(arguments)
    at, total, sizes = sampler.peak
    print(f"peak RSS {total} MB {sizes} at {at:.2f} s; exit status {status}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
