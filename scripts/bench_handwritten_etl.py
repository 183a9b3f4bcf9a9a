"""The flights ETL written by hand in plain PySpark, the way a competent engineer would without a framework:
explicit schemas, CSV -> bronze Delta (with lineage columns) -> silver (the same SQL, deduplicated on the keys)
-> gold (the same feature SQL), one Spark application. No quarantine, expectations, accounting or bookkeeping:
what goldsmith adds on top is what `scripts/bench` measures against it.

    .venv/bin/python scripts/bench_handwritten_etl.py LANDING ROOT   # prints one JSON line of timings
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench_pandas import CHECKSUMS  # the names in order (this script's folder is on sys.path)
from pyspark.sql import functions as F

from goldsmith.session import build_session  # the same session settings and Delta jars as goldsmith's runs

SQL = Path(__file__).resolve().parents[1] / "conf" / "pipelines" / "sql" / "flights"
SOURCES = {
    "flights": "year INT, month INT, day INT, dep_time INT, sched_dep_time INT, dep_delay DOUBLE, arr_time INT, "
    "sched_arr_time INT, arr_delay DOUBLE, carrier STRING, flight INT, tailnum STRING, origin STRING, dest STRING, "
    "air_time DOUBLE, distance DOUBLE, hour INT, minute INT, time_hour TIMESTAMP",
    "weather": "origin STRING, year INT, month INT, day INT, hour INT, temp DOUBLE, dewp DOUBLE, humid DOUBLE, "
    "wind_dir DOUBLE, wind_speed DOUBLE, wind_gust DOUBLE, precip DOUBLE, pressure DOUBLE, visib DOUBLE, "
    "time_hour TIMESTAMP",
    "planes": "tailnum STRING, year INT, type STRING, manufacturer STRING, model STRING, engines INT, seats INT, "
    "speed INT, engine STRING",
    "airports": "faa STRING, name STRING, lat DOUBLE, lon DOUBLE, alt INT, tz DOUBLE, dst STRING, tzone STRING",
    "airlines": "carrier STRING, name STRING",
}
KEYS = {
    "flights": ["year", "month", "day", "carrier", "flight", "origin"], "weather": ["origin", "observed_hour_at"],
    "planes": ["tailnum"], "airports": ["faa"], "airlines": ["carrier"],
}
# The gold SQL computes the rows from :since on (goldsmith's incremental builds); from the start, here.
PARAMS = {"delay_threshold_minutes": 15, "weather_lookback_hours": 3, "outcome_buffer_minutes": 120,
          "since": datetime(1, 1, 1, tzinfo=UTC)}


def main(landing: Path, root: Path) -> dict[str, object]:
    started = time.perf_counter()
    spark = build_session("handwritten-etl", "local[*]")
    timings: dict[str, object] = {"session": time.perf_counter() - started}

    mark = time.perf_counter()
    for name, schema in SOURCES.items():
        raw = (spark.read.schema(schema).option("header", True).option("nullValue", "NA")
               .csv(str(landing / name / "*.csv")))
        bronze = raw.select("*", F.input_file_name().alias("_source_file"),
                            F.current_timestamp().alias("_ingested_at"), F.lit("batch-1").alias("_batch_id"))
        bronze.write.format("delta").mode("overwrite").save(str(root / "bronze" / name))
    timings["ingest"] = time.perf_counter() - mark

    mark = time.perf_counter()
    for layer in ("silver", "gold"):
        spark.sql(f"create database if not exists {layer}")
    for name in SOURCES:
        spark.read.format("delta").load(str(root / "bronze" / name)).createOrReplaceTempView("bronze_batch")
        silver = spark.sql((SQL / "silver" / f"{name}.sql").read_text()).dropDuplicates(KEYS[name])
        silver.write.format("delta").mode("overwrite").save(str(root / "silver" / name))
        spark.sql(f"create table if not exists silver.{name} using delta location '{root / 'silver' / name}'")
    timings["refine"] = time.perf_counter() - mark

    mark = time.perf_counter()
    gold = spark.sql((SQL / "gold" / "flight_features.sql").read_text(), args=PARAMS)
    gold.write.format("delta").mode("overwrite").save(str(root / "gold" / "flight_features"))
    timings["features"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    row = spark.read.format("delta").load(str(root / "gold" / "flight_features")).agg(
        F.count(F.lit(1)), F.sum("route_prior_flights"), F.sum("carrier_prior_flights"), F.count("temp_f"),
        F.sum(F.coalesce(F.col("is_delayed"), F.lit(False)).cast("int")), F.sum("plane_age_years"),
    ).first()
    timings["checksums"] = {k: float(v or 0) for k, v in zip(CHECKSUMS, row, strict=True)}  # type: ignore[arg-type]
    spark.stop()
    return timings


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
