"""Mean and 95% bootstrap interval over seeds: the one statistic every table cell shows.

The unit of resampling is the seed (a whole training run), because seed-to-seed variation of the
training is what separates methods; per-item sampling noise is already inside each seed's score.
The bootstrap generator has a fixed seed, so a table is a pure function of its input files.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 10_000
BOOT_SEED = 0


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float  # 2.5th percentile of the bootstrap means (= mean when n == 1)
    hi: float  # 97.5th percentile
    n: int  # number of seeds behind it

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def bootstrap(values: list[float] | np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> Estimate | None:
    """Mean of `values` with a percentile bootstrap 95% interval; None when there are no values."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return None
    mean = float(x.mean())
    if x.size == 1:
        return Estimate(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))  # (n_boot, n) resampled seed indices
    means = x[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return Estimate(mean, float(lo), float(hi), int(x.size))
