"""The flights pipeline submitted to a real standalone Spark cluster (a master and a worker on 127.0.0.1,
scripts/cluster), with the `cluster` overlay: a shared storage path, an MLflow server, goldsmith shipped to the
executors as its wheel. Its gold tables equal the local-mode run's on the same data (`flights_lake`)."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BIN, FEATURES_CHECKSUM, FLIGHTS, PREDICTIONS, FirstRun, Reader, free_port, run, start

pytestmark = pytest.mark.slow


def master_state(webui: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{webui}/json/", timeout=5) as page:
        state: dict[str, object] = json.load(page)
    return state


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A master and a 2-core worker (one executor JVM: a second one JIT-compiles the same code again on the same
    two cores, 15 s more per run, measured); stopped after the test."""
    port, webui = free_port(), free_port()
    env = {"GOLDSMITH_CLUSTER_DIR": str(tmp_path / "cluster")}
    started = run("bash", "scripts/cluster", "start", "--workers", "1", "--cores", "2", "--memory", "2g",
                  "--port", str(port), "--webui-port", str(webui), env=env, timeout=180)
    try:
        assert started.returncode == 0, (started.stdout + started.stderr)[-3000:]
        url = started.stdout.strip().splitlines()[-1]
        assert url == f"spark://127.0.0.1:{port}"
        assert master_state(webui)["aliveworkers"] == 1
        yield url, webui
    finally:
        stopped = run("bash", "scripts/cluster", "stop", env=env, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
    assert "stopped 2 process(es)" in stopped.stdout


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """An MLflow tracking server (SQLite behind it, artifacts proxied) on loopback."""
    port = free_port()
    server = start(str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                   "--artifacts-destination", str(tmp_path / "mlflow-artifacts"), "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1", log=tmp_path / "mlflow.log")
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as page:
                    if page.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the MLflow server did not answer within 120 s"
            time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_cluster_run_equals_local_run(
    landing: Path, tmp_path: Path, goldsmith_wheel: Path, cluster: tuple[str, int], mlflow_server: str,
    flights_lake: FirstRun, reader: Reader,
) -> None:
    url, webui = cluster
    shared = tmp_path / "shared-lake"
    # PySpark puts `--py-files` entries on the workers' path only when they end in .zip, .egg or .jar: the wheel
    # (a zip archive of the pure-Python package) goes under a .zip name.
    code = tmp_path / goldsmith_wheel.with_suffix(".zip").name
    shutil.copyfile(goldsmith_wheel, code)
    # What every process of the cluster shares: loopback addresses, the storage path, the tracking server.
    env = {"SPARK_LOCAL_IP": "127.0.0.1", "GOLDSMITH_ROOT": str(shared), "MLFLOW_TRACKING_URI": mlflow_server}
    submit = (
        str(BIN / "spark-submit"), "--master", url, "--py-files", str(code),
        "--conf", f"spark.pyspark.python={sys.executable}", "--driver-memory", "2g", "--executor-memory", "1g",
    )
    on_cluster = run(
        *submit, "spark_jobs/pipeline.py", "conf/pipelines/flights.yml", "--env", "cluster",
        "--stages", "ingest,refine,features,train,score", "--set", f"vars.landing={landing}",
        # 11,226 flights on an executor of 2 cores: the overlay's 64 shuffle partitions would be 64 near-empty
        # tasks per shuffle.
        "--set", "spark.conf.spark.sql.shuffle.partitions=2",
        # Only the candidate that won the local run's leaderboard (logistic regression, C=1): the same model on
        # the same rows, without four more fits logged to the tracking server.
        "--set", "models.flight_delay.trainer.search={logistic_regression: {C: [1.0]}}",
        env=env, timeout=1500,
    )
    assert on_cluster.returncode == 0, (on_cluster.stdout + on_cluster.stderr)[-3000:]
    apps = master_state(webui)["completedapps"]
    assert isinstance(apps, list)
    assert "goldsmith-flights" in {app["name"] for app in apps}
    # The run checked that its executors import goldsmith from the shipped wheel, not the workers' own copy.
    line = next(x for x in on_cluster.stdout.splitlines() if "executors import goldsmith" in x)
    paths = line.split(" from ", 1)[1].split(", ")
    assert all(p.endswith(f"/{code.name}/goldsmith/__init__.py") for p in paths), line
    assert f"open {mlflow_server}" in on_cluster.stdout  # runs and models went to the tracking server
    assert not (shared / "_mlflow").exists()

    assert reader.row(FEATURES_CHECKSUM, shared) == flights_lake.features
    assert flights_lake.features["n"] == FLIGHTS
    local = flights_lake.predictions
    remote = {r["flight_id"]: r for r in reader.rows(PREDICTIONS, shared)}
    assert len(local) > 0 and remote.keys() == local.keys()
    for flight_id, row in remote.items():
        mine = local[flight_id]
        assert row["model_version"] == mine["model_version"] == 1
        assert row["probability"] == pytest.approx(mine["probability"], abs=1e-6), flight_id
        if abs(mine["probability"] - 0.5) > 1e-6:
            assert row["prediction"] == mine["prediction"], flight_id
    registered = reader.row("select count(*) as n, max(to_version) as v from ops.model_promotions "
                            "where alias = 'champion'", shared)
    assert registered == {"n": 1, "v": 1}
