"""MMLU: log-likelihood multiple choice through lm-eval, on the in-memory model, offline.

`tropd eval --task mmlu` writes the chosen items (the first --limit of the test file) as a local
JSONL with a local lm-eval YAML task beside it (lm-eval's own MMLU prompt: the question, the four
options lettered A-D, "Answer:", zero-shot; the choice is the letter with the highest
log-likelihood), runs `lm_eval.simple_evaluate` with `HFLM(pretrained=<model object>)` and a
TaskManager that only sees that folder, and reads lm-eval's per-sample log. The folder (with the
datasets cache of that JSONL) is temporary. Nothing reaches a hub: the offline variables are set
by tropd.models and the data is a local file.

`tropd score --task mmlu` grades text answers instead: the letter a completion gives.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

from tropd.eval import stats

LETTERS = "ABCD"
TASK_NAME = "tropd_mmlu"
_YAML = """task: {name}
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files: {{test: {data}}}
  cache_dir: {cache}
test_split: test
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {{{{subject_name}}}}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\nC. {{{{choices[2]}}}}\\nD. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer_index
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
metadata: {{version: 1.0}}
"""
# Only answer-like forms count: a capital A-D elsewhere is a word ("A good answer ...") or a mention
# ("Options B and C ..."), and guessing from it would score noise. The letter itself is case-sensitive
# ("the answer is a ..." is an article).
_ALONE = re.compile(r"\(?([ABCD])\)?[.:)]?")  # the whole completion: "B", "(B)", "B.", "B)"
_ANSWER = re.compile(r"(?i:answer)(?:\s+is)?\s*[:：]?\s*\(?([ABCD])\b")  # "answer is (X)", "Answer: X"
_LEADING = re.compile(r"(?:\(([ABCD])\)|([ABCD])[.)])(?=\s|$)")  # "(X) ...", "X. ...", "X) ..."


def letter(completion: str) -> str | None:
    """The option letter a text answer gives, or None (scored wrong): the completion is just the
    letter, else the first 'answer is X' / 'Answer: X', else a leading "X." / "(X)" / "X)"."""
    s = completion.strip()
    m = _ALONE.fullmatch(s) or _ANSWER.search(s) or _LEADING.match(s)
    return next(g for g in m.groups() if g) if m else None


def grade_text(pairs: list[tuple[dict, str]]) -> list[dict]:
    out = []
    for ref, completion in pairs:
        pred, gold = letter(completion), LETTERS[ref["answer_index"]]
        out.append({"gold": gold, "pred": pred, "correct": pred == gold})
    return out


def loglik_eval(model, tok, items, batch_size: int, seed: int) -> list[dict]:
    """Per item {"gold", "pred", "correct", "loglik": [4]} from lm-eval's log-likelihood scoring."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="tropd-mmlu-") as tmp:
        tmp = Path(tmp)
        data = tmp / "test.jsonl"
        rows = [{"tropd_id": it.id, "question": it.ref["question"], "choices": it.ref["choices"],
                 "answer_index": it.ref["answer_index"],
                 "subject_name": it.ref["subject"].replace("_", " ")} for it in items]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp / f"{TASK_NAME}.yaml").write_text(
            _YAML.format(name=TASK_NAME, data=json.dumps(str(data)), cache=json.dumps(str(tmp / "hf"))))
        with redirect_stdout(sys.stderr):
            lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)
            tm = TaskManager(include_path=str(tmp), include_defaults=False)
            res = lm_eval.simple_evaluate(
                model=lm, tasks=[TASK_NAME], task_manager=tm, num_fewshot=0, log_samples=True,
                bootstrap_iters=0, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                fewshot_random_seed=seed)
    by_id = {}
    for s in res["samples"][TASK_NAME]:
        lls = [float(r[0]) for r in s["filtered_resps"]]
        gold = int(s["target"])
        pred = max(range(len(lls)), key=lls.__getitem__)
        by_id[s["doc"]["tropd_id"]] = {"gold": LETTERS[gold], "pred": LETTERS[pred],
                                      "correct": pred == gold, "loglik": lls}
    return [by_id[it.id] for it in items]


def summarize(per_item: list[list[dict]]) -> dict:
    return {"acc": stats.mean_ci([sum(r["correct"] for r in s) / len(s) for s in per_item])}
