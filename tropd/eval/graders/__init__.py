"""Graders by family; `grade` and `summarize` dispatch on the task's grader name.

A grader turns (item, completion) pairs into one result dict per sample (JSON-serialisable, written
to the per-sample file) and per-item lists of those results into metrics {"name": {"mean", "ci95"}}.
"""
from __future__ import annotations

from pathlib import Path

from tropd.eval.tasks import Item, Task


def grade(task: Task, items: list[Item], samples: list[tuple[int, str]],
          modes: list[str] | None = None) -> list[dict]:
    """samples = [(item index, completion)] -> one result dict per sample, same order. `modes`: how
    each code sample came (graders.code.MODES; default "completion"), for evalplus tasks."""
    g = task.grader
    if g in ("gsm8k", "boxed"):
        from tropd.eval.graders import math

        return math.grade(g, [(items[i].ref["answer"], text) for i, text in samples])
    if g == "evalplus":
        from tropd.eval.graders import code

        path = Path(items[0].ref["path"])
        res = code.check_evalplus(task.evalplus, path, [(items[i].ref["task_id"], t) for i, t in samples],
                                  plus=task.plus, modes=modes)
        code.raise_if_nothing_ran(task.name, res)
        return res
    if g == "mbpp":
        from tropd.eval.graders import code

        res = code.check_mbpp([(text, items[i].ref) for i, text in samples])
        code.raise_if_nothing_ran(task.name, res)
        return res
    if g in ("ifeval", "ifbench"):
        from tropd.eval.graders import ifeval

        fn = ifeval.grade_ifeval if g == "ifeval" else ifeval.grade_ifbench
        return fn([(items[i].ref, text) for i, text in samples])
    if g == "mmlu":
        from tropd.eval.graders import mmlu

        return mmlu.grade_text([(items[i].ref, text) for i, text in samples])
    raise ValueError(f"unknown grader {g!r}")


def summarize(task: Task, per_item: list[list[dict]]) -> dict:
    """Metrics over items (each a list of its samples' results)."""
    g = task.grader
    if g in ("gsm8k", "boxed"):
        from tropd.eval.graders import math

        return math.summarize(per_item)
    if g == "evalplus":
        from tropd.eval.graders import code

        keys = [("base_", "base")] + ([("plus_", "plus")] if task.plus else [])
        return code.summarize(per_item, keys)
    if g == "mbpp":
        from tropd.eval.graders import code

        return code.summarize(per_item, [("", "status")])
    if g in ("ifeval", "ifbench"):
        from tropd.eval.graders import ifeval

        return ifeval.summarize(per_item, task.name)
    if g == "mmlu":
        from tropd.eval.graders import mmlu

        return mmlu.summarize(per_item)
    raise ValueError(f"unknown grader {g!r}")
