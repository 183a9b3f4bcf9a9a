"""The benchmark harness behind `scripts/bench`: the same generated flights data through goldsmith and through
the alternatives, repeated, reported as medians with min and max (markdown and JSON).

    scripts/bench [--scales 1,10] [--repeats 3] [--work .bench] [--seed 42]

Per scale factor: goldsmith's ETL (ingest, refine, features: wall time, per stage, records per second, peak
memory of the process tree, cold start = process start to the first Delta commit), the same ETL written by
hand in plain PySpark (scripts/bench_handwritten_etl.py) and their ratio, a model per destination airport
fitted as goldsmith's sklearn-udf backend fits them against a sequential loop (scripts/bench_many_models.py),
batch scoring with Spark against one process's `predict_proba` (scripts/bench_scoring.py), and an incremental
run after adding 1% new landing data against a full rebuild. Every figure is measured in this one invocation,
on this machine.
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
from pathlib import Path

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
        raise SystemExit(f"bench: {' '.join(command[:3])} failed ({process.returncode}):\n{(out + err)[-3000:]}")
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


def goldsmith_etl(landing: Path, root: Path) -> dict[str, object]:
    result = measure([str(BIN / "goldsmith"), "run", "conf/pipelines/flights.yml", "--stages",
                      "ingest,refine,features", "--set", f"storage.root={root}", "--set", f"vars.landing={landing}"],
                     first_commit_under=root)
    result["stages"] = {m.group(1): float(m.group(2)) for m in STAGE_DONE.finditer(str(result["stderr"]))}
    return result


def handwritten_etl(landing: Path, root: Path) -> dict[str, object]:
    result, timings = script_result("bench_handwritten_etl.py", landing, root, first_commit_under=root)
    result["stages"] = {k: timings[k] for k in ("ingest", "refine", "features")}
    return result


def script_result(
    script: str, *args: Path, first_commit_under: Path | None = None
) -> tuple[dict[str, object], dict[str, float]]:
    """Run one of the bench scripts, which print their own timings as a JSON line last."""
    result = measure([sys.executable, f"scripts/{script}", *map(str, args)], first_commit_under)
    timings: dict[str, float] = json.loads(str(result["stdout"]).strip().splitlines()[-1])
    return result, timings


def add_one_percent(landing: Path, scale: int, seed: int) -> int:
    """New landing file(s): 1% of the flights, from the year after the last one (new keys)."""
    from goldsmith.scale import read_year, scaled_copy  # the generator's own copy of a year

    base = read_year()
    rows = max(1, round(0.01 * len(base) * scale))
    extra = scaled_copy(base, scale, seed).head(rows)
    extra.to_csv(landing / "flights" / f"flights_{2013 + scale}_increment.csv", index=False, na_rep="NA")
    return rows


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(stat: dict[str, float], unit: str = "s") -> str:
    return f"{stat['median']:.1f} {unit} ({stat['min']:.1f}-{stat['max']:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1", help="comma-separated scale factors (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, default=REPO / ".bench")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    results: dict[str, object] = {
        "machine": {"cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") *
                                                                os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                    "python": platform.python_version()},
        "repeats": args.repeats, "seed": args.seed, "scales": {},
    }
    rows_md = []
    for scale in scales:
        landing = landing_for(args.work, scale, args.seed)
        n = flight_rows(landing)
        runs: dict[str, list[dict[str, object]]] = {"goldsmith": [], "handwritten": []}
        for repeat in range(args.repeats):
            for name, fn in (("goldsmith", goldsmith_etl), ("handwritten", handwritten_etl)):
                root = args.work / f"sf{scale}-seed{args.seed}" / f"{name}-{repeat}"
                subprocess.run(["rm", "-rf", str(root)], check=True)
                print(f"bench: SF{scale} {name} ETL, run {repeat + 1}/{args.repeats}", file=sys.stderr, flush=True)
                runs[name].append(fn(landing, root))
        walls = {k: [float(r["wall"]) for r in v] for k, v in runs.items()}  # type: ignore[arg-type]
        stats = {k: summary(v) for k, v in walls.items()}
        ratio = [g / h for g, h in zip(walls["goldsmith"], walls["handwritten"], strict=True)]
        peak = summary([float(r["peak_bytes"]) / 2**30 for r in runs["goldsmith"]])  # type: ignore[arg-type]
        cold = summary([float(r["first_commit"]) for r in runs["goldsmith"] if r["first_commit"] is not None])
        stages = {s: summary([float(r["stages"][s]) for r in runs["goldsmith"]])  # type: ignore[index]
                  for s in ("ingest", "refine", "features")}
        hand_stages = {s: summary([float(r["stages"][s]) for r in runs["handwritten"]])  # type: ignore[index]
                       for s in ("ingest", "refine", "features")}
        last = args.work / f"sf{scale}-seed{args.seed}" / f"goldsmith-{args.repeats - 1}"
        print(f"bench: SF{scale} many models (one per destination), {args.repeats} runs", file=sys.stderr, flush=True)
        models = [script_result("bench_many_models.py", last)[1] for _ in range(args.repeats)]
        speedup = summary([m["speedup"] for m in models])
        print(f"bench: SF{scale} batch scoring, {args.repeats} runs", file=sys.stderr, flush=True)
        scored = [script_result("bench_scoring.py", last)[1] for _ in range(args.repeats)]

        # Incremental: 1% new flights into the last goldsmith lakehouse, against the full rebuild above.
        root = last
        added = add_one_percent(landing, scale, args.seed)
        try:
            print(f"bench: SF{scale} incremental run (+{added:,} flights)", file=sys.stderr, flush=True)
            incremental = goldsmith_etl(landing, root)
        finally:
            for extra in (landing / "flights").glob("*_increment.csv"):
                extra.unlink()
        inc_ratio = float(incremental["wall"]) / stats["goldsmith"]["median"]  # type: ignore[arg-type]
        results["scales"][scale] = {  # type: ignore[index]
            "flights": n, "goldsmith_etl_s": stats["goldsmith"], "handwritten_etl_s": stats["handwritten"],
            "overhead_ratio": summary(ratio), "goldsmith_stages_s": stages, "handwritten_stages_s": hand_stages,
            "many_models": {"groups": models[0]["groups"], "rows": models[0]["rows"],
                            "spark_s": summary([m["spark_seconds"] for m in models]),
                            "loop_s": summary([m["loop_seconds"] for m in models]), "speedup": speedup},
            "scoring": {"rows": scored[0]["rows"],
                        "spark_rows_per_s": summary([s["spark_rows_per_s"] for s in scored]),
                        "single_process_rows_per_s": summary([s["single_process_rows_per_s"] for s in scored]),
                        "single_process_load_s": summary([s["single_process_load_seconds"] for s in scored])},
            "records_per_s": n / stats["goldsmith"]["median"], "peak_memory_gb": peak, "cold_start_s": cold,
            "incremental": {"added_flights": added, "wall_s": incremental["wall"], "ratio_to_full": inc_ratio,
                            "stages": incremental["stages"]},
        }
        rows_md.append(
            f"| SF{scale} | {n:,} | {fmt(stats['goldsmith'])} | "
            + " / ".join(f"{stages[s]['median']:.1f}" for s in ("ingest", "refine", "features"))
            + f" | {n / stats['goldsmith']['median']:,.0f} | {fmt(peak, 'GB')} | {fmt(cold)} | "
            f"{fmt(stats['handwritten'])} | {statistics.median(ratio):.2f} | {inc_ratio:.2f} | "
            f"{models[0]['groups']:.0f}: {speedup['median']:.2f}x ({speedup['min']:.2f}-{speedup['max']:.2f}) | "
            f"{statistics.median(s['spark_rows_per_s'] for s in scored):,.0f} / "
            f"{statistics.median(s['single_process_rows_per_s'] for s in scored):,.0f} |"
        )
    header = ("| scale | flights | goldsmith ETL | ingest / refine / features (s) | records/s | peak memory | "
              "cold start | hand-written PySpark ETL | overhead ratio | incremental (+1%) / full | "
              "models per group: sklearn-udf vs loop | scoring rows/s: Spark / one process |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(header + "\n" + "\n".join(rows_md))
    out = args.work / "results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
