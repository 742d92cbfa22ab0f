"""Evaluation tasks: where each benchmark's data lives, how its items are read and prompted, and
which grader and headline metric it uses.

Real benchmarks are read from the vendored copies in `shared/benchmarks` (setting: env
TROPD_BENCHMARKS, default `<repo>/../shared/benchmarks`); the tiny synthetic tasks from the
profile's `paths.data`, in the same file formats (GSM8K, HumanEval+ with evalplus fields, IFEval)
so the same graders score them. An item's id is the dataset's own (task_id, unique_id, id, key) or
`<task>/<line index>` where the data has none.

Prompts for real benchmarks add the usual instruction (answer after '####', answer in \\boxed{},
code in a markdown block); the tiny tasks are prompted with the raw text the tiny models were
trained on. An evalplus item's ref keeps its raw prompt: `tropd eval` gives that to a model with no
chat template, to continue (evaluate.code_mode).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tropd.config import REPO_ROOT, RunConfig
from tropd.errors import UserError
from tropd.infra.io import read_jsonl

GSM8K_SUFFIX = '\nLet\'s think step by step and output the final answer after "####".'
BOXED_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
CODE_INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem "
                    "in a markdown code block:\n```\n{prompt}\n```\n")
MBPP_INSTRUCTION = ("You are an expert Python programmer, and here is your task: {text} Your code "
                    "should pass these tests:\n\n{tests}\n\nWrite the code in a markdown code block.")


@dataclass(frozen=True)
class Item:
    id: str
    prompt: str  # the user message (the chat template is applied at generation)
    ref: dict = field(default_factory=dict)  # what the grader needs (gold answer, tests, checkers)


@dataclass(frozen=True)
class Task:
    name: str
    domain: str  # "math" | "code" | "general" | "instruct"
    grader: str  # "gsm8k" | "boxed" | "evalplus" | "mbpp" | "ifeval" | "ifbench" | "mmlu"
    primary: str  # the headline metric's name in the summary
    path: Callable[[RunConfig | None], Path]
    load: Callable[[Path, "Task"], list[Item]]
    evalplus: str | None = None  # evalplus dataset ("humaneval" | "mbpp") for code tasks
    plus: bool = True  # code: run the extra (plus) inputs too
    # What `limit` keeps: "first" items in file order, or "spread": evenly spaced over the file, for
    # data sorted by something that matters (MMLU is sorted by subject: its first 500 questions are
    # 4 of its 57 subjects; 500 spread ones cover every subject in proportion).
    subset: str = "first"


def benchmarks_root() -> Path:
    env = os.environ.get("TROPD_BENCHMARKS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "benchmarks"


def _bench(rel: str) -> Callable[[RunConfig | None], Path]:
    def path(cfg: RunConfig | None) -> Path:
        p = benchmarks_root() / rel
        if not p.is_file():
            raise UserError(f"benchmark file not found: {p} (set TROPD_BENCHMARKS to the benchmarks folder)")
        return p
    return path


def _prepared(rel: str) -> Callable[[RunConfig | None], Path]:
    """A task whose data `tropd prepare` writes under the profile's paths.data (tiny_*, smol_*)."""
    def path(cfg: RunConfig | None) -> Path:
        if cfg is None:
            raise UserError("prepared tasks read <paths.data> from a config: pass --config")
        p = cfg.resolve(cfg.paths.data) / rel
        if not p.is_file():
            raise UserError(f"task data not found: {p} (profile '{cfg.profile}' is not prepared: run "
                            f"`tropd prepare --config {getattr(cfg, 'source', None) or '<profile yaml>'}`)")
        return p
    return path


def _rows(path: Path, need: tuple[str, ...]) -> list[dict]:
    rows = read_jsonl(path)
    for i, r in enumerate(rows):
        missing = [k for k in need if k not in r]
        if missing:
            raise UserError(f"{path}: item {i} lacks field(s) {', '.join(missing)}")
    if not rows:
        raise UserError(f"{path}: no items")
    return rows


def gsm8k_final(answer: str) -> str:
    """The gold number of a GSM8K answer: the text after the last '####'."""
    return answer.split("####")[-1].strip().replace(",", "")


def _load_gsm8k(path: Path, task: Task) -> list[Item]:
    """A gold with no number after its last '####' is an error (every answer would grade wrong)."""
    from tropd.eval.graders.math import gold_number

    suffix = "" if task.name.startswith("tiny_") else GSM8K_SUFFIX
    items = []
    for i, r in enumerate(_rows(path, ("question", "answer"))):
        gold = gsm8k_final(str(r["answer"]))
        if gold_number(gold) is None:
            raise UserError(f"{path}: item {i} ({task.name}/{i}): gold answer has no number after '####' "
                            f"(got {gold[-60:]!r})")
        items.append(Item(f"{task.name}/{i}", r["question"] + suffix, {"answer": gold}))
    return items


def _check_boxed_golds(path: Path, items: list[Item]) -> None:
    """Every gold of `items` must parse with math-verify as \\boxed{gold} (else every answer to it is
    graded wrong). Only the items an eval keeps are parsed, each once: grading reuses the parse."""
    from tropd.eval.graders.math import VERIFY_TIMEOUT_S, unparsable_golds

    bad = unparsable_golds([it.ref["answer"] for it in items])
    if bad:
        it = items[bad[0]]
        more = f" ({len(bad) - 1} more item(s) like it)" if len(bad) > 1 else ""
        raise UserError(f"{path}: item {it.id}: math-verify cannot parse the gold answer "
                        f"{it.ref['answer']!r} as \\boxed{{...}} (or took over {VERIFY_TIMEOUT_S} s){more}")


def _load_boxed(id_key: str) -> Callable[[Path, Task], list[Item]]:
    def load(path: Path, task: Task) -> list[Item]:
        return [Item(str(r[id_key]), r["problem"] + BOXED_SUFFIX, {"answer": str(r["answer"])})
                for r in _rows(path, (id_key, "problem", "answer"))]
    return load


def _load_evalplus(path: Path, task: Task) -> list[Item]:
    from tropd.eval.graders.code import load_problems

    problems = load_problems(task.evalplus, path)
    raw = task.name.startswith("tiny_")
    return [Item(tid, p["prompt"] if raw else CODE_INSTRUCTION.format(prompt=p["prompt"].strip()),
                 {"task_id": tid, "path": str(path), "prompt": p["prompt"]})
            for tid, p in problems.items()]


def _load_mbpp(path: Path, task: Task) -> list[Item]:
    items = []
    for r in _rows(path, ("task_id", "prompt", "test_list")):
        tests = "\n".join(r["test_list"])
        items.append(Item(str(r["task_id"]), MBPP_INSTRUCTION.format(text=r["prompt"], tests=tests),
                          {"tests": r["test_list"], "setup": "\n".join(r.get("test_imports", []))}))
    return items


def _load_ifeval(path: Path, task: Task) -> list[Item]:
    return [Item(str(r["key"]), r["prompt"],
                 {"key": r["key"], "prompt": r["prompt"], "instruction_id_list": r["instruction_id_list"],
                  "kwargs": r["kwargs"]})
            for r in _rows(path, ("key", "prompt", "instruction_id_list", "kwargs"))]


def _load_mmlu(path: Path, task: Task) -> list[Item]:
    items = []
    for i, r in enumerate(_rows(path, ("question", "choices", "answer"))):
        gold = r.get("answer_index", r["answer"])
        idx = gold if "answer_index" in r else {c: j for j, c in enumerate("ABCD")}.get(str(gold).strip())
        if type(idx) is not int or not 0 <= idx < 4:  # an unknown letter must not index LETTERS (-1 is "D")
            raise UserError(f"{path}: item {i}: gold answer {gold!r} is not one of A-D (answer_index 0-3)")
        items.append(Item(f"{task.name}/{i}", r["question"],
                          {"question": r["question"], "choices": r["choices"], "answer_index": idx,
                           "subject": r.get("subject", "")}))
    return items


_T = Task
TASKS: dict[str, Task] = {t.name: t for t in [
    _T("gsm8k", "math", "gsm8k", "acc", _bench("gsm8k/test.jsonl"), _load_gsm8k),
    _T("math500", "math", "boxed", "acc", _bench("math500/test.jsonl"), _load_boxed("unique_id")),
    _T("aime24", "math", "boxed", "acc", _bench("aime24/test.jsonl"), _load_boxed("id")),
    _T("aime25", "math", "boxed", "acc", _bench("aime25/test.jsonl"), _load_boxed("id")),
    _T("humaneval", "code", "evalplus", "base_pass@1", _bench("humanevalplus/HumanEvalPlus.jsonl.gz"),
       _load_evalplus, evalplus="humaneval", plus=False),
    _T("humanevalplus", "code", "evalplus", "plus_pass@1", _bench("humanevalplus/HumanEvalPlus.jsonl.gz"),
       _load_evalplus, evalplus="humaneval"),
    _T("mbpp", "code", "mbpp", "pass@1", _bench("mbpp/sanitized-mbpp.jsonl"), _load_mbpp),
    _T("mbppplus", "code", "evalplus", "plus_pass@1", _bench("mbppplus/MbppPlus.jsonl.gz"),
       _load_evalplus, evalplus="mbpp"),
    _T("ifeval", "instruct", "ifeval", "prompt_strict", _bench("ifeval/input_data.jsonl"), _load_ifeval),
    _T("ifbench", "instruct", "ifbench", "prompt_strict", _bench("ifbench/IFBench_test.jsonl"), _load_ifeval),
    _T("mmlu", "general", "mmlu", "acc", _bench("mmlu/test.jsonl.gz"), _load_mmlu, subset="spread"),
    _T("tiny_math", "math", "gsm8k", "acc", _prepared("math/test.jsonl"), _load_gsm8k),
    _T("tiny_code", "code", "evalplus", "plus_pass@1", _prepared("code/test.jsonl"), _load_evalplus,
       evalplus="humaneval"),
    # The smol profile's distillation task (tropd/wordprob.py): GSM8K-format word problems, graded
    # as GSM8K, asked with GSM8K's prompt.
    _T("smol_wordprob", "math", "gsm8k", "acc", _prepared("wordprob/test.jsonl"), _load_gsm8k),
    _T("smol_wordprob_dev", "math", "gsm8k", "acc", _prepared("wordprob/dev.jsonl"), _load_gsm8k),
    _T("tiny_instruct", "instruct", "ifeval", "prompt_strict", _prepared("instruct/test.jsonl"), _load_ifeval),
]}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task '{name}' (tasks: {', '.join(TASKS)})")
    return TASKS[name]


def load_items(task: Task, cfg: RunConfig | None, limit: int = 0) -> list[Item]:
    """The task's items in file order; `limit` > 0 keeps `limit` of them, chosen by `task.subset`:
    the first ones, or ones evenly spaced over the file (item i * n // limit), in file order.
    Gold answers that cannot be graded raise UserError naming the file and item: GSM8K-format ones
    for every item of the file, \\boxed{} ones (math-verify parsing, the costly check) for the kept
    items."""
    path = task.path(cfg)
    items = task.load(path, task)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise UserError(f"{path}: duplicate item ids")
    if limit > 0 and limit < len(items):
        spread = task.subset == "spread"
        items = [items[i * len(items) // limit] for i in range(limit)] if spread else items[:limit]
    if task.grader == "boxed":
        _check_boxed_golds(path, items)
    return items
