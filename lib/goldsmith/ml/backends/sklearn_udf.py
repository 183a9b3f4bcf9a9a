"""scikit-learn on the Spark workers, through pandas UDFs.

Two modes:

* candidate search (no `group_by`): the train and validation sets are written once as Parquet under
  `<workdir>/sklearn/`; a DataFrame with one row (and one partition) per candidate is mapped with `mapInPandas`,
  and each task reads the snapshots with pyarrow, fits its candidate, scores the validation set and returns the
  pickled model with its validation metrics. Only models and metrics reach the driver.
* one model per group (`group_by`): train and validation rows are grouped by the group column and each group
  is fitted with `applyInPandas`; a fallback model of all groups is fitted in the same job. The result is one
  candidate whose model sends each row to its group's model, or to the fallback for a group without one (too
  few training rows, a single class, unseen, null). Its `validation_metrics` are left empty: the caller
  evaluates the predictor on the whole validation set with Spark. The children carry each group's own
  validation metrics, and `info["fallback_metrics"]` those of the fallback on the whole validation set.

The model is a Pipeline: numeric features are imputed (median, with missing-value indicators) and scaled,
categorical ones imputed with a constant and one-hot encoded (rare and unseen values share one column), each text
feature turned into TF-IDF; then the estimator, fitted with `_weight` as `sample_weight`. Gradient boosting without
text features takes numbers as they are and categories as ordinal codes instead (it splits on both natively).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    DataType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from goldsmith.errors import ConfigError, StageFailed
from goldsmith.io.object_store import arrow_options
from goldsmith.ml.base import (
    LABEL,
    WEIGHT,
    Backend,
    Candidate,
    ChildResult,
    PandasModel,
    Problem,
    TrainingSets,
)
from goldsmith.ml.pandas_predictor import PyfuncPredictor
from goldsmith.ml.snapshots import read_snapshot, sample_rows, write_snapshot

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

log = logging.getLogger("goldsmith")

MISSING = "__missing__"
MIN_CATEGORY_ROWS = 5  # rarer categorical values share the "infrequent" column
TFIDF_TERMS = 2000  # vocabulary per text feature (sparse estimators)
TFIDF_TERMS_DENSE = 200  # vocabulary per text feature for hist_gradient_boosting, which needs dense input
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"logistic_regression": {"max_iter": 1000}}
SPLIT = "_split"
FALLBACK = "_fallback"
GROUP = "_group"


def estimator_class(problem: Problem, algorithm: str) -> type:
    """The scikit-learn estimator behind an sklearn-udf algorithm name."""
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    known: dict[str, type] = (
        {
            "logistic_regression": LogisticRegression,
            "hist_gradient_boosting": HistGradientBoostingClassifier,
            "random_forest": RandomForestClassifier,
        }
        if problem.is_classifier
        else {
            "ridge": Ridge,
            "hist_gradient_boosting": HistGradientBoostingRegressor,
            "random_forest": RandomForestRegressor,
        }
    )
    if algorithm not in known:
        raise ConfigError(
            f"trainer: sklearn-udf has no {problem.task} algorithm {algorithm!r} (choose from {', '.join(known)})"
        )
    return known[algorithm]


def make_estimator(problem: Problem, algorithm: str, params: dict[str, Any]) -> Any:
    """A new, unfitted estimator with `params`, seeded with `problem.seed`; ConfigError on an unknown parameter."""
    cls = estimator_class(problem, algorithm)
    accepted = set(cls().get_params())
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(
            f"trainer: {algorithm} ({cls.__name__}) has no parameter {unknown[0]!r} "
            f"(it takes {', '.join(sorted(accepted))})"
        )
    settings = {**DEFAULT_PARAMS.get(algorithm, {}), **params}
    if "random_state" in accepted:
        settings.setdefault("random_state", problem.seed)
    return cls(**settings)


def build_pipeline(
    numeric: tuple[str, ...], categorical: tuple[str, ...], text: tuple[str, ...], estimator: Any, dense: bool
) -> Pipeline:
    """The feature encoding plus `estimator`; `dense` makes every step's output a dense array."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    parts: list[tuple[str, Any, Any]] = []
    if dense and not text and hasattr(estimator, "categorical_features"):
        # Gradient-boosted trees split on missing values and on categories natively: numbers pass through,
        # categories become ordinal codes (rare ones grouped, unseen ones missing), 5-10x faster than one-hot.
        if numeric:
            parts.append(("numeric", "passthrough", list(numeric)))
        if categorical:
            parts.append(("categorical", OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan,
                min_frequency=MIN_CATEGORY_ROWS, max_categories=250,
            ), list(categorical)))
            if estimator.get_params().get("categorical_features") in (None, "from_dtype"):
                estimator.set_params(categorical_features=list(range(len(numeric), len(numeric) + len(categorical))))
        return Pipeline([("features", ColumnTransformer(parts, sparse_threshold=0.0)), ("model", estimator)])
    if numeric:
        scale = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
        parts.append(("numeric", scale, list(numeric)))
    if categorical:
        encode = make_pipeline(
            SimpleImputer(strategy="constant", fill_value=MISSING),
            OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_CATEGORY_ROWS,
                          sparse_output=not dense),
        )
        parts.append(("categorical", encode, list(categorical)))
    for column in text:
        # A single column name (not a list) hands the vectorizer a 1-d series of documents.
        parts.append((f"text_{column}", TfidfVectorizer(max_features=TFIDF_TERMS_DENSE if dense else TFIDF_TERMS),
                      column))
    encoder = ColumnTransformer(parts, sparse_threshold=0.0 if dense else 0.3)
    return Pipeline([("features", encoder), ("model", estimator)])


class SklearnModel(PandasModel):
    """A fitted Pipeline over goldsmith's features. Probabilities have a column for every class of the problem,
    also for classes absent from this model's training rows (probability 0)."""

    def __init__(
        self, pipeline: Pipeline, numeric: tuple[str, ...], categorical: tuple[str, ...], text: tuple[str, ...],
        n_classes: int,
    ) -> None:
        self.pipeline = pipeline
        self.numeric = numeric
        self.categorical = categorical
        self.text = text
        self.n_classes = n_classes

    def frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """The features as the pipeline expects them: NaN for a missing category, "" for a missing text."""
        import pandas as pd

        out = pd.DataFrame(index=features.index)
        for c in self.numeric:
            out[c] = pd.to_numeric(features[c], errors="coerce").astype("float64")
        for c in self.categorical:
            values = features[c].astype(object)
            out[c] = values.where(values.notna(), np.nan)
        for c in self.text:
            values = features[c].astype(object)
            out[c] = values.where(values.notna(), "").astype(str)
        return out

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(features), self.n_classes))
        if len(features):
            proba = self.pipeline.predict_proba(self.frame(features))
            out[:, np.asarray(self.pipeline.classes_, dtype=np.int64)] = proba
        return out

    def predict_value(self, features: pd.DataFrame) -> np.ndarray:
        if not len(features):
            return np.zeros(0)
        return np.asarray(self.pipeline.predict(self.frame(features)), dtype="float64")


class PerGroupModel(PandasModel):
    """One model per value of a feature column; rows of any other value (or null) go to the fallback model."""

    def __init__(self, column: str, models: dict[Any, SklearnModel], fallback: SklearnModel) -> None:
        self.column = column
        self.models = models
        self.fallback = fallback

    def _dispatch(self, features: pd.DataFrame, predict: Callable[[SklearnModel, pd.DataFrame], np.ndarray],
                  width: int | None) -> np.ndarray:
        import pandas as pd

        out = np.zeros((len(features), width) if width else len(features))
        keys = features[self.column]
        own = keys.isin(list(self.models)).to_numpy() & keys.notna().to_numpy()
        for value in pd.unique(keys[own]):
            rows = own & (keys == value).to_numpy()
            out[rows] = predict(self.models[value], features[rows])
        if (~own).any():
            out[~own] = predict(self.fallback, features[~own])
        return out

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self._dispatch(features, lambda m, f: m.predict_proba(f), self.fallback.n_classes)

    def predict_value(self, features: pd.DataFrame) -> np.ndarray:
        return self._dispatch(features, lambda m, f: m.predict_value(f), None)


@dataclass
class Fitted:
    """What a worker returns for one model."""

    model: SklearnModel
    metrics: dict[str, float]
    seconds: float


def fit_and_score(
    problem: Problem, algorithm: str, params: dict[str, Any], train: pd.DataFrame, validation: pd.DataFrame
) -> Fitted:
    """Fit one pipeline on `train` (features, `_label`, `_weight`) and evaluate it on `validation` (if any rows)."""
    from goldsmith.ml.metrics import evaluate_numpy

    features = problem.features
    model = SklearnModel(
        build_pipeline(
            tuple(features.numeric), tuple(features.categorical), tuple(features.text),
            make_estimator(problem, algorithm, params), dense=algorithm == "hist_gradient_boosting",
        ),
        tuple(features.numeric), tuple(features.categorical), tuple(features.text), problem.n_classes,
    )
    labels = train[LABEL].to_numpy(dtype=np.int64 if problem.is_classifier else np.float64)
    weights = train[WEIGHT].to_numpy(dtype=np.float64)
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    with threadpool_limits(limits=1):  # Spark runs one fit per core: no nested threads competing for them
        model.pipeline.fit(model.frame(train), labels, model__sample_weight=weights)
    seconds = time.perf_counter() - start
    metrics: dict[str, float] = {}
    if len(validation):
        rows = validation[features.all]
        output = model.predict_proba(rows) if problem.is_classifier else model.predict_value(rows)
        metrics = evaluate_numpy(problem, validation[LABEL].to_numpy(), output).metrics
    return Fitted(model, metrics, seconds)


def _label(algorithm: str, params: dict[str, Any]) -> str:
    """A candidate's name in messages, as `Candidate.label` (which needs a trained predictor)."""
    shown = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{algorithm}[{shown}]" if shown else algorithm


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _metric_note(problem: Problem, metrics: dict[str, float]) -> str:
    name = problem.spec.metric
    return f"{name} {metrics[name]:.4f}" if name in metrics else "no validation rows"


class SklearnUdfBackend(Backend):
    """scikit-learn pipelines trained on Spark workers: candidates in parallel, or one model per group."""

    name = "sklearn-udf"

    def train(self, problem: Problem, sets: TrainingSets) -> list[Candidate]:
        trainer = problem.spec.trainer
        candidates = trainer.candidates()
        for algorithm, params in candidates:
            make_estimator(problem, algorithm, params)
        if trainer.group_by is not None:
            if len(candidates) != 1:
                raise ConfigError("trainer: group_by trains one algorithm with one set of params, not a search")
            return [self._train_groups(problem, sets, trainer.group_by, *candidates[0])]
        return self._search(problem, sets, candidates)

    # --- candidate search -----------------------------------------------------------------------------------

    def _search(
        self, problem: Problem, sets: TrainingSets, candidates: list[tuple[str, dict[str, Any]]]
    ) -> list[Candidate]:
        import cloudpickle

        columns = [*problem.features.all, LABEL, WEIGHT]
        base = sets.workdir.rstrip("/") + "/sklearn"
        train_uri, validation_uri = f"{base}/train", f"{base}/validation"
        write_snapshot(sample_rows(sets.train.select(*columns), problem.spec.trainer.max_train_rows, problem.seed),
                       train_uri)
        write_snapshot(sets.validation.select(*columns), validation_uri)
        # On an object store the workers' pyarrow reads the snapshots with the application's S3A settings.
        store = arrow_options(sets.train.sparkSession.sparkContext._jsc.hadoopConfiguration(), train_uri)

        def fit(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            import pandas as pd

            snapshots: list[pd.DataFrame] = []
            for batch in batches:
                results = []
                for index in batch["id"]:
                    algorithm, params = candidates[int(index)]
                    row: dict[str, Any] = {"index": int(index), "model": None, "metrics": "{}", "train_rows": 0,
                                           "validation_rows": 0, "seconds": 0.0, "error": None}
                    try:
                        if not snapshots:
                            snapshots.extend([read_snapshot(train_uri, store), read_snapshot(validation_uri, store)])
                        train, validation = snapshots
                        fitted = fit_and_score(problem, algorithm, params, train, validation)
                        row.update(model=cloudpickle.dumps(fitted.model), metrics=json.dumps(fitted.metrics),
                                   train_rows=len(train), validation_rows=len(validation), seconds=fitted.seconds)
                    except Exception as exc:
                        row["error"] = _error(exc)
                    results.append(row)
                yield pd.DataFrame(results, columns=list(SEARCH_SCHEMA.fieldNames()))

        spark = sets.train.sparkSession
        n = len(candidates)
        log.info("  sklearn-udf: %d candidate(s) on the workers", n)
        # spark.range with n partitions puts exactly one candidate in each task.
        rows = spark.range(0, n, 1, n).mapInPandas(fit, SEARCH_SCHEMA).collect()
        found: dict[int, Candidate] = {}
        for row in sorted(rows, key=lambda r: r["index"]):
            index = row["index"]
            algorithm, params = candidates[index]
            candidate_label = _label(algorithm, params)
            if row["error"] is not None:
                raise StageFailed(f"sklearn-udf candidate {index + 1}/{n} {candidate_label} failed: {row['error']}")
            metrics = json.loads(row["metrics"])
            model = cloudpickle.loads(bytes(row["model"]))
            found[index] = Candidate(
                algorithm=algorithm,
                params=params,
                predictor=PyfuncPredictor(problem, model),
                train_seconds=float(row["seconds"]),
                validation_metrics=metrics,
                info={"train_rows": int(row["train_rows"]), "validation_rows": int(row["validation_rows"])},
            )
            log.info("  candidate %d/%d %s: %s (%.1f s)", index + 1, n, candidate_label,
                     _metric_note(problem, metrics), row["seconds"])
        missing = sorted(set(range(n)) - set(found))
        if missing:
            raise StageFailed(f"sklearn-udf: no result for candidate(s) {', '.join(str(i + 1) for i in missing)}")
        return [found[i] for i in range(n)]

    # --- one model per group --------------------------------------------------------------------------------

    def _train_groups(
        self, problem: Problem, sets: TrainingSets, group_by: str, algorithm: str, params: dict[str, Any]
    ) -> Candidate:
        import cloudpickle

        if group_by not in sets.train.columns:
            raise ConfigError(f"trainer: group_by column {group_by!r} is not in the training data")
        if group_by not in problem.features.all:
            raise ConfigError(
                f"trainer: group_by column {group_by!r} must be one of the model's features (e.g. categorical): "
                "predictions pick each row's model by it"
            )
        trainer = problem.spec.trainer
        group_type = sets.train.schema[group_by].dataType
        columns = [*problem.features.all, LABEL, WEIGHT]
        train = sets.train.select(*columns, F.lit("train").alias(SPLIT))
        validation = sets.validation.select(*columns, F.lit("validation").alias(SPLIT))
        own = train.unionByName(validation).where(F.col(group_by).isNotNull()) \
            .select("*", F.lit(False).alias(FALLBACK), F.col(group_by).alias(GROUP))
        everything = sample_rows(train, trainer.max_train_rows, problem.seed).unionByName(validation) \
            .select("*", F.lit(True).alias(FALLBACK), F.lit(None).cast(group_type).alias(GROUP))
        schema = _group_schema(group_type)
        min_rows, limit, seed = trainer.min_group_rows, trainer.max_train_rows, problem.seed

        def fit(key: tuple[Any, ...], pdf: pd.DataFrame) -> pd.DataFrame:
            import pandas as pd

            is_fallback, value = key
            fit_rows = pdf[pdf[SPLIT] == "train"]
            score_rows = pdf[pdf[SPLIT] == "validation"]
            row: dict[str, Any] = {FALLBACK: bool(is_fallback), GROUP: value, "model": None, "metrics": "{}",
                                   "train_rows": len(fit_rows), "validation_rows": len(score_rows),
                                   "seconds": 0.0, "status": "ok", "error": None}
            if not is_fallback and len(fit_rows) < min_rows:
                row["status"] = "small"
            elif not is_fallback and problem.is_classifier and fit_rows[LABEL].nunique() < 2:
                row["status"] = "single_class"
            else:
                if limit is not None and not is_fallback and len(fit_rows) > limit:
                    fit_rows = fit_rows.sample(n=limit, random_state=seed)
                    row["train_rows"] = limit
                try:
                    fitted = fit_and_score(problem, algorithm, params, fit_rows, score_rows)
                    row.update(model=cloudpickle.dumps(fitted.model), metrics=json.dumps(fitted.metrics),
                               seconds=fitted.seconds)
                except Exception as exc:
                    row["error"] = _error(exc)
            return pd.DataFrame([row], columns=list(schema.fieldNames()))

        spark = sets.train.sparkSession
        partitions = max(1, int(spark.conf.get("spark.sql.shuffle.partitions") or "1"))
        started = time.perf_counter()
        # An explicit repartition on the grouping keys: adaptive execution does not coalesce it into one task
        # (the data is small, the work is not), and the groupBy reuses it without another shuffle.
        rows = (
            own.unionByName(everything)
            .repartition(partitions, FALLBACK, GROUP)
            .groupBy(FALLBACK, GROUP)
            .applyInPandas(fit, schema)
            .collect()
        )
        wall = time.perf_counter() - started

        label = _label(algorithm, params)
        failed = [r for r in rows if r["error"] is not None]
        if failed:
            first = failed[0]
            where = "the model of all groups" if first[FALLBACK] else f"group {group_by}={first[GROUP]}"
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise StageFailed(f"sklearn-udf {label}: {where} failed{more}: {first['error']}")
        fallback_rows = [r for r in rows if r[FALLBACK]]
        if not fallback_rows:
            raise StageFailed(f"sklearn-udf {label}: no training rows")
        fallback_row = fallback_rows[0]
        fallback = cloudpickle.loads(bytes(fallback_row["model"]))

        models: dict[Any, SklearnModel] = {}
        children: list[ChildResult] = []
        on_fallback = 0
        for row in sorted((r for r in rows if not r[FALLBACK]), key=lambda r: str(r[GROUP])):
            name = f"{group_by}={row[GROUP]}"
            if row["model"] is None:
                on_fallback += 1
                why = ("a single class" if row["status"] == "single_class"
                       else f"{row['train_rows']} training rows < min_group_rows {min_rows}")
                log.info("  group %s: %s, uses the model of all groups", name, why)
                continue
            models[row[GROUP]] = cloudpickle.loads(bytes(row["model"]))
            metrics = json.loads(row["metrics"])
            children.append(ChildResult(name=name, params=params, metrics=metrics, rows=int(row["train_rows"])))
            log.info("  group %s: %s (%d training rows, %.1f s)", name, _metric_note(problem, metrics),
                     row["train_rows"], row["seconds"])
        fallback_metrics = json.loads(fallback_row["metrics"])
        log.info("  all groups (fallback): %s (%d training rows, %.1f s); %d group model(s), %d group(s) on the "
                 "fallback, %.1f s in all", _metric_note(problem, fallback_metrics), fallback_row["train_rows"],
                 fallback_row["seconds"], len(models), on_fallback, wall)
        return Candidate(
            algorithm=algorithm,
            params=params,
            predictor=PyfuncPredictor(problem, PerGroupModel(group_by, models, fallback)),
            train_seconds=wall,
            children=children,
            info={
                "group_by": group_by,
                "group_models": len(models),
                "groups_on_fallback": on_fallback,
                "train_rows": int(fallback_row["train_rows"]),
                "validation_rows": int(fallback_row["validation_rows"]),
                "fallback_metrics": fallback_metrics,
            },
        )


SEARCH_SCHEMA = StructType([
    StructField("index", LongType()),
    StructField("model", BinaryType()),
    StructField("metrics", StringType()),
    StructField("train_rows", LongType()),
    StructField("validation_rows", LongType()),
    StructField("seconds", DoubleType()),
    StructField("error", StringType()),
])


def _group_schema(group_type: DataType) -> StructType:
    return StructType([
        StructField(FALLBACK, BooleanType()),
        StructField(GROUP, group_type),
        *[f for f in SEARCH_SCHEMA.fields if f.name != "index"],
        StructField("status", StringType()),
    ])
