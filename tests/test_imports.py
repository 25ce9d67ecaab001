"""How the packages depend on each other: no import cycle among the project's
modules, and ``reports`` (what analysts import) never pulls in Beam."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "transforms", "schemas", "reports", "sampledata")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports, at the top or inside a function alike
    (``from package import module`` counts as importing the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of a dependency graph, one path each (depth-first search)."""
    cycles = []
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_import_cycles_are_found():
    assert import_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b", "a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_project_modules():
    modules = project_modules()
    graph = {
        name: {
            target
            for target in imported_modules(path, modules)
            # A package's __init__ gathering its own modules is not a cycle.
            if target != name and not target.startswith(name + ".")
        }
        for name, path in modules.items()
    }
    assert import_cycles(graph) == []


def test_reports_never_imports_beam():
    modules = sorted(name for name in project_modules() if name.startswith("reports"))
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('apache_beam' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"


def record_type_names() -> set[str]:
    """The record types and aliases ``schemas/records.py`` defines at its top level."""
    tree = ast.parse((ROOT / "schemas" / "records.py").read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_record_types_come_from_schemas_not_from_other_transforms():
    """A transforms module takes a record type from ``schemas.records``, its one
    home, never through another transforms module that happens to import it."""
    records = record_type_names()
    assert {"Post", "PostSummary", "DeadLetter", "WindowTables"} <= records
    sideways = [
        f"{module_name(path)}: {alias.name} from {node.module}"
        for path in sorted((ROOT / "transforms").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("transforms")
        for alias in node.names
        if alias.name in records
    ]
    assert sideways == []
