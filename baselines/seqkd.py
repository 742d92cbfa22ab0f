"""SeqKD: sequence-level knowledge distillation (Kim & Rush, EMNLP 2016, arXiv 1606.07947), i.e. SFT on
teacher samples; the off-policy end of GKD (Agarwal et al. 2306.13649, lambda = 0).

Rollouts come from the teacher (every token `from_teacher`); the loss is the NLL of each token:

    loss_t = -log pi_S(x_t),  x ~ pi_T,

whose expectation is KL(pi_T || pi_S) per prefix plus the teacher's entropy (a constant): a sampled
forward KL at teacher-visited states.

The loss never reads the teacher's scores, so SeqKD registers `scores_teacher=False` and the loop
skips the teacher forward (10.2 of 43.3 s, about a quarter of a SeqKD step on the smol profile).

Deviation: the original decodes the teacher with beam search; we sample at `train.temperature`
(what the shared rollout code offers, and what GKD's SeqKD variant does).
"""
from __future__ import annotations

from tropd.registry import MethodOutput, NoParams, Scores, StepContext, TokenStats, register
from tropd.rollout.policies import Teacher


@register(
    "seqkd",
    params=NoParams,
    description="SeqKD: supervised NLL on teacher-sampled responses",
    reference="Kim & Rush 1606.07947; GKD 2306.13649 (lambda = 0)",
    behaviour=lambda p: Teacher(),
    scores=Scores(teacher=False),  # the NLL needs only the student: no teacher scoring pass
)
def seqkd(s: TokenStats, p: NoParams, ctx: StepContext) -> MethodOutput:
    nll_BT = -s.logp_BT
    return MethodOutput(loss_BT=nll_BT, metrics={"nll": nll_BT.detach()})
