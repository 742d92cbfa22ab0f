"""Run-directory bookkeeping for `tropd.train`: optimizer set-up, the final save, summaries, and the
two-stage schedule of methods that declare `stage1_frac` (ERPD).
"""
from __future__ import annotations

import copy
import json
import math
import resource
import shutil
from pathlib import Path

import torch

from tropd.config import TrainConfig
from tropd.errors import UserError
from tropd.faults import fault_point
from tropd.io import atomic_write_json, reraise_io


def make_optimizer(model, tc: TrainConfig):
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=(tc.adam_beta1, tc.adam_beta2),
                            weight_decay=tc.weight_decay)

    def factor(step: int) -> float:
        if step < tc.warmup_steps:
            return (step + 1) / tc.warmup_steps
        frac = (step - tc.warmup_steps) / max(tc.steps - tc.warmup_steps, 1)
        if tc.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        if tc.lr_schedule == "linear":
            return max(0.0, 1.0 - frac)
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def peak_mem_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


FINISHED = ".finished.json"  # a copy of summary.json that Snakemake does not know about


def read_summary(out: Path) -> dict | None:
    """The summary of a finished (or diverged) run, or None.

    A grouped Snakemake job (several seeds in one `tropd train`) that is interrupted after some of its
    seeds finished has all its declared outputs deleted, summary.json included. The hidden copy lets
    the rerun restore those summaries instead of training the finished seeds again.
    """
    for name in ("summary.json", FINISHED):
        p = out / name
        if not p.is_file():
            continue
        try:
            summary = json.loads(p.read_text())
        except ValueError:
            continue
        if name == FINISHED and (out / "student").is_dir():
            atomic_write_json(out / "summary.json", summary)
            return summary
        if name == "summary.json":
            return summary
    return None


def truncate_metrics(path: Path, start: int, pending: dict | None = None) -> None:
    """Drop metric lines of steps >= start (written after the checkpoint we resume from). `pending`:
    the line of step start-1 stored in that checkpoint, appended if a kill came before its write."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    kept = [(json.loads(ln)["step"], ln) for ln in lines]
    keep = [ln for step, ln in kept if step < start]
    if pending and pending["step"] not in {step for step, _ in kept}:
        keep.append(json.dumps(pending))
    if not path.is_file() and not keep:
        return
    from tropd.io import atomic_write_text

    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def finish(out: Path, model, tok, summary: dict, weights: dict | None = None) -> None:
    """Save the student folder atomically, then summary.json (its presence marks the run done).
    `weights`: the full state dict of a sharded student (tropd.fsdp), saved in place of its own."""
    tmp = out / ".student.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": weights} if weights else {}))
        tok.save_pretrained(tmp)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reraise_io(e)
    shutil.rmtree(out / "student", ignore_errors=True)
    tmp.rename(out / "student")
    # .finished.json before the checkpoints go (deleting them takes a while at scale): a kill in
    # between leaves a finished run that read_summary restores, never one that restarts at step 0.
    atomic_write_json(out / FINISHED, summary)
    fault_point("finish", summary["steps_done"])
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the student folder supersedes them
    atomic_write_json(out / "summary.json", summary)


class Stage2:
    """No second stage (every method but ERPD)."""

    @staticmethod
    def maybe(params, steps: int, out: Path, model, teacher, world):
        frac = getattr(params, "stage1_frac", None)
        return TwoStage(frac, steps, out, model, world) if frac is not None else Stage2()

    def on_step(self, step, teacher, optimizer, scheduler):
        return teacher

    def on_resume(self, start, teacher):
        return teacher

    def fixed_rollout(self, step):
        return None

    def remember_rollout(self, step, batch) -> None:
        pass


class TwoStage(Stage2):
    """ERPD (baselines/erpd.py): stage 1 optimises on the rollouts of step 0, reused unchanged for
    `stage1_frac` of the steps; at the switch the stage-1 policy becomes the frozen teacher, the
    student is reset to its base weights and its optimizer state cleared. Data-parallel processes
    keep their own shard of the step-0 rollouts (one file each); the main process saves the stage-1
    policy, which every process computed identically.
    """

    def __init__(self, frac: float, steps: int, out: Path, model, world):
        self.s1 = int(round(frac * steps))
        self.out, self.model, self.world = out, model, world
        self.base = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.fixed = None
        # The process count is in the name: each shard holds its process's prompts of step 0.
        name = "erpd_rollout.pt" if world.size == 1 else f"erpd_rollout.rank{world.rank}of{world.size}.pt"
        self.rollout_file = out / name

    def fixed_rollout(self, step):
        if step >= self.s1 or step == 0:
            return None
        if self.fixed is None:
            if not self.rollout_file.is_file():
                found = sorted(p.name for p in self.out.glob("erpd_rollout*.pt"))
                raise UserError(f"{self.out}: ERPD's stage-1 rollouts are {found or 'missing'}, not "
                                f"{self.rollout_file.name}: resume with the number of processes that "
                                f"started the run (workflow.gpus_per_train), or use a new --out")
            self.fixed = torch.load(self.rollout_file, weights_only=False)
        return self.fixed

    def remember_rollout(self, step, batch) -> None:
        if step == 0 and self.s1 > 0:
            self.fixed = batch
            torch.save(batch, self.rollout_file)

    def _extreme(self):
        m = copy.deepcopy(self.model)
        m.requires_grad_(False)
        m.eval()
        return m

    def on_step(self, step, teacher, optimizer, scheduler):
        if step != self.s1 or self.s1 == 0:
            return teacher
        extreme = self._extreme()
        if self.world.main:
            torch.save(extreme.state_dict(), self.out / "erpd_stage1.pt")
        self.model.load_state_dict(self.base)
        optimizer.state.clear()
        return extreme

    def on_resume(self, start, teacher):
        if start <= self.s1 or self.s1 == 0:
            return teacher
        extreme = self._extreme()
        extreme.load_state_dict(torch.load(self.out / "erpd_stage1.pt", weights_only=True))
        # Stage-2 student weights were restored from the checkpoint; the base stays the original.
        return extreme
