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
(tropd.infra.dist): the same update as one process.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from tropd.catalog import Bound, bind
from tropd.config import RunConfig, load_config, resolved_hash, run_hash
from tropd.errors import UserError
from tropd.infra.faults import fault_point, poison
from tropd.reduce import masked_mean, reduce_loss, step_count
from tropd.registry import StepContext, TokenStats
from tropd.rollout import RolloutBatch, collect
from tropd.runstate import finish, read_summary
from tropd.scoring import student_forward, teacher_score
from tropd.trainrun import Run, save_checkpoint, setup, summary


def _log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def train(cfg: RunConfig, out: Path, log=_log, bound: Bound | None = None) -> dict:
    """Distil the student with `cfg.method` (`bound`: its parsed parameters, tropd.catalog.bind, when
    the caller has them already); returns the summary written to out/summary.json."""
    run = setup(cfg, out, log, bound or bind(cfg))  # checks, models, data, backend, the method's declarations; resume
    tc, world = cfg.train, run.world
    status, diverged_step = "finished", None
    bar = tqdm(range(run.start, tc.steps), initial=run.start, total=tc.steps, dynamic_ncols=True,
               desc=f"{cfg.method.name} s{cfg.seed}", mininterval=1.0, disable=not world.main)
    for step in bar:
        run.teacher = run.schedule.on_step(step, run.teacher, run.optimizer, run.scheduler)
        times: dict[str, float] = {}

        # 1. rollout: the behaviour policy writes completions (this process's share of the prompts).
        t0 = _clock(run.device)
        batch = _rollout(run, step)
        times["time_rollout"] = _clock(run.device) - t0
        batch = batch.to(run.device)
        counts, loss_mask_all = _step_counts(run, batch)

        # 2-4. per micro-batch: teacher scoring, student forward, method loss, shared reduction, backward.
        loss_total, sums = _micro_batches(run, step, batch, loss_mask_all, counts, times)

        # 5. reduce across processes, then step: clip, divergence check, optimizer.
        t0 = _clock(run.device)
        world.sum_gradients(run.student.parameters())
        sums, loss_total = world.sum_dict(sums), world.sum([loss_total])[0]
        grad_norm = torch.nn.utils.clip_grad_norm_(run.student.parameters(), tc.grad_clip or float("inf"))
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        rkl = sums["rkl"][0] / sums["rkl"][1] if sums["rkl"][1] > 0 else 0.0
        if not (math.isfinite(loss_total) and math.isfinite(grad_norm)) or rkl > tc.divergence_rkl:
            status, diverged_step = "diverged", step
            run.optimizer.zero_grad(set_to_none=True)
            if world.main:
                log(f"diverged at step {step}: loss={loss_total} grad_norm={grad_norm} rkl={rkl:.3g}")
            break
        lr = run.scheduler.get_last_lr()[0]  # this step's rate (scheduler.step() moves to the next one)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.backend.sync_weights(run.student)
        times["time_optim"] = _clock(run.device) - t0

        # 6. log and checkpoint (the metrics line travels in the checkpoint: trainrun.save_checkpoint).
        scores = run.heldout.at(step, tc.steps, run.student) if run.heldout else {}
        line = None
        if world.main and (scores or not ((step + 1) % tc.log_every and step + 1 < tc.steps)):
            line = {"step": step, "loss": loss_total, "grad_norm": grad_norm, "lr": lr, **counts["line"],
                    "tokens_per_s": counts["n_gen"] / max(times["time_rollout"], 1e-9),
                    **{k: v[0] / v[1] for k, v in sums.items() if v[1] > 0}, **batch.meta, **times, **scores}
        t0 = _clock(run.device)
        if (step + 1) % tc.checkpoint_every == 0 and step + 1 < tc.steps:
            fault_point("checkpoint", step + 1)
            save_checkpoint(run, step, line)
        if line is None:
            continue
        line["time_ckpt"] = _clock(run.device) - t0
        fault_point("metrics", step + 1)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        bar.set_postfix(loss=f"{loss_total:.3f}", rkl=f"{rkl:.3f}", tok_s=f"{line['tokens_per_s']:.0f}")
    bar.close()

    result = summary(run, status, diverged_step)
    weights = world.student_state(run.student) if world.fsdp else None
    if world.main:
        finish(out, run.student, run.tok, result, weights)
    world.barrier()
    return result


def _rollout(run: Run, step: int) -> RolloutBatch:
    """This process's share of the step's prompts, sampled by the method's behaviour policy (or a
    rollout its schedule stored)."""
    tc = run.cfg.train
    fault_point("rollout", step)
    idx = run.prompts.indices(step, tc.prompts_per_step)
    mine = run.world.shard(len(idx))
    with run.accelerator.autocast():  # one region a rollout: the weights do not change inside it
        batch = run.schedule.fixed_rollout(step) or collect(
            run.behaviour, run.backend, [run.prompts.prompt_tokens[idx[k]] for k in mine],
            [run.prompts.reference_tokens[idx[k]] for k in mine], tc.rollouts_per_prompt,
            step=step, total_steps=tc.steps, seed=run.cfg.seed, max_new_tokens=tc.max_new_tokens,
            temperature=tc.temperature, top_p=tc.top_p, pad_id=run.tok.pad_token_id, positions=mine,
        )
    run.schedule.remember_rollout(step, batch)
    return batch


def _step_counts(run: Run, batch: RolloutBatch) -> tuple[dict, torch.Tensor]:
    """Whole-step token counts over every process (the loss is normalised by the global count), the
    running totals, and the loss mask: with train.truncated=mask, responses cut by max_new_tokens stay
    in the metrics but not in the loss."""
    tc = run.cfg.train
    mask_all = batch.response_mask_BT
    finished_B = batch.finished_B if batch.finished_B is not None else torch.ones_like(mask_all[:, 0])
    loss_mask_all = mask_all & finished_B[:, None] if tc.truncated == "mask" else mask_all
    n_tok, n_gen, n_seq, n_fin, n_norm, n_loss_tok, n_loss_teacher = run.world.sum([
        float(mask_all.sum()), float((mask_all & ~batch.from_teacher_BT).sum()), float(batch.size),
        float(finished_B.sum()), step_count(loss_mask_all, tc.loss_norm), float(loss_mask_all.sum()),
        float((loss_mask_all & batch.from_teacher_BT).sum())])
    run.totals["tokens_generated"] += int(n_tok)  # by either model (teacher prefixes too)
    run.totals["student_tokens_generated"] += int(n_gen)
    run.totals["teacher_tokens_scored"] += int(n_tok) if run.method.scores.teacher else 0
    counts = {"denom": max(n_norm, 1.0), "n_gen": n_gen, "n_loss_tok": n_loss_tok,
              "n_loss_teacher": n_loss_teacher,
              "line": {"response_len": n_tok / n_seq, "finished_frac": n_fin / n_seq}}
    return counts, loss_mask_all


def _micro_batches(run: Run, step: int, batch: RolloutBatch, loss_mask_all: torch.Tensor, counts: dict,
                   times: dict) -> tuple[float, dict]:
    """Score, forward, loss and backward per micro-batch; the step's loss and metric sums."""
    tc, method = run.cfg.train, run.method
    full = method.scores.full_logits
    sums: dict[str, list[float]] = {}
    loss_total, t_score, t_fwd = 0.0, 0.0, 0.0
    for mb in range(0, batch.size, tc.micro_batch):
        micro = batch.select(slice(mb, mb + tc.micro_batch))
        ctx = StepContext(step, tc.steps, micro.row_seeds(run.cfg.seed, step), counts["n_loss_tok"],
                          counts["n_loss_teacher"])
        t0 = _clock(run.device)
        scored = (teacher_score(run.teacher, micro, tc.topk, tc.chunk_size, full, run.vocab, tc.share_prompts)
                  if method.scores.teacher else
                  {"teacher_logp_BT": torch.full_like(micro.behav_logp_BT, float("nan"))})
        t_score += _clock(run.device) - t0
        t0 = _clock(run.device)
        # bf16 for the student forward only, closed before backward and the step; the method
        # loss and the reduction run in fp32 (the forward returns fp32 log-probs).
        args = (micro, scored.get("teacher_topk_ids_BTK"), tc.chunk_size, full, run.vocab, tc.share_prompts)
        with run.accelerator.autocast():
            stud = (student_forward(run.student, *args) if run.policy is run.student
                    else run.policy(*args, fn=student_forward))
        # The method sees only the tokens it trains on, so a selection (Entropy-OPD's top 20%,
        # REOPOLD's top 50%) ranks those and not responses that train.truncated=mask drops.
        loss_mask = loss_mask_all[mb : mb + tc.micro_batch]
        s = TokenStats(mask_BT=loss_mask, from_teacher_BT=micro.from_teacher_BT,
                       behav_logp_BT=micro.behav_logp_BT, **scored, **stud)
        res = method.fn(s, run.params, ctx)
        res.loss_BT = poison(res.loss_BT, "loss", step)
        loss = reduce_loss(res.loss_BT, loss_mask, tc.loss_norm, counts["denom"])
        loss.backward()
        t_fwd += _clock(run.device) - t0
        loss_total += float(loss.detach())
        _accumulate_metrics(sums, micro, s, res)
    times["time_score"], times["time_fwd_bwd"] = t_score, t_fwd
    return loss_total, sums


def _accumulate_metrics(sums: dict, micro: RolloutBatch, s: TokenStats, res) -> None:
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


def _clock(device: torch.device) -> float:
    """perf_counter once the device's queued work is done: CUDA kernels run asynchronously, so an
    unsynchronised clock would charge one phase's kernels to the next (scoring to the student pass)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


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
            for s in seeds]
    bounds = [bind(cfg) for cfg in cfgs]  # every config and method checked before any run starts
    main = os.environ.get("RANK", "0") == "0"  # under accelerate launch / torchrun, one process reports
    for seed, cfg, bound in zip(seeds, cfgs, bounds):
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
        summary = train(cfg, out, bound=bound)
        if main:
            print(json.dumps(summary))
    return 0
