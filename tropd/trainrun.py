"""Everything `tropd.train.train` holds for a run, set up and checked before the first step, and the
run's resume point and summary. The loop itself (tropd.train) only reads these fields.

Set-up order matters for reproducibility: the seed is set before any model loads, and nothing is
written into the run directory before every check has passed (a bad input leaves no half-run).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tropd import checkpoint as ckpt
from tropd.infra import fsdp
from tropd.catalog import Bound
from tropd.config import RunConfig, code_version, dump_yaml, resolved_hash, run_hash
from tropd.data import PromptSet, load_prompts
from tropd.infra.dist import World
from tropd.errors import UserError
from tropd.infra.faults import set_method
from tropd.heldout import HeldOut
from tropd.infra.io import atomic_write_text
from tropd.models import check_profile_models, load_model, load_tokenizer, shared_vocab
from tropd.preflight import check_tokenizers
from tropd.registry import Method
from tropd.rollout import make_backend
from tropd.runstate import make_optimizer, peak_mem_mb, truncate_metrics
from tropd.versions import package_versions


@dataclass
class Run:
    cfg: RunConfig
    out: Path
    method: Method
    params: Any  # the method's parameters, parsed once by its dataclass
    behaviour: Any  # the method's declared behaviour policy (tropd.rollout.policies)
    accelerator: Any
    world: World
    tok: Any
    prompts: PromptSet
    student: torch.nn.Module
    policy: Any  # what rollouts and the training forward call: the student or its FSDP root
    teacher: torch.nn.Module
    vocab: int
    optimizer: Any
    scheduler: Any
    backend: Any
    schedule: Any  # the method's schedule (registry.OneStage or a method's own)
    heldout: HeldOut | None
    t_start: float = field(default_factory=time.time)
    start: int = 0
    wall_before: float = 0.0  # wall time of the segments before a resume (the table's train time)
    totals: dict = field(default_factory=lambda: {"tokens_generated": 0, "student_tokens_generated": 0,
                                                  "teacher_tokens_scored": 0})

    @property
    def device(self) -> torch.device:
        return self.accelerator.device


def setup(cfg: RunConfig, out: Path, log, bound: Bound) -> Run:
    """Checks, accelerator, models, data, rollout backend, schedule; then the run directory, resumed
    from its newest valid checkpoint (a finished run is handled by train_main, before this)."""
    from accelerate import Accelerator

    t_start = time.time()
    check_profile_models(cfg)  # before the accelerator: a missing model is one line, not a set-up
    method, params = bound.method, bound.params  # parsed once, by tropd.catalog.bind
    set_method(cfg.method.name)
    tc = cfg.train
    if tc.num_threads:  # the job's threads (what Snakemake and SLURM give it), shared by its processes
        torch.set_num_threads(max(1, tc.num_threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    torch.manual_seed(cfg.seed)
    # train.dtype bfloat16: fp32 master weights, bf16 compute. The student forward calls the
    # backbone and LM head directly (tropd.scoring), not model.forward, so the loop opens
    # `accelerator.autocast()` regions itself, one per rollout and one per micro-batch, never across
    # an optimizer step (autocast caches the bf16 copy of each weight until its region exits).
    # Accelerate gives the device, autocast and the process group; the model, optimizer and
    # scheduler are not `prepare`d (tropd.infra.dist says why).
    fsdp.check_environment()
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision="bf16" if tc.dtype == "bfloat16" else "no")
    world = World(accelerator)
    if accelerator.distributed_type.name in ("DEEPSPEED", "MEGATRON_LM"):
        raise UserError(f"accelerate {accelerator.distributed_type.name} is not supported by tropd train: "
                        "use configs/accelerate/ddp.yaml (data parallel) or fsdp.yaml (sharded)")
    if world.size > tc.prompts_per_step:
        raise UserError(f"train.prompts_per_step={tc.prompts_per_step} is less than the {world.size} "
                        "processes: every process needs a prompt a step")
    if world.fsdp:
        fsdp.check_request(world.size, tc.prompts_per_step, method.schedule.multi_stage)

    # -- models and data (all checks before anything is written into `out`) --
    tok = load_tokenizer(cfg.student)
    check_tokenizers(load_tokenizer(cfg.teacher), tok)
    prompts = load_prompts(cfg, tok)
    student = load_model(cfg.student, "student", trainable=True, device=world.device)
    teacher = load_model(cfg.teacher, "teacher", device=world.device)
    vocab = shared_vocab(teacher, student, tok)  # the logit rows compared and sampled from
    if tc.gradient_checkpointing:
        student.gradient_checkpointing_enable()
    # `policy` is what the rollouts and the training forward call: the student, or under FSDP its
    # root unit (tropd.infra.fsdp), whose forward gathers the shards; the optimizer holds the shards.
    policy = world.prepare_student(student)
    optimizer, scheduler = make_optimizer(student, tc)
    # vLLM gets the model itself (its path, and the shards gathered at each weight sync).
    backend = make_backend(tc.backend, student if tc.backend == "vllm" else policy, teacher, tok, vocab,
                           **(dataclasses.asdict(cfg.vllm) if tc.backend == "vllm" else {}))
    schedule = method.schedule(params, tc.steps, out, student, world)
    run = Run(cfg, out, method, params, method.behaviour(params), accelerator, world, tok, prompts, student,
              policy, teacher, vocab, optimizer, scheduler, backend, schedule,
              HeldOut.maybe(cfg, tok, world), t_start)
    _resume(run, log)
    return run


def _resume(run: Run, log) -> None:
    """The run directory: checked against this config, then resumed from its newest valid checkpoint.
    The same identity as a finished run's (run_hash): a new checkpoint_every, log_every, workflow
    resource or schema key (with its default) does not stop an interrupted run from resuming."""
    cfg, out, world = run.cfg, run.out, run.world
    resolved = out / "config.resolved.yaml"
    if resolved.is_file() and (stored := resolved_hash(out, cfg.seed)) != run_hash(cfg):
        raise UserError(f"{out} holds a run with another config (hash {stored} != {run_hash(cfg)}; "
                        f"see {resolved}); use a new --out")
    out.mkdir(parents=True, exist_ok=True)
    if world.main:
        atomic_write_text(out / "config.resolved.yaml", dump_yaml(cfg))
    pending = None
    last = ckpt.latest(out / "checkpoints", log=log)
    if last is not None:
        state = ckpt.load(last, run.student, run.optimizer, run.scheduler,
                          put=world.put_states(run.student, run.optimizer))
        run.start, run.totals = state["step"], state["totals"]
        run.wall_before = state.get("wall_s", 0.0)
        pending = state.get("metrics_line")
        if world.main:
            log(f"resuming {out} from step {run.start}")
        run.teacher = run.schedule.on_resume(run.start, run.teacher)
    if world.main:
        truncate_metrics(out / "metrics.jsonl", run.start, pending)
    world.barrier()


def save_checkpoint(run: Run, step: int, line: dict | None) -> None:
    """Checkpoint after 0-based `step`; the step's metrics line travels in it, so that a kill between
    the checkpoint and the line's write cannot lose it (truncate_metrics restores it)."""
    weights = run.world.student_state(run.student)
    optim_state = run.world.optimizer_state(run.student, run.optimizer)
    if run.world.main:
        ckpt.save(run.out / "checkpoints", step + 1, weights, optim_state, run.scheduler,
                  {"totals": run.totals, "wall_s": run.wall_before + time.time() - run.t_start,
                   "metrics_line": line}, run.cfg.train.keep_checkpoints)


def summary(run: Run, status: str, diverged_step: int | None) -> dict:
    cfg = run.cfg
    return {
        "status": status, "diverged_step": diverged_step, "method": cfg.method.name, "seed": cfg.seed,
        "steps_done": diverged_step if diverged_step is not None else cfg.train.steps,
        "wall_s": run.wall_before + time.time() - run.t_start, "peak_mem_mb": peak_mem_mb(),
        "config_hash": run_hash(cfg), "code_version": code_version(), "backend": run.backend.name,
        "processes": run.world.size, "sharded": run.world.fsdp,
        "student_param_share": fsdp.local_fraction(run.student),
        "student_state_mb": fsdp.state_mb(run.student, run.optimizer),
        "torch_threads": torch.get_num_threads(), **run.totals, "versions": package_versions(punkt=False),
    }
