"""Shared by every test layer: where the repository is, and goldsmith built as the wheel a cluster receives."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (conf/, spark_jobs/, ...)."""
    return REPO


@pytest.fixture(scope="session")
def goldsmith_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """goldsmith's wheel, built offline from a copy of the sources (the bundle's artifact, `--py-files`)."""
    # From a copy: an in-tree build leaves build/lib behind, whose stale modules end up in later wheels
    # (a deleted module would still "exist in the wheel"), and two builds at once share it.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "lib", src / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--wheel-dir", str(out), str(src)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert done.returncode == 0, f"pip wheel failed (setuptools and wheel come with scripts/setup.sh):\n" \
                                 f"{done.stderr[-3000:]}"
    (built,) = out.glob("*.whl")
    return built
