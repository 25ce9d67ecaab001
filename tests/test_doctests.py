"""Docstring examples that show an output are run: what a docstring claims, holds.

Every module under the project's packages whose docstrings hold a ``>>>`` example is
found by reading the files, so a new module's examples are run without listing it.
"""

import doctest
import importlib

import pytest

from tests.conftest import PROJECT

PACKAGES = ("pipelines", "transforms", "schemas", "reports", "sampledata")


def modules_with_examples() -> list[str]:
    """Dotted names of the modules whose source holds a ``>>>`` line."""
    names = []
    for package in PACKAGES:
        for path in sorted((PROJECT / package).rglob("*.py")):
            if any(
                line.lstrip().startswith(">>>")
                for line in path.read_text(encoding="utf-8").splitlines()
            ):
                relative = path.relative_to(PROJECT).with_suffix("")
                names.append(".".join(relative.parts).removesuffix(".__init__"))
    return names


def test_examples_are_found():
    """The discovery finds the known examples (a broken finder would pass silently)."""
    assert {"transforms.topics", "transforms.text.analyzer", "reports.periods"} <= set(
        modules_with_examples()
    )


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples_hold(name):
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0, f"{name}: no example was run"
    assert result.failed == 0, f"{name}: {result.failed} docstring example(s) failed"
