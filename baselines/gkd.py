"""GKD: Generalized Knowledge Distillation (Agarwal et al., arXiv 2306.13649, ICLR 2024; methods.md 4.1).

    L_GKD = (1 - lambda) E_{y ~ data}[D(pi_T || pi_S)(y)] + lambda E_{y ~ pi_S}[D(pi_T || pi_S)(y)]

with D the generalised Jensen-Shannon divergence over the FULL vocabulary at every prefix,

    JSD(beta) = beta KL(pi_T || M) + (1 - beta) KL(pi_S || M),   M = beta pi_T + (1 - beta) pi_S

(mixture in probability space). The rollout code ("mixed") draws a student sample with probability
`lmbda` and otherwise uses the dataset answer (TRL's `lmbda`, default 0.5); the same per-position
divergence applies to both, so `from_teacher` is ignored. No gradient flows through the sampling.

Normalisation (deviation): the loss is JSD(beta) / (beta (1 - beta))
= KL(pi_T || M) / (1 - beta) + KL(pi_S || M) / beta.
JSD(beta) = beta KL(pi_T||pi_S) + O(beta^2) as beta -> 0 and (1-beta) KL(pi_S||pi_T) + O((1-beta)^2) as
beta -> 1, so the normalised loss is continuous on [0, 1] with the end points
    beta = 0: KL(pi_T || pi_S)  (forward KL),   beta = 1: KL(pi_S || pi_T)  (reverse KL),
which are used exactly there (no NaN). At fixed beta it is a constant factor (4 at beta = 0.5) and it
puts GKD on the scale of the KL-based methods (see baselines/jsd.py). Our beta is the teacher's weight in
M, as in the GKD paper; TRL's `beta` uses the same end points (0 = forward KL).
Other deviations: no softmax temperature inside the loss (TRL's default 0.9 applies to sampling, here
`train.temperature`); the computation runs in the logits' dtype (float32), so very small interior beta
(< 1e-4) loses precision in the 1/beta term; the end points themselves are exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tropd.errors import ConfigError
from tropd.registry import MethodOutput, Scores, StepContext, TokenStats, register
from tropd.rollout.blend import kl_from_logprobs
from tropd.rollout.policies import DatasetMix


@dataclass
class GKDParams:
    beta: float = 0.5  # teacher weight in the mixture (0 = forward KL, 1 = reverse KL)
    lmbda: float = 0.5  # on-policy fraction of rollouts (the DatasetMix behaviour policy)

    def check(self) -> None:
        if not 0 <= self.beta <= 1:
            raise ConfigError(f"method.params.beta: must be in [0, 1], got {self.beta}")
        if not 0 <= self.lmbda <= 1:
            raise ConfigError(f"method.params.lmbda: must be in [0, 1], got {self.lmbda}")


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float) -> torch.Tensor:
    """JSD(beta) / (beta (1 - beta)) per position (..., V) -> (...); the KL limits at beta = 0 and 1."""
    ls = student_logits.to(torch.promote_types(student_logits.dtype, torch.float32)).log_softmax(-1)
    lt = teacher_logits.to(ls.dtype).log_softmax(-1).detach()
    if beta == 0:
        return kl_from_logprobs(lt, ls)
    if beta == 1:
        return kl_from_logprobs(ls, lt)
    lm = torch.logaddexp(lt + math.log(beta), ls + math.log1p(-beta))
    return kl_from_logprobs(lt, lm) / (1 - beta) + kl_from_logprobs(ls, lm) / beta


@register(
    "gkd",
    params=GKDParams,
    description="GKD: full-vocabulary generalised JSD(beta) on a lambda mix of student and dataset samples",
    reference="Agarwal et al. 2306.13649",
    behaviour=lambda p: DatasetMix(p.lmbda),
    scores=Scores(full_logits=True),
)
def gkd(s: TokenStats, p: GKDParams, ctx: StepContext) -> MethodOutput:
    loss_BT = generalized_jsd(s.student_logits_BTV, s.teacher_logits_BTV, p.beta)
    with torch.no_grad():
        fkl_BT = generalized_jsd(s.student_logits_BTV, s.teacher_logits_BTV, 0.0)
    return MethodOutput(loss_BT=loss_BT, metrics={"fkl": fkl_BT})
