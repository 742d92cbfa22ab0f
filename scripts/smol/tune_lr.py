"""The smol profile's shared learning rate, tuned on OPD only (the fairness rule), on the dev problems.

    python scripts/smol/tune_lr.py [LR ...]        (repo root, after `tropd prepare --config configs/smol.yaml`)

Trains OPD, seed 0, at each learning rate for configs/smol.yaml's train.steps, evaluating greedy
accuracy on `smol_wordprob_dev` (the gate's held-out problems, never in the tables) every 15 steps,
and writes results/smol/tables/tuning.md. Rule, fixed before the runs: the learning rate with the
highest final dev accuracy; a tie goes to the smaller one. The winner goes into configs/smol.yaml by
hand; nothing else is tuned, and no other method is run here.
"""
import json
import subprocess
import sys
from pathlib import Path

LRS = [float(x) for x in sys.argv[1:]] or [1e-5, 1e-4]
OUT = Path("results/smol/tune")  # run folders, git-ignored
rows = []
for lr in LRS:
    out = OUT / f"opd-lr{lr:g}"
    subprocess.run(["tropd", "train", "--config", "configs/smol.yaml", "--method", "opd", "--seed", "0",
                    "--out", str(out), f"train.lr={lr}", "train.eval_every=15",
                    "train.eval_tasks=[smol_wordprob_dev]"], check=True)
    curve = [(m["step"], m["heldout_smol_wordprob_dev"]) for m in map(json.loads, open(out / "metrics.jsonl"))
             if "heldout_smol_wordprob_dev" in m]
    steps = list(map(json.loads, open(out / "metrics.jsonl")))
    wall = sum(v for m in steps for k, v in m.items() if k.startswith("time_"))  # steps and dev evals
    rows.append((lr, curve, wall))
best = max(rows, key=lambda r: (r[1][-1][1], -r[0]))
lines = ["# Shared learning rate of the smol profile, tuned on OPD (seed 0)", "",
         "Made by `python scripts/smol/tune_lr.py " + " ".join(f"{x:g}" for x in LRS) + "`. Greedy accuracy "
         "(%) of OPD's student on the 64 dev problems (`smol_wordprob_dev`: the gate's problems, neither "
         "trained on nor in the tables) during training. Rule, fixed before the runs: the highest final "
         "dev accuracy wins, a tie goes to the smaller lr. Nothing else was tuned; no other method ran.", "",
         "| lr | " + " | ".join(f"step {s + 1}" for s, _ in rows[0][1]) + " | wall s |",
         "|---|" + "---:|" * (len(rows[0][1]) + 1)]
lines += [f"| {lr:g}{' (chosen)' if lr == best[0] else ''} | " + " | ".join(f"{100 * v:.1f}" for _, v in c)
          + f" | {w:.0f} |" for lr, c, w in rows]
Path("results/smol/tables").mkdir(parents=True, exist_ok=True)
Path("results/smol/tables/tuning.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
