"""Data-parallel training for real: two CPU processes (torchrun, gloo) against one process.

Each process takes half of every step's prompts, the loss is normalised by the step's global token
count and the gradients are summed (tropd.infra.dist), so two processes must give the one-process run:
the same rollouts (same lengths, same sampled reverse KL), the same loss and gradient norm at every
step, and the same weights up to float rounding of the gradient sum (measured: max abs difference
1.2e-7 after 6 TrOPD steps). Only the main process writes the run directory.

FSDP (tropd/infra/fsdp.py), launched the way the workflow launches it (`accelerate launch --config_file
configs/accelerate/fsdp.yaml`): the same comparison, with half the student's parameters on each
process, plus resumption bit for bit and across process counts (the checkpoints are full state
dicts in the one-process format).
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

from tropd.config import REPO_ROOT

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ONE = [sys.executable]
FSDP = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO_ROOT / "configs" / "accelerate" / "fsdp.yaml"), "--num_processes", "2"]
FSDP_ENV = {"ACCELERATE_USE_FSDP": "true"}  # what that launcher sets, for torchrun


def train(launcher: list[str], profile: Path, method: str, out: Path, env: dict | None = None, *overrides):
    e = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    cmd = [*launcher, "-m", "tropd.cli", "train", "--config", str(profile), "--method", method, "--seed", "0",
           "--out", str(out), *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=600)


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "student" / "model.safetensors")


@pytest.fixture(scope="module")
def one_tropd(tiny_profile, tmp_path_factory) -> Path:
    """The one-process TrOPD run every multi-process run is compared with."""
    out = tmp_path_factory.mktemp("one") / "run"
    p = train(ONE, tiny_profile, "tropd", out)
    assert p.returncode == 0, p.stderr[-3000:]
    return out


def assert_trains_like(one: Path, two: Path, profile: Path) -> None:
    """Same rollouts, losses and gradient norms at every step, weights equal up to rounding."""
    s1, s2 = (json.loads((r / "summary.json").read_text()) for r in (one, two))
    for key in ("tokens_generated", "student_tokens_generated", "teacher_tokens_scored"):
        assert s1[key] == s2[key], key
    m1, m2 = metrics(one), metrics(two)
    assert [x["step"] for x in m2] == list(range(6))  # one line a step: only the main process writes
    for a, b in zip(m1, m2):
        assert a["response_len"] == b["response_len"] and a["finished_frac"] == b["finished_frac"]
        for key in ("loss", "grad_norm", "rkl", "student_entropy", "teacher_entropy", "trust"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    w0 = load_file(profile.parent / "models" / "student" / "model.safetensors")
    w1, w2 = weights(one), weights(two)
    moved = sum(float((w1[k] - w0[k].float()).norm() ** 2) for k in w1) ** 0.5
    apart = sum(float((w1[k] - w2[k]).norm() ** 2) for k in w1) ** 0.5
    assert moved > 0 and apart < 1e-4 * moved, (apart, moved)
    assert sorted(w1) == sorted(w2)
    assert not (two / "checkpoints").exists()


def test_two_processes_train_like_one(tiny_profile, one_tropd, tmp_path):
    """TrOPD: its Bernoulli trust draws and teacher prefixes must not depend on the sharding either."""
    two = tmp_path / "two"
    p = train(TORCHRUN, tiny_profile, "tropd", two)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count('"status"') == 1  # only the main process prints the summary
    summary = json.loads((two / "summary.json").read_text())
    assert (summary["processes"], summary["sharded"], summary["student_param_share"]) == (2, False, 1.0)
    assert_trains_like(one_tropd, two, tiny_profile)


def test_fsdp_trains_like_one_process(tiny_profile, one_tropd, tmp_path):
    """The student sharded over two processes by the workflow's own launcher and config file. The
    job's 2 threads are shared by its 2 processes (2 each would oversubscribe the cores)."""
    two = tmp_path / "fsdp"
    p = train(FSDP, tiny_profile, "tropd", two, None, "train.num_threads=2")
    assert p.returncode == 0, p.stderr[-3000:]
    summary, alone = (json.loads((r / "summary.json").read_text()) for r in (two, one_tropd))
    assert (summary["processes"], summary["sharded"], summary["torch_threads"]) == (2, True, 1)
    assert 0.45 < summary["student_param_share"] < 0.55  # each process holds half the student
    assert summary["student_state_mb"] == pytest.approx(alone["student_state_mb"] / 2, rel=0.05)
    assert_trains_like(one_tropd, two, tiny_profile)


def test_fsdp_blended_decoding_trains_like_one_process(tiny_profile, tmp_path):
    """TRB decodes the sharded student and the teacher token by token in one loop (sample_blend)."""
    one, two = tmp_path / "one", tmp_path / "fsdp"
    assert train(ONE, tiny_profile, "trb", one).returncode == 0
    p = train(TORCHRUN, tiny_profile, "trb", two, FSDP_ENV)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((two / "summary.json").read_text())["sharded"]
    assert_trains_like(one, two, tiny_profile)


def test_fsdp_resumes_bit_for_bit_and_across_process_counts(tiny_profile, tmp_path):
    """An FSDP run killed at step 3 resumes (under FSDP) to the weights of an uninterrupted one, bit
    for bit; its checkpoint (full state dicts, the one-process format) also resumes as a one-process
    run, ending within float rounding of the uninterrupted run."""
    ref = tmp_path / "ref"
    assert train(TORCHRUN, tiny_profile, "opd", ref, FSDP_ENV).returncode == 0
    for name, then in (("fsdp_fsdp", FSDP_ENV), ("fsdp_one", None)):
        cut = tmp_path / name
        killed = train(TORCHRUN, tiny_profile, "opd", cut, {**FSDP_ENV, "TROPD_FAULT": "kill@rollout:3"})
        assert killed.returncode != 0 and not (cut / "summary.json").exists()
        assert [c.name for c in sorted((cut / "checkpoints").glob("step_*"))] == ["step_000002"]
        p = train(TORCHRUN if then else ONE, tiny_profile, "opd", cut, then)
        assert p.returncode == 0, p.stderr[-3000:]
        assert "resuming" in p.stderr and len(metrics(cut)) == 6
        a, b = weights(ref), weights(cut)
        if then:
            assert all(torch.equal(a[k], b[k]) for k in a)
        else:
            assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6, name


def test_fsdp_refuses_uneven_prompts_before_writing(tiny_profile, tmp_path):
    p = train(TORCHRUN, tiny_profile, "opd", tmp_path / "r", FSDP_ENV, "train.prompts_per_step=3")
    assert p.returncode != 0 and "train.prompts_per_step=3 does not split evenly" in p.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("var, value, message", [
    ("FSDP_CPU_RAM_EFFICIENT_LOADING", "true", "fsdp_cpu_ram_efficient_loading"),
    ("FSDP_VERSION", "1", "FSDP_VERSION=1"),
    ("FSDP_OFFLOAD_PARAMS", "true", "fsdp_offload_params"),
])
def test_fsdp_launcher_settings_it_does_not_do_are_refused(monkeypatch, var, value, message):
    from tropd.errors import UserError
    from tropd.infra.fsdp import check_environment

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv(var, value)
    with pytest.raises(UserError, match=message):
        check_environment()
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    check_environment()  # not an FSDP launch: nothing to check


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


def test_fsdp_refuses_erpd_two_stages():
    from tropd.errors import UserError
    from tropd.infra.fsdp import check_request

    with pytest.raises(UserError, match="stage1_frac"):
        check_request(2, 4, two_stage=True)
    check_request(2, 4, two_stage=False)
