"""End-to-end tests: the CLI and spark-submit as a user runs them, in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("GOLDSMITH_ROOT", None)
    return env


def run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root, with the virtualenv's Python for Spark's workers."""
    return subprocess.run(
        list(args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def start_goldsmith(*args: str) -> subprocess.Popen[str]:
    """Start `goldsmith ARGS` without waiting for it."""
    return subprocess.Popen(
        [str(BIN / "goldsmith"), *args], cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def goldsmith(*args: str) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "goldsmith"), *args)


def sql_row(query: str, root: Path) -> dict[str, object]:
    """The first row of a query, through `goldsmith sql --format json`."""
    done = goldsmith("-q", "sql", query, "--root", str(root), "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[0])


@pytest.fixture(autouse=True)
def _slow_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") is None:
        raise AssertionError("tests in tests/e2e must be marked slow")
