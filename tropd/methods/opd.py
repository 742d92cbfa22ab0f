"""OPD: on-policy distillation with the K1 reverse-KL reward (TrOPD paper Eq. 2; tinker-cookbook).

Per sampled token x_t ~ pi_old, the reward is R_t = log pi_T(x_t) - log pi_old(x_t), the negative
of the K1 estimate of KL(pi_S || pi_T). It enters as a *detached* advantage in the
importance-sampling form

    loss_t = - rho_t * sg(R_t),     rho_t = pi_S(x_t) / pi_old(x_t)   (= 1 in value on-policy)

so that grad loss_t = - sg(R_t) grad log pi_S(x_t). Backpropagating through K1 itself would have
zero expected gradient (E_{pi_S}[grad log pi_S] = 0); the detached form gives, in expectation over
x_t ~ pi_S, the gradient of the full-vocabulary reverse KL at that position. Discount 0: each token
gets only its own reward (tinker-cookbook's default `kl_discount_factor = 0`).

Deviation: none. `coef` is tinker-cookbook's `kl_penalty_coef` (default 1).

Choice, for `train.temperature != 1` (or top_p < 1) only: pi_old is the distribution the token was
drawn from, after temperature and top-p (what a sampler reports, as in tinker-cookbook), while pi_S in
rho and pi_T are untempered. rho then corrects the sampling, but R_t compares the *tempered* student
with the teacher: the expected loss gradient is grad KL(pi_S || pi_T) minus
E_{pi_S}[(log pi_S - log pi_old) grad log pi_S], an extra term that raises the student's entropy at T < 1.
Every shipped profile samples at T = 1, top_p = 1, where pi_old = pi_S and the term vanishes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tropd.methods.terms import pg_loss  # noqa: F401 - OPD's loss form, imported from here by methods
from tropd.registry import MethodOutput, StepContext, TokenStats, register


@dataclass
class OPDParams:
    coef: float = 1.0  # scale of the K1 reward (tinker-cookbook kl_penalty_coef)


def k1_reward(s: TokenStats) -> torch.Tensor:
    """R_t = log pi_T(x_t) - log pi_old(x_t), detached. (B, T)"""
    return (s.teacher_logp_BT - s.behav_logp_BT).detach()


@register(
    "opd",
    params=OPDParams,
    description="On-policy distillation: K1 reverse-KL reward as a detached per-token advantage",
    reference="Agarwal et al. 2306.13649; Thinking Machines OPD blog; TrOPD 2606.01249 Eq. 2",
)
def opd(s: TokenStats, p: OPDParams, ctx: StepContext) -> MethodOutput:
    reward_BT = k1_reward(s)
    return MethodOutput(loss_BT=pg_loss(s, p.coef * reward_BT), metrics={"reward": reward_BT})
