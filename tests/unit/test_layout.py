"""The package's layout: no import cycles, stages only in `jobs/`, one name per table reference."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from goldsmith.io.tables import TableRef

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "lib" / "goldsmith"
# Beside the stages, `jobs/` holds what runs them.
JOBS_RUNNERS = {"__init__", "context", "parallel", "pipeline", "watch"}


def import_cycles() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_cycles", ROOT / "scripts" / "import_cycles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_cycle_among_module_level_imports() -> None:
    cycles = import_cycles()
    top, _ = cycles.import_graphs(PACKAGE)
    assert "goldsmith.jobs.pipeline" in top and "goldsmith.session" in top["goldsmith.jobs.pipeline"]
    assert cycles.strongly_connected(top) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    cycles = import_cycles()
    top, every = cycles.import_graphs(package)
    assert cycles.strongly_connected(top) == []  # b imports a inside a function; c only for type checking
    assert cycles.strongly_connected(every) == [["pkg.a", "pkg.b"]]
    assert top["pkg.c"] == set() and every["pkg.c"] == {"pkg.a"}


def test_jobs_holds_stages_each_with_a_run() -> None:
    for path in sorted((PACKAGE / "jobs").glob("*.py")):
        if path.stem in JOBS_RUNNERS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert "run" in functions, f"jobs/{path.name} is not a stage (no run(ctx)): move its functions out of jobs/"


def test_table_ref() -> None:
    ref = TableRef.parse("gold.flight_features")
    assert (ref.layer, ref.table, str(ref)) == ("gold", "flight_features", "gold.flight_features")
    assert TableRef.parse("silver.a.b") == TableRef("silver", "a.b")  # split at the first dot
    for bad in ("flights", ".flights", "gold."):
        with pytest.raises(ValueError, match=r"write layer\.table"):
            TableRef.parse(bad)
