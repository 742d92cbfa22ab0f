"""TRB: Trust-Region Behavior Blending (Plyusov et al., arXiv 2605.31159; methods.md 4.6).

TRB changes only the behaviour policy of a warm-up phase. Each rollout token is drawn from

    mu(.|h) ∝ pi_S(.|h)^(1-b) pi_T(.|h)^b,   b = the largest value with KL(mu || pi_S) <= eps_k,
    eps_k = eps0 (1 - k / K) for k < K, then 0 (pure student rollouts),

computed while decoding by `tropd.rollout.blend` (the Blend behaviour policy this module declares, with
`eps0` and `anneal_steps`). The loss is OPD's per-prefix reverse KL, KL(pi_S || pi_T).

Deviation (the loss estimator): TRB evaluates the reverse KL on the student's top-16 support at every
prefix. The scorer here provides the teacher's top-k, not the student's, so we use the sampled K1
estimator with an importance ratio against the behaviour policy mu:

    loss_t = rho_t (log pi_S(x_t) - log pi_T(x_t) - 1) + 1,   rho_t = pi_S(x_t) / mu(x_t),  x_t ~ mu.

Its derivative w.r.t. log pi_S(x_t) is rho_t (log pi_S(x_t) - log pi_T(x_t)) (the -1 cancels the
derivative of the log-ratio itself), i.e. per sample the same gradient as OPD's detached form
-rho sg(R) grad log pi_S with R = log pi_T - log pi_S, but written without a stop-gradient; its value
on-policy is the K1 sample log pi_S - log pi_T. The expected gradient,
E_mu[rho (log pi_S - log pi_T) grad log pi_S] = E_pi_S[(log pi_S - log pi_T) grad log pi_S], is exactly
the full-vocabulary reverse-KL gradient at that prefix (TRB's top-16 sum is itself a truncation of
it). The reward uses the *current* student log-prob, not mu's, since mu != pi_S during the warm-up;
rho stays near 1 because KL(mu || pi_S) <= eps. After the warm-up mu = pi_S and this is OPD.

Defaults: eps0 = 0.02 and K = 50 steps, the setting TRB's teacher-entropy figure shows for its 1.7B
student (sweeps: eps0 in {0.001..0.05}, K in {15, 25, 50}).
"""
from __future__ import annotations

from dataclasses import dataclass

from tropd.errors import ConfigError
from tropd.methods.terms import importance_ratio
from tropd.registry import MethodOutput, StepContext, TokenStats, register
from tropd.rollout.policies import Blend


@dataclass
class TRBParams:
    eps0: float = 0.02  # initial KL budget KL(mu || pi_S) per position, nats
    anneal_steps: int = 50  # K: steps over which eps anneals linearly to 0

    def check(self) -> None:
        if self.eps0 < 0:
            raise ConfigError(f"method.params.eps0: must be >= 0, got {self.eps0}")
        if self.anneal_steps < 0:
            raise ConfigError(f"method.params.anneal_steps: must be >= 0, got {self.anneal_steps}")


@register(
    "trb",
    params=TRBParams,
    description="TRB: OPD with a KL-budgeted student/teacher geometric-blend behaviour policy, annealed",
    reference="Plyusov et al. 2605.31159",
    behaviour=lambda p: Blend(p.eps0, p.anneal_steps),
)
def trb(s: TokenStats, p: TRBParams, ctx: StepContext) -> MethodOutput:
    k1_BT = s.logp_BT - s.teacher_logp_BT.detach()
    loss_BT = importance_ratio(s) * (k1_BT - 1.0) + 1.0
    behav_gap_BT = (s.behav_logp_BT - s.logp_BT).detach()  # log mu - log pi_S at the sampled token
    return MethodOutput(loss_BT=loss_BT, metrics={"reward": -k1_BT.detach(), "behav_gap": behav_gap_BT})
