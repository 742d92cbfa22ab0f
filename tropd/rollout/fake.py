"""Fake rollout backend for unit tests: no model, fully determined by the per-sequence seeds."""
from __future__ import annotations

import math

import torch

from tropd.infra.seeding import generator


class FakeBackend:
    name = "fake"

    def __init__(self, vocab_size: int, eos_ids: set[int], pad_id: int, low: int = 0, eos_prob: float = 0.1):
        self.vocab_size, self.eos_ids, self.pad_id = vocab_size, eos_ids, pad_id
        self.low, self.eos_prob = low, eos_prob
        self.synced = 0

    def _one(self, role: str, prompt: list[int], max_new: int, seed: int):
        g = generator(seed, role, len(prompt))
        toks: list[int] = []
        eos = min(self.eos_ids)
        for _ in range(max_new):
            if toks and float(torch.rand((), generator=g)) < self.eos_prob:
                toks.append(eos)
                break
            toks.append(int(torch.randint(self.low, self.vocab_size, (), generator=g)))
        lp = [-math.log(self.vocab_size)] * len(toks)
        return toks, lp, bool(toks and toks[-1] in self.eos_ids)

    def sample(self, role, prompts, max_new, seeds, temperature=1.0, top_p=1.0):
        return [self._one(role, p, n, s) for p, n, s in zip(prompts, max_new, seeds)]

    def sample_blend(self, prompts, max_new, seeds, combine, temperature=1.0, top_p=1.0):
        return [self._one("blend", p, n, s) for p, n, s in zip(prompts, max_new, seeds)]

    def sync_weights(self, student) -> None:
        self.synced += 1
