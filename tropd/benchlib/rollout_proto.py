"""Prototypes of changes to `tropd.rollout.hf`, measured by `tropd bench` against the current code.

Nothing here is used by training. Each prototype is swapped into the real loop (`hf.decode`) for the
measurement, so the numbers are for exactly one change:

- `block_sample_rows`: the same inverse-CDF draw as `hf.sample_rows` (one uniform per row from
  `tropd.seeding.uniform_rows`, batch-independent), but two-level: float64 sums of blocks of `BLOCK`
  probabilities, a search over the block sums, then a cumulative sum inside the chosen block only.
  One pass of float32 exp over the vocabulary instead of a float64 copy, exp and cumsum of it.

(`logits_to_keep=1`, prototyped here first at 1.31x at V=49152, is now part of `hf.decode`.)
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

BLOCK = 256


def block_sample_rows(logp_NV: torch.Tensor, seeds_N: torch.Tensor, t: int) -> torch.Tensor:
    from tropd.seeding import uniform_rows

    N, V = logp_NV.shape
    p_NV = logp_NV.float().exp()
    pad = (-V) % BLOCK
    p_NbB = (F.pad(p_NV, (0, pad)) if pad else p_NV).view(N, -1, BLOCK)
    cum_Nb = p_NbB.sum(-1, dtype=torch.float64).cumsum(-1)
    u_N = uniform_rows(seeds_N, t).to(cum_Nb.device) * cum_Nb[:, -1]
    j_N = torch.searchsorted(cum_Nb, u_N[:, None], right=True).squeeze(-1).clamp_max(cum_Nb.shape[1] - 1)
    before_N = torch.where(j_N > 0, cum_Nb.gather(-1, (j_N - 1).clamp_min(0)[:, None]).squeeze(-1),
                           torch.zeros_like(u_N))
    inner_NB = p_NbB[torch.arange(N, device=p_NV.device), j_N].double().cumsum(-1)
    k_N = torch.searchsorted(inner_NB, (u_N - before_N)[:, None], right=True).squeeze(-1).clamp_max(BLOCK - 1)
    return (j_N * BLOCK + k_N).clamp_max(V - 1)


@contextmanager
def patched_sampler(fn):
    import tropd.rollout.hf as hf

    orig = hf.sample_rows
    hf.sample_rows = fn
    try:
        yield
    finally:
        hf.sample_rows = orig
