"""STAGES.md's score tables, from the smol eval summaries (run from the repo root):
    python scripts/smol/scores.py teacher student opd tropd topk_fkl
Scores with each eval's 95% bootstrap interval over items, and each method's change from the
untrained student. (The finished share is results/smol/tables/finished.md, made by tropd aggregate.)
"""
import json
import sys

TASKS = ["gsm8k", "math500", "humanevalplus", "ifeval", "mmlu"]
rows = sys.argv[1:]


def metric(row: str, task: str) -> dict:
    with open(f"results/smol/evals/{row}/seed0/{task}.json") as f:
        d = json.load(f)
    return d["metrics"][d["primary"]]


m = {(r, t): metric(r, t) for r in rows for t in TASKS}
print("| Model | " + " | ".join(TASKS) + " |")
print("|---|" + "---:|" * len(TASKS))
for r in rows:
    cells = [f"{100 * m[r, t]['mean']:.1f} [{100 * m[r, t]['ci95'][0]:.1f}, {100 * m[r, t]['ci95'][1]:.1f}]"
             for t in TASKS]
    print(f"| {r} | " + " | ".join(cells) + " |")
print()
print("| Method | " + " | ".join(TASKS) + " |")
print("|---|" + "---:|" * len(TASKS))
for r in rows:
    if r in ("teacher", "student"):
        continue
    print(f"| {r} | " + " | ".join(f"{100 * (m[r, t]['mean'] - m['student', t]['mean']):+.1f}" for t in TASKS) + " |")
