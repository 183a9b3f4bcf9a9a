"""Evaluation without Spark: the numpy path against scikit-learn and hand-worked numbers, edge cases, plots."""

from __future__ import annotations

import math
from io import BytesIO

import numpy as np
import pytest
from sklearn import metrics as skm

from goldsmith.config.models import ModelSpec
from goldsmith.ml.base import Problem
from goldsmith.ml.metrics import (
    BINS,
    classification_counts_numpy,
    classification_metrics,
    evaluate_numpy,
    figures,
    per_class_report,
    pr_curve,
    regression_metrics,
    regression_sums_numpy,
    roc_curve,
)


def problem(task: str, classes: tuple[str, ...] = ()) -> Problem:
    algorithm = "linear_regression" if task == "regression" else "logistic_regression"
    spec = ModelSpec.model_validate({
        "table": "gold.t", "label": "y", "keys": ["id"], "features": {"numeric": ["x"]}, "task": task,
        "split": {"method": "random"}, "trainer": {"backend": "spark-ml", "algorithm": algorithm},
    })
    return Problem(name="m", spec=spec, classes=classes)


def binary_data(n: int = 5000, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = 1 / (1 + np.exp(-(1.2 * (2 * y - 1) + rng.normal(0, 1.5, n))))
    return y, np.column_stack([1 - p1, p1])


def multiclass_data(n: int = 3000, k: int = 3, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 1.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def test_binary_matches_sklearn() -> None:
    y, proba = binary_data()
    result = evaluate_numpy(problem("binary", ("0", "1")), y, proba)
    pred = (proba[:, 1] >= 0.5).astype(int)
    m = result.metrics
    assert list(m) == ["roc_auc", "pr_auc", "accuracy", "f1", "precision", "recall", "log_loss"]
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]), abs=1e-3)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, proba[:, 1]), abs=1e-3)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba), abs=1e-9)
    assert result.counts is not None
    np.testing.assert_array_equal(result.counts.confusion, skm.confusion_matrix(y, pred))


def test_ranking_metrics_are_exact_when_scores_fall_in_distinct_buckets() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    score = np.clip(np.round(0.3 * y + rng.uniform(0, 0.7, 400), 1), 0, 1)  # tied scores 0.0, 0.1, ..., 1.0
    counts = classification_counts_numpy(y, np.column_stack([1 - score, score]), (score >= 0.5).astype(int), 2)
    m = classification_metrics(counts, ("0", "1"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, score), abs=1e-12)
    fpr, tpr = roc_curve(counts)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    recall, precision = pr_curve(counts)
    sk_precision, sk_recall, _ = skm.precision_recall_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(recall, sk_recall[::-1], atol=1e-12)
    np.testing.assert_allclose(precision, sk_precision[::-1], atol=1e-12)


def test_multiclass_matches_sklearn() -> None:
    y, proba = multiclass_data()
    classes = ("red", "green", "blue")
    m = evaluate_numpy(problem("multiclass", classes), y, proba).metrics
    pred = proba.argmax(axis=1)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"), abs=1e-12)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba), abs=1e-9)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(y, pred, labels=[0, 1, 2])
    for i, name in enumerate(classes):
        assert m[f"precision_{name}"] == pytest.approx(precision[i], abs=1e-12)
        assert m[f"recall_{name}"] == pytest.approx(recall[i], abs=1e-12)
        assert m[f"f1_{name}"] == pytest.approx(f1[i], abs=1e-12)
    assert "roc_auc" not in m


def test_regression_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(50, 10, 2000)
    pred = y + rng.normal(0, 3, 2000)
    m = evaluate_numpy(problem("regression"), y, pred).metrics
    assert m["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)), rel=1e-9)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-9)
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-9)


def test_hand_worked_binary_example() -> None:
    # positives score 0.9, 0.7, 0.4; negatives 0.2, 0.6. Predictions at 0.5: 0 1 1 1 0.
    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.2, 0.6, 0.9, 0.7, 0.4])
    result = evaluate_numpy(problem("binary", ("0", "1")), y, np.column_stack([1 - p1, p1]))
    assert result.counts is not None
    np.testing.assert_array_equal(result.counts.confusion, [[1, 1], [1, 2]])
    m = result.metrics
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # 5 of the 6 (positive, negative) pairs are ordered correctly (0.4 < 0.6 is not).
    assert m["roc_auc"] == pytest.approx(5 / 6)
    # recall steps 1/3 at precision 1 (0.9), 1/3 at precision 1 (0.7), 1/3 at precision 3/4 (0.4).
    assert m["pr_auc"] == pytest.approx(1 / 3 + 1 / 3 + 1 / 4)
    assert m["log_loss"] == pytest.approx(-(math.log(0.8 * 0.4 * 0.9 * 0.7 * 0.4)) / 5)


def test_hand_worked_multiclass_with_a_class_never_predicted() -> None:
    counts = classification_counts_numpy(
        np.array([0, 1, 2, 2]), np.full((4, 3), 1 / 3), np.array([0, 1, 1, 1]), 3
    )
    np.testing.assert_array_equal(counts.confusion, [[1, 0, 0], [0, 1, 0], [0, 2, 0]])
    assert counts.pos_hist is None
    m = classification_metrics(counts, ("a", "b", "c"))
    assert (m["precision_c"], m["recall_c"], m["f1_c"]) == (0.0, 0.0, 0.0)
    assert m["precision_b"] == pytest.approx(1 / 3)
    assert m["f1_b"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["weighted_f1"] == pytest.approx((1 + 0.5 + 0) / 4)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["log_loss"] == pytest.approx(math.log(3))
    assert all(not math.isnan(v) for v in m.values())
    assert per_class_report(counts, ("a", "b", "c"))[2] == {
        "class": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2
    }


def test_binary_positive_class_never_predicted() -> None:
    y = np.array([0, 1, 1, 0])
    p1 = np.array([0.1, 0.4, 0.3, 0.2])
    m = evaluate_numpy(problem("binary", ("0", "1")), y, np.column_stack([1 - p1, p1])).metrics
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert m["roc_auc"] == pytest.approx(1.0)


def test_single_class_labels() -> None:
    binary = problem("binary", ("0", "1"))
    p1 = np.array([0.1, 0.7, 0.4])
    negatives = evaluate_numpy(binary, np.zeros(3, dtype=int), np.column_stack([1 - p1, p1])).metrics
    assert math.isnan(negatives["roc_auc"])
    assert math.isnan(negatives["pr_auc"])
    assert negatives["recall"] == 0.0
    assert negatives["accuracy"] == pytest.approx(2 / 3)
    positives = evaluate_numpy(binary, np.ones(3, dtype=int), np.column_stack([1 - p1, p1])).metrics
    assert math.isnan(positives["roc_auc"])
    assert positives["pr_auc"] == pytest.approx(1.0)
    constant = regression_metrics(regression_sums_numpy(np.full(4, 2.0), np.array([2.0, 2.0, 3.0, 2.0])))
    assert constant["r2"] == 0.0
    assert constant["mae"] == pytest.approx(0.25)


def test_hand_worked_regression() -> None:
    sums = regression_sums_numpy(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert (sums.n, sums.sse, sums.sae, sums.sum_y, sums.sum_y2) == (3, 4.0, 2.0, 6.0, 14.0)
    m = regression_metrics(sums)
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["r2"] == pytest.approx(1 - 4 / 2)


def test_empty_input_gives_nan_metrics() -> None:
    counts = classification_counts_numpy(np.array([], dtype=int), np.zeros((0, 2)), np.array([], dtype=int), 2)
    assert counts.n == 0
    assert all(math.isnan(v) for k, v in classification_metrics(counts, ("0", "1")).items()
               if k in ("roc_auc", "pr_auc", "accuracy", "log_loss"))
    assert all(math.isnan(v) for v in regression_metrics(regression_sums_numpy(np.array([]), np.array([]))).values())


def test_out_of_range_class_index_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        classification_counts_numpy(np.array([0, 2]), np.full((2, 2), 0.5), np.array([0, 1]), 2)


def test_probability_buckets() -> None:
    p1 = np.array([0.0, 0.00005, 0.5, 0.99999, 1.0])
    counts = classification_counts_numpy(np.array([0, 0, 1, 1, 1]), np.column_stack([1 - p1, p1]),
                                         (p1 >= 0.5).astype(int), 2)
    assert counts.pos_hist is not None
    assert counts.pos_hist.shape == (2, BINS + 1)
    assert counts.pos_hist[0, 0] == 2
    assert counts.pos_hist[1, BINS // 2] == 1
    assert counts.pos_hist[1, BINS - 1] == 1
    assert counts.pos_hist[1, BINS] == 1


def test_merge_equals_counts_of_the_concatenation() -> None:
    y, proba = binary_data(1000, seed=1)
    pred = (proba[:, 1] >= 0.5).astype(int)
    whole = classification_counts_numpy(y, proba, pred, 2)
    merged = classification_counts_numpy(y[:300], proba[:300], pred[:300], 2).merge(
        classification_counts_numpy(y[300:], proba[300:], pred[300:], 2)
    )
    np.testing.assert_array_equal(merged.confusion, whole.confusion)
    assert merged.pos_hist is not None and whole.pos_hist is not None
    np.testing.assert_array_equal(merged.pos_hist, whole.pos_hist)
    assert merged.n == whole.n
    assert merged.log_loss_sum == pytest.approx(whole.log_loss_sum, rel=1e-12)

    rng = np.random.default_rng(2)
    values, guesses = rng.normal(size=100), rng.normal(size=100)
    summed = regression_sums_numpy(values[:40], guesses[:40]).merge(regression_sums_numpy(values[40:], guesses[40:]))
    expected = regression_sums_numpy(values, guesses)
    assert summed.n == expected.n
    for name in ("sse", "sae", "sum_y", "sum_y2"):
        assert getattr(summed, name) == pytest.approx(getattr(expected, name), rel=1e-12)


def test_merge_rejects_different_class_counts() -> None:
    two = classification_counts_numpy(np.array([0]), np.array([[0.6, 0.4]]), np.array([0]), 2)
    three = classification_counts_numpy(np.array([0]), np.array([[0.5, 0.3, 0.2]]), np.array([0]), 3)
    with pytest.raises(ValueError, match="cannot merge"):
        two.merge(three)


@pytest.mark.parametrize(
    ("task", "classes", "expected"),
    [
        ("binary", ("no", "yes"), {"roc_curve.png", "pr_curve.png", "confusion_matrix.png", "per_class_report.png"}),
        ("multiclass", ("red", "green", "blue"), {"confusion_matrix.png", "per_class_report.png"}),
    ],
)
def test_figures_render_to_png(task: str, classes: tuple[str, ...], expected: set[str]) -> None:
    y, proba = binary_data(500) if task == "binary" else multiclass_data(500)
    result = figures(evaluate_numpy(problem(task, classes), y, proba))
    assert set(result) == expected
    for fig in result.values():
        buffer = BytesIO()
        fig.savefig(buffer, format="png")
        assert buffer.getvalue().startswith(b"\x89PNG")


def test_regression_has_no_figures() -> None:
    assert figures(evaluate_numpy(problem("regression"), np.array([1.0, 2.0]), np.array([1.5, 2.0]))) == {}
