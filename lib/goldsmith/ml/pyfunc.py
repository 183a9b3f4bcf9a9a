"""The MLflow pyfunc wrapper of models trained in Python (imported only where MLflow is needed)."""

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from goldsmith.ml.base import PRED, PROBA, PandasModel, Problem, pandas_predictions


# `predict` is type-hinted with pd.DataFrame: MLflow then neither warns nor validates inputs a second way
# (goldsmith logs every model with an explicit signature).
class GoldsmithPythonModel(PythonModel):  # type: ignore[misc]
    """The MLflow pyfunc wrapper: `predict` returns `prediction` (the label) and `probability_<class>` columns,
    so the model is usable from MLflow alone (`mlflow.pyfunc.load_model(...).predict(df)`)."""

    def __init__(self, problem: Problem, model: PandasModel) -> None:
        self.problem = problem
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        problem = self.problem
        features = model_input.copy()
        for c in problem.features.numeric:
            features[c] = pd.to_numeric(features[c], errors="coerce").astype("float64")
        for c in [*problem.features.categorical, *problem.features.text]:
            features[c] = features[c].astype(object).where(features[c].notna(), None)
        out = pandas_predictions(self.model, problem, features[problem.features.all])
        if not problem.is_classifier:
            return pd.DataFrame({"prediction": out[PRED]})
        proba = np.vstack(out[PROBA]) if len(features) else np.zeros((0, problem.n_classes))
        frame = pd.DataFrame({"prediction": [problem.classes[i] for i in out[PRED]]})
        for i, cls in enumerate(problem.classes):
            frame[f"probability_{cls}"] = proba[:, i]
        return frame
