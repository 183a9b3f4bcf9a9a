"""The one interface every training backend implements, and the pieces they share.

Inside goldsmith a model sees its features with normalised types (numeric -> DOUBLE, categorical and text ->
STRING, see `feature_columns`) and a label column `_label`: the class index (0..k-1, in `Problem.classes` order)
for classification, the value for regression. A trained model is a `Predictor`: it adds `_pred` (class index, or
value) and, for classification, `_proba` (ARRAY<DOUBLE>, one probability per class) to a Spark DataFrame.
Backends that train in Python (scikit-learn, PyTorch) implement a small `PandasModel` and get a `Predictor`
(distributed prediction with a pandas UDF, MLflow pyfunc logging) from `goldsmith.ml.pandas_predictor`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, DoubleType, IntegerType, StructField, StructType

from goldsmith.config.models import FeatureSet, ModelSpec

if TYPE_CHECKING:
    import pandas as pd

LABEL = "_label"
PRED = "_pred"
PROBA = "_proba"
WEIGHT = "_weight"


@dataclass(frozen=True)
class Problem:
    """What is being learnt: the model's spec plus what was found in the data (classes, label type)."""

    name: str
    spec: ModelSpec
    classes: tuple[str, ...] = ()
    label_type: str = "double"
    class_weights: tuple[float, ...] = ()
    seed: int = 42

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def features(self) -> FeatureSet:
        return self.spec.features

    @property
    def is_classifier(self) -> bool:
        return self.spec.task != "regression"

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass
class TrainingSets:
    """The split data, each with the key columns, the features (normalised types), `_label` and `_weight`.

    `workdir` is a scratch folder on storage every executor can read (under the lakehouse root); backends
    that train outside the JVM snapshot their data there as Parquet (`goldsmith.ml.snapshots`). It is removed after
    training.
    """

    train: DataFrame
    validation: DataFrame
    test: DataFrame
    workdir: str


@dataclass
class ChildResult:
    """One per-group model (a child run of the training run): its group, size and validation metrics."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    rows: int


@dataclass
class Candidate:
    """One trained model: its algorithm and parameters, and how long it took.

    `validation_metrics` may be filled by the backend (computed where the model was trained, with
    `goldsmith.ml.metrics`); otherwise the trainer evaluates `predictor` on the validation set.
    """

    algorithm: str
    params: dict[str, Any]
    predictor: Predictor
    train_seconds: float
    validation_metrics: dict[str, float] = field(default_factory=dict)
    children: list[ChildResult] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.algorithm}[{shown}]" if shown else self.algorithm


class Backend(ABC):
    """A training backend: trains every candidate of the spec's trainer config."""

    name: ClassVar[str]
    # How many of this backend's trainings (of label review's folds) may run at once in one application. A
    # backend whose training is a few small Spark jobs driven from the driver (spark-ml) leaves the cores idle
    # between jobs; one that fills every core (a pandas UDF per candidate) or holds every slot (barrier mode)
    # trains one at a time.
    trainings_at_once: ClassVar[int] = 1

    @abstractmethod
    def train(self, problem: Problem, sets: TrainingSets) -> list[Candidate]:
        """Train each (algorithm, params) of `problem.spec.trainer.candidates()`; one Candidate each."""


class Predictor(ABC):
    """A trained model that predicts on Spark DataFrames and logs itself to MLflow."""

    flavor: ClassVar[str]

    def __init__(self, problem: Problem) -> None:
        self.problem = problem

    @abstractmethod
    def transform(self, df: DataFrame) -> DataFrame:
        """`df` (with at least the feature columns, any types castable) plus `_pred` and `_proba`."""

    @abstractmethod
    def log_model(self, name: str, signature: Any, input_example: pd.DataFrame) -> Any:
        """Log to the active MLflow run under `name`; return MLflow's ModelInfo."""


def feature_columns(features: FeatureSet) -> list[Column]:
    """The features with the types every backend trains and predicts on."""
    return [
        *[F.col(c).cast("double").alias(c) for c in features.numeric],
        *[F.col(c).cast("string").alias(c) for c in [*features.categorical, *features.text]],
    ]


def with_feature_types(df: DataFrame, features: FeatureSet) -> DataFrame:
    """`df`'s other columns, then its features cast to the types every backend trains and predicts on."""
    return df.select(*[c for c in df.columns if c not in features.all], *feature_columns(features))


def feature_schema(features: FeatureSet) -> StructType:
    """The Spark schema of `feature_columns`."""
    from pyspark.sql.types import StringType

    return StructType(
        [StructField(c, DoubleType()) for c in features.numeric]
        + [StructField(c, StringType()) for c in [*features.categorical, *features.text]]
    )


def output_fields(problem: Problem) -> list[StructField]:
    """The columns a Predictor adds."""
    if problem.is_classifier:
        return [StructField(PRED, IntegerType()), StructField(PROBA, ArrayType(DoubleType()))]
    return [StructField(PRED, DoubleType())]


class PandasModel(ABC):
    """A model trained in Python. It must pickle (cloudpickle) and predict on a pandas DataFrame of features
    (numeric columns float64 with NaN for missing, categorical and text columns object with None)."""

    @abstractmethod
    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Classification: shape (n, k), rows sum to 1, columns in `Problem.classes` order."""

    def predict_value(self, features: pd.DataFrame) -> np.ndarray:
        """Regression: shape (n,)."""
        raise NotImplementedError


def pandas_predictions(model: PandasModel, problem: Problem, features: pd.DataFrame) -> dict[str, Any]:
    """`_pred` (and `_proba`) for a pandas batch, as goldsmith defines them: binary uses a 0.5 threshold on the
    positive class (index 1), multiclass the most probable class."""
    if not problem.is_classifier:
        return {PRED: np.asarray(model.predict_value(features), dtype="float64")}
    proba = np.asarray(model.predict_proba(features), dtype="float64")
    if problem.n_classes == 2:
        pred = (proba[:, 1] >= 0.5).astype("int32")
    else:
        pred = proba.argmax(axis=1).astype("int32")
    return {PRED: pred, PROBA: list(proba)}


def requirements(*packages: str) -> list[str]:
    """Pinned requirements of a logged model, from the versions installed here.

    Given explicitly: MLflow would otherwise infer them by loading the model in a subprocess (20 s per model).
    """
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for package in packages:
        try:
            pinned.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pinned


def spark_type_name(data_type: DataType) -> str:
    """A Spark type as DDL, e.g. 'double', 'string'."""
    return data_type.simpleString()
