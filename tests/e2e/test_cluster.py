"""The production shape: the flights pipeline submitted to a real standalone Spark cluster (a master and a worker
on 127.0.0.1, scripts/cluster) with the `cluster` overlay, its landing files and lakehouse on an S3-protocol object
store (SeaweedFS, scripts/objectstore), MLflow as a server on PostgreSQL with its artifacts on the store
(scripts/tracking), goldsmith shipped to the executors as its wheel. Its gold tables equal the local-mode run's on
the same data (`flights_lake`); a second run changes nothing; `goldsmith sql` and `goldsmith serve-sql` read the
gold tables from s3a://."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import servers
from goldsmith.io import storage_jar
from goldsmith.io.object_store import configure, upload_folder
from servers import ObjectStore

from .conftest import (
    FEATURES_CHECKSUM,
    FLIGHTS,
    LANE,
    PREDICTIONS,
    REPO,
    Cluster,
    FirstRun,
    Reader,
    Subprocesses,
    master_state,
    run_in_process,
    serve,
    submit_command,
)

pytestmark = pytest.mark.slow


# The pipeline as submitted: the `cluster` overlay, the lakehouse and the landing files (LANDING) on the store.
ARGS = ("conf/pipelines/flights.yml", "--env", "cluster", "--stages", "ingest,refine,features,train,score",
        "--set", "vars.landing=LANDING",
        # 11,226 flights on an executor of 2 cores: the overlay's 64 shuffle partitions would be 64 near-empty
        # tasks per shuffle.
        "--set", "spark.conf.spark.sql.shuffle.partitions=2",
        # Only the candidate that won the local run's leaderboard (logistic regression, C=1): the same model on
        # the same rows, without four more fits logged to the tracking server.
        "--set", "models.flight_delay.trainer.search={logistic_regression: {C: [1.0]}}")


@dataclass(frozen=True)
class Submitted:
    """The flights pipeline submitted to the cluster (`submit_flights`), and what it ran against."""

    root: str  # the lakehouse on the store
    args: tuple[str, ...]  # the pipeline's arguments
    store: ObjectStore
    tracking: str  # the tracking server's URI
    tracking_log: str  # what `scripts/tracking start` printed
    uploaded: int  # landing files uploaded
    code: Path  # the wheel shipped as --py-files
    done: subprocess.CompletedProcess[str]
    served: int | None  # the port of `goldsmith serve-sql` on the lakehouse (None: the run failed)
    served_log: Path


def start_tracking_server(store: ObjectStore) -> subprocess.CompletedProcess[str]:
    """MLflow as a team runs it (scripts/tracking): a throwaway PostgreSQL cluster as its backend store, the
    artifacts on the object store, both on loopback; stopped with the lane's "tracking". (Its folder is outside
    pytest's private one: PostgreSQL runs as its own user when the tests run as root.)"""
    state = Path(tempfile.mkdtemp(prefix="goldsmith-tracking-"))
    state.chmod(0o755)
    env = {**os.environ, **store.env, "GOLDSMITH_TRACKING_DIR": str(state), "GOLDSMITH_TRACKING_BUCKET": store.bucket}

    def stop() -> None:
        subprocess.run(["bash", str(REPO / "scripts" / "tracking"), "stop"], env=env, capture_output=True,
                       check=False, timeout=120)
        shutil.rmtree(state, ignore_errors=True)

    LANE.on_close("tracking", stop)
    return subprocess.run(["bash", str(REPO / "scripts" / "tracking"), "start"], env=env, capture_output=True,
                          text=True, check=False, timeout=300)


@LANE.job(fixtures=("flights_on_the_cluster",), needs=("start_first_run", "start_cluster"))
def submit_flights(factory: pytest.TempPathFactory) -> Submitted:
    """In the background lane: the cluster's own object store and tracking server, the landing files uploaded,
    the pipeline submitted (the command under test)."""
    landing: Subprocesses = LANE.result("start_first_run", factory)
    cluster: Cluster = LANE.result("start_cluster", factory)
    store = servers.start_object_store(factory.mktemp("cluster-store"), "goldsmith-cluster")
    LANE.on_close("cluster-store", store.stop)
    tracking = start_tracking_server(store)
    assert tracking.returncode == 0, tracking.stderr[-3000:]
    uri = tracking.stdout.strip().split("=", 1)[1]
    root, on_store_landing = f"s3a://{store.bucket}/cluster/lakehouse", f"s3a://{store.bucket}/cluster/landing"
    # The landing files (with their malformed lines) uploaded as a client would.
    uploaded = upload_folder(landing.landing, on_store_landing, store.env)
    submit = submit_command(cluster.url, cluster.wheel, factory.mktemp("cluster-run"))
    # What every process of the cluster shares: loopback addresses, the storage root, the tracking server, the
    # store's endpoint and key (the driver puts them in the application's Hadoop settings for the executors).
    env = {"SPARK_LOCAL_IP": "127.0.0.1", "GOLDSMITH_ROOT": root, "MLFLOW_TRACKING_URI": uri, **store.env}
    args = tuple(a.replace("LANDING", on_store_landing) for a in ARGS)
    done = LANE.run(*submit, "spark_jobs/pipeline.py", *args, env=env, timeout=1500)
    # `goldsmith serve-sql` (its own JVM) on the lakehouse the cluster wrote, for the test to query. (Nothing it
    # reads is added later: no refresh is needed while the test runs.)
    log, port = factory.mktemp("cluster-serve") / "serve-sql.log", None
    if done.returncode == 0:
        served = serve(root, log, "--no-auth", "--refresh-seconds", "600", env={**store.env})
        port, _ = next(served)
        LANE.on_close("cluster-serve", lambda: next(served, None))
    return Submitted(root, args, store, uri, tracking.stderr, uploaded,
                     Path(submit[submit.index("--py-files") + 1]), done, port, log)


@pytest.fixture(scope="session")
def flights_on_the_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Submitted]:
    """`submit_flights`'s outcome; its tracking server and store stopped after the test."""
    try:
        yield LANE.result("submit_flights", tmp_path_factory)
    finally:
        LANE.stop("tracking")
        stopped = LANE.stop("cluster-store")
    assert isinstance(stopped, subprocess.CompletedProcess) and stopped.returncode == 0, stopped


def test_cluster_on_the_object_store_equals_the_local_run(
    flights_on_the_cluster: Submitted, cluster: Cluster, flights_lake: FirstRun, reader: Reader, spark: Any,
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    submitted, object_store, tracking_server = flights_on_the_cluster, flights_on_the_cluster.store, \
        flights_on_the_cluster.tracking
    root, args, on_cluster = submitted.root, submitted.args, submitted.done
    assert "runs in PostgreSQL" in submitted.tracking_log
    assert f"s3://{object_store.bucket}/mlflow" in submitted.tracking_log
    assert submitted.uploaded == 5
    assert on_cluster.returncode == 0, (on_cluster.stdout + on_cluster.stderr)[-3000:]
    apps = master_state(cluster.webui)["completedapps"]
    assert isinstance(apps, list)
    assert "goldsmith-flights" in {app["name"] for app in apps}
    # The run checked that its executors import goldsmith from the shipped wheel, not the workers' own copy.
    line = next(x for x in on_cluster.stdout.splitlines() if "executors import goldsmith" in x)
    paths = line.split(" from ", 1)[1].split(", ")
    assert all(p.endswith(f"/{submitted.code.name}/goldsmith/__init__.py") for p in paths), line
    assert f"open {tracking_server}" in on_cluster.stdout  # runs and models went to the tracking server
    assert f"no {storage_jar.JAR}" not in on_cluster.stdout + on_cluster.stderr

    # The test process reads the store as the cluster wrote it.
    configure(spark.sparkContext._jsc.hadoopConfiguration(), object_store.env)
    features = reader.row(FEATURES_CHECKSUM, root)
    assert features == flights_lake.features and features["n"] == FLIGHTS
    local = flights_lake.predictions
    remote = {r["flight_id"]: r for r in reader.rows(PREDICTIONS, root)}
    assert len(local) > 0 and remote.keys() == local.keys()
    for flight_id, row in remote.items():
        mine = local[flight_id]
        assert row["model_version"] == mine["model_version"] == 1
        assert row["probability"] == pytest.approx(mine["probability"], abs=1e-6), flight_id
        if abs(mine["probability"] - 0.5) > 1e-6:
            assert row["prediction"] == mine["prediction"], flight_id
    quarantined = reader.row("select count(*) as n from bronze.flights_quarantine", root)
    assert quarantined == {"n": 4}
    registered = reader.row("select count(*) as n, max(to_version) as v from ops.model_promotions "
                            "where alias = 'champion'", root)
    assert registered == {"n": 1, "v": 1}
    # The champion's model files are on the store, under the tracking server's artifact root.
    import pyarrow.fs as pafs

    endpoint = object_store.endpoint.split("://", 1)[1]
    s3 = pafs.S3FileSystem(access_key=object_store.env["AWS_ACCESS_KEY_ID"], scheme="http",
                           secret_key=object_store.env["AWS_SECRET_ACCESS_KEY"], endpoint_override=endpoint)
    stored = s3.get_file_info(pafs.FileSelector(f"{object_store.bucket}/mlflow", recursive=True))
    assert any(f.base_name == "MLmodel" for f in stored), [f.path for f in stored][:20]

    # A second run (in this process, against the same store and server) changes nothing.
    versions = {t: reader.version(t, root) for t in ("bronze.flights", "silver.flights",
                                                     "gold.flight_features", "gold.flight_delay_predictions")}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    again = run_in_process(spark, *args[:1], "--set", f"storage.root={root}", *args[3:])
    assert {r.status for r in again.results} == {"skipped"}, [(r.stage, r.detail) for r in again.results]
    assert {t: reader.version(t, root) for t in versions} == versions

    # The registry on the tracking server: a second version with the gates open becomes champion, `goldsmith
    # models rollback` (its code in this process: the command itself is proven by the local rollback test) moves
    # the alias back and audits it on the store, `models list` and the report show it.
    from goldsmith.cli import build_parser, cmd_report, cmd_sql
    from goldsmith.jobs.train import TrainOutcome
    from goldsmith.models_cli import run_models_command

    other = ("--set", "models.flight_delay.trainer={backend: sklearn-udf, algorithm: logistic_regression, "
             "params: {C: 0.01}}", "--set", "models.flight_delay.gates={min_metrics: {}, min_improvement: -1}",
             "--set", "models.flight_delay.bias.gates={}")
    for key, value in object_store.env.items():  # the store's key, as the commands' user would have it
        monkeypatch.setenv(key, value)
    second = run_in_process(spark, *args[:1], "--set", f"storage.root={root}", *args[5:], *other, "--stages", "train")
    assert [(m.status, m.version) for m in second.models if isinstance(m, TrainOutcome)] == [("champion", 2)]
    capsys.readouterr()
    models = ("models", "rollback", "flight_delay", "--root", root, "--reason", "cluster")
    assert run_models_command(build_parser().parse_args(list(models))) == 0
    assert "flight_delay@champion: v2 -> v1" in capsys.readouterr().out
    assert run_models_command(build_parser().parse_args(["models", "list", "flight_delay", "--root", root])) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()}
    assert "champion" in listed["1"] and "champion" not in listed["2"], listed
    moves = reader.row("select count(*) as n, max_by(action, moved_at) as last, max_by(to_version, moved_at) as v "
                       "from ops.model_promotions where alias = 'champion'", root)
    assert moves == {"n": 3, "last": "rollback", "v": 1}
    html = tmp_path / "report.html"
    assert cmd_report(build_parser().parse_args(["report", *args[:1], "--set", f"storage.root={root}",
                                                 "--output", str(html)])) == 0
    page = html.read_text(encoding="utf-8")
    assert "flight_delay" in page and "rollback" in page

    # `goldsmith sql` (its code in this process: the command's own start is proven by `flights_lake`) and
    # `goldsmith serve-sql` (its own JVM) read the gold table from the store.
    capsys.readouterr()  # what the test printed so far
    assert cmd_sql(build_parser().parse_args(["sql", "select count(*) as n from gold.flight_features",
                                              "--root", root, "--format", "csv"])) == 0
    printed = capsys.readouterr().out
    assert printed.split() == ["n", str(FLIGHTS)], printed[-3000:]
    port, log = submitted.served, submitted.served_log
    assert port is not None
    try:
        from pyhive import hive

        with hive.connect("127.0.0.1", port=port, username="anyone") as conn:
            cursor = conn.cursor()
            cursor.execute(FEATURES_CHECKSUM)
            (n, h), = cursor.fetchall()
        assert {"n": n, "h": h} == flights_lake.features, log.read_text()[-3000:]
    finally:
        LANE.stop("cluster-serve")
