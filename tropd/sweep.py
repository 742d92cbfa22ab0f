"""The mismatch sweep (configs/sweep.yaml, `make sweep`): which runs it makes, and where they go.

One teacher, prepared once (`prepare.build: teacher`), and one student per level of prepare.mismatch
(`prepare.build: student`), each the same SFT run but for which of its answers are in the other
style. At every level: each of workflow.methods at train.lr, and each of sweep.lr_methods at
train.lr times each of sweep.lr_scales; at sweep.readings_level also the presets in sweep.readings
(TrOPD's guidance readings and FKL Outlier). Every tropd command of a level gets the level's
overrides (`level_overrides`); everything else is the profile file.

Layout (P = paths.results, M = paths.models, L = a level as `level_name` writes it, e.g. 0.2):
    M/teacher/                                the shared teacher (and data under paths.data)
    M/mL/student/, M/mL/probe.json            a level's student and its probe (measured mismatch)
    P/mL/runs/{arm}/seed{seed}/               train: summary.json, metrics.jsonl, config.resolved.yaml
    P/mL/evals/{arm|teacher|student}/seed{seed}/{task}.json
An arm is a preset name, or `<preset>_lr<scale>x` for a learning-rate multiple (e.g. opd_lr2.5x).
"""
from __future__ import annotations

from dataclasses import dataclass

from tropd.config import RunConfig


@dataclass(frozen=True)
class Arm:
    name: str  # folder under runs/ and evals/
    method: str  # the preset (configs/methods/<method>.yaml)
    lr_scale: float  # multiple of train.lr
    overrides: tuple[str, ...] = ()  # key=value beyond the level's

    @property
    def base(self) -> str:
        """The method this arm runs, whatever its learning rate."""
        return self.method


def level_name(level: float) -> str:
    return f"{level:g}"


def is_sweep(cfg: RunConfig) -> bool:
    return bool(cfg.sweep.levels)


def level_models(cfg: RunConfig, level: float) -> str:
    return f"{cfg.paths.models.rstrip('/')}/m{level_name(level)}"


def level_results(cfg: RunConfig, level: float) -> str:
    return f"{cfg.paths.results.rstrip('/')}/m{level_name(level)}"


def level_overrides(cfg: RunConfig, level: float) -> list[str]:
    """What a level changes in the profile: the knob, and where its student is."""
    models = level_models(cfg, level)
    return [f"prepare.mismatch={level!r}", f"paths.models={models}", f"student.path={models}/student"]


def arm_name(method: str, scale: float) -> str:
    return method if scale == 1 else f"{method}_lr{scale:g}x"


def arms(cfg: RunConfig, level: float) -> list[Arm]:
    """Every arm run at `level`, in table order."""
    s = cfg.sweep
    out = [Arm(m, m, 1.0) for m in cfg.workflow.methods]
    for scale in s.lr_scales:
        for m in s.lr_methods:
            out.append(Arm(arm_name(m, scale), m, scale, (f"train.lr={cfg.train.lr * scale!r}",)))
    if level == s.readings_level:
        out += [Arm(m, m, 1.0) for m in s.readings if m not in cfg.workflow.methods]
    return out


def arm(cfg: RunConfig, level: float, name: str) -> Arm:
    for a in arms(cfg, level):
        if a.name == name:
            return a
    raise KeyError(f"no arm {name!r} at level {level_name(level)}")
