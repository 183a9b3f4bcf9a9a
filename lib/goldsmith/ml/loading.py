"""Turn a registered model version back into a `Predictor`, and check a table can feed it."""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql.types import BooleanType, NumericType, StringType

from goldsmith.config.models import FeatureSet, ModelSpec
from goldsmith.errors import SchemaMismatch
from goldsmith.ml.base import Predictor, Problem
from goldsmith.ml.pandas_predictor import PyfuncPredictor


def problem_tags(problem: Problem) -> dict[str, str]:
    """What a registered version must remember to predict again: features, task, classes, label type."""
    return {
        "goldsmith.features": json.dumps(problem.features.model_dump(mode="json")),
        "goldsmith.task": problem.task,
        "goldsmith.classes": json.dumps(list(problem.classes)),
        "goldsmith.label_type": problem.label_type,
    }


def problem_from_tags(name: str, spec: ModelSpec, tags: dict[str, str]) -> Problem:
    """The Problem a version was trained on (its features, not necessarily today's spec's)."""
    features = FeatureSet.model_validate(json.loads(tags["goldsmith.features"]))
    trained = spec.model_copy(update={"features": features, "task": tags["goldsmith.task"]})
    return Problem(name, trained, tuple(json.loads(tags["goldsmith.classes"])), tags["goldsmith.label_type"])


def load_predictor(client: Any, name: str, version: int, spec: ModelSpec) -> Predictor:
    """`models:/<name>/<version>` as a Predictor (Spark ML natively, Python models as a pandas UDF)."""
    mv = client.get_model_version(name, str(version))
    tags = dict(mv.tags or {})
    problem = problem_from_tags(name, spec, tags)
    uri = f"models:/{name}/{version}"
    if tags.get("goldsmith.flavor") == "spark":
        import mlflow.spark

        from goldsmith.ml.backends.spark_ml import SparkMLPredictor

        return SparkMLPredictor(problem, mlflow.spark.load_model(uri))
    import mlflow.pyfunc

    wrapper = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    return PyfuncPredictor(problem, wrapper.model)


def check_features(df: DataFrame, features: FeatureSet, what: str) -> None:
    """Every feature is a column of `df` with a type the model can use; SchemaMismatch naming it otherwise."""
    types = {f.name: f.dataType for f in df.schema.fields}
    for column in features.all:
        if column not in types:
            raise SchemaMismatch(f"{what} has no column {column!r}, a feature of the model")
        data_type = types[column]
        if column in features.numeric and not isinstance(data_type, NumericType | BooleanType):
            raise SchemaMismatch(
                f"{what}: feature {column!r} is {data_type.simpleString().upper()}, the model needs a number"
            )
        if column in features.text and not isinstance(data_type, StringType):
            raise SchemaMismatch(
                f"{what}: feature {column!r} is {data_type.simpleString().upper()}, the model needs text (STRING)"
            )
        if column in features.categorical and not isinstance(data_type, StringType | NumericType | BooleanType):
            raise SchemaMismatch(
                f"{what}: feature {column!r} is {data_type.simpleString().upper()}, the model needs a category "
                "(STRING, a number or a boolean)"
            )
