"""Score the agreement sets with tropd and with the reference; print the disagreements per task.

    PYTHONPATH=.:tests python tests/agreement/measure.py [gsm8k math500 humaneval mbppplus ifeval]

Each side runs in its own interpreter (`side tropd TASK` / `side reference TASK` print one verdict
per item as JSON), so that neither sees what the other set up (NLTK data, patched modules).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from agreement import sets  # noqa: E402

DATASETS = {"humaneval": "humaneval", "mbppplus": "mbpp"}  # code task -> evalplus dataset


def code_slice(dataset: str, tmp: Path) -> Path:
    """The set's problems as an evalplus file of their own (ground truth in seconds)."""
    path = tmp / f"{dataset}_slice.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in sets.code_problems(dataset)))
    return path


def tropd_side(task: str, items: list[dict], tmp: Path) -> list:
    from tropd.eval.graders import code, ifeval, math

    if task in ("gsm8k", "math500"):
        kind = "gsm8k" if task == "gsm8k" else "boxed"
        return [r["correct"] for r in math.grade(kind, [(it["gold"], it["text"]) for it in items])]
    if task in DATASETS:
        ds = DATASETS[task]
        path = code_slice(ds, tmp)
        samples = [(it["task_id"], it["text"]) for it in items]
        res = code.check_evalplus(ds, path, samples, plus=False, cache=False,
                                  modes=[it["field"] for it in items])
        return [r["base"] for r in res]
    res = ifeval.grade_ifeval([(it["doc"], it["text"]) for it in items])
    return [[r["strict"], r["loose"]] for r in res]


def reference_side(task: str, items: list[dict], tmp: Path) -> list:
    from agreement import reference

    if task in ("gsm8k", "math500"):
        return [reference.math_verify(it["gold"], it["text"]) for it in items]
    if task in DATASETS:
        from tropd.eval.graders import code

        ds = DATASETS[task]
        path = code_slice(ds, tmp)
        problems, truth = code.load_problems(ds, path), code.ground_truth(ds, path)
        return reference.evalplus_verdicts(ds, problems, truth, items)
    return [list(reference.ifeval(it["doc"], it["text"])) for it in items]


def run_side(side: str, task: str) -> list:
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "TROPD_CACHE": os.environ.get("TROPD_CACHE", d)}
        out = subprocess.run([sys.executable, __file__, "side", side, task], capture_output=True, text=True,
                             env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(tasks: list[str]) -> None:
    for task in tasks:
        items = sets.SETS[task]()
        ours, ref = run_side("tropd", task), run_side("reference", task)
        diff = [it["id"] for it, a, b in zip(items, ours, ref) if a != b]
        line = f"{task}: {len(items)} items, {len(diff)} disagree with the reference"
        if "expect" in items[0]:
            wrong_t = sum(bool(a) != it["expect"] for it, a in zip(items, ours))
            wrong_r = sum(bool(b) != it["expect"] for it, b in zip(items, ref))
            line += f"; against the writer's intent: tropd {wrong_t} wrong, reference {wrong_r} wrong"
        print(line)
        for i in diff:
            print("   ", i)


if __name__ == "__main__":
    if sys.argv[1:2] == ["side"]:
        side, task = sys.argv[2], sys.argv[3]
        with tempfile.TemporaryDirectory() as d:
            fn = tropd_side if side == "tropd" else reference_side
            print(json.dumps(fn(task, sets.SETS[task](), Path(d))))
    else:
        main(sys.argv[1:] or list(sets.SETS))
