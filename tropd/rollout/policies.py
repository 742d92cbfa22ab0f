"""Behaviour policies: typed declarations of who writes the tokens a method trains on.

A method declares its behaviour policy at registration (`register(..., behaviour=...)`: a function of
its parsed parameters returning one of these); `tropd.rollout.collect` samples from it. The loop and
the rollout code read only these objects, never a method's parameters by name.

- Student     : every token from pi_S (OPD and most methods).
- Guided      : TrOPD's off-policy guidance (Sec. 3.4): a share `fraction` of the rollouts start with a
                teacher-written prefix, its length drawn by `rule` below a cosine-annealed maximum
                (tropd.methods.guidance); `unit` says whether that maximum counts tokens or a share of
                the teacher's own answer. Prefix tokens are flagged `from_teacher`.
- Teacher     : every token from pi_T (SeqKD).
- DatasetMix  : GKD: with probability `lmbda` a student sample, otherwise the dataset's reference answer.
- Blend       : TRB: each token from the geometric blend of pi_S and pi_T under a KL budget annealed
                linearly from `eps0` to 0 over `anneal_steps` (tropd.rollout.blend), then pure student.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Student:
    pass


@dataclass(frozen=True)
class Teacher:
    pass


@dataclass(frozen=True)
class Guided:
    fraction: float  # share of rollouts that get a teacher prefix
    rule: Literal["uniform", "fixed"]  # prefix length: uniform below the maximum, or the maximum
    anneal_frac: float  # share of training over which the maximum anneals to 0
    unit: Literal["tokens", "teacher_frac"] = "tokens"


@dataclass(frozen=True)
class DatasetMix:
    lmbda: float  # probability of a student sample (else the dataset answer)


@dataclass(frozen=True)
class Blend:
    eps0: float  # initial KL budget KL(mu || pi_S) per position, nats
    anneal_steps: int  # steps over which the budget anneals linearly to 0


Behaviour = Student | Teacher | Guided | DatasetMix | Blend
