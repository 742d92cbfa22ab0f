"""The ONE masked reducer: every method's per-token loss becomes a scalar here.

Normalisation is over the whole optimizer step, not per micro-batch, so gradient accumulation
gives the same gradient as one big batch:

- `token`    : sum of loss over unmasked tokens of the step / number of unmasked tokens in the step
- `sequence` : mean over sequences of (sum over the sequence's tokens / its token count)

`denom` is computed once per step by `step_denominator` and passed to every micro-batch.
"""
from __future__ import annotations

import torch


def step_count(mask_BT: torch.Tensor, norm: str) -> float:
    """What a step's loss is averaged over: its unmasked tokens, or its non-empty sequences."""
    if norm == "token":
        return float(mask_BT.sum())
    if norm == "sequence":
        return float((mask_BT.sum(-1) > 0).sum())
    raise ValueError(f"unknown loss normalisation {norm!r}")


def step_denominator(mask_BT: torch.Tensor, norm: str) -> float:
    """Normaliser for a whole step (all micro-batches together). Data-parallel processes use
    max(sum of every process's step_count, 1) instead (tropd.train)."""
    return max(step_count(mask_BT, norm), 1.0)


def reduce_loss(loss_BT: torch.Tensor, mask_BT: torch.Tensor, norm: str, denom: float) -> torch.Tensor:
    """Scalar loss of one micro-batch; summing over micro-batches gives the step loss."""
    m = mask_BT.to(loss_BT.dtype)
    # where() rather than multiply so that a NaN/Inf at a masked position cannot leak in.
    masked = torch.where(mask_BT, loss_BT, torch.zeros((), dtype=loss_BT.dtype, device=loss_BT.device))
    if norm == "token":
        return masked.sum() / denom
    per_seq = masked.sum(-1) / m.sum(-1).clamp_min(1.0)
    return per_seq.sum() / denom


def masked_mean(x_BT: torch.Tensor, mask_BT: torch.Tensor,
                weight_BT: torch.Tensor | None = None) -> tuple[float, float]:
    """(sum, count) of x over mask, for metrics accumulated across micro-batches; non-finite x are
    left out. With `weight_BT`: (sum of w * x, sum of w), a weighted (e.g. importance-weighted) mean."""
    x = x_BT.detach().float()
    keep = mask_BT & torch.isfinite(x)
    w = torch.ones_like(x) if weight_BT is None else weight_BT.detach().float()
    w = torch.where(keep, w, torch.zeros_like(w))
    return float((w * torch.where(keep, x, torch.zeros_like(x))).sum()), float(w.sum())
