"""TRB's behaviour policy: the per-position geometric blend of student and teacher under a KL budget
(Plyusov et al., "Trust-Region Behavior Blending", arXiv 2605.31159; methods.md Sec. 4.6).

At each prefix h the behaviour policy is

    mu* = argmin_mu KL(mu || pi_T)  subject to  KL(mu || pi_S) <= eps,

whose solution is the geometric mixture log mu_b = (1 - b) log pi_S + b log pi_T - log Z(b) with b* the
largest b in [0, 1] satisfying the budget. KL(mu_b || pi_S) is non-decreasing in b (its derivative is
b Var_{mu_b}[log pi_T - log pi_S]), so b* is found by bisection (20 halvings: b within 1e-6 of b*),
vectorised over rows. Boundary cases are exact: eps <= 0 gives b = 0 (mu = pi_S); KL(pi_T || pi_S) <= eps
gives b = 1 (mu = pi_T). The returned b always satisfies the budget in the working precision (the lower
end of the bisection bracket is returned, never the midpoint).

The budget anneals linearly, eps_k = eps0 (1 - k / K) for k < K and 0 afterwards (pure student
rollouts). 0 * log 0 is taken as 0, so tokens outside a policy's support (log-prob -inf) stay outside
the blend for 0 < b < 1.
"""
from __future__ import annotations

import torch

BISECTION_STEPS = 20


def trb_eps(step: int, eps0: float, anneal_steps: int) -> float:
    """KL budget at 0-based `step`: eps0 linearly down to 0 at `anneal_steps`, then 0."""
    if anneal_steps <= 0 or eps0 <= 0:
        return 0.0
    return eps0 * max(0.0, 1.0 - step / anneal_steps)


def _mix(ls_NV: torch.Tensor, lt_NV: torch.Tensor, b_N: torch.Tensor) -> torch.Tensor:
    """Normalised log of pi_S^(1-b) pi_T^b per row, with 0 * (-inf) = 0."""
    b = b_N[:, None]
    lin = (1 - b) * ls_NV.nan_to_num(neginf=0.0) + b * lt_NV.nan_to_num(neginf=0.0)
    out_of_support = (ls_NV.isneginf() & (b < 1)) | (lt_NV.isneginf() & (b > 0))
    lin = lin.masked_fill(out_of_support, float("-inf"))
    return lin - lin.logsumexp(-1, keepdim=True)


def kl_from_logprobs(la_NV: torch.Tensor, lb_NV: torch.Tensor) -> torch.Tensor:
    """KL(a || b) per row from log-probs, summing only where a > 0."""
    pa = la_NV.exp()
    return torch.where(pa > 0, pa * (la_NV - lb_NV), torch.zeros_like(pa)).sum(-1)


@torch.no_grad()
def blend_logprobs(student_logp_NV: torch.Tensor, teacher_logp_NV: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu_logp (N, V), b (N,)): the largest geometric blend with KL(mu || pi_S) <= eps, per row."""
    dtype = torch.promote_types(student_logp_NV.dtype, torch.float32)
    ls = student_logp_NV.to(dtype)
    lt = teacher_logp_NV.to(dtype)
    ls = ls - ls.logsumexp(-1, keepdim=True)
    lt = lt - lt.logsumexp(-1, keepdim=True)
    N = ls.shape[0]
    if eps <= 0:
        return ls, torch.zeros(N, dtype=dtype, device=ls.device)
    hi = torch.ones(N, dtype=dtype, device=ls.device)
    # Rows whose teacher is already inside the budget take b = 1 (the bracket collapses to [1, 1]).
    lo = (kl_from_logprobs(lt, ls) <= eps).to(dtype)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        ok = kl_from_logprobs(_mix(ls, lt, mid), ls) <= eps
        lo = torch.where(ok, mid, lo)  # lo stays feasible throughout
        hi = torch.where(ok, hi, mid)
    return _mix(ls, lt, lo), lo
