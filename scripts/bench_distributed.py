"""The two distributed PyTorch backends side by side: `torch-distributor` (DDP under Spark's TorchDistributor, local
mode) and `horovod` (`horovod.spark.run`, ranks as Spark tasks) train the same MLP on the flights features with the
shipped time split, with 1 and then 2 processes, in one Spark application (local[2]). For each: the test ROC AUC,
the candidate's training seconds (the ranks' loop, as the backend reports it) and the train stage's wall time
(snapshot, encoder, training, evaluation, MLflow logging and registration).

    .venv/bin/python scripts/bench_distributed.py ROOT [--epochs 5]

ROOT is a lakehouse; without gold.flight_features, the flights demo's ingest, refine and features stages build it
from the example data first (every flight of 2013).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

from goldsmith.config import load_pipeline
from goldsmith.examples import write_landing
from goldsmith.jobs.pipeline import run_pipeline
from goldsmith.jobs.train import TrainOutcome
from goldsmith.session import build_session

REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "conf/pipelines/flights.yml"
SECONDS = re.compile(r"final loss [\d.]+\s+\(([\d.]+) s\)")


class Lines(logging.Handler):
    """Keeps the goldsmith logger's messages."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", default="64,32")
    args = parser.parse_args()
    root = args.root.resolve()
    spark = build_session("goldsmith-bench-distributed", "local[2]")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lines = Lines()
    logging.getLogger("goldsmith").addHandler(lines)
    if not (root / "gold" / "flight_features" / "_delta_log").exists():
        landing = root.parent / f"{root.name}-landing"
        write_landing("flights", landing)
        started = time.perf_counter()
        run_pipeline(load_pipeline(PIPELINE, [f"storage.root={root}", f"vars.landing={landing}"]),
                     ["ingest", "refine", "features"], spark)
        print(f"features built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    results = []
    for backend in ("torch-distributor", "horovod"):
        for processes in (1, 2):
            trainer = (f"{{backend: {backend}, algorithm: mlp, num_processes: {processes}, "
                       f"params: {{epochs: {args.epochs}, hidden: '{args.hidden}', batch_size: 512, lr: 0.001}}}}")
            config = load_pipeline(PIPELINE, [
                f"storage.root={root}", f"models.flight_delay.trainer={trainer}",
                "models.flight_delay.gates.min_improvement=-1"])
            del lines.lines[:]
            started = time.perf_counter()
            ctx = run_pipeline(config, ["train"], spark)
            stage = time.perf_counter() - started
            outcome = next(m for m in ctx.models if isinstance(m, TrainOutcome))
            seconds = [float(m.group(1)) for line in lines.lines if (m := SECONDS.search(line))]
            result = {"backend": backend, "processes": processes, "train_rows": outcome.rows.get("train"),
                      "test_rows": outcome.rows.get("test"), "test_roc_auc": round(outcome.test_metrics["roc_auc"], 4),
                      "train_seconds": seconds[0] if seconds else None, "stage_seconds": round(stage, 1)}
            print(json.dumps(result), flush=True)
            results.append(result)
    print("\n| backend | processes | test ROC AUC | training (s) | train stage (s) |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['processes']} | {r['test_roc_auc']:.4f} | {r['train_seconds']} | "
              f"{r['stage_seconds']} |")


if __name__ == "__main__":
    main()
