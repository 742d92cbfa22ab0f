"""Stand-alone top-k forward KL (TrOPD 2606.01249, Eq. 3; "FKL (top-k, stand-alone)" / "Full FKL" in
Tables 1 and 5).

At every student-sampled position h_t (x ~ pi_S, so the states are on-policy):

    loss_t = sum_{v in V_T^k(h_t)} pi_T(v|h_t) (log pi_T(v|h_t) - log pi_S(v|h_t)),

differentiated directly through pi_S at the teacher's top-k ids (k = `train.topk`, 64 in the paper).
The paper reports that this collapses (AIME = 0): with full-softmax probabilities the truncated
support pushes all student mass onto the teacher's top-k, since the logit gradient
(sum_topk pi_T) pi_S(u) - pi_T(u) 1[u in top-k] is non-zero even at pi_S = pi_T.

Deviation: none. `renormalize` (default false, as Eq. 3 is written) renormalises both distributions
over the k ids instead.
"""
from __future__ import annotations

from dataclasses import dataclass

from tropd.methods.terms import topk_fkl as topk_fkl_term
from tropd.registry import MethodOutput, StepContext, TokenStats, register


@dataclass
class TopkFKLParams:
    renormalize: bool = False


@register(
    "topk_fkl",
    params=TopkFKLParams,
    description="Stand-alone top-k forward KL over the teacher's top-k at student-sampled states",
    reference="Xing et al. 2606.01249 Eq. 3 (Table 1 'FKL')",
)
def topk_fkl(s: TokenStats, p: TopkFKLParams, ctx: StepContext) -> MethodOutput:
    fkl_BT = topk_fkl_term(s, p.renormalize)
    return MethodOutput(loss_BT=fkl_BT, metrics={"fkl": fkl_BT.detach()})
