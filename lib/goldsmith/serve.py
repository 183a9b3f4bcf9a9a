"""`goldsmith serve-sql`: the lakehouse's tables over JDBC/ODBC (Spark's Thrift server), read-only by default.

The server is one Spark application that attaches the storage root like any goldsmith process (the folder
is the catalog), then starts Spark's `HiveThriftServer2` on that session: `beeline`, BI tools and any Hive
JDBC/ODBC driver query `gold.*` while pipelines keep writing. Tables a pipeline creates later are attached
every `refresh_seconds`; a query always reads a table's latest committed Delta version.

Read-only is a Spark SQL check rule (`resources/ReadOnlyExtension.java`, compiled once with `javac` into the
cache): a statement that would write or change the catalog is refused before it runs.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from goldsmith.errors import BackendUnavailable, PortInUse
from goldsmith.jvm import cache_dir, spark_jars_dir

log = logging.getLogger(__name__)

READ_ONLY_SOURCE = Path(__file__).parent / "resources" / "ReadOnlyExtension.java"
READ_ONLY_CLASS = "goldsmith.sql.ReadOnlyExtension"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"


def read_only_jar() -> Path:
    """The compiled read-only extension, built with `javac` the first time (named by its source's hash)."""
    source = READ_ONLY_SOURCE.read_bytes()
    jar = cache_dir() / "jars" / f"goldsmith-sql-readonly-{hashlib.sha256(source).hexdigest()[:12]}.jar"
    if jar.exists():
        return jar
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if not javac or not jar_tool:
        raise BackendUnavailable(
            "goldsmith serve-sql needs a JDK (javac, jar) once, to build its read-only check; install a JDK 17 "
            "or start the server with --writable"
        )
    spark_jars = spark_jars_dir()
    log.info("building the read-only SQL check (once): %s", jar)
    with tempfile.TemporaryDirectory() as build:
        subprocess.run(
            [javac, "--release", "17", "-nowarn", "-cp", f"{spark_jars}/*", "-d", build, str(READ_ONLY_SOURCE)],
            check=True, capture_output=True,
        )
        jar.parent.mkdir(parents=True, exist_ok=True)
        partial = jar.with_suffix(".tmp")
        subprocess.run([jar_tool, "cf", str(partial), "-C", build, "."], check=True, capture_output=True)
        partial.replace(jar)
    return jar


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            if probe.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.25)
    return False


def serve_sql(
    root: str, port: int = 10000, host: str = "127.0.0.1", writable: bool = False, refresh_seconds: float = 10.0,
) -> int:
    """Serve the lakehouse at `root` over the Hive Thrift protocol until SIGTERM or Ctrl-C; return 0.

    Args:
        root: the storage root (its folders are the catalog).
        port: the Thrift (JDBC/ODBC) port.
        host: the address to listen on; loopback by default.
        writable: allow statements that write or change the catalog (off: refused before they run).
        refresh_seconds: how often tables created since start-up are attached.
    """
    from goldsmith.io.lakehouse import Lakehouse
    from goldsmith.session import build_session

    if not _port_is_free(host, port):
        raise PortInUse(f"serve-sql: {host}:{port} is already in use; pick another with --port")
    jars = [] if writable else [str(read_only_jar())]
    conf = {
        "spark.sql.extensions": DELTA_EXTENSION if writable else f"{DELTA_EXTENSION},{READ_ONLY_CLASS}",
        "spark.hadoop.hive.server2.thrift.bind.host": host,
        "spark.hadoop.hive.server2.thrift.port": str(port),
        "spark.hadoop.hive.server2.transport.mode": "binary",
        # A JDBC session of the server is a new Spark session over the same catalog: each client has its own
        # SET values and temporary views, the tables are shared.
        "spark.sql.hive.thriftServer.singleSession": "false",
    }
    spark = build_session("goldsmith-sql-server", "local[*]", conf, jars=jars)
    jvm: Any = spark.sparkContext._jvm
    if not writable:
        # The server's own session registers the tables; the sessions of JDBC clients stay read-only.
        getattr(jvm, READ_ONLY_CLASS).trust(spark._jsparkSession)
    lakehouse = Lakehouse(spark, root)
    tables = lakehouse.attach()
    server = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithContext(
        spark._jsparkSession.sqlContext()
    )
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not _wait_for_port(host, port, timeout=60):
            raise BackendUnavailable(f"serve-sql: the Thrift server did not start listening on {host}:{port}")
        log.info(
            "serving %d tables of %s on jdbc:hive2://%s:%d (%s); stop with Ctrl-C or SIGTERM",
            len(tables), lakehouse.root, host, port, "read-write" if writable else "read-only",
        )
        log.info("  try:  beeline -u jdbc:hive2://%s:%d -e 'show tables in gold'", host, port)
        while not stop.wait(refresh_seconds):
            added = sorted(set(lakehouse.attach()) - set(tables))
            if added:
                log.info("attached %s", ", ".join(added))
                tables.extend(added)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopping the SQL server")
        server.stop()
        spark.stop()
    return 0
