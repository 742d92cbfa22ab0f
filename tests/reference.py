"""Slow, obviously correct full-vocabulary references for the method property tests (tests only).

Everything here works on explicit probability vectors with Python loops over positions and vocabulary
entries, straight from the definitions in /work/shared/research/methods.md, so that it can be checked
by eye; the methods under test use log-space, top-k and sampled estimators instead.
"""
from __future__ import annotations

import math

import torch

from tropd.registry import TokenStats

# ----------------------------------------------------------------------------- building inputs


def make_stats(
    student_logits_BTV: torch.Tensor,
    teacher_logits_BTV: torch.Tensor,
    tokens_BT: torch.Tensor,
    k: int,
    *,
    mask_BT: torch.Tensor | None = None,
    from_teacher_BT: torch.Tensor | None = None,
    behav_logp_BT: torch.Tensor | None = None,
    full_logits: bool = True,
) -> TokenStats:
    """TokenStats as the scorer builds them from full student / teacher logits (student keeps grad).

    The behaviour log-prob defaults to the student's own (detached): on-policy sampling.
    """
    B, T, _ = student_logits_BTV.shape
    ls = student_logits_BTV.log_softmax(-1)
    lt = teacher_logits_BTV.detach().log_softmax(-1)
    idx = tokens_BT[..., None]
    logp_BT = ls.gather(-1, idx).squeeze(-1)
    tk_lp, tk_ids = lt.topk(k, dim=-1)
    return TokenStats(
        mask_BT=torch.ones(B, T, dtype=torch.bool) if mask_BT is None else mask_BT,
        from_teacher_BT=torch.zeros(B, T, dtype=torch.bool) if from_teacher_BT is None else from_teacher_BT,
        logp_BT=logp_BT,
        behav_logp_BT=logp_BT.detach() if behav_logp_BT is None else behav_logp_BT,
        teacher_logp_BT=lt.gather(-1, idx).squeeze(-1),
        student_entropy_BT=-(ls.exp() * ls).sum(-1).detach(),
        teacher_entropy_BT=-(lt.exp() * lt).sum(-1),
        teacher_topk_ids_BTK=tk_ids,
        teacher_topk_logp_BTK=tk_lp,
        student_topk_logp_BTK=ls.gather(-1, tk_ids),
        student_logits_BTV=student_logits_BTV if full_logits else None,
        teacher_logits_BTV=teacher_logits_BTV.detach() if full_logits else None,
    )


# ----------------------------------------------------------------------------- divergences


def kl(p: list[float], q: list[float]) -> float:
    """KL(p || q) = sum_i p_i log(p_i / q_i), with 0 log 0 = 0."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def probs(logits_V: torch.Tensor) -> list[float]:
    z = [float(v) for v in logits_V.detach()]
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def per_position(fn, a_BTV: torch.Tensor, b_BTV: torch.Tensor) -> torch.Tensor:
    """Apply fn(p_list, q_list) at every (b, t) of two logit tensors; (B, T) float64."""
    B, T, _ = a_BTV.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            out[b, t] = fn(probs(a_BTV[b, t]), probs(b_BTV[b, t]))
    return out


def forward_kl(student_logits_BTV, teacher_logits_BTV) -> torch.Tensor:
    """KL(pi_T || pi_S) per position."""
    return per_position(lambda ps, pt: kl(pt, ps), student_logits_BTV, teacher_logits_BTV)


def reverse_kl(student_logits_BTV, teacher_logits_BTV) -> torch.Tensor:
    """KL(pi_S || pi_T) per position."""
    return per_position(lambda ps, pt: kl(ps, pt), student_logits_BTV, teacher_logits_BTV)


def generalized_jsd(student_logits_BTV, teacher_logits_BTV, beta: float) -> torch.Tensor:
    """beta KL(T || M) + (1 - beta) KL(S || M), M = beta T + (1 - beta) S (unnormalised, GKD paper)."""

    def jsd(ps, pt):
        m = [beta * t + (1 - beta) * s for s, t in zip(ps, pt)]
        return beta * kl(pt, m) + (1 - beta) * kl(ps, m)

    return per_position(jsd, student_logits_BTV, teacher_logits_BTV)


def topk_forward_kl(student_logits_BTV, teacher_logits_BTV, k: int) -> torch.Tensor:
    """sum over the teacher's k most likely ids of pi_T(v) log(pi_T(v) / pi_S(v)) (full-softmax probs)."""

    def fn(ps, pt):
        top = sorted(range(len(pt)), key=lambda v: -pt[v])[:k]
        return sum(pt[v] * math.log(pt[v] / ps[v]) for v in top)

    return per_position(fn, student_logits_BTV, teacher_logits_BTV)


# ----------------------------------------------------------------------------- expected gradients


def rkl_grad(z_S: torch.Tensor, z_T: torch.Tensor) -> torch.Tensor:
    """d KL(pi_S || pi_T) / d z_S for one position, by autograd of the plain formula (V,)."""
    z = z_S.detach().clone().requires_grad_(True)
    p, q = z.softmax(-1), z_T.softmax(-1)
    (p * (p.log() - q.log())).sum().backward()
    return z.grad


def normalized_jsd_grad(z_S: torch.Tensor, z_T: torch.Tensor, beta: float) -> torch.Tensor:
    """d [JSD(beta) / (beta (1 - beta))] / d z_S for one position (V,)."""
    z = z_S.detach().clone().requires_grad_(True)
    p, q = z.softmax(-1), z_T.softmax(-1)
    m = beta * q + (1 - beta) * p
    val = beta * (q * (q.log() - m.log())).sum() + (1 - beta) * (p * (p.log() - m.log())).sum()
    (val / (beta * (1 - beta))).backward()
    return z.grad


def tropd_expected_grad(z_S: torch.Tensor, z_T: torch.Tensor, k: int) -> torch.Tensor:
    """Expected gradient of TrOPD's on-policy loss at one position (V,), x ~ pi_S, M ~ Bern(P(x)):

        sum_x pi_S(x) [ P(x) * (-R(x)) * grad log pi_S(x) + (1 - P(x)) * grad FKL_topk(pi_T || pi_S) ]

    with R(x) = log pi_T(x) - log pi_S(x), P(x) = min(pi_T(x)/pi_S(x), 1), both held fixed.
    """
    ps_fixed, pt = probs(z_S), probs(z_T)
    top = sorted(range(len(pt)), key=lambda v: -pt[v])[:k]
    z = z_S.detach().clone().requires_grad_(True)
    logp = z.log_softmax(-1)
    fkl = sum(pt[v] * (math.log(pt[v]) - logp[v]) for v in top)
    total = 0.0
    for x in range(len(pt)):
        r = pt[x] / ps_fixed[x]
        P, R = min(r, 1.0), math.log(r)
        total = total + ps_fixed[x] * (P * (-R) * logp[x] + (1 - P) * fkl)
    total.backward()
    return z.grad


# ----------------------------------------------------------------------------- TRB blend


def blend_kl(ps: list[float], pt: list[float], b: float) -> float:
    """KL(mu_b || pi_S) for mu_b ∝ pi_S^(1-b) pi_T^b (all probabilities positive)."""
    w = [s ** (1 - b) * t ** b for s, t in zip(ps, pt)]
    z = sum(w)
    return kl([v / z for v in w], ps)


def blend_b(ps: list[float], pt: list[float], eps: float, iters: int = 60) -> float:
    """Largest b in [0, 1] with KL(mu_b || pi_S) <= eps, by plain bisection."""
    if eps <= 0:
        return 0.0
    if kl(pt, ps) <= eps:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if blend_kl(ps, pt, mid) <= eps:
            lo = mid
        else:
            hi = mid
    return lo
