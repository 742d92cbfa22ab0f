"""A profile's results as one study for the paired comparisons and the claims: every arm at every
mismatch level, per seed (tropd.report.claims, tropd.report.sweep_report).

A plain profile (tiny, smol) is a study of one level whose arms are workflow.methods at train.lr; a
sweep (tropd.sweep) has a level per student and arms at several learning rates. Per (arm, seed) it
holds the final scores (from the eval summaries: each task and the average over tasks, fractions)
and run statistics from metrics.jsonl: the gradient norm before clipping (mean, p95, max over steps),
the student's entropy over the second half of the steps, and the held-out learning curve's best and
final points (train.eval_every) with the drop between them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tropd.report.collect import Results


@dataclass
class ArmData:
    level: str
    arm: str
    method: str
    lr_scale: float
    scores: dict[int, dict[str, float]] = field(default_factory=dict)  # seed -> column -> fraction
    stats: dict[int, dict[str, float]] = field(default_factory=dict)  # seed -> statistic -> value
    curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)  # seed -> [(step, heldout_avg)]
    grad_curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)  # seed -> [(step, grad_norm)]
    diverged: dict[int, int] = field(default_factory=dict)  # seed -> step

    def col(self, column: str) -> dict[int, float]:
        """seed -> value of a score column (a task or `avg`) or a run statistic."""
        src = self.scores if column in next(iter(self.scores.values()), {}) else self.stats
        return {s: v[column] for s, v in src.items() if column in v}


@dataclass
class Level:
    name: str  # "0.2", or the profile name for a one-level study
    knob: float | None  # prepare.mismatch
    measured: float | None  # share of the student's own tokens with teacher probability < 0.01 (probe)
    student: dict[str, float] = field(default_factory=dict)  # column -> untrained student (one greedy eval)
    teacher: dict[str, float] = field(default_factory=dict)
    arms: dict[str, ArmData] = field(default_factory=dict)


@dataclass
class Study:
    profile: str
    tasks: list[str]
    seeds: list[int]
    levels: list[Level]
    claim_column: str = "avg"  # the score the claims test: `avg` or one of `tasks` (eval.claim_column)

    @property
    def columns(self) -> list[str]:
        return [*self.tasks, "avg"]

    def arm(self, level: Level, method: str, lr_scale: float = 1.0) -> ArmData | None:
        for a in level.arms.values():
            if a.method == method and a.lr_scale == lr_scale:
                return a
        return None

    def lr_scales(self) -> list[float]:
        return sorted({a.lr_scale for lv in self.levels for a in lv.arms.values()})

    def methods(self) -> list[str]:
        seen: list[str] = []
        for lv in self.levels:
            for a in lv.arms.values():
                if a.method not in seen:
                    seen.append(a.method)
        return seen


def _scores(res: Results, row: str, seed: int) -> dict[str, float] | None:
    got = {t: res.evals.get((row, seed, t)) for t in res.tasks}
    if not all(got.values()):
        return None
    out = {t: e.value for t, e in got.items()}
    out["avg"] = float(np.mean([out[t] for t in res.tasks]))
    return out


def run_stats(metrics: list[dict], steps: int | None = None) -> dict[str, float]:
    """Gradient-norm summary, second-half entropy and the held-out curve's best/final/drop."""
    out: dict[str, float] = {}
    gn = np.array([m["grad_norm"] for m in metrics if m.get("grad_norm") is not None], float)
    if gn.size:
        out.update(grad_norm_mean=float(gn.mean()), grad_norm_p95=float(np.percentile(gn, 95)),
                   grad_norm_max=float(gn.max()))
    last = steps if steps is not None else (max((m["step"] for m in metrics), default=-1) + 1)
    ent = [m["student_entropy"] for m in metrics if m.get("student_entropy") is not None and m["step"] >= last / 2]
    if ent:
        out["entropy_2nd_half"] = float(np.mean(ent))
    curve = [(m["step"], m["heldout_avg"]) for m in metrics if m.get("heldout_avg") is not None]
    if curve:
        vals = [v for _, v in curve]
        out.update(heldout_best=max(vals), heldout_final=vals[-1], drop=max(vals) - vals[-1])
    return out


def level_from_results(res: Results, name: str, knob: float | None, measured: float | None,
                       arms: list[tuple[str, str, float]], steps: int | None = None) -> Level:
    """`arms`: (row name in `res`, method preset, lr multiple)."""
    lv = Level(name, knob, measured)
    for ref, dest in (("student", lv.student), ("teacher", lv.teacher)):
        for seed in res.seeds:
            got = _scores(res, ref, seed)
            if got:
                dest.update(got)
                break
    for row, method, scale in arms:
        a = ArmData(name, row, method, scale)
        for seed in res.seeds:
            got = _scores(res, row, seed)
            if got:
                a.scores[seed] = got
            run = res.runs.get((row, seed))
            if run is not None:
                metrics = run.metrics()
                a.stats[seed] = run_stats(metrics, steps)
                a.curves[seed] = [(m["step"], m["heldout_avg"]) for m in metrics if m.get("heldout_avg") is not None]
                a.grad_curves[seed] = [(m["step"], m["grad_norm"]) for m in metrics if m.get("grad_norm") is not None]
                if run.diverged_step is not None:
                    a.diverged[seed] = run.diverged_step
        lv.arms[row] = a
    return lv


def measured_mismatch(probe: Path) -> float | None:
    """The probe's share of the student's own sampled tokens to which the teacher gives p < 0.01."""
    try:
        return float(json.loads(probe.read_text())["teacher_logp"]["student_samples"]["frac_below_0.01"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
