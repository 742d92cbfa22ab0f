"""Behaviour policies sampled: who writes the tokens a method trains on.

Backends (`hf`, `vllm`, `fake`) only sample; the policy logic lives here, once, for all of them. A
method declares its policy (tropd.rollout.policies) and `collect` reads only that declaration:

- Student    : every token sampled from pi_S (OPD and most methods)
- Guided     : TrOPD's off-policy guidance: the teacher writes a prefix of length l (cosine-annealed
               maximum, `tropd.methods.guidance`), the student continues; prefix tokens are flagged
               `from_teacher`
- Teacher    : every token from pi_T (SeqKD)
- DatasetMix : GKD: with probability `lmbda` a student sample, otherwise the dataset reference answer
- Blend      : TRB: each token from the geometric blend of pi_S and pi_T under a KL budget eps
               (`tropd.rollout.blend`), eps annealed to 0, then pure student sampling

Every sequence's seed derives from (run seed, step, prompt index, sample index).
"""
from __future__ import annotations

import torch

from tropd.rollout.batch import Completion, RolloutBatch, pack
from tropd.rollout.policies import Behaviour, Blend, DatasetMix, Guided, Student, Teacher
from tropd.seeding import derive_seed, generator

__all__ = ["Completion", "RolloutBatch", "collect", "make_backend"]


def make_backend(name: str, student, teacher, tok, vocab: int | None = None, **kw):
    """`vocab`: the logit rows both models share (tropd.models.shared_vocab); None = all."""
    eos = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if name == "hf":
        from tropd.rollout.hf import HFBackend

        return HFBackend(student, teacher, eos, pad, vocab)
    if name == "fake":
        from tropd.rollout.fake import FakeBackend

        return FakeBackend(len(tok), eos, pad)
    if name == "vllm":
        from tropd.rollout.vllm import VLLMBackend  # lazy: the `gpu` extra

        return VLLMBackend(student, teacher, tok, eos, pad, vocab=vocab, **kw)
    raise ValueError(f"unknown rollout backend {name!r}")


def collect(
    behaviour: Behaviour,
    backend,
    prompts: list[list[int]],
    references: list[list[int]],
    n_samples: int,
    *,
    step: int,
    total_steps: int,
    seed: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    pad_id: int,
    positions: list[int] | None = None,
) -> RolloutBatch:
    """Sample `n_samples` completions per prompt with the declared `behaviour` policy.

    `positions` are the prompts' places in the step's prompt list (a data-parallel process passes
    its shard's); every seed derives from them, so the rollouts do not depend on the sharding.
    """
    positions = list(range(len(prompts))) if positions is None else positions
    local = [i for i in range(len(prompts)) for _ in range(n_samples)]
    slots = [(positions[i], j) for i in range(len(prompts)) for j in range(n_samples)]
    seeds = [derive_seed(seed, step, i, j) for i, j in slots]
    ps = [prompts[i] for i in local]
    full = [max_new_tokens] * len(slots)
    meta: dict = {}
    if isinstance(behaviour, Student):
        comps = _plain(backend.sample("student", ps, full, seeds, temperature, top_p), ps, False)
    elif isinstance(behaviour, Teacher):
        comps = _plain(backend.sample("teacher", ps, full, seeds, temperature, top_p), ps, True)
    elif isinstance(behaviour, Guided):
        comps, meta = _guided(backend, ps, seeds, slots, behaviour, step, total_steps, seed,
                              max_new_tokens, temperature, top_p)
    elif isinstance(behaviour, DatasetMix):
        comps = _mixed(backend, ps, seeds, slots, [references[i] for i in local], behaviour, step, seed,
                       max_new_tokens, temperature, top_p)
    elif isinstance(behaviour, Blend):
        comps, meta = _blend(backend, ps, seeds, behaviour, step, max_new_tokens, temperature, top_p)
    else:
        raise ValueError(f"unknown behaviour policy {behaviour!r}")
    batch = pack(comps, slots, pad_id)
    batch.meta = meta
    return batch


def _plain(results, prompts, from_teacher: bool) -> list[Completion]:
    return [Completion(p, t, lp, [from_teacher] * len(t), fin) for p, (t, lp, fin) in zip(prompts, results)]


def _guided(backend, ps, seeds, slots, g: Guided, step, total_steps, seed, max_new, temperature, top_p):
    from tropd.methods.guidance import max_prefix_len, sample_prefix_len

    l_max = max_prefix_len(step, total_steps, max_new, g.anneal_frac)
    gens = [generator(seed, step, i, j, "guide") for i, j in slots]
    guided = [float(torch.rand((), generator=gen)) < g.fraction for gen in gens] if l_max > 0 \
        else [False] * len(slots)
    idx_g = [k for k, flag in enumerate(guided) if flag]
    # The prefix length does not depend on what the teacher writes, so it is drawn first and the
    # teacher writes only that many tokens (its per-sequence seeds make them the same tokens a
    # longer generation would start with). A teacher that ends sooner writes the whole sequence.
    teacher_seeds = [derive_seed(seeds[k], "teacher") for k in idx_g]
    if g.unit == "teacher_frac":
        # l_max is a share of each teacher answer's own length: the teacher writes its whole answer
        # (up to max_new tokens), the prefix is its first l tokens, l = round(share * length) or a
        # uniform draw at most that. A prefix that keeps the whole of a finished answer stays finished.
        frac = l_max / max_new
        full_out = backend.sample("teacher", [ps[k] for k in idx_g], [max_new] * len(idx_g), teacher_seeds,
                                  temperature, top_p)
        teacher_out = []
        for k, (toks, lps, fin) in zip(idx_g, full_out):
            n = sample_prefix_len(round(frac * len(toks)), len(toks), g.rule, gens[k])
            teacher_out.append((toks[:n], lps[:n], fin and n == len(toks)))
    else:
        lens_g = [sample_prefix_len(l_max, max_new, g.rule, gens[k]) for k in idx_g]
        teacher_out = backend.sample("teacher", [ps[k] for k in idx_g], lens_g, teacher_seeds, temperature, top_p)
    prefix = dict(zip(idx_g, teacher_out))  # k -> (tokens, log-probs, finished), at most lens_g tokens
    # Student continues every sequence the teacher has not finished.
    cont_idx = [k for k in range(len(ps)) if not (k in prefix and prefix[k][2])]
    cont_prompts = [ps[k] + (prefix[k][0] if k in prefix else []) for k in cont_idx]
    cont_new = [max_new - (len(prefix[k][0]) if k in prefix else 0) for k in cont_idx]
    cont = dict(zip(cont_idx, backend.sample("student", cont_prompts, cont_new,
                                             [seeds[k] for k in cont_idx], temperature, top_p)))
    comps = []
    for k, p in enumerate(ps):
        pt, plp, pfin = prefix.get(k, ([], [], False))
        st, slp, sfin = cont.get(k, ([], [], False))
        comps.append(Completion(p, pt + st, plp + slp, [True] * len(pt) + [False] * len(st), pfin or sfin))
    lens = [len(prefix[k][0]) for k in idx_g]
    meta = {"prefix_max": l_max, "guided_frac": len(idx_g) / max(len(ps), 1),
            "prefix_len": sum(lens) / len(lens) if lens else 0.0}
    return comps, meta


def _mixed(backend, ps, seeds, slots, refs, mix: DatasetMix, step, seed, max_new, temperature, top_p):
    on = [float(torch.rand((), generator=generator(seed, step, i, j, "mix"))) < mix.lmbda
          for i, j in slots]
    idx_on = [k for k, f in enumerate(on) if f]
    outs = dict(zip(idx_on, backend.sample("student", [ps[k] for k in idx_on], [max_new] * len(idx_on),
                                           [seeds[k] for k in idx_on], temperature, top_p)))
    comps = []
    for k in range(len(slots)):
        if on[k]:
            t, lp, fin = outs[k]
            comps.append(Completion(ps[k], t, lp, [False] * len(t), fin))
        else:  # off-policy: the dataset answer; no behaviour policy, so behav_logp is a placeholder 0
            ref = refs[k][:max_new]  # a reference cut here has lost its EOS: not finished
            comps.append(Completion(ps[k], ref, [0.0] * len(ref), [True] * len(ref), len(refs[k]) <= max_new))
    return comps


def _blend(backend, ps, seeds, blend: Blend, step, max_new, temperature, top_p):
    from tropd.rollout.blend import blend_logprobs, trb_eps

    eps = trb_eps(step, blend.eps0, blend.anneal_steps)
    if eps <= 0:
        res = backend.sample("student", ps, [max_new] * len(ps), seeds, temperature, top_p)
        return _plain(res, ps, False), {"trb_eps": 0.0}
    bs: list[float] = []

    def combine(logps: list[torch.Tensor]) -> torch.Tensor:
        mu, b = blend_logprobs(logps[0], logps[1], eps)
        bs.append(float(b.mean()))
        return mu

    res = backend.sample_blend(ps, [max_new] * len(ps), seeds, combine, temperature, top_p)
    return _plain(res, ps, False), {"trb_eps": eps, "trb_b": sum(bs) / max(len(bs), 1)}
