"""Fault injection for the reliability tests, through the environment (a no-op without it):

- `TROPD_FAULT=kill@<phase>:<step>`: the training process SIGKILLs itself when it reaches that
  phase of that step (phases: rollout, checkpoint, checkpoint-write);
- `TROPD_FAULT=nan@loss:<step>`: the loss of that step becomes NaN (a diverging method).
"""
from __future__ import annotations

import os
import signal


def fault_point(phase: str, step: int) -> None:
    spec = os.environ.get("TROPD_FAULT")
    if not spec:
        return
    action, _, where = spec.partition("@")
    f_phase, _, f_step = where.partition(":")
    if action == "kill" and f_phase == phase and int(f_step) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def poison(value, phase: str, step: int):
    """`value` times NaN when TROPD_FAULT=nan@<phase>:<step>, else `value` unchanged."""
    spec = os.environ.get("TROPD_FAULT", "")
    if spec == f"nan@{phase}:{step}":
        return value * float("nan")
    return value
