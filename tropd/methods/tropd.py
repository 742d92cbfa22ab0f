"""TrOPD: Trust Region On-Policy Distillation (Xing et al., arXiv 2606.01249, Eq. 5-9) and its ablations.

For each student-sampled token x = x_t ~ pi_S(.|h_t), with reward R_t = log pi_T(x) - log pi_old(x):

    trust mask  M ~ Bernoulli(P),  P = min(pi_T(x) / pi_S(x), 1)                            (Eq. 6)
    loss_t = M       * [-rho_t sg(R_t)]                        K1 reverse KL, as OPD        (Eq. 5)
           + (1 - M) * sum_{v in V_T^k} pi_T(v) log(pi_T(v) / pi_S(v))   top-k forward KL   (Eq. 7)

and for tokens the teacher wrote (guidance prefix, Eq. 8-9): loss_t = beta * (-log pi_S(x)),
beta = 0.001, nothing else (`tropd.methods.guidance`). The K1 part is `opd.pg_loss` (detached
advantage in importance-sampling form, rho_t = pi_S/pi_old); the FKL part is differentiated directly.

One registered function covers the family; presets (configs/methods/) pick the combination:

| preset        | trust_mode | outlier_mode | guidance |   paper name (Tables 1, 5)
| fkl_outlier   | bernoulli  | fkl          | no       |   FKL Outlier
| mask_outlier  | static     | zero         | no       |   Mask Outlier
| clip_outlier  | static     | clip         | no       |   Clip Outlier
| tropd         | bernoulli  | fkl          | yes      |   TrOPD (= TrOPD FKL)
| tropd_mask    | static     | zero         | yes      |   TrOPD Mask
| tropd_clip    | static     | clip         | yes      |   TrOPD Clip

Static trust: M = I[R_t >= tau]. Outlier modes: `fkl` (top-k FKL above), `zero` (no loss), `clip`
(K1 with the reward clipped from below, max(R_t, tau), REOPOLD-style; under a static mask every outlier
gets exactly tau).

Choices where the paper is silent (methods.md Sec. 6), each a field:
- `tau` = log(0.2/0.8) ~ -1.386: REOPOLD's floor log(lambda/(1-lambda)) at lambda = 0.2. The paper gives
  no value; its Table 1 reports identical numbers for Clip Outlier and REOPOLD, which suggests the same
  threshold.
- `trust_logp` = behaviour: pi_S in P is the behaviour (rollout) log-prob, detached: the acceptance rule
  of speculative decoding is a property of the draft that was sampled (it is the sampling distribution's,
  i.e. after `train.temperature` / top-p). `current` uses the trainer's recomputed log-prob (detached
  too; the mask is never differentiated).
- Teacher-written tokens carry the teacher's behaviour log-prob; the on-policy terms never see it there
  (they are replaced by the guidance term, and the ratio is computed as 1 so no inf can reach a gradient).
- `renormalize_topk` = false: full-softmax pi_T and pi_S at the teacher's top-k ids, as Eq. 7 is written.
- The paper's Mask/Clip formulas have sign typos (methods.md 3.2); we implement the stated intent: drop /
  clip tokens whose log pi_T/pi_S falls below tau < 0.
- Guidance fields read by the rollout code (tropd/rollout): `guidance`, `guided_fraction`,
  `prefix_rule`, `anneal_frac`. `guided_fraction` = 0.5: the paper's Fig. 2 shows both fully on-policy
  and teacher-prefixed trajectories, and with every rollout guided the first steps would be almost
  entirely teacher tokens weighted by beta = 0.001, i.e. nearly no gradient (methods.md 6.4), which does
  not fit the paper's gains. `prefix_rule` = uniform (see guidance.py).
- Normalisation of the three terms: all per-token losses go through the one shared reducer (token mean
  over the step by default); the paper does not say (methods.md 6.5).

Guidance readings (the paper leaves each open, methods.md Sec. 7; every one a field, the first value
the default):
- `prefix_rule`: uniform (l ~ U{0..l_max}) | fixed (l = l_max).
- `guided_fraction`: share of rollouts that get a prefix (0.5; the paper's Fig. 2 reads as some).
- `prefix_unit`: tokens (l_max anneals from train.max_new_tokens tokens) | teacher_frac (l_max is the
  annealed fraction of each teacher answer's own length: the teacher writes its whole answer, the
  prefix is its first round(frac * length) tokens, or a uniform draw below that).
- `prefix_norm`: shared (teacher-prefix tokens count in the one token mean of the step, so guided steps
  dilute the on-policy loss) | separate (teacher-prefix tokens and student tokens are each averaged
  over their own count in the step, then added: the on-policy term keeps its weight however many
  teacher tokens a step holds). `separate` assumes train.loss_norm: token.

Metrics (on student-sampled tokens): trust = P (static: M), outlier = 1 - M (realised), reward = R,
reward_in / reward_out = R on M = 1 / M = 0, fkl = top-k FKL; prefix_tokens = share of teacher tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch

from tropd.errors import ConfigError
from tropd.methods.guidance import guidance_loss
from tropd.methods.opd import k1_reward, pg_loss
from tropd.methods.terms import bernoulli_trust, on_policy, topk_fkl
from tropd.registry import MethodOutput, StepContext, TokenStats, register
from tropd.rollout.policies import Guided, Student

REOPOLD_FLOOR = math.log(0.2 / 0.8)  # log(lambda/(1-lambda)) at lambda = 0.2


@dataclass
class TrOPDParams:
    trust_mode: Literal["bernoulli", "static"] = "bernoulli"
    outlier_mode: Literal["fkl", "zero", "clip"] = "fkl"
    tau: float = REOPOLD_FLOOR  # static threshold / clip floor on log(pi_T/pi_S)
    trust_logp: Literal["behaviour", "current"] = "behaviour"  # pi_S inside P_trust
    renormalize_topk: bool = False
    guidance: bool = True  # teacher-prefix rollouts (the Guided behaviour policy)
    beta: float = 0.001  # weight of the NLL on teacher-prefix tokens
    guided_fraction: float = 0.5  # share of rollouts that get a teacher prefix
    prefix_rule: Literal["fixed", "uniform"] = "uniform"
    anneal_frac: float = 1.0  # share of training over which the prefix maximum anneals to 0
    prefix_unit: Literal["tokens", "teacher_frac"] = "tokens"  # l_max in tokens / share of the teacher's answer
    prefix_norm: Literal["shared", "separate"] = "shared"  # teacher tokens in the step's token mean, or apart

    def check(self) -> None:
        if not math.isfinite(self.tau):
            raise ConfigError(f"method.params.tau: must be finite, got {self.tau}")
        if self.beta < 0:
            raise ConfigError(f"method.params.beta: must be >= 0, got {self.beta}")
        if not 0 <= self.guided_fraction <= 1:
            raise ConfigError(f"method.params.guided_fraction: must be in [0, 1], got {self.guided_fraction}")
        if not 0 <= self.anneal_frac <= 1:
            raise ConfigError(f"method.params.anneal_frac: must be in [0, 1], got {self.anneal_frac}")


def guided_or_student(p: TrOPDParams) -> Guided | Student:
    """The behaviour policy TrOPD declares: teacher-prefix guidance, or plain student rollouts."""
    if not p.guidance:
        return Student()
    return Guided(fraction=p.guided_fraction, rule=p.prefix_rule, anneal_frac=p.anneal_frac,
                  unit=p.prefix_unit)


def trust_region_terms(
    s: TokenStats, ctx: StepContext, *, trust_mode: str, outlier_mode: str, tau: float,
    trust_logp: str, renormalize_topk: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """On-policy TrOPD loss (B, T) with its metrics and metric masks (also used by ERPD stage 2)."""
    reward_BT = k1_reward(s)
    ref_BT = s.behav_logp_BT if trust_logp == "behaviour" else s.logp_BT
    log_ratio_BT = (s.teacher_logp_BT - ref_BT).detach()
    if trust_mode == "bernoulli":
        trust_BT, p_BT = bernoulli_trust(log_ratio_BT, ctx.seed_B)
    else:
        trust_BT = log_ratio_BT >= tau
        p_BT = trust_BT.to(log_ratio_BT.dtype)

    loss_in_BT = pg_loss(s, reward_BT)
    fkl_BT = topk_fkl(s, renormalize_topk) if s.teacher_topk_logp_BTK is not None else None
    if outlier_mode == "fkl":
        loss_out_BT = fkl_BT
    elif outlier_mode == "zero":
        loss_out_BT = torch.zeros_like(loss_in_BT)
    else:
        loss_out_BT = pg_loss(s, reward_BT.clamp_min(tau))
    loss_BT = torch.where(trust_BT, loss_in_BT, loss_out_BT)

    stud_BT = on_policy(s)
    metrics = {"trust": p_BT, "outlier": (~trust_BT).to(p_BT.dtype), "reward": reward_BT,
               "reward_in": reward_BT, "reward_out": reward_BT}
    masks = {"trust": stud_BT, "outlier": stud_BT, "reward": stud_BT,
             "reward_in": stud_BT & trust_BT, "reward_out": stud_BT & ~trust_BT}
    if fkl_BT is not None:
        metrics["fkl"], masks["fkl"] = fkl_BT.detach(), stud_BT
    return loss_BT, metrics, masks


@register(
    "tropd",
    params=TrOPDParams,
    description="TrOPD: Bernoulli trust region min(pi_T/pi_S,1), top-k FKL on outliers, teacher-prefix "
                "guidance (and the Mask/Clip/FKL-outlier ablations)",
    reference="Xing et al. 2606.01249 Eq. 5-9, Tables 1 and 5",
    behaviour=guided_or_student,
)
def tropd(s: TokenStats, p: TrOPDParams, ctx: StepContext) -> MethodOutput:
    # On teacher tokens the behaviour log-prob is the teacher's: an importance ratio pi_S/pi_T there
    # is meaningless and may overflow, and an inf in the branch torch.where drops still poisons the
    # gradient (0 * inf). The on-policy terms see the student's own log-prob there instead.
    s_on = replace(s, behav_logp_BT=torch.where(s.from_teacher_BT, s.logp_BT.detach(), s.behav_logp_BT))
    loss_BT, metrics, masks = trust_region_terms(
        s_on, ctx, trust_mode=p.trust_mode, outlier_mode=p.outlier_mode, tau=p.tau,
        trust_logp=p.trust_logp, renormalize_topk=p.renormalize_topk)
    # Teacher-written tokens: beta-weighted NLL and nothing else.
    loss_BT = torch.where(s.from_teacher_BT, guidance_loss(s, p.beta), loss_BT)
    if p.prefix_norm == "separate" and ctx.step_tokens > 0:
        # The reducer divides by every loss token of the step (n); rescaled so that the teacher tokens'
        # sum is divided by their own count and the student tokens' by theirs.
        n, n_teacher = ctx.step_tokens, ctx.step_teacher_tokens
        scale_BT = torch.where(s.from_teacher_BT, n / max(n_teacher, 1.0), n / max(n - n_teacher, 1.0))
        loss_BT = loss_BT * scale_BT
    if p.guidance:
        metrics["prefix_tokens"] = s.from_teacher_BT.to(loss_BT.dtype)
    return MethodOutput(loss_BT=loss_BT, metrics=metrics, metric_masks=masks)
