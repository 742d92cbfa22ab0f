"""A quick look at the prepared pair: is the teacher better, and do the student's samples fall
where the teacher puts little mass? (The two properties the tiny profile exists to have.)

Indicative numbers written beside the models (`probe.json`), not the benchmark scores: those come
from `tropd eval` with the real graders. Greedy accuracy on the held-out sets (math: final number
after `####`; code: the test's `check` run in a separate, resource-limited process; instruct:
lm-eval's IFEval checkers, strict), and the teacher's mean log-prob of tokens sampled (T=1) by the
student vs by the teacher itself on training prompts.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import subprocess
import sys
from collections.abc import Sequence

import torch

from tropd.rollout.hf import decode
from tropd.infra.seeding import derive_seed
from tropd.tiny.tokenizer import encode_pair

# Runs in a child interpreter: each program gets a fresh namespace, a CPU-time alarm, and the
# child as a whole a memory cap; one failing program cannot stop the others.
_CHILD = r"""
import json, resource, signal, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
def _alarm(*_): raise TimeoutError()
signal.signal(signal.SIGALRM, _alarm)
out = []
for prog in json.load(sys.stdin):
    ok = False
    try:
        signal.alarm(2)
        ns = {}
        exec(prog["code"], ns)
        ns["check"](ns[prog["entry_point"]])
        ok = True
    except BaseException:
        ok = False
    finally:
        signal.alarm(0)
    out.append(ok)
sys.stdout.write(json.dumps(out))
"""


def run_code_tests(programs: Sequence[dict], timeout_s: float = 120.0) -> list[bool]:
    """Pass/fail of {"code", "entry_point"} programs (code defines the function and `check`)."""
    if not programs:
        return []
    try:
        res = subprocess.run([sys.executable, "-I", "-c", _CHILD], input=json.dumps(list(programs)),
                             capture_output=True, text=True, timeout=timeout_s, cwd="/tmp")
        return [bool(x) for x in json.loads(res.stdout)]
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        return [False] * len(programs)


@functools.cache
def _ifeval_registry():
    """lm-eval's IFEval checkers. Importing them tries to download an nltk tokenizer that the
    checkers used here never need; its failure messages are noise in prepare's log."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from lm_eval.tasks.ifeval import instructions_registry
    return instructions_registry


def ifeval_follows(record: dict, response: str) -> bool:
    """Strict IFEval prompt-level check with lm-eval's own instruction checkers."""
    instructions_registry = _ifeval_registry()
    if not response.strip():
        return False
    for iid, kw in zip(record["instruction_id_list"], record["kwargs"]):
        checker = instructions_registry.INSTRUCTION_DICT[iid](iid)
        checker.build_description(**{k: v for k, v in kw.items() if v})
        if not checker.check_following(response):
            return False
    return True


def completions(model, tok, prompts: list[str], max_new: int, temperature: float = 0.0,
                seed: int = 0) -> list[str]:
    """Decoded completions of user messages (eos and padding dropped)."""
    ids = [encode_pair(tok, p, "")[0] for p in prompts]
    out = decode([model], ids, [max_new] * len(ids), [derive_seed(seed, "probe", i) for i in range(len(ids))],
                 {tok.eos_token_id}, tok.pad_token_id, temperature=temperature)
    return [tok.decode([t for t in toks if t != tok.eos_token_id], skip_special_tokens=True)
            for toks, _, _ in out]


def accuracy(domain: str, records: list[dict], outputs: list[str]) -> float:
    from tropd.tiny.math_task import final_number

    if not records:
        return float("nan")
    if domain == "math":
        ok = [final_number(o) is not None and final_number(o) == final_number(r["answer"])
              for r, o in zip(records, outputs)]
    elif domain == "code":
        ok = run_code_tests([{"code": r["prompt"] + o + r["test"], "entry_point": r["entry_point"]}
                             for r, o in zip(records, outputs)])
    else:
        ok = [ifeval_follows(r, o) for r, o in zip(records, outputs)]
    return sum(ok) / len(ok)


@torch.no_grad()
def teacher_logp_of_samples(teacher, sampler, tok, prompts: list[str], max_new: int, seed: int) -> dict:
    """Teacher log-probs of tokens the `sampler` model writes at T=1 (per-token mean and the share
    of tokens below probability 0.01)."""
    ids = [encode_pair(tok, p, "")[0] for p in prompts]
    seeds = [derive_seed(seed, "probe-sample", i) for i in range(len(ids))]
    rolls = decode([sampler], ids, [max_new] * len(ids), seeds, {tok.eos_token_id}, tok.pad_token_id,
                   temperature=1.0)
    total, low, n = 0.0, 0, 0
    for p, (toks, _, _) in zip(ids, rolls):
        if not toks:
            continue
        seq = torch.tensor([p + toks])
        logp_TV = teacher(input_ids=seq).logits[0, len(p) - 1 : -1].float().log_softmax(-1)
        lp_T = logp_TV.gather(-1, torch.tensor(toks)[:, None]).squeeze(-1)
        total += float(lp_T.sum())
        low += int((lp_T < torch.log(torch.tensor(0.01))).sum())
        n += len(toks)
    return {"mean_teacher_logp": total / max(n, 1), "frac_below_0.01": low / max(n, 1), "tokens": n}


def probe(teacher, student, tok, tests: dict[str, list[dict]], prompts_of: dict[str, list[str]],
          train_prompts: dict[str, list[str]], max_new: int, seed: int) -> dict:
    """Accuracy of both models per domain, and the teacher log-prob of student vs teacher samples."""
    report: dict = {"accuracy": {}, "teacher_logp": {}}
    for domain, records in tests.items():
        row = {}
        for name, model in (("teacher", teacher), ("student", student)):
            outs = completions(model, tok, prompts_of[domain], max_new)
            row[name] = accuracy(domain, records, outs)
        report["accuracy"][domain] = row
    prompts = [p for d in train_prompts for p in train_prompts[d]]
    for name, model in (("teacher_samples", teacher), ("student_samples", student)):
        report["teacher_logp"][name] = teacher_logp_of_samples(teacher, model, tok, prompts, max_new, seed)
    return report
