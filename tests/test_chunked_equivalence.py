"""The chunked scoring path (tropd.scoring) equals a naive full-vocabulary one on random inputs.

The model here is an LM head on random hidden states (a decoder stub that returns a trainable
(B, P+T, D) tensor), so the test isolates the logits path: chunking along the sequence, activation
checkpointing in the student forward, gathers at the sampled token and the teacher's top-k ids.
Chunk sizes include 1, sizes that do not divide T, T itself and more than T.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tropd.rollout.batch import RolloutBatch
from tropd.scoring import student_forward, teacher_score

B, P, T, D, V, K = 3, 4, 11, 8, 37, 5
CHUNKS = [1, 3, 4, 7, T, T + 5]


class HeadOnHidden(torch.nn.Module):
    """get_decoder() returns fixed random hidden states; get_output_embeddings() a linear head."""

    def __init__(self, seed: int, bias: bool):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.h_BLD = torch.nn.Parameter(torch.randn(B, P + T, D, generator=g))
        self.head = torch.nn.Linear(D, V, bias=bias)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(V, D, generator=g) * 2)
            if bias:
                self.head.bias.copy_(torch.randn(V, generator=g))

    def get_decoder(self):
        return lambda **kw: SimpleNamespace(last_hidden_state=self.h_BLD)

    def get_output_embeddings(self):
        return self.head


def _batch(seed: int) -> RolloutBatch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, P + T), generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 7:] = False  # a shorter row: padding positions are scored too, and must match
    return RolloutBatch(ids, torch.ones_like(ids), P, mask, torch.zeros(B, T, dtype=torch.bool),
                        torch.zeros(B, T), torch.arange(B))


def _naive(model: HeadOnHidden, batch: RolloutBatch, ids_BTK):
    logp_BTV = model.head(model.h_BLD[:, P - 1 : P - 1 + T]).float().log_softmax(-1)
    tok_BT = logp_BTV.gather(-1, batch.input_ids_BL[:, P:, None]).squeeze(-1)
    top_BTK = logp_BTV.gather(-1, ids_BTK) if ids_BTK is not None else None
    ent_BT = -(logp_BTV.exp() * logp_BTV).sum(-1).detach()
    return tok_BT, top_BTK, ent_BT, logp_BTV


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("with_topk", [True, False])
@pytest.mark.parametrize("bias", [False, True])
def test_student_forward_equals_naive(chunk, with_topk, bias):
    torch.manual_seed(0)
    model, batch = HeadOnHidden(1, bias), _batch(2)
    g = torch.Generator().manual_seed(3)
    ids_BTK = torch.randint(0, V, (B, T, K), generator=g) if with_topk else None
    w_BT, w_BTK = torch.randn(B, T, generator=g), torch.randn(B, T, K, generator=g)

    out = student_forward(model, batch, ids_BTK, chunk)
    loss = (out["logp_BT"] * w_BT).sum() + ((out["student_topk_logp_BTK"] * w_BTK).sum() if with_topk else 0)
    loss.backward()
    g_chunk = _grads(model)
    model.zero_grad()

    tok, top, ent, _ = _naive(model, batch, ids_BTK)
    ((tok * w_BT).sum() + ((top * w_BTK).sum() if with_topk else 0)).backward()
    g_naive = _grads(model)

    assert torch.allclose(out["logp_BT"], tok, atol=1e-5)
    assert torch.allclose(out["student_entropy_BT"], ent, atol=1e-5)
    assert not out["student_entropy_BT"].requires_grad
    assert ("student_topk_logp_BTK" in out) == with_topk
    if with_topk:
        assert torch.allclose(out["student_topk_logp_BTK"], top, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(g_chunk, g_naive))
    assert any(a.abs().sum() > 0 for a in g_chunk)  # gradients really flowed through the chunks


@pytest.mark.parametrize("chunk", [3, 7])
def test_student_forward_without_grad_and_with_full_logits(chunk):
    model, batch = HeadOnHidden(4, True), _batch(5)
    ids_BTK = torch.randint(0, V, (B, T, K), generator=torch.Generator().manual_seed(6))
    tok, top, _, logp_BTV = _naive(model, batch, ids_BTK)
    with torch.no_grad():
        out = student_forward(model, batch, ids_BTK, chunk)
    assert torch.allclose(out["logp_BT"], tok, atol=1e-5)
    full = student_forward(model, batch, ids_BTK, chunk, full_logits=True)
    assert torch.allclose(full["student_logits_BTV"], logp_BTV, atol=1e-5)
    assert full["student_logits_BTV"].requires_grad


@pytest.mark.parametrize("chunk", CHUNKS)
def test_teacher_topk_equals_topk_of_full_softmax(chunk):
    model, batch = HeadOnHidden(7, True), _batch(8)
    model.requires_grad_(False)
    sc = teacher_score(model, batch, topk=K, chunk=chunk)
    tok, _, ent, logp_BTV = _naive(model, batch, None)
    vals, ids = logp_BTV.topk(K, dim=-1)
    assert sc["teacher_topk_ids_BTK"].shape == (B, T, K)
    assert torch.allclose(sc["teacher_topk_logp_BTK"], vals, atol=1e-5)
    # The ids are the top-k of the full softmax: same ids (random logits have no ties), and the
    # returned log-probs are the full distribution's at those ids.
    assert torch.equal(sc["teacher_topk_ids_BTK"], ids)
    at_ids = logp_BTV.gather(-1, sc["teacher_topk_ids_BTK"])
    assert torch.allclose(at_ids, sc["teacher_topk_logp_BTK"], atol=1e-5)
    assert torch.allclose(sc["teacher_logp_BT"], tok, atol=1e-5)
    assert torch.allclose(sc["teacher_entropy_BT"], ent, atol=1e-5)
    # k larger than the vocabulary is clipped to V
    assert teacher_score(model, batch, topk=V + 10, chunk=chunk)["teacher_topk_ids_BTK"].shape[-1] == V


@pytest.mark.parametrize("chunk", [2, 5, T])
def test_tropd_loss_and_gradients_equal_naive(chunk):
    """The registered TrOPD loss on chunked stats equals the same loss on full-vocabulary stats."""
    from tropd.reduce import reduce_loss, step_denominator
    from tropd.catalog import get_method
    from tropd.registry import StepContext, TokenStats

    method = get_method("tropd")
    params = method.parse_params({})
    teacher, student, batch = HeadOnHidden(10, False), HeadOnHidden(11, False), _batch(12)
    teacher.requires_grad_(False)
    sc = teacher_score(teacher, batch, topk=K, chunk=chunk)
    # behaviour log-probs: the student's own (on-policy), so the trust draw is non-trivial
    batch.behav_logp_BT = _naive(student, batch, None)[0].detach()
    mask = batch.response_mask_BT

    def loss_of(stud: dict) -> torch.Tensor:
        s = TokenStats(mask_BT=mask, from_teacher_BT=batch.from_teacher_BT, behav_logp_BT=batch.behav_logp_BT,
                       **sc, **stud)
        res = method.fn(s, params, StepContext(0, 1, torch.arange(mask.shape[0])))
        return reduce_loss(res.loss_BT, mask, "token", step_denominator(mask, "token"))

    l_chunk = loss_of(student_forward(student, batch, sc["teacher_topk_ids_BTK"], chunk))
    l_chunk.backward()
    g_chunk = _grads(student)
    student.zero_grad()
    tok, top, ent, _ = _naive(student, batch, sc["teacher_topk_ids_BTK"])
    l_naive = loss_of({"logp_BT": tok, "student_topk_logp_BTK": top, "student_entropy_BT": ent})
    l_naive.backward()
    assert torch.allclose(l_chunk, l_naive, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(g_chunk, _grads(student)))
