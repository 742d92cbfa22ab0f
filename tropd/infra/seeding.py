"""Derived seeds: every random draw is a pure function of (run seed, step, prompt, sample, ...).

Integers are mixed with a fixed hash (not Python's `hash`, which is salted per process), so the
same tuple gives the same seed in every process and on every machine. Per-token uniforms
(`uniform_rows`, `uniform_grid`) are a counter-based hash of (row seed, position): a token's draw
never depends on what else is in the batch, so micro-batching and data-parallel sharding leave
every sample and every trust draw unchanged.
"""
from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: int | str) -> int:
    blob = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little") & ((1 << 63) - 1)


def generator(*parts: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g


def to_int64(x: int) -> int:
    """An unsigned 64-bit integer as the signed value an int64 tensor holds."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN, _MIX1, _MIX2 = (to_int64(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def uniform_rows(seeds_N: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """Uniforms in [0, 1), a pure function of (row seed, position t): splitmix64. Broadcasts."""
    z = seeds_N * 1_000_003 + t + _GOLDEN  # int64 arithmetic wraps around, as splitmix64 wants
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    z = z ^ _shr(z, 31)
    return _shr(z, 11).double() / float(1 << 53)


def uniform_grid(seeds_B: torch.Tensor, T: int) -> torch.Tensor:
    """float64 (B, T): uniform u[b, t] of row seed b at response position t."""
    return uniform_rows(seeds_B.long()[:, None], torch.arange(T, device=seeds_B.device)[None, :])


def row_seeds(run_seed: int, step: int, prompt_B: torch.Tensor, sample_B: torch.Tensor,
              tag: str) -> torch.Tensor:
    """long (B,): derive_seed(run seed, step, prompt, sample, tag) for each row."""
    return torch.tensor([to_int64(derive_seed(run_seed, step, int(i), int(j), tag))
                         for i, j in zip(prompt_B.tolist(), sample_B.tolist())], dtype=torch.long)
