"""Benchmark statistics: pass@k, per-item means and their 95% confidence intervals.

Confidence intervals are percentile bootstrap intervals over *items* (the benchmark's questions are
the sample from a population; a model's k samples of one question are not independent draws of
it), with a fixed number of resamples and a fixed seed, so the same scores always give the same
interval. Ratio metrics (IFEval's instruction level: passed instructions over all instructions)
resample items and recompute the ratio of sums.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BOOT = 2000
BOOT_SEED = 0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    # the product form avoids huge binomials
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def _boot_idx(n_items: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_items, size=(n_boot, n_items))


def mean_ci(values: Sequence[float], n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict:
    """{"mean", "ci95": [lo, hi]} of per-item values (bootstrap over items)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no items to average")
    mean = float(v.mean())
    if v.size == 1:
        return {"mean": mean, "ci95": [mean, mean]}
    boots = v[_boot_idx(v.size, n_boot, seed)].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"mean": mean, "ci95": [float(lo), float(hi)]}


def ratio_ci(num: Sequence[float], den: Sequence[float], n_boot: int = N_BOOT,
             seed: int = BOOT_SEED) -> dict:
    """{"mean", "ci95"} of sum(num) / sum(den), bootstrapping items (pairs (num_i, den_i))."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if a.size == 0 or b.sum() <= 0:
        raise ValueError("no items (or an empty denominator) for a ratio")
    mean = float(a.sum() / b.sum())
    if a.size == 1:
        return {"mean": mean, "ci95": [mean, mean]}
    idx = _boot_idx(a.size, n_boot, seed)
    den_b = b[idx].sum(axis=1)
    boots = a[idx].sum(axis=1) / np.where(den_b > 0, den_b, np.nan)
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return {"mean": mean, "ci95": [float(lo), float(hi)]}


def ks_for(n_min: int) -> list[int]:
    """The k of pass@k to report: 1, and the number of samples per item if that is more."""
    return [1] if n_min <= 1 else [1, n_min]
