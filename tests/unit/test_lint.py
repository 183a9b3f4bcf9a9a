"""The house style is checked with the suite: ruff (E, F, I, UP, B, RUF) and mypy on lib/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    done = subprocess.run([str(BIN / "ruff"), "check", "lib", "tests", "spark_jobs", "scripts"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:]


def test_mypy_is_clean() -> None:
    # mypy's cache in goldsmith's shared cache, not in the clone: a fresh clone then re-checks only what changed
    # (its modules are validated by content hash): 5 s instead of 19 s on the 2-core machine.
    from goldsmith.jvm import cache_dir

    env = {**os.environ, "MYPY_CACHE_DIR": str(cache_dir() / "mypy")}
    done = subprocess.run([str(BIN / "mypy")], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:]


def test_no_launcher_shadows_a_standard_module() -> None:
    # spark-submit puts a script's folder first on sys.path: spark_jobs/profile.py hid the standard `profile`
    # module that pyspark imports, and every launcher then failed at import.
    launchers = {p.stem for p in (REPO / "spark_jobs").glob("*.py")}
    assert launchers, "spark_jobs/ has launchers"
    assert not launchers & set(sys.stdlib_module_names), launchers & set(sys.stdlib_module_names)
    assert not launchers & {"pyspark", "goldsmith", "delta", "mlflow", "numpy", "pandas", "sklearn", "torch"}
