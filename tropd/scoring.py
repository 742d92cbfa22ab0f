"""Teacher scoring and the student forward, in chunks along the sequence.

Both run the transformer backbone once over the whole batch (or each distinct prompt once, with
train.share_prompts: _hidden_and_head) and then apply the LM head chunk by chunk over response
positions, keeping only what the method needs: the sampled token's log-prob, log-probs at the
teacher's top-k ids, and the entropy. A (B, T, V) tensor exists only for methods
that declare `full_logits` (GKD). For the student each chunk runs under activation checkpointing,
so its (B, chunk, V) logits are freed after the forward and recomputed in backward: peak memory
grows with B*T*K plus one chunk's B*chunk*V, not with B*T*V.

`vocab` (tropd.models.shared_vocab) keeps the first `vocab` rows of an output layer that is padded
past the other model's, so that teacher and student distributions are over the same rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tropd.models import cache_kw
from tropd.rollout.batch import RolloutBatch


def _hidden_and_head(model, batch: RolloutBatch, share_prompts: bool = False):
    """Final hidden states at the positions predicting response tokens, and the LM head. (B, T, D)

    One pass over every row, or, with `share_prompts` (train.share_prompts), rows that share a
    prompt (a prompt's rollouts_per_prompt samples) share its forward, as the rollout's prefill does
    (tropd.rollout.hf): each distinct prompt runs once, its KV-cache rows are copied to every row
    that has it, and the responses run on that cache. The maths is that of one pass, since the
    causal mask keeps a prompt's states independent of what follows; the floats are not: splitting
    a sequence at a KV cache alone, shared or not, moves the hidden states by about 1e-6 (attention
    and products of other shapes round differently), so no sharing keeps the one pass's bits.
    Gradients reach the one prompt forward through the copies (indexing's backward sums them).
    """
    dec, head = model.get_decoder(), model.get_output_embeddings()
    P, T = batch.prompt_width, batch.response_width
    ids_BL, att_BL, pos_BL = batch.input_ids_BL, batch.attention_mask_BL, batch.position_ids_BL()
    if share_prompts:
        first, row_of = batch.prompt_groups()
    if not share_prompts or len(first) == batch.size:  # nothing to share: one pass
        out = dec(input_ids=ids_BL, attention_mask=att_BL, position_ids=pos_BL, use_cache=False)
        return _last_hidden(out)[:, P - 1 : P - 1 + T], head
    from transformers import DynamicCache

    cache, kw = DynamicCache(), cache_kw(dec)
    out = dec(input_ids=ids_BL[first, :P], attention_mask=att_BL[first, :P], position_ids=pos_BL[first, :P],
              use_cache=True, **{kw: cache})
    if cache.get_seq_length() != P:  # a model that drops the cache would score responses without prompts
        raise RuntimeError(f"train.share_prompts: {type(dec).__name__} kept {cache.get_seq_length()} of the "
                           f"prompt's {P} positions in its KV cache")
    h_BTD = _last_hidden(out)[row_of, P - 1 :]  # predicts response token 0
    if T > 1:
        cache.batch_select_indices(row_of)
        L = P + T - 1  # the last response token predicts nothing the loss uses
        out = dec(input_ids=ids_BL[:, P:L], attention_mask=att_BL[:, :L], position_ids=pos_BL[:, P:L],
                  use_cache=True, **{kw: cache})
        h_BTD = torch.cat([h_BTD, _last_hidden(out)], 1)
    return h_BTD, head


def _last_hidden(out) -> torch.Tensor:
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _head_weights(head, vocab: int | None):
    """The output layer's (weight (V, D), bias (V,) or None), cut to the first `vocab` rows."""
    w, b = head.weight, getattr(head, "bias", None)
    if vocab is None or vocab >= w.shape[0]:
        return w, b
    return w[:vocab], (b[:vocab] if b is not None else None)


def _chunk_logp(h_BcD, weight_VD, bias_V, tgt_Bc):
    """One chunk's fp32 log-probs over the vocabulary, the sampled tokens' log-probs and the entropy
    (no grad): what teacher and student share."""
    logp_BcV = F.linear(h_BcD, weight_VD, bias_V).float().log_softmax(-1)
    tok_Bc = logp_BcV.gather(-1, tgt_Bc[..., None]).squeeze(-1)
    with torch.no_grad():
        ent_Bc = -(logp_BcV.exp() * logp_BcV).sum(-1)
    return logp_BcV, tok_Bc, ent_Bc


def _chunk_stats(h_BcD, weight_VD, bias_V, tgt_Bc, ids_BcK, want_logits: bool):
    logp_BcV, tok_Bc, ent_Bc = _chunk_logp(h_BcD, weight_VD, bias_V, tgt_Bc)
    topk_BcK = logp_BcV.gather(-1, ids_BcK) if ids_BcK is not None else None
    return tok_Bc, topk_BcK, ent_Bc, (logp_BcV if want_logits else None)


def _targets(batch: RolloutBatch) -> torch.Tensor:
    P = batch.prompt_width
    return batch.input_ids_BL[:, P : P + batch.response_width]


@torch.no_grad()
def teacher_score(teacher, batch: RolloutBatch, topk: int, chunk: int, full_logits: bool = False,
                  vocab: int | None = None, share_prompts: bool = False) -> dict:
    """Teacher log-prob of each sampled token, top-k (ids, log-probs), entropy; (B, T[, K]) each.

    A teacher on another device than the batch (`teacher.device: cuda:1`) gets the batch moved to
    it, and its outputs come back to the batch's device."""
    home = batch.input_ids_BL.device
    there = next(teacher.parameters()).device
    if there != home:
        out = teacher_score(teacher, batch.to(there), topk, chunk, full_logits, vocab, share_prompts)
        return {k: v.to(home) for k, v in out.items()}
    h_BTD, head = _hidden_and_head(teacher, batch, share_prompts)
    tgt_BT = _targets(batch)
    weight_VD, bias_V = _head_weights(head, vocab)
    k = min(topk, weight_VD.shape[0])
    tok, ids, lps, ent, full = [], [], [], [], []
    for s in range(0, h_BTD.shape[1], chunk):
        logp_BcV, tok_Bc, ent_Bc = _chunk_logp(h_BTD[:, s : s + chunk], weight_VD, bias_V,
                                               tgt_BT[:, s : s + chunk])
        v, i = logp_BcV.topk(k, dim=-1)
        tok.append(tok_Bc)
        lps.append(v)
        ids.append(i)
        ent.append(ent_Bc)
        if full_logits:
            full.append(logp_BcV)
    out = {
        "teacher_logp_BT": torch.cat(tok, 1),
        "teacher_topk_ids_BTK": torch.cat(ids, 1),
        "teacher_topk_logp_BTK": torch.cat(lps, 1),
        "teacher_entropy_BT": torch.cat(ent, 1),
    }
    if full_logits:
        out["teacher_logits_BTV"] = torch.cat(full, 1)
    return out


def student_forward(student, batch: RolloutBatch, topk_ids_BTK: torch.Tensor | None, chunk: int,
                    full_logits: bool = False, vocab: int | None = None, share_prompts: bool = False) -> dict:
    """Student log-probs (with grad) of sampled tokens and at the teacher's top-k ids; entropy."""
    h_BTD, head = _hidden_and_head(student, batch, share_prompts)
    tgt_BT = _targets(batch)
    weight_VD, bias_V = _head_weights(head, vocab)
    tok, topk, ent, full = [], [], [], []
    for s in range(0, h_BTD.shape[1], chunk):
        ids = topk_ids_BTK[:, s : s + chunk] if topk_ids_BTK is not None else None
        args = (h_BTD[:, s : s + chunk], weight_VD, bias_V, tgt_BT[:, s : s + chunk], ids, full_logits)
        if torch.is_grad_enabled() and not full_logits:
            t, k, e, f = checkpoint(_chunk_stats, *args, use_reentrant=False)
        else:
            t, k, e, f = _chunk_stats(*args)
        tok.append(t)
        topk.append(k)
        ent.append(e)
        full.append(f)
    out = {"logp_BT": torch.cat(tok, 1), "student_entropy_BT": torch.cat(ent, 1)}
    if topk_ids_BTK is not None:
        out["student_topk_logp_BTK"] = torch.cat(topk, 1)
    if full_logits:
        out["student_logits_BTV"] = torch.cat(full, 1)
    return out
