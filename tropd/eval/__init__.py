"""Evaluation: tasks (tasks.py), generation (generate.py), graders (graders/), the untrusted-code
sandbox (sandbox.py) and statistics (stats.py). `tropd eval` / `tropd score` live in tropd.evaluate.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where derived, re-computable files go (evalplus ground truth, lm-eval task files).

    TROPD_CACHE overrides; the default is the user's cache folder, outside the repository.
    """
    env = os.environ.get("TROPD_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tropd"
    base.mkdir(parents=True, exist_ok=True)
    return base
