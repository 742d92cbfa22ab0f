"""Fault injection for the reliability tests, through the environment (a no-op without it):

- `TROPD_FAULT=kill@<phase>:<step>`: the training process SIGKILLs itself when it reaches that
  phase of that step (phases: rollout, checkpoint, checkpoint-write, and metrics: after the
  checkpoint of step N and before the metrics line of step N-1 is written; finish: after
  .finished.json, before the checkpoints are deleted, N = steps done);
- `TROPD_FAULT=nan@loss:<step>`: the loss of that step becomes NaN (a diverging method);
- `TROPD_FAULT_METHOD=<name>`: only runs of that method are hit (a whole DAG shares one environment).
"""
from __future__ import annotations

import os
import signal


_METHOD: str | None = None  # the method of this process's run, set by tropd.train


def set_method(name: str) -> None:
    global _METHOD
    _METHOD = name


def _spec() -> str:
    only = os.environ.get("TROPD_FAULT_METHOD")
    return "" if only and only != _METHOD else os.environ.get("TROPD_FAULT", "")


def fault_point(phase: str, step: int) -> None:
    spec = _spec()
    if not spec:
        return
    action, _, where = spec.partition("@")
    f_phase, _, f_step = where.partition(":")
    if action == "kill" and f_phase == phase and int(f_step) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def poison(value, phase: str, step: int):
    """`value` times NaN when TROPD_FAULT=nan@<phase>:<step>, else `value` unchanged."""
    if _spec() == f"nan@{phase}:{step}":
        return value * float("nan")
    return value
