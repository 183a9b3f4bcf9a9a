"""A small tabular problem the torch backends train on (torch-distributor and horovod share their model):
a logistic label over two numbers and a category, with missing values, a regression target and a random split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from goldsmith.config.models import ModelSpec
from goldsmith.ml.base import PROBA, TrainingSets

EFFECT = {"a": -1.0, "b": 0.0, "c": 0.8, "d": 1.5}


def binary_frame(rows: int = 4000, seed: int = 7) -> pd.DataFrame:
    """x1, x2 (10% missing) and c (5% missing) drive a logistic label; the split is random by id."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(2.0, 3.0, size=rows)
    c = rng.choice(list(EFFECT), size=rows, p=[0.4, 0.3, 0.2, 0.1])
    logit = 1.2 * x1 - 0.3 * (x2 - 2.0) + np.array([EFFECT[v] for v in c]) - 0.2
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"id": np.arange(rows), "x1": x1, "x2": x2, "c": c.astype(object), "y": y})
    frame.loc[rng.random(rows) < 0.1, "x2"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "c"] = None
    frame["r"] = 50.0 + 10.0 * x1 - 5.0 * (c == "d") + rng.normal(0.0, 2.0, size=rows)  # a regression target
    frame["_label"] = frame["y"].astype(float)
    frame["_weight"] = 1.0
    frame["part"] = rng.choice(["train", "validation", "test"], size=rows, p=[0.7, 0.15, 0.15])
    return frame


def make_spec(task: str = "binary", backend: str = "torch-distributor", **trainer: Any) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "table": "gold.t",
            "label": "y" if task == "binary" else "r",
            "keys": ["id"],
            "features": {"numeric": ["x1", "x2"], "categorical": ["c"]},
            "task": task,
            "split": {"method": "random"},
            "trainer": {"backend": backend, "algorithm": "mlp", "num_processes": 2, **trainer},
        }
    )


def sets_for(parts: dict[str, DataFrame], workdir: Path) -> TrainingSets:
    return TrainingSets(parts["train"], parts["validation"], parts["test"], workdir=str(workdir))


def validation_auc(candidate_predictor: Any, parts: dict[str, DataFrame]) -> float:
    rows = candidate_predictor.transform(parts["validation"]).select("_label", PROBA).collect()
    return float(roc_auc_score([r["_label"] for r in rows], [r[PROBA][1] for r in rows]))


def sklearn_auc(frame: pd.DataFrame) -> float:
    """Logistic regression on the same features, imputed, scaled and one-hot encoded the same way."""
    train, valid = frame[frame.part == "train"], frame[frame.part == "validation"]
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["x1", "x2"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["c"]),
        ]
    )
    model = make_pipeline(prep, LogisticRegression(max_iter=1000))
    model.fit(train[["x1", "x2", "c"]].fillna({"c": "missing"}), train["y"])
    proba = model.predict_proba(valid[["x1", "x2", "c"]].fillna({"c": "missing"}))[:, 1]
    return float(roc_auc_score(valid["y"], proba))
