"""Derived seeds: every random draw is a pure function of (run seed, step, prompt, sample, ...).

Integers are mixed with a fixed hash (not Python's `hash`, which is salted per process), so the
same tuple gives the same seed in every process and on every machine.
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
