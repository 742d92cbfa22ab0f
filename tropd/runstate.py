"""Run-directory bookkeeping for `tropd.train`: optimizer set-up, the final save, summaries."""
from __future__ import annotations

import json
import math
import resource
import shutil
from pathlib import Path

import torch

from tropd.config import TrainConfig
from tropd.infra.faults import fault_point
from tropd.infra.io import atomic_write_json, reraise_io


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
    from tropd.infra.io import atomic_write_text

    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def finish(out: Path, model, tok, summary: dict, weights: dict | None = None) -> None:
    """Save the student folder atomically, then summary.json (its presence marks the run done).
    `weights`: the full state dict of a sharded student (tropd.infra.fsdp), saved in place of its own."""
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
