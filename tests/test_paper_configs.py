"""The paper profiles carry the TrOPD paper's settings, every method they name loads, their eval tasks
exist, and Snakemake plans their whole DAG for a SLURM cluster with GPU resources.

The table below is written from /work/shared/research/methods.md section 5 (5.1 models, 5.3 unified OPD
training settings, 5.4 evaluation), not read from the configs it checks.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tropd.config import REPO_ROOT, load_config

# methods.md 5.3: "200 steps, constant LR 5e-6. Top-k = 64 for every FKL-based method. beta = 0.001 for
# guidance. Prompt batch 128 with 4 rollouts per prompt. Max generation length 8096 tokens."
# methods.md 5.4: math results are "the average accuracy over 32 samples (avg@32)".
PAPER = {
    "train.steps": 200,
    "train.lr": 5e-6,
    "train.lr_schedule": "constant",
    "train.warmup_steps": 0,
    "train.prompts_per_step": 128,
    "train.rollouts_per_prompt": 4,
    "train.max_new_tokens": 8096,
    "train.topk": 64,
    "eval.k": 32,
}
GUIDANCE_BETA = 0.001
# methods.md 5.1: (student, teacher) of each setting.
PAIRS = {
    "paper-deepseek": ("DeepSeek-R1-Distill-Qwen-1.5B", "Skywork-OR1-Math-7B"),
    "paper-qwen3": ("paper-qwen3/student", "paper-qwen3/teacher"),  # unreleased: local folders
}
# methods.md 5.4 benchmarks with no runnable local copy (shared/benchmarks/NOTES.md).
NOT_LOCAL = {"gpqa", "gpqa_diamond", "livecodebench", "lcb", "amc23", "mmlu_redux"}
PROFILES = sorted(PAIRS)


def path(profile: str) -> Path:
    return REPO_ROOT / "configs" / f"{profile}.yaml"


def get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("profile", PROFILES)
def test_paper_settings(profile):
    cfg = load_config(path(profile))
    for key, want in PAPER.items():
        assert get(cfg, key) == want, f"{profile}: {key} = {get(cfg, key)!r}, the paper says {want!r}"
    student, teacher = PAIRS[profile]
    assert student in cfg.student.path and teacher in cfg.teacher.path
    assert cfg.prepare.kind == "external" and cfg.profile == profile
    assert cfg.train.backend == "vllm" and cfg.train.dtype == "bfloat16"
    # bf16 teacher; fp32 master weights for the student, whose lr-5e-6 updates bf16 would round away
    assert cfg.teacher.dtype == "bfloat16" and cfg.student.dtype == "float32"
    assert cfg.eval.temperature > 0  # avg@32 samples
    assert cfg.workflow.gpus_per_train >= 1 and cfg.workflow.seeds
    # 128 prompts split evenly over the data-parallel processes
    assert cfg.train.prompts_per_step % max(cfg.workflow.gpus_per_train, 1) == 0
    # vLLM must fit the longest prompt plus the paper's generation length
    assert cfg.vllm.max_model_len == 0 or cfg.vllm.max_model_len > cfg.train.max_new_tokens


@pytest.mark.parametrize("profile", PROFILES)
def test_every_method_keeps_the_paper_settings(profile):
    methods = load_config(path(profile)).workflow.methods
    assert "opd" in methods and "tropd" in methods
    for name in methods:
        cfg = load_config(path(profile), method=name)  # the preset exists and its params parse
        for key, want in PAPER.items():
            assert get(cfg, key) == want, f"preset {name} changes {key}"
        from tropd.registry import get_method

        params = get_method(cfg.method.name).parse_params(cfg.method.params)
        if getattr(params, "guidance", False):
            assert params.beta == GUIDANCE_BETA, f"preset {name}: guidance beta {params.beta}"


@pytest.mark.parametrize("profile", PROFILES)
def test_eval_tasks_are_registered_and_local(profile):
    from tropd.eval.tasks import TASKS

    tasks = load_config(path(profile)).eval.tasks
    assert {"aime24", "aime25"} <= set(tasks)
    assert set(tasks) <= set(TASKS), sorted(set(tasks) - set(TASKS))
    assert not set(tasks) & NOT_LOCAL


@pytest.mark.parametrize("profile", PROFILES)
def test_slurm_plan_asks_for_gpus(profile):
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    cfg = load_config(path(profile))
    p = subprocess.run([snakemake, "-n", "--configfile", f"configs/{profile}.yaml",
                        "--workflow-profile", "workflow/profiles/slurm"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout + p.stderr
    n_train = len(cfg.workflow.methods) * len(cfg.workflow.seeds)
    assert re.search(rf"^train\s+{n_train}$", out, re.M), out[-3000:]
    train_jobs = [block for block in out.split("rule ")[1:] if block.startswith("train:")]
    assert len(train_jobs) == n_train
    assert all(f"gpu={cfg.workflow.gpus_per_train}" in b for b in train_jobs)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_train_jobs_launch_the_chosen_accelerate_config(parallel, tmp_path):
    """workflow.train_parallel picks the launcher config of a multi-GPU train job."""
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    cfg = yaml.safe_load(path("paper-deepseek").read_text())
    cfg["workflow"]["train_parallel"] = parallel
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(cfg))
    p = subprocess.run([snakemake, "-n", "-p", "--configfile", str(profile), "--workflow-profile",
                        "workflow/profiles/slurm"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    launches = re.findall(r"accelerate launch --config_file (\S+) --num_processes (\d+)", p.stdout + p.stderr)
    assert launches and set(launches) == {(f"configs/accelerate/{parallel}.yaml", str(cfg["workflow"]["gpus_per_train"]))}


@pytest.mark.parametrize("method, overrides, message", [
    ("erpd", [], "ERPD's two stages"),
    ("opd", ["workflow.gpus_per_train=3"], "train.prompts_per_step=128 does not split evenly over 3"),
])
def test_fsdp_plans_refuse_what_tropd_train_would(method, overrides, message):
    """Caught when the config loads (and so when Snakemake plans), not on the GPUs."""
    from tropd.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(path("paper-deepseek"), method=method, overrides=["workflow.train_parallel=fsdp", *overrides])
    load_config(path("paper-deepseek"), method=method, overrides=overrides)  # ddp: fine


def test_workflow_refuses_an_fsdp_plan_with_erpd(tmp_path):
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    cfg = yaml.safe_load(path("paper-deepseek").read_text())
    cfg["workflow"].update(train_parallel="fsdp", methods=["opd", "erpd"])
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(cfg))
    p = subprocess.run([snakemake, "-n", "--configfile", str(profile), "--workflow-profile",
                        "workflow/profiles/slurm"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "method erpd: ERPD's two stages" in p.stdout + p.stderr
