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

from tropd.catalog import bind
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
        cfg = load_config(path(profile), method=name)  # the preset exists
        bind(cfg)  # and its params parse
        for key, want in PAPER.items():
            assert get(cfg, key) == want, f"preset {name} changes {key}"
        from tropd.catalog import get_method

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


def planned_jobs(*args: str) -> tuple[str, list[dict]]:
    """`snakemake -n` of a profile: its output and every job as {rule, threads, wildcards, resources}."""
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    p = subprocess.run([snakemake, "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout + p.stderr
    jobs = []
    for block in re.split(r"^rule ", out, flags=re.M)[1:]:
        rule = block.split(":", 1)[0]
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        wc = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        jobs.append({
            "rule": rule, "threads": int(threads[1]) if threads else 1,
            "wildcards": dict(kv.split("=", 1) for kv in wc[1].split(", ")) if wc else {},
            "resources": dict(kv.split("=", 1) for kv in res[1].split(", ")) if res else {},
        })
    return out, jobs


@pytest.mark.parametrize("profile", PROFILES)
def test_slurm_plan_asks_for_gpus(profile):
    cfg = load_config(path(profile))
    out, jobs = planned_jobs("--configfile", f"configs/{profile}.yaml", "--workflow-profile", "workflow/profiles/slurm")
    n_train = len(cfg.workflow.methods) * len(cfg.workflow.seeds)
    assert re.search(rf"^train\s+{n_train}$", out, re.M), out[-3000:]
    train_jobs = [j for j in jobs if j["rule"] == "train"]
    assert len(train_jobs) == n_train
    assert all(j["resources"]["gpu"] == str(cfg.workflow.gpus_per_train) for j in train_jobs)
    assert all(j["resources"]["runtime"] == str(cfg.workflow.runtime_train) for j in train_jobs)

    # eval jobs: one GPU, their own memory and per-task wall time, not the train job's 256 GB / 12 h
    wf = cfg.workflow
    eval_jobs = [j for j in jobs if j["rule"] == "eval"]
    assert len(eval_jobs) == (len(wf.methods) + 2) * len(wf.seeds) * len(cfg.eval.tasks)
    assert 0 < wf.mem_mb_eval < wf.mem_mb_train and wf.runtime_eval > 0
    for j in eval_jobs:
        task = j["wildcards"]["task"]
        assert j["resources"]["gpu"] == "1"
        assert j["resources"]["mem_mb"] == str(wf.mem_mb_eval)
        assert j["resources"]["runtime"] == str(wf.runtime_eval_tasks.get(task, wf.runtime_eval)), task
    assert {j["resources"]["runtime"] for j in eval_jobs if j["wildcards"]["task"] == "math500"} == {
        str(wf.runtime_eval_tasks["math500"])}

    # an external prepare only checks that files exist: no GPU, little memory, minutes
    (prep,) = [j for j in jobs if j["rule"] == "prepare"]
    assert prep["resources"]["gpu"] == "0" and prep["threads"] == 1
    assert int(prep["resources"]["mem_mb"]) <= 4000 and int(prep["resources"]["runtime"]) <= 30
    # preflight loads both models once (bf16 7B + 1.5B: about 18 GB): an eval job's memory, an hour at most
    (pre,) = [j for j in jobs if j["rule"] == "preflight"]
    assert pre["resources"]["gpu"] == "1" and pre["resources"]["mem_mb"] == str(wf.mem_mb_eval)
    assert int(pre["resources"]["runtime"]) <= 60


@pytest.mark.parametrize("profile", PROFILES)
def test_workstation_command_keeps_every_gpu_busy(profile):
    """The advertised `snakemake --cores 16 --resources gpu=8`: the jobs' threads do not make the cores,
    rather than the GPUs, the limit (16 threads a job ran one job at a time on 8 GPUs)."""
    cores, gpus = 16, 8
    out, jobs = planned_jobs("--configfile", f"configs/{profile}.yaml", "--cores", str(cores),
                             "--resources", f"gpu={gpus}")
    header = path(profile).read_text().split("\nprofile:", 1)[0]
    if "--cores" in header:
        assert f"--cores {cores} --resources gpu={gpus}" in header
    for rule in ("train", "eval"):
        per_job = {(j["threads"], int(j["resources"]["gpu"])) for j in jobs if j["rule"] == rule}
        assert len(per_job) == 1, (rule, per_job)
        ((threads, gpu),) = per_job
        side_by_side = gpus // gpu
        assert side_by_side * threads <= cores, f"{rule}: {side_by_side} jobs x {threads} threads > {cores} cores"
    assert {j["threads"] for j in jobs if j["rule"] == "train"} == {load_config(path(profile)).train.num_threads}


# ----------------------------------------------------------------------------- eval resources
# KV cache per token = layers x KV heads x head dim x 2 (K and V) x 2 bytes (bf16), from the models'
# public config.json (Qwen2.5-Math-1.5B, Qwen2.5-7B, Qwen3-1.7B and Qwen3-4B architectures), and the
# bf16 weights (parameter counts of the same configs).
MODELS = {  # (layers, kv heads, head dim, parameters)
    "DeepSeek-R1-Distill-Qwen-1.5B": (28, 2, 128, 1.78e9),
    "Skywork-OR1-Math-7B": (28, 4, 128, 7.62e9),
    "qwen3-1.7b": (28, 8, 128, 2.03e9),
    "qwen3-4b": (36, 8, 128, 4.02e9),
}
KV_KIB = {"DeepSeek-R1-Distill-Qwen-1.5B": 28, "Skywork-OR1-Math-7B": 56, "qwen3-1.7b": 112, "qwen3-4b": 144}
EVALUATED = {  # both ends of each pair are evaluated (the teacher and student reference rows)
    "paper-deepseek": ("DeepSeek-R1-Distill-Qwen-1.5B", "Skywork-OR1-Math-7B"),
    "paper-qwen3": ("qwen3-1.7b", "qwen3-4b"),
}
GIB = 2**30
GPU_GIB = 78  # an 80 GB H100 / A100 shows 79.6 GiB; about 1 GiB for the CUDA context and workspaces
PROMPT_TOKENS = 1024  # allowance for the longest templated prompt of these tasks
HEADROOM = 1.5  # DynamicCache grows by torch.cat, and the caching allocator fragments as it grows
# Generating tasks' item counts (../shared/benchmarks); mmlu is scored by log-likelihood.
ITEMS = {"aime24": 30, "aime25": 30, "math500": 500, "humanevalplus": 164, "ifbench": 299}
STEP_S_PER_LAYER = 1e-3  # eager HF decoding on an H100, about 1 ms per decoder layer (an estimate)


def kv_bytes_per_token(model: str) -> int:
    layers, kv_heads, head_dim, _ = MODELS[model]
    return layers * kv_heads * head_dim * 2 * 2


def test_kv_cache_per_token():
    assert {m: kv_bytes_per_token(m) / 1024 for m in MODELS} == KV_KIB


@pytest.mark.parametrize("profile", PROFILES)
def test_eval_batch_fits_an_80gb_gpu(profile):
    """HF generate's cache at the full generation length, for every model the profile evaluates."""
    e = load_config(path(profile)).eval
    assert e.max_new_tokens == 32768 and e.dtype == "bfloat16"
    for model in EVALUATED[profile]:
        cache = e.batch_size * (PROMPT_TOKENS + e.max_new_tokens) * kv_bytes_per_token(model)
        weights = MODELS[model][3] * 2
        need = (HEADROOM * cache + weights) / GIB
        assert need <= GPU_GIB, f"{profile} {model}: batch {e.batch_size} needs {need:.1f} GiB"
    # and not needlessly small: twice the batch would not fit the larger model
    big = max(EVALUATED[profile], key=kv_bytes_per_token)
    cache = 2 * e.batch_size * (PROMPT_TOKENS + e.max_new_tokens) * kv_bytes_per_token(big)
    assert (HEADROOM * cache + MODELS[big][3] * 2) / GIB > GPU_GIB


@pytest.mark.parametrize("profile", PROFILES)
def test_eval_runtime_covers_full_length_batches(profile):
    """Every batch may run to max_new_tokens (it ends with its longest row): the job's wall time
    covers ceil(items x k / batch) such batches at the deeper evaluated model's step time."""
    cfg = load_config(path(profile))
    e, wf = cfg.eval, cfg.workflow
    step_s = max(MODELS[m][0] for m in EVALUATED[profile]) * STEP_S_PER_LAYER
    for task in e.tasks:
        runtime = wf.runtime_eval_tasks.get(task, wf.runtime_eval)
        if task not in ITEMS:  # log-likelihood scoring
            continue
        batches = -(-ITEMS[task] * e.k // e.batch_size)
        need_min = batches * e.max_new_tokens * step_s / 60
        assert need_min <= runtime < 1.1 * need_min + 60, f"{profile} {task}: {runtime} min for {need_min:.0f}"


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
    """Caught when the method is bound (and so when Snakemake plans), not on the GPUs."""
    from tropd.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        bind(load_config(path("paper-deepseek"), method=method, overrides=["workflow.train_parallel=fsdp", *overrides]))
    bind(load_config(path("paper-deepseek"), method=method, overrides=overrides))  # ddp: fine


def test_workflow_refuses_an_fsdp_plan_with_erpd(tmp_path):
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    cfg = yaml.safe_load(path("paper-deepseek").read_text())
    cfg["workflow"].update(train_parallel="fsdp", methods=["opd", "erpd"])
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(cfg))
    p = subprocess.run([snakemake, "-n", "--configfile", str(profile), "--workflow-profile",
                        "workflow/profiles/slurm"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "method erpd: ERPD's two stages" in p.stdout + p.stderr
