"""Fault injection for the reliability tests: `TROPD_FAULT=kill@<phase>:<step>` makes the training
process SIGKILL itself when it reaches that phase of that step (phases: rollout, checkpoint).
Without the variable this is a no-op, and it is read once per call so tests can set it per run.
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
