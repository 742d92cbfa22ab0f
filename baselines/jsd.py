"""JSD(beta) with a top-k forward part and a sampled reverse part (TrOPD 2606.01249, Eq. 4; Table 1
"JSD (beta = 0.5)"), the O(nk) version of GKD's generalised JSD.

With the mixture pi_M = beta pi_T + (1 - beta) pi_S and x ~ pi_old (= pi_S on-policy):

    JSD_t = beta * sum_{v in V_T^k} pi_T(v) log(pi_T(v) / pi_M(v))      top-k part, differentiated directly
          + (1 - beta) * KL(pi_S || pi_M)                               sampled part, estimated at x

The sampled part is a score-function estimate with the *exact* gradient of KL(pi_S || pi_M): since
pi_M itself depends on pi_S,

    grad KL(pi_S || pi_M)
        = E_{x~pi_S}[ grad log pi_S(x) * (log pi_S(x)/pi_M(x) + beta (pi_T(x)/pi_M(x) - 1)) ]

(the -1 is a zero-mean baseline, E[grad log pi_S] = 0, that makes the per-sample gradient exactly zero
at pi_S = pi_T). It enters as a detached weight w_t times the importance ratio rho_t = pi_S/pi_old,
with pi_S inside w taken from the behaviour log-prob (as OPD's reward).

Deviations:
- Normalisation: the loss is JSD_t / (beta (1 - beta)), so that beta -> 0 gives the top-k forward KL
  (`topk_fkl`) and beta -> 1 the K1 reverse KL (`opd`) plus sum_{v in V_T^k} (pi_T(v) - pi_S(v)): the
  first-order remainder of the mixture KL truncated to the teacher's top-k, which vanishes for k = V (or
  with `renormalize_topk`). Those limits are used exactly at beta = 0 and 1, so the loss is continuous
  on [0, 1], and for k = V its end points are the forward and the reverse KL.
  At fixed beta this is a constant factor (4 at beta = 0.5), and it puts JSD on the scale of the KL
  methods near convergence (JSD(beta) ~ beta (1 - beta) chi^2 / 2, KL ~ chi^2 / 2), so the same learning
  rate and gradient clip serve every method.
- The paper writes Eq. 4 as a reward to maximise with a sign slip; we minimise the divergence.
- k = `train.topk` (the paper's unified k = 64); full-softmax probabilities unless `renormalize_topk`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tropd.errors import ConfigError
from tropd.methods.opd import k1_reward
from tropd.methods.terms import importance_ratio, topk_fkl, topk_logps
from tropd.registry import MethodOutput, StepContext, TokenStats, register


@dataclass
class JSDParams:
    beta: float = 0.5  # mixture weight of the teacher (TrOPD Table 1)
    renormalize_topk: bool = False

    def check(self) -> None:
        if not 0 <= self.beta <= 1:
            raise ConfigError(f"method.params.beta: must be in [0, 1], got {self.beta}")


def _log_mix(lt: torch.Tensor, ls: torch.Tensor, beta: float) -> torch.Tensor:
    """log(beta exp(lt) + (1 - beta) exp(ls)) for 0 < beta < 1."""
    return torch.logaddexp(lt + math.log(beta), ls + math.log1p(-beta))


def _topk_part(s: TokenStats, b: float, renormalize: bool) -> torch.Tensor:
    """KL_topk(pi_T || pi_M) / (1 - beta) (B, T), with its limits at beta = 0 and 1."""
    if b == 0:
        return topk_fkl(s, renormalize)
    lt_BTK, ls_BTK = topk_logps(s, renormalize)
    pt_BTK = lt_BTK.exp()
    if b == 1:
        term_BTK = pt_BTK - ls_BTK.exp()
    else:
        term_BTK = pt_BTK * (lt_BTK - _log_mix(lt_BTK, ls_BTK, b)) / (1 - b)
    return torch.where(pt_BTK > 0, term_BTK, torch.zeros_like(term_BTK)).sum(-1)


def _sample_part(s: TokenStats, b: float) -> torch.Tensor:
    """KL(pi_S || pi_M) / beta estimated at the sampled token, as rho * sg(w) / beta (B, T)."""
    if b == 0:
        return torch.zeros_like(s.logp_BT)
    lt_BT = s.teacher_logp_BT.detach()
    lo_BT = s.behav_logp_BT.detach()
    lm_BT = lt_BT if b == 1 else _log_mix(lt_BT, lo_BT, b)
    w_BT = (lo_BT - lm_BT) + b * (torch.exp(lt_BT - lm_BT) - 1.0)
    return importance_ratio(s) * (w_BT / b)


@register(
    "jsd",
    params=JSDParams,
    description="JSD(beta): top-k forward part vs the mixture + sampled-token reverse part",
    reference="Xing et al. 2606.01249 Eq. 4 (Table 1 'JSD')",
)
def jsd(s: TokenStats, p: JSDParams, ctx: StepContext) -> MethodOutput:
    loss_BT = _topk_part(s, p.beta, p.renormalize_topk) + _sample_part(s, p.beta)
    return MethodOutput(loss_BT=loss_BT, metrics={"fkl": topk_fkl(s, p.renormalize_topk).detach(),
                                                 "reward": k1_reward(s)})
