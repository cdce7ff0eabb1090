"""The pipeline never imports the simulation: ``labeling_dag.simulation`` (generator, simulated
reviewer, run-loop, demo) stands in for people and imports the pipeline, never the reverse.

Read with ``ast`` from the source files, so an import inside a function counts as much as one at
the top of a module, and nothing is imported to find out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "labeling_dag"
SIMULATION = "labeling_dag.simulation"
# Folders mapped into the package (pyproject.toml, [tool.setuptools.package-dir]).
MAPPED = {"labeling_dag.assets": REPO / "assets", "labeling_dag.resources": REPO / "resources"}
# The command line may start the simulation (run-loop, demo, sample-data), inside its commands.
NOT_PIPELINE = (PACKAGE / "simulation", PACKAGE / "cli.py")


def _modules(package: str, folder: Path) -> Iterator[tuple[str, Path]]:
    """Every module under ``folder`` as (dotted name, file); a package is named by its ``__init__``."""
    for path in sorted(folder.rglob("*.py")):
        parts = [package, *path.relative_to(folder).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _pipeline_modules() -> list[tuple[str, Path]]:
    found = [
        (name, path)
        for name, path in _modules("labeling_dag", PACKAGE)
        if not any(path == excluded or excluded in path.parents for excluded in NOT_PIPELINE)
    ]
    for package, folder in MAPPED.items():
        found += _modules(package, folder)
    return found


def _imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved, and
    ``from package import module`` also giving ``package.module``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _simulation_imports(modules: list[tuple[str, Path]]) -> list[str]:
    """``file:line: module imports what`` for each import statement that reaches the simulation."""
    found: dict[tuple[Path, int], str] = {}
    for name, path in modules:
        for line, imported in _imports(name, path):
            if imported == SIMULATION or imported.startswith(f"{SIMULATION}."):
                shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                found.setdefault((path, line), f"{shown}:{line}: {name} imports {imported}")
    return [found[key] for key in sorted(found)]


def test_the_pipeline_never_imports_the_simulation() -> None:
    modules = _pipeline_modules()
    names = {name for name, _ in modules}
    # The scan sees the code location and both mapped folders, and none of the simulation.
    assert {"labeling_dag.definitions", "labeling_dag.assets.review", "labeling_dag.resources.detector"} <= names
    assert not any(name.startswith(SIMULATION) for name in names) and "labeling_dag.cli" not in names
    assert _simulation_imports(modules) == []


def test_the_formats_import_nothing_from_the_simulation() -> None:
    modules = list(_modules("labeling_dag.formats", PACKAGE / "formats"))
    assert {"labeling_dag.formats.yolo", "labeling_dag.formats.label_studio"} <= {name for name, _ in modules}
    assert _simulation_imports(modules) == []


def test_the_scan_finds_imports_of_the_simulation_inside_functions() -> None:
    """The command line imports the simulation inside its command functions: the scan must see it."""
    found = _simulation_imports([("labeling_dag.cli", PACKAGE / "cli.py")])
    assert any("labeling_dag.simulation.sample_data" in line for line in found), found


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import labeling_dag.simulation.demo\n", "labeling_dag.checks", True),
        ("from labeling_dag import simulation\n", "labeling_dag.checks", True),
        ("def f():\n    from .simulation.run_loop import run_loop\n", "labeling_dag.checks", True),
        ("from ..simulation import sample_data\n", "labeling_dag.formats.yolo", True),
        ("from labeling_dag.formats.yolo import load_data_yaml\n", "labeling_dag.checks", False),
        ("import labeling_dag.simulations_elsewhere\n", "labeling_dag.checks", False),
    ],
)
def test_the_scan_reads_every_import_form(tmp_path: Path, source: str, module: str, expected: bool) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert bool(_simulation_imports([(module, path)])) is expected
