"""`goldsmith serve-sql`: the lakehouse's tables over JDBC/ODBC (Spark's Thrift server), read-only by default.

The server is one Spark application that attaches the storage root like any goldsmith process (the folder
is the catalog), then starts Spark's `HiveThriftServer2` on that session: `beeline`, BI tools and any Hive
JDBC/ODBC driver query `gold.*` while pipelines keep writing. Tables a pipeline creates later are attached
every `refresh_seconds`; a query always reads a table's latest committed Delta version.

Clients log in as users of a users file (`goldsmith.sql_users`; `--no-auth` on loopback only) and may read what
their grants name. A Spark SQL extension (`resources/Guard.java`, compiled once with `javac` into the cache)
checks every statement of a client before it runs: writes and DDL (unless `--writable`), reads by path, functions
that reach the JVM, settings that are the server's, tables not granted; every statement is audited.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from goldsmith.errors import BackendUnavailable, ConfigError, PortInUse
from goldsmith.io.paths import local_folder
from goldsmith.jvm import compiled_jar

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).parent / "resources"
# The server's JVM side: the guard (read-only, grants, no way out of the lakehouse), the password check and the
# audit trail, compiled together once.
SOURCES = ("Guard.java", "UsersAuthenticator.java", "Audit.java", "GuardedOperations.java")
GUARD_CLASS = "goldsmith.sql.Guard"
AUTHENTICATOR_CLASS = "goldsmith.sql.UsersAuthenticator"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
KEYSTORE_PASSWORD = "GOLDSMITH_SQL_KEYSTORE_PASSWORD"


def server_jar() -> Path:
    """The compiled server classes, built with `javac` the first time (named by their sources' hash)."""
    return compiled_jar("goldsmith-sql", [RESOURCES / name for name in SOURCES],
                        "goldsmith serve-sql (to build its guard and password check)")


@dataclass(frozen=True)
class ServeOptions:
    """How `goldsmith serve-sql` serves a lakehouse (its command-line flags)."""

    port: int = 10000
    host: str = "127.0.0.1"
    writable: bool = False
    refresh_seconds: float = 10.0
    # How often the audit log's new lines are appended to ops.sql_audit (and once more as the server stops): one
    # Delta commit per batch, so a busy server does not add a small file and a commit at every refresh.
    audit_seconds: float = 60.0
    auth: bool = True  # False: --no-auth, loopback only
    users: str | None = None  # the users file (default <root>/_sql/users.json)
    open_grants: tuple[str, ...] = ("gold",)  # what everyone may read without authentication
    tls_keystore: str | None = None  # JKS or PKCS12: JDBC over TLS (password in $GOLDSMITH_SQL_KEYSTORE_PASSWORD)
    query_timeout: int = 300  # seconds a statement may run before it is cancelled (0: no limit)
    max_sessions: int = 32  # connections served at once (one server thread each)
    max_rows: int = 1_000_000  # a result with more rows fails with a message (0: no cap)
    ldap_url: str | None = None  # ldap:// or ldaps://: passwords are checked by binding to the directory
    ldap_user_dn: str | None = None  # the DN a user binds as, with {user}: uid={user},ou=people,dc=example,dc=org

    def check(self) -> None:
        if self.tls_keystore is not None:
            if not Path(self.tls_keystore).is_file():
                raise ConfigError(f"serve-sql: --tls-keystore {self.tls_keystore}: no such file")
            if KEYSTORE_PASSWORD not in os.environ:
                raise ConfigError(f"serve-sql: --tls-keystore needs the keystore's password in ${KEYSTORE_PASSWORD}")
        if self.query_timeout < 0 or self.max_sessions < 1 or not 0 <= self.max_rows < 2**31 - 1:
            raise ConfigError("serve-sql: --query-timeout must be >= 0, --max-sessions >= 1 and --max-rows "
                              "between 0 and 2147483646")
        if (self.ldap_url is None) != (self.ldap_user_dn is None):
            raise ConfigError("serve-sql: --ldap-url and --ldap-user-dn go together")
        if self.ldap_url is not None:
            if not self.ldap_url.startswith(("ldap://", "ldaps://")):
                raise ConfigError(f"serve-sql: --ldap-url {self.ldap_url}: give ldap://HOST:PORT or ldaps://HOST:PORT")
            if (self.ldap_user_dn or "").count("{user}") != 1:
                raise ConfigError("serve-sql: --ldap-user-dn needs {user} once, e.g. uid={user},ou=people,"
                                  "dc=example,dc=org")
            if not self.auth:
                raise ConfigError("serve-sql: --ldap-url and --no-auth contradict each other")
        if not self.auth and self.host not in LOOPBACK:
            raise ConfigError(f"serve-sql: --no-auth serves anyone who reaches the port; it is refused with "
                              f"--host {self.host} (loopback only: 127.0.0.1)")


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


def serve_sql(root: str, options: ServeOptions | None = None) -> int:
    """Serve the lakehouse at `root` over the Hive Thrift protocol until SIGTERM or Ctrl-C; return 0.

    Clients log in with a user of the users file (`goldsmith serve-sql users add`), unless `options.auth` is off;
    each reads the tables its grants name; every statement is checked by the guard (`resources/Guard.java`) and
    recorded in `<root>/_sql/audit.jsonl`. Tables created later are attached every `refresh_seconds`; a query
    always reads a table's latest committed Delta version.
    """
    from goldsmith.io.lakehouse import Lakehouse
    from goldsmith.io.ops import OpsLog
    from goldsmith.session import build_session
    from goldsmith.sql_users import load, users_file

    options = options or ServeOptions()
    options.check()
    users = users_file(root, options.users) if options.auth else None
    if users is not None and options.ldap_url is None and not load(users):
        raise ConfigError(f"serve-sql: no user in {users}; add one with `goldsmith serve-sql users add NAME "
                          f"--root {root}` (or serve loopback only with --no-auth)")
    if not _port_is_free(options.host, options.port):
        raise PortInUse(f"serve-sql: {options.host}:{options.port} is already in use; pick another with --port")
    if not options.auth:
        log.warning("serve-sql: --no-auth: anyone who reaches %s:%d may read %s", options.host, options.port,
                    ", ".join(options.open_grants))
    conf = {
        "spark.sql.extensions": f"{DELTA_EXTENSION},{GUARD_CLASS}",
        "spark.hadoop.hive.server2.thrift.bind.host": options.host,
        "spark.hadoop.hive.server2.thrift.port": str(options.port),
        "spark.hadoop.hive.server2.transport.mode": "binary",
        "spark.hadoop.hive.server2.authentication": "CUSTOM" if options.auth else "NONE",
        # A JDBC session of the server is a new Spark session over the same catalog: each client has its own
        # SET values and temporary views, the tables are shared.
        "spark.sql.hive.thriftServer.singleSession": "false",
        # `text.`/path`` and its kind read files by path: off, and the guard keeps it off in every session.
        "spark.sql.runSQLOnFiles": "false",
        # A statement runs in the server's background pool, so a client that disconnects mid-query has its
        # session closed and its job cancelled (the guard knows each session's address from when it opened).
        "spark.sql.hive.thriftServer.async": "true",
        "spark.sql.thriftServer.interruptOnCancel": "true",
        # How each allowed statement ended (rows, duration, error), for the audit trail.
        "spark.sql.queryExecutionListeners": f"{GUARD_CLASS}$Listener",
    }
    if options.auth:
        conf["spark.hadoop.hive.server2.custom.authentication.class"] = AUTHENTICATOR_CLASS
    conf["spark.sql.thriftServer.queryTimeout"] = f"{options.query_timeout}s"
    conf["spark.hadoop.hive.server2.thrift.max.worker.threads"] = str(options.max_sessions)
    if options.tls_keystore is not None:
        conf["spark.hadoop.hive.server2.use.SSL"] = "true"
        conf["spark.hadoop.hive.server2.keystore.path"] = str(Path(options.tls_keystore).resolve())
        # Spark's UI and logs redact values whose key names a password.
        conf["spark.hadoop.hive.server2.keystore.password"] = os.environ[KEYSTORE_PASSWORD]
    # On the JVM's own class path: the Thrift server's threads load the listener and the password check with
    # the system class loader, which does not see `spark.jars`.
    conf["spark.driver.extraClassPath"] = str(server_jar())
    spark = build_session("goldsmith-sql-server", "local[*]", conf, batch=False)
    jvm: Any = spark.sparkContext._jvm
    lakehouse = Lakehouse(spark, root)
    folder = local_folder(lakehouse.root)
    # Beside the lakehouse; a root in an object store keeps it in the server's temporary folder.
    audit = Path(folder or tempfile.gettempdir()) / "_sql" / "audit.jsonl"
    audit.parent.mkdir(parents=True, exist_ok=True)
    system = jvm.java.lang.System
    system.setProperty("goldsmith.sql.read_only", str(not options.writable).lower())
    system.setProperty("goldsmith.sql.auth", str(options.auth).lower())
    system.setProperty("goldsmith.sql.open_grants", ",".join(options.open_grants))
    system.setProperty("goldsmith.sql.audit", str(audit))
    system.setProperty("goldsmith.sql.max_rows", str(options.max_rows))
    if options.ldap_url is not None:
        system.setProperty("goldsmith.sql.ldap.url", options.ldap_url)
        system.setProperty("goldsmith.sql.ldap.user_dn", str(options.ldap_user_dn))
    if users is not None:
        system.setProperty("goldsmith.sql.users", str(users.resolve()))
        # Hive makes its password check from a HiveConf of its own, which reads the class from the system
        # properties (the session's configuration does not reach it).
        system.setProperty("hive.server2.custom.authentication.class", AUTHENTICATOR_CLASS)
    # A refused login is one audited line (goldsmith.sql logs it), not Thrift's stack trace of the SASL failure.
    configurator, level = jvm.org.apache.logging.log4j.core.config.Configurator, jvm.org.apache.logging.log4j.Level
    for logger in ("org.apache.thrift.server.TThreadPoolServer", "org.apache.thrift.transport.TSaslTransport"):
        configurator.setLevel(logger, level.OFF)
    configurator.setLevel("goldsmith.sql", level.INFO)
    # The server's own session registers the tables; the sessions of JDBC clients are guarded.
    getattr(jvm, GUARD_CLASS).trust(spark._jsparkSession)
    tables = lakehouse.attach()
    server = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithContext(
        spark._jsparkSession.sqlContext()
    )
    # JDBC metadata calls (getTables, getColumns, getSchemas) answer within the user's grants, as SHOW TABLES does.
    jvm.goldsmith.sql.GuardedOperations.install(server)
    host, port, writable, refresh_seconds = options.host, options.port, options.writable, options.refresh_seconds
    trail = AuditTrail(audit, OpsLog(lakehouse), audit.stat().st_size if audit.exists() else 0)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not _wait_for_port(host, port, timeout=60):
            raise BackendUnavailable(f"serve-sql: the Thrift server did not start listening on {host}:{port}")
        log.info(
            "serving %d tables of %s on jdbc:hive2://%s:%d (%s, %s); stop with Ctrl-C or SIGTERM",
            len(tables), lakehouse.root, host, port, "read-write" if writable else "read-only",
            f"LDAP {options.ldap_url}" if options.ldap_url else f"users of {users}" if users else "no authentication",
        )
        log.info("  try:  beeline -u jdbc:hive2://%s:%d%s -e 'show tables in gold'", host, port,
                 " -n USER -p PASSWORD" if users else "")
        log.info("  audit: %s", audit)
        copied = time.monotonic()
        while not stop.wait(refresh_seconds):
            added = sorted(set(lakehouse.attach()) - set(tables))
            if added:
                log.info("attached %s", ", ".join(added))
                tables.extend(added)
            if time.monotonic() - copied >= options.audit_seconds:
                trail.copy()
                copied = time.monotonic()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopping the SQL server")
        spark.sparkContext.cancelAllJobs()
        server.stop()
        trail.copy()
        spark.stop()
    return 0


@dataclass
class AuditTrail:
    """Copies the new lines of the server's audit log into `ops.sql_audit`, one commit per batch."""

    path: Path
    ops: Any  # goldsmith.io.ops.OpsLog
    offset: int = 0

    def copy(self) -> int:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return 0
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for the next batch
        rows = [_audit_row(json.loads(line)) for line in complete.decode("utf-8").splitlines() if line.strip()]
        if rows:
            try:
                self.ops.append("sql_audit", rows)
            except Exception:  # the JSON-lines log keeps every line; the table catches up at the next batch
                log.warning("serve-sql: could not copy %d audit line(s) into ops.sql_audit", len(rows),
                            exc_info=True)
                return 0
        self.offset += len(complete)
        return len(rows)


def _audit_row(line: dict[str, Any]) -> dict[str, Any]:
    at = datetime.fromisoformat(str(line.pop("at")).replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)
    return {**line, "at": at}
