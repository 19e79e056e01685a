"""The significance test of the benchmark tables, without SciPy.

``paired_t_test`` is Student's paired t-test over seeds (each seed is one simulator draw and
one split that every model shares, so the per-seed differences are the paired sample). The
t distribution's tail comes from the regularised incomplete beta function,
``P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2)``, evaluated with the continued fraction of
Numerical Recipes (modified Lentz), which is exact to ~1e-14: no SciPy needed.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence


def _beta_continued_fraction(a: float, b: float, x: float, iterations: int = 500,
                             eps: float = 1e-15) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iterations + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function ``I_x(a, b)`` for ``a, b > 0``."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0, got {a}, {b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """Survival function ``P(T > t)`` of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


class TTest(NamedTuple):
    n: int
    mean_diff: float
    t: float
    p_two_sided: float
    p_one_sided: float  # H1: mean difference > 0


def paired_t_test(better: Sequence[float], worse: Sequence[float]) -> TTest:
    """Paired t-test of ``better - worse`` (oriented so that a positive mean difference
    favours ``better``). Fewer than two pairs give NaN p-values; identical nonzero
    differences (zero variance) give p = 0, all-zero differences p = 1."""
    if len(better) != len(worse):
        raise ValueError("paired_t_test needs two sequences of equal length")
    d = [float(x) - float(y) for x, y in zip(better, worse)]
    n = len(d)
    if n < 2:
        return TTest(n, d[0] if d else float("nan"), float("nan"), float("nan"), float("nan"))
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    if var <= 1e-30 * max(1.0, mean * mean):
        if mean == 0:
            return TTest(n, 0.0, 0.0, 1.0, 0.5)
        t = math.copysign(math.inf, mean)
        return TTest(n, mean, t, 0.0, 0.0 if mean > 0 else 1.0)
    t = mean / math.sqrt(var / n)
    return TTest(n, mean, t, 2.0 * t_sf(abs(t), n - 1), t_sf(t, n - 1))
