"""Per-token loss terms shared by TrOPD and the baselines.

Each term maps `TokenStats` (B, T[, K]) tensors to an unreduced (B, T) tensor; none masks or
averages (that is `tropd.reduce`'s job). The only per-token *selections* here are the ones the math
itself defines (a Bernoulli trust draw, a top-fraction-of-the-batch entropy mask).

- `topk_fkl`            : sum_{v in V_T^k} pi_T(v) (log pi_T(v) - log pi_S(v)), differentiated
                          through the student (TrOPD Eq. 3 / Eq. 7). Full-softmax probabilities by
                          default (the scorer's top-k log-probs are not renormalised); with
                          `renormalize=True` both distributions are renormalised over the k ids, which
                          makes it the KL between the two truncated distributions (zero at pi_S = pi_T).
- `bernoulli_trust`     : M ~ Bernoulli(min(pi_T/pi_S, 1)) from `ctx.seed_B` (TrOPD Eq. 6).
- `pg_loss`             : -rho_t A_t, the importance-sampling policy-gradient loss (OPD's form).
- `ppo_pg_loss`         : the clipped importance-sampling policy-gradient loss; with an infinite clip
                          it is `pg_loss`.
- `top_fraction_mask`   : the highest-`frac` share of valid tokens by some score (Entropy-OPD,
                          REOPOLD refinement). "Within the batch" means within the tensors the method
                          sees, i.e. one micro-batch of one process; equal to the step batch when
                          `train.micro_batch` >= sequences per step on one process (the tiny profile's
                          setting). The only selection here that depends on the batching.
"""
from __future__ import annotations

import math

import torch

from tropd.registry import TokenStats
from tropd.infra.seeding import uniform_grid


def topk_logps(s: TokenStats, renormalize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher, student) log-probs at the teacher's top-k ids, (B, T, K) each; the teacher's detached.
    With `renormalize`, both are renormalised over the k ids (a distribution on the top-k)."""
    lt_BTK = s.teacher_topk_logp_BTK.detach()
    ls_BTK = s.student_topk_logp_BTK
    if renormalize:
        lt_BTK = lt_BTK - lt_BTK.logsumexp(-1, keepdim=True)
        ls_BTK = ls_BTK - ls_BTK.logsumexp(-1, keepdim=True)
    return lt_BTK, ls_BTK


def topk_fkl(s: TokenStats, renormalize: bool = False) -> torch.Tensor:
    """Top-k forward KL over the teacher's top-k ids. (B, T); grad through the student's top-k."""
    lt_BTK, ls_BTK = topk_logps(s, renormalize)
    pt_BTK = lt_BTK.exp()
    # A teacher id with probability 0 contributes 0 (0 log 0 = 0), never NaN.
    term_BTK = torch.where(pt_BTK > 0, pt_BTK * (lt_BTK - ls_BTK), torch.zeros_like(ls_BTK))
    return term_BTK.sum(-1)


def bernoulli_trust(
    log_ratio_BT: torch.Tensor, seed_B: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, P): M ~ Bernoulli(P) with P = min(exp(log_ratio), 1); M bool (B, T), P float (B, T).

    Token (b, t)'s uniform is a hash of (seed_B[b], t) (tropd.infra.seeding.uniform_grid): it depends on
    neither the other tokens' values nor the batch the row sits in, so micro-batching and
    data-parallel sharding draw the same mask.
    """
    p_BT = torch.exp(log_ratio_BT.detach().clamp(max=0.0))
    if seed_B.shape[0] != p_BT.shape[0]:
        raise ValueError(f"bernoulli_trust: {seed_B.shape[0]} row seeds for {p_BT.shape[0]} rows")
    u_BT = uniform_grid(seed_B.cpu(), p_BT.shape[1]).to(p_BT.device)
    return u_BT < p_BT.double(), p_BT


def importance_ratio(s: TokenStats) -> torch.Tensor:
    """rho_t = pi_S(x_t) / pi_old(x_t), with grad through pi_S. (B, T)"""
    return torch.exp(s.logp_BT - s.behav_logp_BT.detach())


def pg_loss(s: TokenStats, advantage_BT: torch.Tensor) -> torch.Tensor:
    """-rho_t * A_t with rho_t = exp(log pi_S - log pi_old); gradient -A_t grad log pi_S on-policy."""
    return -importance_ratio(s) * advantage_BT.detach()


def ppo_pg_loss(s: TokenStats, advantage_BT: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """-min(rho A, clip(rho, 1-eps, 1+eps) A) per token; eps = inf gives `pg_loss` (no clip)."""
    if math.isinf(clip_eps):
        return pg_loss(s, advantage_BT)
    adv_BT = advantage_BT.detach()
    rho_BT = importance_ratio(s)
    clipped_BT = rho_BT.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    return torch.maximum(-rho_BT * adv_BT, -clipped_BT * adv_BT)


def top_fraction_mask(score_BT: torch.Tensor, valid_BT: torch.Tensor, frac: float) -> torch.Tensor:
    """bool (B, T): the ceil(frac * n) valid tokens with the highest score (n = valid tokens).

    Ties at the threshold are broken by position (a stable sort: the earliest of the tied tokens in
    row-major order are kept), so exactly that many are kept, the same ones on every device. Ties are
    common: the first response token of every rollout of one prompt has the same context.
    """
    score = score_BT.detach().flatten()
    valid = valid_BT.flatten()
    n_keep = math.ceil(frac * int(valid.sum()))
    keep = torch.zeros_like(valid)
    if n_keep > 0:
        ranked = torch.where(valid, score.double(), torch.full_like(score, -math.inf, dtype=torch.float64))
        keep[torch.sort(ranked, descending=True, stable=True).indices[:n_keep]] = True
    return (keep & valid).view_as(valid_BT)


def on_policy(s: TokenStats) -> torch.Tensor:
    """bool (B, T): tokens the student sampled (not a teacher prefix)."""
    return ~s.from_teacher_BT
