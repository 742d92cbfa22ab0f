"""TrOPD's guided rollouts, side by side: the teacher writing max_new_tokens and cut afterwards
(before df56157) against the teacher writing only the drawn prefix (now). STAGES.md, "Cost".

A one-off measurement beside the DAG, run from the repo root after `tropd prepare --config
configs/smol.yaml`:
    python scripts/smol/guided_rollout_bench.py
The smol models, 4 prompts x 4 rollouts of up to 256 tokens under bf16 autocast (as in training), at
steps 5, 15 and 25 of 30, the two variants interleaved. The token-id checksum shows that both
write the same rollouts.
"""
import time

import torch

from tropd.config import load_config
from tropd.data import load_prompts
from tropd.models import load_model, load_tokenizer
from tropd.catalog import get_method
from tropd.rollout import collect, make_backend

cfg = load_config("configs/smol.yaml", method="tropd")
tc = cfg.train
torch.set_num_threads(tc.num_threads)
tok = load_tokenizer(cfg.student)
prompts = load_prompts(cfg, tok)
backend = make_backend("hf", load_model(cfg.student, "student", trainable=True),
                       load_model(cfg.teacher, "teacher"), tok)
method = get_method("tropd")
params = method.parse_params(cfg.method.params)


class CutAfterwards:
    """The old behaviour: the teacher writes up to max_new_tokens; the prefix is cut to its length."""

    def sample(self, role, ps, max_new, seeds, temperature, top_p):
        if role != "teacher":
            return backend.sample(role, ps, max_new, seeds, temperature, top_p)
        full = backend.sample(role, ps, [tc.max_new_tokens] * len(ps), seeds, temperature, top_p)
        return [(t[:n], lp[:n], fin and n >= len(t)) for (t, lp, fin), n in zip(full, max_new)]


def timed(be, step):
    idx = prompts.indices(step, tc.prompts_per_step)
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = collect(method.behaviour(params), be, [prompts.prompt_tokens[i] for i in idx],
                    [prompts.reference_tokens[i] for i in idx], tc.rollouts_per_prompt, step=step,
                    total_steps=tc.steps, seed=cfg.seed, max_new_tokens=tc.max_new_tokens,
                    temperature=tc.temperature, top_p=tc.top_p, pad_id=tok.pad_token_id)
    return time.perf_counter() - t0, b


totals = {"before": 0.0, "now": 0.0}
for step in (5, 15, 25):
    for name, be in (("before", CutAfterwards()), ("now", backend)):
        dt, b = timed(be, step)
        totals[name] += dt
        print(f"step {step} {name:6s} {dt:5.1f} s  prefix_max {b.meta['prefix_max']:3d}  "
              f"prefix_len {b.meta['prefix_len']:5.1f}  token-id checksum {int(b.input_ids_BL.sum())}")
print({k: round(v, 1) for k, v in totals.items()})
