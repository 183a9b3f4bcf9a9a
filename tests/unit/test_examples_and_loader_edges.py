"""Example landing files are rewritten only when they change; loader edge cases give one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldsmith.config import load_pipeline
from goldsmith.errors import ConfigError
from goldsmith.examples import write_landing

REPO = Path(__file__).resolve().parents[2]
FLIGHTS = REPO / "conf/pipelines/flights.yml"


def test_limited_flights_are_not_rewritten_when_unchanged(tmp_path: Path) -> None:
    path = write_landing("flights", tmp_path, limit=10)["flights"]
    lines = path.read_bytes().splitlines()
    assert len(lines) == 11 and lines[0].startswith(b"year,month,day")
    before = path.stat().st_mtime_ns
    write_landing("flights", tmp_path, limit=10)
    assert path.stat().st_mtime_ns == before  # a rewrite would make it a new landing file
    write_landing("flights", tmp_path, limit=12)
    assert len(path.read_bytes().splitlines()) == 13


def test_vars_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="vars: expected a mapping"):
        load_pipeline(FLIGHTS, ["vars=foo"])


def test_set_through_a_list_item_into_a_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_pipeline(FLIGHTS, ["silver.flights.keys.0.x=1"])


def test_an_empty_environment_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDSMITH_ROOT", "")
    assert load_pipeline(FLIGHTS).storage.root == "./lakehouse"


def test_an_empty_root_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"storage\.root"):
        load_pipeline(FLIGHTS, ["storage.root="])


def test_keys_must_be_column_names() -> None:
    with pytest.raises(ConfigError, match="column"):
        load_pipeline(FLIGHTS, ["silver.flights.keys=[year, 'a`b']"])


def test_a_pipeline_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.yml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_pipeline(bad)
