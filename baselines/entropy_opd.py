"""Entropy-OPD: OPD restricted to the highest-entropy tokens (the "80/20 rule" of Wang et al.,
arXiv 2506.01939, applied to OPD as in TrOPD 2606.01249 Table 1, "Entropy OPD 20%").

    loss_t = I[H(h_t) >= q_{1 - frac}] * (-rho_t sg(R_t)),   R_t = log pi_T(x_t) - log pi_old(x_t)

where q_{1 - frac} is the entropy of the ceil(frac * n)-th highest-entropy token among the n
student-sampled tokens of the batch (frac = 0.2: top 20%). Exactly ceil(frac * n) tokens are kept:
tokens tied at q are taken by position (`top_fraction_mask`).

Choices (unstated in the paper): the entropy is the student's by default (`entropy_source`), as in the
80/20 paper, which selects on the policy's own entropy; `teacher` is the alternative. "Batch" is what the
method sees at once, one micro-batch (`tropd.methods.terms.top_fraction_mask`).
Deviation: the dropped tokens still count in the shared reducer's denominator (token mean over all
response tokens), rather than renormalising over the kept 20%; a constant-ish factor of 1/frac.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from tropd.errors import ConfigError
from tropd.methods.opd import k1_reward, pg_loss
from tropd.methods.terms import on_policy, top_fraction_mask
from tropd.registry import MethodOutput, StepContext, TokenStats, register


@dataclass
class EntropyOPDParams:
    top_frac: float = 0.2  # share of tokens kept (highest entropy)
    entropy_source: Literal["student", "teacher"] = "student"

    def check(self) -> None:
        if not 0 < self.top_frac <= 1:
            raise ConfigError(f"method.params.top_frac: must be in (0, 1], got {self.top_frac}")


@register(
    "entropy_opd",
    params=EntropyOPDParams,
    description="Entropy-OPD: K1 OPD on the top-20% highest-entropy tokens of the batch",
    reference="Wang et al. 2506.01939; Xing et al. 2606.01249 Table 1 ('Entropy OPD 20%')",
)
def entropy_opd(s: TokenStats, p: EntropyOPDParams, ctx: StepContext) -> MethodOutput:
    ent_BT = s.student_entropy_BT if p.entropy_source == "student" else s.teacher_entropy_BT
    keep_BT = top_fraction_mask(ent_BT, s.mask_BT & on_policy(s), p.top_frac)
    reward_BT = k1_reward(s)
    loss_BT = torch.where(keep_BT, pg_loss(s, reward_BT), torch.zeros_like(s.logp_BT))
    return MethodOutput(loss_BT=loss_BT, metrics={"trust": keep_BT.to(loss_BT.dtype), "reward": reward_BT,
                                                 "reward_in": reward_BT},
                        metric_masks={"reward_in": keep_BT})
