"""The smol profile's word problems (tropd/wordprob.py): every worked solution is correct arithmetic
that ends in the gold answer, both styles grade as GSM8K answers, and the draw is seeded."""
from __future__ import annotations

import re

from tropd import wordprob
from tropd.eval.graders.math import gsm8k_correct, gsm8k_extract
from tropd.eval.tasks import gsm8k_final

EQ = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def test_every_step_is_correct_and_the_last_result_is_the_answer():
    rows = wordprob.make(seed=0, n=900)
    assert {r["kind"] for r in rows} == set(wordprob.KINDS)
    for r in rows:
        *steps, final = r["answer"].split("\n")
        gold = int(final.removeprefix("#### "))
        assert final == f"#### {gold}" and r["alt"] == final and gold >= 0
        results = []
        for line in steps:
            (a, op, b, c), = EQ.findall(line)  # one equation per sentence
            a, b, c = int(a), int(b), int(c)
            assert {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op] == c, line
            results.append(c)
        assert results[-1] == gold and 2 <= len(steps) <= 3
        assert not re.search(r"\{|\}", r["question"])  # no unfilled template field


def test_both_styles_grade_right_with_the_gsm8k_grader():
    for r in wordprob.make(seed=1, n=20):
        gold = gsm8k_final(r["answer"])
        assert gsm8k_correct(gold, gsm8k_extract(r["answer"])) and gsm8k_correct(gold, gsm8k_extract(r["alt"]))


def test_seeded_and_distinct():
    rows = wordprob.make(5, 2000)
    assert wordprob.make(5, 50) == rows[:50] != wordprob.make(6, 50)
    assert len({r["question"] for r in rows}) == 2000
