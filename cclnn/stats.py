"""Two-sample comparisons for claims like "A beats B": Welch's or the paired t-test, a 95 %
confidence interval, the smallest difference the data could have detected, Holm's correction.

Seeds are the unit of a claim about an architecture: each value is one training run's score.
With two to four seeds per row a t-test has very few degrees of freedom, so the detectable
difference (80 % power at alpha = 0.05, from the noncentral t distribution with the observed
standard error) says what "not significant" is worth: a margin well below it is undecided, not
absent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from .errors import CclnnError

ALPHA = 0.05
POWER = 0.8


class StatsError(CclnnError, ValueError):
    """The numbers cannot be compared (too few, not finite, unequal pairs)."""


@dataclass(frozen=True)
class Comparison:
    diff: float  # mean(a) - mean(b), or the mean of the differences when paired
    ci95: tuple[float, float]
    p_value: float  # two-sided
    n_a: int
    n_b: int
    test: Literal["welch", "paired"]
    detectable: float  # smallest |true difference| found with POWER at ALPHA
    t: float
    df: float

    def negated(self) -> "Comparison":
        """The same test read as b - a."""
        return Comparison(-self.diff, (-self.ci95[1], -self.ci95[0]), self.p_value, self.n_b,
                          self.n_a, self.test, self.detectable, -self.t, self.df)

    def as_dict(self) -> dict:
        """The ``cclnn stats --json`` record."""
        return {"diff": self.diff, "ci95": list(self.ci95), "p_value": self.p_value,
                "n_a": self.n_a, "n_b": self.n_b, "test": self.test,
                "detectable": self.detectable}


def _check(values: Sequence[float], side: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) < 2:
        raise StatsError(f"{side}: at least 2 values are needed, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise StatsError(f"{side}: every value must be a finite number")
    return values


def _mean_var(values: list[float]) -> tuple[float, float]:
    mean = math.fsum(values) / len(values)
    return mean, math.fsum((v - mean) * (v - mean) for v in values) / (len(values) - 1)


def _unit(*sides: list[float]) -> float:
    """1, or for magnitudes where sums of squares could overflow or underflow a power of two
    near the largest: the values divided by it lie within [-2, 2] and the division is exact."""
    top = max(abs(v) for side in sides for v in side)
    if top == 0 or 2.0 ** -400 < top < 2.0 ** 400:
        return 1.0
    return math.ldexp(1.0, math.frexp(top)[1] - 1)


def compare(a: Sequence[float], b: Sequence[float], paired: bool = False) -> Comparison:
    """Compare ``a`` with ``b``: Welch's t-test, or with ``paired`` the one-sample t-test on
    ``a[i] - b[i]`` (for rows that share everything but the factor under test)."""
    a, b = _check(a, "a"), _check(b, "b")
    if paired and len(a) != len(b):
        raise StatsError(f"paired: a has {len(a)} values and b {len(b)}; pairs need equal "
                         f"counts")
    unit = _unit(a, b)
    a, b = [v / unit for v in a], [v / unit for v in b]
    if paired:
        diff, var = _mean_var([x - y for x, y in zip(a, b)])
        se2, df = var / len(a), len(a) - 1.0
    else:
        (mean_a, var_a), (mean_b, var_b) = _mean_var(a), _mean_var(b)
        diff = mean_a - mean_b
        qa, qb = var_a / len(a), var_b / len(b)
        se2 = qa + qb
        # Welch-Satterthwaite; undefined with no spread on either side (the result is exact)
        df = (1.0 / ((qa / se2) ** 2 / (len(a) - 1) + (qb / se2) ** 2 / (len(b) - 1))
              if se2 > 0 else math.nan)
    return _t_test(diff, math.sqrt(se2), df, len(a), len(b), "paired" if paired else "welch",
                   unit)


def compare_with_value(a: Sequence[float], value: float) -> Comparison:
    """One-sample t-test of ``a`` against a fixed number (a method without seeds, such as
    bicubic or published weights): Welch's test with no spread on that side."""
    a = _check(a, "a")
    if not math.isfinite(value):
        raise StatsError(f"the fixed value must be a finite number, got {value}")
    unit = _unit(a, [value])
    mean, var = _mean_var([v / unit for v in a])
    return _t_test(mean - value / unit, math.sqrt(var / len(a)), len(a) - 1.0, len(a), 1,
                   "welch", unit)


def _t_test(diff: float, se: float, df: float, n_a: int, n_b: int, test, unit: float
            ) -> Comparison:
    """The test on values divided by ``unit``; differences are given back in the values' own
    unit."""
    from scipy import stats as sps  # scipy costs 0.3 s to import: only when numbers are compared
    if se == 0:  # identical values within each side: the data admit no error at all
        p, half, detectable = (1.0 if diff == 0 else 0.0), 0.0, 0.0
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        t = diff / se
        p = float(2 * sps.t.sf(abs(t), df))
        half = float(sps.t.ppf(1 - ALPHA / 2, df)) * se
        detectable = detectable_difference(se, df)
    lo, hi = (diff - half) * unit, (diff + half) * unit
    if not all(map(math.isfinite, (lo, hi, detectable * unit))):
        raise StatsError("the values are too far apart to compare: their difference overflows "
                         "a float")
    return Comparison(diff * unit, (lo, hi), p, n_a, n_b, test, detectable * unit, t, df)


def power_at(delta: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Probability that the two-sided t-test rejects when the true difference is ``delta``."""
    from scipy import stats as sps
    crit = sps.t.ppf(1 - alpha / 2, df)
    nc = delta / se
    wrong_side = float(sps.nct.cdf(-crit, df, nc))  # NaN where it underflows (large nc)
    return float(sps.nct.sf(crit, df, nc)) + (0.0 if math.isnan(wrong_side) else wrong_side)


def detectable_difference(se: float, df: float, power: float = POWER,
                          alpha: float = ALPHA) -> float:
    """The true difference the test finds with probability ``power`` (noncentral t)."""
    from scipy.optimize import brentq
    high = se
    while power_at(high, se, df, alpha) < power:
        high *= 2
    return float(brentq(lambda d: power_at(d, se, df, alpha) - power, 0.0, high, xtol=1e-12 * se,
                        rtol=1e-12))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (same order): a family of tests keeps its error rate at alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def describe(c: Comparison) -> str:
    """The text of ``cclnn stats``: difference, interval, test, detectable difference."""
    name = "paired t-test" if c.test == "paired" else "Welch's t-test"
    counts = f"n = {c.n_a} pairs" if c.test == "paired" else f"n_a = {c.n_a}, n_b = {c.n_b}"
    df = "undefined (no spread on either side)" if math.isnan(c.df) else f"{c.df:.4g}"
    return "\n".join([
        f"mean difference a - b: {c.diff:+.6g} (95 % CI {c.ci95[0]:+.6g} to {c.ci95[1]:+.6g})",
        f"{name}: t = {c.t:.4g}, df = {df}, two-sided p = {c.p_value:.4g} ({counts})",
        f"smallest difference detectable with {POWER * 100:.0f} % power at alpha = {ALPHA}: "
        f"{c.detectable:.4g}"])
