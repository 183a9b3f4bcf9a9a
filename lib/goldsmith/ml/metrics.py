"""Model evaluation: sufficient statistics (from numpy arrays or a Spark DataFrame), metrics and plots.

Evaluation works in two steps. First the predictions are reduced to small, mergeable counts: a confusion matrix,
the summed log loss and, for binary problems, a histogram of the positive-class probability in `BINS` buckets
(`ClassificationCounts`), or five sums for regression (`RegressionSums`). On Spark this is one aggregation job
whose result is a few thousand rows at most. Second, the metrics and curves are computed from the counts alone.

Conventions (see `goldsmith.ml.base`): `_label` and `_pred` are class indices (0..k-1) for classification and
values for regression; `_proba` holds the k class probabilities. In a binary problem class 1 is the positive one.

Ranking metrics come from the histogram: the scores in one bucket count as tied, so `roc_auc` and `pr_auc` agree
with scikit-learn's `roc_auc_score` / `average_precision_score` to about 1e-4 on continuous scores, and exactly
when distinct scores fall in distinct buckets. Undefined ratios follow scikit-learn with `zero_division=0`:
precision, recall and F1 of a class never predicted (or never present) are 0.0. `roc_auc` is NaN when only one
class is present; `pr_auc` is NaN when no positive is present. Metrics of an empty input are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from goldsmith.ml.base import LABEL, PRED, PROBA, Problem

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BINS = 10_000
EPS = 1e-15


@dataclass
class ClassificationCounts:
    """Sufficient statistics of a classifier's predictions.

    `confusion[i, j]` counts rows of true class i predicted as j; `pos_hist[c, b]` (binary only) counts rows of
    true class c whose positive-class probability falls in bucket b = min(floor(p * BINS), BINS).
    """

    confusion: np.ndarray
    log_loss_sum: float
    n: int
    pos_hist: np.ndarray | None = None

    def merge(self, other: ClassificationCounts) -> ClassificationCounts:
        """The counts of both inputs together."""
        if self.confusion.shape != other.confusion.shape:
            raise ValueError(f"cannot merge counts of {self.confusion.shape[0]} and {other.confusion.shape[0]} classes")
        if (self.pos_hist is None) != (other.pos_hist is None):
            raise ValueError("cannot merge counts with and without a probability histogram")
        hist = None if self.pos_hist is None or other.pos_hist is None else self.pos_hist + other.pos_hist
        return ClassificationCounts(
            confusion=self.confusion + other.confusion,
            log_loss_sum=self.log_loss_sum + other.log_loss_sum,
            n=self.n + other.n,
            pos_hist=hist,
        )


@dataclass
class RegressionSums:
    """Sufficient statistics of a regressor's predictions: row count, sums of squared and absolute errors, of the
    labels and of the squared labels."""

    n: int
    sse: float
    sae: float
    sum_y: float
    sum_y2: float

    def merge(self, other: RegressionSums) -> RegressionSums:
        """The sums of both inputs together."""
        return RegressionSums(
            n=self.n + other.n,
            sse=self.sse + other.sse,
            sae=self.sae + other.sae,
            sum_y=self.sum_y + other.sum_y,
            sum_y2=self.sum_y2 + other.sum_y2,
        )


# --- counting -------------------------------------------------------------------------------------------------


def _buckets(p: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(p * BINS), 0, BINS).astype(np.int64)


def classification_counts_numpy(
    y: np.ndarray, proba: np.ndarray, pred: np.ndarray, n_classes: int
) -> ClassificationCounts:
    """Counts from class indices `y` and `pred` (shape (n,)) and probabilities `proba` (shape (n, k))."""
    y = np.asarray(y).astype(np.int64)
    pred = np.asarray(pred).astype(np.int64)
    proba = np.asarray(proba, dtype=np.float64).reshape(len(y), n_classes)
    for name, values in (("label", y), ("prediction", pred)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"a {name} class index is outside 0..{n_classes - 1}")
    confusion = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    p_true = proba[np.arange(len(y)), y]
    log_loss_sum = float(-np.log(np.clip(p_true, EPS, 1.0)).sum())
    hist = None
    if n_classes == 2:
        hist = np.bincount(y * (BINS + 1) + _buckets(proba[:, 1]), minlength=2 * (BINS + 1)).reshape(2, BINS + 1)
    return ClassificationCounts(confusion.astype(np.int64), log_loss_sum, len(y), hist)


def classification_counts_spark(df: DataFrame, n_classes: int) -> ClassificationCounts:
    """Counts from a DataFrame with `_label`, `_pred` and `_proba`, in one Spark job.

    The rows are grouped by (label, prediction) and, for binary problems, probability bucket; only the groups
    (at most 4 * (BINS + 1) rows) reach the driver. Raises ValueError on a null or out-of-range class index.
    """
    found = grouped_classification_counts(df, n_classes, [])
    return found.get((), ClassificationCounts(np.zeros((n_classes, n_classes), dtype=np.int64), 0.0, 0,
                                              np.zeros((2, BINS + 1), dtype=np.int64) if n_classes == 2 else None))


def grouped_classification_counts(
    df: DataFrame, n_classes: int, groups: Sequence[Column | str], bins: int = BINS
) -> dict[tuple[Any, ...], ClassificationCounts]:
    """`classification_counts_spark` per value of the `groups` columns, in one Spark job.

    Binary histograms have `bins` buckets (fewer buckets: fewer rows reach the driver, AUC within ~1/bins).
    """
    label = F.col(LABEL).cast("int")
    p_true = F.try_element_at(F.col(PROBA), label + 1)
    loss = -F.log(F.least(F.greatest(p_true, F.lit(EPS)), F.lit(1.0)))
    group_columns = [(F.col(g) if isinstance(g, str) else g).alias(f"_g{i}") for i, g in enumerate(groups)]
    keys = [*group_columns, label.alias("y"), F.col(PRED).cast("int").alias("p")]
    if n_classes == 2:
        positive = F.try_element_at(F.col(PROBA), F.lit(2))
        keys.append(F.least(F.greatest(F.floor(positive * bins), F.lit(0)), F.lit(bins)).cast("int").alias("b"))
    rows = df.groupBy(*keys).agg(F.count(F.lit(1)).alias("rows"), F.sum(loss).alias("loss")).collect()

    found: dict[tuple[Any, ...], ClassificationCounts] = {}
    for row in rows:
        y, p = row["y"], row["p"]
        if y is None or p is None or not (0 <= y < n_classes and 0 <= p < n_classes):
            raise ValueError(f"{LABEL}={y}, {PRED}={p} in {row['rows']} row(s): not a class index "
                             f"in 0..{n_classes - 1}")
        key = tuple(row[f"_g{i}"] for i in range(len(groups)))
        counts = found.get(key)
        if counts is None:
            counts = found[key] = ClassificationCounts(
                np.zeros((n_classes, n_classes), dtype=np.int64), 0.0, 0,
                np.zeros((2, bins + 1), dtype=np.int64) if n_classes == 2 else None,
            )
        counts.confusion[y, p] += row["rows"]
        counts.log_loss_sum += row["loss"] or 0.0
        counts.n += row["rows"]
        if counts.pos_hist is not None and row["b"] is not None:
            counts.pos_hist[y, row["b"]] += row["rows"]
    return found


def regression_sums_numpy(y: np.ndarray, pred: np.ndarray) -> RegressionSums:
    """Sums from labels and predictions (shape (n,))."""
    y = np.asarray(y, dtype=np.float64).ravel()
    error = y - np.asarray(pred, dtype=np.float64).ravel()
    return RegressionSums(
        n=len(y),
        sse=float(np.dot(error, error)),
        sae=float(np.abs(error).sum()),
        sum_y=float(y.sum()),
        sum_y2=float(np.dot(y, y)),
    )


def regression_sums_spark(df: DataFrame) -> RegressionSums:
    """Sums from a DataFrame with `_label` and `_pred`, in one Spark job. Raises ValueError on null values."""
    return grouped_regression_sums(df, []).get((), RegressionSums(0, 0.0, 0.0, 0.0, 0.0))


def grouped_regression_sums(df: DataFrame, groups: Sequence[Column | str]) -> dict[tuple[Any, ...], RegressionSums]:
    """`regression_sums_spark` per value of the `groups` columns, in one Spark job."""
    y = F.col(LABEL).cast("double")
    error = y - F.col(PRED).cast("double")
    group_columns = [(F.col(g) if isinstance(g, str) else g).alias(f"_g{i}") for i, g in enumerate(groups)]
    rows = df.groupBy(*group_columns).agg(
        F.count(F.lit(1)).alias("n"),
        F.count(error).alias("complete"),
        F.sum(error * error).alias("sse"),
        F.sum(F.abs(error)).alias("sae"),
        F.sum(y).alias("sum_y"),
        F.sum(y * y).alias("sum_y2"),
    ).collect()
    found = {}
    for row in rows:
        if row["complete"] != row["n"]:
            raise ValueError(f"{row['n'] - row['complete']} row(s) with a null {LABEL} or {PRED}")
        found[tuple(row[f"_g{i}"] for i in range(len(groups)))] = RegressionSums(
            n=int(row["n"]),
            sse=float(row["sse"] or 0.0),
            sae=float(row["sae"] or 0.0),
            sum_y=float(row["sum_y"] or 0.0),
            sum_y2=float(row["sum_y2"] or 0.0),
        )
    return found


# --- metrics --------------------------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def _class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class: precision, recall, F1 (0.0 where undefined) and support."""
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1_denominator = predicted + support
        f1 = np.where(f1_denominator > 0, 2 * tp / f1_denominator, 0.0)
    return precision, recall, f1, support


def _cumulative(counts: ClassificationCounts) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each threshold, highest first, over the non-empty buckets only."""
    if counts.pos_hist is None:
        raise ValueError("ranking metrics need the probability histogram of a binary problem")
    negatives, positives = counts.pos_hist[0][::-1], counts.pos_hist[1][::-1]
    used = (negatives + positives) > 0
    return np.cumsum(positives[used]).astype(np.float64), np.cumsum(negatives[used]).astype(np.float64)


def roc_curve(counts: ClassificationCounts) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates, starting at (0, 0), one point per non-empty bucket with thresholds descending.
    A rate is NaN when its class is absent."""
    tp, fp = _cumulative(counts)
    n_pos, n_neg = (tp[-1], fp[-1]) if tp.size else (0.0, 0.0)
    fpr = np.concatenate([[0.0], fp / n_neg]) if n_neg else np.full(tp.size + 1, np.nan)
    tpr = np.concatenate([[0.0], tp / n_pos]) if n_pos else np.full(tp.size + 1, np.nan)
    return fpr, tpr


def pr_curve(counts: ClassificationCounts) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision, starting at (0, 1), one point per non-empty bucket with thresholds descending.
    Recall is NaN when no positive is present."""
    tp, fp = _cumulative(counts)
    n_pos = tp[-1] if tp.size else 0.0
    recall = np.concatenate([[0.0], tp / n_pos]) if n_pos else np.full(tp.size + 1, np.nan)
    precision = np.concatenate([[1.0], tp / (tp + fp)])
    return recall, precision


def _roc_auc(counts: ClassificationCounts) -> float:
    fpr, tpr = roc_curve(counts)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return math.nan
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _average_precision(counts: ClassificationCounts) -> float:
    recall, precision = pr_curve(counts)
    if np.isnan(recall).any():
        return math.nan
    return float(np.sum(np.diff(recall) * precision[1:]))


def classification_metrics(
    counts: ClassificationCounts, classes: Sequence[str], task: str | None = None
) -> dict[str, float]:
    """The metrics of `METRICS[task]`; multiclass adds `precision_<class>`, `recall_<class>` and `f1_<class>`.

    `task` defaults to "binary" for two classes and "multiclass" otherwise.
    """
    task = task or ("binary" if len(classes) == 2 else "multiclass")
    if counts.confusion.shape != (len(classes), len(classes)):
        raise ValueError(f"counts of {counts.confusion.shape[0]} classes, but {len(classes)} class names")
    n = counts.n
    accuracy = float(np.trace(counts.confusion) / n) if n else math.nan
    log_loss = counts.log_loss_sum / n if n else math.nan
    precision, recall, f1, support = _class_scores(counts.confusion)
    if task == "binary":
        if len(classes) != 2:
            raise ValueError(f"a binary problem has 2 classes, not {len(classes)}")
        return {
            "roc_auc": _roc_auc(counts),
            "pr_auc": _average_precision(counts),
            "accuracy": accuracy,
            "f1": float(f1[1]),
            "precision": float(precision[1]),
            "recall": float(recall[1]),
            "log_loss": log_loss,
        }
    metrics = {
        "macro_f1": float(f1.mean()) if len(classes) else math.nan,
        "weighted_f1": _ratio(float(np.dot(f1, support)), float(support.sum())) if n else math.nan,
        "accuracy": accuracy,
        "log_loss": log_loss,
    }
    for i, name in enumerate(classes):
        metrics[f"precision_{name}"] = float(precision[i])
        metrics[f"recall_{name}"] = float(recall[i])
        metrics[f"f1_{name}"] = float(f1[i])
    return metrics


def regression_metrics(sums: RegressionSums) -> dict[str, float]:
    """rmse, mae and r2. With constant labels r2 is 1.0 for a perfect fit and 0.0 otherwise (as scikit-learn)."""
    if not sums.n:
        return {"rmse": math.nan, "mae": math.nan, "r2": math.nan}
    total = sums.sum_y2 - sums.sum_y**2 / sums.n
    if total <= 1e-12 * sums.sum_y2:
        r2 = 1.0 if sums.sse == 0 else 0.0
    else:
        r2 = 1.0 - sums.sse / total
    return {"rmse": math.sqrt(sums.sse / sums.n), "mae": sums.sae / sums.n, "r2": r2}


def per_class_report(counts: ClassificationCounts, classes: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per class: class, precision, recall, f1 and support (rows of that true class)."""
    precision, recall, f1, support = _class_scores(counts.confusion)
    return [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]


# --- evaluation -----------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """A model's metrics on one data set, with the statistics they came from."""

    task: str
    classes: tuple[str, ...]
    metrics: dict[str, float]
    counts: ClassificationCounts | None = None
    sums: RegressionSums | None = None


def _from_counts(problem: Problem, counts: ClassificationCounts) -> Evaluation:
    metrics = classification_metrics(counts, problem.classes, problem.task)
    return Evaluation(problem.task, problem.classes, metrics, counts=counts)


def evaluate_spark(df: DataFrame, problem: Problem) -> Evaluation:
    """Evaluate a predictions DataFrame (`_label`, `_pred`, and `_proba` for classification)."""
    if problem.is_classifier:
        return _from_counts(problem, classification_counts_spark(df, problem.n_classes))
    sums = regression_sums_spark(df)
    return Evaluation(problem.task, problem.classes, regression_metrics(sums), sums=sums)


def evaluate_numpy(problem: Problem, y: np.ndarray, output: np.ndarray) -> Evaluation:
    """Evaluate model output: (n, k) probabilities for classification (the predicted class is the argmax, or
    p(class 1) >= 0.5 for binary, as `goldsmith.ml.base.pandas_predictions`), (n,) values for regression."""
    if not problem.is_classifier:
        sums = regression_sums_numpy(y, output)
        return Evaluation(problem.task, problem.classes, regression_metrics(sums), sums=sums)
    proba = np.asarray(output, dtype=np.float64).reshape(-1, problem.n_classes)
    if problem.n_classes == 2:
        pred = (proba[:, 1] >= 0.5).astype(np.int64)
    else:
        pred = proba.argmax(axis=1)
    return _from_counts(problem, classification_counts_numpy(y, proba, pred, problem.n_classes))


# --- plots ----------------------------------------------------------------------------------------------------


def _new_figure(width: float = 6.0, height: float = 5.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _roc_figure(counts: ClassificationCounts, auc: float) -> Figure:
    fpr, tpr = roc_curve(counts)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"model (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate", title="ROC curve")
    ax.legend(loc="lower right")
    return fig


def _pr_figure(counts: ClassificationCounts, ap: float) -> Figure:
    recall, precision = pr_curve(counts)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.step(recall, precision, where="pre", label=f"model (AP = {ap:.4f})")
    if counts.n:
        prevalence = counts.confusion[1].sum() / counts.n
        ax.axhline(prevalence, linestyle="--", color="grey", label=f"prevalence ({prevalence:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall", ylabel="Precision", title="Precision-recall curve")
    ax.legend(loc="lower left")
    return fig


def _confusion_figure(counts: ClassificationCounts, classes: Sequence[str]) -> Figure:
    k = len(classes)
    confusion = counts.confusion
    rows = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    size = min(max(5.0, 0.6 * k + 2.0), 20.0)
    fig = _new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                color = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, f"{confusion[i, j]:,}\n{shares[i, j]:.1%}", ha="center", va="center", color=color,
                        fontsize=9 if k <= 8 else 7)
    ticks = list(range(k))
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(ticks, [str(c) for c in classes])
    ax.set(xlabel="Predicted class", ylabel="True class", title="Confusion matrix")
    return fig


def _per_class_figure(counts: ClassificationCounts, classes: Sequence[str]) -> Figure:
    report = per_class_report(counts, classes)
    k = len(classes)
    fig = _new_figure(min(max(6.0, 0.8 * k + 2.0), 24.0), 5.0)
    ax = fig.add_subplot()
    positions = np.arange(k)
    width = 0.27
    for offset, metric in zip((-width, 0.0, width), ("precision", "recall", "f1"), strict=True):
        ax.bar(positions + offset, [row[metric] for row in report], width, label=metric)
    labels = [f"{row['class']}\n(n={row['support']:,})" for row in report]
    ax.set_xticks(positions, labels, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set(ylim=(0, 1.05), ylabel="score", title="Per-class precision, recall and F1")
    ax.legend(loc="upper right", ncols=3)
    return fig


def figures(evaluation: Evaluation) -> dict[str, Figure]:
    """Plots by file name. Classification: confusion_matrix.png and per_class_report.png, plus roc_curve.png and
    pr_curve.png for binary problems; regression: none. The figures are made without pyplot (no global state)."""
    counts = evaluation.counts
    if counts is None:
        return {}
    result: dict[str, Figure] = {}
    if evaluation.task == "binary" and counts.pos_hist is not None:
        result["roc_curve.png"] = _roc_figure(counts, evaluation.metrics.get("roc_auc", _roc_auc(counts)))
        result["pr_curve.png"] = _pr_figure(counts, evaluation.metrics.get("pr_auc", _average_precision(counts)))
    result["confusion_matrix.png"] = _confusion_figure(counts, evaluation.classes)
    result["per_class_report.png"] = _per_class_figure(counts, evaluation.classes)
    return result
