"""Config loading without Spark: the real pipeline files, overrides, overlays and every kind of bad config."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from goldsmith.config.loader import deep_merge, interpolate, load_pipeline, sql_table_refs
from goldsmith.errors import ConfigError

REPO = Path(__file__).parents[2]
FLIGHTS = REPO / "conf" / "pipelines" / "flights.yml"
REVIEWS = REPO / "conf" / "pipelines" / "reviews.yml"
FLIGHT_SOURCES = ["flights", "weather", "planes", "airports", "airlines"]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


GOOD_PIPELINE = """\
name: tiny
sources:
  things:
    format: csv
    path: /landing/things
    schema: id INT, name STRING
silver:
  things:
    source: things
    sql: sql/things.sql
    keys: [id]
gold:
  summary:
    sql: sql/summary.sql
"""


def _tiny(
    tmp_path: Path, pipeline: str = GOOD_PIPELINE, gold_sql: str = "select count(*) n from silver.things"
) -> Path:
    """A small pipeline in tmp_path/pipelines with its own SQL files (no env overlay beside it)."""
    _write(tmp_path / "pipelines" / "sql" / "things.sql", "select id, name from bronze.things")
    _write(tmp_path / "pipelines" / "sql" / "summary.sql", gold_sql)
    return _write(tmp_path / "pipelines" / "tiny.yml", pipeline)


def _error(path: Path, *overrides: str, env: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, overrides, env)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --- the real pipeline files -------------------------------------------------------------------------


def test_flights_loads() -> None:
    config = load_pipeline(FLIGHTS)
    assert config.name == "flights"
    assert sorted(config.sources) == sorted(FLIGHT_SOURCES)
    assert len(config.sources) == 5
    assert config.silver["flights"].keys == ["year", "month", "day", "carrier", "flight", "origin"]
    assert config.gold["flight_features"].params["delay_threshold_minutes"] == 15
    assert config.gold["flight_features"].grain == "silver.flights"


def test_reviews_loads() -> None:
    config = load_pipeline(REVIEWS)
    assert config.name == "reviews"
    assert list(config.sources) == ["reviews"]
    assert config.silver["reviews"].keys == ["review_id"]
    assert config.sources["reviews"].options["sep"] == "\t"
    assert config.sources["reviews"].options["multiLine"] == "true"
    assert config.gold == {}


def test_local_overlay_default_root() -> None:
    config = load_pipeline(FLIGHTS)
    assert config.storage.root == "./lakehouse"
    assert config.vars["landing"] == "./lakehouse/landing"
    assert config.sources["flights"].path == "./lakehouse/landing/flights"
    assert config.sources["airlines"].path == "./lakehouse/landing/airlines"
    assert config.spark.master == "local[*]"


def test_local_overlay_root_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDSMITH_ROOT", "/srv/lake")
    config = load_pipeline(FLIGHTS)
    assert config.storage.root == "/srv/lake"
    assert config.sources["flights"].path == "/srv/lake/landing/flights"


def test_options_become_strings() -> None:
    options = load_pipeline(FLIGHTS).sources["flights"].options
    assert options == {"header": "true", "nullValue": "NA"}


def test_sql_paths_relative_to_pipeline_file() -> None:
    config = load_pipeline(FLIGHTS)
    expected = REPO / "conf" / "pipelines" / "sql" / "flights" / "silver" / "flights.sql"
    assert config.sql_path(config.silver["flights"].sql) == expected.resolve()


# --- --set overrides ---------------------------------------------------------------------------------


def test_set_source_path_changes_only_that_path() -> None:
    config = load_pipeline(FLIGHTS, ["sources.flights.path=/data/in"])
    assert config.sources["flights"].path == "/data/in"
    assert config.sources["weather"].path == "./lakehouse/landing/weather"


def test_set_landing_var_changes_every_source_path() -> None:
    config = load_pipeline(FLIGHTS, ["vars.landing=/x"])
    assert {n: s.path for n, s in config.sources.items()} == {n: f"/x/{n}" for n in FLIGHT_SOURCES}


def test_set_spark_conf_value_is_a_string() -> None:
    config = load_pipeline(FLIGHTS, ["spark.conf.spark.sql.shuffle.partitions=4"])
    assert config.spark.conf == {"spark.sql.shuffle.partitions": "4"}


def test_set_value_parsed_as_yaml() -> None:
    config = load_pipeline(FLIGHTS, ["gold.flight_features.params.delay_threshold_minutes=30"])
    assert config.gold["flight_features"].params["delay_threshold_minutes"] == 30
    config = load_pipeline(FLIGHTS, ["silver.planes.keys=[tailnum, year]"])
    assert config.silver["planes"].keys == ["tailnum", "year"]


def test_set_list_index() -> None:
    config = load_pipeline(FLIGHTS, ["silver.flights.expectations.0.action=warn"])
    expectations = config.silver["flights"].expectations
    assert expectations[0].name == "valid_flight_date"
    assert expectations[0].action == "warn"
    assert expectations[1].action == "drop"


def test_set_bad_list_index() -> None:
    message = _error(FLIGHTS, "silver.flights.expectations.9.action=warn")
    assert "silver.flights.expectations.9" in message
    assert "0..5" in message
    _error(FLIGHTS, "silver.flights.expectations.first.action=warn")


def test_set_without_equals() -> None:
    message = _error(FLIGHTS, "sources.flights.path")
    assert "key=value" in message


def test_set_into_a_value() -> None:
    message = _error(FLIGHTS, "name.x=1")
    assert "name is a value" in message


# --- bad configs: one line naming the problem --------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = _tiny(tmp_path, GOOD_PIPELINE + "colour: blue\n")
    message = _error(path)
    assert "colour" in message
    assert "unknown key" in message


def test_unknown_nested_key(tmp_path: Path) -> None:
    message = _error(FLIGHTS, "sources.flights.fromat=csv")
    assert "sources.flights.fromat" in message


def test_keys_as_string(tmp_path: Path) -> None:
    path = _tiny(tmp_path, GOOD_PIPELINE.replace("keys: [id]", "keys: x"))
    message = _error(path)
    assert "silver.things.keys" in message


def test_bad_format(tmp_path: Path) -> None:
    message = _error(FLIGHTS, "sources.flights.format=xml")
    assert "sources.flights.format" in message
    assert "xml" in message


def test_missing_required_key(tmp_path: Path) -> None:
    path = _tiny(tmp_path, GOOD_PIPELINE.replace("    schema: id INT, name STRING\n", ""))
    message = _error(path)
    assert "sources.things.schema" in message
    assert "missing" in message


def test_missing_sql_file(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    (tmp_path / "pipelines" / "sql" / "things.sql").unlink()
    message = _error(path)
    assert str((tmp_path / "pipelines" / "sql" / "things.sql").resolve()) in message
    assert "not found" in message
    assert "silver.things.sql" in message


def test_missing_pipeline_file(tmp_path: Path) -> None:
    message = _error(tmp_path / "nope.yml")
    assert "nope.yml" in message
    assert "not found" in message


def test_invalid_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.yml", "name: x\nsources:\n  a: [1, 2\n  b: 3\n")
    message = _error(path)
    assert "invalid YAML" in message
    assert "line " in message
    assert str(path) in message


def test_top_level_list(tmp_path: Path) -> None:
    path = _write(tmp_path / "list.yml", "- name: x\n- name: y\n")
    message = _error(path)
    assert "mapping" in message
    assert "list" in message


def test_unknown_variable(tmp_path: Path) -> None:
    path = _tiny(tmp_path, GOOD_PIPELINE.replace("/landing/things", "${lnading}/things"))
    message = _error(path)
    assert "${lnading}" in message
    assert "sources.things.path" in message


def test_env_var_unset_without_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    path = _tiny(tmp_path, GOOD_PIPELINE.replace("/landing/things", "${env:NOPE}/things"))
    message = _error(path)
    assert "NOPE" in message
    assert "not set" in message


def test_env_var_default_and_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    path = _tiny(tmp_path, GOOD_PIPELINE.replace("/landing/things", "${env:NOPE:-/dflt}/things"))
    assert load_pipeline(path).sources["things"].path == "/dflt/things"
    monkeypatch.setenv("NOPE", "/set")
    assert load_pipeline(path).sources["things"].path == "/set/things"


def test_silver_source_not_a_source(tmp_path: Path) -> None:
    path = _tiny(tmp_path, GOOD_PIPELINE.replace("source: things", "source: stuff"))
    message = _error(path)
    assert "silver.things.source" in message
    assert "'stuff'" in message


def test_gold_reads_undefined_table(tmp_path: Path) -> None:
    path = _tiny(tmp_path, gold_sql="select * from silver.things join silver.others using (id)")
    message = _error(path)
    assert "silver.others" in message
    assert "summary.sql" in message


def test_gold_reading_ops_and_own_tables_is_fine(tmp_path: Path) -> None:
    path = _tiny(tmp_path, gold_sql="select * from silver.things t join ops.runs r on t.id = r.id")
    config = load_pipeline(path)
    assert list(config.gold) == ["summary"]


def test_empty_sql_file(tmp_path: Path) -> None:
    path = _tiny(tmp_path, gold_sql="-- nothing here\n")
    message = _error(path)
    assert "empty SQL" in message


def test_bad_grain(tmp_path: Path) -> None:
    path = _tiny(tmp_path, GOOD_PIPELINE + "    grain: silver.nothing\n")
    message = _error(path)
    assert "gold.summary.grain" in message
    assert "silver.nothing" in message


def test_overlay_with_unknown_key(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    overlay = _write(tmp_path / "odd.yml", "storage: {root: /tmp/x}\nsources: {}\n")
    message = _error(path, env=str(overlay))
    assert "'sources'" in message
    assert "odd.yml" in message


def test_overlay_as_path_applies(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    overlay = _write(tmp_path / "mine.yml", "storage: {root: /tmp/x}\nspark: {master: 'local[2]'}\n")
    config = load_pipeline(path, env=str(overlay))
    assert config.storage.root == "/tmp/x"
    assert config.spark.master == "local[2]"


def test_named_overlay_missing(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    message = _error(path, env="staging")
    assert "staging" in message
    assert "not found" in message


def test_no_overlay_is_optional(tmp_path: Path) -> None:
    config = load_pipeline(_tiny(tmp_path))
    assert config.storage.root == "./lakehouse"


def test_cluster_overlay_requires_root() -> None:
    message = _error(FLIGHTS, env="cluster")
    assert "GOLDSMITH_ROOT" in message
    assert "not set" in message


def test_duplicate_expectation_names(tmp_path: Path) -> None:
    text = GOOD_PIPELINE.replace(
        "    keys: [id]\ngold",
        "    keys: [id]\n    expectations:\n"
        "      - {name: has_id, rule: id is not null}\n"
        "      - {name: has_id, rule: id > 0}\ngold",
    )
    message = _error(_tiny(tmp_path, text))
    assert "has_id" in message
    assert "unique" in message


def test_table_name_not_snake_case(tmp_path: Path) -> None:
    path = _tiny(tmp_path, GOOD_PIPELINE.replace("  summary:", "  Summary-Table:"))
    message = _error(path)
    assert "Summary-Table" in message
    assert "snake_case" in message


def test_pipeline_name_not_snake_case(tmp_path: Path) -> None:
    message = _error(_tiny(tmp_path, GOOD_PIPELINE.replace("name: tiny", "name: Tiny Pipe")))
    assert "Tiny Pipe" in message


# --- models are frozen -------------------------------------------------------------------------------


def test_models_are_frozen() -> None:
    config = load_pipeline(FLIGHTS)
    with pytest.raises(pydantic.ValidationError):
        config.name = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        config.sources["flights"].path = "/elsewhere"  # type: ignore[misc]
    assert config.sources["flights"].path == "./lakehouse/landing/flights"


# --- pure functions ----------------------------------------------------------------------------------


def test_deep_merge_nested_and_replace() -> None:
    base = {"a": {"x": 1, "y": 2}, "l": [1, 2], "s": "keep"}
    extra = {"a": {"y": 3, "z": 4}, "l": [9]}
    assert deep_merge(base, extra) == {"a": {"x": 1, "y": 3, "z": 4}, "l": [9], "s": "keep"}
    assert base == {"a": {"x": 1, "y": 2}, "l": [1, 2], "s": "keep"}


def test_deep_merge_mapping_replaces_scalar() -> None:
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 2}}, {"a": None}) == {"a": None}


def test_interpolate_nested() -> None:
    data = {"p": "${a}/${b}", "l": ["${a}", 3], "n": None}
    assert interpolate(data, {"a": "1", "b": "two"}) == {"p": "1/two", "l": ["1", 3], "n": None}


def test_interpolate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GS_TEST_X", "val")
    monkeypatch.delenv("GS_TEST_Y", raising=False)
    assert interpolate("${env:GS_TEST_X}-${env:GS_TEST_Y:-d}", {}) == "val-d"
    assert interpolate("${env:GS_TEST_Y:-}", {}) == ""


def test_interpolate_unknown_names_origin() -> None:
    with pytest.raises(ConfigError) as info:
        interpolate({"a": {"b": "${zz}"}}, {"known": "1"})
    assert "a.b" in str(info.value)
    assert "known" in str(info.value)


def test_circular_vars(tmp_path: Path) -> None:
    text = GOOD_PIPELINE.replace("/landing/things", "${a}/things") + "vars:\n  a: ${b}\n  b: ${a}\n"
    path = _tiny(tmp_path, text)
    message = _error(path)
    assert "circular" in message


def test_sql_table_refs_ignores_comments() -> None:
    sql = """
    -- reads silver.old_table no more
    /* gold.commented
       bronze.also_commented */
    select * from Silver.Flights f join gold.daily d on f.id = d.id -- silver.trailing
    """
    assert sql_table_refs(sql) == {"silver.flights", "gold.daily"}


# --- incremental gold tables -------------------------------------------------------------------------
INCREMENTAL = GOOD_PIPELINE + """\
    incremental:
      column: at
      inputs: {silver.things: at}
"""


def test_incremental_sql_must_read_since(tmp_path: Path) -> None:
    message = _error(_tiny(tmp_path, INCREMENTAL, "select id, at from silver.things"))
    assert "gold.summary.incremental" in message and ":since" in message


def test_incremental_since_in_a_comment_does_not_count(tmp_path: Path) -> None:
    sql = "-- where at >= :since\nselect id, at from silver.things"
    assert ":since" in _error(_tiny(tmp_path, INCREMENTAL, sql))


def test_incremental_input_must_be_read_by_the_sql(tmp_path: Path) -> None:
    pipeline = INCREMENTAL.replace("{silver.things: at}", "{silver.other: at}")
    message = _error(_tiny(tmp_path, pipeline, "select id, at from silver.things where at >= :since"))
    assert "silver.other is not a table summary.sql reads" in message


def test_incremental_since_is_not_a_user_param(tmp_path: Path) -> None:
    pipeline = INCREMENTAL + "    params: {since: 3}\n"
    message = _error(_tiny(tmp_path, pipeline, "select id, at from silver.things where at >= :since"))
    assert "'since' is set by goldsmith" in message


def test_incremental_needs_inputs(tmp_path: Path) -> None:
    pipeline = INCREMENTAL.replace("{silver.things: at}", "{}")
    assert "inputs" in _error(_tiny(tmp_path, pipeline, "select id, at from silver.things where at >= :since"))


def test_flights_gold_is_incremental() -> None:
    table = load_pipeline(FLIGHTS).gold["flight_features"]
    assert table.incremental is not None and table.incremental.column == "sched_dep_at"
    assert set(table.incremental.inputs) == {"silver.flights", "silver.weather"}
