"""Unit tests of each method's formula against the slow references in tests/reference.py, the TRB blend,
the guidance schedule, parameter checks, presets and the `tropd methods` listing.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import reference as ref
import torch

from tropd.rollout.blend import blend_logprobs, trb_eps
from tropd.config import REPO_ROOT, ConfigError, load_config
from tropd.methods.guidance import max_prefix_len, sample_prefix_len
from tropd.catalog import all_methods, bind, get_method
from tropd.registry import StepContext, TokenStats
from tropd.infra.seeding import row_seeds

DT = torch.float64
TINY = REPO_ROOT / "configs" / "tiny.yaml"
REQUIRED_PRESETS = ["opd", "tropd", "tropd_mask", "tropd_clip", "fkl_outlier", "mask_outlier", "clip_outlier",
                    "topk_fkl", "jsd", "entropy_opd", "eopd", "reopold", "reopold_2stage", "trb", "gkd",
                    "seqkd", "erpd"]


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(1)


def ctx(s, step=0, total=10, seed=0):
    B = s.mask_BT.shape[0]
    # step-free seeds: the same draws at every step
    return StepContext(step, total, row_seeds(seed, 0, torch.arange(B), torch.zeros(B), "method"))


def run(name, s, step=0, total=10, seed=0, **params):
    m = get_method(name)
    return m.fn(s, m.parse_params(params), ctx(s, step, total, seed))


def logits(B=2, T=5, V=6, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, V, generator=g, dtype=DT) * scale,
            torch.randn(B, T, V, generator=g, dtype=DT) * scale, g)


def stats(k=6, seed=0, B=2, T=5, V=6, **kw):
    zs, zt, g = logits(B, T, V, seed)
    zs.requires_grad_(True)
    tokens = torch.multinomial(zs.detach().softmax(-1).view(-1, V), 1, generator=g).view(B, T)
    return ref.make_stats(zs, zt, tokens, k, **kw), zs


def grad_of(loss_BT, z):
    (g,) = torch.autograd.grad(loss_BT.sum(), z, retain_graph=True)
    return g


# ----------------------------------------------------------------------------- top-k FKL


def test_topk_fkl_equals_full_forward_kl_when_k_is_the_vocabulary():
    s, _ = stats(k=6)
    out = run("topk_fkl", s).loss_BT
    assert torch.allclose(out, ref.forward_kl(s.student_logits_BTV, s.teacher_logits_BTV), atol=1e-12)


def test_topk_fkl_matches_the_truncated_reference_and_renormalised_is_a_kl():
    s, _ = stats(k=3)
    assert torch.allclose(run("topk_fkl", s).loss_BT,
                          ref.topk_forward_kl(s.student_logits_BTV, s.teacher_logits_BTV, 3), atol=1e-12)
    renorm = run("topk_fkl", s, renormalize=True).loss_BT
    assert (renorm >= -1e-12).all()


# ----------------------------------------------------------------------------- GKD


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_gkd_is_the_normalised_generalised_jsd(beta):
    s, _ = stats()
    expected = ref.generalized_jsd(s.student_logits_BTV, s.teacher_logits_BTV, beta) / (beta * (1 - beta))
    assert torch.allclose(run("gkd", s, beta=beta).loss_BT, expected, atol=1e-10)


def test_gkd_endpoints_are_forward_and_reverse_kl_and_continuous():
    s, zs = stats()
    fkl = ref.forward_kl(s.student_logits_BTV, s.teacher_logits_BTV)
    rkl = ref.reverse_kl(s.student_logits_BTV, s.teacher_logits_BTV)
    at0, at1 = run("gkd", s, beta=0.0).loss_BT, run("gkd", s, beta=1.0).loss_BT
    assert torch.allclose(at0, fkl, atol=1e-12) and torch.allclose(at1, rkl, atol=1e-12)
    near0, near1 = run("gkd", s, beta=1e-9).loss_BT, run("gkd", s, beta=1 - 1e-9).loss_BT
    assert torch.allclose(near0, at0, atol=1e-5) and torch.allclose(near1, at1, atol=1e-5)
    # gradients are continuous too
    assert torch.allclose(grad_of(near0, zs), grad_of(run("gkd", s, beta=0.0).loss_BT, zs), atol=1e-4)
    assert torch.allclose(grad_of(near1, zs), grad_of(run("gkd", s, beta=1.0).loss_BT, zs), atol=1e-4)


@pytest.mark.parametrize("beta", [0.0, 1e-3, 0.5, 1.0])
def test_gkd_has_no_nan_on_extreme_float32_logits(beta):
    zs = torch.tensor([[[60.0, -60.0, 0.0, -1e4]]], requires_grad=True)
    zt = torch.tensor([[[-60.0, 60.0, -1e4, 0.0]]])
    s = ref.make_stats(zs, zt, torch.tensor([[0]]), 2)
    loss = run("gkd", s, beta=beta).loss_BT
    assert torch.isfinite(loss).all() and torch.isfinite(grad_of(loss, zs)).all()


# ----------------------------------------------------------------------------- JSD (TrOPD Eq. 4)


@pytest.mark.parametrize("k", [6, 3])
def test_jsd_endpoints_are_forward_and_reverse_kl_and_continuous(k):
    s, zs = stats(k=k)
    s.behav_logp_BT = s.logp_BT.detach() + 0.1  # off-policy: the importance ratio matters too
    # beta = 1 is OPD plus the truncation remainder sum_topk (pi_T - pi_S), zero for k = V
    remainder = (s.teacher_topk_logp_BTK.exp() - s.student_topk_logp_BTK.exp()).sum(-1)
    assert (remainder.abs().max() < 1e-12) == (k == 6)
    for beta, other in ((0.0, run("topk_fkl", s).loss_BT), (1.0, run("opd", s).loss_BT + remainder)):
        a = run("jsd", s, beta=beta).loss_BT
        assert torch.allclose(a, other, atol=1e-12)
        assert torch.allclose(grad_of(a, zs), grad_of(other, zs), atol=1e-12)
    for beta, end in ((1e-9, 0.0), (1 - 1e-9, 1.0)):
        near, at = run("jsd", s, beta=beta).loss_BT, run("jsd", s, beta=end).loss_BT
        assert torch.allclose(near, at, atol=1e-5)
        assert torch.allclose(grad_of(near, zs), grad_of(at, zs), atol=1e-5)


# ----------------------------------------------------------------------------- TrOPD family


def two_token_stats(log_ratio: float, from_teacher=False):
    """One sampled token with log pi_T - log pi_S = log_ratio, on-policy, plus top-k entries."""
    logp = torch.tensor([[-1.0]], dtype=DT, requires_grad=True)
    return TokenStats(
        mask_BT=torch.ones(1, 1, dtype=torch.bool), from_teacher_BT=torch.tensor([[from_teacher]]),
        logp_BT=logp, behav_logp_BT=logp.detach(), teacher_logp_BT=logp.detach() + log_ratio,
        teacher_topk_logp_BTK=torch.log(torch.tensor([[[0.6, 0.3]]], dtype=DT)),
        student_topk_logp_BTK=torch.log(torch.tensor([[[0.2, 0.5]]], dtype=DT)).requires_grad_(True),
    ), logp


def static_loss(s, mode: str) -> float:
    return float(run("tropd", s, trust_mode="static", outlier_mode=mode, guidance=False).loss_BT.detach())


def test_static_mask_and_clip_outliers():
    tau = math.log(0.25)
    s, _ = two_token_stats(-3.0)  # an outlier: R = -3 < tau
    assert static_loss(s, "zero") == 0.0
    assert static_loss(s, "clip") == pytest.approx(-tau)  # -rho * max(R, tau), rho = 1
    assert static_loss(s, "fkl") == pytest.approx(0.6 * math.log(0.6 / 0.2) + 0.3 * math.log(0.3 / 0.5))
    s, _ = two_token_stats(-1.0)  # inside the region: plain K1
    for mode in ("zero", "clip", "fkl"):
        assert static_loss(s, mode) == pytest.approx(1.0)


def test_guidance_tokens_get_only_the_beta_nll():
    s, logp = two_token_stats(-8.0, from_teacher=True)
    out = run("tropd", s, beta=0.001)
    assert float(out.loss_BT.detach()) == pytest.approx(0.001)  # -0.001 * log pi_S, log pi_S = -1
    assert float(grad_of(out.loss_BT, logp)) == pytest.approx(-0.001)
    assert float(out.metrics["prefix_tokens"]) == 1.0


def test_bernoulli_draws_follow_the_row_seeds_and_trust_logp():
    s, _ = stats(k=3, B=4, T=50)
    a = run("tropd", s, seed=1, guidance=False).metrics["outlier"]
    assert torch.equal(a, run("tropd", s, seed=1, guidance=False).metrics["outlier"])
    assert not torch.equal(a, run("tropd", s, seed=2, guidance=False).metrics["outlier"])
    # A row's draws depend on its own seed only: rows 1 and 3 in a micro-batch of their own (or on
    # another data-parallel process) get the mask they get in the whole batch.
    m = get_method("tropd")
    params = m.parse_params({"guidance": False})
    full = ctx(s, seed=1)
    rows = torch.tensor([1, 3])
    sub = dataclasses.replace(s, **{f.name: getattr(s, f.name)[rows] for f in dataclasses.fields(s)
                                   if getattr(s, f.name) is not None})
    part = m.fn(sub, params, StepContext(0, 10, full.seed_B[rows])).metrics["outlier"]
    assert torch.equal(part, a[rows])
    s.behav_logp_BT = s.logp_BT.detach() - 5.0  # behaviour far more confident than pi_S now
    p_beh = run("tropd", s, guidance=False).metrics["trust"]
    p_cur = run("tropd", s, guidance=False, trust_logp="current").metrics["trust"]
    assert torch.allclose(p_beh, torch.exp((s.teacher_logp_BT - s.behav_logp_BT).clamp(max=0)))
    assert torch.allclose(p_cur, torch.exp((s.teacher_logp_BT - s.logp_BT.detach()).clamp(max=0)))


# ----------------------------------------------------------------------------- entropy / reward filters


def test_entropy_opd_keeps_the_top_fraction_of_valid_tokens():
    s, _ = stats(B=4, T=10)
    s.mask_BT[3, 5:] = False
    out = run("entropy_opd", s, top_frac=0.2)
    keep = out.metrics["trust"].bool()
    n = int(s.mask_BT.sum())
    assert int(keep.sum()) == math.ceil(0.2 * n) and not (keep & ~s.mask_BT).any()
    assert s.student_entropy_BT[keep].min() >= s.student_entropy_BT[s.mask_BT & ~keep].max()
    opd = run("opd", s).loss_BT
    assert torch.equal(out.loss_BT, torch.where(keep, opd, torch.zeros_like(opd)))
    keep_t = run("entropy_opd", s, entropy_source="teacher").metrics["trust"].bool()
    assert s.teacher_entropy_BT[keep_t].min() >= s.teacher_entropy_BT[s.mask_BT & ~keep_t].max()


def test_reopold_clips_the_reward_at_the_mixture_floor():
    s, _ = stats(B=4, T=10)
    floor = math.log(0.2 / 0.8)
    R = s.teacher_logp_BT - s.behav_logp_BT
    assert (R < floor).any() and (R > floor).any()
    assert torch.allclose(run("reopold", s).loss_BT, -R.clamp_min(floor))


def test_reopold_two_stage_switches_from_reward_mask_to_entropy_mask():
    s, _ = stats(B=4, T=10)
    floor = math.log(0.2 / 0.8)
    R = s.teacher_logp_BT - s.behav_logp_BT
    early = run("reopold_2stage", s, step=4, total=10)  # round(0.5 * 10) = 5: steps 0-4 explore
    assert torch.equal(early.metrics["kept"].bool(), R >= floor) and float(early.metrics["stage"]) == 1
    late = run("reopold_2stage", s, step=5, total=10)
    keep = late.metrics["kept"].bool()
    assert float(late.metrics["stage"]) == 2 and int(keep.sum()) == math.ceil(0.5 * 40)
    assert s.student_entropy_BT[keep].min() >= s.student_entropy_BT[~keep].max()
    assert torch.allclose(late.loss_BT, torch.where(keep, -R.clamp_min(floor), torch.zeros_like(R)))


def test_eopd_adds_fkl_where_teacher_entropy_is_high():
    s, _ = stats(k=3, B=4, T=10)
    out = run("eopd", s, tau=1.0)
    gate = s.teacher_entropy_BT > 1.0
    assert gate.any() and (~gate).any()
    fkl = run("topk_fkl", s, renormalize=True).loss_BT
    expected = run("opd", s).loss_BT + torch.where(gate, fkl, torch.zeros_like(fkl))
    assert torch.allclose(out.loss_BT, expected)


# ----------------------------------------------------------------------------- SeqKD, ERPD


def test_seqkd_is_the_nll():
    s, _ = stats()
    assert torch.equal(run("seqkd", s).loss_BT, -s.logp_BT)


def test_erpd_stages():
    s, zs = stats(k=3, B=4, T=10)
    assert float(run("erpd", s, step=4, total=10).metrics["stage"]) == 1.0
    stage2 = run("erpd", s, step=5, total=10, seed=3)
    tropd = run("tropd", s, seed=3, trust_mode="bernoulli", outlier_mode="zero", guidance=False)
    assert float(stage2.metrics["stage"]) == 2.0 and torch.equal(stage2.loss_BT, tropd.loss_BT)
    # stage 1: loose PPO clip; a token whose probability doubled with a positive reward stops moving
    s.behav_logp_BT = s.logp_BT.detach() - math.log(2.5)
    s.teacher_logp_BT = s.logp_BT.detach() + 1.0  # R = log pi_T - log pi_old > 0
    g = grad_of(run("erpd", s, step=0, total=10).loss_BT, zs)
    assert g.abs().max() == 0
    g = grad_of(run("erpd", s, step=0, total=10, stage1_clip_eps=float("inf")).loss_BT, zs)
    assert g.abs().max() > 0


# ----------------------------------------------------------------------------- TRB blend


def test_blend_respects_the_budget_and_is_maximal():
    g = torch.Generator().manual_seed(5)
    ls = (torch.randn(40, 7, generator=g, dtype=DT) * 2).log_softmax(-1)
    lt = (torch.randn(40, 7, generator=g, dtype=DT) * 2).log_softmax(-1)
    # the first five teachers lie within every budget below of their student
    lt[:5] = (ls[:5] + 0.01 * torch.randn(5, 7, generator=g, dtype=DT)).log_softmax(-1)
    for eps in (0.001, 0.02, 0.3):
        mu, b = blend_logprobs(ls, lt, eps)
        assert torch.allclose(mu.exp().sum(-1), torch.ones(40, dtype=DT))
        for i in range(40):
            ps, pt = ref.probs(ls[i]), ref.probs(lt[i])
            assert ref.kl(ref.probs(mu[i]), ps) <= eps + 1e-6
            assert float(b[i]) == pytest.approx(ref.blend_b(ps, pt, eps), abs=1e-5)
            if ref.kl(pt, ps) <= eps:
                assert float(b[i]) == 1.0 and torch.allclose(mu[i], lt[i])
            else:  # maximal: a slightly larger b breaks the budget
                assert ref.blend_kl(ps, pt, min(float(b[i]) + 1e-4, 1.0)) > eps
        assert (b[:5] == 1).all()
    mu, b = blend_logprobs(ls, lt, 0.0)
    assert (b == 0).all() and torch.allclose(mu, ls)


def test_blend_handles_zero_probability_tokens_and_float32():
    ls = torch.tensor([[0.0, -math.inf, -1.0, -2.0]]).log_softmax(-1)
    lt = torch.tensor([[-math.inf, 0.0, -1.0, -3.0]]).log_softmax(-1)
    # Any 0 < b < 1 drops token 0 (the teacher's zero), which costs ~1.1 nats of KL(mu || pi_S) at once.
    assert float(blend_logprobs(ls, lt, 0.05)[1]) == 0.0
    mu, b = blend_logprobs(ls, lt, 2.0)
    assert 0 < float(b) < 1 and not torch.isnan(mu).any()
    assert mu[0, 0] == -math.inf and mu[0, 1] == -math.inf  # outside one support: outside the blend
    assert mu.dtype == torch.float32 and mu.exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_trb_eps_anneals_linearly_to_zero():
    assert trb_eps(0, 0.02, 50) == 0.02
    assert trb_eps(25, 0.02, 50) == pytest.approx(0.01)
    assert trb_eps(50, 0.02, 50) == 0.0 and trb_eps(80, 0.02, 50) == 0.0
    assert trb_eps(0, 0.02, 0) == 0.0


# ----------------------------------------------------------------------------- guidance schedule


def test_cosine_prefix_schedule_end_points():
    lens = [max_prefix_len(s, 100, 48) for s in range(100)]
    assert lens[0] == 48 and lens[-1] == 0
    assert all(a >= b for a, b in itertools.pairwise(lens))
    assert lens[50] == pytest.approx(24, abs=1)
    half = [max_prefix_len(s, 101, 48, anneal_frac=0.5) for s in range(101)]
    assert half[0] == 48 and half[50] == 0 and max(half[50:]) == 0
    assert max_prefix_len(0, 100, 48, anneal_frac=0.0) == 0
    assert max_prefix_len(0, 1, 48) == 48


def test_prefix_length_rules():
    g = torch.Generator().manual_seed(0)
    assert sample_prefix_len(20, 30, "fixed", g) == 20
    assert sample_prefix_len(20, 7, "fixed", g) == 7  # teacher finished early: its whole response
    assert sample_prefix_len(0, 7, "uniform", g) == 0
    draws = [sample_prefix_len(4, 100, "uniform", g) for _ in range(2000)]
    assert set(draws) == {0, 1, 2, 3, 4}
    assert all(abs(draws.count(v) / 2000 - 0.2) < 0.05 for v in range(5))
    with pytest.raises(ValueError):
        sample_prefix_len(4, 10, "linear", g)


# ----------------------------------------------------------------------------- configs and listing


@pytest.mark.parametrize("preset", REQUIRED_PRESETS)
def test_every_preset_loads(preset):
    cfg = load_config(TINY, method=preset)
    get_method(cfg.method.name).parse_params(cfg.method.params)


def test_registered_methods_are_listed_by_the_cli(capsys):
    from tropd.cli import main

    assert main(["methods"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if " -> " in line]
    listed = {r[0] for r in rows}  # every name --method accepts ...
    assert listed == {p.stem for p in (REPO_ROOT / "configs" / "methods").glob("*.yaml")}
    assert {"opd", "tropd", "topk_fkl", "jsd", "entropy_opd", "eopd", "reopold", "reopold_2stage", "trb",
            "gkd", "seqkd", "erpd", "tropd_mask", "tropd_clip", "fkl_outlier", "mask_outlier",
            "clip_outlier"} <= listed
    assert {r[2] for r in rows} == set(all_methods())  # ... reaches every registered function
    by_name = {r[0]: r for r in rows}
    assert by_name["clip_outlier"][2] == "tropd" and "outlier_mode=clip," in by_name["clip_outlier"]
    for m in all_methods().values():
        assert m.description and m.reference and m.fn.__module__ and m.behaviour


@pytest.mark.parametrize("preset,key,value", [
    ("tropd", "guided_fraction", 1.5), ("tropd", "anneal_frac", -0.1), ("tropd", "beta", -1.0),
    ("jsd", "beta", 1.5), ("gkd", "beta", -0.5), ("gkd", "lmbda", 2.0), ("trb", "eps0", -0.1),
    ("trb", "anneal_steps", -1), ("entropy_opd", "top_frac", 0.0), ("reopold", "lam", 1.0),
    ("reopold_2stage", "switch_frac", 1.5), ("eopd", "tau", -1.0), ("erpd", "stage1_frac", 2.0),
    ("erpd", "stage1_clip_eps", 0.0),
])
def test_bad_params_name_their_key(preset, key, value):
    with pytest.raises(ConfigError, match=rf"method\.params\.{key}"):
        bind(load_config(TINY, method=preset, overrides=[f"method.params.{key}={value}"]))


def test_declared_behaviour_schedule_and_scores():
    """What each method declares to the core: the loop and the rollout code read only these."""
    from baselines.erpd import ERPDStages
    from tropd.registry import OneStage, Scores
    from tropd.rollout.policies import Blend, DatasetMix, Guided, Student, Teacher

    def behaviour(name, raw=None):
        m = get_method(name)
        return m.behaviour(m.parse_params(raw or {}))

    assert behaviour("tropd") == Guided(fraction=0.5, rule="uniform", anneal_frac=1.0, unit="tokens")
    assert behaviour("tropd", {"guidance": False}) == Student() == behaviour("opd") == behaviour("erpd")
    assert behaviour("tropd", {"prefix_unit": "teacher_frac", "prefix_rule": "fixed"}).unit == "teacher_frac"
    assert behaviour("gkd") == DatasetMix(0.5) and behaviour("gkd", {"lmbda": 0.2}) == DatasetMix(0.2)
    assert behaviour("trb") == Blend(0.02, 50) and behaviour("seqkd") == Teacher()
    assert get_method("erpd").schedule is ERPDStages and ERPDStages.multi_stage
    assert {n for n, m in all_methods().items() if m.schedule is not OneStage} == {"erpd"}
    assert get_method("gkd").scores == Scores(teacher=True, full_logits=True)
    assert get_method("seqkd").scores == Scores(teacher=False)
    assert get_method("opd").scores == Scores()


def test_logged_rkl_is_importance_weighted_so_off_policy_rollouts_estimate_the_students_kl():
    """train.py logs rkl as masked_mean(log pi_S - log pi_T, weight pi_S/pi_behav). On tokens drawn from a
    blend (TRB's warm-up) the plain mean estimates E_mu[log pi_S/pi_T], not KL(pi_S || pi_T)."""
    from tropd.reduce import masked_mean

    g = torch.Generator().manual_seed(0)
    logp_s = torch.log_softmax(torch.tensor([2.0, 0.5, 0.0, -1.0, -2.0], dtype=DT), -1)
    logp_t = torch.log_softmax(torch.tensor([-1.0, 0.0, 1.5, 0.5, 0.0], dtype=DT), -1)
    mu = 0.5 * logp_s.exp() + 0.5 * logp_t.exp()
    exact = float((logp_s.exp() * (logp_s - logp_t)).sum())
    x = torch.multinomial(mu, 200_000, replacement=True, generator=g).view(400, 500)  # (B, T) draws from mu
    k1_BT, w_BT = (logp_s - logp_t)[x], (logp_s - mu.log())[x].exp()
    mask_BT = torch.rand(x.shape, generator=g) < 0.9
    plain, n = masked_mean(k1_BT, mask_BT)
    weighted, wsum = masked_mean(k1_BT, mask_BT, w_BT)
    assert n == float(mask_BT.sum())
    assert abs(weighted / wsum - exact) < 0.02
    assert abs(plain / n - exact) > 0.3  # what the metric logged before
    # On-policy (weights 1) it is the plain mean; masked and non-finite positions never count.
    k1_BT[~mask_BT] = float("inf")
    assert masked_mean(k1_BT, mask_BT, torch.ones_like(k1_BT)) == pytest.approx((plain, n))


def test_top_fraction_mask_keeps_exactly_ceil_frac_n_and_breaks_ties_by_position():
    from tropd.methods.terms import top_fraction_mask

    score_BT = torch.zeros(4, 25, dtype=DT)  # 100 tied scores, as the first tokens of one prompt's rollouts
    score_BT[3, 24] = 1.0
    valid_BT = torch.ones(4, 25, dtype=torch.bool)
    valid_BT[0, :2] = False  # invalid positions are never kept, whatever their score
    keep = top_fraction_mask(score_BT, valid_BT, 0.05)
    assert int(keep.sum()) == math.ceil(0.05 * 98) == 5
    assert keep[3, 24] and keep[0, 2:6].all()  # the top score, then the earliest valid tied tokens


def test_prefix_norm_separate_averages_teacher_and_student_tokens_over_their_own_counts():
    """A step with 1 teacher token and 3 student tokens (4 in all): the shared reducer divides every
    token's loss by 4; `separate` rescales so that the teacher token's sum is divided by 1 and the
    students' by 3."""
    s, _ = stats(k=3, B=1, T=4)
    s.from_teacher_BT = torch.tensor([[True, False, False, False]])
    m = get_method("tropd")
    shared = m.fn(s, m.parse_params({}), ctx(s)).loss_BT.detach()
    c = ctx(s)
    sep_ctx = StepContext(c.step, c.total_steps, c.seed_B, step_tokens=4.0, step_teacher_tokens=1.0)
    sep = m.fn(s, m.parse_params({"prefix_norm": "separate"}), sep_ctx).loss_BT.detach()
    assert sep[0, 0] == pytest.approx(4.0 * shared[0, 0])
    assert torch.allclose(sep[0, 1:], shared[0, 1:] * 4.0 / 3.0)
    # without step counts (a caller that does not give them) nothing is rescaled
    assert torch.equal(m.fn(s, m.parse_params({"prefix_norm": "separate"}), c).loss_BT.detach(), shared)
