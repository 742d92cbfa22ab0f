"""Data parallelism for `tropd train` under `accelerate launch` (or torchrun): one replica a process.

Every process holds the student, the teacher and its rollout engine, takes every N-th prompt of the
step (`shard`), and samples, scores and backpropagates only its share. The loss is normalised by the
step's *global* token (or sequence) count, and the gradients are summed across processes once per
step, before clipping (`sum_gradients`), so the update is exactly that of one process holding the
whole step; every seed derives from a prompt's place in the step, so the rollouts and the
trust-region draws are those of the one-process run too (up to kernel-level rounding).

Why not DDP: tropd's student forward calls the decoder and the LM head directly (the chunked head,
tropd.scoring), not the root module's forward, which is where DDP arms its gradient hooks; a
DDP-wrapped student would skip the all-reduce without a word. Nor `accelerator.prepare`: its
scheduler wrapper steps the schedule once per process per step.

Only the main process writes files (metrics, checkpoints, the final student); all processes read
the same checkpoint when a run resumes. Under an FSDP launch (tropd.infra.fsdp) the student is also
sharded: the same step, with 1/N of its parameters, gradients and optimizer state per process.
"""
from __future__ import annotations

import torch

from tropd.infra import fsdp

# Gradients are all-reduced in flat buckets of this many elements: one collective per bucket, and at
# most one bucket of extra memory (fp32: 1 GiB).
BUCKET = 1 << 28


class World:
    """This process's place among the data-parallel processes (one process: a no-op)."""

    def __init__(self, accelerator):
        self.rank, self.size = accelerator.process_index, accelerator.num_processes
        self.main = accelerator.is_main_process
        self.device = accelerator.device
        self._acc = accelerator
        self.fsdp = self.size > 1 and fsdp.requested()

    def prepare_student(self, student):
        """What the loop calls for the student's forwards: the student, or its FSDP root."""
        if not self.fsdp:
            return student
        return fsdp.shard(student, self.device)

    def student_state(self, student) -> dict:
        """The student's full state dict (under FSDP a collective that every process calls; the
        main process gets the tensors)."""
        if not self.fsdp:
            return student.state_dict()
        return fsdp.model_state(student)

    def optimizer_state(self, student, optimizer) -> dict:
        """The optimizer's full state dict, in `optimizer.state_dict()`'s format (as above)."""
        if not self.fsdp:
            return optimizer.state_dict()
        return fsdp.optimizer_state(student, optimizer)

    def put_states(self, student, optimizer):
        """How a checkpoint's full state dicts get into the student (None: `load_state_dict`)."""
        if not self.fsdp:
            return None
        return lambda weights, optim: fsdp.load_states(student, optimizer, weights, optim)

    def shard(self, n: int) -> list[int]:
        """Positions 0..n-1 of the step's prompts that this process takes."""
        return list(range(self.rank, n, self.size))

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over processes (one collective)."""
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def sum_dict(self, sums: dict[str, list[float]]) -> dict[str, list[float]]:
        """{key: [sum, count]} summed over processes; keys any process has are kept."""
        if self.size == 1:
            return sums
        keys: list = [None] * self.size
        torch.distributed.all_gather_object(keys, sorted(sums))
        names = sorted(set().union(*keys))
        flat = self.sum([x for k in names for x in sums.get(k, [0.0, 0.0])])
        return {k: flat[2 * i : 2 * i + 2] for i, k in enumerate(names)}

    def sum_gradients(self, params) -> None:
        """grad <- sum of every process's grad (None counts as zeros, so all ranks do the same calls).
        Under FSDP the reduce-scatter in backward has summed them already."""
        if self.size == 1 or self.fsdp:
            return
        params = [p for p in params if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        start = 0
        while start < len(params):
            end, n = start, 0
            while end < len(params) and (n == 0 or n + params[end].numel() <= BUCKET):
                n += params[end].numel()
                end += 1
            grads = [p.grad for p in params[start:end]]
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat)
            for g, part in zip(grads, flat.split([g.numel() for g in grads])):
                g.copy_(part.view_as(g))
            start = end

    def barrier(self) -> None:
        if self.size > 1:
            self._acc.wait_for_everyone()
