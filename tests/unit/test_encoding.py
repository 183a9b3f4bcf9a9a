"""The tabular encoder's transform and the torch MLP's numpy forward pass (no Spark)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from goldsmith.errors import ConfigError
from goldsmith.ml.backends.torch_ddp import (
    MLPSettings,
    TorchMLPModel,
    build_mlp,
    first_error,
    linear_layers,
    local_path,
    mlp_settings,
)
from goldsmith.ml.encoding import TabularEncoder

ENCODER = TabularEncoder(
    numeric=("x", "z"),
    means=(2.0, 0.0),
    stds=(4.0, 1.0),
    categorical=("c",),
    levels=(("a", "b"),),
)


def test_transform_fills_scales_and_one_hot_encodes() -> None:
    frame = pd.DataFrame(
        {
            "x": [6.0, np.nan, -2.0, 2.0],
            "z": [1.0, 2.0, np.nan, 0.0],
            "c": ["b", None, "zzz", "a"],
            "unused": [1, 2, 3, 4],
        }
    )
    out = ENCODER.transform(frame)
    assert out.dtype == np.float32
    assert out.shape == (4, ENCODER.width) == (4, 5)
    assert ENCODER.feature_names == ["x", "z", "c=a", "c=b", "c=__other__"]
    expected = [
        [1.0, 1.0, 0, 1, 0],  # (6 - 2) / 4
        [0.0, 2.0, 0, 0, 1],  # missing x -> mean; missing c -> other
        [-1.0, 0.0, 0, 0, 1],  # unseen c -> other
        [0.0, 0.0, 1, 0, 0],
    ]
    np.testing.assert_allclose(out, np.array(expected, dtype=np.float32))


def test_transform_matches_spark_strings_and_pickles() -> None:
    encoder = TabularEncoder(numeric=(), means=(), stds=(), categorical=("k", "b"), levels=(("1",), ("true",)))
    frame = pd.DataFrame({"k": pd.Series([1, 2, None], dtype=object), "b": pd.Series([True, False, None])})
    out = pickle.loads(pickle.dumps(encoder)).transform(frame)
    np.testing.assert_array_equal(out, [[1, 0, 1, 0], [0, 1, 0, 1], [0, 1, 0, 1]])
    assert encoder.transform(frame.iloc[:0]).shape == (0, 4)


def test_numpy_forward_matches_torch() -> None:
    torch.manual_seed(0)
    net = build_mlp(ENCODER.width, (16, 8), 3, dropout=0.2).eval()
    frame = pd.DataFrame(
        {"x": np.linspace(-5, 5, 50), "z": np.cos(np.arange(50.0)), "c": (["a", "b", None, "q", "a"] * 10)}
    )
    x = ENCODER.transform(frame)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
        proba = torch.softmax(net(torch.from_numpy(x)), dim=1).numpy()
    model = pickle.loads(pickle.dumps(TorchMLPModel(ENCODER, linear_layers(net), classifier=True)))
    np.testing.assert_allclose(model.forward(x), logits, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(frame), proba, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(frame).sum(axis=1), 1.0, atol=1e-12)


def test_regression_output_is_destandardised() -> None:
    torch.manual_seed(1)
    net = build_mlp(ENCODER.width, (), 1, dropout=0.1).eval()  # no hidden layer: a linear model
    frame = pd.DataFrame({"x": [0.0, 1.0], "z": [2.0, 3.0], "c": ["a", "b"]})
    with torch.no_grad():
        raw = net(torch.from_numpy(ENCODER.transform(frame))).numpy()[:, 0]
    model = TorchMLPModel(ENCODER, linear_layers(net), classifier=False, target_mean=100.0, target_std=5.0)
    np.testing.assert_allclose(model.predict_value(frame), raw * 5.0 + 100.0, atol=1e-4)
    with pytest.raises(TypeError):
        model.predict_proba(frame)


def test_mlp_settings_defaults_and_checks() -> None:
    assert mlp_settings("mlp", {}) == MLPSettings(hidden=(64, 32), dropout=0.1, epochs=5, batch_size=512, lr=1e-3)
    assert mlp_settings("mlp", {"hidden": "128, 64"}).hidden == (128, 64)
    assert mlp_settings("mlp", {"hidden": 16, "dropout": 0}).hidden == (16,)
    with pytest.raises(ConfigError, match="'learning_rate'"):
        mlp_settings("mlp", {"epochs": 2, "learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"epochs"):
        mlp_settings("mlp", {"epochs": 0})
    with pytest.raises(ConfigError, match=r"dropout"):
        mlp_settings("mlp", {"dropout": 1.0})
    with pytest.raises(ConfigError, match=r"hidden"):
        mlp_settings("mlp", {"hidden": [64, 0]})
    with pytest.raises(ConfigError, match=r"'gbt'"):
        mlp_settings("gbt", {})


def test_local_path() -> None:
    assert local_path("/tmp/w") == "/tmp/w"
    assert local_path("file:///tmp/w") == "/tmp/w"
    assert local_path("dbfs:/tmp/w") == "/dbfs/tmp/w"
    with pytest.raises(ConfigError, match="s3://bucket"):
        local_path("s3://bucket/w")


def test_first_error_prefers_the_earliest_rank_traceback(tmp_path: Path) -> None:
    (tmp_path / "error-rank1.txt").write_text(
        "Traceback (most recent call last):\n  File \"x.py\", line 1\nIndexError: Target 2 is out of bounds.\n"
    )
    assert first_error(tmp_path, "", None) == "IndexError: Target 2 is out of bounds. (rank1)"
    noisy = (
        "[rank0]: Traceback (most recent call last):\n[rank0]: ValueError: bad\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
    )
    assert first_error(tmp_path / "none", noisy, RuntimeError("x")) == "ValueError: bad"
    assert first_error(tmp_path / "none", "", RuntimeError("Spark said no\nat ...")) == "Spark said no"
