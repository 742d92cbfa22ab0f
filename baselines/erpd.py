"""ERPD: Extreme Region Policy Distillation (Chen, Wang, Yan; arXiv 2605.25582). Only the abstract is
available (methods.md 4.7); this module is our reading of it.

The abstract describes two stages: (1) weakly constrained off-policy optimisation, many updates on
fixed rollouts, to extract as much training signal as possible, producing an "extreme" policy; (2)
distilling that policy's token-level signal back into the base policy under a trust region, to filter
out harmful drift. ERPD is an RLVR method; in this distillation harness the stage-1 signal is the
teacher's K1 reward, as in OPD.

Our reading, with S1 = round(stage1_frac * total_steps) (the same rounding as `ERPDStages`, the
schedule this module declares; the loop calls its hooks at fixed points of every step):

stage 1 (ctx.step < S1). The schedule reuses step 0's rollouts unchanged, so pi_old is the *fixed* behaviour
  policy (the base student at step 0), and every step is an off-policy update on them:
      loss_t = -min(rho_t A_t, clip(rho_t, 1 - e, 1 + e) A_t),   A_t = log pi_T(x_t) - log pi_old(x_t),
      rho_t = pi_S(x_t) / pi_old(x_t),   e = stage1_clip_eps = 1.0
  "Weakly constrained": the PPO clip is widened from the usual 0.2 to 1.0, i.e. a token's probability
  may grow to twice its behaviour value before its update stops (the lower side never binds for
  e >= 1); `.inf` removes the clip.
stage 2 (ctx.step >= S1). The schedule freezes the stage-1 policy as the teacher and resets the student to
  its base weights; the student then distils it on its own rollouts under TrOPD's Bernoulli trust region
  (`tropd.methods.tropd.trust_region_terms`): K1 reward on trusted tokens, M ~ Bernoulli(min(pi_T/pi_S, 1)).
  Outliers get no loss by default (`stage2_outlier: zero`): the abstract's "filter out harmful drift"
  reads as dropping tokens the extreme policy rejects; `fkl` gives TrOPD's top-k FKL instead.

Defaults: stage1_frac = 0.5 (no value is known; an even split gives both stages the same budget).
The reset to the base weights clears the optimizer's moments but not the learning-rate schedule,
which runs on over the whole run: with warm-up or a decaying `train.lr_schedule`, stage 2 starts
where the schedule is at step S1, without a second warm-up. Every shipped profile uses a constant
rate without warm-up, where this makes no difference.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from tropd.errors import ConfigError, UserError
from tropd.methods.opd import k1_reward
from tropd.methods.terms import ppo_pg_loss
from tropd.methods.tropd import REOPOLD_FLOOR, trust_region_terms
from tropd.registry import MethodOutput, OneStage, StepContext, TokenStats, register


@dataclass
class ERPDParams:
    stage1_frac: float = 0.5  # share of steps in stage 1 (ERPDStages)
    stage1_clip_eps: float = 1.0  # loose PPO ratio clip of stage 1 (.inf = none)
    stage2_trust: Literal["bernoulli", "static"] = "bernoulli"
    stage2_outlier: Literal["zero", "fkl", "clip"] = "zero"
    tau: float = REOPOLD_FLOOR  # threshold / floor for stage2_trust static or stage2_outlier clip
    trust_logp: Literal["behaviour", "current"] = "behaviour"

    def check(self) -> None:
        if not 0 <= self.stage1_frac <= 1:
            raise ConfigError(f"method.params.stage1_frac: must be in [0, 1], got {self.stage1_frac}")
        if not self.stage1_clip_eps > 0:
            raise ConfigError(f"method.params.stage1_clip_eps: must be > 0, got {self.stage1_clip_eps}")
        if not math.isfinite(self.tau):
            raise ConfigError(f"method.params.tau: must be finite, got {self.tau}")


class ERPDStages(OneStage):
    """ERPD's schedule: stage 1 optimises on the rollouts of step 0, reused unchanged for
    `stage1_frac` of the steps; at the switch the stage-1 policy becomes the frozen teacher, the
    student is reset to its base weights and its optimizer state cleared. Data-parallel processes
    keep their own shard of the step-0 rollouts (one file each); the main process saves the stage-1
    policy, which every process computed identically.
    """

    multi_stage = True

    def __init__(self, params: ERPDParams, steps: int, out: Path, model, world):
        self.s1 = int(round(params.stage1_frac * steps))
        self.out, self.model, self.world = out, model, world
        self.base = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.fixed = None
        # The process count is in the name: each shard holds its process's prompts of step 0.
        name = "erpd_rollout.pt" if world.size == 1 else f"erpd_rollout.rank{world.rank}of{world.size}.pt"
        self.rollout_file = out / name

    def fixed_rollout(self, step):
        if step >= self.s1 or step == 0:
            return None
        if self.fixed is None:
            if not self.rollout_file.is_file():
                found = sorted(p.name for p in self.out.glob("erpd_rollout*.pt"))
                raise UserError(f"{self.out}: ERPD's stage-1 rollouts are {found or 'missing'}, not "
                                f"{self.rollout_file.name}: resume with the number of processes that "
                                f"started the run (workflow.gpus_per_train), or use a new --out")
            self.fixed = torch.load(self.rollout_file, weights_only=False)
        return self.fixed

    def remember_rollout(self, step, batch) -> None:
        if step == 0 and self.s1 > 0:
            self.fixed = batch
            torch.save(batch, self.rollout_file)

    def _extreme(self):
        m = copy.deepcopy(self.model)
        m.requires_grad_(False)
        m.eval()
        return m

    def on_step(self, step, teacher, optimizer, scheduler):
        if step != self.s1 or self.s1 == 0:
            return teacher
        extreme = self._extreme()
        if self.world.main:
            torch.save(extreme.state_dict(), self.out / "erpd_stage1.pt")
        self.model.load_state_dict(self.base)
        optimizer.state.clear()
        return extreme

    def on_resume(self, start, teacher):
        if start <= self.s1 or self.s1 == 0:
            return teacher
        extreme = self._extreme()
        extreme.load_state_dict(torch.load(self.out / "erpd_stage1.pt", weights_only=True))
        # Stage-2 student weights were restored from the checkpoint; the base stays the original.
        return extreme


def in_stage1(p: ERPDParams, ctx: StepContext) -> bool:
    return ctx.step < round(p.stage1_frac * ctx.total_steps)


@register(
    "erpd",
    params=ERPDParams,
    description="ERPD (abstract-only reading): off-policy K1 updates on fixed rollouts, then trust-region "
                "distillation of that policy into the reset base",
    reference="Chen, Wang, Yan 2605.25582 (abstract)",
    schedule=ERPDStages,
)
def erpd(s: TokenStats, p: ERPDParams, ctx: StepContext) -> MethodOutput:
    if in_stage1(p, ctx):
        reward_BT = k1_reward(s)
        rho_BT = torch.exp(s.logp_BT - s.behav_logp_BT).detach()
        loss_BT = ppo_pg_loss(s, reward_BT, p.stage1_clip_eps)
        return MethodOutput(loss_BT=loss_BT, metrics={"reward": reward_BT, "ratio": rho_BT,
                                                     "stage": torch.tensor(1.0)})
    loss_BT, metrics, masks = trust_region_terms(
        s, ctx, trust_mode=p.stage2_trust, outlier_mode=p.stage2_outlier, tau=p.tau,
        trust_logp=p.trust_logp, renormalize_topk=False)
    metrics["stage"] = torch.tensor(2.0)
    return MethodOutput(loss_BT=loss_BT, metrics=metrics, metric_masks=masks)
