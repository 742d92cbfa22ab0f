"""Mean over seeds and its 95% Student-t interval: the one statistic every table cell shows.

The unit is the seed (a whole training run), because seed-to-seed variation of the training is
what separates methods; per-item sampling noise is already inside each seed's score (each eval
summary has its own bootstrap interval over items).

    mean ± t_{0.975, n-1} * s / sqrt(n),   s the sample standard deviation of the n seed scores

Why not a bootstrap over seeds: with the 3-5 seeds a harness can afford, the percentile bootstrap
is the range of the seeds (with 3, all three resamples are one seed with probability 1/27 > 2.5%,
so its 2.5th and 97.5th percentiles are the min and the max), and the range of 3 runs covers their
true mean only about 75% of the time. The t interval covers it 95% of the time when seed scores are
roughly normal, widens as it should with few seeds (t = 4.30 at n = 3) and is symmetric, so
"mean ± half-width" states it exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float  # lower end of the 95% t interval (= mean when n == 1)
    hi: float  # upper end
    n: int  # number of seeds behind it

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def over_seeds(values: list[float] | np.ndarray) -> Estimate | None:
    """Mean of `values` with a 95% Student-t interval; None when there are no values."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return None
    mean = float(x.mean())
    if x.size == 1:
        return Estimate(mean, mean, mean, 1)
    half = float(student_t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Estimate(mean, mean - half, mean + half, int(x.size))
