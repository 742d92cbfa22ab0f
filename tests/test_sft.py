"""The SFT loop used by `tropd prepare` (tiny models, the smol teacher and student)."""
from __future__ import annotations

import torch

from tropd.models import build_llama
from tropd.tiny.sft import IGNORE, pack, sft


def _examples():
    # prompt ids, answer ids: a fixed mapping the model can learn in a few dozen steps
    return [([1, 3 + i % 5, 9], [10 + i % 5, 2]) for i in range(40)]


def _loss(model) -> float:
    """fp32 loss of `model` on every example (no autocast: what the saved weights give)."""
    ids, labels, _ = pack(_examples(), pad_id=0, max_len=16)
    with torch.no_grad():
        return float(model(input_ids=ids, labels=labels).loss)


def _train(bf16: bool) -> tuple[float, float]:
    """(loss before, loss after) of 40 SFT steps."""
    torch.set_num_threads(1)
    model = build_llama(24, 32, 1, heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=0, seed=0)
    # Only the linear layers learn (autocast casts their weights; embeddings and norms stay fp32
    # and could learn this mapping on their own, hiding stale linear weights).
    for name, param in model.named_parameters():
        param.requires_grad_(name.endswith("proj.weight"))
    before = _loss(model)
    sft(model, _examples(), steps=40, batch=8, lr=1e-2, seed=0, pad_id=0, max_len=16, tag="t", bf16=bf16)
    return before, _loss(model)


def test_pack_masks_prompts_and_padding():
    ids, labels, lengths = pack([([1, 5], [7, 2]), ([1], [8, 9, 2])], pad_id=0, max_len=8)
    assert ids.tolist() == [[1, 5, 7, 2], [1, 8, 9, 2]]
    assert labels.tolist() == [[IGNORE, IGNORE, 7, 2], [IGNORE, 8, 9, 2]] and lengths.tolist() == [4, 4]


def test_bf16_autocast_trains_like_fp32():
    """Autocast caches bf16 weight copies until its outermost region exits: opened around the whole
    loop, every step would run the step-0 weights of the linear layers, and the weights it saves
    (updated with gradients taken at the wrong point) lag far behind (measured: 2.94 against 2.58)."""
    (start, fp32), (_, bf16) = _train(False), _train(True)
    assert start - fp32 > 0.3  # the linear layers alone learn (measured: 3.21 -> 2.58)
    assert abs(bf16 - fp32) < 0.1 * (start - fp32)
