"""The burst evaluation, run small in CI: detection quality must not regress."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The figures the README reports (benchmarks/eval_bursts.py --seeds 5); CI fails
# when a smaller run falls more than MARGIN below them.
REPORTED = json.loads((ROOT / "benchmarks" / "eval_bursts_reported.json").read_text())
MARGIN = 0.05


@pytest.mark.slow
def test_planted_bursts_are_found_and_background_stays_quiet():
    command = [
        sys.executable,
        "benchmarks/eval_bursts.py",
        "--seeds",
        "4",
        "--json",
        "--min-recall",
        str(REPORTED["recall"] - MARGIN),
        "--min-precision",
        str(REPORTED["precision"] - MARGIN),
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["latency_windows_max"] <= 2
    assert figures["background_false_hashtags_per_day"] <= 1
