"""Data-parallel training for real: two CPU processes (torchrun, gloo) against one process.

Each process takes half of every step's prompts, the loss is normalised by the step's global token
count and the gradients are summed (tropd.dist), so two processes must give the one-process run:
the same rollouts (same lengths, same sampled reverse KL), the same loss and gradient norm at every
step, and the same weights up to float rounding of the gradient sum (measured: max abs difference
1.2e-7 after 6 TrOPD steps). Only the main process writes the run directory.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ONE = [sys.executable]


def train(launcher: list[str], profile: Path, method: str, out: Path, env: dict | None = None):
    e = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    cmd = [*launcher, "-m", "tropd.cli", "train", "--config", str(profile), "--method", method, "--seed", "0",
           "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=600)


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "student" / "model.safetensors")


def test_two_processes_train_like_one(tiny_profile, tmp_path):
    """TrOPD: its Bernoulli trust draws and teacher prefixes must not depend on the sharding either."""
    method = "tropd"
    one, two = tmp_path / "one", tmp_path / "two"
    for launcher, out in ((ONE, one), (TORCHRUN, two)):
        p = train(launcher, tiny_profile, method, out)
        assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count('"status"') == 1  # only the main process prints the summary
    s1, s2 = (json.loads((r / "summary.json").read_text()) for r in (one, two))
    assert (s1["processes"], s2["processes"]) == (1, 2)
    for key in ("tokens_generated", "student_tokens_generated", "teacher_tokens_scored"):
        assert s1[key] == s2[key], key
    m1, m2 = metrics(one), metrics(two)
    assert [x["step"] for x in m2] == list(range(6))  # one line a step: only the main process writes
    for a, b in zip(m1, m2):
        assert a["response_len"] == b["response_len"] and a["finished_frac"] == b["finished_frac"]
        for key in ("loss", "grad_norm", "rkl", "student_entropy", "teacher_entropy", "trust"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    w0 = load_file(tiny_profile.parent / "models" / "student" / "model.safetensors")
    w1, w2 = weights(one), weights(two)
    moved = sum(float((w1[k] - w0[k].float()).norm() ** 2) for k in w1) ** 0.5
    apart = sum(float((w1[k] - w2[k]).norm() ** 2) for k in w1) ** 0.5
    assert moved > 0 and apart < 1e-4 * moved, (apart, moved)
    assert not (two / "checkpoints").exists()


def test_two_processes_resume_after_sigkill(tiny_profile, tmp_path):
    """Both processes die at step 3's rollout; the rerun resumes from the main process's checkpoint
    and ends with the weights of an uninterrupted two-process run, bit for bit."""
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert train(TORCHRUN, tiny_profile, "opd", ref).returncode == 0
    killed = train(TORCHRUN, tiny_profile, "opd", cut, env={"TROPD_FAULT": "kill@rollout:3"})
    assert killed.returncode != 0 and not (cut / "summary.json").exists()
    assert [p.name for p in sorted((cut / "checkpoints").glob("step_*"))] == ["step_000002"]
    p = train(TORCHRUN, tiny_profile, "opd", cut)
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = weights(ref), weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(metrics(cut)) == 6


def test_more_processes_than_prompts_is_refused(tiny_profile, tmp_path):
    p = subprocess.run([*TORCHRUN, "-m", "tropd.cli", "train", "--config", str(tiny_profile),
                        "--method", "opd", "--seed", "0", "--out", str(tmp_path / "r"),
                        "train.prompts_per_step=1"],
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert p.returncode != 0 and "train.prompts_per_step=1" in p.stderr
    assert not (tmp_path / "r").exists()
