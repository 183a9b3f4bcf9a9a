"""The benchmark harness behind `scripts/bench`: the same generated flights data through goldsmith and through
the alternatives, repeated, reported as medians with min and max (markdown and JSON).

    scripts/bench [--scales 1,10,30] [--repeats 3,2,1] [--micro-scales 1] [--work .bench] [--seed 42]

Per scale factor, on the same generated landing files: goldsmith's ETL (ingest, refine, features: wall time,
per stage, records per second, peak memory of the process tree, cold start = process start to the first Delta
commit) and its model stages (train, score); the same ETL written by hand in plain PySpark
(scripts/bench_handwritten_etl.py) and the overhead ratio; the ETL and the five candidate models in pandas +
scikit-learn (scripts/bench_pandas.py) and the ETL in DuckDB (scripts/bench_duckdb.py), whose gold tables
must agree with Spark's (checksums); an incremental run after adding 1% new flights against the full build, as
a new `goldsmith run` and as two more increments run by `goldsmith watch` in one warm application;
and, at --micro-scales, a model per destination airport fitted as the sklearn-udf backend fits them against a
sequential loop (scripts/bench_many_models.py) and batch scoring against one process's `predict_proba`
(scripts/bench_scoring.py). Every figure is measured in this one invocation, on this machine; the JSON is
rewritten after each scale.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGE_DONE = re.compile(r"\[(\w+)\] done in ([0-9.]+) s")


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (the JVM, Python workers), from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo.extend(children.get(current, []))
    return total


class RunFailed(Exception):
    """A measured command exited non-zero (for an alternative, e.g. out of memory, the failure is reported)."""


def measure(command: list[str], first_commit_under: Path | None = None) -> dict[str, object]:
    """Run `command`; its wall time, peak memory, output and (optionally) the time to the first Delta commit."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, first_commit = 0, None
    while process.poll() is None:
        peak = max(peak, tree_rss_bytes(process.pid))
        if first_commit is None and first_commit_under is not None and \
                any(first_commit_under.glob("*/*/_delta_log/00000000000000000000.json")):
            first_commit = time.perf_counter() - started
        time.sleep(0.25)
    out, err = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RunFailed(f"{' '.join(command[:3])} failed ({process.returncode}, peak {peak / 2**30:.1f} GB):\n"
                        f"{(out + err)[-3000:]}")
    return {"wall": wall, "peak_bytes": peak, "first_commit": first_commit, "stdout": out, "stderr": err}


def landing_for(work: Path, scale: int, seed: int) -> Path:
    """Generated once per scale and seed, then reused."""
    landing = work / f"sf{scale}-seed{seed}" / "landing"
    stamp = landing.parent / "complete"
    if not stamp.exists():
        done = subprocess.run([str(BIN / "goldsmith"), "-q", "demo-data", "flights", "--scale", str(scale),
                               "--seed", str(seed), "--dest", str(landing)], cwd=REPO, check=False)
        if done.returncode != 0:
            raise SystemExit("bench: the scale generator failed")
        stamp.write_text("ok")
    return landing


def flight_rows(landing: Path) -> int:
    return sum(sum(1 for _ in f.open()) - 1 for f in (landing / "flights").glob("*.csv"))


def goldsmith_run(landing: Path, root: Path, stages: str) -> dict[str, object]:
    result = measure([str(BIN / "goldsmith"), "run", "conf/pipelines/flights.yml", "--stages", stages,
                      "--set", f"storage.root={root}", "--set", f"vars.landing={landing}"],
                     first_commit_under=root)
    result["stages"] = {m.group(1): float(m.group(2)) for m in STAGE_DONE.finditer(str(result["stderr"]))}
    return result


def goldsmith_etl(landing: Path, root: Path) -> dict[str, object]:
    return goldsmith_run(landing, root, "ingest,refine,features")


def handwritten_etl(landing: Path, root: Path) -> dict[str, object]:
    result, timings = script_result("bench_handwritten_etl.py", landing, root, first_commit_under=root)
    result["stages"] = {k: timings[k] for k in ("ingest", "refine", "features")}
    result["checksums"] = timings["checksums"]
    return result


def single_machine(script: str) -> Callable[[Path, Path], dict[str, object]]:
    def run(landing: Path, root: Path) -> dict[str, object]:
        result, timings = script_result(script, landing, root)
        result["stages"] = {k: timings[k] for k in ("ingest", "refine", "features", "etl")}
        result["checksums"] = timings["checksums"]
        if "model" in timings:
            result["stages"]["train_score"] = timings["train_score"]  # type: ignore[index]
            result["model"] = timings["model"]
        return result
    return run


def script_result(
    script: str, *args: Path, first_commit_under: Path | None = None
) -> tuple[dict[str, object], dict[str, Any]]:
    """Run one of the bench scripts, which print their own timings as a JSON line last."""
    result = measure([sys.executable, f"scripts/{script}", *map(str, args)], first_commit_under)
    timings: dict[str, Any] = json.loads(str(result["stdout"]).strip().splitlines()[-1])
    return result, timings


def add_one_percent(landing: Path, scale: int, seed: int, part: int = 0) -> int:
    """A new landing file: 1% of the flights (slice `part` of them), from the year after the last one (new
    keys, later than every flight already landed)."""
    from goldsmith.scale import read_year, scaled_copy  # the generator's own copy of a year

    base = read_year()
    rows = max(1, round(0.01 * len(base) * scale))
    extra = scaled_copy(base, scale, seed).iloc[part * rows:(part + 1) * rows]
    suffix = "" if part == 0 else str(part)
    extra.to_csv(landing / "flights" / f"flights_{2013 + scale}_increment{suffix}.csv", index=False, na_rep="NA")
    return len(extra)


RUN_DONE = re.compile(r"run \S+? (?:finished in ([0-9.]+) s|nothing new, no table changed \(([0-9.]+) s\))")


def watched_increments(landing: Path, root: Path, scale: int, seed: int, increments: int) -> list[dict[str, Any]]:
    """`goldsmith watch` on an existing lakehouse: its first run finds nothing new, then each 1% increment is
    added once the watcher waits, and run in the same (warm) application; each run's time from its log."""
    command = [str(BIN / "goldsmith"), "watch", "conf/pipelines/flights.yml", "--stages", "ingest,refine,features",
               "--interval", "1", "--max-runs", str(1 + increments),
               "--set", f"storage.root={root}", "--set", f"vars.landing={landing}"]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    assert process.stderr is not None
    runs: list[dict[str, Any]] = []
    stages: dict[str, float] = {}
    added, log = 0, []
    for line in process.stderr:
        log.append(line)
        if (done := STAGE_DONE.search(line)):
            stages[done.group(1)] = float(done.group(2))
        elif (finished := RUN_DONE.search(line)):
            runs.append({"added_flights": added, "wall_s": float(finished.group(1) or finished.group(2)),
                         "stages_s": stages})
            stages, added = {}, 0
        elif "waiting for new landing files" in line:
            added = add_one_percent(landing, scale, seed, part=len(runs))
            print(f"bench: SF{scale} watch: +{added:,} flights", file=sys.stderr, flush=True)
    if process.wait() != 0 or len(runs) != 1 + increments:
        raise SystemExit(f"bench: goldsmith watch failed ({process.returncode}):\n{''.join(log)[-3000:]}")
    return runs[1:]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(stat: dict[str, float], unit: str = "s", digits: int = 1) -> str:
    if stat["min"] == stat["max"]:
        return f"{stat['median']:,.{digits}f} {unit}".strip()
    return f"{stat['median']:,.{digits}f} {unit} ({stat['min']:,.{digits}f}-{stat['max']:,.{digits}f})"


def per_scale(values: str, scales: list[int], name: str) -> dict[int, int]:
    """`3` for every scale, or one value per scale: `3,2,1`."""
    items = [int(v) for v in values.split(",")]
    if len(items) == 1:
        items = items * len(scales)
    if len(items) != len(scales):
        raise SystemExit(f"bench: --{name} takes one value or one per scale ({len(scales)})")
    return dict(zip(scales, items, strict=True))


IMPLEMENTATIONS: dict[str, Callable[[Path, Path], dict[str, object]]] = {
    "goldsmith": goldsmith_etl,
    "handwritten": handwritten_etl,
    "pandas": single_machine("bench_pandas.py"),
    "duckdb": single_machine("bench_duckdb.py"),
}


def bench_scale(args: argparse.Namespace, scale: int, repeats: int, micro: bool) -> dict[str, Any]:
    """Every measure at one scale factor."""
    landing = landing_for(args.work, scale, args.seed)
    n = flight_rows(landing)
    base = args.work / f"sf{scale}-seed{args.seed}"
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in IMPLEMENTATIONS}
    models: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    for repeat in range(repeats):
        for name, fn in IMPLEMENTATIONS.items():
            root = base / f"{name}-{repeat}"
            subprocess.run(["rm", "-rf", str(root)], check=True)
            print(f"bench: SF{scale} {name}, run {repeat + 1}/{repeats}", file=sys.stderr, flush=True)
            try:
                runs[name].append(fn(landing, root))
            except RunFailed as exc:
                if name == "goldsmith":
                    raise SystemExit(f"bench: {exc}") from None
                failures.setdefault(name, str(exc).splitlines()[0] + " " + str(exc)[-300:].replace("\n", " "))
                print(f"bench: SF{scale} {name} failed: {failures[name]}", file=sys.stderr, flush=True)
                continue
            if name == "goldsmith":  # the model stages, in a second application on the same tables
                models.append(goldsmith_run(landing, root, "train,score"))
    out: dict[str, Any] = {"flights": n, "repeats": repeats, "failures": failures}
    for name, results in runs.items():
        if not results:
            out[name] = {"failed": failures[name]}
            continue
        out[name] = {
            "wall_s": summary([float(r["wall"]) for r in results]),
            "stages_s": {s: summary([float(r["stages"][s]) for r in results]) for s in results[0]["stages"]},
            "peak_memory_gb": summary([float(r["peak_bytes"]) / 2**30 for r in results]),
            "checksums": results[0].get("checksums"), "model": results[0].get("model"),
        }
    out["goldsmith"]["records_per_s"] = n / out["goldsmith"]["wall_s"]["median"]
    out["goldsmith"]["cold_start_s"] = summary(
        [float(r["first_commit"]) for r in runs["goldsmith"] if r["first_commit"] is not None])
    out["goldsmith_models"] = {
        "wall_s": summary([float(r["wall"]) for r in models]),
        "stages_s": {s: summary([float(r["stages"][s]) for r in models]) for s in ("train", "score")},
        "peak_memory_gb": summary([float(r["peak_bytes"]) / 2**30 for r in models]),
    }
    if runs["handwritten"] and len(runs["handwritten"]) == len(runs["goldsmith"]):
        out["overhead_ratio"] = summary([float(g["wall"]) / float(h["wall"])
                                         for g, h in zip(runs["goldsmith"], runs["handwritten"], strict=True)])
    sums = {name: out[name]["checksums"] for name in ("handwritten", "pandas", "duckdb") if runs[name]}
    out["gold_tables_agree"] = all(v == sums["handwritten"] for v in sums.values())
    if not out["gold_tables_agree"]:
        print(f"bench: SF{scale}: the gold tables differ: {sums}", file=sys.stderr)

    last = base / f"goldsmith-{repeats - 1}"
    if micro:
        print(f"bench: SF{scale} many models (one per destination), {repeats} runs", file=sys.stderr, flush=True)
        fits = [script_result("bench_many_models.py", last)[1] for _ in range(repeats)]
        out["many_models"] = {"groups": fits[0]["groups"], "rows": fits[0]["rows"],
                              **{k: summary([f[k] for f in fits]) for k in
                                 ("spark_first_seconds", "spark_seconds", "loop_seconds", "loop_one_thread_seconds",
                                  "speedup", "speedup_first", "speedup_one_thread")}}
        print(f"bench: SF{scale} batch scoring, {repeats} runs", file=sys.stderr, flush=True)
        scored = [script_result("bench_scoring.py", last)[1] for _ in range(repeats)]
        out["scoring"] = {"rows": scored[0]["rows"], **{k: summary([s[k] for s in scored]) for k in
                          ("spark_rows_per_s", "single_process_rows_per_s", "single_process_load_seconds")}}

    # Incremental: 1% new flights into the last goldsmith lakehouse, against its full build above: first as a
    # new `goldsmith run` (a cold JVM), then two more 1% increments under `goldsmith watch` (a warm one).
    added = add_one_percent(landing, scale, args.seed)
    full = float(runs["goldsmith"][-1]["wall"])  # type: ignore[arg-type]
    try:
        print(f"bench: SF{scale} incremental run (+{added:,} flights)", file=sys.stderr, flush=True)
        incremental = goldsmith_etl(landing, last)
        print(f"bench: SF{scale} incremental runs under goldsmith watch", file=sys.stderr, flush=True)
        watched = watched_increments(landing, last, scale, args.seed, increments=2)
    finally:
        for extra in (landing / "flights").glob("*_increment*.csv"):
            extra.unlink()
    out["incremental"] = {"added_flights": added, "wall_s": incremental["wall"], "stages_s": incremental["stages"],
                          "ratio_to_full": float(incremental["wall"]) / full}  # type: ignore[arg-type]
    out["incremental_watch"] = [{**run, "ratio_to_full": run["wall_s"] / full} for run in watched]
    return out


def table(results: dict[int, dict[str, Any]]) -> str:
    """The markdown table: one column per scale factor."""
    scales = sorted(results)
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("flights", lambda r: f"{r['flights']:,}"),
        ("runs (median, min-max)", lambda r: str(r["repeats"])),
        ("**goldsmith ETL** (ingest, refine, features), wall", lambda r: fmt(r["goldsmith"]["wall_s"])),
        ("ingest / refine / features", lambda r: " / ".join(
            f"{r['goldsmith']['stages_s'][s]['median']:.1f}" for s in ("ingest", "refine", "features")) + " s"),
        ("records per second", lambda r: f"{r['goldsmith']['records_per_s']:,.0f}"),
        ("peak memory (driver JVM + Python workers)", lambda r: fmt(r["goldsmith"]["peak_memory_gb"], "GB")),
        ("cold start: process start to first Delta commit", lambda r: fmt(r["goldsmith"]["cold_start_s"])),
        ("goldsmith train + score (second application), wall", lambda r: fmt(r["goldsmith_models"]["wall_s"])),
        ("train / score", lambda r: " / ".join(
            f"{r['goldsmith_models']['stages_s'][s]['median']:.1f}" for s in ("train", "score")) + " s"),
        ("hand-written PySpark ETL, wall", lambda r: fmt(r["handwritten"]["wall_s"])),
        ("ingest / refine / features", lambda r: " / ".join(
            f"{r['handwritten']['stages_s'][s]['median']:.1f}" for s in ("ingest", "refine", "features")) + " s"),
        ("**overhead: goldsmith / hand-written** (target <= 1.10 at SF10)", lambda r: fmt(r["overhead_ratio"], "", 2)),
        ("pandas ETL (in process) / + five models and scoring", lambda r: (
            f"{r['pandas']['stages_s']['etl']['median']:.1f} s / "
            f"{r['pandas']['stages_s']['train_score']['median']:.1f} s")),
        ("pandas process wall, peak memory", lambda r: (
            f"{fmt(r['pandas']['wall_s'])}, {r['pandas']['peak_memory_gb']['median']:.1f} GB")),
        ("DuckDB ETL (in process), peak memory", lambda r: (
            f"{fmt(r['duckdb']['stages_s']['etl'])}, {r['duckdb']['peak_memory_gb']['median']:.1f} GB")),
        ("goldsmith ETL / DuckDB ETL, / pandas ETL", lambda r: (
            f"{r['goldsmith']['wall_s']['median'] / r['duckdb']['stages_s']['etl']['median']:.1f}x, "
            f"{r['goldsmith']['wall_s']['median'] / r['pandas']['stages_s']['etl']['median']:.1f}x")),
        ("gold table checksums equal (Spark, pandas, DuckDB)", lambda r: "yes" if r["gold_tables_agree"] else "NO"),
        ("**incremental +1% as a new `goldsmith run` / full**", lambda r: (
            f"**{r['incremental']['ratio_to_full']:.2f}** ({r['incremental']['wall_s']:.1f} s: " + ", ".join(
                f"{k} {v:.1f}" for k, v in r["incremental"]["stages_s"].items()) + ")")),
        ("**incremental +1% under `goldsmith watch` / full** (target <= 0.20 at SF10; 2 increments)",
         lambda r: ", ".join(
            f"**{w['ratio_to_full']:.2f}** ({w['wall_s']:.1f} s: " + ", ".join(
                f"{k} {v:.1f}" for k, v in w["stages_s"].items()) + ")" for w in r["incremental_watch"])),
        ("**many models: loop / sklearn-udf** (a model per destination; target >= 1.6)", lambda r: (
            f"**{r['many_models']['speedup']['median']:.2f}x** ({r['many_models']['groups']} groups: "
            f"{r['many_models']['loop_seconds']['median']:.1f} s vs "
            f"{r['many_models']['spark_seconds']['median']:.1f} s)"
            if "many_models" in r else "-")),
        ("... the first fit of an application (Python workers start)", lambda r: (
            f"{r['many_models']['speedup_first']['median']:.2f}x "
            f"({r['many_models']['spark_first_seconds']['median']:.1f} s)" if "many_models" in r else "-")),
        ("... against a one-thread loop", lambda r: (
            f"{r['many_models']['speedup_one_thread']['median']:.2f}x "
            f"({r['many_models']['loop_one_thread_seconds']['median']:.1f} s)" if "many_models" in r else "-")),
        ("scoring rows/s: Spark into Delta / one process", lambda r: (
            f"{r['scoring']['spark_rows_per_s']['median']:,.0f} / "
            f"{r['scoring']['single_process_rows_per_s']['median']:,.0f}" if "scoring" in r else "-")),
    ]
    first = results[scales[0]]
    if len(scales) > 1:
        rows.append(("records/s relative to SF" + str(scales[0]) + " (target >= 0.8 at SF30)", lambda r: (
            f"{r['goldsmith']['records_per_s'] / first['goldsmith']['records_per_s']:.2f}")))
    lines = ["| measure | " + " | ".join(f"SF{s}" for s in scales) + " |",
             "|---|" + "---|" * len(scales)]
    rows.append(("failed runs", lambda r: "; ".join(f"{k}: {v[:120]}" for k, v in r["failures"].items()) or "none"))

    def safe(cell: Callable[[dict[str, Any]], str], result: dict[str, Any]) -> str:
        try:
            return cell(result)
        except (KeyError, TypeError, ZeroDivisionError):  # a failed alternative has no figures
            return "failed" if result["failures"] else "-"

    lines += [f"| {label} | " + " | ".join(safe(cell, results[s]) for s in scales) + " |" for label, cell in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1", help="comma-separated scale factors (default 1)")
    parser.add_argument("--repeats", default="3", help="runs per scale: one value, or one per scale (3,2,1)")
    parser.add_argument("--micro-scales", default="1",
                        help="scales at which many-model training and batch scoring are measured (default 1)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, default=REPO / ".bench")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    repeats = per_scale(args.repeats, scales, "repeats")
    micro = {int(s) for s in args.micro_scales.split(",") if s}
    out = args.work / "results.json"
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") *
                                                                os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                    "python": platform.python_version()},
        "seed": args.seed, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "scales": {},
    }
    for scale in scales:
        results["scales"][scale] = bench_scale(args, scale, repeats[scale], scale in micro)
        out.write_text(json.dumps(results, indent=2, default=str))  # kept after every scale
        print(table(results["scales"]), flush=True)
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
