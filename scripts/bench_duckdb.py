"""The flights ETL in DuckDB, in one process: what a user with one machine and SQL would pick.

The same steps and definitions as goldsmith's pipeline (landing CSVs with explicit types -> bronze with lineage
-> silver typed, renamed, deduplicated -> gold.flight_features, the gold SQL translated to DuckDB's dialect),
stored as tables in one DuckDB database file. Prints one JSON line: stage timings and the gold table's
checksums (compared with Spark's by scripts/bench.py).

    .venv/bin/python scripts/bench_duckdb.py LANDING OUT
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import duckdb
from bench_pandas import CHECKSUMS  # the names in order (this script's folder is on sys.path)

COLUMNS = {
    "flights": "year INT, month INT, day INT, dep_time INT, sched_dep_time INT, dep_delay DOUBLE, arr_time INT, "
    "sched_arr_time INT, arr_delay DOUBLE, carrier VARCHAR, flight INT, tailnum VARCHAR, origin VARCHAR, "
    "dest VARCHAR, air_time DOUBLE, distance DOUBLE, hour INT, minute INT, time_hour TIMESTAMPTZ",
    "weather": "origin VARCHAR, year INT, month INT, day INT, hour INT, temp DOUBLE, dewp DOUBLE, humid DOUBLE, "
    "wind_dir DOUBLE, wind_speed DOUBLE, wind_gust DOUBLE, precip DOUBLE, pressure DOUBLE, visib DOUBLE, "
    "time_hour TIMESTAMPTZ",
    "planes": "tailnum VARCHAR, year INT, type VARCHAR, manufacturer VARCHAR, model VARCHAR, engines INT, "
    "seats INT, speed INT, engine VARCHAR",
    "airports": "faa VARCHAR, name VARCHAR, lat DOUBLE, lon DOUBLE, alt INT, tz DOUBLE, dst VARCHAR, tzone VARCHAR",
    "airlines": "carrier VARCHAR, name VARCHAR",
}
KEYS = {"flights": "year, month, day, carrier, flight, origin", "weather": "origin, observed_hour_at",
        "planes": "tailnum", "airports": "faa", "airlines": "carrier"}

SILVER = {
    "flights": """
        select year, month, day, carrier, flight, origin, dest, tailnum,
               try_cast(format('{:04d}-{:02d}-{:02d}', year, month, day) as date) as flight_date,
               hour as sched_dep_hour, time_hour::timestamp as sched_dep_hour_at,
               time_hour::timestamp + to_minutes(coalesce(minute, 0)) as sched_dep_at,
               dep_delay as dep_delay_minutes, arr_delay as arr_delay_minutes, air_time as air_time_minutes,
               distance as distance_miles, dep_time is null as is_cancelled,
               dep_time is not null and arr_delay is null as is_diverted, _source_file, _ingested_at, _batch_id
        from bronze_flights""",
    "weather": """
        select origin, date_trunc('hour', time_hour::timestamp) as observed_hour_at, temp as temp_f,
               dewp as dewpoint_f, humid as humidity_pct, wind_dir as wind_dir_degrees,
               wind_speed as wind_speed_mph, wind_gust as wind_gust_mph, precip as precip_inches,
               pressure as pressure_mb, visib as visibility_miles, _source_file, _ingested_at, _batch_id
        from bronze_weather""",
    "planes": """
        select upper(trim(tailnum)) as tailnum, year as manufactured_year, _source_file, _ingested_at, _batch_id
        from bronze_planes""",
    "airports": "select * from bronze_airports",
    "airlines": "select * from bronze_airlines",
}
# The expectations with action `drop` in flights.yml.
SILVER_WHERE = {
    "flights": "flight_date is not null and sched_dep_hour between 0 and 23 and sched_dep_at is not null "
    "and regexp_full_match(origin, '[A-Z]{3}') and regexp_full_match(dest, '[A-Z]{3}')",
    "weather": "observed_hour_at is not null",
}

GOLD = """
create or replace table gold_flight_features as
with flights as (
    select concat_ws('-', year, month, day, carrier, flight, origin) as flight_id, *,
           case when is_cancelled or arr_delay_minutes is null then null else arr_delay_minutes >= 15 end
               as is_delayed
    from silver_flights
),
outcomes as (
    select origin, dest, carrier, is_delayed,
           sched_dep_at + to_minutes(cast(greatest(coalesce(dep_delay_minutes, 0), 0)
                                          + coalesce(air_time_minutes, 0) + 120 as integer)) as outcome_known_at
    from flights
),
events as (
    select flight_id, origin, dest, carrier, sched_dep_at as event_at, 0 as event_order, 0 as outcome_count,
           0 as delayed_count
    from flights
    union all
    select null, origin, dest, carrier, outcome_known_at, 1, 1, cast(is_delayed as integer)
    from outcomes where is_delayed is not null
),
route_history as (
    select flight_id, sum(outcome_count) over w as route_prior_flights,
           sum(delayed_count) over w as route_prior_delayed
    from events
    window w as (partition by origin, dest order by event_at, event_order
                 rows between unbounded preceding and current row)
),
carrier_history as (
    select flight_id, sum(outcome_count) over w as carrier_prior_flights,
           sum(delayed_count) over w as carrier_prior_delayed
    from events
    window w as (partition by carrier order by event_at, event_order
                 rows between unbounded preceding and current row)
),
flight_hours as (
    select f.flight_id, f.origin, f.sched_dep_hour_at - to_hours(h.hours_before) as candidate_hour_at
    from flights as f, (select unnest(range(1, 4)) as hours_before) as h
),
latest_weather as (
    select h.flight_id, w.*
    from flight_hours as h
    join silver_weather as w on w.origin = h.origin and w.observed_hour_at = h.candidate_hour_at
    qualify row_number() over (partition by h.flight_id order by w.observed_hour_at desc) = 1
)
select f.flight_id, f.year, f.month, f.day, f.carrier, f.flight, f.origin, f.dest, f.tailnum, f.flight_date,
       f.sched_dep_at, f.sched_dep_hour, dayofweek(f.flight_date) + 1 as sched_dep_weekday, f.distance_miles,
       f.year - p.manufactured_year as plane_age_years, w.observed_hour_at as weather_observed_at, w.temp_f,
       w.dewpoint_f, w.humidity_pct, w.wind_dir_degrees, w.wind_speed_mph, w.wind_gust_mph, w.precip_inches,
       w.pressure_mb, w.visibility_miles, r.route_prior_flights,
       r.route_prior_delayed / nullif(r.route_prior_flights, 0) as route_delay_rate, c.carrier_prior_flights,
       c.carrier_prior_delayed / nullif(c.carrier_prior_flights, 0) as carrier_delay_rate, f.is_cancelled,
       f.is_diverted, f.is_delayed
from flights as f
left join latest_weather as w on w.flight_id = f.flight_id
left join silver_planes as p on p.tailnum = f.tailnum
left join route_history as r on r.flight_id = f.flight_id
left join carrier_history as c on c.flight_id = f.flight_id
"""


def main(landing: Path, out: Path) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    database = out / "flights.duckdb"
    database.unlink(missing_ok=True)
    started = time.perf_counter()
    con = duckdb.connect(str(database), config={"threads": os.cpu_count() or 1})
    con.execute("set TimeZone = 'UTC'")
    timings: dict[str, object] = {}
    for name, columns in COLUMNS.items():
        spec = ", ".join(f"'{c.split()[0]}': '{' '.join(c.split()[1:])}'" for c in columns.split(", "))
        con.execute(f"""
            create table bronze_{name} as
            select * exclude (filename), filename as _source_file, now()::timestamp as _ingested_at,
                   'batch-1' as _batch_id
            from read_csv('{landing / name}/*.csv', header = true, nullstr = 'NA', columns = {{{spec}}},
                          filename = true)""")
    timings["ingest"] = time.perf_counter() - started
    mark = time.perf_counter()
    for name, query in SILVER.items():
        where = SILVER_WHERE.get(name, "true")
        con.execute(f"""
            create table silver_{name} as
            select * from ({query}) where {where}
            qualify row_number() over (partition by {KEYS[name]} order by _ingested_at desc, _source_file desc) = 1
        """)
    timings["refine"] = time.perf_counter() - mark
    mark = time.perf_counter()
    con.execute(GOLD)
    timings["features"] = time.perf_counter() - mark
    timings["etl"] = time.perf_counter() - started
    row = con.execute("""
        select count(*), sum(route_prior_flights), sum(carrier_prior_flights), count(temp_f),
               sum(cast(coalesce(is_delayed, false) as integer)), sum(plane_age_years)
        from gold_flight_features""").fetchone()
    assert row is not None
    timings["checksums"] = {k: float(v or 0) for k, v in zip(CHECKSUMS, row, strict=True)}
    con.close()
    return timings


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
