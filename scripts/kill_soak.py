"""Kill soak: SIGKILL `goldsmith run` of the flights pipeline at random moments, run it again, compare every table.

    .venv/bin/python scripts/kill_soak.py --kills 20 --seed 1 --flights 20000

1. Writes the flights demo's landing files (about `--flights` flights spread over the year, every other table
   whole) once.
2. Runs the whole pipeline (ingest -> monitor) once without interruption: the reference, and its duration T.
3. For each kill: a fresh storage root; `goldsmith run` started in a process group of its own; after a random delay
   in [2 s, T] (seeded) the whole group (Python, JVM, workers) gets SIGKILL; then `goldsmith run` again, to
   completion, which must take over the lease and exit 0; then every table's content checksum
   (`goldsmith.io.checksums`) is compared with the reference's.
4. Prints one line per kill (delay, the last progress line before the kill, the verdict) and a summary; exits 1
   when any kill lost, doubled or changed a row.

Predictions are compared without the registry version they name (a kill during training leaves a version that
never went through the gates; the next run registers another); the engine's per-run observations (run log,
quality metrics, profiles, monitor results) are not compared, the bookkeeping of files and batches is.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDSMITH = Path(sys.executable).with_name("goldsmith")


def run_args(root: Path, landing: Path) -> list[str]:
    return [str(GOLDSMITH), "run", str(REPO / "conf/pipelines/flights.yml"), "--set", f"storage.root={root}",
            "--set", f"vars.landing={landing}"]


def write_landing(landing: Path, flights: int) -> None:
    """The demo's landing files, with every k-th flight kept (the whole year, so every split of the model has
    rows)."""
    subprocess.run([str(GOLDSMITH), "demo-data", "flights", "--dest", str(landing)], check=True, capture_output=True,
                   text=True)
    path = landing / "flights" / "flights.csv"
    header, *rows = path.read_bytes().splitlines()
    step = max(1, len(rows) // flights)
    path.write_bytes(b"\n".join([header, *rows[::step]]) + b"\n")


def complete_run(root: Path, landing: Path, log: Path) -> float:
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(run_args(root, landing), stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run on {root} exited {done.returncode}; see {log}")
    return time.monotonic() - started


def killed_run(root: Path, landing: Path, log: Path, delay: float) -> str:
    """Start a run, SIGKILL its process group after `delay` seconds; the last progress line before the kill."""
    with log.open("w") as out:
        process = subprocess.Popen(run_args(root, landing), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    progress = [line for line in lines if line[:2].isdigit() and ":" in line[:8]]
    last = progress[-1][9:] if progress else "(before the first progress line)"
    return ("finished before the kill: " if process.returncode == 0 else "") + last[:110]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flights", type=int, default=20_000,
                        help="about N flights, every k-th of the year (default 20,000)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    args = parser.parse_args(argv)

    from goldsmith.io.checksums import lakehouse_checksums
    from goldsmith.session import build_session

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="goldsmith-soak-"))
    landing = workdir / "landing"
    if not landing.exists():
        write_landing(landing, args.flights)
    reference = workdir / "reference"
    shutil.rmtree(reference, ignore_errors=True)
    seconds = complete_run(reference, landing, workdir / "reference.log")
    spark = build_session("goldsmith-soak", "local[2]", {"spark.ui.enabled": "false"})
    expected = lakehouse_checksums(spark, str(reference))
    print(f"reference: {args.flights:,} flights, {len(expected)} tables, one uninterrupted run {seconds:.0f} s")

    failures = 0
    for kill in range(args.kills):
        rng = random.Random(args.seed * 1000 + kill)
        delay = rng.uniform(2.0, seconds)
        root = workdir / f"kill-{kill:02d}"
        shutil.rmtree(root, ignore_errors=True)
        where = killed_run(root, landing, workdir / f"kill-{kill:02d}.log", delay)
        complete_run(root, landing, workdir / f"kill-{kill:02d}-rerun.log")
        got = lakehouse_checksums(spark, str(root))
        wrong = sorted(t for t in expected.keys() | got.keys() if expected.get(t) != got.get(t))
        failures += bool(wrong)
        detail = "ok" if not wrong else "DIFFERS: " + ", ".join(
            f"{t} rows {expected.get(t, (None,))[0]} -> {got.get(t, (None,))[0]}" for t in wrong)
        print(f"kill {kill + 1:2d}/{args.kills} at {delay:5.1f} s  [{where}]  {detail}", flush=True)
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.kills} kills, {failures} with a table that differs from the uninterrupted run")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
