"""`goldsmith serve-sql`: beeline logs in as a user of the users file and reads the gold tables over JDBC while a
pipeline writes the same lakehouse; wrong credentials are refused alike; every kind of write, every way out of the
lakehouse (files by path, JVM calls, the server's settings) and every table not granted is refused in one line and
audited; grants change without a restart; `--writable` allows writes; SIGTERM stops the server cleanly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components import unavailable
from goldsmith.examples import write_landing
from goldsmith.sql_users import add_user

from .conftest import (
    BIN,
    FLIGHTS,
    LANE,
    FirstRun,
    Reader,
    Subprocesses,
    copy_tables,
    delta_versions,
    free_port,
    listening,
    run,
    serve,
)

pytestmark = pytest.mark.slow
CHECKSUM = "select count(*) as n, sum(cast(xxhash64(flight_id, carrier, route_delay_rate, temp_f) as decimal(38, 0)))" \
    " as h from gold.flight_features"
# Each statement that would change a table or the catalog, and the plan the read-only check names when refusing it.
WRITES = {
    "drop table gold.flight_features": "DropTable",
    "insert into silver.airlines select * from silver.airlines": "AppendData",
    "create table gold.copy as select * from gold.flight_features": "CreateDataSourceTableAsSelectCommand",
    "update silver.airlines set airline_name = 'x'": "UpdateCommand",
    "delete from silver.airlines where carrier = 'UA'": "DeleteCommand",
    "merge into silver.airlines t using (select 'UA' as carrier) s on t.carrier = s.carrier "
    "when matched then update set airline_name = 'x'": "MergeIntoCommand",
    "vacuum silver.airlines retain 0 hours": "VacuumTableCommand",
    # To the version before the pipeline's write (restoring the current version is a no-op Delta skips).
    "restore table gold.flight_features to version as of 0": "RestoreTableCommand",
    "alter table silver.airlines add columns (extra int)": "AddColumns",
    "add jar /tmp/goldsmith-not-a.jar": "AddJarsCommand",
    "create function gold.evil as 'org.example.Evil'": "CreateFunctionCommand",
}


# Each way out of the lakehouse a client tried, and what the refusal says.
BYPASSES = {
    "select * from text.`/etc/passwd`": "reading files by path is not allowed",
    "select count(*) from csv.`{landing}/flights/flights.csv`": "reading files by path is not allowed",
    "select count(*) from delta.`{other}/gold/flight_features`": "reading files by path is not allowed",
    "with t as (select * from parquet.`{other}/gold/flight_features`) select count(*) from t":
        "reading files by path is not allowed",
    "select reflect('java.lang.System', 'getProperty', 'user.home')": "reflect calls into the server's JVM",
    "select java_method('java.lang.System', 'exit', 0)": "java_method calls into the server's JVM",
    "select try_reflect('java.io.File', 'createTempFile', 'x', 'y')": "try_reflect calls into the server's JVM",
    "set spark.sql.runSQLOnFiles=true": "SET spark.sql.runSQLOnFiles is not allowed",
    "select count(*) from ops.run_log": "user alice may not read ops.run_log",
    "select count(*) from silver.flights_quarantine": "user alice may not read silver.flights_quarantine",
    "select (select count(*) from ops.quality_metrics) as n": "user alice may not read ops.quality_metrics",
    "describe table ops.run_log": "user alice may not read ops.run_log",
    "cache table gold.flight_features": "read-only: CacheTable",
    "create view gold.v as select 1 as x": "read-only: CreateViewCommand",
    "insert overwrite directory '/tmp/goldsmith-out' using csv select 1": "read-only: InsertIntoDataSourceDir",
    "optimize gold.flight_features": "read-only: OptimizeTableCommand",
}
USERS = {"alice": ("alice-secret", ["gold", "silver"]), "auditor": ("sécret-ünïcode", ["gold", "silver.*", "ops"])}


def beeline(port: int, *statements: str, user: str | None = "alice", password: str | None = None, url: str = "",
            ) -> subprocess.CompletedProcess[str]:
    """One beeline process for all `statements` (a script file), going on after a failed one (`--force`), logged
    in as `user` with its password in `USERS` (or `password`; user None: no credentials at all)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("".join(f"{s};\n" for s in statements))
    secret = password if password is not None else USERS.get(user or "", ("", []))[0]
    login = ["-n", user, "-p", secret] if user else []
    try:
        return run(str(BIN / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}/{url}", *login, "--silent=true",
                   "--force=true", "--outputformat=csv2", "-f", script.name, timeout=300)
    finally:
        os.unlink(script.name)


COUNT = "select count(*) as n from gold.flight_features"
PAUSE = 5.0  # seconds between a client's queries: 20 clients, 4 queries a second


class Clients:
    """`n` JDBC clients (PyHive, a connection each, in threads) counting the gold table as alice, each every
    `PAUSE` seconds and at least twice, until `finish`. (A count is answered from the Delta log: the load here is
    the server's sessions, not the scans.)"""

    def __init__(self, port: int, n: int) -> None:
        self.done = threading.Event()
        self.seen: set[int] = set()
        self.failures: list[str] = []
        self.sent: list[int] = []  # one entry per query answered
        self.threads = [threading.Thread(target=self._run, args=(port,)) for _ in range(n)]
        for thread in self.threads:
            thread.start()

    def _run(self, port: int) -> None:
        from pyhive import hive

        try:
            conn = hive.connect("127.0.0.1", port=port, username="alice", password=USERS["alice"][0],
                                auth="CUSTOM")
            cursor, queries = conn.cursor(), 0
            while queries < 2 or not self.done.is_set():
                cursor.execute(COUNT)
                (n,), = cursor.fetchall()
                self.seen.add(int(n))
                self.sent.append(1)
                queries += 1
                self.done.wait(PAUSE)
            conn.close()
        except Exception as exc:
            self.failures.append(repr(exc))

    def finish(self) -> tuple[set[int], list[str]]:
        """Stop the clients: the counts they saw, and their failed queries."""
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=300)
        return self.seen, self.failures


def listening_addresses(pid: int) -> set[str]:
    """The local addresses the process `pid` and its children (the server's JVM) listen on, as hex from
    /proc/net/tcp{,6}: 0100007F is 127.0.0.1, 00000000 any address."""
    pids = {pid} | {int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _parent(d) == pid}
    inodes = set()
    for one in pids:
        for fd in Path(f"/proc/{one}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                found.add(fields[1].split(":")[0])
    return found


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def jdbc_listing(port: int, user: str) -> tuple[set[tuple[str, str]], set[str]]:
    """The tables and schemas the JDBC metadata calls (getTables, getSchemas: what beeline's `!tables` and BI
    tools' browsers use) list to `user` of `USERS`."""
    from pyhive import hive
    from TCLIService import ttypes

    with hive.connect("127.0.0.1", port=port, username=user, password=USERS[user][0], auth="CUSTOM") as conn:
        def rows(call: str, request: object) -> list[tuple[object, ...]]:
            answer = getattr(conn._client, call)(request)
            cursor = conn.cursor()
            cursor._operationHandle, cursor._state = answer.operationHandle, cursor._STATE_RUNNING
            return cursor.fetchall()

        session = conn._sessionHandle
        tables = rows("GetTables", ttypes.TGetTablesReq(sessionHandle=session, schemaName="%", tableName="%"))
        schemas = rows("GetSchemas", ttypes.TGetSchemasReq(sessionHandle=session))
    return {(str(r[1]), str(r[2])) for r in tables}, {str(r[0]) for r in schemas}


def users_file(root: Path) -> Path:
    path = root / "_sql" / "users.json"
    for name, (password, grants) in USERS.items():
        add_user(path, name, password, grants)
    return path


# What beeline writes around the rows of a script: the prompts it echoes, and a `null` (padded with spaces, or
# glued to the next line) for each statement it reads from the file.
PROMPT = re.compile(r"^(\d+: jdbc:hive2://\S+> |null)+")


def csv_rows(output: str) -> list[list[str]]:
    """beeline's csv2 output without the JVM's warnings and what it echoes: the header and rows of each query."""
    lines = (PROMPT.sub("", line).strip() for line in output.splitlines())
    return [line.split(",") for line in lines if line and not line.startswith(("WARNING", "SLF4J"))]


def keystores(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed certificate for 127.0.0.1 in a keystore, a trust store that trusts it, and another
    self-signed certificate (PEM) that a client may trust instead (made by `keytool`)."""
    keytool = shutil.which("keytool")
    assert keytool, "keytool (JDK) is needed for the TLS test"
    for name in ("server", "other"):
        store = folder / f"{name}.jks"
        steps = [
            ["-genkeypair", "-alias", name, "-keyalg", "RSA", "-keysize", "2048", "-validity", "2",
             "-dname", "CN=127.0.0.1", "-ext", "SAN=IP:127.0.0.1", "-keystore", str(store),
             "-storepass", KEY_PASSWORD, "-keypass", KEY_PASSWORD, "-storetype", "JKS"],
            ["-exportcert", "-rfc", "-alias", name, "-keystore", str(store), "-storepass", KEY_PASSWORD,
             "-file", str(folder / f"{name}.crt")],
        ]
        if name == "server":
            steps.append(["-importcert", "-noprompt", "-alias", name, "-file", str(folder / f"{name}.crt"),
                          "-keystore", str(folder / f"{name}-trust.jks"), "-storepass", TRUST_PASSWORD,
                          "-storetype", "JKS"])
        for args in steps:
            done = subprocess.run([keytool, *args], capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr
    return folder / "server.jks", folder / "server-trust.jks", folder / "other.crt"


KEY_PASSWORD, TRUST_PASSWORD = "server-store-pw", "client-trust-pw"


@dataclass(frozen=True)
class ServedWhileWriting:
    """A server the background lane started on an empty root (`serve_while_writing`); the first run's tables
    copied under it; then a pipeline writing the lakehouse while 20 JDBC clients queried it."""

    root: Path
    log: Path
    users: Path
    port: int
    server: subprocess.Popen[str]
    started: float  # time.monotonic() when the server was started
    first_seen: tuple[int, int]  # CHECKSUM as the server first answered it, once the copied tables were attached
    features_version: int  # gold.flight_features' version in the copy, before the pipeline's write
    write: subprocess.CompletedProcess[str]  # the pipeline's run
    seen: set[int]  # the counts the clients saw
    failures: list[str]  # the clients' failed queries
    sent: int  # the clients' queries answered


@LANE.job(fixtures=("served_while_writing",), needs=("start_first_run",))
def serve_while_writing(factory: pytest.TempPathFactory) -> ServedWhileWriting:
    """In the background lane: `goldsmith serve-sql` on an empty root (users file only); the first run's tables
    copied under it (attached within a refresh or two); then `goldsmith run` writes the lakehouse the server has
    open (no lock, no metastore between them): 20 more flights (the 2nd to the 21st of the year, left out of the
    every-30th slice), merged into silver, the gold table rebuilt from their time on, while 20 clients query the
    gold table (the long version: scripts/sql_load.py). The server runs on for the test, which stops it."""
    from pyhive import hive
    from pyhive.exc import OperationalError

    first: Subprocesses = LANE.result("start_first_run", factory)
    folder = factory.mktemp("serve-sql")
    root, log = folder / "lake", folder / "serve-sql.log"
    users = users_file(root)
    started = time.monotonic()
    served = serve(root, log)
    port, server = next(served)
    LANE.on_close("sql-server", lambda: next(served, None))
    copy_tables(first.root, root)
    features_version = delta_versions(root)["gold.flight_features"]
    with hive.connect("127.0.0.1", port=port, username="alice", password=USERS["alice"][0],
                      auth="CUSTOM") as alice:
        cursor, seen, deadline = alice.cursor(), None, time.monotonic() + 120
        while seen is None:
            try:
                cursor.execute(CHECKSUM)
                n, h = cursor.fetchall()[0]
                seen = (int(n), int(h))
            except OperationalError:  # not attached yet
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(1)
    write_landing("flights", folder / "next", 21)
    lines = (folder / "next" / "flights" / "flights.csv").read_text().splitlines()
    more = folder / "more-flights"
    more.mkdir()
    (more / "flights_next.csv").write_text("\n".join([lines[0], *lines[2:22]]) + "\n")
    clients = Clients(port, 20)
    try:
        write = LANE.run(str(BIN / "goldsmith"), "run", "conf/pipelines/flights.yml", "--stages",
                         "ingest,refine,features", "--set", f"storage.root={root}", "--set",
                         f"vars.landing={first.landing}", "--set", f"sources.flights.path={more}", timeout=900)
    finally:
        counted, failures = clients.finish()
    return ServedWhileWriting(root, log, users, port, server, started, seen, features_version, write, counted,
                              failures, len(clients.sent))


@pytest.fixture(scope="session")
def served_while_writing(tmp_path_factory: pytest.TempPathFactory) -> ServedWhileWriting:
    return LANE.result("serve_while_writing", tmp_path_factory)  # type: ignore[no-any-return]


def test_beeline_reads_gold_tables_while_a_pipeline_writes_and_cannot_write(
    served_while_writing: ServedWhileWriting, flights_lake: FirstRun, landing: Path, reader: Reader,
) -> None:
    from pyhive import hive

    lake = served_while_writing
    root, log, users, port, server, started = lake.root, lake.log, lake.users, lake.port, lake.server, lake.started
    try:
        # The server answered for the copied tables as the test process reads them, at the copy's version.
        before = reader.row(CHECKSUM.replace(
            "from gold.flight_features",
            f"from delta.`{root}/gold/flight_features` version as of {lake.features_version}"), root)
        assert before["n"] == FLIGHTS and lake.first_seen == (before["n"], before["h"]), (lake.first_seen, before)
        # The pipeline's run wrote 20 more flights; none of the 20 clients' queries failed, and each saw the table
        # as it was before the write or after it, never between.
        assert lake.write.returncode == 0, lake.write.stderr[-3000:]
        assert not lake.failures, lake.failures[:3]
        after = reader.row(CHECKSUM, root)
        assert lake.seen <= {before["n"], after["n"]} and lake.seen, lake.seen
        assert after["n"] == FLIGHTS + 20
        versions = {t: reader.version(t, root) for t in ("gold.flight_features", "silver.airlines")}
        assert versions["gold.flight_features"] != 0  # the pipeline wrote it: RESTORE would change it
        bypasses = [b.format(landing=landing, other=flights_lake.root) for b in BYPASSES]
        # One beeline (a JVM start each) for the reads, every refusal and the listings.
        refused = beeline(port, CHECKSUM, "select flight_id, carrier, origin from gold.flight_features "
                                          "order by flight_id limit 3",
                          *WRITES, *bypasses, "show tables in silver", "show tables in ops")
        got = csv_rows(refused.stdout)
        assert got[:2] == [["n", "h"], [str(after["n"]), str(after["h"])]], (refused.stdout + refused.stderr)[-3000:]
        assert got[2] == ["flight_id", "carrier", "origin"] and len([r for r in got[3:6] if len(r) == 3]) == 3
        said = refused.stdout + refused.stderr
        # One error per statement, in order, each one line naming what it refused; no stack trace.
        errors = re.findall(r"^Error: (.*)$", said, re.M)
        assert len(errors) == len(WRITES) + len(BYPASSES), said[-3000:]
        plans = [re.search(r"goldsmith serve-sql is read-only: (\w+) would change", e) for e in errors[:len(WRITES)]]
        assert [m.group(1) if m else None for m in plans] == list(WRITES.values()), said[-3000:]
        for error, expected in zip(errors[len(WRITES):], BYPASSES.values(), strict=True):
            assert expected in error, (expected, error)
        assert "\tat " not in said and "Caused by" not in said, said[-3000:]
        # SHOW TABLES lists what alice may read: silver's tables without the quarantine ones, nothing of ops.
        listed = [r for r in csv_rows(refused.stdout) if len(r) == 3 and r[0] in ("silver", "ops")]
        assert {r[1] for r in listed} == {"airlines", "airports", "flights", "planes", "weather"}, listed
        # So do the JDBC metadata calls.
        tables, schemas = jdbc_listing(port, "alice")
        assert schemas == {"gold", "silver"}, schemas
        assert {t for t in tables if t[0] == "silver"} == {("silver", r[1]) for r in listed}, tables
        assert {t[0] for t in tables} == {"gold", "silver"} and ("gold", "flight_features") in tables, tables
        assert {t: reader.version(t, root) for t in versions} == versions
        assert listening(port), "a statement stopped the server"
        # The server's JVM (Thrift port, Spark driver, block manager, UI) listens on loopback only.
        addresses = listening_addresses(server.pid)
        assert addresses and addresses <= LOOPBACK, addresses
        # A server, not a batch run: its JVM keeps Java's default collector (goldsmith.session.BATCH_GC).
        options = (jvm_child(server.pid) / "cmdline").read_bytes().split(b"\0")
        assert b"-Dlog4j.configurationFile=" in b" ".join(options) and b"-XX:+UseParallelGC" not in options, options

        # Wrong credentials get one answer, whoever is asked (PyHive: a JDBC client without a JVM start each);
        # a grant added with the CLI works at once.
        from thrift.transport.TTransport import TTransportException

        answers = set()
        for user, password in (("alice", "wrong"), ("mallory", "alice-secret"), ("alice", "")):
            with pytest.raises(TTransportException) as denied:
                hive.connect("127.0.0.1", port=port, username=user, password=password, auth="CUSTOM")
            answers.add(str(denied.value))
        assert len(answers) == 1 and "Error validating the login" in answers.pop()
        anonymous = beeline(port, "select 1", user=None)  # and beeline without credentials
        assert "Error validating the login" in anonymous.stdout + anonymous.stderr, anonymous.stdout[-3000:]
        granted = run(str(BIN / "goldsmith"), "serve-sql", "users", "grant", "alice", "silver.*", "--root", str(root))
        assert granted.returncode == 0 and "silver.*" in granted.stdout, granted.stderr
        quarantined = reader.row("select count(*) as n from silver.flights_quarantine", root)["n"]
        with hive.connect("127.0.0.1", port=port, username="alice", password=USERS["alice"][0],
                          auth="CUSTOM") as alice:
            cursor = alice.cursor()
            cursor.execute("select count(*) from silver.flights_quarantine")
            assert cursor.fetchall() == [(quarantined,)]
        # A password beyond ASCII (hashed by Python, checked by the JVM).
        with hive.connect("127.0.0.1", port=port, username="auditor", password=USERS["auditor"][0],
                          auth="CUSTOM") as auditor:
            cursor = auditor.cursor()
            cursor.execute("select count(*) from ops.run_log")
            assert cursor.fetchall()[0][0] >= 1
        assert reader.row("select count(*) as n from silver.airlines where airline_name = 'x'", root) == {"n": 0}
        assert reader.row("select count(*) as n from silver.airlines", root) == {"n": 16}
        assert not (root / "gold" / "copy").exists()
    finally:
        LANE.stop("sql-server")
    lived = time.monotonic() - started
    err = log.read_text()
    assert server.returncode == 0, err[-3000:]
    assert "serving" in err and "read-only" in err and f"users of {users}" in err and "stopping the SQL server" in err
    # Refusals are audited, not logged with stack traces (a client's own error, a table not found, is Spark's).
    logged = err.splitlines()
    assert not [line for i, line in enumerate(logged[:-1]) if "goldsmith serve-sql" in line
                and logged[i + 1].startswith("\tat ")], err[-3000:]
    assert not listening(port)
    lines = [json.loads(line) for line in (root / "_sql" / "audit.jsonl").read_text().splitlines()]
    logins = [x for x in lines if x["event"] == "login"]
    # (An empty password is refused by Hive's PLAIN check before the password check sees it: not audited.)
    assert [x["allowed"] for x in logins] == [False] * 3
    assert {x["user"] for x in logins} == {"alice", "mallory", "anonymous"}
    refusals = [x for x in lines if x["event"] == "statement" and not x["allowed"]]
    assert len(refusals) == len(WRITES) + len(BYPASSES) and {x["user"] for x in refusals} == {"alice"}
    assert all(x["statement"] and x["reason"].startswith("goldsmith serve-sql") for x in refusals)
    ran = [x for x in lines if x["event"] == "statement" and x["allowed"] and x["statement"] == CHECKSUM]
    # (A checksum sent before the copied tables were attached failed in analysis: audited as failed.)
    done = [x for x in ran if x["reason"] is None]
    assert all(x["reason"].startswith("failed: [TABLE_OR_VIEW_NOT_FOUND]") for x in ran if x not in done), ran
    assert done and all(x["user"] == "alice" and x["rows"] == 1 and x["duration_ms"] >= 0 for x in done), ran
    assert all(x["client"] == "127.0.0.1" for x in lines if x["event"] == "statement")
    # Each of the 20 clients' counts (the same text, sent at the same moments) has its own line.
    counts = [x for x in lines if x["event"] == "statement" and x["statement"] == COUNT]
    ids = {x["statement_id"] for x in counts}
    assert len(counts) == lake.sent == len(ids), (len(counts), lake.sent, len(ids))
    assert all(x["rows"] == 1 and x["reason"] is None for x in counts)
    # The server copied the log into ops.sql_audit in batches, the last one as it stopped.
    copied = reader.row("select count(*) as n, count_if(not allowed) as refused from ops.sql_audit", root)
    assert copied == {"n": len(lines), "refused": len(logins) + len(refusals)}
    # One commit per --audit-seconds (60) at most, and one as it stopped; not one per refresh (every second here).
    commits = (reader.version("ops.sql_audit", root) or 0) + 1
    assert commits <= int(lived // 60) + 1, (commits, lived)


def slapd_binary() -> tuple[Path, dict[str, str]] | None:
    """OpenLDAP's slapd: on PATH, in /usr/sbin, or unpacked by scripts/slapd/fetch into the cache (run with its
    libraries); None when there is none."""
    found = shutil.which("slapd") or ("/usr/sbin/slapd" if Path("/usr/sbin/slapd").exists() else None)
    if found:
        return Path(found), {}
    from goldsmith.jvm import cache_dir

    for tree in sorted(cache_dir().glob("slapd-*"), reverse=True):
        if (tree / "usr/sbin/slapd").exists():
            return tree / "usr/sbin/slapd", {"LD_LIBRARY_PATH": str(tree / "usr/lib/x86_64-linux-gnu")}
    return None


LDAP_SUFFIX = "dc=example,dc=org"
LDAP_USERS = {"dana": "dana-pw", "erin": "erin-pw"}


def ldap_directory(folder: Path) -> Iterator[int]:
    """A throwaway OpenLDAP directory on a free loopback port, with `LDAP_USERS` under ou=people (their passwords
    hashed by slappasswd), loaded offline with slapadd; stopped by its PID."""
    found = slapd_binary()
    if found is None:
        unavailable("no slapd (scripts/slapd/fetch unpacks Debian's)",
                    "no slapd: scripts/test fetches it with scripts/slapd/fetch")
    slapd, env = found
    tree = slapd.parent.parent.parent  # / for a system slapd, the unpacked package otherwise
    schema = tree / "etc/ldap/schema" if (tree / "etc/ldap/schema").exists() else Path("/etc/ldap/schema")
    modules = tree / "usr/lib/ldap"
    env = {**os.environ, **env}
    (folder / "data").mkdir(parents=True)
    conf = folder / "slapd.conf"
    conf.write_text("\n".join([
        *(f"include {schema / name}.schema" for name in ("core", "cosine", "inetorgperson")),
        f"modulepath {modules}", "moduleload back_mdb", f"pidfile {folder / 'slapd.pid'}",
        "database mdb", f'suffix "{LDAP_SUFFIX}"', f'rootdn "cn=admin,{LDAP_SUFFIX}"',
        f"directory {folder / 'data'}", "maxsize 10485760", "",
    ]))
    entries = [f"dn: {LDAP_SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n",
               f"dn: ou=people,{LDAP_SUFFIX}\nobjectClass: organizationalUnit\nou: people\n"]
    for name, password in LDAP_USERS.items():
        hashed = subprocess.run([str(slapd.parent / "slappasswd"), "-s", password], capture_output=True,
                                text=True, env=env, check=True).stdout.strip()
        entries.append(f"dn: uid={name},ou=people,{LDAP_SUFFIX}\nobjectClass: inetOrgPerson\nuid: {name}\n"
                       f"cn: {name}\nsn: {name}\nuserPassword: {hashed}\n")
    (folder / "people.ldif").write_text("\n".join(entries))
    added = subprocess.run([str(slapd.parent / "slapadd"), "-f", str(conf), "-l", str(folder / "people.ldif")],
                           capture_output=True, text=True, env=env, check=False)
    assert added.returncode == 0, added.stderr
    port = free_port()
    server = subprocess.Popen([str(slapd), "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while not listening(port):
            assert server.poll() is None and time.monotonic() < deadline, "slapd did not start"
            time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def jvm_child(pid: int) -> Path:
    """/proc's folder of the process `pid`'s JVM child."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _parent(proc) == pid and (proc / "comm").read_text().strip() == "java":
            return proc
    raise AssertionError(f"no JVM under {pid}")


def jvm_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the process `pid`'s JVM child so far."""
    fields = (jvm_child(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tls_connect(port: int, user: str, password: str, cafile: Path) -> object:
    """A PyHive connection over TLS that checks the server's certificate against `cafile`, logged in as `user`."""
    import ssl

    import thrift_sasl
    from pyhive import hive
    from thrift.transport.TSSLSocket import TSSLSocket

    socket = TSSLSocket("127.0.0.1", port, cert_reqs=ssl.CERT_REQUIRED, ca_certs=str(cafile))
    transport = thrift_sasl.TSaslClientTransport(
        lambda: hive.get_installed_sasl(host="127.0.0.1", sasl_auth="PLAIN", username=user, password=password),
        "PLAIN", socket)
    return hive.connect(thrift_transport=transport, username=user)


@dataclass(frozen=True)
class TlsServer:
    """A writable server over TLS with an LDAP directory and a row cap, started by the lane (`serve_tls_ldap`),
    and the writes one beeline (a JVM start) sent it as erin."""

    root: Path
    port: int
    server: subprocess.Popen[str]
    cafile: Path  # the server's certificate (PEM)
    other_cafile: Path  # another self-signed certificate
    cap: int
    writes: tuple[str, ...]
    done: subprocess.CompletedProcess[str]  # beeline's run of `writes`


TLS_WRITES = ("update silver.airlines set airline_name = 'renamed' where carrier = 'UA'",
              "insert into silver.airlines select * from silver.airlines where carrier = 'AA'")


@LANE.job(fixtures=("tls_server",), needs=("start_first_run",), late=True)
def serve_tls_ldap(factory: pytest.TempPathFactory) -> TlsServer:
    """In the background lane, once the tier's tests begin (`late`: the tests before this module's leave a core
    idle, the Spark tier does not): an OpenLDAP directory, a copy of the first run's lakehouse, a keystore, and one
    server over TLS, logging users in against the directory, writable, with a row cap; then beeline (JDBC over
    TLS, trusting the server's certificate) writes as erin. The server and the directory run on for the test."""
    first: Subprocesses = LANE.result("start_first_run", factory)
    folder = factory.mktemp("serve-tls")
    directory = ldap_directory(folder / "ldap")
    ldap_port = next(directory)
    LANE.on_close("ldap", lambda: next(directory, None))
    root, cap = folder / "lake", 1000
    copy_tables(first.root, root)
    keystore, trusted, other_cafile = keystores(folder)
    # The users file only grants with LDAP: erin reads and writes silver too; dana, not in it, reads gold.
    add_user(root / "_sql" / "users.json", "erin", None, ["gold", "silver.*"])
    # (Its tables are all there when it starts, and it writes them itself: no refresh needed while it waits.)
    served = serve(root, folder / "serve-sql.log", "--writable", "--tls-keystore", str(keystore),
                   "--refresh-seconds", "600", "--ldap-url", f"ldap://127.0.0.1:{ldap_port}",
                   "--ldap-user-dn", f"uid={{user}},ou=people,{LDAP_SUFFIX}",
                   "--max-rows", str(cap), env={"GOLDSMITH_SQL_KEYSTORE_PASSWORD": KEY_PASSWORD})
    port, server = next(served)
    LANE.on_close("tls-server", lambda: next(served, None))
    tls = f";ssl=true;sslTrustStore={trusted};trustStorePassword={TRUST_PASSWORD}"
    done = beeline(port, *TLS_WRITES, user="erin", password=LDAP_USERS["erin"], url=tls)
    return TlsServer(root, port, server, folder / "server.crt", other_cafile, cap, TLS_WRITES, done)


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> TlsServer:
    return LANE.result("serve_tls_ldap", tmp_path_factory)  # type: ignore[no-any-return]


def test_tls_ldap_server_writes_caps_rows_and_cancels_abandoned_queries(tls_server: TlsServer, reader: Reader,
                                                                       ) -> None:
    """One server, over TLS, logging users in against an OpenLDAP directory, writable, with a row cap."""
    import ssl

    import certifi
    from pyhive import hive
    from pyhive.exc import OperationalError
    from thrift.transport.TSSLSocket import TSSLSocket
    from thrift.transport.TTransport import TTransportException

    root, port, server, cap, writes, cafile = (tls_server.root, tls_server.port, tls_server.server, tls_server.cap,
                                               tls_server.writes, tls_server.cafile)
    try:
        done = tls_server.done
        assert "read-only" not in done.stdout + done.stderr and "Error" not in done.stdout + done.stderr, \
            (done.stdout + done.stderr)[-3000:]
        # A client without TLS, or one that does not trust the server's certificate (here: the certificate
        # authorities of the system, or another self-signed certificate), gets no answer. (PyHive clients: one
        # beeline, above, proves the JDBC client; each beeline is a JVM start.)
        with pytest.raises((TTransportException, EOFError, OSError)):
            hive.connect("127.0.0.1", port=port, username="erin", password=LDAP_USERS["erin"], auth="CUSTOM")
        for authorities in (Path(certifi.where()), tls_server.other_cafile):
            # (The TLS socket itself: PyHive, closing a socket that never opened, hides the error behind its own.)
            untrusted = TSSLSocket("127.0.0.1", port, cert_reqs=ssl.CERT_REQUIRED, ca_certs=str(authorities))
            with pytest.raises(TTransportException) as refused:
                untrusted.open()
            assert isinstance(refused.value.inner, ssl.SSLCertVerificationError), repr(refused.value.inner)

        answers = set()
        # A wrong password, a user the directory does not have, and names that would change the DN or match
        # by filter if they were pasted into it unescaped.
        for user, password in (("dana", "wrong"), ("nobody", "dana-pw"), ("*", "dana-pw"),
                               ("dana,ou=people", "dana-pw"), ("erin", "dana-pw")):
            with pytest.raises(TTransportException) as denied:
                tls_connect(port, user, password, cafile)
            answers.add(str(denied.value))
        assert len(answers) == 1 and "Error validating the login" in answers.pop()
        with tls_connect(port, "dana", LDAP_USERS["dana"], cafile) as dana:
            cursor = dana.cursor()
            cursor.execute("select count(*) from gold.flight_features")
            assert cursor.fetchall() == [(FLIGHTS,)]
            with pytest.raises(OperationalError, match=r"user dana may not read silver\.airlines"):
                cursor.execute("select count(*) from silver.airlines")
            # The row cap: a result of more rows fails with a message, rather than arriving cut; the cap itself,
            # an aggregate and a LIMIT pass.
            with pytest.raises(OperationalError, match=f"more than {cap} rows"):
                cursor.execute("select flight_id from gold.flight_features")
            with pytest.raises(OperationalError, match=f"more than {cap} rows"):
                cursor.execute(f"select flight_id from gold.flight_features order by flight_id limit {cap + 1}")
            cursor.execute(f"select flight_id from gold.flight_features order by flight_id limit {cap}")
            ids = [r[0] for r in cursor.fetchall()]
            assert len(ids) == cap and ids == sorted(ids)
        with tls_connect(port, "erin", LDAP_USERS["erin"], cafile) as erin:
            cursor = erin.cursor()
            cursor.execute("select count(*) as n, count_if(airline_name = 'renamed') from silver.airlines")
            assert cursor.fetchall() == [(17, 1)]

        # A client that goes away mid-query: its session is closed and its job cancelled, the CPU freed.
        endless = "select max(hash(id)) from range(0, 1000000000000, 1, 2)"
        dana = tls_connect(port, "dana", LDAP_USERS["dana"], cafile)
        dana.cursor().execute(endless, async_=True)
        time.sleep(4)
        dana._transport.close()  # the socket, without closing the session first
        audit = root / "_sql" / "audit.jsonl"
        deadline = time.monotonic() + 60
        while True:
            ended = [json.loads(line) for line in audit.read_text().splitlines() if endless in line]
            if ended or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert ended and (ended[0]["reason"] or "").startswith("failed: cancelled"), ended
        before = jvm_cpu_seconds(server.pid)
        time.sleep(3)
        assert jvm_cpu_seconds(server.pid) - before < 2.0, "the abandoned query still runs"
    finally:
        LANE.stop("tls-server")
        LANE.stop("ldap")
    assert server.returncode == 0
    got = reader.row("select count(*) as n, count_if(airline_name = 'renamed') as renamed from silver.airlines",
                     root)
    assert got == {"n": 17, "renamed": 1}
    lines = [json.loads(line) for line in (root / "_sql" / "audit.jsonl").read_text().splitlines()]
    logins = [x for x in lines if x["event"] == "login"]
    assert [x["user"] for x in logins] == ["dana", "nobody", "*", "dana,ou=people", "erin"]
    capped = [x for x in lines if x["event"] == "statement" and f"more than {cap} rows" in (x["reason"] or "")]
    assert len(capped) == 2 and {x["user"] for x in capped} == {"dana"}
    refused = [x for x in lines if x["event"] == "statement" and not x["allowed"]]
    assert [x["statement"] for x in refused] == ["select count(*) from silver.airlines"]
    # One line per statement, none for the queries Spark and Delta run inside them.
    statements = [x["statement"] for x in lines if x["event"] == "statement" and not x["statement"].startswith("USE")]
    assert len(statements) == len(set(statements)) and set(writes) <= set(statements), statements
    assert len(statements) == len(writes) + 7, statements
