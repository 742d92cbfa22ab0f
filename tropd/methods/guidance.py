"""TrOPD's off-policy trust-region guidance (TrOPD 2606.01249, Sec. 3.4, Eq. 8-9): the prefix schedule
of its behaviour policy (`tropd.rollout.policies.Guided`, which implements it), and the loss on
teacher-written tokens.

Schedule. The *maximum* teacher-prefix length starts at the full generation length and is annealed to 0
with a cosine, so training ends fully on-policy:

    l_max(s) = round(L * 0.5 * (1 + cos(pi * min(s / S_a, 1)))),   S_a = anneal_frac * (total_steps - 1)

`total_steps - 1` (not `total_steps`) so that the last optimizer step (0-based) is exactly on-policy, as
the paper's "annealed to 0 over training" says; `anneal_frac` < 1 finishes the anneal earlier (the
paper anneals over all of training: default 1.0). anneal_frac = 0 switches guidance off (l_max = 0).

Per-sample prefix length (the paper leaves it open, methods.md Sec. 6.4): rule `uniform` draws
l ~ U{0, ..., l_max} (default: the paper names l_max a *maximum*, which reads as a per-sample length at
most l_max); `fixed` uses l = l_max. The length is drawn before the teacher writes, and the teacher
writes at most l tokens (tropd.rollout.policies.Guided): a teacher that finishes before l writes the whole
sequence.

Loss on teacher tokens (Eq. 9, third term): -beta log(pi_T(x)/pi_S(x)) to maximise, i.e. minimise
beta * (-log pi_S(x)) plus a constant: NLL (SFT) on the teacher prefix with weight beta = 0.001. Teacher
tokens get nothing else (no trust mask, no top-k FKL).
"""
from __future__ import annotations

import torch

from tropd.registry import TokenStats
from tropd.rollout.policies import max_prefix_len, sample_prefix_len  # noqa: F401 - documented here


def guidance_loss(s: TokenStats, beta: float) -> torch.Tensor:
    """beta * (-log pi_S(x_t)) per token (B, T); applied by callers on teacher-written tokens only."""
    return -beta * s.logp_BT
