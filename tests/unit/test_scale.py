"""The scale generator: SF k is k years of flights whose keys stay unique and whose joins still find rows,
with the real data's gaps in the same places, deterministic per seed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from goldsmith.errors import ConfigError
from goldsmith.scale import _data_dir, write_scaled_flights

KEY = ["year", "month", "day", "carrier", "flight", "origin"]
N = 400


def read_all(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_csv(f, keep_default_na=False, na_values=["NA"]) for f in sorted(folder.glob("*.csv"))])


def real_flights(n: int) -> pd.DataFrame:
    with zipfile.ZipFile(_data_dir() / "flights.csv.zip") as archive, archive.open("flights.csv") as handle:
        return pd.read_csv(handle, nrows=n, keep_default_na=False, na_values=["NA"])


def minutes(hhmm: pd.Series) -> pd.Series:
    return (hhmm // 100) * 60 + hhmm % 100


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("sf3")
    write_scaled_flights(dest, 3, seed=7, limit=N)
    return dest


def test_three_years_with_unique_keys_and_their_own_planes_and_weather(landing: Path) -> None:
    flights = read_all(landing / "flights")
    assert len(flights) == 3 * N and sorted(flights["year"].unique()) == [2013, 2014, 2015]
    assert not flights.duplicated(KEY).any()
    planes, weather = read_all(landing / "planes"), read_all(landing / "weather")
    assert not planes["tailnum"].duplicated().any() and not weather.duplicated(["origin", "time_hour"]).any()
    # Each year's flights find their planes as often as the real year's do (a tail the real table lacks stays
    # missing).
    known = flights["tailnum"].isin(set(planes["tailnum"])).groupby(flights["year"]).sum()
    assert known.nunique() == 1 and known.iloc[0] > N / 2
    hours = set(zip(weather["origin"], weather["time_hour"], strict=True))
    found = sum((o, t) in hours for o, t in zip(flights["origin"], flights["time_hour"], strict=True))
    year0 = flights[flights["year"] == 2013]
    found0 = sum((o, t) in hours for o, t in zip(year0["origin"], year0["time_hour"], strict=True))
    assert found == 3 * found0  # every later year finds its weather exactly as often as the real one


def test_year_zero_is_the_real_data_and_later_years_keep_its_gaps(landing: Path) -> None:
    real = real_flights(N)
    flights = read_all(landing / "flights")
    first = flights[flights["year"] == 2013].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, real, check_dtype=False)
    for year in (2014, 2015):
        copy = flights[flights["year"] == year].reset_index(drop=True)
        assert (copy.isna() == real.isna()).all().all()  # NA, cancelled, missing tails: same rows
        jitter = copy["dep_delay"] - real["dep_delay"]
        assert jitter.abs().max() <= 20 and jitter.std() > 1  # a few minutes, not nothing
        # A departure time moves with its delay: the clock still agrees with schedule + delay.
        gap_real = (minutes(real["dep_time"]) - minutes(real["sched_dep_time"]) - real["dep_delay"]) % 1440
        gap_copy = (minutes(copy["dep_time"]) - minutes(copy["sched_dep_time"]) - copy["dep_delay"]) % 1440
        pd.testing.assert_series_equal(gap_copy.dropna(), gap_real.dropna(), check_dtype=False)


def test_same_seed_same_files_other_seed_other_delays(landing: Path, tmp_path: Path) -> None:
    write_scaled_flights(tmp_path / "again", 3, seed=7, limit=N)
    write_scaled_flights(tmp_path / "other", 3, seed=8, limit=N)
    name = "flights/flights_2015_01.csv"
    assert (tmp_path / "again" / name).read_bytes() == (landing / name).read_bytes()
    assert (tmp_path / "other" / name).read_bytes() != (landing / name).read_bytes()


def test_a_scale_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--scale 0"):
        write_scaled_flights(tmp_path, 0)
