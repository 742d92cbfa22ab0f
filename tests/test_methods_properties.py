"""Property tests of every method preset on tiny random tensors (CPU, float64, a few seconds).

- every registered method runs on random TokenStats holding only what it declares in `needs`, giving a
  finite (B, T) loss and finite gradients, in every stage of its schedule;
- student == teacher: zero loss and zero gradient wherever the math says so (exactly, or in exact
  expectation over the sampled token for the NLL terms);
- masked positions change nothing, through the shared reducer;
- autograd matches finite differences (torch.autograd.gradcheck, float64);
- sampled estimators give the full-vocabulary gradient in expectation: OPD's K1 path (reverse KL),
  TRB's K1 path with the importance ratio against the blend, JSD's sampled part, and TrOPD's
  Bernoulli-masked mixture of K1 and top-k FKL, each within 5 standard errors at a fixed seed;
- the Bernoulli trust mask gives E[M log r] = r log r (r < 1).
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import reference as ref
import torch

from tropd.rollout.blend import blend_logprobs
from tropd.config import REPO_ROOT, load_config
from tropd.reduce import reduce_loss, step_denominator
from tropd.catalog import all_methods, get_method
from tropd.registry import StepContext, TokenStats
from tropd.infra.seeding import row_seeds

PRESETS = sorted(p.stem for p in (REPO_ROOT / "configs" / "methods").glob("*.yaml"))
TOTAL_STEPS = 10
DT = torch.float64


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(1)


def preset(name: str):
    """(Method, parsed params) of a preset YAML."""
    cfg = load_config(REPO_ROOT / "configs" / "tiny.yaml", method=name)
    m = get_method(cfg.method.name)
    return m, m.parse_params(cfg.method.params)


def ctx(s: TokenStats, step: int = 0, seed: int = 0) -> StepContext:
    B = s.mask_BT.shape[0]
    return StepContext(step, TOTAL_STEPS, row_seeds(seed, step, torch.arange(B), torch.zeros(B), "method"))


def stage_steps(method) -> list[int]:
    """Steps covering every stage of a method's schedule (first and last step)."""
    return [0, TOTAL_STEPS - 1]


def raw_inputs(B=3, T=6, V=7, seed=0, same=False, teacher_prefix=True) -> dict:
    """Random logits, sampled tokens, padding, a teacher prefix in row 0, behaviour-log-prob noise."""
    g = torch.Generator().manual_seed(seed)
    zt = torch.randn(B, T, V, generator=g, dtype=DT) * 2
    zs = zt.clone() if same else torch.randn(B, T, V, generator=g, dtype=DT) * 2
    tokens = torch.multinomial(zs.softmax(-1).view(-1, V), 1, generator=g).view(B, T)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, T - 2:] = False
    mask[B - 1, T - 1:] = False
    from_teacher = torch.zeros(B, T, dtype=torch.bool)
    if teacher_prefix:
        from_teacher[0, :2] = True
    # Rollouts one update old (rho != 1), except in the student == teacher tests.
    noise = torch.zeros(B, T, dtype=DT) if same else 0.1 * torch.randn(B, T, generator=g, dtype=DT)
    return {"zs": zs, "zt": zt, "tokens": tokens, "mask": mask, "from_teacher": from_teacher, "noise": noise}


def stats_from(raw: dict, k=4, needs=None):
    """(TokenStats, student-logit leaf) from raw inputs; teacher tokens carry the teacher's log-prob."""
    zs = raw["zs"].clone().requires_grad_(True)
    s = ref.make_stats(zs, raw["zt"], raw["tokens"], k, mask_BT=raw["mask"],
                       from_teacher_BT=raw["from_teacher"])
    s.behav_logp_BT = torch.where(raw["from_teacher"], s.teacher_logp_BT, s.logp_BT.detach() + raw["noise"])
    if needs is not None:
        if "topk" not in needs:
            s.teacher_topk_ids_BTK = s.teacher_topk_logp_BTK = s.student_topk_logp_BTK = None
        if "entropy" not in needs:
            s.student_entropy_BT = s.teacher_entropy_BT = None
        if "full_logits" not in needs:
            s.student_logits_BTV = s.teacher_logits_BTV = None
    return s, zs


def declared(m) -> set[str]:
    """What the loop gives a method, by its `scores` declaration: the teacher pass brings top-k and the
    entropies; full logits only where declared; no teacher pass, none of them."""
    if not m.scores.teacher:
        return set()
    return {"topk", "entropy"} | ({"full_logits"} if m.scores.full_logits else set())


def random_stats(B=3, T=6, V=7, k=4, seed=0, same=False, needs=None, teacher_prefix=True):
    return stats_from(raw_inputs(B, T, V, seed, same, teacher_prefix), k, needs)


# ----------------------------------------------------------------------------- runs and shapes


def test_every_method_has_a_preset_and_runs_on_what_it_declares():
    methods = all_methods()
    used = {preset(p)[0].name for p in PRESETS}
    assert set(methods) == used, "every registered method needs a preset and vice versa"
    for name, m in methods.items():
        params = m.parse_params({})
        for step in stage_steps(m):
            s, zs = random_stats(needs=declared(m), seed=step)
            out = m.fn(s, params, ctx(s, step))
            assert out.loss_BT.shape == s.shape, name
            assert torch.isfinite(out.loss_BT[s.mask_BT]).all(), name
            for key, val in out.metrics.items():
                assert val.dim() == 0 or val.shape == s.shape, (name, key)
                assert torch.isfinite(val[s.mask_BT] if val.dim() else val).all(), (name, key)
            loss = reduce_loss(out.loss_BT, s.mask_BT, "token", step_denominator(s.mask_BT, "token"))
            loss.backward()
            assert zs.grad is not None and torch.isfinite(zs.grad).all(), name
            assert zs.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------- student == teacher


NONZERO_AT_TOPK = {"topk_fkl", "jsd"}  # unnormalised truncated FKL: biased away from pi_S = pi_T


@pytest.mark.parametrize("name", [p for p in PRESETS if p != "seqkd"])
@pytest.mark.parametrize("k", [7, 4])
def test_zero_loss_and_gradient_when_student_equals_teacher(name, k):
    m, params = preset(name)
    for step in stage_steps(m):
        s, zs = random_stats(same=True, k=k, teacher_prefix=False, seed=step)
        out = m.fn(s, params, ctx(s, step))
        loss = reduce_loss(out.loss_BT, s.mask_BT, "token", step_denominator(s.mask_BT, "token"))
        loss.backward()
        if k < 7 and m.name in NONZERO_AT_TOPK:
            # The documented truncation bias: zero value, but a gradient pushing mass onto the top-k.
            assert zs.grad.abs().max() > 1e-3
            continue
        assert abs(float(loss.detach())) < 1e-12, (name, step)
        assert zs.grad.abs().max() < 1e-12, (name, step)


@pytest.mark.parametrize("name", ["seqkd", "tropd"])
def test_teacher_token_nll_has_zero_expected_gradient_when_student_equals_teacher(name):
    # Exact expectation over x ~ pi_T: one position per vocabulary entry, weighted by pi_T(x).
    m, params = preset(name)
    V = 6
    zt = torch.randn(1, 1, V, dtype=DT).expand(1, V, V).contiguous()
    zs = zt.clone().requires_grad_(True)
    s = ref.make_stats(zs, zt, torch.arange(V)[None], V, from_teacher_BT=torch.ones(1, V, dtype=torch.bool))
    out = m.fn(s, params, ctx(s))
    (out.loss_BT * s.teacher_logp_BT.exp()).sum().backward()
    # Every position holds the same logits: the expected gradient is the sum over positions.
    assert zs.grad.sum(1).abs().max() < 1e-12
    assert zs.grad.abs().max() > 1e-7  # while each single sample's gradient is not zero


# ----------------------------------------------------------------------------- masking


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("norm", ["token", "sequence"])
def test_masked_positions_change_nothing(name, norm):
    m, params = preset(name)
    for step in stage_steps(m):
        raw = raw_inputs(seed=3)
        other = raw_inputs(seed=4)  # fresh logits, tokens, prefix flags, noise ...
        keep = raw["mask"]
        mixed = {key: (v if key == "mask" else
                       torch.where(keep.view(*keep.shape, *([1] * (v.dim() - 2))), v, other[key]))
                 for key, v in raw.items()}  # ... wherever the mask is off
        losses, grads = [], []
        for r in (raw, mixed):
            s, zs = stats_from(r)
            out = m.fn(s, params, ctx(s, step))
            loss = reduce_loss(out.loss_BT, keep, norm, step_denominator(keep, norm))
            loss.backward()
            losses.append(float(loss.detach()))
            grads.append(zs.grad)
        assert losses[1] == pytest.approx(losses[0], rel=1e-12, abs=1e-14), (name, step)
        assert torch.allclose(grads[1], grads[0], rtol=1e-10, atol=1e-14), (name, step)
        assert grads[1][~keep].abs().max() == 0, (name, step)


# ----------------------------------------------------------------------------- finite differences


@pytest.mark.parametrize("name", PRESETS)
def test_gradcheck(name):
    m, params = preset(name)
    for step in stage_steps(m):
        s, _ = random_stats(B=2, T=4, V=5, k=3, seed=7)
        leaves = [s.logp_BT.detach().clone().requires_grad_(True),
                  s.student_topk_logp_BTK.detach().clone().requires_grad_(True),
                  s.student_logits_BTV.detach().clone().requires_grad_(True)]

        def f(logp, topk, logits, s=s, step=step):
            s2 = dataclasses.replace(s, logp_BT=logp, student_topk_logp_BTK=topk, student_logits_BTV=logits)
            return m.fn(s2, params, ctx(s2, step)).loss_BT  # the same seeds every call

        assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-6, rtol=1e-5), (name, step)


# ----------------------------------------------------------------------------- expectations


def per_sample_grads(method, params, z_S, z_T, tokens_N, k, behav_logp_N=None, step=0, seed=0):
    """Gradient w.r.t. the student logits of each sampled token's loss, (N, V)."""
    N, V = len(tokens_N), z_S.shape[-1]
    Z = z_S.expand(1, N, V).clone().requires_grad_(True)
    s = ref.make_stats(Z, z_T.expand(1, N, V), tokens_N[None], k)
    if behav_logp_N is not None:
        s.behav_logp_BT = behav_logp_N[None]
    out = method.fn(s, params, ctx(s, step, seed))
    out.loss_BT.sum().backward()
    return Z.grad[0]


def assert_within_se(G_NV: torch.Tensor, expected_V: torch.Tensor, n_se: float = 5.0):
    mean, se = G_NV.mean(0), G_NV.std(0) / G_NV.shape[0] ** 0.5
    assert ((mean - expected_V).abs() <= n_se * se + 1e-9).all(), (mean, expected_V, se)


def _pair(V=6, seed=11):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(V, generator=g, dtype=DT) * 1.5, torch.randn(V, generator=g, dtype=DT) * 1.5, g


def test_k1_path_gives_reverse_kl_gradient_in_expectation():
    z_S, z_T, g = _pair()
    m, params = preset("opd")
    x = torch.multinomial(z_S.softmax(-1), 20000, replacement=True, generator=g)
    G = per_sample_grads(m, params, z_S, z_T, x, k=3)
    assert_within_se(G, ref.rkl_grad(z_S, z_T))
    # and the reference is not trivially zero
    assert ref.rkl_grad(z_S, z_T).abs().max() > 0.05


def test_trb_importance_sampled_k1_gives_reverse_kl_gradient_under_the_blend():
    z_S, z_T, g = _pair(seed=12)
    m, params = preset("trb")
    mu_logp, b = blend_logprobs(z_S.log_softmax(-1)[None], z_T.log_softmax(-1)[None], 0.05)
    assert 0 < float(b) < 1
    x = torch.multinomial(mu_logp[0].exp(), 20000, replacement=True, generator=g)
    G = per_sample_grads(m, params, z_S, z_T, x, k=3, behav_logp_N=mu_logp[0][x])
    assert_within_se(G, ref.rkl_grad(z_S, z_T))


@pytest.mark.parametrize("beta", [0.5, 0.2])
def test_jsd_gives_generalized_jsd_gradient_in_expectation_at_full_k(beta):
    z_S, z_T, g = _pair(seed=13)
    m = get_method("jsd")
    params = m.parse_params({"beta": beta})
    x = torch.multinomial(z_S.softmax(-1), 20000, replacement=True, generator=g)
    G = per_sample_grads(m, params, z_S, z_T, x, k=len(z_S))
    assert_within_se(G, ref.normalized_jsd_grad(z_S, z_T, beta))


@pytest.mark.parametrize("k", [6, 3])
def test_tropd_expected_gradient_matches_full_vocabulary_reference(k):
    z_S, z_T, g = _pair(seed=14)
    m = get_method("tropd")
    params = m.parse_params({"guidance": False})
    x = torch.multinomial(z_S.softmax(-1), 40000, replacement=True, generator=g)
    G = per_sample_grads(m, params, z_S, z_T, x, k=k, seed=5)
    assert_within_se(G, ref.tropd_expected_grad(z_S, z_T, k))


@pytest.mark.parametrize("r", [0.02, 0.2, 0.5, 0.9, 1.0, 3.0])
def test_bernoulli_trust_gives_r_log_r(r):
    m = get_method("tropd")
    params = m.parse_params({"outlier_mode": "zero", "guidance": False})
    N = 40000
    logp = torch.full((1, N), -1.0, dtype=DT)
    zeros_BTK = torch.zeros(1, N, 1, dtype=DT)
    ones_BT = torch.ones(1, N, dtype=torch.bool)
    s = TokenStats(mask_BT=ones_BT, from_teacher_BT=~ones_BT,
                   logp_BT=logp, behav_logp_BT=logp, teacher_logp_BT=logp + math.log(r),
                   teacher_topk_logp_BTK=zeros_BTK, student_topk_logp_BTK=zeros_BTK)
    out = m.fn(s, params, ctx(s, seed=21))
    p = min(r, 1.0)
    assert torch.allclose(out.metrics["trust"], torch.tensor(p, dtype=DT))
    # loss = -M log r (rho = 1), so -mean(loss) estimates E[M log r] = min(r, 1) log r (= r log r for r < 1).
    est = -float(out.loss_BT.mean())
    expected = p * math.log(r)
    se = abs(math.log(r)) * (p * (1 - p) / N) ** 0.5
    assert abs(est - expected) <= 5 * se + 1e-12, (est, expected, se)
    if r < 1:  # the expected K1 weight is bounded below by -1/e
        assert expected >= -1 / math.e
