"""Print the options of ``python -m pipelines.volume`` as the README's markdown table.

    .venv/bin/python scripts/options_table.py           # the table, from the parser
    .venv/bin/python scripts/options_table.py --check   # README.md against the parser

The table has one row per option the project declares (``pipelines/options.py``;
Beam's own options pass through and are not listed): the option, its default and
the first sentence of its help. ``--check`` compares the option names and defaults
of the README's table with the parser's and prints each difference; the meaning
column is the README's own words.
"""

import argparse
import pathlib
import re
import sys

PROJECT = pathlib.Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"
OPTIONS_HEADING = "## Options"


def declared_options() -> list[argparse.Action]:
    """The parser's actions for the project's own options, in declaration order."""
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    from pipelines.options import VolumeOptions

    parser = argparse.ArgumentParser(add_help=False)
    VolumeOptions._add_argparse_args(parser)
    return list(parser._actions)


def option_name(action: argparse.Action) -> str:
    """The option's documented spelling: its first flag (``--topic-kinds``)."""
    return action.option_strings[0]


def default_text(action: argparse.Action) -> str | None:
    """The default as the README writes it in backticks, or None when there is none.

    A switch (``store_true``, ``BooleanOptionalAction``) is ``on`` or ``off``.
    """
    default = action.default
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction) or (
        isinstance(action, argparse.BooleanOptionalAction)
    ):
        return "on" if default else "off"
    if default is None or default == []:
        return None
    return str(default)


def first_sentence(text: str | None) -> str:
    text = " ".join((text or "").replace("%%", "%").split())
    match = re.match(r"(.+?\.)(?:\s|$)", text)
    return match.group(1) if match else text


def table() -> str:
    """The markdown table generated from the parser."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for action in declared_options():
        default = default_text(action)
        repeatable = isinstance(action, argparse._AppendAction)
        shown = f"`{default}`" if default is not None else "none"
        if repeatable:
            shown += ", repeatable"
        rows.append(
            f"| `{option_name(action)}` | {shown} | {first_sentence(action.help)} |"
        )
    return "\n".join(rows)


def readme_rows(readme_text: str) -> dict[str, str | None]:
    """Option -> default of the table under the README's Options heading.

    The default is the first backticked value of the row's second cell, None when it
    has none ("none", "required", "see Privacy").
    """
    section = readme_text.split(OPTIONS_HEADING, 1)
    if len(section) < 2:
        raise ValueError(f"README.md has no {OPTIONS_HEADING!r} heading")
    body = section[1].split("\n## ", 1)[0]
    rows = {}
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`--"):
            continue
        name = cells[0].strip("`").split()[0]
        value = re.search(r"`([^`]*)`", cells[1])
        rows[name] = value.group(1) if value else None
    return rows


def differences(readme_text: str) -> list[str]:
    """Every way the README's options table differs from the parser, one line each."""
    documented = readme_rows(readme_text)
    declared = {option_name(action): action for action in declared_options()}
    problems = []
    for name, action in declared.items():
        if name not in documented:
            problems.append(
                f"{name}: in the parser (default {default_text(action)!r}), "
                "missing from the README's table"
            )
        elif documented[name] != default_text(action):
            problems.append(
                f"{name}: README says default {documented[name]!r}, the parser "
                f"{default_text(action)!r}"
            )
    for name in documented:
        if name not in declared:
            problems.append(f"{name}: in the README's table, not in the parser")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare README.md with the parser"
    )
    args = parser.parse_args(argv)
    if not args.check:
        print(table())
        return 0
    problems = differences(README.read_text(encoding="utf-8"))
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
