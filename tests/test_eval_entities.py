"""The entity quality script: its scorer, its exit code, and the dev figure CI guards.

``benchmarks/eval_entities.py`` is run as a user runs it (a subprocess from the
project root). The dev check reads WeiboNER under ../shared/data and skips, saying
why, where that folder is absent; the other tests build their own tiny split.
"""

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT, WEIBO_NER, needs_shared

SCRIPT = PROJECT / "benchmarks" / "eval_entities.py"
SCORES_ONLY = ["--skip-ablation", "--skip-engines", "--skip-examples"]


def _load_script():
    spec = importlib.util.spec_from_file_location("eval_entities", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


eval_entities = _load_script()


def run_script(*args: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run the script; return the process and its last line (the JSON figures)."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return result, figures


def write_conll(path, messages: list[list[tuple[str, str]]]) -> None:
    """A WeiboNER-format file: ``CHAR<position>\\tTAG`` a line, blank between."""
    with open(path, "w", encoding="utf-8") as handle:
        for message in messages:
            for index, (char, tag) in enumerate(message):
                handle.write(f"{char}{index % 3}\t{tag}\n")
            handle.write("\n")


def tagged(text: str, names: dict[str, str]) -> list[tuple[str, str]]:
    """Characters of ``text`` with BIO tags for each ``name -> TYPE.NAM``."""
    tags = ["O"] * len(text)
    for name, label in names.items():
        start = text.index(name)
        tags[start] = f"B-{label}"
        for index in range(start + 1, start + len(name)):
            tags[index] = f"I-{label}"
    return list(zip(text, tags, strict=True))


# --- the reported dev figure ------------------------------------------------------


@needs_shared(WEIBO_NER)
def test_dev_name_f1_holds_the_reported_figure():
    reported = eval_entities.read_reported()
    floor = reported["overall"]["f1"] - reported["tolerance"]
    result, figures = run_script("--check-reported", *SCORES_ONLY)
    assert result.returncode == 0, (
        f"name F1 on WeiboNER dev fell below {floor:.4f} "
        f"({eval_entities.REPORTED.name} minus tolerance):\n{result.stderr[-2000:]}"
    )
    assert figures["engine"] == reported["engine"]
    assert figures["entities"]["overall"]["f1"] >= floor


@needs_shared(WEIBO_NER)
def test_reported_figures_are_the_measured_ones():
    """The README quotes entity_scores.json: a gain not recorded there is stale."""
    reported = eval_entities.read_reported()
    _, figures = run_script("--engine", reported["engine"], *SCORES_ONLY)
    for group in eval_entities.NAME_TYPES + ("overall",):
        measured = figures["entities"][group]
        assert measured["f1"] == pytest.approx(reported[group]["f1"], abs=0.005), (
            f"{group}: measured {measured}, recorded {reported[group]}; run "
            "`python benchmarks/eval_entities.py --record --skip-engines "
            "--skip-examples` and update the README"
        )


def test_reported_figures_file_is_complete():
    reported = eval_entities.read_reported()
    assert reported["split"] == "dev"
    assert reported["tolerance"] == pytest.approx(0.02)
    for group in ("overall", *eval_entities.NAME_TYPES):
        assert {"precision", "recall", "f1"} <= reported[group].keys()


# --- exit codes on a small split of our own ---------------------------------------

MESSAGES = [
    tagged(
        "今天和张先生去北京看了刘德华的演唱会", {"北京": "GPE.NAM", "刘德华": "PER.NAM"}
    ),
    tagged("回杭州就快要一年了", {"杭州": "GPE.NAM"}),
]


def test_min_f1_passes_when_met(tmp_path):
    path = tmp_path / "small.conll"
    write_conll(path, MESSAGES)
    result, figures = run_script("--split", str(path), "--min-f1", "0.5", *SCORES_ONLY)
    assert result.returncode == 0, result.stderr
    assert figures["entities"]["overall"]["recall"] == 1.0
    assert figures["entities"]["overall"]["gold"] == 3


def test_min_f1_fails_below_the_floor(tmp_path):
    # A gold name no tagger finds (a made-up nickname) drags recall down.
    path = tmp_path / "small.conll"
    write_conll(path, MESSAGES + [tagged("嗯嗯啊啊", {"嗯嗯啊啊": "PER.NAM"})])
    result, figures = run_script("--split", str(path), "--min-f1", "0.99", *SCORES_ONLY)
    assert result.returncode == 1
    assert "below the floor 0.99" in result.stderr
    assert figures["entities"]["overall"]["recall"] == pytest.approx(0.75)


def test_missing_split_says_why(tmp_path):
    result, _ = run_script("--split", str(tmp_path / "absent.conll"), *SCORES_ONLY)
    assert result.returncode == 2
    assert "absent.conll" in result.stderr


# --- reading and scoring ----------------------------------------------------------


def test_read_conll_names_and_digit_characters(tmp_path):
    path = tmp_path / "small.conll"
    # "3" at word position 10 is written `310`; NOM mentions are not names.
    path.write_text(
        "张0\tB-PER.NAM\n三1\tI-PER.NAM\n在0\tO\n310\tO\n号0\tO\n"
        "医0\tB-ORG.NOM\n院1\tI-ORG.NOM\n\n北0\tB-GPE.NAM\n京1\tI-GPE.NAM\n",
        encoding="utf-8",
    )
    assert eval_entities.read_conll(path) == [
        ("张三在3号医院", [("张三", "PER")]),
        ("北京", [("北京", "GPE")]),
    ]


def test_score_is_micro_over_message_name_pairs():
    gold = {(0, "北京"): {"GPE"}, (0, "刘德华"): {"PER"}, (1, "北京"): {"GPE"}}
    predicted = {(0, "北京"): {"GPE"}, (0, "刘德华"): {"ORG"}, (1, "上海"): {"GPE"}}
    figures = eval_entities.score(predicted, gold)
    # Overall ignores the type: 2 of 3 predicted pairs are gold pairs.
    assert figures["overall"]["correct"] == 2
    assert figures["overall"]["f1"] == pytest.approx(2 / 3, abs=1e-4)
    # Per type, the type must agree too: 刘德华 as ORG counts for neither.
    assert figures["PER"]["correct"] == 0 and figures["PER"]["gold"] == 1
    assert figures["GPE"]["correct"] == 1 and figures["GPE"]["predicted"] == 2


def test_cascade_roots_follow_repost_chains():
    posts = [
        {"id": "a"},
        {"id": "b", "repost_of": "a"},
        {"id": "c", "repost_of": "b"},
        {"id": "d"},
    ]
    assert eval_entities.cascade_roots(posts) == {
        "a": "a",
        "b": "a",
        "c": "a",
        "d": "d",
    }
