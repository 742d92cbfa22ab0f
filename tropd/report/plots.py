"""Figures in the style of the paper: Figure 1 (per-domain bars with the references as lines) and
Figure 3 (training curves: student entropy, gradient norm, outlier fraction, reverse KL).

matplotlib with the Agg backend: no display needed, same PNG on every machine.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tropd.infra.io import atomic_write_bytes  # noqa: E402
from tropd.report.collect import Results  # noqa: E402
from tropd.report.stats import over_seeds  # noqa: E402
from tropd.report.tables import per_seed, domain_tasks, label  # noqa: E402

CURVES = [  # metrics.jsonl key, panel title
    ("student_entropy", "Student entropy (nats/token)"),
    ("grad_norm", "Gradient norm (before clipping)"),
    ("outlier", "Outlier fraction"),
    ("rkl", "Sampled reverse KL (nats/token)"),
]
REF_STYLE = {"teacher": dict(color="0.2", ls="--"), "student": dict(color="0.55", ls=":")}


def _colors(methods: list[str]) -> dict[str, tuple]:
    """Distinct colours: tab10 up to ten methods, tab20 (paired shades) beyond."""
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


MAX_BANDS = 6  # beyond this many methods the seed bands hide the lines: draw the means only


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _domain_estimate(res: Results, row: str, tasks: list[str]):
    return over_seeds([100 * v for v in per_seed(res, row, tasks)])


def benchmark_bars(res: Results, path: Path) -> None:
    """One panel per domain: a horizontal bar per method (mean over seeds, 95% CI), the teacher and
    the untrained student as vertical lines. Horizontal, so that 17 method names stay readable."""
    domains = domain_tasks(res)
    colors = _colors(res.methods)
    n = len(res.methods)
    fig, axes = plt.subplots(1, max(len(domains), 1), figsize=(3.4 * max(len(domains), 1) + 1.6, 1.2 + 0.28 * n),
                             squeeze=False, sharey=True)
    y = np.arange(n)[::-1]  # first method on top
    diverged = {m for (m, _), r in res.runs.items() if r.diverged_step is not None}
    ticks = [label(m) + (" †" if m in diverged else "") for m in res.methods]
    for ax, (domain, tasks) in zip(axes[0], domains.items()):
        for i, m in enumerate(res.methods):
            e = _domain_estimate(res, m, tasks)
            if e is None:
                continue
            err = [[e.mean - e.lo], [e.hi - e.mean]] if e.n > 1 else None
            hatch = "//" if m in diverged else None  # some seed diverged: scored at its last good weights
            ax.barh(y[i], e.mean, 0.7, color=colors[m], xerr=err, capsize=2, hatch=hatch, edgecolor="white",
                    error_kw={"lw": 0.8})
            ax.text(e.hi + 1.5, y[i], f"{e.mean:.1f}", va="center", fontsize=7)
        for ref, style in REF_STYLE.items():
            e = _domain_estimate(res, ref, tasks)
            if e is not None:
                ax.axvline(e.mean, lw=1.2, label=f"{label(ref)} ({e.mean:.1f})", **style)
        names = ", ".join(tasks) if len(tasks) <= 3 else f"{len(tasks)} tasks"
        ax.set_title(f"{domain.capitalize()} ({names})", fontsize=9)
        ax.set_yticks(y, ticks, fontsize=8)
        ax.set_xlim(0, 105)
        ax.set_xlabel("score (%)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    title = ("Per-domain score, one seed" if len(res.seeds) == 1
             else f"Per-domain score: mean over {len(res.seeds)} seeds, 95% Student-t interval over seeds")
    if diverged:
        title += "\n† hatched: diverged in some seed (scored at its last good weights)"
    fig.suptitle(title, fontsize=10)
    if handles:
        fig.legend(handles, [lab.rsplit(" (", 1)[0] for lab in labels], loc="lower center", ncol=2, fontsize=8,
                   frameon=False)
    fig.tight_layout(rect=(0, 0.05 if handles else 0, 1, 1))
    _save(fig, path)


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average that ignores NaN (steps where a metric is missing)."""
    if window <= 1:
        return y
    out = np.full_like(y, np.nan)
    for i in range(len(y)):
        seg = y[max(0, i - window + 1): i + 1]
        if np.isfinite(seg).any():
            out[i] = np.nanmean(seg)
    return out


def _curves(res: Results, method: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values (n_seeds, n_steps)) of one metric, NaN where a seed lacks a step."""
    per_seed = []
    for (m, _), run in sorted(res.runs.items()):
        if m != method:
            continue
        pts = {int(r["step"]): float(r[key]) for r in run.metrics() if key in r and r[key] is not None}
        if pts:
            per_seed.append(pts)
    if not per_seed:
        return None
    steps = np.array(sorted(set().union(*per_seed)))
    vals = np.array([[p.get(s, np.nan) for s in steps] for p in per_seed])  # (n_seeds, n_steps)
    return steps, vals


def training_curves(res: Results, path: Path) -> None:
    """2x2 panels; per method the mean over seeds with a band from the seeds' min to max."""
    colors = _colors(res.methods)
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.2), sharex=True)
    for ax, (key, title) in zip(axes.flat, CURVES):
        drawn = False
        for m in res.methods:
            got = _curves(res, m, key)
            if got is None:
                continue
            steps, vals = got
            window = max(1, round(len(steps) / 20))
            vals = np.array([_smooth(v, window) for v in vals])
            with np.errstate(all="ignore"):
                mean, lo, hi = np.nanmean(vals, 0), np.nanmin(vals, 0), np.nanmax(vals, 0)
            ax.plot(steps, mean, color=colors[m], lw=1.4, label=f"{label(m)} (n={len(vals)})")
            if len(vals) > 1 and len(res.methods) <= MAX_BANDS:
                ax.fill_between(steps, lo, hi, color=colors[m], alpha=0.2, lw=0)
            drawn = True
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if not drawn:
            ax.text(0.5, 0.5, "not logged by these methods", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, color="0.5")
    for ax in axes[1]:
        ax.set_xlabel("training step")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    ncol = min(len(labels), 5) or 1
    rows = -(-len(labels) // ncol)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    bands = "" if len(res.methods) > MAX_BANDS else ", band = min to max over seeds"
    fig.suptitle("Training curves, one seed" if len(res.seeds) == 1 else
                 f"Training curves: mean over {len(res.seeds)} seeds{bands}", fontsize=10)
    fig.tight_layout(rect=(0, 0.02 + 0.035 * rows, 1, 1))
    _save(fig, path)
