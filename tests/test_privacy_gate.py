"""The privacy benchmark, run small in CI: masking recall and false masks must hold.

``benchmarks/privacy.py --check`` exits 1 when recall falls below 0.99 on any kind
of personal information, or false masks rise above 0.5% on any look-alike kind, or
a dead letter keeps an author id, is garbled by a short one, or its reason keeps a
planted value.
"""

import json
import subprocess
import sys

from tests.conftest import PROJECT


def test_masking_recall_and_false_masks_hold_on_the_generated_corpus():
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/privacy.py",
            "--per-kind",
            "1000",
            "--seed",
            "11",
            "--check",
            "--skip-adversarial",
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(figures["recall"]) == {
        "mobile",
        "landline",
        "id18",
        "id15",
        "email",
        "bankcard",
        "account",
    }
    assert min(figures["recall"].values()) >= 0.99
    assert len(figures["false_mask_rate"]) == 8
    assert max(figures["false_mask_rate"].values()) <= 0.005
    assert figures["dead_letters"]["lines"] > 0
