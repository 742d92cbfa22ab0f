"""Behaviour policies: who writes the tokens a method trains on, declared by the method and sampled here.

A method declares its policy at registration (`register(..., behaviour=...)`: a function of its parsed
parameters returning one of these objects). `tropd.rollout.collect` builds a `Request` (the step's
prompts, one seed per sequence, the generation settings) and calls the policy's `sample`, which asks
the rollout backend (HF, vLLM, fake) for tokens and returns the completions with the behaviour
log-prob of every token and which tokens the teacher wrote. The loop and the rollout code read only
these objects, never a method's parameters by name. A method with a policy of its own subclasses
`Policy` in its own module (baselines/README.md shows how).

- Student     : every token from pi_S (OPD and most methods).
- Guided      : TrOPD's off-policy guidance (Sec. 3.4): a share `fraction` of the rollouts start with a
                teacher-written prefix whose length is drawn by `rule` below a cosine-annealed maximum
                (`max_prefix_len`); `unit` says whether that maximum counts tokens or a share of the
                teacher's own answer. Prefix tokens are flagged `from_teacher`.
- Teacher     : every token from pi_T (SeqKD).
- DatasetMix  : GKD: with probability `lmbda` a student sample, otherwise the dataset's reference answer.
- Blend       : TRB: each token from the geometric blend of pi_S and pi_T under a KL budget annealed
                linearly from `eps0` to 0 over `anneal_steps` (tropd.rollout.blend), then pure student.

Every draw derives from (run seed, step, prompt, sample): `Request.seeds` per sequence, and
`tropd.infra.seeding.generator(seed, step, prompt, sample, tag)` for a policy's own choices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from tropd.rollout.batch import Completion
from tropd.infra.seeding import derive_seed, generator


@dataclass
class Request:
    """One step's sampling job: `prompts[k]` is sequence k's prompt, `slots[k]` its (prompt position in
    the step, sample index), `seeds[k]` its seed; `references[k]` the dataset answer of its prompt."""

    backend: object
    prompts: list[list[int]]
    references: list[list[int]]
    seeds: list[int]
    slots: list[tuple[int, int]]
    step: int
    total_steps: int
    seed: int  # the run's seed
    max_new: int
    temperature: float
    top_p: float

    def sample(self, role: str, idx: list[int] | None = None, max_new: list[int] | None = None,
               prompts: list[list[int]] | None = None, seeds: list[int] | None = None):
        """The backend's samples of `role` ("student" / "teacher") for sequences `idx` (all by default)."""
        idx = list(range(len(self.prompts))) if idx is None else idx
        return self.backend.sample(role, [self.prompts[k] for k in idx] if prompts is None else prompts,
                                   [self.max_new] * len(idx) if max_new is None else max_new,
                                   [self.seeds[k] for k in idx] if seeds is None else seeds,
                                   self.temperature, self.top_p)


class Policy:
    """A behaviour policy: `sample(request)` -> (completions in request order, metrics of the rollout)."""

    def sample(self, r: Request) -> tuple[list[Completion], dict]:
        raise NotImplementedError


def plain(results, prompts, from_teacher: bool) -> list[Completion]:
    """Completions written by one model: every token from the student, or every one from the teacher."""
    return [Completion(p, t, lp, [from_teacher] * len(t), fin) for p, (t, lp, fin) in zip(prompts, results)]


@dataclass(frozen=True)
class Student(Policy):
    def sample(self, r: Request) -> tuple[list[Completion], dict]:
        return plain(r.sample("student"), r.prompts, False), {}


@dataclass(frozen=True)
class Teacher(Policy):
    def sample(self, r: Request) -> tuple[list[Completion], dict]:
        return plain(r.sample("teacher"), r.prompts, True), {}


def max_prefix_len(step: int, total_steps: int, full_len: int, anneal_frac: float = 1.0) -> int:
    """Cosine-annealed maximum teacher-prefix length at 0-based `step`: full_len at step 0, 0 at the end."""
    if anneal_frac <= 0 or full_len <= 0:
        return 0
    span = anneal_frac * (total_steps - 1)
    frac = min(step / span, 1.0) if span > 0 else (0.0 if step <= 0 else 1.0)
    return round(full_len * 0.5 * (1.0 + math.cos(math.pi * frac)))


def sample_prefix_len(max_len: int, teacher_len: int, rule: str, generator: torch.Generator) -> int:
    """Prefix length for one rollout: `fixed` = max_len, `uniform` ~ U{0..max_len}; at most teacher_len
    (the rollout code passes the generation limit: the teacher then writes only this many tokens)."""
    if max_len <= 0:
        return 0
    if rule == "fixed":
        length = max_len
    elif rule == "uniform":
        length = int(torch.randint(0, max_len + 1, (), generator=generator))
    else:
        raise ValueError(f"unknown prefix rule {rule!r} (fixed, uniform)")
    return min(length, teacher_len)


@dataclass(frozen=True)
class Guided(Policy):
    fraction: float  # share of rollouts that get a teacher prefix
    rule: Literal["uniform", "fixed"]  # prefix length: uniform below the maximum, or the maximum
    anneal_frac: float  # share of training over which the maximum anneals to 0
    unit: Literal["tokens", "teacher_frac"] = "tokens"

    def sample(self, r: Request) -> tuple[list[Completion], dict]:
        ps, seeds, slots, step, seed, max_new = r.prompts, r.seeds, r.slots, r.step, r.seed, r.max_new
        l_max = max_prefix_len(step, r.total_steps, max_new, self.anneal_frac)
        gens = [generator(seed, step, i, j, "guide") for i, j in slots]
        guided = [float(torch.rand((), generator=gen)) < self.fraction for gen in gens] if l_max > 0 \
            else [False] * len(slots)
        idx_g = [k for k, flag in enumerate(guided) if flag]
        # The prefix length does not depend on what the teacher writes, so it is drawn first and the
        # teacher writes only that many tokens (its per-sequence seeds make them the same tokens a
        # longer generation would start with). A teacher that ends sooner writes the whole sequence.
        teacher_seeds = [derive_seed(seeds[k], "teacher") for k in idx_g]
        if self.unit == "teacher_frac":
            # l_max is a share of each teacher answer's own length: the teacher writes its whole answer
            # (up to max_new tokens), the prefix is its first l tokens, l = round(share * length) or a
            # uniform draw at most that. A prefix that keeps the whole of a finished answer stays finished.
            frac = l_max / max_new
            full_out = r.sample("teacher", idx_g, seeds=teacher_seeds)
            teacher_out = []
            for k, (toks, lps, fin) in zip(idx_g, full_out):
                n = sample_prefix_len(round(frac * len(toks)), len(toks), self.rule, gens[k])
                teacher_out.append((toks[:n], lps[:n], fin and n == len(toks)))
        else:
            lens_g = [sample_prefix_len(l_max, max_new, self.rule, gens[k]) for k in idx_g]
            teacher_out = r.sample("teacher", idx_g, max_new=lens_g, seeds=teacher_seeds)
        prefix = dict(zip(idx_g, teacher_out))  # k -> (tokens, log-probs, finished), at most lens_g tokens
        # Student continues every sequence the teacher has not finished.
        cont_idx = [k for k in range(len(ps)) if not (k in prefix and prefix[k][2])]
        cont_prompts = [ps[k] + (prefix[k][0] if k in prefix else []) for k in cont_idx]
        cont_new = [max_new - (len(prefix[k][0]) if k in prefix else 0) for k in cont_idx]
        cont = dict(zip(cont_idx, r.sample("student", cont_idx, max_new=cont_new, prompts=cont_prompts)))
        comps = []
        for k, p in enumerate(ps):
            pt, plp, pfin = prefix.get(k, ([], [], False))
            st, slp, sfin = cont.get(k, ([], [], False))
            flags = [True] * len(pt) + [False] * len(st)
            comps.append(Completion(p, pt + st, plp + slp, flags, pfin or sfin))
        lens = [len(prefix[k][0]) for k in idx_g]
        meta = {"prefix_max": l_max, "guided_frac": len(idx_g) / max(len(ps), 1),
                "prefix_len": sum(lens) / len(lens) if lens else 0.0}
        return comps, meta


@dataclass(frozen=True)
class DatasetMix(Policy):
    lmbda: float  # probability of a student sample (else the dataset answer)

    def sample(self, r: Request) -> tuple[list[Completion], dict]:
        on = [float(torch.rand((), generator=generator(r.seed, r.step, i, j, "mix"))) < self.lmbda
              for i, j in r.slots]
        idx_on = [k for k, f in enumerate(on) if f]
        outs = dict(zip(idx_on, r.sample("student", idx_on)))
        comps = []
        for k in range(len(r.slots)):
            if on[k]:
                t, lp, fin = outs[k]
                comps.append(Completion(r.prompts[k], t, lp, [False] * len(t), fin))
            else:  # off-policy: the dataset answer; no behaviour policy, so behav_logp is a placeholder 0
                ref = r.references[k][:r.max_new]  # a reference cut here has lost its EOS: not finished
                comps.append(Completion(r.prompts[k], ref, [0.0] * len(ref), [True] * len(ref),
                                        len(r.references[k]) <= r.max_new))
        return comps, {}


@dataclass(frozen=True)
class Blend(Policy):
    eps0: float  # initial KL budget KL(mu || pi_S) per position, nats
    anneal_steps: int  # steps over which the budget anneals linearly to 0

    def sample(self, r: Request) -> tuple[list[Completion], dict]:
        from tropd.rollout.blend import blend_logprobs, trb_eps

        eps = trb_eps(r.step, self.eps0, self.anneal_steps)
        if eps <= 0:
            return plain(r.sample("student"), r.prompts, False), {"trb_eps": 0.0}
        bs: list[float] = []

        def combine(logps: list[torch.Tensor]) -> torch.Tensor:
            mu, b = blend_logprobs(logps[0], logps[1], eps)
            bs.append(float(b.mean()))
            return mu

        res = r.backend.sample_blend(r.prompts, [r.max_new] * len(r.prompts), r.seeds, combine, r.temperature,
                                     r.top_p)
        return plain(res, r.prompts, False), {"trb_eps": eps, "trb_b": sum(bs) / max(len(bs), 1)}


Behaviour = Policy  # the type a method's `behaviour` returns
