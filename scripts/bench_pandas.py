"""The flights ETL and model in pandas + scikit-learn, in one process: what a user with one machine would write.

The same steps as goldsmith's pipeline, with the same definitions: landing CSVs read with explicit types ->
bronze (with lineage columns) -> silver (typed, renamed, deduplicated on the keys) -> gold.flight_features
(point-in-time weather and leak-free route and carrier delay rates, computed as in
conf/pipelines/sql/flights/gold/flight_features.sql) -> the same five candidate models on the same time split,
the best on validation scored on the scoring window. Tables are Parquet files (pandas has no Delta writer of
its own). Prints one JSON line: stage timings and the gold table's checksums (compared with Spark's by
scripts/bench.py).

    .venv/bin/python scripts/bench_pandas.py LANDING OUT
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMAS = {
    "flights": {"year": "Int32", "month": "Int32", "day": "Int32", "dep_time": "Int32", "sched_dep_time": "Int32",
                "dep_delay": "float64", "arr_time": "Int32", "sched_arr_time": "Int32", "arr_delay": "float64",
                "carrier": "string", "flight": "Int32", "tailnum": "string", "origin": "string", "dest": "string",
                "air_time": "float64", "distance": "float64", "hour": "Int32", "minute": "Int32",
                "time_hour": "string"},
    "weather": {"origin": "string", "year": "Int32", "month": "Int32", "day": "Int32", "hour": "Int32",
                "temp": "float64", "dewp": "float64", "humid": "float64", "wind_dir": "float64",
                "wind_speed": "float64", "wind_gust": "float64", "precip": "float64", "pressure": "float64",
                "visib": "float64", "time_hour": "string"},
    "planes": {"tailnum": "string", "year": "Int32", "type": "string", "manufacturer": "string", "model": "string",
               "engines": "Int32", "seats": "Int32", "speed": "Int32", "engine": "string"},
    "airports": {"faa": "string", "name": "string", "lat": "float64", "lon": "float64", "alt": "Int32",
                 "tz": "float64", "dst": "string", "tzone": "string"},
    "airlines": {"carrier": "string", "name": "string"},
}
THRESHOLD, LOOKBACK_HOURS, BUFFER_MINUTES = 15, 3, 120
NUMERIC = ["sched_dep_hour", "sched_dep_weekday", "month", "distance_miles", "plane_age_years", "temp_f",
           "dewpoint_f", "humidity_pct", "wind_dir_degrees", "wind_speed_mph", "wind_gust_mph", "precip_inches",
           "pressure_mb", "visibility_miles", "route_prior_flights", "route_delay_rate", "carrier_prior_flights",
           "carrier_delay_rate"]
CATEGORICAL = ["carrier", "origin", "dest"]


def ingest(landing: Path, out: Path) -> dict[str, pd.DataFrame]:
    bronze = {}
    for name, dtypes in SCHEMAS.items():
        parts = []
        for file in sorted((landing / name).glob("*.csv")):
            part = pd.read_csv(file, dtype=dtypes, na_values=["NA"], keep_default_na=False, engine="pyarrow")
            part["_source_file"] = str(file)
            parts.append(part)
        df = pd.concat(parts, ignore_index=True)
        df["_ingested_at"] = pd.Timestamp.now()
        df["_batch_id"] = "batch-1"
        df.to_parquet(out / f"bronze_{name}.parquet", index=False)
        bronze[name] = df
    return bronze


def utc(text: pd.Series) -> pd.Series:
    return pd.to_datetime(text, utc=True).dt.tz_localize(None)


def refine(bronze: dict[str, pd.DataFrame], out: Path) -> dict[str, pd.DataFrame]:
    f = bronze["flights"]
    sched_hour_at = utc(f["time_hour"])
    flights = pd.DataFrame({
        "year": f["year"], "month": f["month"], "day": f["day"], "carrier": f["carrier"], "flight": f["flight"],
        "origin": f["origin"], "dest": f["dest"], "tailnum": f["tailnum"],
        "flight_date": pd.to_datetime(dict(year=f["year"], month=f["month"], day=f["day"]), errors="coerce"),
        "sched_dep_hour": f["hour"], "sched_dep_hour_at": sched_hour_at,
        "sched_dep_at": sched_hour_at + pd.to_timedelta(f["minute"].fillna(0).astype("int64"), unit="min"),
        "dep_delay_minutes": f["dep_delay"], "arr_delay_minutes": f["arr_delay"],
        "air_time_minutes": f["air_time"], "distance_miles": f["distance"],
        "is_cancelled": f["dep_time"].isna(), "is_diverted": f["dep_time"].notna() & f["arr_delay"].isna(),
        "_source_file": f["_source_file"], "_ingested_at": f["_ingested_at"],
    })
    # The expectations with action `drop` in flights.yml.
    flights = flights[flights["flight_date"].notna() & flights["sched_dep_hour"].between(0, 23)
                      & flights["origin"].str.fullmatch(r"[A-Z]{3}") & flights["dest"].str.fullmatch(r"[A-Z]{3}")]
    w = bronze["weather"]
    weather = pd.DataFrame({
        "origin": w["origin"], "observed_hour_at": utc(w["time_hour"]).dt.floor("h"), "temp_f": w["temp"],
        "dewpoint_f": w["dewp"], "humidity_pct": w["humid"], "wind_dir_degrees": w["wind_dir"],
        "wind_speed_mph": w["wind_speed"], "wind_gust_mph": w["wind_gust"], "precip_inches": w["precip"],
        "pressure_mb": w["pressure"], "visibility_miles": w["visib"], "_source_file": w["_source_file"],
        "_ingested_at": w["_ingested_at"],
    }).dropna(subset=["observed_hour_at"])
    p = bronze["planes"]
    planes = pd.DataFrame({"tailnum": p["tailnum"].str.strip().str.upper(), "manufactured_year": p["year"],
                           "_source_file": p["_source_file"], "_ingested_at": p["_ingested_at"]})
    keys = {"flights": ["year", "month", "day", "carrier", "flight", "origin"],
            "weather": ["origin", "observed_hour_at"], "planes": ["tailnum"]}
    silver = {}
    for name, df in (("flights", flights), ("weather", weather), ("planes", planes)):
        # The last delivery of a key wins, as goldsmith's sequence_by (_ingested_at, _source_file).
        df = df.sort_values(["_ingested_at", "_source_file"], kind="stable").drop_duplicates(keys[name], keep="last")
        df.to_parquet(out / f"silver_{name}.parquet", index=False)
        silver[name] = df
    for name, key in (("airports", "faa"), ("airlines", "carrier")):
        silver[name] = bronze[name].drop_duplicates([key], keep="last")
        silver[name].to_parquet(out / f"silver_{name}.parquet", index=False)
    return silver


def running_prior(events: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Outcomes known strictly before each query, per `keys` (queries sort first at equal times)."""
    ordered = events.sort_values([*keys, "event_at", "event_order"], kind="stable")
    sums = ordered.groupby(keys, sort=False)[["outcome_count", "delayed_count"]].cumsum()
    queries = ordered["event_order"] == 0
    return pd.DataFrame({"flight_id": ordered.loc[queries, "flight_id"], "prior": sums.loc[queries, "outcome_count"],
                         "delayed": sums.loc[queries, "delayed_count"]})


def features(silver: dict[str, pd.DataFrame], out: Path) -> pd.DataFrame:
    f = silver["flights"].copy()
    f["flight_id"] = (f["year"].astype(str) + "-" + f["month"].astype(str) + "-" + f["day"].astype(str) + "-"
                      + f["carrier"] + "-" + f["flight"].astype(str) + "-" + f["origin"])
    label = (f["arr_delay_minutes"] >= THRESHOLD).astype("boolean")
    label[f["is_cancelled"] | f["arr_delay_minutes"].isna()] = pd.NA
    f["is_delayed"] = label
    minutes = (f["dep_delay_minutes"].fillna(0).clip(lower=0) + f["air_time_minutes"].fillna(0) + BUFFER_MINUTES)
    known_at = f["sched_dep_at"] + pd.to_timedelta(minutes.astype("int64"), unit="min")
    queries = pd.DataFrame({"flight_id": f["flight_id"], "origin": f["origin"], "dest": f["dest"],
                            "carrier": f["carrier"], "event_at": f["sched_dep_at"], "event_order": 0,
                            "outcome_count": 0, "delayed_count": 0})
    has_outcome = f["is_delayed"].notna()
    no_id = pd.Series(pd.NA, index=f.index, dtype=f["flight_id"].dtype)
    outcomes = pd.DataFrame({"flight_id": no_id, "origin": f["origin"], "dest": f["dest"], "carrier": f["carrier"],
                             "event_at": known_at, "event_order": 1, "outcome_count": 1,
                             "delayed_count": f["is_delayed"].fillna(False).astype("int64")})[has_outcome]
    events = pd.concat([queries, outcomes], ignore_index=True)
    route = running_prior(events, ["origin", "dest"]).rename(
        columns={"prior": "route_prior_flights", "delayed": "route_prior_delayed"})
    carrier = running_prior(events, ["carrier"]).rename(
        columns={"prior": "carrier_prior_flights", "delayed": "carrier_prior_delayed"})

    weather = silver["weather"].drop(columns=["_source_file", "_ingested_at"])
    latest = None
    for hours_before in range(1, LOOKBACK_HOURS + 1):  # the most recent complete hour first
        candidate = pd.DataFrame({"flight_id": f["flight_id"], "origin": f["origin"],
                                  "observed_hour_at": f["sched_dep_hour_at"] - pd.Timedelta(hours=hours_before)})
        found = candidate.merge(weather, on=["origin", "observed_hour_at"], how="inner")
        latest = found if latest is None else pd.concat(
            [latest, found[~found["flight_id"].isin(latest["flight_id"])]], ignore_index=True)
    assert latest is not None
    latest = latest.drop(columns=["origin"]).rename(columns={"observed_hour_at": "weather_observed_at"})

    gold = (f.merge(latest, on="flight_id", how="left")
            .merge(silver["planes"][["tailnum", "manufactured_year"]], on="tailnum", how="left")
            .merge(route, on="flight_id", how="left").merge(carrier, on="flight_id", how="left"))
    gold["sched_dep_weekday"] = (gold["flight_date"].dt.dayofweek + 1) % 7 + 1  # Spark: Sunday = 1
    gold["plane_age_years"] = gold["year"] - gold["manufactured_year"]
    gold["route_delay_rate"] = gold["route_prior_delayed"] / gold["route_prior_flights"].replace(0, np.nan)
    gold["carrier_delay_rate"] = gold["carrier_prior_delayed"] / gold["carrier_prior_flights"].replace(0, np.nan)
    gold = gold.drop(columns=["manufactured_year", "route_prior_delayed", "carrier_prior_delayed", "_source_file",
                              "_ingested_at", "dep_delay_minutes", "arr_delay_minutes", "air_time_minutes",
                              "sched_dep_hour_at"])
    gold.to_parquet(out / "gold_flight_features.parquet", index=False)
    return gold


# The gold-table aggregates scripts/bench.py compares across implementations, in this order.
CHECKSUMS = ("rows", "route_prior_flights", "carrier_prior_flights", "with_weather", "delayed", "plane_age_sum")


def checksums(gold: pd.DataFrame) -> dict[str, float]:
    values = (len(gold), gold["route_prior_flights"].sum(), gold["carrier_prior_flights"].sum(),
              gold["temp_f"].notna().sum(), gold["is_delayed"].fillna(False).astype(int).sum(),
              gold["plane_age_years"].sum())
    return {k: float(v) for k, v in zip(CHECKSUMS, values, strict=True)}


def train_and_score(gold: pd.DataFrame, out: Path) -> dict[str, float]:
    """The pipeline's five candidates on its time split; the best on validation ROC AUC scores the window."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    data = gold[gold["is_delayed"].notna()]
    date = data["flight_date"]
    train = data[date < "2013-09-01"]
    valid = data[(date >= "2013-09-01") & (date < "2013-11-01")]
    test = data[(date >= "2013-11-01") & (date < "2013-12-01")]
    columns = NUMERIC + CATEGORICAL

    def frame(df: pd.DataFrame) -> pd.DataFrame:
        x = df[columns].copy()
        x[NUMERIC] = x[NUMERIC].astype("float64")
        x[CATEGORICAL] = x[CATEGORICAL].astype(object).fillna("missing")
        return x

    candidates = {"logistic_regression": make_pipeline(ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
        ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)]), LogisticRegression(C=1.0, max_iter=1000))}
    for rate in (0.05, 0.1):
        for leaves in (15, 31):
            candidates[f"hgb_lr{rate}_leaves{leaves}"] = make_pipeline(ColumnTransformer([
                ("num", "passthrough", NUMERIC),
                ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), CATEGORICAL)]),
                HistGradientBoostingClassifier(learning_rate=rate, max_leaf_nodes=leaves, random_state=0,
                                               categorical_features=list(range(len(NUMERIC), len(columns)))))
    x_train, y_train = frame(train), train["is_delayed"].astype(int)
    scores = {}
    for name, model in candidates.items():
        model.fit(x_train, y_train)
        scores[name] = roc_auc_score(valid["is_delayed"].astype(int), model.predict_proba(frame(valid))[:, 1])
    best = max(scores, key=scores.__getitem__)
    model = candidates[best]
    test_auc = roc_auc_score(test["is_delayed"].astype(int), model.predict_proba(frame(test))[:, 1])
    window = gold[gold["flight_date"] >= "2013-12-01"]
    predictions = pd.DataFrame({"flight_id": window["flight_id"],
                                "probability": model.predict_proba(frame(window))[:, 1]})
    predictions.to_parquet(out / "gold_flight_delay_predictions.parquet", index=False)
    return {"best_validation_auc": scores[best], "test_auc": test_auc, "scored_rows": float(len(predictions))}


def main(landing: Path, out: Path) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, object] = {}
    started = time.perf_counter()
    bronze = ingest(landing, out)
    timings["ingest"] = time.perf_counter() - started
    mark = time.perf_counter()
    silver = refine(bronze, out)
    del bronze
    timings["refine"] = time.perf_counter() - mark
    mark = time.perf_counter()
    gold = features(silver, out)
    del silver
    timings["features"] = time.perf_counter() - mark
    timings["etl"] = time.perf_counter() - started
    mark = time.perf_counter()
    timings["model"] = train_and_score(gold, out)
    timings["train_score"] = time.perf_counter() - mark
    timings["checksums"] = checksums(gold)
    timings["total"] = time.perf_counter() - started
    return timings


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
