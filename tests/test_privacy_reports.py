"""Reports over several outputs merge sketches only when one pseudonym key made them."""

import json
import shutil

import pytest

from reports.queries import hot_topics
from reports.tables import KeyMismatch, check_same_key, scan
from tests.conftest import run_reports
from tests.test_reports_fixture import write_known_output


def _with_fingerprint(folder, fingerprint):
    manifest = {"timezone": "Asia/Shanghai"}
    if fingerprint is not None:
        manifest["key_fingerprint"] = fingerprint
    (folder / "_run.json").write_text(json.dumps(manifest))
    return str(folder)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    first = write_known_output(tmp_path_factory.mktemp("first"))
    folders = {}
    for name, fingerprint in (
        ("same", "0123456789abcdef"),
        ("other", "fedcba9876543210"),
        ("none", None),
    ):
        copy = tmp_path_factory.mktemp(name) / "out"
        shutil.copytree(first, copy)
        folders[name] = _with_fingerprint(copy, fingerprint)
    return _with_fingerprint(first, "0123456789abcdef"), folders


def test_outputs_of_one_key_merge_their_sketches(outputs):
    first, folders = outputs
    assert check_same_key([first, folders["same"]]) == "0123456789abcdef"
    alone = hot_topics(first, limit=3)
    both = hot_topics((first, folders["same"]), limit=3)
    # The same people under the same key: a union, not a sum.
    assert both["participants"].to_list() == alone["participants"].to_list()
    assert both["posts"].to_list() == [2 * posts for posts in alone["posts"]]


@pytest.mark.parametrize("other", ["other", "none"])
def test_outputs_of_different_or_unknown_keys_are_refused(outputs, other):
    first, folders = outputs
    with pytest.raises(KeyMismatch):
        scan([first, folders[other]], "topics")


def test_reports_cli_refuses_with_one_line(outputs):
    first, folders = outputs
    result = run_reports(
        "hot", "--day", "2026-11-22", "--output", first, "--output", folders["other"]
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "different pseudonym keys" in lines[0]
    assert "0123456789abcdef" in lines[0] and "fedcba9876543210" in lines[0]


def test_reports_cli_combines_outputs_of_one_key_and_names_it(outputs):
    first, folders = outputs
    result = run_reports(
        "hot",
        "--day",
        "2026-11-22",
        "--format",
        "json",
        "--output",
        first,
        "--output",
        folders["same"],
    )
    assert result.returncode == 0, result.stderr
    assert "0123456789abcdef" in result.stdout
