"""The method registry and the per-token contract every method shares.

A method is a pure function

    fn(s: TokenStats, p: Params, ctx: StepContext) -> MethodOutput

from per-token tensors to an *unreduced* per-token loss `loss_BT` (B, T) plus per-token
diagnostics. It never masks, averages or calls backward: that happens once, in
`tropd.reduce.reduce_loss`. Besides the loss, `register` takes a typed declaration of everything the
core needs from the method, and the core reads nothing else of it (never a parameter by name):

- `behaviour(params)`: who writes the rollouts, a `tropd.rollout.policies.Behaviour` (student,
  teacher-prefix guidance, student/teacher blend, dataset mix, teacher);
- `schedule`: one stage (`OneStage`) or a class of several (ERPD's, in baselines/erpd.py), built by
  the loop with the run's objects and called at fixed points of every step;
- `scores`: what must be scored (`Scores`: the teacher pass at all; full (B, T, V) logits).

Shapes: B sequences, T response positions (prompt excluded, right-padded), K teacher top-k, V vocab.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

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


@dataclass(frozen=True)
class Scores:
    """What the scorer computes besides the student's sampled-token log-probs. The teacher pass gives
    the sampled token's log-prob, the top-k (ids, log-probs) and the entropy of both models at once
    (cheap next to the forward itself), so those are not declared one by one."""

    teacher: bool = True  # False: the loss never reads the teacher (SeqKD); no teacher forward
    full_logits: bool = False  # (B, T, V) logits of both models (GKD)


class OneStage:
    """A method's schedule: one stage, nothing changes between steps (every method but ERPD).

    A schedule of several stages subclasses this (baselines/erpd.py) and is built by the loop as
    `schedule(params, steps, out, student, world)`; the loop calls its hooks at fixed points of a step."""

    multi_stage = False  # several stages keep state across steps (tropd.infra.fsdp refuses them)

    def __init__(self, params=None, steps: int = 0, out=None, model=None, world=None):
        pass

    def on_step(self, step, teacher, optimizer, scheduler):
        """Start of `step`: the teacher to distil from (a stage switch may replace it)."""
        return teacher

    def on_resume(self, start, teacher):
        return teacher

    def fixed_rollout(self, step):
        """A stored rollout to train on at `step` instead of sampling one, or None."""
        return None

    def remember_rollout(self, step, batch) -> None:
        pass


def _student(params):
    from tropd.rollout.policies import Student

    return Student()


@dataclass
class Method:
    name: str
    fn: Callable[[TokenStats, Any, StepContext], MethodOutput]
    params: type = NoParams  # dataclass of hyperparameters, filled from config `method.params`
    description: str = ""
    reference: str = ""
    behaviour: Callable[[Any], Any] = _student  # params -> tropd.rollout.policies.Behaviour
    schedule: type = OneStage
    scores: Scores = Scores()

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
    behaviour: Callable[[Any], Any] = _student,
    schedule: type = OneStage,
    scores: Scores = Scores(),
) -> Callable:
    """Decorator: register `fn` as method `name`, with what the core needs from it (module docstring)."""

    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        if not dataclasses.is_dataclass(params):
            raise TypeError(f"method {name!r}: params must be a dataclass")
        if scores.full_logits and not scores.teacher:
            raise ValueError(f"method {name!r}: full logits from a teacher it does not score")
        if not (isinstance(schedule, type) and issubclass(schedule, OneStage)):
            raise TypeError(f"method {name!r}: schedule must be OneStage or a subclass")
        _REGISTRY[name] = Method(name, fn, params, description, reference, behaviour, schedule, scores)
        return fn

    return deco
