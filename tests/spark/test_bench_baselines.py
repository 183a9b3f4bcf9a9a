"""The benchmark's single-machine baselines compute the same gold table as goldsmith.

scripts/bench compares goldsmith with pandas + scikit-learn and with DuckDB; the comparison means something only
if they build the same features. On the hand-made flights (handmade_flights.py) (point-in-time weather,
delay rates with ties, a cancelled and a diverted flight), every feature of every row must agree.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
from handmade_flights import Handmade

SCRIPTS = Path(__file__).parents[2] / "scripts"
COMPARED = ["route_prior_flights", "route_delay_rate", "carrier_prior_flights", "carrier_delay_rate", "temp_f",
            "plane_age_years", "sched_dep_weekday", "is_delayed", "is_cancelled"]


def same(a: Any, b: Any) -> bool:
    missing = [v is None or (isinstance(v, float) and math.isnan(v)) or str(v) == "<NA>" for v in (a, b)]
    if any(missing):
        return all(missing)
    return math.isclose(float(a), float(b), rel_tol=1e-12)


@pytest.fixture(scope="module")
def built(handmade: Handmade, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("baselines")
    landing, gold = handmade.landing, handmade.gold
    sys.path.insert(0, str(SCRIPTS))
    try:
        import bench_duckdb
        import bench_pandas
    finally:
        sys.path.remove(str(SCRIPTS))
    duck = bench_duckdb.main(landing, tmp / "duckdb")
    (tmp / "pandas").mkdir()
    silver = bench_pandas.refine(bench_pandas.ingest(landing, tmp / "pandas"), tmp / "pandas")
    pandas_gold = bench_pandas.features(silver, tmp / "pandas")
    import duckdb

    with duckdb.connect(str(tmp / "duckdb" / "flights.duckdb"), read_only=True) as con:
        names = [d[0] for d in con.execute("select * from gold_flight_features").description]
        duck_rows = {r[0]: dict(zip(names, r, strict=True)) for r in
                     con.execute("select * from gold_flight_features").fetchall()}
    return {"gold": gold, "duckdb": duck_rows, "duckdb_checksums": duck["checksums"],
            "pandas": {r["flight_id"]: r for r in pandas_gold.to_dict("records")},
            "pandas_checksums": bench_pandas.checksums(pandas_gold)}


@pytest.mark.parametrize("baseline", ["pandas", "duckdb"])
def test_baseline_builds_the_same_features(built: dict[str, Any], baseline: str) -> None:
    gold, other = built["gold"], built[baseline]
    assert sorted(other) == sorted(gold)
    differences = [(key, column, gold[key][column], other[key][column])
                   for key in gold for column in COMPARED if not same(gold[key][column], other[key][column])]
    assert differences == []


def test_checksums_agree(built: dict[str, Any]) -> None:
    gold = list(built["gold"].values())
    expected = {"rows": float(len(gold)),
                "route_prior_flights": float(sum(r["route_prior_flights"] for r in gold)),
                "with_weather": float(sum(r["temp_f"] is not None for r in gold)),
                "delayed": float(sum(bool(r["is_delayed"]) for r in gold))}
    for name in ("pandas_checksums", "duckdb_checksums"):
        assert {k: built[name][k] for k in expected} == expected
