"""The README and docs/ say what the code does: options, contract, links, quick tour.

The quick tour's commands run verbatim on a fresh copy of the repository (the files a
clone would have), so a newcomer's first steps cannot rot.
"""

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from tests.conftest import PROJECT, TEST_KEY_HEX

README = PROJECT / "README.md"
DOCS = PROJECT / "docs"
CONTRACT_MIRROR = DOCS / "contract.md"
SHARED_CONTRACT = PROJECT.parent / "shared" / "CONTRACT.md"
QUICK_TOUR_HEADING = "## Quick tour"
# The README's front door stays short; everything else lives in docs/.
README_MAX_LINES = 260


def _options_table():
    spec = importlib.util.spec_from_file_location(
        "options_table", PROJECT / "scripts" / "options_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same level."""
    level = heading.split()[0]
    parts = text.split(f"\n{heading}\n", 1)
    assert len(parts) == 2, f"no {heading!r} heading"
    return re.split(rf"\n{level} ", parts[1], maxsplit=1)[0]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block in ``text``, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_options_table_matches_the_parser():
    """Every option of pipelines/options.py is in the README's table with its default,
    and the table names no option the parser lacks."""
    problems = _options_table().differences(README.read_text(encoding="utf-8"))
    assert not problems, (
        "README.md's Options table differs from pipelines/options.py "
        "(`scripts/options_table.py` prints the parser's rows):\n  "
        + "\n  ".join(problems)
    )


def test_options_check_names_each_difference():
    """The check says which option is missing, extra or has another default."""
    options_table = _options_table()
    text = README.read_text(encoding="utf-8")
    changed = (
        text.replace("| `--window` | `1h` |", "| `--window` | `2h` |")
        .replace("| `--poll-interval` | `1s` |", "| `--not-an-option` | `1s` |")
        .replace("| `--burst-warmup` |", "| `--burst-warm-up` |")
    )
    problems = options_table.differences(changed)
    assert any(p.startswith("--window: README says default '2h'") for p in problems)
    assert any(p.startswith("--poll-interval: in the parser") for p in problems)
    assert any(p.startswith("--not-an-option: in the README") for p in problems)
    assert any(p.startswith("--burst-warmup: in the parser") for p in problems)
    assert len(problems) == 5, problems


@pytest.mark.skipif(
    not SHARED_CONTRACT.exists(),
    reason=f"{SHARED_CONTRACT} is absent: ../shared is not beside this clone",
)
def test_contract_mirror_equals_the_shared_contract():
    """docs/contract.md is the shared contract after its one-line header."""
    mirror = CONTRACT_MIRROR.read_text(encoding="utf-8")
    header, _, body = mirror.partition("\n\n")
    assert "mirrors the shared outer contract" in header
    shared = SHARED_CONTRACT.read_text(encoding="utf-8")
    assert body == shared, (
        "docs/contract.md differs from ../shared/CONTRACT.md: copy the shared file "
        "below the header line"
    )


def test_bad_input_example_is_a_message_the_code_writes():
    from transforms.posts import InvalidPost, parse_post

    example = re.search(
        r"for\s+example\s+`([^`]+)`", section(_readme(), "## Privacy and bad input")
    )
    assert example, "the README gives no example bad-input message"
    record = {"id": "1", "user_id": "u1", "created_at": "yesterday", "text": "hi"}
    with pytest.raises(InvalidPost) as raised:
        parse_post(record, bytes.fromhex(TEST_KEY_HEX))
    assert example.group(1) == str(raised.value)


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _markdown_files() -> list[pathlib.Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize(
    "page", _markdown_files(), ids=lambda path: path.relative_to(PROJECT).as_posix()
)
def test_links_stay_inside_the_repository_and_resolve(page):
    """Relative links name files of this repository (a clone has no ../shared)."""
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        resolved = (page.parent / target).resolve()
        if not resolved.is_relative_to(PROJECT) or not resolved.exists():
            broken.append(target)
    assert not broken, (
        f"{page.name}: links outside the repository or to nothing: {broken}"
    )


def test_readme_is_a_front_door():
    lines = _readme().count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; move detail to a docs/ page"
    )
    assert "../shared/CONTRACT.md" not in _readme()


def _fresh_copy(destination: pathlib.Path) -> pathlib.Path:
    """The files a clone of the working tree would hold, with the shared .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = PROJECT / name
        if source.is_file() and not source.is_symlink():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to((PROJECT / ".venv").resolve())
    return destination


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("git") is None or not (PROJECT / ".git").exists(),
    reason="needs a git checkout to know which files a clone holds",
)
@pytest.mark.skipif(
    not (PROJECT / ".venv" / "bin" / "python").exists(),
    reason="needs .venv (./run_tests.sh creates it)",
)
def test_quick_tour_runs_verbatim_on_a_fresh_copy(tmp_path):
    """Every ```bash and ```python block under the Quick tour heading, in order, from
    the copy's folder: sample, pipeline, summary, polars queries, reports. The ```sh
    blocks (streaming on Prism, Flink) need their runners and have their own tests
    (tests/test_streaming_e2e.py, tests/test_flink.py)."""
    blocks = [
        (language, code)
        for language, code in fenced_blocks(section(_readme(), QUICK_TOUR_HEADING))
        if language in ("bash", "python")
    ]
    languages = [language for language, _ in blocks]
    assert languages[0] == "bash" and "python" in languages, languages
    clone = _fresh_copy(tmp_path / "yuqing")
    # A fixed key: tests must not create or read the user's own key file.
    env = {**os.environ, "YUQING_PSEUDONYM_KEY": TEST_KEY_HEX}
    env.pop("PYTHONPATH", None)
    outputs = []
    for language, code in blocks:
        command = (
            ["bash", "-euo", "pipefail", "-c", code]
            if language == "bash"
            else [str(clone / ".venv" / "bin" / "python"), "-"]
        )
        result = subprocess.run(
            command,
            cwd=clone,
            env=env,
            input=code if language == "python" else None,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (
            f"quick tour block failed:\n{code}\nstderr:\n{result.stderr[-3000:]}"
        )
        outputs.append((language, result.stdout))
    shell = "".join(output for language, output in outputs if language == "bash")
    queries = "".join(output for language, output in outputs if language == "python")
    assert "Input lines 48,526 = 48,021 distinct posts" in shell
    assert "雅安地震" in shell and "法院致歉" in shell
    # The day's people on the planted hashtag, sketches merged: the surge's size.
    estimates = re.findall(r"^(\d+(?:\.\d+)?)$", queries, flags=re.MULTILINE)
    assert len(estimates) == 1 and float(estimates[0]) > 1_000, queries
    assert (clone / "hot.html").stat().st_size > 0
    assert (clone / "out" / "_run.json").exists()
