"""Bias metrics without Spark: every Clarify metric against counts worked out by hand.

Expected values are written as fractions from the confusion counts (and, where the Clarify page has a worked
example, from that example), never by calling the code under test another way.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from fractions import Fraction as Fr

import pytest

from goldsmith.errors import ConfigError, SchemaMismatch
from goldsmith.quality.bias import (
    POST_TRAINING,
    PRE_TRAINING,
    BiasResult,
    CountRow,
    check_bias_gates,
    metrics_from_counts,
)


def confusion(facet: str | None, tp: int, fp: int, fn: int, tn: int, group: str | None = None) -> list[CountRow]:
    """Count rows of one facet: label/prediction '1' is the favourable class."""
    return [
        (facet, group, "1", "1", tp),
        (facet, group, "0", "1", fp),
        (facet, group, "1", "0", fn),
        (facet, group, "0", "0", tn),
    ]


def values(results: list[BiasResult], stage: str, facet_value: str = "EWR", label_value: str = "1") -> dict[str, float]:
    chosen = [r for r in results if (r.stage, r.facet_value, r.label_value) == (stage, facet_value, label_value)]
    by_name = {r.metric: r.value for r in chosen}
    assert len(by_name) == len(chosen)
    return by_name


def run(counts: list[CountRow], **kwargs: object) -> list[BiasResult]:
    options: dict[str, object] = {"facet": "origin", "positive_values": ["1"], "sensitive": ["EWR"]}
    options |= {"post_training": True} | kwargs
    return metrics_from_counts(counts, **options)  # type: ignore[arg-type]


# The confusion matrices of the Clarify RD and SD pages:
#   facet a (JFK): TN 20, FN 5, FP 10, TP 65 (n_a = 100);  facet d (EWR): TN 18, FN 7, FP 5, TP 20 (n_d = 50)
CLARIFY = confusion("JFK", tp=65, fp=10, fn=5, tn=20) + confusion("EWR", tp=20, fp=5, fn=7, tn=18)


def test_pre_training_metrics_by_hand() -> None:
    got = values(run(CLARIFY), "pre_training")
    # observed positives: a 65 + 5 = 70 of 100, d 20 + 7 = 27 of 50
    q_a, q_d = Fr(70, 100), Fr(27, 50)
    assert list(got) == list(PRE_TRAINING)
    assert got["ci"] == pytest.approx(float(Fr(100 - 50, 150)))  # 1/3
    assert got["dpl"] == pytest.approx(float(q_a - q_d))  # 35/50 - 27/50 = 4/25
    # P_a = (3/10, 7/10), P_d = (23/50, 27/50)
    assert got["kl"] == pytest.approx(0.3 * math.log(0.3 / 0.46) + 0.7 * math.log(0.7 / 0.54))
    # M = ((0.30 + 0.46) / 2, (0.70 + 0.54) / 2) = (0.38, 0.62)
    js = 0.5 * (0.3 * math.log(0.3 / 0.38) + 0.7 * math.log(0.7 / 0.62)
                + 0.46 * math.log(0.46 / 0.38) + 0.54 * math.log(0.54 / 0.62))
    assert got["js"] == pytest.approx(js)
    assert got["lp"] == pytest.approx(math.sqrt(0.16**2 + 0.16**2))
    assert got["tvd"] == pytest.approx(0.5 * (0.16 + 0.16))
    assert got["ks"] == pytest.approx(0.16)
    # one stratum: rejected 30 + 23 = 53 (23 in d), accepted 70 + 27 = 97 (27 in d)
    assert got["cddl"] == pytest.approx(float(Fr(23, 53) - Fr(27, 97)))


def test_post_training_metrics_by_hand() -> None:
    results = run(CLARIFY)
    got = values(results, "post_training")
    assert list(got) == list(POST_TRAINING)
    # predicted positives: a 10 + 65 = 75 of 100, d 5 + 20 = 25 of 50
    assert got["dppl"] == pytest.approx(float(Fr(75, 100) - Fr(25, 50)))  # 1/4
    assert got["di"] == pytest.approx(float(Fr(25, 50) / Fr(75, 100)))  # 2/3
    # observed / predicted positives: a 70/75, d 27/25
    assert got["dca"] == pytest.approx(float(Fr(70, 75) - Fr(27, 25)))  # -11/75
    # observed / predicted negatives: d 23/25, a 30/25
    assert got["dcr"] == pytest.approx(float(Fr(23, 25) - Fr(30, 25)))  # -7/25
    assert got["rd"] == pytest.approx(0.19, abs=0.005)  # the page: 65/70 - 20/27 = 0.93 - 0.74 = 0.19
    assert got["rd"] == pytest.approx(float(Fr(65, 70) - Fr(20, 27)))
    assert got["sd"] == pytest.approx(0.1159, abs=1e-4)  # the page: 18/(18+5) - 20/(20+10) = 0.1159
    assert got["sd"] == pytest.approx(float(Fr(18, 23) - Fr(20, 30)))
    assert got["ad"] == pytest.approx(float(Fr(85, 100) - Fr(38, 50)))  # 0.85 - 0.76 = 0.09
    assert got["dar"] == pytest.approx(float(Fr(65, 75) - Fr(20, 25)))  # 1/15
    assert got["drr"] == pytest.approx(float(Fr(18, 25) - Fr(20, 25)))  # -2/25
    assert got["te"] == pytest.approx(float(Fr(7, 5) - Fr(5, 10)))  # FN_d/FP_d - FN_a/FP_a = 0.9
    # predicted rejections 25 + 25 = 50 (25 in d), predicted acceptances 75 + 25 = 100 (25 in d)
    assert got["cddpl"] == pytest.approx(float(Fr(25, 50) - Fr(25, 100)))  # 1/4
    post = [r for r in results if r.stage == "post_training"]
    assert {(r.facet, r.facet_value, r.label_value, r.n_a, r.n_d) for r in post} == {("origin", "EWR", "1", 100, 50)}


def test_te_and_ad_follow_the_clarify_te_example() -> None:
    # the TE page: a has FN 8, FP 6 and TP + TN = 86 (here 50 + 36); d has FN 5, FP 2 and TP + TN = 43 (20 + 23)
    got = values(run(confusion("JFK", 50, 6, 8, 36) + confusion("EWR", 20, 2, 5, 23)), "post_training")
    assert got["te"] == pytest.approx(float(Fr(5, 2) - Fr(8, 6)))  # 2.5 - 1.33 = 1.167
    assert got["ad"] == pytest.approx(0.0)  # 86/100 - 43/50: the same accuracy


def test_dar_follows_the_clarify_dar_example() -> None:
    # a: 70 predicted positives of which 35 true; d: 100 predicted positives of which 40 true
    got = values(run(confusion("JFK", 35, 35, 10, 20) + confusion("EWR", 40, 60, 5, 15)), "post_training")
    assert got["dar"] == pytest.approx(float(Fr(35, 70) - Fr(40, 100)))  # 0.10


def test_dca_and_dcr_follow_the_clarify_examples() -> None:
    # DCA page, example 1: a 70 observed vs 60 predicted acceptances, d 20 vs 30
    got = values(run(confusion("JFK", 50, 10, 20, 20) + confusion("EWR", 15, 15, 5, 15)), "post_training")
    assert got["dca"] == pytest.approx(float(Fr(70, 60) - Fr(20, 30)))  # 1/2
    # DCR page, example 1: a 50 observed vs 60 predicted rejections, d 40 vs 30
    got = values(run(confusion("JFK", 30, 10, 20, 40) + confusion("EWR", 5, 15, 5, 25)), "post_training")
    assert got["dcr"] == pytest.approx(float(Fr(40, 30) - Fr(50, 60)))  # 1/2


def labelled(facet: str, group: str, accepted: int, rejected: int) -> list[CountRow]:
    """Rows whose prediction equals the label."""
    return [(facet, group, "1", "1", accepted), (facet, group, "0", "0", rejected)]


# Simpson's paradox: d applies mostly to the hard department Y.
#   X: d 8 accepted / 2 rejected, a 20 / 10;   Y: d 6 / 24, a 1 / 9
DEPARTMENTS = labelled("EWR", "X", 8, 2) + labelled("JFK", "X", 20, 10) + labelled("EWR", "Y", 6, 24) + labelled(
    "JFK", "Y", 1, 9
)


def test_cddl_conditions_on_the_strata() -> None:
    pre = values(run(DEPARTMENTS), "pre_training")
    dd_x = Fr(2, 12) - Fr(8, 28)  # rejected 12 (2 in d), accepted 28 (8 in d): -5/42
    dd_y = Fr(24, 33) - Fr(6, 7)  # rejected 33 (24 in d), accepted 7 (6 in d): -10/77
    cdd = (40 * dd_x + 40 * dd_y) / 80  # -115/924
    assert pre["cddl"] == pytest.approx(float(cdd))
    assert pre["cddl"] < 0
    assert values(run(DEPARTMENTS), "post_training")["cddpl"] == pytest.approx(float(cdd))  # predictions = labels


def test_without_a_group_cddl_is_the_plain_demographic_disparity() -> None:
    pooled: list[CountRow] = [(f, None, y, p, n) for f, _, y, p, n in DEPARTMENTS]
    # rejected 12 + 33 = 45 (26 in d), accepted 28 + 7 = 35 (14 in d)
    assert values(run(pooled), "pre_training")["cddl"] == pytest.approx(float(Fr(26, 45) - Fr(14, 35)))  # 8/45


def test_a_stratum_without_acceptances_contributes_zero_to_that_term() -> None:
    counts = labelled("EWR", "P", 1, 1) + labelled("JFK", "P", 1, 3) + labelled("EWR", "Q", 0, 2) + labelled(
        "JFK", "Q", 0, 2
    )
    dd_p = Fr(1, 4) - Fr(1, 2)  # n_P = 6
    dd_q = Fr(2, 4) - 0  # n_Q = 4, no acceptances in Q
    assert values(run(counts), "pre_training")["cddl"] == pytest.approx(float((6 * dd_p + 4 * dd_q) / 10))  # 1/20


def test_multiclass_is_one_vs_rest() -> None:
    counts: list[CountRow] = [
        ("EWR", None, "A", None, 2), ("EWR", None, "B", None, 1), ("EWR", None, "C", None, 1),
        ("JFK", None, "A", None, 1), ("JFK", None, "B", None, 1), ("JFK", None, "C", None, 4),
    ]
    results = run(counts, positive_values=["A", "B", "C"], post_training=False)
    assert {r.stage for r in results} == {"pre_training"}
    assert [r.label_value for r in results] == ["A"] * 8 + ["B"] * 8 + ["C"] * 8
    # n_a = 6, n_d = 4
    assert values(results, "pre_training", label_value="A")["dpl"] == pytest.approx(float(Fr(1, 6) - Fr(2, 4)))
    assert values(results, "pre_training", label_value="B")["dpl"] == pytest.approx(float(Fr(1, 6) - Fr(1, 4)))
    assert values(results, "pre_training", label_value="C")["dpl"] == pytest.approx(float(Fr(4, 6) - Fr(1, 4)))
    assert values(results, "pre_training", label_value="C")["ci"] == pytest.approx(float(Fr(6 - 4, 10)))


AIRPORTS: list[CountRow] = [
    ("LGA", None, "1", None, 5), ("EWR", None, "0", None, 3), ("JFK", None, "1", None, 3), (None, None, "0", None, 2)
]


def test_most_frequent_facet_values_in_turn_and_null_facet_in_a() -> None:
    results = run(AIRPORTS, sensitive=None, max_facet_values=2, post_training=False)
    # LGA (5) first, then EWR and JFK tie at 3 and the smaller value wins
    assert list(dict.fromkeys(r.facet_value for r in results)) == ["LGA", "EWR"]
    ewr = [r for r in results if r.facet_value == "EWR"]
    assert {(r.n_a, r.n_d) for r in ewr} == {(5 + 3 + 2, 3)}
    assert values(results, "pre_training")["dpl"] == pytest.approx(float(Fr(8, 10) - Fr(0, 3)))


def test_sensitive_values_form_one_group() -> None:
    results = run(AIRPORTS, sensitive=["EWR", "JFK"], post_training=False)
    assert {(r.facet_value, r.n_a, r.n_d) for r in results} == {("EWR,JFK", 7, 6)}
    assert values(results, "pre_training", facet_value="EWR,JFK")["dpl"] == pytest.approx(float(Fr(5, 7) - Fr(3, 6)))


def test_more_than_1000_facet_values_needs_sensitive() -> None:
    counts: list[CountRow] = [(str(i), None, "1", None, 1) for i in range(1001)]
    with pytest.raises(SchemaMismatch, match="sensitive="):
        run(counts, sensitive=None)
    assert {(r.n_a, r.n_d) for r in run(counts, sensitive=["7"], post_training=False)} == {(1000, 1)}


def test_null_labels_are_ignored_and_null_predictions_leave_post_training() -> None:
    counts = [*CLARIFY, ("EWR", None, None, "1", 100), ("EWR", None, "1", None, 3)]
    results = run(counts)
    assert {(r.n_a, r.n_d) for r in results if r.stage == "pre_training"} == {(100, 53)}
    assert {(r.n_a, r.n_d) for r in results if r.stage == "post_training"} == {(100, 50)}
    # the 3 extra positive labels enter q_d: (27 + 3) / 53
    assert values(results, "pre_training")["dpl"] == pytest.approx(float(Fr(70, 100) - Fr(30, 53)))
    assert values(results, "post_training")["dppl"] == pytest.approx(0.25)


def test_without_post_training_only_pre_training_metrics() -> None:
    assert [r.metric for r in run(CLARIFY, post_training=False)] == list(PRE_TRAINING)
    assert [r.metric for r in run(CLARIFY, post_training=True)] == list(PRE_TRAINING + POST_TRAINING)


def test_undefined_values_are_nan_not_errors() -> None:
    results = run(CLARIFY, sensitive=["SFO"])  # an empty facet d
    pre, post = values(results, "pre_training", "SFO"), values(results, "post_training", "SFO")
    assert pre["ci"] == 1.0  # (150 - 0) / 150 is defined
    assert all(math.isnan(v) for k, v in (pre | post).items() if k != "ci")
    assert {(r.n_a, r.n_d) for r in results} == {(150, 0)}
    assert all(math.isnan(r.value) for r in run([], post_training=True))
    assert run([], sensitive=None) == []


def test_a_zero_denominator_gives_nan_only_for_the_metrics_that_divide_by_it() -> None:
    # a: TP 1, TN 1, so P_a = (1/2, 1/2);  d: FN 2 only, so P_d = (0, 1) and FP_d = TP_d = 0
    results = run(confusion("JFK", 1, 0, 0, 1) + confusion("EWR", 0, 0, 2, 0))
    pre, post = values(results, "pre_training"), values(results, "post_training")
    assert math.isnan(pre["kl"])  # P_a(0) ln(P_a(0) / P_d(0)) = 1/2 ln(1/2 / 0)
    # M = (1/4, 3/4): JS = 1/2 [1/2 ln(2) + 1/2 ln(2/3) + 1 ln(4/3)] stays finite
    assert pre["js"] == pytest.approx(0.5 * (0.5 * math.log(2) + 0.5 * math.log(2 / 3) + math.log(4 / 3)))
    assert math.isnan(post["te"])  # FN_d / FP_d = 2 / 0
    assert math.isnan(post["dar"])  # TP_d / (TP_d + FP_d) = 0 / 0
    assert math.isnan(post["dca"])  # n_d(1) / n'_d(1) = 2 / 0
    assert post["di"] == 0.0  # q'_d / q'_a = (0/2) / (1/2)
    assert post["dppl"] == pytest.approx(0.5)
    # the other way round q'_a = 0, so di = q'_d / 0
    swapped = run(confusion("EWR", 1, 0, 0, 1) + confusion("JFK", 0, 0, 2, 0))
    assert math.isnan(values(swapped, "post_training")["di"])


def test_bad_arguments_raise() -> None:
    with pytest.raises(ConfigError, match="positive_values"):
        run(CLARIFY, positive_values=[])
    with pytest.raises(ConfigError, match="positive_values"):
        run(CLARIFY, positive_values="1")
    with pytest.raises(ConfigError, match="sensitive"):
        run(CLARIFY, sensitive=[])
    with pytest.raises(ConfigError, match="max_facet_values"):
        run(CLARIFY, sensitive=None, max_facet_values=0)


def result(metric: str, value: float) -> BiasResult:
    return BiasResult("post_training", "origin", "EWR", "true", metric, value, 100, 50)


def test_gates_report_values_outside_the_limits(caplog: pytest.LogCaptureFixture) -> None:
    results = [result("dppl", 0.31), result("di", 0.7), result("di", 1.5), result("rd", 0.9), result("sd", math.nan),
               result("ad", 0.05)]
    limits = {"dppl": (None, 0.2), "di": (0.8, 1.25), "sd": (-0.1, 0.1), "ad": (-0.1, 0.1)}
    with caplog.at_level(logging.WARNING, logger="goldsmith.quality.bias"):
        messages = check_bias_gates(results, limits)
    assert messages == [
        "bias: dppl 0.31 for origin=EWR (positive: true) is above 0.2",
        "bias: di 0.7 for origin=EWR (positive: true) is below 0.8",
        "bias: di 1.5 for origin=EWR (positive: true) is above 1.25",
    ]
    assert "sd is undefined (nan) for origin=EWR" in caplog.text
    assert check_bias_gates(results, {}) == []


def test_gates_reject_unknown_metrics_and_inverted_limits() -> None:
    with pytest.raises(ConfigError, match="unknown metric"):
        check_bias_gates([], {"dpp": (None, 0.2)})
    with pytest.raises(ConfigError, match=r"min 0\.5 > max 0\.1"):
        check_bias_gates([], {"dpl": (0.5, 0.1)})


def test_results_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        result("dppl", 0.1).value = 0.0  # type: ignore[misc]
