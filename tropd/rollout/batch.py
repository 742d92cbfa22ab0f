"""RolloutBatch: sequences laid out for one forward pass of either model.

Layout (the same for teacher scoring and the student forward):

    input_ids_BL = [ left-padded prompt (P columns) | right-padded response (T columns) ]

so response token t of every row sits at column P + t, and the logits that predict it at column
P + t - 1. `response_mask_BT` marks real response tokens (EOS included, padding not).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Completion:
    """One sampled response: token ids, behaviour log-probs, and which tokens the teacher wrote."""

    prompt_ids: list[int]
    token_ids: list[int]
    behav_logp: list[float]
    from_teacher: list[bool]
    finished: bool = False  # ended with EOS (not cut by max_new_tokens)


@dataclass
class RolloutBatch:
    input_ids_BL: torch.Tensor  # long (B, P+T)
    attention_mask_BL: torch.Tensor  # long (B, P+T)
    prompt_width: int  # P
    response_mask_BT: torch.Tensor  # bool (B, T)
    from_teacher_BT: torch.Tensor  # bool (B, T)
    behav_logp_BT: torch.Tensor  # float (B, T)
    prompt_index_B: torch.Tensor  # long (B,): which prompt of the step (its place in the step's list)
    meta: dict = field(default_factory=dict)  # prefix lengths etc. for logging
    # bool (B,): the response ended with EOS. None only in a batch saved before the field existed
    # (an ERPD stage-1 rollout); the loop then counts every response as finished.
    finished_B: torch.Tensor | None = None
    # long (B,): which sample of its prompt; with prompt_index_B it names the row for derived seeds.
    # None only in a batch saved before the field existed (read as 0..B-1).
    sample_index_B: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return self.input_ids_BL.shape[0]

    @property
    def response_width(self) -> int:
        return self.response_mask_BT.shape[1]

    def row_seeds(self, run_seed: int, step: int, tag: str = "method") -> torch.Tensor:
        """long (B,): a seed per row from (run seed, step, prompt, sample, tag)."""
        from tropd.infra.seeding import row_seeds

        sample_B = self.sample_index_B if self.sample_index_B is not None else torch.arange(self.size)
        return row_seeds(run_seed, step, self.prompt_index_B, sample_B, tag)

    def prompt_groups(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(the first row of each distinct prompt, each row's distinct prompt): rows whose prompt
        columns, ids and mask, are equal, as a prompt's rollouts_per_prompt samples are."""
        P = self.prompt_width
        keyed_BP = self.input_ids_BL[:, :P].masked_fill(self.attention_mask_BL[:, :P] == 0, -1)
        return distinct(keyed_BP.tolist(), self.input_ids_BL.device)

    def position_ids_BL(self) -> torch.Tensor:
        return (self.attention_mask_BL.cumsum(-1) - 1).clamp_min(0)

    def select(self, idx: slice | torch.Tensor) -> RolloutBatch:
        """Rows `idx` (a micro-batch); columns unchanged."""
        return RolloutBatch(
            self.input_ids_BL[idx], self.attention_mask_BL[idx], self.prompt_width,
            self.response_mask_BT[idx], self.from_teacher_BT[idx], self.behav_logp_BT[idx],
            self.prompt_index_B[idx], self.meta,
            None if self.finished_B is None else self.finished_B[idx],
            None if self.sample_index_B is None else self.sample_index_B[idx],
        )

    def to(self, device: torch.device) -> RolloutBatch:
        return RolloutBatch(
            self.input_ids_BL.to(device), self.attention_mask_BL.to(device), self.prompt_width,
            self.response_mask_BT.to(device), self.from_teacher_BT.to(device),
            self.behav_logp_BT.to(device), self.prompt_index_B.to(device), self.meta,
            None if self.finished_B is None else self.finished_B.to(device),
            None if self.sample_index_B is None else self.sample_index_B.to(device),
        )


def distinct(rows: list[list[int]], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the first index of each distinct row, each row's distinct row), long tensors: what lets the
    rows that share a prompt share its forward (tropd.rollout.hf, tropd.scoring)."""
    index: dict[tuple[int, ...], int] = {}
    first, row_of = [], []
    for i, r in enumerate(rows):
        k = index.setdefault(tuple(r), len(index))
        if k == len(first):
            first.append(i)
        row_of.append(k)
    return torch.tensor(first, device=device), torch.tensor(row_of, device=device)


def pack(completions: list[Completion], slots: list[tuple[int, int]], pad_id: int) -> RolloutBatch:
    """Completions -> RolloutBatch (prompts left-padded, responses right-padded); slots (prompt, sample)."""
    B = len(completions)
    P = max(len(c.prompt_ids) for c in completions)
    T = max(1, max(len(c.token_ids) for c in completions))
    ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    att = torch.zeros((B, P + T), dtype=torch.long)
    rmask = torch.zeros((B, T), dtype=torch.bool)
    teach = torch.zeros((B, T), dtype=torch.bool)
    behav = torch.zeros((B, T), dtype=torch.float32)
    for i, c in enumerate(completions):
        p, n = len(c.prompt_ids), len(c.token_ids)
        ids[i, P - p : P] = torch.tensor(c.prompt_ids, dtype=torch.long)
        att[i, P - p : P] = 1
        if n:
            ids[i, P : P + n] = torch.tensor(c.token_ids, dtype=torch.long)
            att[i, P : P + n] = 1
            rmask[i, :n] = True
            teach[i, :n] = torch.tensor(c.from_teacher, dtype=torch.bool)
            behav[i, :n] = torch.tensor(c.behav_logp, dtype=torch.float32)
    prompt_B = torch.tensor([i for i, _ in slots], dtype=torch.long)
    return RolloutBatch(ids, att, P, rmask, teach, behav, prompt_B,
                        finished_B=torch.tensor([c.finished for c in completions], dtype=torch.bool),
                        sample_index_B=torch.tensor([j for _, j in slots], dtype=torch.long))
