"""How many seeded wrong labels does the label review find on the real reviews?

    .venv/bin/python scripts/measure_label_issues.py [--root /tmp/label-issues] [--share 0.05] [--seed 11]

Builds silver.reviews with the reviews pipeline, flips the sentiment of a seeded share of the reviews to
another class (chosen by the same seed), trains the shipped review_sentiment model with its label review, and
prints the recall (seeded flips found / flips) and precision (flips among the flagged rows). The reviews'
own labels are noisy too (a star rating is not the text's sentiment), so precision is a lower bound.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pyspark.sql import functions as F

from goldsmith.config import load_pipeline
from goldsmith.examples import write_landing
from goldsmith.jobs.pipeline import open_lakehouse, run_pipeline, session_for

CLASSES = ("negative", "neutral", "positive")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/goldsmith-label-issues")
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    write_landing("reviews", root / "landing", None)
    config = load_pipeline(Path("conf/pipelines/reviews.yml"), [f"storage.root={root}"])
    spark = session_for(config)
    run_pipeline(config, ["ingest", "refine"], spark)
    lakehouse = open_lakehouse(spark, config)

    reviews = lakehouse.read("silver", "reviews")
    share = (F.abs(F.xxhash64("review_id", F.lit(args.seed))) % 1_000_000) / 1_000_000.0
    step = F.when((F.abs(F.xxhash64("review_id", F.lit(args.seed + 1))) % 2) == 0, 1).otherwise(2)
    index = F.array_position(F.array(*[F.lit(c) for c in CLASSES]), F.col("sentiment")) - 1
    flipped_label = F.element_at(F.array(*[F.lit(c) for c in CLASSES]), (((index + step) % 3) + 1).cast("int"))
    seeded = reviews.withColumn("_flip", share < args.share).withColumn(
        "sentiment", F.when(F.col("_flip"), flipped_label).otherwise(F.col("sentiment"))
    )
    flips = {r["review_id"] for r in seeded.where("_flip").select("review_id").collect()}
    lakehouse.write(seeded.drop("_flip"), "silver", "reviews", mode="overwrite")

    ctx = run_pipeline(config, ["train"], spark)
    ranked = [r["review_id"] for r in lakehouse.read("gold", "review_sentiment_label_review")
              .orderBy("review_rank").select("review_id").collect()]
    found = flips & set(ranked)
    print(f"reviews {reviews.count()}, seeded flips {len(flips)}, flagged {len(ranked)}, flips found {len(found)}")
    print(f"recall {len(found) / len(flips):.3f}, precision {len(found) / max(len(ranked), 1):.3f} "
          f"(run {ctx.run_id})")
    for top in (25, 50, 100, 200):
        hits = len(flips & set(ranked[:top]))
        print(f"  the {top} most likely wrong: {hits} seeded flips (recall {hits / len(flips):.3f}, "
              f"precision {hits / top:.3f})")


if __name__ == "__main__":
    main()
