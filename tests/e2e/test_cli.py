"""The CLI and spark-submit on slices of the real data: counts, accounting, idempotence, quarantine."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from goldsmith.jobs.train import TrainOutcome

from .conftest import (
    BAD_LINES,
    BIN,
    FLIGHTS,
    LANE,
    REPO,
    WEATHER_ROWS,
    FirstRun,
    Reader,
    Subprocesses,
    delta_versions,
    goldsmith,
    run_in_process,
)

pytestmark = pytest.mark.slow


COUNTS = (
    "select (select count(*) from bronze.flights) as bronze, (select count(*) from silver.flights) as silver,"
    " (select count(*) from gold.flight_features) as gold,"
    " (select count(*) from bronze.flights_quarantine) + (select count(*) from silver.flights_quarantine)"
    "   as quarantined,"
    " (select count(*) from silver.weather) + (select count(*) from bronze.weather_quarantine)"
    "   + (select count(*) from silver.weather_quarantine) as weather,"
    " (select count(*) from ops.ingested_files) as files,"
    " (select count(*) from ops.run_log) + (select count(*) from ops.quality_metrics) as ops_rows,"
    " (select count(*) from gold.flight_delay_predictions) as predictions,"
    " (select count(*) from ops.model_promotions) as promotions,"
    " (select count(*) from ops.profiles) as profiled_columns,"
    " (select count(distinct table_name) from ops.profiles) as profiled_tables,"
    " (select count(*) from ops.bias_metrics) > 0 as bias,"
    " (select count(*) from ops.slice_metrics) > 0 as slices,"
    " (select count(*) from ops.monitor_results) as monitor_rows,"
    # The row for hour H is the report taken up to H:51: complete only at H + 1 hour.
    " (select count(*) from gold.flight_features"
    "   where weather_observed_at + interval 1 hour > sched_dep_at) as future_weather"
)


@pytest.fixture(scope="module")
def after_first(flights_lake: FirstRun, reader: Reader) -> dict[str, Any]:
    """The counts the first run left (read before any later test of this module changes the lakehouse)."""
    return reader.row(COUNTS, flights_lake.root)


def test_first_run_writes_every_layer_and_quarantines_the_malformed_lines(
    flights_lake: FirstRun, after_first: dict[str, Any], reader: Reader,
) -> None:
    root, out = flights_lake.root, flights_lake.stdout
    # `goldsmith sql` in a second process, while the pipeline was writing: bronze was already complete.
    assert flights_lake.seen_while_running.splitlines() == ["n", str(FLIGHTS)]
    assert "gold.flight_features" in out and 'goldsmith sql "select' in out
    # The shipped gates decided: ROC AUC >= 0.6 on November and each airport's disparate impact in [0.8, 1.25].
    assert "Model flight_delay version 1 (sklearn-udf" in out and "is champion" in out, out[-3000:]
    assert "not champion:" not in out
    assert "test set: roc_auc" in out and "mlflow ui --backend-store-uri sqlite:///" in out
    assert "Drift monitor of flight_delay v1" in out
    window = reader.row("select count(*) as n from gold.flight_features where flight_date >= '2013-12-01'", root)
    counts = dict(after_first)
    monitor_rows = counts.pop("monitor_rows")
    assert counts == {
        "bronze": FLIGHTS, "silver": FLIGHTS, "gold": FLIGHTS, "quarantined": len(BAD_LINES),
        "weather": WEATHER_ROWS,
        # one run; 5 bronze + 5 silver + 1 gold + 1 scored + 6 profiled tables + 1 monitored model
        "files": 5, "ops_rows": 1 + 12 + 6 + 1, "future_weather": 0,
        "predictions": window["n"], "promotions": 2,
        "profiled_columns": 26 + 14 + 12 + 11 + 5 + 32, "profiled_tables": 6, "bias": True, "slices": True,
    }
    assert isinstance(monitor_rows, int) and monitor_rows > 0
    raw = reader.rows("select raw_record from bronze.flights_quarantine order by raw_record", root)
    assert [r["raw_record"] for r in raw] == sorted(b.decode() for b in BAD_LINES)
    assert reader.row("select count(*) as n from silver.flights_quarantine", root) == {"n": 0}


def test_a_second_run_while_the_first_writes_exits_4_naming_the_holder(flights_lake: FirstRun) -> None:
    """One writer per pipeline and root: the second `goldsmith run` wrote nothing (the counts above are one
    run's) and said who holds the lease, in one line."""
    second = flights_lake.competitor
    assert second.returncode == 4, second.stderr[-3000:]
    (error,) = [line for line in second.stderr.splitlines() if line.startswith("goldsmith: error:")]
    first_run_id = re.search(r"run (\S+) of pipeline flights", flights_lake.stderr).group(1)  # type: ignore[union-attr]
    assert f"pipeline flights on file:{flights_lake.root} is being written by run {first_run_id} (host " in error
    assert "Traceback" not in second.stderr and "at org.apache" not in second.stderr


@dataclass(frozen=True)
class ReportAndWatch:
    """`goldsmith report --check` and `goldsmith watch` (one run) on the first run's lakehouse, run by the
    background lane (`report_and_watch`), and the Delta version of every table before and after the watch."""

    report: subprocess.CompletedProcess[str]
    watched: subprocess.CompletedProcess[str]
    before: dict[str, int]
    after: dict[str, int]


@LANE.job(fixtures=("report_and_watch_runs",), needs=("start_first_run",))
def report_and_watch(factory: pytest.TempPathFactory) -> ReportAndWatch:
    """In the background lane, right after the first run (subprocesses and file reads only): the report, then
    `goldsmith watch` of every stage, which finds nothing new."""
    first: Subprocesses = LANE.result("start_first_run", factory)
    report = LANE.run(str(BIN / "goldsmith"), "report", "conf/pipelines/flights.yml", "--set",
                      f"storage.root={first.root}", "--check", timeout=600)
    before = delta_versions(first.root)
    watched = LANE.run(str(BIN / "goldsmith"), "watch", "conf/pipelines/flights.yml", "--max-runs", "1",
                       "--interval", "1", *first.args[2:], timeout=900)
    return ReportAndWatch(report, watched, before, delta_versions(first.root))


@pytest.fixture(scope="session")
def report_and_watch_runs(tmp_path_factory: pytest.TempPathFactory) -> ReportAndWatch:
    return LANE.result("report_and_watch", tmp_path_factory)  # type: ignore[no-any-return]


def test_report_check_renders_every_section(flights_lake: FirstRun, report_and_watch_runs: ReportAndWatch) -> None:
    root, report = flights_lake.root, report_and_watch_runs.report
    assert report.returncode == 0, report.stderr[-3000:]
    assert "starting Spark" not in report.stderr  # a local lakehouse is read from its Delta logs
    assert "sections lineage, profiles, models, bias, slices, drift; 0 broken image(s)" in report.stdout
    assert (root / "_reports" / "flights.html").stat().st_size > 100_000
    assert (root / "_reports" / "flights.png").stat().st_size > 10_000


def test_a_second_run_under_watch_changes_nothing(
    flights_lake: FirstRun, after_first: dict[str, Any], reader: Reader, report_and_watch_runs: ReportAndWatch,
) -> None:
    # `goldsmith watch` ran every stage once (nothing new), then stopped with that run's exit code. (The counts
    # of `after_first` are one run's, checked by the first test: the watch added no row.)
    watched = report_and_watch_runs.watched
    assert watched.returncode == 0, watched.stderr[-3000:]
    err = watched.stderr
    assert "watching pipeline flights" in err and "nothing new, no table changed" in err, err[-3000:]
    assert err.count("no new files") == 5 and "up to date" in err
    assert "not retrained" in err and "already scored" in err
    assert "already profiled" in err and "already checked on the same data" in err
    before, after = report_and_watch_runs.before, report_and_watch_runs.after
    assert len(before) > 20 and after == before, (before, after)
    assert reader.row(COUNTS, flights_lake.root) == after_first


def test_models_cli_rollback_then_rescore_restores_predictions(
    flights_lake: FirstRun, reader: Reader, spark: SparkSession,
) -> None:
    # `goldsmith models` is the command under test; the runs around it are made in process.
    root, base = flights_lake.root, flights_lake.args
    checksum = "select count(*) as n, sum(hash(flight_id, prediction, probability)) as h, " \
        "min(model_version) as lo, max(model_version) as hi from gold.flight_delay_predictions"
    v1 = reader.row(checksum, root)
    assert (v1["lo"], v1["hi"]) == (1, 1)

    # Another model (one sklearn candidate, stronger regularisation) with the gates open: v2 becomes champion.
    other = ("--set", "models.flight_delay.trainer={backend: sklearn-udf, algorithm: logistic_regression, "
             "params: {C: 0.01}}",
             "--set", "models.flight_delay.gates.min_improvement=-1",
             "--set", "models.flight_delay.gates.min_metrics={}", "--set", "models.flight_delay.bias.gates={}")
    second = run_in_process(spark, base[1], *base[2:], *other, "--stages", "train,score")
    assert [m.status for m in second.models if isinstance(m, TrainOutcome)] == ["champion"]
    v2 = reader.row(checksum, root)
    assert (v2["n"], v2["lo"], v2["hi"]) == (v1["n"], 2, 2) and v2["h"] != v1["h"]

    listed = goldsmith("models", "list", "flight_delay", "--root", str(root))
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()[:1].isdigit()}
    assert "champion" in lines["2"] and "challenger" in lines["2"] and "champion" not in lines["1"]

    back = goldsmith("models", "rollback", "flight_delay", "--root", str(root), "--reason", "e2e")
    assert back.returncode == 0, back.stderr[-3000:]
    assert "v2 -> v1" in back.stdout
    run_in_process(spark, base[1], *base[2:], *other, "--stages", "score")
    assert reader.row(checksum, root) == v1  # the previous champion's predictions, row for row
    moves = reader.row("select count(*) as n, max_by(action, moved_at) as last, max_by(actor, moved_at) as who "
                       "from ops.model_promotions", root)
    assert moves["n"] == 5 and moves["last"] == "rollback" and "@" in str(moves["who"])

    nothing = goldsmith("models", "rollback", "flight_delay", "--root", str(root))
    assert nothing.returncode == 1 and "nothing to roll back to" in nothing.stderr
    assert len(nothing.stderr.strip().splitlines()) <= 3


@dataclass(frozen=True)
class ReviewsRuns:
    """The reviews pipeline run by `goldsmith run` in the background lane (`run_reviews`): its ingest stage alone,
    then every stage."""

    landing: Path
    root: Path
    per_file: dict[str, int]  # data rows of each landing file
    silver_after_ingest: bool  # whether silver existed after the ingest stage alone
    bronze_versions: tuple[int | None, int | None]  # bronze.reviews' Delta version after the ingest, after all
    ingest: subprocess.CompletedProcess[str]
    whole: subprocess.CompletedProcess[str]


@LANE.job(fixtures=("reviews_runs",))
def run_reviews(factory: pytest.TempPathFactory) -> ReviewsRuns:
    """In the background lane (subprocesses only): the reviews' landing files, the ingest stage alone, then the
    whole pipeline (ingest finds nothing new; the sentiment model is trained with the shipped gates and scores
    every review)."""
    folder = factory.mktemp("reviews")
    landing, root = folder / "landing", folder / "lake"
    done = LANE.run(str(BIN / "goldsmith"), "demo-data", "reviews", "--dest", str(landing), timeout=300)
    assert done.returncode == 0, done.stderr
    per_file = {}
    for tsv in (landing / "reviews").glob("*.tsv"):
        with tsv.open(newline="", encoding="utf-8") as handle:
            per_file[tsv.name] = sum(1 for _ in csv.reader(handle, delimiter="\t")) - 1
    run = (str(BIN / "goldsmith"), "run", "conf/pipelines/reviews.yml", "--set", f"storage.root={root}",
           "--set", f"vars.landing={landing}")
    ingest = LANE.run(*run, "--stages", "ingest", timeout=900)
    silver, after_ingest = (root / "silver").exists(), delta_versions(root).get("bronze.reviews")
    whole = LANE.run(*run, timeout=1200)
    return ReviewsRuns(landing, root, per_file, silver, (after_ingest, delta_versions(root).get("bronze.reviews")),
                       ingest, whole)


@pytest.fixture(scope="session")
def reviews_runs(tmp_path_factory: pytest.TempPathFactory) -> ReviewsRuns:
    return LANE.result("run_reviews", tmp_path_factory)  # type: ignore[no-any-return]


def test_the_reviews_pipeline_trains_a_multiclass_text_model(
    reviews_runs: ReviewsRuns, reader: Reader, spark: SparkSession, tmp_path: Path,
) -> None:
    # `goldsmith run` of the ingest stage alone, then of the whole pipeline: ingest finds nothing new, the
    # sentiment model is trained with the shipped gates and scores every review.
    runs, root = reviews_runs, reviews_runs.root
    expected = sum(runs.per_file.values())
    assert expected == 979
    assert runs.ingest.returncode == 0, runs.ingest.stderr[-3000:]
    assert not runs.silver_after_ingest
    assert runs.whole.returncode == 0, runs.whole.stderr[-3000:]
    assert f"no new files ({len(runs.per_file)} already ingested)" in runs.whole.stderr, runs.whole.stderr[-3000:]
    after_ingest, after_all = runs.bronze_versions
    assert after_ingest is not None and after_all == after_ingest  # the second run's ingest changed nothing
    assert reader.row("select count(*) as n from bronze.reviews", root) == {"n": expected}
    out = runs.whole.stdout
    assert "Model review_sentiment version 1 (spark-ml: " in out and ") is champion" in out, out[-3000:]
    assert "not champion:" not in out
    macro_f1 = float(re.search(r"test set: .*macro_f1 ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    assert macro_f1 >= 0.4  # the shipped gate
    per_class = re.search(r"test F1 per class: (.*)", out).group(1)  # type: ignore[union-attr]
    assert [c.split()[0] for c in per_class.split(", ")] == ["negative", "neutral", "positive"], per_class
    flagged = re.search(r"label review: ([0-9,]+) rows", out)
    assert flagged and int(flagged.group(1).replace(",", "")) > 0, out[-3000:]
    got = reader.row(
        "select (select count(*) from silver.reviews) as silver,"
        " (select count(*) from bronze.reviews_quarantine) + (select count(*) from silver.reviews_quarantine) as q,"
        " (select count(*) from silver.reviews where review_text rlike '&(#[0-9]+|[a-z]+);') as entities,"
        " (select count(distinct sentiment) from silver.reviews) as classes,"
        " (select count(*) from silver.reviews where source_split = 'test') as test_rows,"
        " (select count(distinct review_id) from gold.review_sentiment_predictions) as scored,"
        " (select count(*) from gold.review_sentiment_predictions"
        "   where abs(aggregate(map_values(class_probabilities), 0d, (a, p) -> a + p) - 1) > 1e-9) as bad_probs,"
        " (select count(*) from gold.review_sentiment_label_review where given_label = suggested_label) as same,"
        " (select count(*) > 0 from gold.review_sentiment_label_review) as flagged,"
        " (select count(distinct label_value) from ops.bias_metrics) as bias_classes,"
        " (select count(*) > 0 from ops.monitor_results) as monitored",
        root,
    )
    # The storage path contains 'test_...' (pytest's folder): the split must come from the file name only.
    assert got == {
        "silver": expected, "q": 0, "entities": 0, "classes": 3, "test_rows": runs.per_file["drugsComTest.tsv"],
        "scored": expected, "bad_probs": 0, "same": 0, "flagged": True, "bias_classes": 3, "monitored": True,
    }
    # The report of a multiclass model (rendered in Chromium by the flights test and the Spark tier): every
    # section is filled, none failed.
    from goldsmith.config import load_pipeline
    from goldsmith.io.lakehouse import Lakehouse
    from goldsmith.report import write_report

    config = load_pipeline(REPO / "conf/pipelines/reviews.yml", [f"storage.root={root}"])
    page = write_report(spark, Lakehouse(spark, str(root)), config, tmp_path / "reviews.html").read_text()
    assert 'class="section-error"' not in page
    for section in ("lineage", "profiles", "models", "bias", "slices", "drift"):
        assert f'<section id="{section}">' in page, section
    assert page.count("data:image/png;base64,") >= 6


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    done = goldsmith("run", "conf/pipelines/flights.yml", "--set", "sources.flights.fromat=csv")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sources.flights.fromat" in lines[0], done.stderr


def test_spark_jobs_are_thin_launchers() -> None:
    """Each launcher is `goldsmith run` of its own stage (the whole pipeline for pipeline.py); the cluster test runs
    pipeline.py under spark-submit."""
    from goldsmith.jobs.pipeline import STAGES

    launchers = {p.stem: p.read_text() for p in (REPO / "spark_jobs").glob("*.py")}
    for name, text in launchers.items():
        assert len(text.splitlines()) <= 25, name
        assert 'main(["run", *sys.argv[1:]' in text, name
    stages = {name: re.findall(r'"--stages", "(\w+)"', text) for name, text in launchers.items()}
    assert stages.pop("pipeline") == []
    assert {name.removesuffix("_tables"): found for name, found in stages.items()} == {s: [s] for s in STAGES}
    assert shutil.which("spark-submit", path=str(BIN)), "set-up installs spark-submit into the virtualenv"
