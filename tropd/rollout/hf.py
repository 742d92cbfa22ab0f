"""HF transformers rollout backend: a KV-cached sampling loop over one or two models.

Why not `model.generate`: distillation needs (a) a seed per sequence derived from (run seed, step,
prompt, sample), so a sample does not depend on what else is in the batch, (b) the exact log-prob
of each sampled token under the distribution it was drawn from (the behaviour policy), and (c) for
TRB, a per-token blend of two models decoded in lock-step. `generate` offers none of the three;
the loop below is the minimum that does, and `tropd bench` measures it against `generate`.

The loop runs under `torch.inference_mode` rather than `no_grad`: no tensor of it leaves (the results
are Python lists), and skipping autograd's version counters and view tracking makes the per-token
dispatch of a small model cheaper (7% of the tiny student's rollout, paired in one process; the
tokens and log-probs are bitwise the same: tests/test_rollout_scoring.py).

Rows that share a prompt (the rollouts_per_prompt samples of one) share its prefill: the prompt runs
through the model once and its KV-cache rows and next-token logits are copied to each sample, as a
prefix cache would. At the tiny profile's shapes the samples are bitwise those of a prefill per row
(tested), so its committed runs repeat; a product over a handful of rows can take another CPU kernel
and differ in the last bit, as a change in the batch's make-up already can. The tiny student's
rollout (16 prompts x 4 samples, 62-token prompts) takes a fifth to a quarter less time on its own,
a seventh less inside a training run (README, Performance).
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch

from tropd.infra.seeding import to_int64, uniform_rows
from tropd.models import cache_kw
from tropd.rollout.batch import distinct

# combine(list of per-model log-probs (N, V)) -> log-probs to sample from (N, V)
Combine = Callable[[list[torch.Tensor]], torch.Tensor]


def _filter_top_p(logp_NV: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return logp_NV
    sorted_lp, idx = logp_NV.sort(-1, descending=True)
    cum = sorted_lp.exp().cumsum(-1)
    drop = cum - sorted_lp.exp() > top_p  # keep the smallest prefix with mass >= top_p
    sorted_lp = sorted_lp.masked_fill(drop, float("-inf"))
    out = torch.full_like(logp_NV, float("-inf")).scatter(-1, idx, sorted_lp)
    return out.log_softmax(-1)


def sample_rows(logp_NV: torch.Tensor, seeds_N: torch.Tensor, t: int) -> torch.Tensor:
    """Inverse-CDF sampling, one token per row, with each row's own uniform. (N,)

    A sample depends only on the row's seed, the position and its distribution, never on the
    rest of the batch; one uniform per row keeps the cost at one cumsum over the vocabulary.
    """
    cdf_NV = logp_NV.double().exp().cumsum(-1)
    u_N1 = (uniform_rows(seeds_N, t) * cdf_NV[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf_NV, u_N1, right=True).squeeze(-1).clamp_max(logp_NV.shape[-1] - 1)


@torch.inference_mode()
def decode(
    models: list[torch.nn.Module],
    prompts: list[list[int]],
    max_new: list[int],
    seeds: list[int],
    eos_ids: set[int],
    pad_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    combine: Combine | None = None,
    vocab: int | None = None,
) -> list[tuple[list[int], list[float], bool]]:
    """Sample continuations of `prompts`; returns (token ids, behaviour log-probs, finished) per row.

    temperature 0 is greedy (log-probs then are those of the untempered distribution). `vocab` cuts
    every model's logits to their first `vocab` rows (tropd.models.shared_vocab), so no model
    samples a padding row the other cannot score.
    """
    from transformers import DynamicCache

    N = len(prompts)
    if N == 0:
        return []
    devices = [next(m.parameters()).device for m in models]
    device = devices[0]
    P = max(len(p) for p in prompts)
    ids = torch.full((N, P), pad_id, dtype=torch.long)
    att = torch.zeros((N, P), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p, dtype=torch.long)
        att[i, P - len(p):] = 1
    ids, att = ids.to(device), att.to(device)
    pos = (att.cumsum(-1) - 1).clamp_min(0)
    caches = [DynamicCache() for _ in models]
    cache_kws = [cache_kw(m) for m in models]
    seeds_N = torch.tensor([to_int64(x) for x in seeds], dtype=torch.long, device=device)
    limit = torch.tensor(max_new, device=device)
    out_tok = [[] for _ in range(N)]
    out_lp = [[] for _ in range(N)]
    done = limit <= 0
    eos_t = torch.tensor(sorted(eos_ids), device=device)
    # The prefill runs once per distinct prompt (a method's rollouts_per_prompt samples share one);
    # its KV-cache rows and first logits are then copied to every row that has that prompt.
    first, row_of = distinct(prompts, device)
    step_ids, step_att, step_pos = ids[first], att[first], pos[first]
    for t in range(int(limit.max().item()) if N else 0):
        logps = []
        for m, md, cache, kw in zip(models, devices, caches, cache_kws):  # a teacher may sit elsewhere
            logits = m(input_ids=step_ids.to(md), attention_mask=step_att.to(md), position_ids=step_pos.to(md),
                       use_cache=True, logits_to_keep=1, **{kw: cache}).logits[:, -1, :vocab].float()
            if t == 0:
                rows = row_of.to(md)
                logits = logits[rows]
                cache.batch_select_indices(rows)
            logps.append(logits.log_softmax(-1).to(device))
        lp = combine(logps) if combine else logps[0]
        if temperature == 0:
            tok = lp.argmax(-1)
            lp_s = lp
        else:
            lp_s = lp if temperature == 1.0 else (lp / temperature).log_softmax(-1)
            lp_s = _filter_top_p(lp_s, top_p)
            tok = sample_rows(lp_s, seeds_N, t)
        tok_lp = lp_s.gather(-1, tok[:, None]).squeeze(-1)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        tok_c, lp_c, done_c = tok.tolist(), tok_lp.tolist(), done.tolist()
        for i in range(N):
            if not done_c[i]:
                out_tok[i].append(tok_c[i])
                out_lp[i].append(lp_c[i])
        done = done | torch.isin(tok, eos_t) | (t + 1 >= limit)
        if bool(done.all()):
            break
        step_ids = tok[:, None]
        att = step_att = torch.cat([att, torch.ones((N, 1), dtype=att.dtype, device=device)], -1)
        step_pos = pos[:, -1:] + t + 1
    return [(out_tok[i], out_lp[i], bool(out_tok[i] and out_tok[i][-1] in eos_ids)) for i in range(N)]


class HFBackend:
    """Rollouts with the in-memory transformers models (CPU or GPU); weights are shared, no sync."""

    name = "hf"

    def __init__(self, student, teacher, eos_ids: set[int], pad_id: int, vocab: int | None = None):
        self.student, self.teacher = student, teacher
        self.eos_ids, self.pad_id, self.vocab = eos_ids, pad_id, vocab

    def sample(self, role: str, prompts, max_new, seeds, temperature=1.0, top_p=1.0):
        model = self.student if role == "student" else self.teacher
        was_training = model.training
        model.eval()
        try:
            with _gathered(model):
                return decode([model], prompts, max_new, seeds, self.eos_ids, self.pad_id, temperature, top_p,
                              vocab=self.vocab)
        finally:
            model.train(was_training)

    def sample_blend(self, prompts, max_new, seeds, combine: Combine, temperature=1.0, top_p=1.0):
        was_training = self.student.training
        self.student.eval()
        try:
            with _gathered(self.student):
                return decode([self.student, self.teacher], prompts, max_new, seeds, self.eos_ids,
                              self.pad_id, temperature, top_p, combine=combine, vocab=self.vocab)
        finally:
            self.student.train(was_training)

    def sync_weights(self, student) -> None:
        """The HF backend samples from the trained module itself: nothing to copy."""


def _gathered(model):
    """An FSDP-sharded student (tropd.infra.fsdp.Root) is unsharded for the whole rollout: its forwards
    then hold no collective, so each process decodes its own rows for as long as they need, as in
    data parallelism. Every process enters this once per student rollout, with or without prompts
    (tropd.rollout.collect samples the student once per step on every process)."""
    return model.gathered() if hasattr(model, "gathered") else nullcontext()
