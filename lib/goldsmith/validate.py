"""`goldsmith validate`: parse every SQL file, schema and rule of a pipeline without running it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from goldsmith.config.models import PipelineConfig
from goldsmith.errors import ConfigError, first_line
from goldsmith.io.landing import parse_schema
from goldsmith.session import build_session


def parse_sql_files(config: PipelineConfig) -> int:
    """Check that each model's training backend is installed, then parse (not analyse: tables may not exist yet)
    each SQL file and expectation; return files parsed."""
    check_backends(config)
    return check_sql(build_session(f"goldsmith-validate-{config.name}", "local[1]", config.spark.conf), config)


def check_sql(spark: SparkSession, config: PipelineConfig, stages: Sequence[str] | None = None) -> int:
    """Parse each SQL file, schema and expectation of the pipeline (of `stages` only, when given) with Spark's
    parser (milliseconds: a run does it before its first stage, so that a typo stops it before any work); return
    the files parsed."""
    parser: Any = spark._jsparkSession.sessionState().sqlParser()
    for name, source in config.sources.items():
        parse_schema(name, source.schema_ddl)
    files = [(f"silver.{n}", t.sql) for n, t in config.silver.items() if stages is None or "refine" in stages]
    files += [(f"gold.{n}", t.sql) for n, t in config.gold.items() if stages is None or "features" in stages]
    for table, sql in files:
        path = config.sql_path(sql)
        try:
            parser.parsePlan(path.read_text(encoding="utf-8"))
        except Exception as exc:
            raise ConfigError(f"{path} ({table}): {_first_line(exc)}") from None
    for name, silver in config.silver.items() if stages is None or "refine" in stages else ():
        for expectation in silver.expectations:
            try:
                parser.parseExpression(expectation.rule)
            except Exception as exc:
                raise ConfigError(
                    f"silver.{name}.expectations.{expectation.name}: rule does not parse: {_first_line(exc)}"
                ) from None
    return len(files)


def check_backends(config: PipelineConfig) -> None:
    """BackendUnavailable, naming what to install, for the first model whose training backend is missing here."""
    from goldsmith.ml.backends import require

    for spec in config.models.values():
        require(spec.trainer.backend)


def _first_line(exc: Exception) -> str:
    text = str(exc)
    for prefix in ("org.apache.spark.sql.catalyst.parser.ParseException:", "An error occurred"):
        text = text.replace(prefix, "")
    return first_line(text) or type(exc).__name__
