"""Deterministic synthetic datasets: disjoint train / held-out test items per domain.

Each domain module (math_task, code_task, instruct_task) draws one `Item` from a seeded
`random.Random`. The held-out test items are drawn first, then training items whose prompts are
not among them, so the test set is a fixed function of (seed, n_test) and never seen in training.
"""
from __future__ import annotations

import random

from tropd.errors import ConfigError
from tropd.infra.seeding import derive_seed
from tropd.tiny import code_task, instruct_task, math_task
from tropd.tiny.item import Item


def _maker(domain: str):
    makers = {"math": math_task.make_item, "code": code_task.make_item, "instruct": instruct_task.make_item}
    if domain not in makers:
        raise ConfigError(f"prepare.domains: unknown domain {domain!r} (known: math, code, instruct)")
    return makers[domain]


def generate(domain: str, seed: int, n_train: int, n_test: int) -> tuple[list[Item], list[Item]]:
    """(train, test) items of one domain; unique prompts, disjoint between the two."""
    make_item = _maker(domain)
    r = random.Random(derive_seed(seed, "tiny-data", domain))
    seen: set[str] = set()
    out: list[Item] = []
    budget = 50 * (n_train + n_test) + 1000  # draws before the prompt space counts as exhausted
    while len(out) < n_train + n_test and budget > 0:
        budget -= 1
        item = make_item(r)
        if item.prompt not in seen:
            seen.add(item.prompt)
            out.append(item)
    if len(out) < n_train + n_test:
        raise ConfigError(f"prepare.n_train: only {len(out)} distinct {domain} prompts exist, "
                          f"{n_train + n_test} asked")
    return out[n_test:], out[:n_test]


def held_out_rows(domain: str, items: list[Item]) -> list[dict]:
    """Held-out rows in the benchmark's own format (GSM8K / HumanEval+ / IFEval)."""
    if domain == "code":
        return [{"task_id": f"TinyCode/{i}", **it.record} for i, it in enumerate(items)]
    if domain == "instruct":
        return [{"key": 1000 + i, **it.record} for i, it in enumerate(items)]
    return [dict(it.record) for it in items]


def train_rows(items: list[Item]) -> list[dict]:
    """train.jsonl rows: {"id", "domain", "prompt", "reference"} (reference = teacher style)."""
    return [{"id": f"{it.domain}/{i}", "domain": it.domain, "prompt": it.prompt, "reference": it.answer}
            for i, it in enumerate(items)]
