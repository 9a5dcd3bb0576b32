"""cclnn.stats against textbook values (R's sleep data) and scipy's own t-tests."""
import json

import numpy as np
import pytest
from scipy import stats as sps

from cclnn.stats import (StatsError, compare, describe, detectable_difference, holm,
                         power_at)

# Student's sleep data (Cushny & Peebles), as in R's `sleep`: extra hours of sleep per patient
DRUG1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_welch_matches_the_textbook_and_scipy():
    c = compare(DRUG1, DRUG2)
    # R: t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p-value = 0.07939,
    # 95 percent confidence interval: -3.3654832  0.2054832
    assert c.test == "welch" and (c.n_a, c.n_b) == (10, 10)
    assert c.diff == pytest.approx(-1.58, abs=1e-12)
    assert c.ci95[0] == pytest.approx(-3.3654832, abs=1e-6)
    assert c.ci95[1] == pytest.approx(0.2054832, abs=1e-6)
    assert c.t == pytest.approx(-1.8608, abs=1e-4) and c.df == pytest.approx(17.776, abs=1e-3)
    assert c.p_value == pytest.approx(0.07939, abs=1e-5)
    ref = sps.ttest_ind(DRUG1, DRUG2, equal_var=False)
    assert c.p_value == pytest.approx(ref.pvalue, abs=1e-12)
    lo, hi = ref.confidence_interval(0.95)
    assert c.ci95 == pytest.approx((lo, hi), abs=1e-9)


def test_paired_matches_the_textbook_and_scipy():
    c = compare(DRUG1, DRUG2, paired=True)
    # R: t.test(DRUG1, DRUG2, paired = TRUE): t = -4.0621, df = 9, p-value = 0.002833,
    # 95 percent confidence interval: -2.4598858 -0.7001142
    assert c.test == "paired" and c.df == 9
    assert c.ci95[0] == pytest.approx(-2.4598858, abs=1e-6)
    assert c.ci95[1] == pytest.approx(-0.7001142, abs=1e-6)
    assert c.t == pytest.approx(-4.0621, abs=1e-4)
    assert c.p_value == pytest.approx(0.002833, abs=1e-6)
    assert c.p_value == pytest.approx(sps.ttest_rel(DRUG1, DRUG2).pvalue, abs=1e-12)


def test_the_detectable_difference_has_the_stated_power():
    c = compare(DRUG1, DRUG2, paired=True)
    se = c.diff / c.t
    assert power_at(c.detectable, se, c.df) == pytest.approx(0.8, abs=1e-9)
    assert power_at(c.detectable * 0.5, se, c.df) < 0.8
    # simulated: paired samples of the same spread whose true difference is the detectable one
    rng = np.random.default_rng(0)
    sd = se * np.sqrt(10)
    d = rng.normal(c.detectable, sd, size=(20000, 10))
    p = sps.ttest_1samp(d, 0.0, axis=1).pvalue
    assert abs(np.mean(p < 0.05) - 0.8) < 0.015
    # more seeds, a smaller detectable difference at the same spread
    assert detectable_difference(sd / np.sqrt(40), 39) < c.detectable


def test_holm_adjusts_like_the_textbook():
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") -> 0.03 0.06 0.06 0.02
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.9, 0.8]) == [1.0, 1.0]


@pytest.mark.parametrize("a, b, paired, message", [
    ([1.0], [1.0, 2.0], False, "a: at least 2 values"),
    ([1.0, 2.0], [3.0], False, "b: at least 2 values"),
    ([1.0, float("nan")], [1.0, 2.0], False, "finite"),
    ([1.0, 2.0, 3.0], [1.0, 2.0], True, "pairs need equal counts"),
    ([1e308, -1e308], [1.0, 2.0], False, "overflow"),
    ([1e308, 1e308], [-1e308, -1e308], False, "overflow"),
    ([1e308, 0.0], [-1e308, 0.0], True, "overflow"),
])
def test_bad_input_is_one_clear_error(a, b, paired, message):
    with pytest.raises(StatsError, match=message):
        compare(a, b, paired=paired)


def test_no_spread_gives_a_decided_or_null_result_without_dividing_by_zero():
    assert compare([1.0, 1.0], [1.0, 1.0]).p_value == 1.0
    c = compare([2.0, 2.0], [1.0, 1.0])
    assert c.p_value == 0.0 and c.ci95 == (1.0, 1.0)
    assert "df = undefined" in describe(c)  # Welch-Satterthwaite is 0 / 0 here
    assert compare([2.0, 3.0], [1.0, 2.0], paired=True).df == 1.0  # n - 1, defined
    tiny = compare([1e-170, 2e-170, 3e-170], [0.0, 1e-170])  # squares underflow: same df
    assert tiny.df == pytest.approx(compare([1.0, 2.0, 3.0], [0.0, 1.0]).df, rel=1e-12)


@pytest.mark.parametrize("factor", [2.0 ** 1000, 2.0 ** -1000])
def test_huge_and_tiny_values_give_the_everyday_test_scaled(factor):
    a, b = [1.0, -1.0, 0.3], [0.5, 0.25]
    plain = compare(a, b)
    scaled = compare([x * factor for x in a], [y * factor for y in b])
    assert scaled.p_value == pytest.approx(plain.p_value, rel=1e-12)
    assert scaled.df == pytest.approx(plain.df, rel=1e-12)
    assert scaled.diff == pytest.approx(plain.diff * factor, rel=1e-12)
    assert scaled.ci95[0] == pytest.approx(plain.ci95[0] * factor, rel=1e-12)
    assert scaled.detectable == pytest.approx(plain.detectable * factor, rel=1e-9)


def test_the_command_prints_the_json_record_and_one_line_errors(capsys):
    from cclnn.cli import main
    assert main(["stats", "--a", *map(str, DRUG1), "--b", *map(str, DRUG2), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record) == {"diff", "ci95", "p_value", "n_a", "n_b", "test", "detectable"}
    assert record["test"] == "welch" and (record["n_a"], record["n_b"]) == (10, 10)
    assert record["ci95"][0] == pytest.approx(-3.3654832, abs=1e-6)
    assert main(["stats", "--a", *map(str, DRUG1), "--b", *map(str, DRUG2), "--paired"]) == 0
    assert "paired t-test" in capsys.readouterr().out
    assert main(["stats", "--a", "35.1", "--b", "35.0", "35.2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a: at least 2 values are needed" in err


def test_a_fixed_number_is_a_one_sample_test_and_reads_both_ways():
    from cclnn.stats import compare_with_value
    c = compare_with_value(DRUG2, 0.0)
    assert c.p_value == pytest.approx(sps.ttest_1samp(DRUG2, 0.0).pvalue, abs=1e-12)
    r = c.negated()
    assert (r.diff, r.ci95, r.p_value) == (-c.diff, (-c.ci95[1], -c.ci95[0]), c.p_value)
    assert (r.n_a, r.n_b) == (c.n_b, c.n_a)


def test_negative_numbers_in_exponent_form_are_values(capsys):
    from cclnn.cli import main
    assert main(["stats", "--a", "-1e-3", "-2.5E+1", "-.5", "--b", "-1", "2", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["n_a"], record["n_b"]) == (3, 2)
    assert record["diff"] == pytest.approx((-1e-3 - 25 - 0.5) / 3 - 0.5)
