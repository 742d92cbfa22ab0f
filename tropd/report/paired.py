"""Paired comparisons: a method against OPD seed by seed, and how that difference moves with the
teacher-student mismatch.

Same seed = same prompts in the same order and the same sampling streams (tropd.infra.seeding derives every
draw from the run seed), so the seed-to-seed variation the two runs share cancels in their difference.
The unit is the pair (one seed, and in a sweep one level):

    d_i = x_i(method) - x_i(OPD),   mean(d) ± t_{0.975, n-1} * sd(d) / sqrt(n)

(tropd.report.stats.over_seeds on the differences). Its interval is narrower than the two per-method
intervals whenever the runs of one seed are correlated, which is what lets 3 seeds separate methods.

The slope of d against the measured mismatch x is ordinary least squares over every (level, seed)
pair, with its 95% interval slope ± t_{0.975, n-2} * SE(slope) (scipy.stats.linregress gives SE).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import linregress
from scipy.stats import t as student_t

from tropd.report.stats import Estimate, over_seeds


def paired(a: dict, b: dict) -> Estimate | None:
    """Mean of a[k] - b[k] over the keys both hold, with its 95% Student-t interval; None if none."""
    keys = sorted(set(a) & set(b))
    return over_seeds([a[k] - b[k] for k in keys])


@dataclass(frozen=True)
class Slope:
    slope: float
    lo: float
    hi: float
    n: int  # pairs behind it
    intercept: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def slope(x: list[float], y: list[float]) -> Slope | None:
    """OLS slope of y on x with its 95% t interval (n - 2 degrees of freedom); None when fewer than
    three points or fewer than two distinct x."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if xs.size < 3 or np.unique(xs).size < 2:
        return None
    r = linregress(xs, ys)
    half = float(student_t.ppf(0.975, xs.size - 2) * r.stderr) if math.isfinite(r.stderr) else math.nan
    return Slope(float(r.slope), float(r.slope) - half, float(r.slope) + half, int(xs.size), float(r.intercept))


def verdict(lo: float, hi: float, direction: int) -> str:
    """The rule of every claim: `supported` when the 95% interval lies wholly on the claimed side of 0
    (direction +1: above, -1: below), `contradicted` when it lies wholly on the other side,
    `inconclusive` when it contains 0 (or is undefined)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if direction * lo > 0 and direction * hi > 0:
        return "supported"
    if direction * lo < 0 and direction * hi < 0:
        return "contradicted"
    return "inconclusive"


def all_of(parts: list[str]) -> str:
    """A claim that says every part: supported when every part is, contradicted when any part is,
    inconclusive otherwise."""
    if "contradicted" in parts:
        return "contradicted"
    return "supported" if parts and all(p == "supported" for p in parts) else "inconclusive"


def any_of(parts: list[str]) -> str:
    """A claim that any of its parts would show (a stress axis): supported when some part is and none
    contradicts it, contradicted when some part is and none supports it, inconclusive otherwise (mixed
    or all inconclusive)."""
    sup, con = "supported" in parts, "contradicted" in parts
    if sup and not con:
        return "supported"
    if con and not sup:
        return "contradicted"
    return "inconclusive"
