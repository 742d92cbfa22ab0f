"""Rollout layout and seeding, and the chunked scoring path against a naive full-vocab one."""
from __future__ import annotations

import pytest
import torch

from tropd.rollout.policies import Student, DatasetMix
from tropd.methods.tropd import guided_or_student
from tropd.models import build_llama
from tropd.rollout import collect
from tropd.rollout.batch import Completion, pack
from tropd.rollout.fake import FakeBackend
from tropd.rollout.hf import HFBackend, decode
from tropd.scoring import student_forward, teacher_score

from conftest import padded

V = 23


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    t = build_llama(V, 32, 1, heads=2, eos_token_id=2, pad_token_id=0, seed=1).eval()
    s = build_llama(V, 16, 1, heads=2, eos_token_id=2, pad_token_id=0, seed=2).eval()
    return s, t


def test_pack_layout():
    comps = [Completion([5, 6, 7], [8, 9, 2], [-1.0, -2.0, -3.0], [True, False, False], True),
             Completion([5], [4], [-0.5], [False], False)]
    b = pack(comps, [(0, 0), (0, 1)], pad_id=0)
    assert b.prompt_width == 3 and b.response_width == 3
    assert b.input_ids_BL[1].tolist() == [0, 0, 5, 4, 0, 0]
    assert b.attention_mask_BL[1].tolist() == [0, 0, 1, 1, 0, 0]
    assert b.response_mask_BT.tolist() == [[True, True, True], [True, False, False]]
    assert b.from_teacher_BT[0].tolist() == [True, False, False]
    assert b.position_ids_BL()[1, 2:4].tolist() == [0, 1]


def test_decode_seeded_per_sequence(models):
    s, _ = models
    prompts = [[3, 4, 5], [6, 7], [8]]
    a = decode([s], prompts, [6, 6, 6], [11, 12, 13], {2}, 0)
    b = decode([s], prompts[::-1], [6, 6, 6], [13, 12, 11], {2}, 0)  # other batch order
    assert a == b[::-1]
    c = decode([s], prompts[:1], [6], [11], {2}, 0)  # alone in its batch
    assert c[0][0] == a[0][0]
    assert all(abs(x - y) < 1e-5 for x, y in zip(c[0][1], a[0][1]))


def test_decode_in_inference_mode_samples_what_no_grad_does(models):
    """decode runs under torch.inference_mode for speed: the same tokens and the same log-probs, bit
    for bit, as the loop under no_grad (one model, and a two-model blend as TRB decodes it)."""
    s, t = models
    prompts, seeds = [[3, 4, 5], [6, 7], [8], [9, 10, 11, 12]], [11, 12, 13, 14]
    with torch.no_grad():
        ref = decode.__wrapped__([s], prompts, [8] * 4, seeds, {2}, 0)
        ref2 = decode.__wrapped__([s, t], prompts, [8] * 4, seeds, {2}, 0, combine=lambda lps: lps[1])
    assert decode([s], prompts, [8] * 4, seeds, {2}, 0) == ref
    assert decode([s, t], prompts, [8] * 4, seeds, {2}, 0, combine=lambda lps: lps[1]) == ref2


def _per_row_prefill(monkeypatch):
    import tropd.rollout.hf as hf

    monkeypatch.setattr(hf, "distinct", lambda ps, device: (torch.arange(len(ps)), torch.arange(len(ps))))


def test_decode_shares_a_prompts_prefill(models, monkeypatch):
    """Rows with the same prompt (rollouts_per_prompt samples) prefill it once and copy its cache and
    first logits: the same samples as one prefill per row, for one model and a two-model blend, with
    prompts of unequal length (left padding) and a sample that stops at once. Log-probs within float
    rounding: on a few rows a product of other shape can take another CPU kernel (the bitwise case at
    a real profile's shapes is the next test)."""
    from tropd.rollout.batch import distinct

    s, t = models
    prompts = [[3, 4, 5]] * 3 + [[6, 7]] * 2 + [[9, 10, 11, 12]] * 3
    seeds, max_new = list(range(21, 29)), [8, 8, 0, 8, 5, 8, 8, 8]
    blend = dict(combine=lambda lps: (lps[0] + lps[1]) / 2)
    assert [x.tolist() for x in distinct(prompts, "cpu")] == [[0, 3, 5], [0, 0, 0, 1, 1, 2, 2, 2]]
    shared = decode([s], prompts, max_new, seeds, {2}, 0), decode([s, t], prompts, max_new, seeds, {2}, 0, **blend)
    _per_row_prefill(monkeypatch)
    per_row = decode([s], prompts, max_new, seeds, {2}, 0), decode([s, t], prompts, max_new, seeds, {2}, 0, **blend)
    for a, b in zip(shared, per_row):
        assert [(x[0], x[2]) for x in a] == [(x[0], x[2]) for x in b]
        assert max(abs(u - v) for x, y in zip(a, b) for u, v in zip(x[1], y[1])) < 1e-5
    assert shared[0][2] == ([], [], False) and shared[0][0][0] != shared[0][1][0]  # each its own seed


def test_decode_shares_the_prefill_bitwise_at_the_tiny_profiles_shapes(monkeypatch):
    """At the shapes the tiny tables are made with (96 wide, 2 layers, 106 rows, 16 prompts of about
    60 tokens x 4 samples, 1 thread), the shared prefill gives the per-row prefill's samples bit for bit:
    what keeps the committed tiny results reproducible after the change."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = build_llama(106, 96, 2, heads=4, eos_token_id=2, pad_token_id=0, seed=3).eval()
        g = torch.Generator().manual_seed(0)
        prompts = [torch.randint(3, 106, (int(n),), generator=g).tolist()
                   for n in torch.randint(50, 63, (16,), generator=g) for _ in range(4)]
        seeds = list(range(64))
        shared = decode([m], prompts, [6] * 64, seeds, {2}, 0)
        _per_row_prefill(monkeypatch)
        assert decode([m], prompts, [6] * 64, seeds, {2}, 0) == shared
    finally:
        torch.set_num_threads(before)


def test_decode_passes_the_kv_cache_under_the_name_the_model_takes(models):
    """transformers removes `past_key_values` from the forward in 5.40 in favour of `cache`: decode must
    not lean on the deprecated name (the log-prob test below checks that the cache is really used)."""
    import warnings

    s, _ = models
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decode([s], [[3, 4, 5]], [4], [11], {2}, 0)
    assert not [w for w in caught if "past_key_values" in str(w.message)], [str(w.message) for w in caught]


def test_a_reference_answer_cut_at_max_new_tokens_is_not_finished():
    """GKD's off-policy rows are dataset answers (ids + EOS): one longer than max_new_tokens loses
    its EOS and is a cut response (finished_frac, train.truncated=mask), one that fits is finished."""

    refs = [[5, 6, 2], [5, 6, 7, 8, 9, 10, 2]]  # 3 and 7 tokens, EOS = 2
    b = collect(DatasetMix(0.0), FakeBackend(V, {2}, 0), [[3, 4], [6, 7]], refs, 1, step=0,
                total_steps=1, seed=0, max_new_tokens=4, temperature=1.0, top_p=1.0, pad_id=0)
    assert b.from_teacher_BT[b.response_mask_BT].all()  # lmbda 0: every row is a reference
    assert b.finished_B.tolist() == [True, False]
    assert b.response_mask_BT.sum(-1).tolist() == [3, 4]


def test_behaviour_logprobs_match_scoring(models):
    s, t = models
    backend = HFBackend(s, t, {2}, 0)
    b = collect(Student(), backend, [[3, 4, 5], [6, 7]], [[1], [1]], 2, step=0, total_steps=1,
                seed=0, max_new_tokens=7, temperature=1.0, top_p=1.0, pad_id=0)
    with torch.no_grad():
        out = student_forward(s, b, None, chunk=4)
    m = b.response_mask_BT
    assert torch.allclose(out["logp_BT"][m], b.behav_logp_BT[m], atol=1e-4)


def test_guided_rollout_prefix_then_student():
    from tropd.catalog import get_method

    params = get_method("tropd").parse_params({"guided_fraction": 1.0})  # every rollout gets a prefix
    fb = FakeBackend(V, {2}, 0, low=3, eos_prob=0.0)
    b = collect(guided_or_student(params), fb, [[3, 4]] * 3, [[1]] * 3, 2, step=0, total_steps=10, seed=0,
                max_new_tokens=12, temperature=1.0, top_p=1.0, pad_id=0)
    for ft, m in zip(b.from_teacher_BT, b.response_mask_BT):
        n_t = int(ft.sum())
        assert ft[:n_t].all() and not ft[n_t:].any()  # teacher prefix first, then the student
        assert int(m.sum()) == 12
    again = collect(guided_or_student(params), fb, [[3, 4]] * 3, [[1]] * 3, 2, step=0, total_steps=10, seed=0,
                    max_new_tokens=12, temperature=1.0, top_p=1.0, pad_id=0)
    assert torch.equal(b.input_ids_BL, again.input_ids_BL)
    late = collect(guided_or_student(params), fb, [[3, 4]] * 3, [[1]] * 3, 2, step=10, total_steps=10, seed=0,
                   max_new_tokens=12, temperature=1.0, top_p=1.0, pad_id=0)
    assert not late.from_teacher_BT.any()  # the cosine schedule has reached 0


@pytest.mark.parametrize("backend", ["fake", "hf"])
def test_guided_teacher_writes_only_the_prefix_it_contributes(models, backend):
    """The teacher is asked for at most the drawn prefix length, and the rollouts equal those of a
    teacher that writes max_new_tokens and is cut afterwards (its seeds fix the tokens)."""
    from tropd.catalog import get_method

    params = get_method("tropd").parse_params({"guided_fraction": 1.0})
    inner = FakeBackend(V, {2}, 0, low=3, eos_prob=0.15) if backend == "fake" else HFBackend(*models, {2}, 0)
    asked = []

    class Recording:
        def sample(self, role, ps, max_new, seeds, t, p):
            if role == "teacher":
                asked.extend(max_new)
            return inner.sample(role, ps, max_new, seeds, t, p)

    class CutAfterwards:  # the teacher writes everything, the prefix is cut after the draw
        def sample(self, role, ps, max_new, seeds, t, p):
            if role != "teacher":
                return inner.sample(role, ps, max_new, seeds, t, p)
            full = inner.sample(role, ps, [16] * len(ps), seeds, t, p)
            return [(a[:n], b[:n], f and n >= len(a)) for (a, b, f), n in zip(full, max_new)]

    prompts = [[3, 4], [5, 6, 7], [8]]
    kw = dict(total_steps=10, seed=0, max_new_tokens=16, temperature=1.0, top_p=1.0, pad_id=0)
    for step in (2, 5):
        asked.clear()
        now = collect(guided_or_student(params), Recording(), prompts, [[1]] * 3, 3, step=step, **kw)
        assert asked and all(n <= now.meta["prefix_max"] < 16 for n in asked)
        before = collect(guided_or_student(params), CutAfterwards(), prompts, [[1]] * 3, 3, step=step, **kw)
        for field in ("input_ids_BL", "response_mask_BT", "from_teacher_BT", "behav_logp_BT", "finished_B"):
            assert torch.equal(getattr(now, field), getattr(before, field)), (step, field)
        assert now.meta == before.meta


def _naive(model, batch, ids_BTK):
    logits = model(input_ids=batch.input_ids_BL, attention_mask=batch.attention_mask_BL,
                   position_ids=batch.position_ids_BL()).logits.float()
    P, T = batch.prompt_width, batch.response_width
    logp = logits[:, P - 1 : P - 1 + T].log_softmax(-1)
    tgt = batch.input_ids_BL[:, P : P + T]
    return logp.gather(-1, tgt[..., None]).squeeze(-1), logp.gather(-1, ids_BTK), logp


def test_chunked_student_forward_matches_naive(models):
    s, t = models
    fb = FakeBackend(V, {2}, 0, low=3)
    b = collect(Student(), fb, [[3, 4, 5], [6, 7], [9, 9, 9, 9]], [[1]] * 3, 2, step=0,
                total_steps=1, seed=0, max_new_tokens=9, temperature=1.0, top_p=1.0, pad_id=0)
    sc = teacher_score(t, b, topk=5, chunk=2)
    _, t_top, t_logp = _naive(t, b, sc["teacher_topk_ids_BTK"])
    assert torch.allclose(sc["teacher_topk_logp_BTK"], t_top, atol=1e-5)
    assert torch.allclose(sc["teacher_entropy_BT"], -(t_logp.exp() * t_logp).sum(-1), atol=1e-5)
    ids = sc["teacher_topk_ids_BTK"]
    w = torch.randn(b.response_mask_BT.shape)
    s.zero_grad()
    out = student_forward(s, b, ids, chunk=2)
    ((out["logp_BT"] * w).sum() + out["student_topk_logp_BTK"].sum()).backward()
    g_chunk = [p.grad.clone() for p in s.parameters()]
    s.zero_grad()
    tok, top, _ = _naive(s, b, ids)
    ((tok * w).sum() + top.sum()).backward()
    g_naive = [p.grad.clone() for p in s.parameters()]
    assert torch.allclose(out["logp_BT"], tok, atol=1e-5)
    assert torch.allclose(out["student_topk_logp_BTK"], top, atol=1e-5)
    assert all(torch.allclose(a, c, atol=1e-5, rtol=1e-4) for a, c in zip(g_chunk, g_naive))


@pytest.mark.parametrize("max_new", [1, 9])
def test_scoring_can_share_a_prompts_forward(models, max_new):
    """train.share_prompts: rows with the same prompt run it once in teacher scoring and the student
    forward (the prompt's KV cache copied to each row, the responses on top). Every scored quantity
    and the student's gradients equal those of one pass over every row, to float rounding; also with
    one-token responses (no second pass) and prompts of unequal length."""
    s, t = models
    b = collect(Student(), FakeBackend(V, {2}, 0, low=3), [[3, 4, 5], [6, 7], [9, 9, 9, 9]], [[1]] * 3, 3,
                step=0, total_steps=1, seed=0, max_new_tokens=max_new, temperature=1.0, top_p=1.0, pad_id=0)
    assert [x.tolist() for x in b.prompt_groups()] == [[0, 3, 6], [0, 0, 0, 1, 1, 1, 2, 2, 2]]
    w = torch.randn(b.response_mask_BT.shape, generator=torch.Generator().manual_seed(4))

    def run(share):
        sc = teacher_score(t, b, topk=5, chunk=2, share_prompts=share)
        s.zero_grad()
        out = student_forward(s, b, sc["teacher_topk_ids_BTK"], chunk=2, share_prompts=share)
        ((out["logp_BT"] * w).sum() + out["student_topk_logp_BTK"].sum()).backward()
        return {**sc, **out}, [p.grad.clone() for p in s.parameters()]

    (shared, g_shared), (one, g_one) = run(True), run(False)
    assert torch.equal(shared["teacher_topk_ids_BTK"], one["teacher_topk_ids_BTK"])
    for key in one:
        assert torch.allclose(shared[key].float(), one[key].float(), atol=1e-5), key
    assert all(torch.allclose(a, c, atol=1e-5, rtol=1e-4) for a, c in zip(g_shared, g_one))


def test_shared_prompts_refuse_a_model_that_drops_the_cache():
    """Under gradient checkpointing transformers drops the KV cache: the shared path stops with an
    error instead of scoring responses that never saw their prompt (the config check refuses the
    combination first: tests/test_faults_input.py)."""
    m = build_llama(V, 16, 1, heads=2, eos_token_id=2, pad_token_id=0, seed=5)
    m.gradient_checkpointing_enable()
    m.train()
    b = collect(Student(), FakeBackend(V, {2}, 0, low=3), [[3, 4, 5]], [[1]], 2, step=0, total_steps=1, seed=0,
                max_new_tokens=4, temperature=1.0, top_p=1.0, pad_id=0)
    with pytest.raises(RuntimeError, match="kept 0 of the prompt's 3 positions"):
        student_forward(m, b, None, chunk=2, share_prompts=True)
    student_forward(m, b, None, chunk=2)  # one pass: fine


def test_sampler_matches_distribution_and_is_batch_independent():
    from tropd.rollout.hf import sample_rows

    p = torch.tensor([0.1, 0.0, 0.6, 0.3])
    n = 20000
    toks = sample_rows(p.log().expand(n, 4), torch.arange(n), t=0)
    freq = torch.bincount(toks, minlength=4).double() / n
    se = (p * (1 - p) / n).sqrt()
    assert freq[1] == 0 and ((freq - p).abs() <= 5 * se + 1e-12).all()
    one = sample_rows(p.log().expand(1, 4), torch.tensor([123]), t=7)
    many = sample_rows(p.log().expand(3, 4), torch.tensor([5, 123, 9]), t=7)
    assert one[0] == many[1]


# ----------------------------------------------------------------------------- padded output layers


def test_shared_vocab_is_the_smaller_layer_and_covers_the_tokenizer(models):
    from tropd.errors import UserError
    from tropd.models import shared_vocab

    s, t = models
    tp = padded(t, 5)
    assert shared_vocab(tp, s, [0] * V) == V and shared_vocab(s, tp, [0] * V) == V
    assert shared_vocab(tp, padded(s, 2), [0] * V) == V + 2
    with pytest.raises(UserError, match=f"student's output layer has {V} rows but the tokenizer has {V + 1}"):
        shared_vocab(tp, s, [0] * (V + 1))


def test_a_padded_output_layer_scores_and_samples_like_the_unpadded_model(models):
    """Cut to the shared rows, a model with extra output rows is the model without them: same teacher
    scores, student log-probs and samples; uncut, its padding rows would take the mass."""
    s, t = models
    tp, sp = padded(t, 5), padded(s, 3, seed=6)
    b = collect(Student(), HFBackend(s, t, {2}, 0), [[3, 4, 5], [6, 7]], [[1], [1]], 2, step=0,
                total_steps=1, seed=0, max_new_tokens=7, temperature=1.0, top_p=1.0, pad_id=0)
    with torch.no_grad():
        ref_t = teacher_score(t, b, 4, chunk=3)
        cut_t = teacher_score(tp, b, 4, chunk=3, vocab=V)
        ref_s = student_forward(s, b, ref_t["teacher_topk_ids_BTK"], chunk=3)
        cut_s = student_forward(sp, b, ref_t["teacher_topk_ids_BTK"], chunk=3, vocab=V)
        uncut = teacher_score(tp, b, 4, chunk=3)
    for key, val in ref_t.items():
        assert torch.allclose(cut_t[key].float(), val.float(), atol=1e-5), key
    for key, val in ref_s.items():
        assert torch.allclose(cut_s[key], val, atol=1e-5), key
    m = b.response_mask_BT
    assert (uncut["teacher_logp_BT"][m] - ref_t["teacher_logp_BT"][m]).abs().max() > 1.0  # the cut matters
    prompts, seeds = [[3, 4, 5], [6, 7], [8]], [11, 12, 13]
    ref = decode([t], prompts, [6] * 3, seeds, {2}, 0)
    cut = decode([tp], prompts, [6] * 3, seeds, {2}, 0, vocab=V)
    assert [r[0] for r in cut] == [r[0] for r in ref] and [r[2] for r in cut] == [r[2] for r in ref]
    assert all(a == pytest.approx(b, abs=1e-5) for (_, a, _), (_, b, _) in zip(cut, ref))
    assert any(tok >= V for ids, _, _ in decode([tp], prompts, [6] * 3, seeds, {2}, 0) for tok in ids)


def test_guided_prefix_as_a_share_of_the_teacher_answer():
    """prefix_unit teacher_frac: the teacher writes its whole answer and the prefix is its first
    round(share * length) tokens (fixed rule), the share being l_max / max_new_tokens."""
    from tropd.methods.guidance import max_prefix_len
    from tropd.catalog import get_method

    params = get_method("tropd").parse_params({"guided_fraction": 1.0, "prefix_unit": "teacher_frac",
                                               "prefix_rule": "fixed"})
    fb = FakeBackend(V, {2}, 0, low=3, eos_prob=0.2)
    prompts = [[3, 4], [5, 6, 7], [8]]
    kw = dict(total_steps=10, seed=0, max_new_tokens=16, temperature=1.0, top_p=1.0, pad_id=0)
    step = 4
    b = collect(guided_or_student(params), fb, prompts, [[1]] * 3, 2, step=step, **kw)
    share = max_prefix_len(step, 10, 16) / 16
    from tropd.rollout import derive_seed

    seeds = [derive_seed(0, step, i, j) for i in range(3) for j in range(2)]
    full = fb.sample("teacher", [p for p in prompts for _ in range(2)], [16] * 6,
                     [derive_seed(s, "teacher") for s in seeds], 1.0, 1.0)
    for row, (toks, _, _) in enumerate(full):
        n = int(b.from_teacher_BT[row].sum())
        assert n == round(share * len(toks))
        assert b.input_ids_BL[row, b.input_ids_BL.shape[1] - b.response_mask_BT.shape[1]:][:n].tolist() == toks[:n] \
            or n == 0
