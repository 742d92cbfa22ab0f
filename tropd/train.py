"""The training loop, one function read top to bottom: rollout, score, loss, reduce, step, log,
checkpoint.

    tropd train --config configs/tiny.yaml --method tropd --seed 0 --out results/tiny/runs/tropd/seed0

Outputs in DIR: metrics.jsonl (one line a step), config.resolved.yaml, checkpoints/, student/ (the
final weights as a transformers folder; the last good ones if the run diverged) and summary.json,
written last; checkpoints/ exists only while the run is unfinished. Rerunning on an existing DIR
resumes from its newest valid checkpoint; on a finished DIR it exits at once. A run that diverges
(non-finite loss or gradient, or a sampled reverse KL past `train.divergence_rkl`) stops cleanly and
is recorded as `diverged` with its step: a result, not a crash. Under `accelerate launch` (or
torchrun) with N processes, each takes 1/N of every step's prompts and the gradients are summed
(tropd.dist): the same update as one process.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from tropd import checkpoint as ckpt
from tropd import fsdp
from tropd.config import RunConfig, code_version, dump_yaml, load_config, resolved_hash, run_hash
from tropd.data import load_prompts
from tropd.dist import World
from tropd.errors import UserError
from tropd.faults import fault_point, poison, set_method
from tropd.io import atomic_write_text
from tropd.models import check_profile_models, load_model, load_tokenizer, shared_vocab
from tropd.preflight import check_tokenizers
from tropd.reduce import masked_mean, reduce_loss, step_count
from tropd.catalog import get_method
from tropd.registry import StepContext, TokenStats
from tropd.rollout import collect, make_backend, rollout_kind
from tropd.runstate import (
    Stage2, finish, make_optimizer, peak_mem_mb, read_summary, truncate_metrics,
)
from tropd.scoring import student_forward, teacher_score
from tropd.versions import package_versions


def _log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def train(cfg: RunConfig, out: Path, log=_log) -> dict:
    """Distil the student with `cfg.method`; returns the summary written to out/summary.json."""
    from accelerate import Accelerator

    t_start = time.time()
    check_profile_models(cfg)  # before the accelerator: a missing model is one line, not a set-up
    method = get_method(cfg.method.name)
    params = method.parse_params(cfg.method.params)
    set_method(cfg.method.name)
    kind = rollout_kind(method, params)
    tc = cfg.train
    if tc.num_threads:  # the job's threads (what Snakemake and SLURM give it), shared by its processes
        torch.set_num_threads(max(1, tc.num_threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    torch.manual_seed(cfg.seed)
    # train.dtype bfloat16: fp32 master weights, bf16 compute. The student forward calls the
    # backbone and LM head directly (tropd.scoring), not model.forward, so the loop opens
    # `accelerator.autocast()` regions itself, one per rollout and one per micro-batch, never across
    # an optimizer step (autocast caches the bf16 copy of each weight until its region exits).
    # Accelerate gives the device, autocast and the process group; the model, optimizer and
    # scheduler are not `prepare`d (tropd.dist says why).
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
        fsdp.check_request(world.size, tc.prompts_per_step, getattr(params, "stage1_frac", None) is not None)

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
    # root unit (tropd.fsdp), whose forward gathers the shards; the optimizer holds the shards.
    policy = world.prepare_student(student)
    optimizer, scheduler = make_optimizer(student, tc)
    # vLLM gets the model itself (its path, and the shards gathered at each weight sync).
    backend = make_backend(tc.backend, student if tc.backend == "vllm" else policy, teacher, tok, vocab,
                           **(dataclasses.asdict(cfg.vllm) if tc.backend == "vllm" else {}))
    pad_id = tok.pad_token_id
    stage2 = Stage2.maybe(params, tc.steps, out, student, teacher, world)
    heldout = HeldOut.maybe(cfg, tok, world)

    # -- run directory: resume from the newest valid checkpoint --
    # The same identity as a finished run's (run_hash): a new checkpoint_every, log_every, workflow
    # resource or schema key (with its default) does not stop an interrupted run from resuming.
    resolved = out / "config.resolved.yaml"
    if resolved.is_file() and (stored := resolved_hash(out, cfg.seed)) != run_hash(cfg):
        raise UserError(f"{out} holds a run with another config (hash {stored} != {run_hash(cfg)}; "
                        f"see {resolved}); use a new --out")
    out.mkdir(parents=True, exist_ok=True)
    if world.main:
        atomic_write_text(out / "config.resolved.yaml", dump_yaml(cfg))
    start, totals = 0, {"tokens_generated": 0, "student_tokens_generated": 0, "teacher_tokens_scored": 0}
    wall_before, pending = 0.0, None
    last = ckpt.latest(out / "checkpoints", log=log)
    if last is not None:
        state = ckpt.load(last, student, optimizer, scheduler, put=world.put_states(student, optimizer))
        start, totals = state["step"], state["totals"]
        wall_before = state.get("wall_s", 0.0)  # the segments before this one (the table's train time)
        pending = state.get("metrics_line")
        if world.main:
            log(f"resuming {out} from step {start}")
        teacher = stage2.on_resume(start, teacher)
    if world.main:
        truncate_metrics(out / "metrics.jsonl", start, pending)
    world.barrier()

    status, diverged_step = "finished", None
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, desc=f"{cfg.method.name} s{cfg.seed}",
               dynamic_ncols=True, mininterval=1.0, disable=not world.main)
    for step in bar:
        teacher = stage2.on_step(step, teacher, optimizer, scheduler)
        times: dict[str, float] = {}

        # 1. rollout: the behaviour policy writes completions (this process's share of the prompts).
        t0 = _clock(accelerator.device)
        fault_point("rollout", step)
        idx = prompts.indices(step, tc.prompts_per_step)
        mine = world.shard(len(idx))
        with accelerator.autocast():  # one region a rollout: the weights do not change inside it
            batch = stage2.fixed_rollout(step) or collect(
                kind, backend, [prompts.prompt_tokens[idx[k]] for k in mine],
                [prompts.reference_tokens[idx[k]] for k in mine], tc.rollouts_per_prompt, params,
                step=step, total_steps=tc.steps, seed=cfg.seed, max_new_tokens=tc.max_new_tokens,
                temperature=tc.temperature, top_p=tc.top_p, pad_id=pad_id, positions=mine,
            )
        stage2.remember_rollout(step, batch)
        times["time_rollout"] = _clock(accelerator.device) - t0
        batch = batch.to(accelerator.device)
        mask_all = batch.response_mask_BT
        finished_B = batch.finished_B if batch.finished_B is not None else torch.ones_like(mask_all[:, 0])
        # train.truncated=mask: responses cut by max_new_tokens stay in the metrics, not in the loss.
        loss_mask_all = mask_all & finished_B[:, None] if tc.truncated == "mask" else mask_all
        # Whole-step counts over every process: the loss is normalised by the global count.
        n_tok, n_gen, n_seq, n_fin, n_norm, n_loss_tok, n_loss_teacher = world.sum([
            float(mask_all.sum()), float((mask_all & ~batch.from_teacher_BT).sum()), float(batch.size),
            float(finished_B.sum()), step_count(loss_mask_all, tc.loss_norm), float(loss_mask_all.sum()),
            float((loss_mask_all & batch.from_teacher_BT).sum())])
        denom = max(n_norm, 1.0)
        totals["tokens_generated"] += int(n_tok)  # by either model (teacher prefixes too)
        totals["student_tokens_generated"] += int(n_gen)
        totals["teacher_tokens_scored"] += int(n_tok) if method.scores_teacher else 0

        # 2-4. per micro-batch: teacher scoring, student forward, method loss, shared reduction.
        sums: dict[str, list[float]] = {}
        loss_total, t_score, t_fwd = 0.0, 0.0, 0.0
        for mb in range(0, batch.size, tc.micro_batch):
            micro = batch.select(slice(mb, mb + tc.micro_batch))
            ctx = StepContext(step, tc.steps, micro.row_seeds(cfg.seed, step), n_loss_tok, n_loss_teacher)
            t0 = _clock(accelerator.device)
            full = "full_logits" in method.needs
            scored = (teacher_score(teacher, micro, tc.topk, tc.chunk_size, full, vocab)
                      if method.scores_teacher else
                      {"teacher_logp_BT": torch.full_like(micro.behav_logp_BT, float("nan"))})
            t_score += _clock(accelerator.device) - t0
            t0 = _clock(accelerator.device)
            # bf16 for the student forward only, closed before backward and the step; the method
            # loss and the reduction run in fp32 (the forward returns fp32 log-probs).
            args = (micro, scored.get("teacher_topk_ids_BTK"), tc.chunk_size, full, vocab)
            with accelerator.autocast():
                stud = student_forward(student, *args) if policy is student else policy(*args, fn=student_forward)
            # The method sees only the tokens it trains on, so a selection (Entropy-OPD's top 20%,
            # REOPOLD's top 50%) ranks those and not responses that train.truncated=mask drops.
            loss_mask = loss_mask_all[mb : mb + tc.micro_batch]
            s = TokenStats(mask_BT=loss_mask, from_teacher_BT=micro.from_teacher_BT,
                           behav_logp_BT=micro.behav_logp_BT, **scored, **stud)
            res = method.fn(s, params, ctx)
            res.loss_BT = poison(res.loss_BT, "loss", step)
            loss = reduce_loss(res.loss_BT, loss_mask, tc.loss_norm, denom)
            loss.backward()
            t_fwd += _clock(accelerator.device) - t0
            loss_total += float(loss.detach())
            # rkl and the entropies cover every response, cut or not, on the tokens the student wrote:
            # a teacher prefix (TrOPD's guidance, whose share anneals to 0) is another distribution.
            # The method's own metrics follow its loss mask (train.truncated=mask drops cut responses).
            on_policy = micro.response_mask_BT & ~s.from_teacher_BT
            # rkl: the per-token KL(pi_S || pi_T) of the current student at the visited states, with
            # self-normalised importance weights pi_S/pi_behav for the token draw: 1 on-policy, not 1
            # for TRB's blended rollouts and ERPD's reused ones (whose states stay the behaviour's: a
            # sequence-level weight would correct those too, at a variance no plot can use).
            # pi_T is the model the loss distills from (ERPD's stage 2: its stage-1 policy).
            _acc(sums, "rkl", (s.logp_BT - s.teacher_logp_BT).detach(), on_policy,
                 weight_BT=(s.logp_BT - s.behav_logp_BT).detach().clamp(max=30.0).exp())
            _acc(sums, "student_entropy", s.student_entropy_BT, on_policy)
            _acc(sums, "teacher_entropy", s.teacher_entropy_BT, on_policy)
            for key, val in res.metrics.items():
                if val.dim() == 0:
                    _acc(sums, key, val.reshape(1, 1), torch.ones(1, 1, dtype=torch.bool))
                else:
                    _acc(sums, key, val, s.mask_BT & res.metric_masks.get(key, s.mask_BT))
        times["time_score"], times["time_fwd_bwd"] = t_score, t_fwd

        # 5. reduce across processes, then step: clip, divergence check, optimizer.
        t0 = _clock(accelerator.device)
        world.sum_gradients(student.parameters())
        sums = world.sum_dict(sums)
        loss_total = world.sum([loss_total])[0]
        grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), tc.grad_clip or float("inf"))
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        rkl = sums["rkl"][0] / sums["rkl"][1] if sums["rkl"][1] > 0 else 0.0
        if not (math.isfinite(loss_total) and math.isfinite(grad_norm)) or rkl > tc.divergence_rkl:
            status, diverged_step = "diverged", step
            optimizer.zero_grad(set_to_none=True)
            if world.main:
                log(f"diverged at step {step}: loss={loss_total} grad_norm={grad_norm} rkl={rkl:.3g}")
            break
        lr = scheduler.get_last_lr()[0]  # this step's rate (scheduler.step() moves to the next one)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        backend.sync_weights(student)
        times["time_optim"] = _clock(accelerator.device) - t0

        # 6. log and checkpoint. The step's metrics line travels in the checkpoint, so that a kill
        # between the checkpoint and the line's write cannot lose it (truncate_metrics restores it).
        line = None
        scores = heldout.at(step, tc.steps, student) if heldout else {}
        if world.main and (scores or not ((step + 1) % tc.log_every and step + 1 < tc.steps)):
            # Rollout meta (prefix lengths, ...) and the times are the main process's own.
            line = {"step": step, "loss": loss_total, "grad_norm": grad_norm, "lr": lr,
                    "response_len": n_tok / n_seq, "finished_frac": n_fin / n_seq,
                    "tokens_per_s": n_gen / max(times["time_rollout"], 1e-9),
                    **{k: v[0] / v[1] for k, v in sums.items() if v[1] > 0}, **batch.meta, **times, **scores}
        t0 = _clock(accelerator.device)
        if (step + 1) % tc.checkpoint_every == 0 and step + 1 < tc.steps:
            fault_point("checkpoint", step + 1)
            weights, optim_state = world.student_state(student), world.optimizer_state(student, optimizer)
            if world.main:
                ckpt.save(out / "checkpoints", step + 1, weights, optim_state, scheduler,
                          {"totals": totals, "wall_s": wall_before + time.time() - t_start,
                           "metrics_line": line}, tc.keep_checkpoints)
        if line is None:
            continue
        line["time_ckpt"] = _clock(accelerator.device) - t0
        fault_point("metrics", step + 1)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        bar.set_postfix(loss=f"{loss_total:.3f}", rkl=f"{rkl:.3f}", tok_s=f"{line['tokens_per_s']:.0f}")
    bar.close()

    summary = {
        "status": status, "diverged_step": diverged_step, "method": cfg.method.name, "seed": cfg.seed,
        "steps_done": diverged_step if diverged_step is not None else tc.steps,
        "wall_s": wall_before + time.time() - t_start, "peak_mem_mb": peak_mem_mb(), "config_hash": run_hash(cfg),
        "code_version": code_version(), "backend": backend.name, "processes": world.size,
        "sharded": world.fsdp, "student_param_share": fsdp.local_fraction(student),
        "student_state_mb": fsdp.state_mb(student, optimizer), "torch_threads": torch.get_num_threads(), **totals,
        "versions": package_versions(punkt=False),
    }
    weights = world.student_state(student) if world.fsdp else None
    if world.main:
        finish(out, student, tok, summary, weights)
    world.barrier()
    return summary


def _clock(device: torch.device) -> float:
    """perf_counter once the device's queued work is done: CUDA kernels run asynchronously, so an
    unsynchronised clock would charge one phase's kernels to the next (scoring to the student pass)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class HeldOut:
    """Greedy held-out evaluation during training (train.eval_every): learning curves. The items are
    loaded once; each evaluation generates with the current student (tropd.eval.generate, which
    draws no random numbers at temperature 0 and restores train mode) and grades with the task's
    grader, as `tropd eval` does."""

    def __init__(self, cfg: RunConfig, tok):
        from tropd.eval.tasks import get_task, load_items

        tc = cfg.train
        self.every, self.cfg, self.tok = tc.eval_every, cfg, tok
        names = tc.eval_tasks or cfg.eval.tasks
        limit = tc.eval_limit or cfg.eval.limit
        self.tasks = [(t, load_items(t, cfg, limit)) for t in (get_task(n) for n in names)]
        generated = [t.name for t, _ in self.tasks if t.grader == "mmlu"]
        if generated:
            raise UserError(f"train.eval_tasks: {generated} are log-likelihood tasks; learning curves "
                            "use generated tasks")

    @classmethod
    def maybe(cls, cfg: RunConfig, tok, world) -> HeldOut | None:
        if not cfg.train.eval_every:
            return None
        if world.size > 1:
            raise UserError("train.eval_every: learning curves are evaluated in one process; set it to 0 "
                            "under accelerate with several processes")
        return cls(cfg, tok)

    def at(self, step: int, total: int, model) -> dict[str, float]:
        """{"heldout_<task>": score, "heldout_avg": mean, "time_eval": s} after 0-based `step`, or {}."""
        if (step + 1) % self.every and step + 1 < total:
            return {}
        from tropd.eval.generate import generate
        from tropd.eval.graders import grade, summarize

        t0 = time.perf_counter()
        e = self.cfg.eval
        out = {}
        for task, items in self.tasks:
            ids = [it.id for it in items]
            gens = generate(model, self.tok, [it.prompt for it in items], 1, 0.0, e.max_new_tokens, 0,
                            task.name, ids, e.batch_size)
            samples = [(g.item, g.text) for g in gens]
            per_item = [[r] for r in grade(task, items, samples)]
            out[f"heldout_{task.name}"] = float(summarize(task, per_item)[task.primary]["mean"])
        out["heldout_avg"] = sum(out.values()) / len(out)
        out["time_eval"] = time.perf_counter() - t0
        return out


def _acc(sums: dict, key: str, val_BT: torch.Tensor | None, mask_BT: torch.Tensor,
         weight_BT: torch.Tensor | None = None) -> None:
    if val_BT is None:
        return
    s, n = masked_mean(val_BT, mask_BT.to(val_BT.device), weight_BT)
    a = sums.setdefault(key, [0.0, 0.0])
    a[0] += s
    a[1] += n


def train_main(args) -> int:
    from tropd.cli import parse_seeds

    seeds = parse_seeds(args.seed)
    if len(seeds) > 1 and "{seed}" not in args.out:
        raise UserError(f"--out {args.out}: several seeds need a {{seed}} placeholder in --out")
    cfgs = [load_config(args.config, method=args.method, overrides=[f"seed={s}", *args.overrides])
            for s in seeds]  # every config checked before any run starts
    main = os.environ.get("RANK", "0") == "0"  # under accelerate launch / torchrun, one process reports
    for seed, cfg in zip(seeds, cfgs):
        out = Path(args.out.replace("{seed}", str(seed)))
        done = read_summary(out)
        if done is not None:
            # Recomputed from the stored resolved config, so that a schema change does not make an
            # old run look foreign; the summary's own hash is the fallback.
            stored = resolved_hash(out) or done.get("config_hash")
            if stored != run_hash(cfg):
                raise UserError(f"{out} holds a run with another config (hash {stored} != "
                                f"{run_hash(cfg)}); use a new --out")
            if main:
                print(f"{out}: already {done['status']} ({done['steps_done']} steps); nothing to do")
            continue
        summary = train(cfg, out)
        if main:
            print(json.dumps(summary))
    return 0
