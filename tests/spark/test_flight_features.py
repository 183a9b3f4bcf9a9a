"""gold.flight_features on hand-made flights: point-in-time weather, leak-free delay rates, labels.

Expected values are worked out here from the definitions in plain Python, not by the SQL under test.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from goldsmith.config import load_pipeline
from goldsmith.jobs.pipeline import run_pipeline

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


@pytest.fixture(scope="module")
def features(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory, repo: Path) -> dict[int, dict]:
    tmp = tmp_path_factory.mktemp("flights")
    write_landing(tmp / "landing")
    config = load_pipeline(
        repo / "conf/pipelines/flights.yml",
        [f"storage.root={tmp / 'lake'}", f"vars.landing={tmp / 'landing'}"],
    )
    run_pipeline(config, ["ingest", "refine", "features"], spark)
    rows = spark.sql("select * from gold.flight_features").collect()
    return {r["flight"]: r.asDict() for r in rows}


def test_one_row_per_flight(features: dict[int, dict]) -> None:
    assert sorted(features) == [f[1] for f in FLIGHTS]


@pytest.mark.parametrize("column", [
    "temp_f", "route_prior_flights", "route_delay_rate", "carrier_prior_flights", "carrier_delay_rate",
    "is_delayed", "is_cancelled", "plane_age_years", "sched_dep_weekday",
])
def test_feature_matches_its_definition(features: dict[int, dict], column: str) -> None:
    expected = expected_rows()
    got = {f: features[f][column] for f in features}
    want = {f: expected[f][column] for f in expected}
    assert got == pytest.approx(want) if column.endswith("_rate") else got == want


def test_hand_worked_cases(features: dict[int, dict]) -> None:
    # A 10:15 departure uses the 09:00 row (reported by 09:51), never the 11:00 one; a 17:00 departure
    # cannot use the 17:00 row (reported at 17:51) and has nothing else within 3 h; neither has 23:00.
    assert features[1]["temp_f"] == 9.0
    assert features[1]["weather_observed_at"] == datetime(2013, 1, 1, 9)
    assert features[2]["temp_f"] is None
    assert features[4]["temp_f"] is None
    # Outcomes are known at: flight 1 10:15 + (2 + 227 + 120) min = 16:04, flight 3 12:30 + 220 min = 16:10,
    # flight 2 17:00 + 350 min = 22:50. Flight 3 (12:30) sees none; flight 2 (17:00) sees 1 (on time) and
    # 3 (delayed); flight 4 (23:00) sees 1, 3 and 2.
    assert features[3]["route_prior_flights"] == 0 and features[3]["route_delay_rate"] is None
    assert features[2]["route_prior_flights"] == 2 and features[2]["route_delay_rate"] == 0.5
    assert features[4]["route_prior_flights"] == 3
    assert features[4]["route_delay_rate"] == pytest.approx(2 / 3)
    # Cancelled and diverted flights stay, without a label.
    assert features[5]["is_cancelled"] and features[5]["is_delayed"] is None
    assert features[6]["is_diverted"] and features[6]["is_delayed"] is None
