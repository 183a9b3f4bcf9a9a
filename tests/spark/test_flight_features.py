"""gold.flight_features on hand-made flights: point-in-time weather, leak-free delay rates, labels.

Expected values are worked out from the definitions in plain Python (handmade_flights.py), not by the SQL under
test.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from handmade_flights import FLIGHTS, Handmade, expected_rows


@pytest.fixture(scope="module")
def features(handmade: Handmade) -> dict[int, dict]:
    return {r["flight"]: r for r in handmade.gold.values()}


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
