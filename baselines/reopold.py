"""REOPOLD: Relaxed On-Policy Distillation (Ko et al., arXiv 2603.11137; methods.md 4.4), and its
exploration-to-refinement two-stage schedule.

OPD as policy optimisation with token reward R_t = log pi_T(x_t) - log pi_old(x_t), clipped from below
at the mixture bound:

    R^_t = max(sg(R_t), log(lambda / (1 - lambda))),   lambda = 0.2  ->  floor ~ -1.386
    `reopold`        : loss_t = -rho_t R^_t
    `reopold_2stage` : loss_t = -M_t rho_t R^_t with
        exploration (step < round(switch_frac * total_steps)): M_t = I[R_t >= floor]
        refinement  (afterwards): M_t = student entropy in the top `entropy_top_frac` of the batch

As in TrOPD's tables, "REOPOLD" is the reward clipping alone (its numbers equal Clip Outlier's) and
"REOPOLD 2Stage" the full schedule with entropy-based token selection.

Sources and choices: the values lambda = 0.2, entropy_top_frac = 0.5 (top 50% student entropy) and
switch_frac = 0.5 (half of training) are a third party's reading of the primary text (not confirmed,
methods.md 4.4), used as defaults. Deviation: REOPOLD normalises by the number of selected tokens
(1 / sum M); here the shared reducer's normalisation applies to every method alike. "The batch" of the
entropy selection is what the method sees at once, one micro-batch of one process
(`tropd.methods.terms.top_fraction_mask`), not the whole step: with `micro_batch: 4` the top 50% is
ranked within 4 sequences.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tropd.errors import ConfigError
from tropd.methods.opd import k1_reward, pg_loss
from tropd.methods.terms import on_policy, top_fraction_mask
from tropd.registry import MethodOutput, StepContext, TokenStats, register


@dataclass
class REOPOLDParams:
    lam: float = 0.2  # mixture weight; reward floor log(lam / (1 - lam))

    def floor(self) -> float:
        return math.log(self.lam / (1 - self.lam))

    def check(self) -> None:
        if not 0 < self.lam < 1:
            raise ConfigError(f"method.params.lam: must be in (0, 1), got {self.lam}")


@dataclass
class REOPOLD2StageParams(REOPOLDParams):
    switch_frac: float = 0.5  # share of training in the exploration stage
    entropy_top_frac: float = 0.5  # share of tokens kept in the refinement stage

    def check(self) -> None:
        super().check()
        if not 0 <= self.switch_frac <= 1:
            raise ConfigError(f"method.params.switch_frac: must be in [0, 1], got {self.switch_frac}")
        if not 0 < self.entropy_top_frac <= 1:
            raise ConfigError(
                f"method.params.entropy_top_frac: must be in (0, 1], got {self.entropy_top_frac}")


def _metrics(reward_BT: torch.Tensor, floor: float, keep_BT: torch.Tensor | None = None):
    unclipped_BT = reward_BT >= floor
    metrics = {"reward": reward_BT, "trust": unclipped_BT.to(reward_BT.dtype), "reward_in": reward_BT,
               "reward_out": reward_BT}
    masks = {"reward_in": unclipped_BT, "reward_out": ~unclipped_BT}
    if keep_BT is not None:
        metrics["kept"] = keep_BT.to(reward_BT.dtype)
    return metrics, masks


@register(
    "reopold",
    params=REOPOLDParams,
    description="REOPOLD: K1 OPD with the reward clipped from below at log(lambda/(1-lambda))",
    reference="Ko et al. 2603.11137 (reward clipping)",
)
def reopold(s: TokenStats, p: REOPOLDParams, ctx: StepContext) -> MethodOutput:
    reward_BT = k1_reward(s)
    metrics, masks = _metrics(reward_BT, p.floor())
    loss_BT = pg_loss(s, reward_BT.clamp_min(p.floor()))
    return MethodOutput(loss_BT=loss_BT, metrics=metrics, metric_masks=masks)


def in_exploration(p: REOPOLD2StageParams, ctx: StepContext) -> bool:
    return ctx.step < round(p.switch_frac * ctx.total_steps)


@register(
    "reopold_2stage",
    params=REOPOLD2StageParams,
    description="REOPOLD two-stage: reward-floor token mask, then top student-entropy tokens",
    reference="Ko et al. 2603.11137 (exploration-to-refinement)",
)
def reopold_2stage(s: TokenStats, p: REOPOLD2StageParams, ctx: StepContext) -> MethodOutput:
    reward_BT = k1_reward(s)
    if in_exploration(p, ctx):
        keep_BT = reward_BT >= p.floor()
    else:
        keep_BT = top_fraction_mask(s.student_entropy_BT, s.mask_BT & on_policy(s), p.entropy_top_frac)
    loss_BT = torch.where(keep_BT, pg_loss(s, reward_BT.clamp_min(p.floor())), torch.zeros_like(s.logp_BT))
    metrics, masks = _metrics(reward_BT, p.floor(), keep_BT)
    metrics["stage"] = torch.tensor(1.0 if in_exploration(p, ctx) else 2.0)
    return MethodOutput(loss_BT=loss_BT, metrics=metrics, metric_masks=masks)
