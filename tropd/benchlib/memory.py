"""Peak memory of the per-token loss path: the harness's chunked scoring vs a naive full-vocabulary one.

Both paths run one sequence of T response tokens (plus a short prompt) through the same small Llama
(`build_llama`, vocabulary V, one layer of width D: the backbone is cheap on purpose so that the
logits path dominates), compute the same TrOPD loss (the registered method `tropd`, default
parameters: K1 on trust tokens, top-k FKL on outliers), reduce it with `reduce_loss` and call
backward:

- chunked : `tropd.scoring.student_forward` with the teacher's top-k ids (LM head per chunk under
            activation checkpointing), the harness's path;
- naive   : full (B, T, V) logits, log_softmax, gather of the sampled token and the top-k ids.

The teacher side is measured the same way (`teacher_score` vs full logits + topk, no grad).
Teacher statistics for the student paths (top-k ids / log-probs, sampled-token log-prob) are
random stand-ins made during set-up: only their shapes matter for memory.

Each measurement runs in a fresh interpreter (`python -m tropd.benchlib.memory ...`), so one path's
freed-but-cached memory cannot hide or inflate the other's. Inside it: set-up, one untimed small run
of the same path (lazy initialisations), then the peak RSS of the measured run above the RSS just
before it (`common.peak_rss`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from tropd.benchlib.common import peak_rss

PATHS = ("chunked", "naive", "teacher_chunked", "teacher_naive")


def _setup(T: int, V: int, D: int, K: int, P: int = 8, seed: int = 0):
    from tropd.models import build_llama
    from tropd.rollout.batch import RolloutBatch

    model = build_llama(V, D, 1, heads=2, max_positions=P + T + 8, seed=seed)
    g = torch.Generator().manual_seed(seed)
    ids_BL = torch.randint(3, V, (1, P + T), generator=g)
    batch = RolloutBatch(ids_BL, torch.ones_like(ids_BL), P, torch.ones(1, T, dtype=torch.bool),
                         torch.zeros(1, T, dtype=torch.bool), -5 * torch.rand(1, T, generator=g),
                         torch.zeros(1, dtype=torch.long))
    topk_ids_BTK = torch.randint(0, V, (1, T, K), generator=g)  # repeats do not matter for memory
    scored = {"teacher_logp_BT": -5 * torch.rand(1, T, generator=g),
              "teacher_topk_ids_BTK": topk_ids_BTK,
              "teacher_topk_logp_BTK": (torch.randn(1, T, K, generator=g) * 2).log_softmax(-1) - 0.1,
              "teacher_entropy_BT": torch.rand(1, T, generator=g)}
    return model, batch, scored


def _loss(stud: dict, batch, scored: dict) -> torch.Tensor:
    """The registered TrOPD loss on these per-token stats, reduced by the shared reducer."""
    from tropd.reduce import reduce_loss, step_denominator
    from tropd.catalog import get_method
    from tropd.registry import StepContext, TokenStats

    method = get_method("tropd")
    s = TokenStats(mask_BT=batch.response_mask_BT, from_teacher_BT=batch.from_teacher_BT,
                   behav_logp_BT=batch.behav_logp_BT, **scored, **stud)
    res = method.fn(s, method.parse_params({}), StepContext(0, 1, torch.arange(batch.size)))
    mask = batch.response_mask_BT
    return reduce_loss(res.loss_BT, mask, "token", step_denominator(mask, "token"))


def _naive_stats(model, batch, ids_BTK) -> dict:
    P, T = batch.prompt_width, batch.response_width
    logits_BLV = model(input_ids=batch.input_ids_BL, attention_mask=batch.attention_mask_BL,
                       position_ids=batch.position_ids_BL(), use_cache=False).logits
    logp_BTV = logits_BLV[:, P - 1 : P - 1 + T].float().log_softmax(-1)
    tgt_BT = batch.input_ids_BL[:, P : P + T]
    return {"logp_BT": logp_BTV.gather(-1, tgt_BT[..., None]).squeeze(-1),
            "student_topk_logp_BTK": logp_BTV.gather(-1, ids_BTK)}


def run_path(path: str, model, batch, scored: dict, K: int, chunk: int) -> float:
    """One pass of `path`; returns the loss (student paths) or a checksum (teacher paths)."""
    from tropd.scoring import student_forward, teacher_score

    if path == "chunked":
        stud = student_forward(model, batch, scored["teacher_topk_ids_BTK"], chunk)
        stud.pop("student_entropy_BT")  # computed by the harness, not used by this loss
        loss = _loss(stud, batch, scored)
        loss.backward()
        return float(loss.detach())
    if path == "naive":
        loss = _loss(_naive_stats(model, batch, scored["teacher_topk_ids_BTK"]), batch, scored)
        loss.backward()
        return float(loss.detach())
    with torch.no_grad():
        if path == "teacher_chunked":
            out = teacher_score(model, batch, K, chunk)
            return float(out["teacher_topk_logp_BTK"].sum())
        P, T = batch.prompt_width, batch.response_width
        logits = model(input_ids=batch.input_ids_BL, attention_mask=batch.attention_mask_BL,
                       position_ids=batch.position_ids_BL(), use_cache=False).logits
        logp_BTV = logits[:, P - 1 : P - 1 + T].float().log_softmax(-1)
        v, _ = logp_BTV.topk(K, dim=-1)
        tok = logp_BTV.gather(-1, batch.input_ids_BL[:, P : P + T, None])
        return float(v.sum() + 0 * tok.sum())
    raise ValueError(path)


def fix_mmap_threshold(nbytes: int) -> bool:
    """glibc: serve allocations >= nbytes with mmap, and stop the threshold from adapting.

    By default glibc raises its mmap threshold (up to 32 MiB) each time a large block is freed, after
    which blocks of that size come from the heap, where freed memory is kept and fragments: a loop
    allocating and freeing (chunk, V) buffers of 8-32 MiB can then hold gigabytes of RSS. Fixing the
    threshold (as MALLOC_MMAP_THRESHOLD_ does) returns every such buffer to the OS when freed.
    """
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, nbytes))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def measure_here(path: str, T: int, V: int, D: int, K: int, chunk: int, mmap_threshold: int = 0) -> dict:
    """Set up, warm up on a short sequence, then measure one full-size run (this process)."""
    torch.set_num_threads(1)
    fixed = fix_mmap_threshold(mmap_threshold) if mmap_threshold else False
    small = _setup(min(T, chunk + 3), V, D, K)
    run_path(path, *small, K, chunk)  # lazy initialisations happen here, outside the measurement
    del small
    model, batch, scored = _setup(T, V, D, K)
    model.requires_grad_(not path.startswith("teacher"))
    with peak_rss() as mem:
        t0 = time.perf_counter()
        value = run_path(path, model, batch, scored, K, chunk)
        wall = time.perf_counter() - t0
    return {"path": path, "chunk": chunk, "mmap_threshold": mmap_threshold if fixed else None,
            "peak_mb": mem["peak_mb"], "rss_before_mb": mem["rss_before_mb"],
            "method": mem["method"], "wall_s": wall, "value": value}


def measure(path: str, T: int, V: int, D: int, K: int, chunk: int, mmap_threshold: int = 0,
            timeout: float = 600) -> dict:
    """`measure_here` in a fresh interpreter."""
    cmd = [sys.executable, "-m", "tropd.benchlib.memory", path, str(T), str(V), str(D), str(K), str(chunk),
           "--mmap-threshold", str(mmap_threshold)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"memory probe {path} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="one peak-memory probe (used by tropd bench)")
    ap.add_argument("path", choices=PATHS)
    for k in ("T", "V", "D", "K", "chunk"):
        ap.add_argument(k, type=int)
    ap.add_argument("--mmap-threshold", type=int, default=0,
                    help="pin glibc's mmap threshold (bytes; 0 = leave it adaptive)")
    a = ap.parse_args(argv)
    print(json.dumps(measure_here(a.path, a.T, a.V, a.D, a.K, a.chunk, a.mmap_threshold)))


if __name__ == "__main__":
    main()
