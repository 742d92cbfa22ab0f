"""Does OPD's reward favour repetition? The K1 reward on repeated and on new tokens (STAGES.md).

A one-off measurement beside the DAG, run from the repo root after `tropd prepare --config
configs/smol.yaml`:
    python scripts/smol/repeat_reward.py [STEPS] [key=value config overrides...]
It draws the rollouts of the first STEPS (default 8) training steps exactly as the smol OPD run does
(same prompts, seeds, temperature 1.0, 256 new tokens), scores them with the teacher, and splits the
sampled tokens into *repeats* (the 4-gram ending at the token already occurred earlier in the same
response) and *new* tokens. For each class it prints the mean K1 reward log pi_T - log pi_S (the
per-token advantage OPD multiplies into grad log pi_S), both log-probs, and the share of all
positive reward. A higher mean reward on repeats than on new tokens means that OPD's update (which
lowers each sampled token's probability in proportion to its negative reward) moves mass towards
repetition: the loops are what the objective asks for, not an optimisation accident.
`student.path=DIR` measures a distilled student instead; `train.dtype=float32 teacher.dtype=float32`
on CPUs without bf16 units.
"""
import sys

import torch

from tropd.config import load_config
from tropd.data import load_prompts
from tropd.models import load_model, load_tokenizer
from tropd.rollout import collect, make_backend
from tropd.rollout.policies import Student
from tropd.scoring import teacher_score

N = 4  # n-gram length that defines a repeat


def repeats_BT(ids_BT: torch.Tensor, mask_BT: torch.Tensor) -> torch.Tensor:
    """True where the N-gram ending at t already ended at some t' < t in the same row."""
    out = torch.zeros_like(mask_BT)
    for b in range(ids_BT.shape[0]):
        seq = ids_BT[b, : int(mask_BT[b].sum())].tolist()
        seen = set()
        for t in range(N - 1, len(seq)):
            gram = tuple(seq[t - N + 1 : t + 1])
            out[b, t] = gram in seen
            seen.add(gram)
    return out


def main(steps: int, overrides: list[str]) -> None:
    cfg = load_config("configs/smol.yaml", method="opd", overrides=overrides)
    tc = cfg.train
    torch.set_num_threads(tc.num_threads or 2)
    tok = load_tokenizer(cfg.student)
    prompts = load_prompts(cfg, tok)
    student = load_model(cfg.student, "student")
    teacher = load_model(cfg.teacher, "teacher")
    backend = make_backend("hf", student, teacher, tok)
    acc = {c: {"n": 0, "k1": 0.0, "t": 0.0, "s": 0.0, "pos": 0.0} for c in ("repeat", "new")}
    finished, rows = 0, 0
    for step in range(steps):
        idx = prompts.indices(step, tc.prompts_per_step)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=tc.dtype == "bfloat16"):
            batch = collect(Student(), backend, [prompts.prompt_tokens[i] for i in idx],
                            [prompts.reference_tokens[i] for i in idx], tc.rollouts_per_prompt,
                            step=step, total_steps=tc.steps, seed=cfg.seed, max_new_tokens=tc.max_new_tokens,
                            temperature=tc.temperature, top_p=tc.top_p, pad_id=tok.pad_token_id)
            t_lp = teacher_score(teacher, batch, tc.topk, tc.chunk_size)["teacher_logp_BT"]
        s_lp = batch.behav_logp_BT  # what OPD's k1_reward subtracts
        P = batch.prompt_width
        ids_BT = batch.input_ids_BL[:, P : P + batch.response_width]
        mask_BT = batch.response_mask_BT
        rep_BT = repeats_BT(ids_BT, mask_BT)
        k1_BT = t_lp - s_lp
        for name, sel_BT in (("repeat", mask_BT & rep_BT), ("new", mask_BT & ~rep_BT)):
            a = acc[name]
            a["n"] += int(sel_BT.sum())
            a["k1"] += float(k1_BT[sel_BT].sum())
            a["t"] += float(t_lp[sel_BT].sum())
            a["s"] += float(s_lp[sel_BT].sum())
            a["pos"] += float(k1_BT[sel_BT].clamp_min(0).sum())
        finished += int(batch.finished_B.sum())
        rows += batch.size
        print(f"step {step}: {batch.size} rollouts, repeats {acc['repeat']['n']} / new {acc['new']['n']}",
              file=sys.stderr)
    total_pos = sum(a["pos"] for a in acc.values())
    print(f"student {cfg.student.path}, {rows} rollouts ({finished / rows:.0%} finished), {N}-gram repeats")
    print("| tokens | share | mean K1 reward | teacher log-prob | student log-prob "
          "| share of positive reward |")
    print("|---|---:|---:|---:|---:|---:|")
    n_all = sum(a["n"] for a in acc.values())
    for name, a in acc.items():
        n = max(a["n"], 1)
        print(f"| {name} | {a['n'] / n_all:.1%} | {a['k1'] / n:+.3f} | {a['t'] / n:.3f} | {a['s'] / n:.3f} "
              f"| {a['pos'] / max(total_pos, 1e-9):.1%} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8, sys.argv[2:])
