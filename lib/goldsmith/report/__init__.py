"""`goldsmith report`: one self-contained HTML file with the pipeline's lineage, profiles, models, bias, slices and
drift, read from the `ops.*` tables and the MLflow registry."""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import SparkSession

from goldsmith.config.models import PipelineConfig
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.report.browser import RenderCheck, check_render
from goldsmith.report.collect import ReportData, Tables, collect_report
from goldsmith.report.html import render

__all__ = ["RenderCheck", "ReportData", "Tables", "check_render", "write_report"]

log = logging.getLogger(__name__)


def write_report(
    spark: SparkSession | None, lakehouse: Lakehouse | Tables, config: PipelineConfig, output: Path,
) -> Path:
    """Write the pipeline's report to `output` (an `.html` file; its folder is created) and return its path.

    Brings only small records to the driver: `ops.*` rows, row counts of the data tables (never their rows) and the
    champions' MLflow artifacts. A local lakehouse's tables are read from their Delta logs without Spark; others
    through the lakehouse's session (`Tables` opens it only when needed: `goldsmith report`). A stage that
    has not run yet leaves its section with a note naming the command that fills it; a lakehouse without an MLflow
    database shows its models as not trained (and no database is created).
    """
    del spark  # the lakehouse carries its session; the parameter keeps the job-style signature
    data = collect_report(lakehouse, config)
    page = render(data)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    log.info("report written to %s (%.1f KB)", output, len(page.encode("utf-8")) / 1024)
    return output
