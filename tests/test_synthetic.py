"""The tiny profile's synthetic tasks: deterministic, in the real benchmark formats, and correct
(math references add up, canonical code passes its tests, instruct references pass lm-eval's
IFEval checkers), with held-out items never seen in training."""
from __future__ import annotations

import re

import pytest

from tropd.tiny.code_task import run_function
from tropd.tiny.math_task import final_number
from tropd.tiny.probe import ifeval_follows, run_code_tests
from tropd.tiny.synthetic import generate, held_out_rows, train_rows

DOMAINS = ["math", "code", "instruct"]


@pytest.fixture(scope="module")
def items():
    return {d: generate(d, seed=0, n_train=150, n_test=40) for d in DOMAINS}


@pytest.mark.parametrize("domain", DOMAINS)
def test_generators_are_deterministic_and_seeded(domain):
    assert generate(domain, 3, 30, 10) == generate(domain, 3, 30, 10)
    assert generate(domain, 3, 30, 10) != generate(domain, 4, 30, 10)


@pytest.mark.parametrize("domain", DOMAINS)
def test_train_and_test_prompts_are_unique_and_disjoint(items, domain):
    train, test = items[domain]
    train_p, test_p = [it.prompt for it in train], [it.prompt for it in test]
    assert len(set(train_p)) == len(train_p) == 150 and len(set(test_p)) == len(test_p) == 40
    assert not set(train_p) & set(test_p)
    # The test set depends only on (seed, n_test), not on how many training items are drawn.
    assert generate(domain, 0, 10, 40)[1] == test


def test_train_rows_schema(items):
    rows = train_rows(items["math"][0]) + train_rows(items["code"][0])
    assert all(set(r) == {"id", "domain", "prompt", "reference"} for r in rows)
    assert rows[0]["id"] == "math/0" and rows[150]["id"] == "code/0"


def test_math_rows_are_gsm8k_and_add_up(items):
    rows = held_out_rows("math", items["math"][1])
    for row, it in zip(rows, items["math"][1]):
        assert set(row) == {"question", "answer"} and row["question"] == it.prompt
        *steps, last = row["answer"].split("\n")
        assert re.fullmatch(r"#### -?\d+", last)
        for line in steps:  # every worked step is a true equation
            left, right = line.split("=")
            assert eval(left) == int(right)  # noqa: S307 - our own generated arithmetic
        assert final_number(row["answer"]) == steps[-1].split("=")[1]
        assert final_number(it.alt) == final_number(it.answer) and "\n" not in it.alt
    assert final_number("7+5=12\n#### 1,200.") == "1200" and final_number("12") is None


def test_code_rows_are_evalplus_and_canonical_solutions_pass(items):
    tests = items["code"][1]
    rows = held_out_rows("code", tests)
    fields = {"task_id", "prompt", "entry_point", "canonical_solution", "test", "contract",
              "base_input", "plus_input", "atol"}
    programs = []
    for i, row in enumerate(rows):
        assert set(row) == fields and row["task_id"] == f"TinyCode/{i}" and row["contract"] == ""
        assert row["prompt"].startswith(f"def {row['entry_point']}(") and row["prompt"].endswith('"""\n')
        assert "def check(candidate):" in row["test"] and row["atol"] == 0
        assert all(isinstance(a, list) for a in row["base_input"] + row["plus_input"])
        fn = run_function(row["prompt"] + row["canonical_solution"], row["entry_point"])
        for args in row["plus_input"]:  # plus inputs run on the canonical solution
            fn(*args)
        programs.append({"code": row["prompt"] + row["canonical_solution"] + row["test"],
                         "entry_point": row["entry_point"]})
    # The other style is valid too; a wrong body fails (the checker can say no).
    programs += [{"code": it.prompt + it.alt + r["test"], "entry_point": r["entry_point"]}
                 for it, r in zip(tests, rows)]
    programs.append({"code": rows[0]["prompt"] + "    return None\n" + rows[0]["test"],
                     "entry_point": rows[0]["entry_point"]})
    ok = run_code_tests(programs)
    assert ok == [True] * (2 * len(rows)) + [False]


def test_instruct_rows_are_ifeval_and_references_pass_lm_eval_checkers(items):
    from lm_eval.tasks.ifeval import instructions_registry
    from lm_eval.tasks.ifeval import utils as ifeval_utils

    tests = items["instruct"][1] + items["instruct"][0]
    rows = held_out_rows("instruct", tests)
    seen = set()
    for i, (row, it) in enumerate(zip(rows, tests)):
        assert set(row) == {"key", "prompt", "instruction_id_list", "kwargs"} and row["key"] == 1000 + i
        assert len(row["kwargs"]) == len(row["instruction_id_list"]) >= 1
        assert all(iid in instructions_registry.INSTRUCTION_DICT for iid in row["instruction_id_list"])
        seen.update(row["instruction_id_list"])
        assert ifeval_follows(row, it.answer), (row, it.answer)
        assert not ifeval_follows(row, it.alt), (row, it.alt)  # the other style ignores the rules
        example = ifeval_utils.InputExample(**row)  # lm-eval's own strict prompt-level scorer
        assert ifeval_utils.test_instruction_following_strict(example, it.answer).follow_all_instructions
    assert len(seen) == 7  # every rule family occurs


def test_code_rows_pass_evalplus_own_checker(items, tmp_path):
    """evalplus (the real grader) accepts the file and scores canonical / wrong bodies right."""
    import json
    import os
    import subprocess
    import sys

    from tropd.infra.io import atomic_write_jsonl

    atomic_write_jsonl(tmp_path / "code.jsonl", held_out_rows("code", items["code"][1][:8]))
    script = """
import json
from evalplus.data import get_human_eval_plus, get_human_eval_plus_hash
from evalplus.evaluate import check_correctness, get_groundtruth
probs = get_human_eval_plus()
gt = get_groundtruth(probs, get_human_eval_plus_hash(), [])
out = []
for i, (tid, p) in enumerate(probs.items()):
    for body in (p["canonical_solution"], "    return None\\n"):
        r = check_correctness("humaneval", i, p, p["prompt"] + body, gt[tid], fast_check=True)
        out.append([r["base"][0], r["plus"][0]])
print(json.dumps(out))
"""
    env = {**os.environ, "HUMANEVAL_OVERRIDE_PATH": str(tmp_path / "code.jsonl"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    statuses = json.loads(res.stdout.strip().splitlines()[-1])
    assert statuses[0::2] == [["pass", "pass"]] * 8
    assert all(s == ["fail", "fail"] for s in statuses[1::2])
