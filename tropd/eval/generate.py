"""Batched generation for evaluation with `transformers` `generate` (left padding, KV cache).

Reproducibility: every (seed, task, item, sample) has its own derived seed. Sampling at
temperature T > 0 is done by a logits processor inside a greedy `generate`: it draws the token
with the rollout backend's inverse-CDF sampler (tropd.rollout.hf.sample_rows: one uniform per row,
a pure function of the row's seed and the position) from softmax(logits / T) and leaves only that
token possible. So a sample does not depend on which other rows share its batch or on global RNG
state, and two runs with the same seed produce the same text. T = 0 is plain greedy decoding. Rows are batched in order of prompt length (longest first) to
waste little padding; the order is a pure function of the items.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tropd.models import format_prompt
from tropd.rollout.hf import sample_rows
from tropd.infra.seeding import derive_seed


@dataclass
class Generation:
    item: int  # index into the item list
    sample: int  # 0..k-1
    text: str
    n_tokens: int
    finished: bool  # ended with EOS (else it hit max_new_tokens)


def _processor_cls():
    from transformers import LogitsProcessor

    class SeededSampler(LogitsProcessor):
        """Per-row seeded sampling inside greedy search (see the module docstring)."""

        def __init__(self, seeds_B: torch.Tensor, temperature: float, prompt_width: int):
            self.seeds_B, self.temperature, self.prompt_width = seeds_B, temperature, prompt_width

        def __call__(self, input_ids_BL: torch.Tensor, scores_BV: torch.Tensor) -> torch.Tensor:
            t = input_ids_BL.shape[1] - self.prompt_width  # position in the completion
            logp_BV = (scores_BV.float() / self.temperature).log_softmax(-1)
            tok_B = sample_rows(logp_BV, self.seeds_B.to(logp_BV.device), t)
            out = torch.full_like(scores_BV, float("-inf"))
            return out.scatter_(1, tok_B[:, None].to(out.device), 0.0)

    return SeededSampler


def encode_prompts(tok, prompts: list[str]) -> list[list[int]]:
    """Chat-template each prompt (tropd.models.format_prompt) and tokenize it."""
    templated = bool(getattr(tok, "chat_template", None))
    return [tok(format_prompt(tok, p), add_special_tokens=not templated)["input_ids"] for p in prompts]


@torch.no_grad()
def generate(model, tok, prompts: list[str], k: int, temperature: float, max_new_tokens: int,
             seed: int, task: str, ids: list[str], batch_size: int = 64) -> list[Generation]:
    """k completions per prompt; returns them ordered by (item, sample)."""
    from transformers import LogitsProcessorList

    if k > 1 and temperature == 0:
        raise ValueError("k > 1 samples need temperature > 0")
    encoded = encode_prompts(tok, prompts)
    rows = [(i, j) for i in range(len(prompts)) for j in range(k)]
    rows.sort(key=lambda r: (-len(encoded[r[0]]), r[0], r[1]))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = tok.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[Generation] = []
    try:
        for b in range(0, len(rows), batch_size):
            batch = rows[b : b + batch_size]
            P = max(len(encoded[i]) for i, _ in batch)
            ids_BP = torch.full((len(batch), P), pad, dtype=torch.long)
            att_BP = torch.zeros((len(batch), P), dtype=torch.long)
            for r, (i, _) in enumerate(batch):
                p = encoded[i]
                ids_BP[r, P - len(p):] = torch.tensor(p, dtype=torch.long)
                att_BP[r, P - len(p):] = 1
            procs = LogitsProcessorList()
            if temperature > 0:
                seeds_B = torch.tensor([derive_seed(seed, "eval", task, ids[i], j) for i, j in batch])
                procs.append(_processor_cls()(seeds_B, temperature, P))
            seq_BL = model.generate(
                input_ids=ids_BP.to(device), attention_mask=att_BP.to(device), do_sample=False,
                num_beams=1, max_new_tokens=max_new_tokens, logits_processor=procs,
                eos_token_id=eos, pad_token_id=pad, temperature=None, top_k=None, top_p=None,
            )
            for r, (i, j) in enumerate(batch):
                new = seq_BL[r, P:].tolist()
                finished = eos is not None and eos in new
                if finished:
                    new = new[: new.index(eos) + 1]
                text = tok.decode(new, skip_special_tokens=True)
                out.append(Generation(i, j, text, len(new), finished))
    finally:
        model.train(was_training)
    out.sort(key=lambda g: (g.item, g.sample))
    return out
