"""Load test of `goldsmith serve-sql`: concurrent JDBC (HiveServer2) clients against the flights gold table while a
pipeline writes it.

    .venv/bin/python scripts/sql_load.py [--clients 20] [--seconds 60] [--every 30]

Builds a flights lakehouse (every `--every`-th flight of 2013; ingest, refine, features) in a temporary folder,
adds a user, starts the server on a free loopback port, and runs `--clients` clients (PyHive, one connection each,
in threads) for `--seconds`: each sends, in turn, a checksum of `gold.flight_features`, a GROUP BY carrier and a
lookup of one flight. Meanwhile `goldsmith run` appends the flights left out (in two batches, one after a third
of the time, one after two thirds), so the table gets new versions under the readers.

Checked: no query fails; every checksum a client saw is the checksum of a committed version of the table (read
afterwards by time travel): nobody sees half of a write. Printed (and written as JSON with `--json FILE`):
queries, failures, p50/p95/p99 latency per kind, the versions seen.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKSUM = ("select count(*) as n, sum(cast(xxhash64(flight_id, carrier, route_delay_rate, temp_f) as decimal(38, 0)))"
            " as h from gold.flight_features")
BY_CARRIER = "select carrier, count(*) as n, avg(cast(is_delayed as int)) as rate from gold.flight_features " \
             "group by carrier order by carrier"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def goldsmith(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "goldsmith"), *args], cwd=REPO, capture_output=True, text=True, check=True,
                          **kwargs)


def json_lines(text: str) -> list[dict[str, Any]]:
    """`goldsmith sql --format json`'s output: one JSON object per line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def build(work: Path, every: int) -> tuple[Path, Path, list[Path]]:
    """A lakehouse of every `every`-th flight, and two landing folders of the flights left out."""
    landing = work / "landing"
    goldsmith("demo-data", "flights", "--dest", str(landing))
    flights = landing / "flights" / "flights.csv"
    header, *rows = flights.read_text().splitlines()
    flights.write_text("\n".join([header, *rows[::every]]) + "\n")
    extra = []
    for batch in (1, 2):
        folder = work / f"more-{batch}"
        folder.mkdir()
        (folder / f"flights_{batch}.csv").write_text("\n".join([header, *rows[batch::every]]) + "\n")
        extra.append(folder)
    root = work / "lake"
    goldsmith("run", "conf/pipelines/flights.yml", "--stages", "ingest,refine,features",
              "--set", f"storage.root={root}", "--set", f"vars.landing={landing}")
    return root, landing, extra


def client(port: int, password: str, stop: threading.Event, ids: list[str], out: dict[str, Any]) -> None:
    from pyhive import hive

    conn = hive.connect("127.0.0.1", port=port, username="load", password=password, auth="CUSTOM")
    cursor = conn.cursor()
    kinds = ("checksum", "by_carrier", "lookup")
    turn = random.randrange(3)
    while not stop.is_set():
        kind = kinds[turn % 3]
        turn += 1
        sql = {"checksum": CHECKSUM, "by_carrier": BY_CARRIER,
               "lookup": f"select * from gold.flight_features where flight_id = '{random.choice(ids)}'"}[kind]
        started = time.perf_counter()
        try:
            cursor.execute(sql)
            rows = cursor.fetchall()
        except Exception as exc:  # counted and shown: the test fails on any
            out["failures"].append(f"{kind}: {exc}")
            continue
        out["latency"].setdefault(kind, []).append(time.perf_counter() - started)
        if kind == "checksum":
            out["seen"].add((int(rows[0][0]), int(rows[0][1])))
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=int, default=30, help="keep every N-th flight of 2013 (default 30)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="goldsmith-sql-load-") as scratch:
        work = Path(scratch)
        print(f"building a lakehouse of every {args.every}th flight ...", file=sys.stderr)
        root, landing, extra = build(work, args.every)
        password = secrets.token_urlsafe(16)
        goldsmith("serve-sql", "users", "add", "load", "gold", "--root", str(root), input=password + "\n")
        port = free_port()
        log = (work / "serve-sql.log").open("w")
        server = subprocess.Popen([str(BIN / "goldsmith"), "serve-sql", "--root", str(root), "--port", str(port),
                                   "--refresh-seconds", "2"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("serve-sql did not start: " + (work / "serve-sql.log").read_text()[-2000:])
                time.sleep(0.5)
            from pyhive import hive

            probe = hive.connect("127.0.0.1", port=port, username="load", password=password, auth="CUSTOM")
            cursor = probe.cursor()
            cursor.execute("select flight_id from gold.flight_features limit 2000")
            ids = [str(r[0]) for r in cursor.fetchall()]
            probe.close()

            out: dict[str, Any] = {"latency": {}, "failures": [], "seen": set()}
            stop = threading.Event()
            start = time.monotonic()
            threads = [threading.Thread(target=client, args=(port, password, stop, ids, out))
                       for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            # The clients query until both writes are committed and `--seconds` have passed.
            for i, folder in enumerate(extra, 1):
                time.sleep(max(0.0, start + args.seconds * i / 3 - time.monotonic()))
                goldsmith("run", "conf/pipelines/flights.yml", "--stages", "ingest,refine,features",
                          "--set", f"storage.root={root}", "--set", f"vars.landing={landing}",
                          "--set", f"sources.flights.path={folder}")
                print(f"  a pipeline run appended {folder.name} at {time.monotonic() - start:.0f} s",
                      file=sys.stderr)
            time.sleep(max(0.0, start + args.seconds - time.monotonic()))
            stop.set()
            elapsed = time.monotonic() - start
            for thread in threads:
                thread.join()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
            log.close()

        # Every committed version of the table, read by time travel: the states a reader may have seen.
        versions = json_lines(goldsmith("-q", "sql", "describe history gold.flight_features", "--root", str(root),
                                        "--format", "json").stdout)
        valid = {}
        for row in versions:
            v = int(row["version"])
            got = json_lines(goldsmith("-q", "sql", CHECKSUM.replace("gold.flight_features",
                                                                      f"gold.flight_features version as of {v}"),
                                       "--root", str(root), "--format", "json").stdout)[0]
            valid[(int(got["n"]), int(got["h"]))] = v
    latency = {kind: {"queries": len(v), "p50_ms": round(1000 * statistics.median(v), 1),
                      "p95_ms": round(1000 * percentile(v, 0.95), 1), "p99_ms": round(1000 * percentile(v, 0.99), 1)}
               for kind, v in sorted(out["latency"].items())}
    inconsistent = sorted(out["seen"] - set(valid))
    result = {
        "clients": args.clients, "seconds": args.seconds, "flights_every": args.every,
        "queries": sum(x["queries"] for x in latency.values()), "failures": len(out["failures"]),
        "latency": latency, "versions_seen": sorted(valid[s] for s in out["seen"] if s in valid),
        "inconsistent_states": len(inconsistent),
        "seconds_run": round(elapsed, 1),
        "qps": round(sum(x["queries"] for x in latency.values()) / elapsed, 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    for failure in out["failures"][:10]:
        print("failure:", failure, file=sys.stderr)
    return 0 if not out["failures"] and not inconsistent else 1


if __name__ == "__main__":
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    raise SystemExit(main())
