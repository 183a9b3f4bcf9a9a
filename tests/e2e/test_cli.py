"""The CLI and spark-submit on slices of the real data: counts, accounting, idempotence, quarantine."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import pytest

from .conftest import BIN, FLIGHTS, MODEL_ARGS, REPO, WEATHER_ROWS, goldsmith, run, sql_row, start_goldsmith

pytestmark = pytest.mark.slow


def counts(root: Path) -> dict[str, object]:
    return sql_row(
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
        "   where weather_observed_at + interval 1 hour > sched_dep_at) as future_weather",
        root,
    )


def test_flights_run_twice(landing: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    args = ("run", "conf/pipelines/flights.yml", "--set", f"storage.root={root}", "--set", f"vars.landing={landing}",
            *MODEL_ARGS)
    running = start_goldsmith(*args)
    # A second process reads the catalog while the pipeline writes it.
    deadline = time.monotonic() + 600
    while not (root / "silver" / "flights" / "_delta_log").exists() and running.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    still_running = running.poll() is None
    seen = sql_row("select count(*) as n from bronze.flights", root)
    out, err = running.communicate(timeout=900)
    assert running.returncode == 0, err[-3000:]
    assert still_running, "the pipeline finished before the reader started: nothing was concurrent"
    assert seen == {"n": FLIGHTS}
    assert "gold.flight_features" in out and 'goldsmith sql "select' in out
    assert "Model flight_delay version 1 (sklearn-udf" in out and "is champion" in out
    assert "test set: roc_auc" in out and "mlflow ui --backend-store-uri sqlite:///" in out
    after_first = counts(root)
    window = sql_row("select count(*) as n from gold.flight_features where flight_date >= '2013-01-04'", root)
    monitor_rows = after_first.pop("monitor_rows")
    assert after_first == {
        "bronze": FLIGHTS, "silver": FLIGHTS, "gold": FLIGHTS, "quarantined": 0, "weather": WEATHER_ROWS,
        # one run; 5 bronze + 5 silver + 1 gold + 1 scored + 6 profiled tables + 1 monitored model
        "files": 5, "ops_rows": 1 + 12 + 6 + 1, "future_weather": 0,
        "predictions": window["n"], "promotions": 2,
        "profiled_columns": 26 + 14 + 12 + 11 + 5 + 32, "profiled_tables": 6, "bias": True, "slices": True,
    }
    assert isinstance(monitor_rows, int) and monitor_rows > 0
    assert "Drift monitor of flight_delay v1" in out
    after_first["monitor_rows"] = monitor_rows

    report = goldsmith("report", "conf/pipelines/flights.yml", "--set", f"storage.root={root}", "--check")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "sections lineage, profiles, models, bias, slices, drift; 0 broken image(s)" in report.stdout
    assert (root / "_reports" / "flights.html").stat().st_size > 100_000
    assert (root / "_reports" / "flights.png").stat().st_size > 10_000

    second = goldsmith(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr.count("no new files") == 5
    assert "up to date" in second.stderr
    assert "not retrained" in second.stderr and "already scored" in second.stderr
    assert "already profiled" in second.stderr and "already checked on the same data" in second.stderr
    assert counts(root) == after_first

    # The console command of watch: one run (nothing new), then it stops with that run's exit code.
    watched = goldsmith("watch", "conf/pipelines/flights.yml", "--stages", "ingest,refine,features",
                        "--max-runs", "1", "--interval", "1", "--set", f"storage.root={root}",
                        "--set", f"vars.landing={landing}")
    assert watched.returncode == 0, watched.stderr[-3000:]
    assert "watching pipeline flights" in watched.stderr and "nothing new, no table changed" in watched.stderr
    assert counts(root) == after_first


def test_models_cli_rollback_then_rescore_restores_predictions(landing: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    base = ("run", "conf/pipelines/flights.yml", "--set", f"storage.root={root}", "--set", f"vars.landing={landing}",
            *MODEL_ARGS)
    first = goldsmith(*base)
    assert first.returncode == 0, first.stderr[-3000:]
    checksum = "select count(*) as n, sum(hash(flight_id, prediction, probability)) as h, " \
        "min(model_version) as lo, max(model_version) as hi from gold.flight_delay_predictions"
    v1 = sql_row(checksum, root)
    assert (v1["lo"], v1["hi"]) == (1, 1)

    other = ("--set", "models.flight_delay.trainer={backend: spark-ml, algorithm: logistic_regression}",
             "--set", "models.flight_delay.gates.min_improvement=-1")
    second = goldsmith(*base, *other)
    assert second.returncode == 0, second.stderr[-3000:]
    v2 = sql_row(checksum, root)
    assert (v2["n"], v2["lo"], v2["hi"]) == (v1["n"], 2, 2) and v2["h"] != v1["h"]

    listed = goldsmith("models", "list", "flight_delay", "--root", str(root))
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()[:1].isdigit()}
    assert "champion" in lines["2"] and "challenger" in lines["2"] and "champion" not in lines["1"]

    back = goldsmith("models", "rollback", "flight_delay", "--root", str(root), "--reason", "e2e")
    assert back.returncode == 0, back.stderr[-3000:]
    assert "v2 -> v1" in back.stdout
    rescore = goldsmith(*base, *other, "--stages", "score")
    assert rescore.returncode == 0, rescore.stderr[-3000:]
    assert sql_row(checksum, root) == v1  # the previous champion's predictions, row for row
    moves = sql_row("select count(*) as n, max_by(action, moved_at) as last, max_by(actor, moved_at) as who "
                    "from ops.model_promotions", root)
    assert moves["n"] == 5 and moves["last"] == "rollback" and "@" in str(moves["who"])

    nothing = goldsmith("models", "rollback", "flight_delay", "--root", str(root))
    assert nothing.returncode == 1 and "nothing to roll back to" in nothing.stderr
    assert len(nothing.stderr.strip().splitlines()) <= 3


def test_injected_malformed_lines_are_quarantined_exactly(landing: Path, tmp_path: Path) -> None:
    source = (landing / "flights" / "flights.csv").read_bytes().splitlines()
    bad = [
        b"2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15",
        b"2013,1,1,517,515,2,830,819,11,UA,9999,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z,extra",
        b"2013,1,1,abc,515,2,830,819,11,UA,9998,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z",
        b'2013,1,1,517,515,2,830,819,11,"UA,9997,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z',
    ]
    lines = [source[0], *source[1:1000], bad[0], bad[1], *source[1000:2000], bad[2], bad[3], *source[2000:]]
    injected = tmp_path / "injected"
    injected.mkdir()
    (injected / "flights.csv").write_bytes(b"\n".join(lines) + b"\n")
    root = tmp_path / "lake"
    done = goldsmith(
        "run", "conf/pipelines/flights.yml", "--stages", "ingest,refine", "--set", f"storage.root={root}",
        "--set", f"vars.landing={landing}", "--set", f"sources.flights.path={injected}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = sql_row(
        "select (select count(*) from silver.flights) as kept,"
        " (select count(*) from bronze.flights_quarantine) as quarantined,"
        " (select concat_ws('|', sort_array(collect_list(raw_record))) from bronze.flights_quarantine) as raw",
        root,
    )
    assert got["kept"] == FLIGHTS
    assert got["quarantined"] == len(bad)
    assert str(got["raw"]).split("|") == sorted(b.decode() for b in bad)


def test_spark_submit_runs_the_reviews_pipeline(tmp_path: Path) -> None:
    landing, root = tmp_path / "landing", tmp_path / "lake"
    done = goldsmith("demo-data", "reviews", "--dest", str(landing))
    assert done.returncode == 0, done.stderr
    per_file = {}
    for tsv in (landing / "reviews").glob("*.tsv"):
        with tsv.open(newline="", encoding="utf-8") as handle:
            per_file[tsv.name] = sum(1 for _ in csv.reader(handle, delimiter="\t")) - 1
    expected = sum(per_file.values())
    assert expected == 979

    for launcher in ("spark_jobs/ingest.py", "spark_jobs/refine.py"):  # one stage per Spark application
        submitted = run(
            str(BIN / "spark-submit"), "--master", "local[2]", launcher, "conf/pipelines/reviews.yml",
            "--set", f"storage.root={root}", "--set", f"vars.landing={landing}",
        )
        assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-3000:]
    # The whole pipeline: ingest and refine find nothing new; the sentiment model is trained and scores every review.
    again = run(
        str(BIN / "spark-submit"), "--master", "local[2]", "spark_jobs/pipeline.py", "conf/pipelines/reviews.yml",
        "--set", f"storage.root={root}", "--set", f"vars.landing={landing}",
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    # spark-submit's PythonRunner merges the Python driver's stderr into stdout.
    progress = again.stdout
    assert "no new files" in progress and "up to date" in progress, progress[-3000:]
    assert "Model review_sentiment version 1 (spark-ml" in progress and "macro_f1" in progress, progress[-3000:]
    assert "test F1 per class: negative" in progress
    assert "label review:" in progress and "gold.review_sentiment_label_review" in progress
    got = sql_row(
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
        "silver": expected, "q": 0, "entities": 0, "classes": 3, "test_rows": per_file["drugsComTest.tsv"],
        "scored": expected, "bad_probs": 0, "same": 0, "flagged": True, "bias_classes": 3, "monitored": True,
    }
    report = goldsmith("report", "conf/pipelines/reviews.yml", "--set", f"storage.root={root}", "--check")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "sections lineage, profiles, models, bias, slices, drift; 0 broken image(s)" in report.stdout


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    done = goldsmith("run", "conf/pipelines/flights.yml", "--set", "sources.flights.fromat=csv")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sources.flights.fromat" in lines[0], done.stderr


def test_spark_jobs_are_thin_launchers() -> None:
    for launcher in (REPO / "spark_jobs").glob("*.py"):
        assert len(launcher.read_text().splitlines()) <= 25, launcher
    assert shutil.which("spark-submit", path=str(BIN)), "set-up installs spark-submit into the virtualenv"
