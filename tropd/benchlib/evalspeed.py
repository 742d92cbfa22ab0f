"""Grading throughput of the evaluation code (tropd.eval.graders): code checks/s and math items/s.

- code: `graders.code.check_evalplus` on the first n HumanEval+ problems (written to a temporary
  evalplus-format file, so evalplus's ground truth is computed for those n only), each graded with its
  canonical solution as the completion: every check passes the base inputs and so also runs the plus
  inputs, the expensive path. One sandboxed process per check, `sandbox.default_workers()` in
  parallel. Ground truth (evalplus runs the canonical solutions once, cached) is timed separately.
- math: `graders.math.grade("boxed", ...)` on MATH-500 answers (math-verify parsing and
  equivalence; half the completions carry the gold answer, half another item's answer), and
  `grade("gsm8k", ...)` on GSM8K (regex + decimal compare).

If the graders or the benchmark files are missing, the figure is reported as pending with the reason.
"""
from __future__ import annotations

import gzip
import json
import os
import tempfile
import time
from pathlib import Path

from tropd.benchlib.common import median


def _pending(reason: str) -> dict:
    return {"status": "pending", "reason": reason}


def code_checks(n: int, repeats: int) -> dict:
    try:
        from tropd.eval.graders.code import check_evalplus, ground_truth
        from tropd.eval.sandbox import default_workers
        from tropd.eval.tasks import benchmarks_root
    except ImportError as e:
        return _pending(f"tropd.eval code grader not importable ({e})")
    src = benchmarks_root() / "humanevalplus" / "HumanEvalPlus.jsonl.gz"
    if not src.is_file():
        return _pending(f"{src} not found")
    with gzip.open(src, "rt") as f:
        rows = [json.loads(line) for _, line in zip(range(n), f)]
    with tempfile.TemporaryDirectory(prefix="tropd-bench-") as tmp:
        path = Path(tmp) / "HumanEvalPlus-subset.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        t0 = time.perf_counter()
        ground_truth("humaneval", path)
        gt_s = time.perf_counter() - t0
        samples = [(r["task_id"], r["canonical_solution"]) for r in rows]
        walls, results = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            results = check_evalplus("humaneval", path, samples, plus=True, cache=False)  # every check runs
            walls.append(time.perf_counter() - t0)
    passed = sum(r["base"] == "pass" and r["plus"] == "pass" for r in results)
    return {"status": "ok", "checks_per_s": n / median(walls), "n_checks": n, "passed": passed,
            "workers": default_workers(), "ground_truth_s": gt_s, "walls_s": walls,
            "what": "HumanEval+ canonical solutions, base + plus inputs, one sandboxed process per check"}


def math_items(n: int, repeats: int) -> dict:
    try:
        from tropd.eval.graders.math import grade
        from tropd.eval.tasks import benchmarks_root, gsm8k_final
    except ImportError as e:
        return _pending(f"tropd.eval math grader not importable ({e})")
    root = benchmarks_root()
    m500, gsm = root / "math500" / "test.jsonl", root / "gsm8k" / "test.jsonl"
    if not (m500.is_file() and gsm.is_file()):
        return _pending(f"{m500} or {gsm} not found")
    # Each repeat grades other items (math-verify may cache parses); n * repeats <= 500 for MATH-500.
    n = min(n, 500 // (repeats + 1))
    golds = [json.loads(line)["answer"] for line in open(m500)]
    boxed = [(g, f"Reasoning ... so the answer is $\\boxed{{{g if i % 2 == 0 else golds[i - 1]}}}$.")
             for i, g in enumerate(golds)]
    g8 = [gsm8k_final(json.loads(line)["answer"]) for line in open(gsm)]
    gsm_pairs = [(g, f"Step by step ... #### {g if i % 2 == 0 else g + '1'}") for i, g in enumerate(g8)]
    out = {"status": "ok", "n_items": n}
    for kind, pairs in (("boxed", boxed), ("gsm8k", gsm_pairs)):
        grade(kind, pairs[-2:])  # imports and math-verify's first-call set-up, untimed
        walls, correct = [], 0
        for r in range(repeats):
            t0 = time.perf_counter()
            res = grade(kind, pairs[r * n : (r + 1) * n])
            walls.append(time.perf_counter() - t0)
            correct += sum(x["correct"] for x in res)
        out[kind] = {"items_per_s": n / median(walls), "correct_share": correct / (n * repeats),
                     "walls_s": walls}
    out["items_per_s"] = out["boxed"]["items_per_s"]  # the headline: math-verify, the slow grader
    out["what"] = "MATH-500 \\boxed{} answers through math-verify (headline); GSM8K final-number match"
    return out


def run(n_code: int, n_math: int, repeats: int) -> dict:
    os.environ.setdefault("TROPD_SANDBOX_WORKERS", str(min(2, os.cpu_count() or 1)))
    return {"code": code_checks(n_code, repeats), "math": math_items(n_math, repeats)}
