"""Rollout speed: the HF backend's KV-cached sampling loop (`HFBackend.sample` -> `hf.decode`) against
`model.generate(do_sample=True)`, same model, same prompts, exactly `max_new` new tokens per row on
both sides (EOS disabled: the backend gets no EOS ids, generate gets eos_token_id=None).

Where the time goes is measured, not guessed: forward hooks on the model add up the time spent in
its forward calls, and the backend's sampler (`hf.sample_rows`) is wrapped with a timer. So each
variant splits into forward / sampling / the rest of the loop (bookkeeping: masks, caches, lists).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from tropd.benchlib.common import interleaved, median, ratio_stats
from tropd.benchlib.step import generate_raw, left_pad, random_prompts


@dataclass
class RolloutShape:
    name: str
    vocab: int
    hidden: int
    layers: int
    rows: int
    max_new: int


# The tiny profile's student and batch (64 rows, 48 tokens), and a SmolLM2-sized vocabulary on a
# small backbone, where the per-token cost over the vocabulary (log_softmax, sampling) shows.
SHAPES = [RolloutShape("tiny", 128, 96, 2, 64, 48), RolloutShape("vocab49k", 49152, 64, 2, 16, 32)]
QUICK_SHAPES = [RolloutShape("tiny", 64, 32, 1, 8, 8)]


@contextmanager
def forward_timer(model):
    """Accumulates wall seconds spent in `model`'s forward calls into the yielded dict."""
    acc = {"forward_s": 0.0, "calls": 0}
    start: list[float] = []

    def pre(_m, _a):
        start.append(time.perf_counter())

    def post(_m, _a, _o):
        acc["forward_s"] += time.perf_counter() - start.pop()
        acc["calls"] += 1

    h1 = model.register_forward_pre_hook(pre)
    h2 = model.register_forward_hook(post)
    try:
        yield acc
    finally:
        h1.remove()
        h2.remove()


@contextmanager
def sampler_timer():
    """Wraps `tropd.rollout.hf.sample_rows` (looked up at call time) with a timer."""
    import tropd.rollout.hf as hf

    orig, acc = hf.sample_rows, {"sample_s": 0.0}

    def timed(*a, **k):
        t0 = time.perf_counter()
        out = orig(*a, **k)
        acc["sample_s"] += time.perf_counter() - t0
        return out

    hf.sample_rows = timed
    try:
        yield acc
    finally:
        hf.sample_rows = orig


def _breakdown(fn, model, n_tokens: int, reps: int) -> dict:
    """Per-generated-token microseconds of forward / sampling / rest for one variant."""
    rows = []
    for _ in range(reps):
        with forward_timer(model) as f, sampler_timer() as s:
            t0 = time.perf_counter()
            fn()
            total = time.perf_counter() - t0
        rest = total - f["forward_s"] - s["sample_s"]
        rows.append({"total": total, "forward": f["forward_s"], "sample": s["sample_s"], "rest": rest})
    # the components of the repeat with the median total, so that they add up
    mid = sorted(rows, key=lambda r: r["total"])[len(rows) // 2]
    return {k: v * 1e6 / n_tokens for k, v in mid.items()}


def run_shape(shape: RolloutShape, repeats: int, progress=None) -> dict:
    from tropd.models import build_llama
    from tropd.rollout.hf import HFBackend

    model = build_llama(shape.vocab, shape.hidden, shape.layers, pad_token_id=0, seed=3).eval()
    prompts = random_prompts(shape.rows, shape.vocab, seed=1)
    ids, att = left_pad(prompts)
    backend = HFBackend(model, model, set(), 0)
    n = shape.rows * shape.max_new

    def hf_backend():
        out = backend.sample("student", prompts, [shape.max_new] * shape.rows, list(range(shape.rows)))
        assert all(len(t) == shape.max_new for t, _, _ in out)

    def generate():
        generate_raw(model, ids, att, shape.max_new)

    t = interleaved({"hf": hf_backend, "generate": generate}, repeats, warmup=1, progress=progress)
    per_tok = {"hf": _breakdown(hf_backend, model, n, 3), "generate": _breakdown(generate, model, n, 3)}
    return {"shape": vars(shape), "hf_tok_s": n / median(t["hf"]),
            "generate_tok_s": n / median(t["generate"]),
            # speed ratio = generate time / hf time (paired per round)
            "ratio": ratio_stats(t["generate"], t["hf"]), "us_per_token": per_tok, "times": t}


def run(shapes: list[RolloutShape], repeats: int, progress=None) -> dict:
    torch.manual_seed(0)
    return {s.name: run_shape(s, repeats, progress) for s in shapes}
