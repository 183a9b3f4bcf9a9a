"""Bias metrics with the Amazon SageMaker Clarify definitions, computed from one Spark aggregation.

Facet *d* is the sensitive (disfavoured) group, facet *a* every other row, rows with a null facet included.
Each value of `positive_values` in turn is the favourable outcome (one-vs-rest): a label or prediction is 1 when
it equals that value and 0 otherwise. Rows with a null label are ignored everywhere; post-training metrics also
ignore rows with a null prediction. Values are compared as strings (Spark's `cast("string")`: `true`, `1`, `1.0`).

Notation: n_a, n_d rows per facet; n_x(1), n_x(0) observed positives / negatives; n'_x(1), n'_x(0) predicted
positives / negatives; q_x = n_x(1)/n_x and q'_x = n'_x(1)/n_x; TP, FP, FN, TN the one-vs-rest confusion counts;
P_x = (1 - q_x, q_x) the label distribution of facet x. Each formula is the one on the Clarify page named after
it (docs.aws.amazon.com/sagemaker/latest/dg/<page>.html).

Pre-training (labels only):
    ci    = (n_a - n_d) / (n_a + n_d)                                 clarify-bias-metric-class-imbalance
    dpl   = q_a - q_d                                                 clarify-data-bias-metric-true-label-imbalance
    kl    = sum_y P_a(y) ln(P_a(y) / P_d(y)), 0 ln 0 = 0              clarify-data-bias-metric-kl-divergence
    js    = (KL(P_a || P) + KL(P_d || P)) / 2, P = (P_a + P_d) / 2    clarify-data-bias-metric-jensen-shannon-divergence
    lp    = (sum_y |P_a(y) - P_d(y)|^2)^(1/2)                         clarify-data-bias-metric-lp-norm
    tvd   = sum_y |P_a(y) - P_d(y)| / 2                               clarify-data-bias-metric-total-variation-distance
    ks    = max_y |P_a(y) - P_d(y)|                                   clarify-data-bias-metric-kolmogorov-smirnov
    cddl  = (1/n) sum_i n_i DD_i, DD_i = n_d,i(0)/n_i(0) - n_d,i(1)/n_i(1)   clarify-data-bias-metric-cddl
On the binary {0, 1} distributions, tvd = ks = |dpl| and lp = sqrt(2) |dpl|.

Post-training (labels and predicted labels):
    dppl  = q'_a - q'_d                                               clarify-post-training-bias-metric-dppl
    di    = q'_d / q'_a                                               clarify-post-training-bias-metric-di
    dca   = n_a(1)/n'_a(1) - n_d(1)/n'_d(1)                           clarify-post-training-bias-metric-dca
    dcr   = n_d(0)/n'_d(0) - n_a(0)/n'_a(0)                           clarify-post-training-bias-metric-dcr
    rd    = TP_a/(TP_a + FN_a) - TP_d/(TP_d + FN_d)                   clarify-post-training-bias-metric-rd
    sd    = TN_d/(TN_d + FP_d) - TN_a/(TN_a + FP_a)   (d minus a)     clarify-post-training-bias-metric-sd
    ad    = (TP_a + TN_a)/n_a - (TP_d + TN_d)/n_d                     clarify-post-training-bias-metric-ad
    dar   = TP_a/(TP_a + FP_a) - TP_d/(TP_d + FP_d)   (precision)     clarify-post-training-bias-metric-dar
    drr   = TN_d/(TN_d + FN_d) - TN_a/(TN_a + FN_a)                   clarify-post-training-bias-metric-drr
    te    = FN_d/FP_d - FN_a/FP_a                                     clarify-post-training-bias-metric-te
    cddpl = cddl computed on the predicted labels                     clarify-post-training-bias-metric-cddpl
`te` follows the current page; an older version of it had FP_a/FN_a - FP_d/FN_d. `ad` is the one-vs-rest
accuracy, as in Clarify's code: with several classes, a row of class B predicted C counts as a true negative of A.

Strata (cddl, cddpl): the values of the `group` column, a null group being one stratum of its own; without a
group column the whole data is one stratum and cddl is the plain demographic disparity DD.

Undefined values are NaN, never an exception: any ratio whose denominator is 0 is NaN (an empty facet, a class
never predicted, FP_d = 0 in `te`, q'_a = 0 in `di`, P_d(y) = 0 < P_a(y) in `kl`), and NaN propagates through
the difference; an empty facet makes every metric but ci NaN. The Clarify library instead returns 0 for 0/0 and
+-inf for x/0; NaN keeps a gate from passing or failing on a number that does not exist. One exception, as in
Clarify's code: inside cddl / cddpl a stratum with no accepted (or no rejected) outcomes contributes 0 for that
term; the metric is NaN only when a facet is empty or the whole data has no accepted or no rejected outcomes.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from goldsmith.config.models import ModelSpec
from goldsmith.errors import ConfigError, SchemaMismatch
from goldsmith.ml.base import LABEL, PRED, Problem

logger = logging.getLogger(__name__)

PRE_TRAINING: tuple[str, ...] = ("ci", "dpl", "kl", "js", "lp", "tvd", "ks", "cddl")
POST_TRAINING: tuple[str, ...] = ("dppl", "di", "dca", "dcr", "rd", "sd", "ad", "dar", "drr", "te", "cddpl")
MAX_FACET_VALUES = 1000
# The collected counts are facet values x strata x classes^2; past this the input is not a categorical facet.
_MAX_COUNT_ROWS = 200_000

CountRow = tuple[str | None, str | None, str | None, str | None, int]
"""(facet, group, label, prediction, count), every value already cast to string."""


@dataclass(frozen=True)
class BiasResult:
    """One metric for one sensitive group and one favourable class."""

    stage: str
    facet: str
    facet_value: str
    label_value: str
    metric: str
    value: float
    n_a: int
    n_d: int


@dataclass(frozen=True)
class _Side:
    """One-vs-rest confusion counts of one facet."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def pos(self) -> int:
        return self.tp + self.fn

    @property
    def neg(self) -> int:
        return self.tn + self.fp

    @property
    def pred_pos(self) -> int:
        return self.tp + self.fp

    @property
    def pred_neg(self) -> int:
        return self.tn + self.fn


def _ratio(num: float, den: float) -> float:
    """num / den, NaN when den is 0."""
    return num / den if den != 0 else math.nan


def _kl(p: Sequence[float], q: Sequence[float]) -> float:
    """KL(p || q) in nats; 0 ln 0 = 0; NaN where q(y) = 0 < p(y)."""
    total = 0.0
    for p_y, q_y in zip(p, q, strict=True):
        if p_y == 0:
            continue
        if q_y == 0:
            return math.nan
        total += p_y * math.log(p_y / q_y)
    return total


def _cdd(strata: Mapping[str | None, Sequence[int]]) -> float:
    """Conditional demographic disparity from [n_d(0), n(0), n_d(1), n(1)] per stratum."""
    rejected = sum(s[1] for s in strata.values())
    accepted = sum(s[3] for s in strata.values())
    if rejected == 0 or accepted == 0:
        return math.nan
    weighted = 0.0
    for nd0, n0, nd1, n1 in strata.values():
        dd = (nd0 / n0 if n0 else 0.0) - (nd1 / n1 if n1 else 0.0)
        weighted += (n0 + n1) * dd
    return weighted / (rejected + accepted)


def _pre_training(rows: Sequence[tuple[bool, str | None, bool, int]]) -> tuple[dict[str, float], int, int]:
    """Pre-training metrics from (is_d, group, label_is_positive, count) rows."""
    a, d = Counter[bool](), Counter[bool]()
    strata: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for is_d, group, y, count in rows:
        (d if is_d else a)[y] += count
        s = strata[group]
        s[3 if y else 1] += count
        if is_d:
            s[2 if y else 0] += count
    n_a, n_d = a.total(), d.total()
    q_a, q_d = _ratio(a[True], n_a), _ratio(d[True], n_d)
    p_a, p_d = (1 - q_a, q_a), (1 - q_d, q_d)
    values = {"ci": _ratio(n_a - n_d, n_a + n_d), "dpl": q_a - q_d}
    if n_a > 0 and n_d > 0:
        diffs = [abs(x - y) for x, y in zip(p_a, p_d, strict=True)]
        mix = [(x + y) / 2 for x, y in zip(p_a, p_d, strict=True)]
        values |= {
            "kl": _kl(p_a, p_d),
            "js": (_kl(p_a, mix) + _kl(p_d, mix)) / 2,
            "lp": math.sqrt(sum(x * x for x in diffs)),
            "tvd": sum(diffs) / 2,
            "ks": max(diffs),
        }
    else:
        values |= dict.fromkeys(("kl", "js", "lp", "tvd", "ks"), math.nan)
    values["cddl"] = _cdd(strata) if n_a > 0 and n_d > 0 else math.nan
    return values, n_a, n_d


def _post_training(rows: Sequence[tuple[bool, str | None, bool, bool, int]]) -> tuple[dict[str, float], int, int]:
    """Post-training metrics from (is_d, group, label_is_positive, prediction_is_positive, count) rows."""
    cells: dict[bool, Counter[tuple[bool, bool]]] = {False: Counter(), True: Counter()}
    strata: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for is_d, group, y, y_hat, count in rows:
        cells[is_d][(y, y_hat)] += count
        s = strata[group]
        s[3 if y_hat else 1] += count
        if is_d:
            s[2 if y_hat else 0] += count
    a, d = (
        _Side(tp=c[(True, True)], fp=c[(False, True)], fn=c[(True, False)], tn=c[(False, False)])
        for c in (cells[False], cells[True])
    )
    q_a, q_d = _ratio(a.pred_pos, a.n), _ratio(d.pred_pos, d.n)
    values = {
        "dppl": q_a - q_d,
        "di": _ratio(q_d, q_a),
        "dca": _ratio(a.pos, a.pred_pos) - _ratio(d.pos, d.pred_pos),
        "dcr": _ratio(d.neg, d.pred_neg) - _ratio(a.neg, a.pred_neg),
        "rd": _ratio(a.tp, a.pos) - _ratio(d.tp, d.pos),
        "sd": _ratio(d.tn, d.neg) - _ratio(a.tn, a.neg),
        "ad": _ratio(a.tp + a.tn, a.n) - _ratio(d.tp + d.tn, d.n),
        "dar": _ratio(a.tp, a.pred_pos) - _ratio(d.tp, d.pred_pos),
        "drr": _ratio(d.tn, d.pred_neg) - _ratio(a.tn, a.pred_neg),
        "te": _ratio(d.fn, d.fp) - _ratio(a.fn, a.fp),
        "cddpl": _cdd(strata) if a.n > 0 and d.n > 0 else math.nan,
    }
    return values, a.n, d.n


def _sensitive_groups(
    rows: Iterable[CountRow], sensitive: Sequence[str] | None, max_facet_values: int, facet: str
) -> list[tuple[str, frozenset[str]]]:
    """(facet_value, values in facet d) for each sensitive group to evaluate."""
    if sensitive is not None:
        return [(",".join(sensitive), frozenset(sensitive))]
    sizes: Counter[str] = Counter()
    for facet_value, _, _, _, count in rows:
        if facet_value is not None:
            sizes[facet_value] += count
    if len(sizes) > MAX_FACET_VALUES:
        raise SchemaMismatch(_too_many_values(facet, f"{len(sizes)} distinct values"))
    ranked = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:max_facet_values]
    return [(value, frozenset([value])) for value, _ in ranked]


def _too_many_values(facet: str, found: str) -> str:
    return (
        f"bias: facet '{facet}' has {found} (the limit is {MAX_FACET_VALUES}); it does not look categorical. "
        f"Pass sensitive=[...] with the values of the sensitive group, or bucket the column first."
    )


def _check_arguments(positive_values: Sequence[str], sensitive: Sequence[str] | None, max_facet_values: int) -> None:
    if isinstance(positive_values, str) or not positive_values:
        raise ConfigError("bias: positive_values must be a non-empty list of class values, e.g. ['true']")
    if sensitive is not None and (isinstance(sensitive, str) or not sensitive):
        raise ConfigError("bias: sensitive must be a non-empty list of facet values, e.g. ['EWR'], or None")
    if max_facet_values < 1:
        raise ConfigError(f"bias: max_facet_values must be at least 1, got {max_facet_values}")


def metrics_from_counts(
    counts: Sequence[CountRow],
    *,
    facet: str,
    positive_values: Sequence[str],
    sensitive: Sequence[str] | None = None,
    post_training: bool = False,
    max_facet_values: int = 10,
) -> list[BiasResult]:
    """Bias metrics from (facet, group, label, prediction, count) rows; the pure half of `bias_metrics`.

    `facet` is only the column name written into each result. Rows with a null label are ignored; with
    `post_training` the post-training metrics use the rows whose prediction is not null. Results come per
    sensitive group, then per favourable class, in `PRE_TRAINING` then `POST_TRAINING` order.
    """
    _check_arguments(positive_values, sensitive, max_facet_values)
    sensitive = None if sensitive is None else [str(v) for v in sensitive]
    rows = [r for r in counts if r[2] is not None]
    results: list[BiasResult] = []
    for facet_value, d_values in _sensitive_groups(rows, sensitive, max_facet_values, facet):
        for positive in dict.fromkeys(str(v) for v in positive_values):
            stages: list[tuple[str, tuple[dict[str, float], int, int]]] = [
                ("pre_training", _pre_training([(f in d_values, g, y == positive, n) for f, g, y, _, n in rows])),
            ]
            if post_training:
                predicted = [
                    (f in d_values, g, y == positive, p == positive, n) for f, g, y, p, n in rows if p is not None
                ]
                stages.append(("post_training", _post_training(predicted)))
            for stage, (values, n_a, n_d) in stages:
                names = PRE_TRAINING if stage == "pre_training" else POST_TRAINING
                results.extend(
                    BiasResult(stage, facet, facet_value, positive, name, float(values[name]), n_a, n_d)
                    for name in names
                )
    return results


def bias_metrics(
    df: DataFrame,
    *,
    facet: str,
    label: str,
    prediction: str | None,
    positive_values: Sequence[str],
    sensitive: Sequence[str] | None = None,
    group: str | None = None,
    max_facet_values: int = 10,
) -> list[BiasResult]:
    """Clarify pre-training (and, with `prediction`, post-training) bias metrics of `df`.

    One Spark job: `groupBy(facet, group, label, prediction).count()`, collected, then `metrics_from_counts`.
    `label`, `prediction`, `facet` and `group` are cast to string. With `sensitive`, facet d is the rows whose
    facet is one of those values; without, each of the `max_facet_values` most frequent facet values in turn.
    `group` (optional) defines the strata of cddl / cddpl. Raises SchemaMismatch for a missing column or a facet
    with more than 1000 distinct values when `sensitive` is not given, ConfigError for empty arguments.
    """
    _check_arguments(positive_values, sensitive, max_facet_values)
    missing = [c for c in (facet, label, prediction, group) if c is not None and c not in df.columns]
    if missing:
        raise SchemaMismatch(
            f"bias: column(s) {missing} not found; the DataFrame has {df.columns}. Name columns it has, or add "
            "them to the table the metrics read"
        )
    facet_value = F.col(facet).cast("string")
    if sensitive is not None:
        # Every non-sensitive value is facet a: folding them into null keeps the collected counts small.
        facet_value = F.when(facet_value.isin([str(v) for v in sensitive]), facet_value)
    no_value = F.lit(None).cast("string")
    counts_df = (
        df.where(F.col(label).isNotNull())
        .groupBy(
            facet_value.alias("facet"),
            (F.col(group).cast("string") if group else no_value).alias("stratum"),
            F.col(label).cast("string").alias("label"),
            (F.col(prediction).cast("string") if prediction else no_value).alias("prediction"),
        )
        .count()
    )
    collected = counts_df.limit(_MAX_COUNT_ROWS + 1).collect()
    if len(collected) > _MAX_COUNT_ROWS:
        raise SchemaMismatch(_too_many_values(facet, f"more than {_MAX_COUNT_ROWS} facet x group x class combinations"))
    counts: list[CountRow] = [(r[0], r[1], r[2], r[3], int(r[4])) for r in collected]
    logger.debug("bias: %d count rows for facet '%s'", len(counts), facet)
    return metrics_from_counts(
        counts,
        facet=facet,
        positive_values=positive_values,
        sensitive=sensitive,
        post_training=prediction is not None,
        max_facet_values=max_facet_values,
    )


def check_bias_gates(
    results: Sequence[BiasResult], limits: Mapping[str, tuple[float | None, float | None]]
) -> list[str]:
    """One message per result whose metric has limits (min, max) and whose value lies outside them.

    A bound of None is open. A NaN value is not a breach (the metric is undefined, e.g. an empty facet): it is
    logged as a warning instead. Raises ConfigError for a metric name that does not exist or min > max.
    """
    known = set(PRE_TRAINING) | set(POST_TRAINING)
    unknown = sorted(set(limits) - known)
    if unknown:
        raise ConfigError(f"bias gates: unknown metric(s) {unknown}; use one of {sorted(known)}")
    for metric, (low, high) in limits.items():
        if low is not None and high is not None and low > high:
            raise ConfigError(f"bias gates: {metric} has min {low} > max {high}; give a min at most the max")
    messages: list[str] = []
    for r in results:
        if r.metric not in limits:
            continue
        low, high = limits[r.metric]
        where = f"for {r.facet}={r.facet_value} (positive: {r.label_value})"
        if math.isnan(r.value):
            logger.warning("bias: %s is undefined (nan) %s, n_a=%d n_d=%d", r.metric, where, r.n_a, r.n_d)
        elif low is not None and r.value < low:
            messages.append(f"bias: {r.metric} {r.value:.4g} {where} is below {low:g}")
        elif high is not None and r.value > high:
            messages.append(f"bias: {r.metric} {r.value:.4g} {where} is above {high:g}")
    return messages


# A trained model's bias: pre-training bias of the training split's labels and post-training bias of the test
# split's predictions, with the `bias.gates` breaches that keep the model from becoming champion. The train stage
# runs it, logs it to the model's MLflow run and records `ops.bias_metrics`.

LABEL_TEXT = "_label_text"
PRED_TEXT = "_pred_text"


@dataclass
class Fairness:
    """Bias of the training labels and of the test predictions, with the gate breaches."""

    pre: list[BiasResult]
    post: list[BiasResult]
    limits: dict[str, tuple[float | None, float | None]]
    breaches: list[str] = field(default_factory=list)

    def bounds(self, result: BiasResult) -> tuple[float | None, float | None]:
        """The (min, max) gate of a result: gates hold post-training metrics only."""
        return self.limits.get(result.metric, (None, None)) if result.stage == "post_training" else (None, None)

    def breached(self, result: BiasResult) -> bool:
        low, high = self.bounds(result)
        if math.isnan(result.value):
            return False
        return (low is not None and result.value < low) or (high is not None and result.value > high)


def _class_text(column: str, problem: Problem) -> Column:
    return F.element_at(F.array(*[F.lit(c) for c in problem.classes]), F.col(column) + 1)


def assess_bias(spec: ModelSpec, problem: Problem, train_rows: DataFrame, scored_test: DataFrame) -> Fairness:
    """Pre-training bias on the training split's labels, post-training bias on the test split's predictions."""
    config = spec.bias
    assert config is not None
    if config.favorable is not None and config.favorable not in problem.classes:
        raise ConfigError(f"bias.favorable {config.favorable!r} is not a class of {spec.label} "
                          f"({', '.join(problem.classes)})")
    if problem.n_classes == 2:
        positive = [config.favorable or problem.classes[1]]
    else:
        positive = list(problem.classes)
    common: dict[str, Any] = {
        "facet": config.facet, "label": LABEL_TEXT, "positive_values": positive,
        "sensitive": list(config.sensitive) or None, "group": config.group, "max_facet_values": config.max_facet_values,
    }
    pre = bias_metrics(train_rows.withColumn(LABEL_TEXT, _class_text(LABEL, problem)), prediction=None, **common)
    scored = scored_test.withColumns({LABEL_TEXT: _class_text(LABEL, problem), PRED_TEXT: _class_text(PRED, problem)})
    post = [r for r in bias_metrics(scored, prediction=PRED_TEXT, **common) if r.stage == "post_training"]
    limits = {metric: limit.bounds() for metric, limit in config.gates.items()}
    fairness = Fairness(pre, post, limits)
    fairness.breaches = check_bias_gates(post, limits)
    shown = [r for r in post if r.metric in ("dppl", "di")][:6]
    if shown:
        logger.info("  bias on %s (test predictions): %s", config.facet,
                 ", ".join(f"{r.metric} {r.facet_value}/{r.label_value} {r.value:.3f}" for r in shown))
    for breach in fairness.breaches:
        logger.warning("  %s", breach)
    return fairness


def result_record(result: BiasResult, fairness: Fairness) -> dict[str, Any]:
    """One result as the MLflow run's `bias_metrics.json` lists it."""
    return {"stage": result.stage, "facet": result.facet, "facet_value": result.facet_value,
            "label_value": result.label_value, "metric": result.metric,
            "value": None if math.isnan(result.value) else result.value, "n_a": result.n_a, "n_d": result.n_d,
            "breached": fairness.breached(result)}


def bias_records(fairness: Fairness, group_column: str | None) -> list[dict[str, Any]]:
    """Every result as an `ops.bias_metrics` row, without the run's and the model version's columns."""
    rows = []
    for result in [*fairness.pre, *fairness.post]:
        low, high = fairness.bounds(result)
        rows.append({
            "stage": result.stage, "dataset": "train" if result.stage == "pre_training" else "test",
            "facet": result.facet, "facet_value": result.facet_value, "group_column": group_column,
            "label_value": result.label_value, "metric": result.metric,
            "value": None if math.isnan(result.value) else float(result.value), "n_a": result.n_a, "n_d": result.n_d,
            "threshold_min": low, "threshold_max": high, "breached": fairness.breached(result),
        })
    return rows
