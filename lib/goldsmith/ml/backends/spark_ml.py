"""spark-ml: Spark ML pipelines (imputation, one-hot categories, TF-IDF text, an estimator), natively distributed."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from pyspark import StorageLevel
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import (
    IDF,
    CountVectorizer,
    Imputer,
    NGram,
    OneHotEncoder,
    RegexTokenizer,
    SQLTransformer,
    StopWordsRemover,
    StringIndexer,
    VectorAssembler,
)
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from goldsmith.errors import ConfigError
from goldsmith.ml.base import (
    LABEL,
    PRED,
    PROBA,
    WEIGHT,
    Backend,
    Candidate,
    Predictor,
    Problem,
    TrainingSets,
    feature_columns,
    requirements,
    with_feature_types,
)
from goldsmith.timing import Timer

log = logging.getLogger("goldsmith")

# Featurisation settings a user may set in trainer.params next to the estimator's own (camelCase) params.
TEXT_PARAMS = {"vocab_size": 20_000, "min_df": 2.0, "ngrams": 2}
# Candidates (and label review's folds) fitted side by side in one application.
FITS_AT_ONCE = 3


def _estimator(problem: Problem, algorithm: str) -> Any:
    from pyspark.ml import classification as c
    from pyspark.ml import regression as r

    classifier = problem.is_classifier
    cls = {
        ("logistic_regression", True): c.LogisticRegression,
        ("gbt", True): c.GBTClassifier,
        ("random_forest", True): c.RandomForestClassifier,
        ("linear_regression", False): r.LinearRegression,
        ("gbt", False): r.GBTRegressor,
        ("random_forest", False): r.RandomForestRegressor,
    }[(algorithm, classifier)]
    estimator = cls(featuresCol="__features", labelCol=LABEL, predictionCol="__prediction")
    if estimator.hasParam("weightCol"):
        estimator.setWeightCol(WEIGHT)
    if estimator.hasParam("seed"):
        estimator.setSeed(problem.seed)
    if classifier:
        estimator.setProbabilityCol("__probability").setRawPredictionCol("__raw")
    return estimator


def check_params(problem: Problem, algorithm: str, params: dict[str, Any]) -> Any:
    """The configured estimator; unknown or invalid params are a ConfigError naming them."""
    estimator = _estimator(problem, algorithm)
    own = {k: v for k, v in params.items() if k not in TEXT_PARAMS}
    unknown = [k for k in own if not estimator.hasParam(k)]
    if unknown:
        choices = ", ".join(sorted(p.name for p in estimator.params if p.name not in ("featuresCol", "labelCol")))
        raise ConfigError(f"trainer.params: {algorithm} has no parameter {unknown[0]!r} (Spark ML names: {choices})")
    try:
        estimator.setParams(**own)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"trainer.params for {algorithm}: {exc}") from None
    return estimator


def featurizer(problem: Problem, params: dict[str, Any]) -> Pipeline:
    """Imputed numbers, one-hot categories and TF-IDF text assembled into `__features`."""
    features = problem.features
    text_settings = {k: params.get(k, v) for k, v in TEXT_PARAMS.items()}
    stages: list[Any] = []
    vectors: list[str] = []
    if features.numeric:
        imputed = [f"__num_{c}" for c in features.numeric]
        stages.append(Imputer(inputCols=features.numeric, outputCols=imputed, strategy="median"))
        vectors += imputed
    if features.categorical:
        indexed = [f"__idx_{c}" for c in features.categorical]
        onehot = [f"__ohe_{c}" for c in features.categorical]
        stages += [
            StringIndexer(inputCols=features.categorical, outputCols=indexed, handleInvalid="keep"),
            OneHotEncoder(inputCols=indexed, outputCols=onehot, handleInvalid="keep"),
        ]
        vectors += onehot
    for column in features.text:
        filled = f"__txt_{column}"
        stages += [
            SQLTransformer(statement=f"SELECT *, coalesce(`{column}`, '') AS `{filled}` FROM __THIS__"),
            RegexTokenizer(inputCol=filled, outputCol=f"{filled}_tok", pattern="[^\\p{L}\\p{N}']+", minTokenLength=2),
            StopWordsRemover(inputCol=f"{filled}_tok", outputCol=f"{filled}_words",
                             stopWords=[w for w in StopWordsRemover.loadDefaultStopWords("english")
                                        if w not in NEGATIONS]),
        ]
        grams = [f"{filled}_words"]
        for n in range(2, int(text_settings["ngrams"]) + 1):
            stages.append(NGram(n=n, inputCol=f"{filled}_words", outputCol=f"{filled}_{n}gram"))
            grams.append(f"{filled}_{n}gram")
        for gram in grams:
            stages += [
                CountVectorizer(inputCol=gram, outputCol=f"{gram}_tf", vocabSize=int(text_settings["vocab_size"]),
                                minDF=float(text_settings["min_df"])),
                IDF(inputCol=f"{gram}_tf", outputCol=f"{gram}_tfidf"),
            ]
            vectors.append(f"{gram}_tfidf")
    stages.append(VectorAssembler(inputCols=vectors, outputCol="__features", handleInvalid="keep"))
    return Pipeline(stages=stages)


# Negations carry sentiment ("not good"): kept when stop words are removed.
NEGATIONS = frozenset({"no", "not", "nor", "don't", "didn't", "doesn't", "isn't", "wasn't", "won't", "can't",
                       "couldn't", "wouldn't", "shouldn't", "haven't", "hasn't", "aren't", "weren't"})


class SparkMLPredictor(Predictor):
    """A fitted Spark ML PipelineModel; logged with MLflow's spark flavour."""

    flavor = "spark"

    def __init__(self, problem: Problem, model: PipelineModel) -> None:
        super().__init__(problem)
        self.model = model

    def transform(self, df: DataFrame) -> DataFrame:
        names = self.problem.features.all
        keep = [c for c in df.columns if c not in names]
        out = self.model.transform(with_feature_types(df, self.problem.features))
        if self.problem.is_classifier:
            return out.select(
                *keep, *names, F.col("__prediction").cast("int").alias(PRED),
                vector_to_array(F.col("__probability")).alias(PROBA),
            )
        return out.select(*keep, *names, F.col("__prediction").cast("double").alias(PRED))

    def log_model(self, name: str, signature: Any, input_example: Any) -> Any:
        import mlflow
        import mlflow.spark

        # MLflow's Spark flavour would check an input example by predicting through its own `prediction`
        # column (goldsmith's pipelines name theirs differently): the example is a run artifact instead.
        mlflow.log_dict(json.loads(input_example.to_json(orient="split", date_format="iso")),
                        f"{name}_input_example.json")
        return mlflow.spark.log_model(
            self.model, artifact_path=name, signature=signature, pip_requirements=requirements("pyspark", "mlflow"),
        )


class SparkMLBackend(Backend):
    """Each candidate is one Spark ML pipeline fitted on the cluster, `FITS_AT_ONCE` candidates at a time.

    A fit on a small or mid-sized table is a series of small jobs (an L-BFGS iteration, a tree level), each
    waiting on the driver; fits side by side keep the executors busy between one fit's jobs (what Spark's
    `CrossValidator(parallelism=...)` does). 979 reviews, 3 candidates, 2 cores: 7.9 s one by one, see the
    issue 15 note for the measurement side by side."""

    name: ClassVar[str] = "spark-ml"
    trainings_at_once: ClassVar[int] = FITS_AT_ONCE

    def train(self, problem: Problem, sets: TrainingSets) -> list[Candidate]:
        """Featurise once per distinct featurisation setting (cached), then fit each candidate's estimator on it."""
        candidates = problem.spec.trainer.candidates()
        estimators = [check_params(problem, algorithm, params) for algorithm, params in candidates]  # fail early
        train = sets.train.select(*problem.spec.keys, *feature_columns(problem.features), LABEL, WEIGHT)
        featurizers: dict[str, tuple[PipelineModel, DataFrame]] = {}

        def fit(i: int) -> Candidate:
            (algorithm, params), estimator = candidates[i], estimators[i]
            fitted, featurized = featurizers[_featurizer_key(params)]
            with Timer() as watch:
                model = PipelineModel(stages=[*fitted.stages, estimator.fit(featurized)])
            log.info("  candidate %d/%d %s fitted (%.1f s)", i + 1, len(candidates), algorithm, watch.seconds)
            return Candidate(algorithm, params, SparkMLPredictor(problem, model), watch.seconds)

        try:
            with Timer() as featurizing:
                for _, params in candidates:
                    key = _featurizer_key(params)
                    if key not in featurizers:
                        fitted = featurizer(problem, params).fit(train)
                        featurized = fitted.transform(train).select("__features", LABEL, WEIGHT)
                        featurizers[key] = (fitted, featurized.persist(StorageLevel.MEMORY_AND_DISK))
            log.info("  %d featurisation(s) fitted (%.1f s)", len(featurizers), featurizing.seconds)
            if len(candidates) == 1:
                return [fit(0)]
            with ThreadPoolExecutor(max_workers=min(FITS_AT_ONCE, len(candidates)),
                                    thread_name_prefix="goldsmith-fit") as pool:
                return list(pool.map(fit, range(len(candidates))))
        finally:
            for _, featurized in featurizers.values():
                featurized.unpersist()


def _featurizer_key(params: dict[str, Any]) -> str:
    """Candidates with the same featurisation settings share one fitted featurizer."""
    return repr(sorted((k, params.get(k, v)) for k, v in TEXT_PARAMS.items()))
