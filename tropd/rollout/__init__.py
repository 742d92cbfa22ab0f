"""Rollouts: `collect` samples one step's completions with the behaviour policy a method declares
(tropd.rollout.policies: Student, Guided, Teacher, DatasetMix, Blend, or a method's own), through a
backend that only samples (`hf`, `vllm`, `fake`). Every sequence's seed derives from (run seed, step,
prompt index, sample index).
"""
from __future__ import annotations

from tropd.rollout.batch import Completion, RolloutBatch, pack
from tropd.rollout.policies import Policy, Request
from tropd.infra.seeding import derive_seed

__all__ = ["Completion", "RolloutBatch", "collect", "make_backend"]


def make_backend(name: str, student, teacher, tok, vocab: int | None = None, **kw):
    """`vocab`: the logit rows both models share (tropd.models.shared_vocab); None = all."""
    eos = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if name == "hf":
        from tropd.rollout.hf import HFBackend

        return HFBackend(student, teacher, eos, pad, vocab)
    if name == "fake":
        from tropd.rollout.fake import FakeBackend

        return FakeBackend(len(tok), eos, pad)
    if name == "vllm":
        from tropd.rollout.vllm import VLLMBackend  # lazy: the `gpu` extra

        return VLLMBackend(student, teacher, tok, eos, pad, vocab=vocab, **kw)
    raise ValueError(f"unknown rollout backend {name!r}")


def collect(
    behaviour: Policy,
    backend,
    prompts: list[list[int]],
    references: list[list[int]],
    n_samples: int,
    *,
    step: int,
    total_steps: int,
    seed: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    pad_id: int,
    positions: list[int] | None = None,
) -> RolloutBatch:
    """Sample `n_samples` completions per prompt with the method's declared `behaviour` policy.

    `positions` are the prompts' places in the step's prompt list (a data-parallel process passes
    its shard's); every seed derives from them, so the rollouts do not depend on the sharding.
    """
    positions = list(range(len(prompts))) if positions is None else positions
    local = [i for i in range(len(prompts)) for _ in range(n_samples)]
    slots = [(positions[i], j) for i in range(len(prompts)) for j in range(n_samples)]
    seeds = [derive_seed(seed, step, i, j) for i, j in slots]
    request = Request(backend, [prompts[i] for i in local], [references[i] for i in local], seeds, slots,
                      step, total_steps, seed, max_new_tokens, temperature, top_p)
    comps, meta = behaviour.sample(request)
    batch = pack(comps, slots, pad_id)
    batch.meta = meta
    return batch
