"""The workflow on a real (local, one-node) SLURM cluster through the executor plugin and the
committed profile workflow/profiles/slurm: prepare, preflight, train and eval run as sbatch jobs
(the GPU jobs on a fake GPU), aggregate on the submitting host. Installs slurm-wlm with apt when it
is missing and skips only when that is impossible (not root, no apt, no network)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_cluster import LocalSlurm, install
from test_workflow import REPO_ROOT, ci_profile

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = install()
    if why:
        pytest.skip(f"no local SLURM: {why}")
    c = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_workflow_runs_on_slurm(cluster, tmp_path):
    profile = ci_profile(tmp_path, workflow={"methods": ["opd"], "seeds": [0], "gpus_per_train": 1,
                                             "mem_mb_train": 2000, "runtime_train": 20})
    env = dict(cluster.env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO_ROOT / "workflow" / "Snakefile"),
           "--workflow-profile", str(REPO_ROOT / "workflow" / "profiles" / "slurm"),
           "--configfile", str(profile), "--jobs", "4", "--latency-wait", "5",
           # what this cluster needs beyond the committed profile: no accounts, no slurmdbd
           "--slurm-no-account", "--slurm-status-command", "squeue",
           "--slurm-init-seconds-before-status-checks", "1"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:] + "\n" + cluster.log_tail()

    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", out))
    assert sorted(submitted.values()) == ["eval", "eval", "eval", "preflight", "prepare", "train"]
    train_job = next(j for j, rule in submitted.items() if rule == "train")
    info = subprocess.run(["scontrol", "show", "job", train_job], env=env, capture_output=True, text=True).stdout
    assert "JobState=COMPLETED" in info and "gres:gpu:1" in info  # resource gpu=1 became --gpus=1

    summary = json.loads((tmp_path / "results/runs/opd/seed0/summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps_done"] == 8
    for row in ("opd", "teacher", "student"):
        e = json.loads((tmp_path / f"results/evals/{row}/seed0/tiny_math.json").read_text())
        assert e["task"] == "tiny_math" and 0 <= e["metrics"][e["primary"]]["mean"] <= 1
    assert "| OPD |" in (tmp_path / "results/tables/main.md").read_text()
    assert (tmp_path / "results/plots/training_curves.png").stat().st_size > 0
