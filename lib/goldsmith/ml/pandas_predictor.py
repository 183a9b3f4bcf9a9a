"""The `Predictor` of every model trained in Python (scikit-learn, PyTorch): a `PandasModel` applied on Spark with
a pandas UDF and logged to MLflow as a pyfunc model (`goldsmith.ml.pyfunc`, imported only when a model is logged).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from goldsmith.ml.base import (
    PandasModel,
    Predictor,
    Problem,
    output_fields,
    pandas_predictions,
    requirements,
    with_feature_types,
)

if TYPE_CHECKING:
    import pandas as pd


class PyfuncPredictor(Predictor):
    """A `PandasModel` applied with a pandas UDF (`mapInPandas`), logged as an MLflow pyfunc model."""

    flavor = "python_function"

    def __init__(self, problem: Problem, model: PandasModel) -> None:
        super().__init__(problem)
        self.model = model

    def transform(self, df: DataFrame) -> DataFrame:
        problem, model = self.problem, self.model
        names = problem.features.all
        typed = with_feature_types(df, problem.features)
        schema = StructType([*typed.schema.fields, *output_fields(problem)])

        def predict(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for batch in batches:
                for column, values in pandas_predictions(model, problem, batch[names]).items():
                    batch[column] = values
                yield batch

        return typed.mapInPandas(predict, schema)  # type: ignore[arg-type]

    def log_model(self, name: str, signature: Any, input_example: pd.DataFrame) -> Any:
        import mlflow

        from goldsmith.ml.pyfunc import GoldsmithPythonModel

        return mlflow.pyfunc.log_model(
            name=name, python_model=GoldsmithPythonModel(self.problem, self.model),
            signature=signature, input_example=input_example,
            pip_requirements=requirements("goldsmith", "numpy", "pandas", "scikit-learn", "cloudpickle", "mlflow"),
        )
