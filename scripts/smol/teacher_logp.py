"""The teacher's mean log-prob per token of each row's greedy GSM8K completions (STAGES.md).

A one-off measurement beside the DAG, run from the repo root after the smol DAG:
    python scripts/smol/teacher_logp.py teacher student opd tropd topk_fkl
Scores the first 40 completions of results/smol/evals/<row>/seed0/gsm8k.samples.jsonl, each without
its prompt (the samples file holds completions only), in fp32.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("models/smol/teacher")
teacher = AutoModelForCausalLM.from_pretrained("models/smol/teacher", dtype=torch.float32).eval()
for row in sys.argv[1:]:
    with open(f"results/smol/evals/{row}/seed0/gsm8k.samples.jsonl") as f:
        completions = [json.loads(line)["completion"] for line in f][:40]
    total, n = 0.0, 0
    for text in completions:
        ids_1T = tok(text, return_tensors="pt").input_ids[:, :256]
        with torch.no_grad():
            logp_TV = teacher(ids_1T).logits[0, :-1].float().log_softmax(-1)
        total += float(logp_TV.gather(-1, ids_1T[0, 1:, None]).sum())
        n += ids_1T.shape[1] - 1
    print(f"{row}: teacher log-prob per token {total / n:.3f} over {n} tokens")
