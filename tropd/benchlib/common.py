"""Shared helpers of the benchmarks: what machine this is, peak memory of a code block, and timing
of competing variants interleaved (A B A B ...) so that load changes on a shared machine hit both.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch


def machine() -> dict:
    """CPU model, cores, load, torch / transformers versions and threads: printed with every result."""
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers

    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "transformers": transformers.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "loadavg_start": loadavg()}
    try:
        info["mem_total_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def loadavg() -> list[float]:
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return []


def _status_kb(key: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


@contextmanager
def peak_rss():
    """Peak resident memory reached inside the block above the RSS at its start, in MiB.

    Linux's high-water mark (VmHWM) is reset to the current RSS on entry (writing 5 to
    /proc/self/clear_refs), so whatever the set-up touched before does not mask the block's peak.
    Yields a dict filled on exit: peak_mb, rss_before_mb, method.
    """
    import gc

    gc.collect()
    _malloc_trim()  # give freed heap back to the OS: otherwise the block reuses it unseen
    out: dict = {}
    before = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        out["method"] = "VmHWM after clear_refs reset"
    except OSError:  # no reset possible: fall back to ru_maxrss, exact only if the block sets a new peak
        out["method"] = "ru_maxrss (not reset; a lower bound)"
    yield out
    import resource

    hwm = _status_kb("VmHWM") if out["method"].startswith("VmHWM") else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["rss_before_mb"] = (before or 0) / 1024
    out["peak_mb"] = max((hwm or 0) - (before or 0), 0) / 1024


def interleaved(variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                progress: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Wall seconds of each variant, run in turn `repeats` times after `warmup` untimed rounds.

    The order alternates between rounds (A B, B A, ...) so that a drift in machine load within a
    round does not always favour the same variant.
    """
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(warmup + repeats):
        order = list(variants.items())
        for name, fn in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
        if progress:
            progress(f"round {r + 1}/{warmup + repeats}")
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def ratio_stats(num: list[float], den: list[float]) -> dict:
    """Median of per-round ratios (paired: each round's two runs saw the same machine load) and the
    ratio of medians; their spread says how noisy the machine was."""
    per_round = [a / b for a, b in zip(num, den)]
    return {"median_of_ratios": median(per_round), "ratio_of_medians": median(num) / median(den),
            "min": min(per_round), "max": max(per_round)}
