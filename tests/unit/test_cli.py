"""The CLI's config-error path, stage parsing and gold build order; nothing here starts Spark."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldsmith.cli import main
from goldsmith.config.models import GoldTable
from goldsmith.errors import ConfigError
from goldsmith.jobs.features import build_order
from goldsmith.jobs.pipeline import parse_stages

PIPELINE = """\
name: tiny
sources:
  things:
    format: csv
    path: /landing/things
    schema: id INT, name STRING
silver:
  things:
    source: things
    sql: things.sql
    keys: [id]
"""


def _pipeline(tmp_path: Path, text: str = PIPELINE) -> Path:
    (tmp_path / "things.sql").write_text("select id, name from bronze.things", encoding="utf-8")
    path = tmp_path / "tiny.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("goldsmith: error:")
    assert captured.out == ""
    return lines[0]


@pytest.mark.usefixtures("no_spark")
def test_validate_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _pipeline(tmp_path, PIPELINE.replace("format: csv", "format: xml"))
    assert main(["validate", str(bad)]) == 2  # refused before any Spark starts (`no_spark`)
    line = _one_error_line(capsys)
    assert "sources.things.format" in line
    assert "tiny.yml" in line


def test_validate_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "absent.yml")]) == 2
    assert "not found" in _one_error_line(capsys)


def test_validate_bad_override_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _pipeline(tmp_path)
    assert main(["validate", str(good), "--set", "sources.things.path"]) == 2
    assert "key=value" in _one_error_line(capsys)


@pytest.mark.usefixtures("no_spark")
def test_run_bad_stage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _pipeline(tmp_path)
    assert main(["run", str(good), "--stages", "bogus"]) == 2
    line = _one_error_line(capsys)
    assert "bogus" in line
    assert "ingest, refine, features" in line


def test_parse_stages_pipeline_order() -> None:
    assert parse_stages("refine,ingest") == ["ingest", "refine"]
    assert parse_stages(" features , ingest ") == ["ingest", "features"]
    assert parse_stages(["features", "refine"]) == ["refine", "features"]


def test_parse_stages_none_is_all() -> None:
    assert parse_stages(None) == ["ingest", "refine", "features", "profile", "train", "score", "monitor"]


@pytest.mark.parametrize("value", ["", "x", ",", "ingest,x"])
def test_parse_stages_rejects(value: str) -> None:
    with pytest.raises(ConfigError, match="choose from ingest, refine, features"):
        parse_stages(value)


def _gold(*names: str) -> dict[str, GoldTable]:
    return {n: GoldTable(sql=Path("x.sql")) for n in names}


def test_build_order_dependency_first() -> None:
    sql = {"b": "select * from gold.a join silver.s using (id)", "a": "select * from silver.s"}
    assert build_order(_gold("b", "a"), sql) == ["a", "b"]


def test_build_order_chain() -> None:
    sql = {
        "c": "select * from gold.b",
        "b": "select * from gold.a",
        "a": "select 1 -- not gold.c",
    }
    assert build_order(_gold("c", "b", "a"), sql) == ["a", "b", "c"]


def test_build_order_cycle() -> None:
    sql = {"a": "select * from gold.b", "b": "select * from gold.a"}
    with pytest.raises(ConfigError, match="cycle"):
        build_order(_gold("a", "b"), sql)


def test_version_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "goldsmith 0.1.0" in capsys.readouterr().out


def test_no_command_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


@pytest.mark.usefixtures("no_spark")
@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--interval", "0", "--interval must be more than 0 seconds"),
    ("--max-runs", "0", "--max-runs must be at least 1"),
    ("--stages", "ingest,nope", "unknown stage nope"),
])
def test_watch_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str,
                                    message: str) -> None:
    assert main(["watch", str(_pipeline(tmp_path)), flag, value]) == 2  # before any Spark starts (`no_spark`)
    assert message in _one_error_line(capsys)
