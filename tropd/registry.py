"""The method registry and the per-token contract every method shares.

A method is a pure function

    fn(s: TokenStats, p: Params, ctx: StepContext) -> MethodOutput

from per-token tensors to an *unreduced* per-token loss `loss_BT` (B, T) plus per-token
diagnostics. It never masks, averages or calls backward: that happens once, in
`tropd.reduce.reduce_loss`. A method also declares what it needs from the teacher (`needs`; with
`scores_teacher=False` not even the sampled tokens' log-probs, so the teacher forward is skipped)
and which behaviour policy writes its rollouts (`rollout`), so the training loop computes only that.

Shapes: B sequences, T response positions (prompt excluded, right-padded), K teacher top-k, V vocab.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

# What a method may ask the scorer for (besides sampled-token log-probs, always present).
Need = Literal["topk", "entropy", "full_logits"]
# Which behaviour policy writes the rollouts (tropd.rollout implements each).
Rollout = Literal["student", "guided", "teacher", "mixed", "blend"]


@dataclass
class TokenStats:
    """Per-token inputs of a method. Student tensors carry gradients; everything else is detached."""

    mask_BT: torch.Tensor  # bool (B, T): response tokens that count (not prompt, not padding)
    from_teacher_BT: torch.Tensor  # bool (B, T): token written by the teacher (guidance prefix, SeqKD)
    logp_BT: torch.Tensor  # student log pi_S(x_t), with grad
    behav_logp_BT: torch.Tensor  # log-prob under the policy that sampled x_t (no grad)
    teacher_logp_BT: torch.Tensor  # log pi_T(x_t); NaN for a method with scores_teacher=False
    student_entropy_BT: torch.Tensor | None = None  # H(pi_S(.|h_t)), detached
    teacher_entropy_BT: torch.Tensor | None = None  # H(pi_T(.|h_t))
    teacher_topk_ids_BTK: torch.Tensor | None = None  # long (B, T, K): teacher's top-k ids
    teacher_topk_logp_BTK: torch.Tensor | None = None  # log pi_T at those ids (full softmax)
    student_topk_logp_BTK: torch.Tensor | None = None  # log pi_S at those ids, with grad
    student_logits_BTV: torch.Tensor | None = None  # only for methods needing full_logits (GKD)
    teacher_logits_BTV: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mask_BT.shape)  # type: ignore[return-value]


@dataclass
class StepContext:
    """Where in training we are, and the seeds of any randomness a method draws."""

    step: int  # 0-based optimizer step
    total_steps: int
    # long (B,): one seed per sequence, derive_seed(run seed, step, prompt, sample, "method"); never
    # global RNG. Per-row seeds make a draw independent of micro-batching and data-parallel sharding.
    seed_B: torch.Tensor
    # Loss-mask tokens of the whole step (every micro-batch and process), and how many of them a
    # teacher wrote (TrOPD's guidance prefixes): for a method that normalises groups of tokens by
    # their own counts (tropd's prefix_norm: separate). 0 = not given.
    step_tokens: float = 0.0
    step_teacher_tokens: float = 0.0


@dataclass
class MethodOutput:
    loss_BT: torch.Tensor  # (B, T) unreduced per-token loss; masked positions are ignored
    # Per-token diagnostics (B, T) reduced by the shared masked mean, or scalars logged as is.
    # Conventional keys: trust, outlier, reward_in, reward_out, fkl, prefix_tokens.
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    # Per-token masks restricting a metric's mean, e.g. {"reward_in": trust_mask_BT}.
    metric_masks: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class NoParams:
    pass


@dataclass
class Method:
    name: str
    fn: Callable[[TokenStats, Any, StepContext], MethodOutput]
    params: type = NoParams  # dataclass of hyperparameters, filled from config `method.params`
    description: str = ""
    reference: str = ""
    needs: frozenset[str] = frozenset()
    rollout: str = "student"
    scores_teacher: bool = True  # False: the loss never reads the teacher (SeqKD); no scoring pass

    def parse_params(self, raw: dict[str, Any]) -> Any:
        from tropd.schema import build

        obj = build(self.params, raw, "method.params")
        check = getattr(obj, "check", None)
        if check:
            check()
        return obj


_REGISTRY: dict[str, Method] = {}


def register(
    name: str,
    *,
    params: type = NoParams,
    description: str,
    reference: str,
    needs: tuple[str, ...] = (),
    rollout: str = "student",
    scores_teacher: bool = True,
) -> Callable:
    """Decorator: register `fn` as method `name`."""

    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        if not dataclasses.is_dataclass(params):
            raise TypeError(f"method {name!r}: params must be a dataclass")
        if needs and not scores_teacher:
            raise ValueError(f"method {name!r}: needs {sorted(needs)} from a teacher it does not score")
        _REGISTRY[name] = Method(name, fn, params, description, reference, frozenset(needs), rollout,
                                 scores_teacher)
        return fn

    return deco
