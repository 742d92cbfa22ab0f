"""STAGES.md's two training tables, from the smol runs' metrics.jsonl (run from the repo root):
    python scripts/smol/train_stats.py opd tropd topk_fkl
Mean seconds a step per phase, and the means of the first and of the last 5 steps of what moved.
"""
import json
import sys

import pandas as pd

LABELS = {"opd": "OPD", "tropd": "TrOPD", "topk_fkl": "Top-k FKL", "seqkd": "SeqKD"}


def load(method: str) -> pd.DataFrame:
    with open(f"results/smol/runs/{method}/seed0/metrics.jsonl") as f:
        return pd.DataFrame([json.loads(line) for line in f])


runs = {m: load(m) for m in sys.argv[1:]}
print("| Method | rollout s | teacher scoring s | forward+backward s | step s |")
print("|---|---:|---:|---:|---:|")
for m, d in runs.items():
    step = d[[c for c in d if c.startswith("time_")]].sum(axis=1)  # rollout, score, fwd+bwd, optim, ckpt
    print(f"| {LABELS.get(m, m)} | {d.time_rollout.mean():.1f} | {d.time_score.mean():.1f} | "
          f"{d.time_fwd_bwd.mean():.1f} | {step.mean():.1f} |")
print()
cols = [("rkl", "{:.2f}"), ("response_len", "{:.0f}"), ("student_entropy", "{:.2f}"), ("teacher_entropy", "{:.2f}")]
print("| Method | reverse KL (nats/token, on-policy tokens) | grad norm (mean) | response length (tokens) "
      "| student entropy | teacher entropy | finished rollouts |")
print("|---|---:|---:|---:|---:|---:|---:|")
for m, d in runs.items():
    first, last = d.head(5), d.tail(5)
    moved = [f"{fmt.format(first[c].mean())} -> {fmt.format(last[c].mean())}" for c, fmt in cols]
    fin = f"{first.finished_frac.mean():.2f} -> {last.finished_frac.mean():.2f}"
    print(f"| {LABELS.get(m, m)} | {moved[0]} | {d.grad_norm.mean():.2f} | {' | '.join(moved[1:])} | {fin} |")
if "tropd" in runs and "trust" in runs["tropd"]:
    print(f"\nTrOPD mean trust weight: {runs['tropd'].trust.mean():.2f}")
