"""`tropd aggregate` for a mismatch sweep (configs/sweep.yaml, tropd/sweep.py).

Writes under <out> (default paths.results):
    tables/scores.{md,csv}       per level and arm: final scores (mean ± 95% t interval over seeds),
                                 best-to-final drop of the held-out curve, gradient-norm summary,
                                 second-half entropy, divergences
    tables/per_seed.csv          the same per (level, arm, seed): what every other number is computed from
    tables/vs_opd.{md,csv}       paired difference to OPD (same seed, level, lr) per column, per level
                                 and pooled
    tables/slopes.md             slope of each method's paired difference on Avg against measured mismatch
    tables/readings.md           the guidance readings against FKL Outlier (no guidance), paired
    tables/tuning.md             the fairness record: OPD at the lowest level at every learning rate
                                 the sweep ran, against the frozen train.lr, paired
    tables/stages.md             time per stage (Snakemake benchmark files)
    claims.md                    the verdicts (tropd.report.claims)
    plots/score_vs_mismatch.png  final Avg against measured mismatch, per method and lr, with intervals
    plots/learning_curves.png    held-out Avg against step, per level and lr
    plots/grad_norm.png          gradient norm against step, per level
    mL/probe.json                each level's probe (the measured mismatch), copied from paths.models
    audit/mL/{arm}/seed{s}/      each run's metrics.jsonl.gz, config.resolved.yaml, summary.json and
                                 eval summaries: every table and curve can be recomputed from them
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tropd.config import RunConfig  # noqa: E402
from tropd.infra.io import atomic_write_bytes, atomic_write_text  # noqa: E402
from tropd.report.claims import (  # noqa: E402
    arm_label, claims_markdown, pairs, pooled, slope_vs_mismatch, vs_opd_frame, vs_opd_markdown,
)
from tropd.report.collect import load_results, write_audit  # noqa: E402
from tropd.report.paired import paired, verdict  # noqa: E402
from tropd.report.stats import over_seeds  # noqa: E402
from tropd.report.study import Study, level_from_results, measured_mismatch  # noqa: E402
from tropd.report.tables import TASK_LABELS, label  # noqa: E402
from tropd.sweep import arms, level_models, level_name  # noqa: E402

STATS = ["drop", "grad_norm_mean", "grad_norm_p95", "grad_norm_max", "entropy_2nd_half"]


def load_study(cfg: RunConfig, out: Path) -> Study:
    results = cfg.resolve(cfg.paths.results)
    levels = []
    for x in cfg.sweep.levels:
        name = level_name(x)
        probe_src = cfg.resolve(level_models(cfg, x)) / "probe.json"
        probe = out / f"m{name}" / "probe.json"
        if probe_src.is_file():
            probe.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(probe_src, probe)
        level_arms = arms(cfg, x)
        res = load_results(results / f"m{name}", [a.name for a in level_arms], cfg.workflow.seeds, cfg.eval.tasks)
        levels.append(level_from_results(res, name, x, measured_mismatch(probe),
                                         [(a.name, a.method, a.lr_scale) for a in level_arms], cfg.train.steps))
        write_audit(res, out / "audit" / f"m{name}")
    return Study(cfg.profile, list(cfg.eval.tasks), list(cfg.workflow.seeds), levels, cfg.eval.claim_column)


def per_seed_frame(study: Study) -> pd.DataFrame:
    recs = []
    for lv in study.levels:
        for ref, vals in (("student", lv.student), ("teacher", lv.teacher)):
            if vals:
                recs.append({"level": lv.name, "measured_mismatch": lv.measured, "arm": ref, "method": ref,
                             "lr_scale": None, "seed": None, **vals})
        for a in lv.arms.values():
            for seed in sorted(set(a.scores) | set(a.stats)):
                recs.append({"level": lv.name, "measured_mismatch": lv.measured, "arm": a.arm, "method": a.method,
                             "lr_scale": a.lr_scale, "seed": seed, **a.scores.get(seed, {}), **a.stats.get(seed, {}),
                             "diverged_step": a.diverged.get(seed)})
    return pd.DataFrame.from_records(recs)


def _pm(vals: list[float], k: float = 100, digits: int = 1) -> str:
    e = over_seeds(vals)
    if e is None:
        return "–"
    if e.n == 1:
        return f"{k * e.mean:.{digits}f} (n=1)"
    return f"{k * e.mean:.{digits}f} ± {k * e.half_width:.{digits}f}"


def scores_markdown(study: Study, provenance: str) -> str:
    cols = [*study.tasks, "avg"]
    head = ("| Arm | " + " | ".join(TASK_LABELS.get(c, "Avg") for c in cols)
            + " | best→final drop | grad norm mean | p95 | max | entropy 2nd half | diverged |")
    sep = "|---|" + "---:|" * (len(cols) + 6)
    lines = [f"# Final scores per mismatch level (`{study.profile}`)", "",
             "Final greedy held-out accuracy (%), mean ± half-width of the 95% Student-t interval over seeds; "
             "best→final drop: the held-out Avg curve's best point minus its last (points, mean over seeds); "
             "gradient norm before clipping over the steps (mean over seeds of each run's mean, p95, max); "
             "student entropy over the second half of the steps (nats/token). The untrained student and the "
             "teacher are one greedy evaluation each.", ""]
    for lv in study.levels:
        m = f"{100 * lv.measured:.1f}%" if lv.measured is not None else "not measured"
        lines += [f"## Level {lv.name} (measured mismatch {m})", "", head, sep]
        for ref, vals in (("Student (untrained)", lv.student), ("Teacher", lv.teacher)):
            lines.append(f"| {ref} | " + " | ".join(f"{100 * vals[c]:.1f}" if c in vals else "–" for c in cols)
                         + " | – | – | – | – | – | – |")
        for a in lv.arms.values():
            sc = [_pm(list(a.col(c).values())) for c in cols]
            st = [_pm(list(a.col("drop").values()))]
            st += [_pm(list(a.col(k).values()), 1, 2) for k in ("grad_norm_mean", "grad_norm_p95", "grad_norm_max",
                                                                    "entropy_2nd_half")]
            div = ", ".join(f"seed {s} at step {t}" for s, t in sorted(a.diverged.items())) or "–"
            lines.append(f"| {arm_label(a)} | " + " | ".join(sc + st) + f" | {div} |")
        lines.append("")
    lines += [provenance, ""]
    return "\n".join(lines)


def slopes_markdown(study: Study) -> str:
    lines = ["# Paired difference to OPD against measured mismatch", "",
             "Least-squares slope of (method − OPD, Avg, same seed, level and lr) over every (level, seed) pair "
             "against the level's measured mismatch (share of the student's own tokens with teacher probability "
             "< 0.01), in points per unit of mismatch (×0.1 for points per 10 percentage points), with its 95% t "
             "interval (n − 2 degrees of freedom). > 0: the method gains on OPD as the mismatch grows.", "",
             "| Method | lr | slope (pt per unit) | 95% interval | n | verdict (> 0) |", "|---|---:|---:|---|---:|---|"]
    for method in study.methods():
        if method == "opd":
            continue
        for scale in study.lr_scales():
            s = slope_vs_mismatch(study, pairs(study, method, "opd", "avg", scale))
            if s is None:
                continue
            lines.append(f"| {label(method)} | x{scale:g} | {100 * s.slope:+.1f} | [{100 * s.lo:+.1f}, {100 * s.hi:+.1f}]"
                         f" | {s.n} | {verdict(s.lo, s.hi, +1)} |")
    for scale in study.lr_scales():
        s = slope_vs_mismatch(study, pairs(study, "opd", "student", "avg", scale))
        if s is not None:
            lines.append(f"| OPD − untrained student | x{scale:g} | {100 * s.slope:+.1f} | "
                         f"[{100 * s.lo:+.1f}, {100 * s.hi:+.1f}] | {s.n} | {verdict(s.lo, s.hi, +1)} |")
    return "\n".join(lines) + "\n"


def tuning_markdown(study: Study, cfg: RunConfig) -> str:
    """Shared hyperparameters are chosen on OPD at the lowest mismatch, then frozen for every method
    (the README's fairness rule). This is the record: OPD's final Avg and best-to-final drop at the
    lowest level for every lr multiple the sweep ran, and each multiple minus the frozen lr, paired
    by seed. A multiple that beats x1 beyond its interval means the frozen value was not OPD's best."""
    lv = min((x for x in study.levels if x.knob is not None), key=lambda x: x.knob, default=None)
    lines = ["# Shared hyperparameters: what was tried on OPD, at the lowest mismatch", "",
             f"Frozen for every method: train.lr = {cfg.train.lr:g}, train.steps = {cfg.train.steps}, "
             f"train.prompts_per_step = {cfg.train.prompts_per_step} x {cfg.train.rollouts_per_prompt} rollouts. "
             "The learning rates tried are the rows below (OPD only, at the lowest mismatch level); the "
             "profile's comments say how steps and batch were set.", ""]
    if lv is None:
        return "\n".join(lines + ["No mismatch levels in this profile.", ""])
    base = study.arm(lv, "opd", 1.0)
    lines += [f"Level {lv.name} (measured mismatch {_pct(lv.measured)}).", "",
              "| lr | Avg (mean ± 95%) | best-to-final drop | diverged seeds | − lr x1, Avg, paired [95%] | n |",
              "|---|---:|---:|---:|---|---:|"]
    for scale in study.lr_scales():
        a = study.arm(lv, "opd", scale)
        if a is None:
            continue
        d = paired(a.col("avg"), base.col("avg")) if (base is not None and scale != 1.0) else None
        diff = "–" if d is None else f"{100 * d.mean:+.1f} [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}]"
        lines.append(f"| {cfg.train.lr * scale:g} (x{scale:g}) | {_pm(list(a.col('avg').values()))} | "
                     f"{_pm(list(a.col('drop').values()))} | {len(a.diverged)} | {diff} | "
                     f"{len(a.col('avg'))} |")
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "not measured" if x is None else f"{100 * x:.1f}%"


def readings_markdown(study: Study, cfg: RunConfig) -> str:
    lv = next((x for x in study.levels if x.knob == cfg.sweep.readings_level), None)
    lines = ["# Guidance readings (TrOPD's teacher-prefix guidance, read every way the paper allows)", ""]
    if lv is None or not cfg.sweep.readings:
        return "\n".join(lines + ["No readings in this profile.", ""])
    lines += [f"At level {lv.name}: each TrOPD reading minus FKL Outlier (TrOPD without guidance), paired by seed; "
              "mean [95% t interval] in points. help: interval > 0; hurt: interval < 0; nothing: contains 0.", "",
              "| Reading | preset | Avg | " + " | ".join(TASK_LABELS.get(t, t) for t in study.tasks) + " | guidance |",
              "|---|---|" + "---:|" * (1 + len(study.tasks)) + "---|"]
    from tropd.config import method_preset

    for a in lv.arms.values():
        if a.method not in ("tropd", *cfg.sweep.readings) or a.lr_scale != 1 or a.method == "fkl_outlier":
            continue
        params = method_preset(a.method)["method"]["params"]
        what = ", ".join(f"{k}={params.get(k)}" for k in ("prefix_rule", "guided_fraction", "prefix_unit", "prefix_norm")
                         if k in params) or "default"
        cells = []
        ver = "–"
        sub = Study(study.profile, study.tasks, study.seeds, [lv], study.claim_column)
        for c in ("avg", *study.tasks):
            e = pooled(pairs(sub, a.method, "fkl_outlier", c))
            if e is None:
                cells.append("–")
                continue
            cells.append(f"{100 * e.mean:+.1f} [{100 * e.lo:+.1f}, {100 * e.hi:+.1f}]" if e.n > 1 else f"{100 * e.mean:+.1f}")
            if c == "avg":
                ver = {"supported": "helps", "contradicted": "hurts", "inconclusive": "nothing shown"}[verdict(e.lo, e.hi, +1)]
        lines.append(f"| {label(a.method)} | `{a.method}` ({what}) | " + " | ".join(cells) + f" | {ver} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _colors(methods):
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def plot_score_vs_mismatch(study: Study, path: Path) -> None:
    scales = study.lr_scales()
    methods = [m for m in study.methods() if sum(1 for lv in study.levels for a in lv.arms.values() if a.method == m) > 1]
    colors = _colors(methods)
    fig, axes = plt.subplots(1, len(scales), figsize=(5.2 * len(scales), 4), squeeze=False, sharey=True)
    for ax, scale in zip(axes[0], scales):
        for i, m in enumerate(methods):
            xs, ys, lo, hi = [], [], [], []
            for lv in study.levels:
                a = study.arm(lv, m, scale)
                e = over_seeds(list(a.col("avg").values())) if a else None
                if e is None or lv.measured is None:
                    continue
                xs.append(100 * lv.measured + (i - len(methods) / 2) * 0.25)
                ys.append(100 * e.mean)
                lo.append(100 * (e.mean - e.lo))
                hi.append(100 * (e.hi - e.mean))
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=colors[m], label=label(m))
        ref = [(100 * lv.measured, 100 * lv.student["avg"]) for lv in study.levels
               if lv.measured is not None and "avg" in lv.student]
        if ref:
            ax.plot(*zip(*ref), ls=":", color="0.5", marker="x", label="Student (untrained)")
        tref = [100 * lv.teacher["avg"] for lv in study.levels if "avg" in lv.teacher]
        if tref:
            ax.axhline(np.mean(tref), ls="--", color="0.2", lw=1, label="Teacher")
        ax.set_title(f"lr x{scale:g}" + (" (OPD-tuned)" if scale == 1 else ""), fontsize=10)
        ax.set_xlabel("measured mismatch: student tokens with teacher p < 0.01 (%)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("final held-out Avg (%)")
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=min(len(lab), 6), fontsize=8, frameon=False)
    fig.suptitle(f"Final score against measured mismatch: mean over {len(study.seeds)} seeds, 95% t interval", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _save(fig, path)


def plot_curves(study: Study, path: Path, key: str, ylabel: str, log: bool = False) -> None:
    scales = study.lr_scales()
    methods = study.methods()
    colors = _colors(methods)
    fig, axes = plt.subplots(len(study.levels), len(scales), figsize=(4.6 * len(scales), 3.0 * len(study.levels)),
                             squeeze=False, sharex=True)
    for r, lv in enumerate(study.levels):
        for c, scale in enumerate(scales):
            ax = axes[r][c]
            for a in lv.arms.values():
                if a.lr_scale != scale or a.method not in methods:
                    continue
                src = a.curves if key == "heldout_avg" else a.grad_curves
                series = [dict(v) for v in src.values() if v]
                if series and key == "heldout_avg" and "avg" in lv.student:
                    series = [{-1: lv.student["avg"], **s} for s in series]
                if not series:
                    continue
                steps = sorted(set().union(*series))
                vals = np.array([[s.get(t, np.nan) for t in steps] for s in series])
                k = 100 if key == "heldout_avg" else 1
                with np.errstate(all="ignore"):
                    mean = np.nanmean(vals, 0)
                st = np.array(steps) + 1
                ax.plot(st, k * mean, color=colors[a.method], lw=1.3, label=label(a.method))
                if len(series) > 1 and key == "heldout_avg":
                    ax.fill_between(st, k * np.nanmin(vals, 0), k * np.nanmax(vals, 0), color=colors[a.method],
                                    alpha=0.12, lw=0)
            if log:
                ax.set_yscale("log")
            m = f", measured {100 * lv.measured:.0f}%" if lv.measured is not None else ""
            ax.set_title(f"level {lv.name}{m}, lr x{scale:g}", fontsize=9)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel(ylabel, fontsize=8)
            if r == len(study.levels) - 1:
                ax.set_xlabel("training step")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    band = ", band = min to max over seeds; step 0 = the untrained student" if key == "heldout_avg" else ""
    fig.suptitle(f"{ylabel}: mean over seeds{band}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, path)


# ----------------------------------------------------------------------------- entry point


def aggregate_sweep(cfg: RunConfig, out: Path, provenance: str) -> list[Path]:
    study = load_study(cfg, out)
    tables, plots = out / "tables", out / "plots"
    written = []
    ps = per_seed_frame(study)
    atomic_write_text(tables / "per_seed.csv", ps.to_csv(index=False))
    atomic_write_text(tables / "scores.md", scores_markdown(study, provenance))
    atomic_write_text(tables / "scores.csv", _scores_frame(study).to_csv(index=False))
    frame = vs_opd_frame(study)
    atomic_write_text(tables / "vs_opd.csv", frame.to_csv(index=False))
    atomic_write_text(tables / "vs_opd.md", vs_opd_markdown(study, frame, provenance))
    atomic_write_text(tables / "slopes.md", slopes_markdown(study))
    atomic_write_text(tables / "readings.md", readings_markdown(study, cfg))
    atomic_write_text(tables / "tuning.md", tuning_markdown(study, cfg))
    atomic_write_text(out / "claims.md", claims_markdown(study, provenance))
    written += [tables / n for n in ("per_seed.csv", "scores.md", "scores.csv", "vs_opd.csv", "vs_opd.md",
                                     "slopes.md", "readings.md", "tuning.md")] + [out / "claims.md"]
    plot_score_vs_mismatch(study, plots / "score_vs_mismatch.png")
    plot_curves(study, plots / "learning_curves.png", "heldout_avg", "held-out Avg (%)")
    plot_curves(study, plots / "grad_norm.png", "grad_norm", "gradient norm before clipping", log=True)
    written += [plots / "score_vs_mismatch.png", plots / "learning_curves.png", plots / "grad_norm.png"]
    return written


def _scores_frame(study: Study) -> pd.DataFrame:
    recs = []
    for lv in study.levels:
        for a in lv.arms.values():
            for c in [*study.columns, "drop", "grad_norm_mean", "grad_norm_p95", "grad_norm_max", "entropy_2nd_half"]:
                e = over_seeds(list(a.col(c).values()))
                if e is None:
                    continue
                recs.append({"level": lv.name, "measured_mismatch": lv.measured, "arm": a.arm, "method": a.method,
                             "lr_scale": a.lr_scale, "column": c, "mean": e.mean, "ci95_lo": e.lo, "ci95_hi": e.hi,
                             "n_seeds": e.n, "diverged_seeds": " ".join(map(str, sorted(a.diverged)))})
    return pd.DataFrame.from_records(recs)
