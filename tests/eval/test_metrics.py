import numpy as np
import pytest

from captcha.eval.metrics import (
    MISSING,
    aligned_chars,
    char_metrics,
    confusions,
    score,
    string_metrics,
)


def test_char_metrics():
    assert char_metrics(np.array([1, 2, 3]), np.array([1, 2, 0])) == {"char_acc": pytest.approx(2 / 3), "chars": 3}
    assert np.isnan(char_metrics(np.array([]), np.array([]))["char_acc"])


def test_string_metrics_count_whole_strings_positions_and_characters():
    m = string_metrics(["AB12", "AB13", "A"], ["AB12", "AB12", "AB12"])
    assert m["string_acc"] == pytest.approx(1 / 3) and m["captchas"] == 3
    assert m["position_acc"] == pytest.approx([1.0, 2 / 3, 2 / 3, 1 / 3])
    assert m["captcha_char_acc"] == pytest.approx((4 + 3 + 1) / 12)
    assert np.isnan(string_metrics([], [])["string_acc"])
    mixed = string_metrics(["AB12", "AB1", "AB"], ["AB12", "AB13", "AB"])  # a site whose lengths vary
    assert mixed["position_acc"] == pytest.approx([1.0, 1.0, 1.0, 1 / 2])  # the 4th over the two that have one


def test_confusions_count_aligned_pairs_and_short_readings():
    t, p = aligned_chars(["AB13", "0B", "AB13"], ["AB12", "OB12", "AB12"])
    assert len(t) == len(p) == 12 and p.count(MISSING) == 2
    assert {(a, b): n for a, b, n in confusions(t, p)} == {("2", "3"): 2, ("1", MISSING): 1, ("2", MISSING): 1,
                                                            ("O", "0"): 1}
    assert sum(n for *_, n in confusions(t, p)) == sum(a != b for a, b in zip(t, p))


def test_score_orders_strings_then_characters_and_nan_last():
    assert score({"string_acc": 0.5, "char_acc": 0.9}) > score({"string_acc": 0.5, "char_acc": 0.8})
    assert score({"string_acc": 0.1}) > score({"string_acc": float("nan"), "char_acc": 1.0})


def test_rejection_at_coverage_refuses_the_least_confident_and_counts_the_wrong_ones_among_them():
    from captcha.eval.metrics import rejection

    conf = [0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.2, 0.1]
    ok = [True] * 7 + [False, False, False]
    r = rejection(conf, ok, coverage=0.8)
    assert r["coverage"] == 0.8 and r["threshold"] == 0.92
    assert abs(r["wrong_rejected"] - 2 / 3) < 1e-9 and abs(r["kept_accuracy"] - 7 / 8) < 1e-9
    assert rejection([], []) == {}


def test_reliability_bins_and_ece():
    from captcha.eval.metrics import reliability

    perfect = reliability([0.95] * 20, [True] * 19 + [False])
    assert abs(perfect["ece"]) < 1e-9 and perfect["bins"][0]["count"] == 20
    over = reliability([0.95] * 10, [True] * 5 + [False] * 5)
    assert abs(over["ece"] - 0.45) < 1e-9
