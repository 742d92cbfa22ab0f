"""Synthetic GSM8K-style word problems: one to three arithmetic steps with small numbers.

Teacher style: one equation per step, then `#### N` (GSM8K's final-answer line), e.g.
`7+5=12\n12-3=9\n#### 9`. Other style (the student's `mismatch` share): the bare `#### N`.

Why three-step problems: a bare answer needs the whole computation in one token position. For one
and two steps with operands 2..6 a 0.3M-parameter model simply memorises the answer table (it has
a few dozen entries per kind; measured: a student trained 850 steps answered two-step problems
bare at 62%, within 8 points of its worked solutions). With three steps the table has hundreds of
entries per kind, most never seen in training, so a bare answer has to generalise and a tiny
model cannot, while a worked solution still needs only one small fact per line. The other style
is then far from the teacher (its first token has teacher probability ~1e-4) *and* clearly
weaker, and the student's own worked arithmetic is what distillation can bring out.
"""
from __future__ import annotations

import random

from tropd.tiny.item import Item

NAMES = ["Ann", "Bob", "Tom", "Sam", "Eva", "Max", "Mia", "Leo", "Zoe", "Ben", "Kim", "Ali"]
THINGS = ["pens", "cards", "eggs", "books", "coins", "cups", "hats", "toys", "nuts", "cars"]


def _steps(kind: str, r: random.Random) -> tuple[str, list[tuple[int, str, int, int]]]:
    """A question template and its steps [(left, op, right, result), ...].

    Numbers stay small (every operand 2..6 against results up to 26), so the arithmetic facts a
    step needs are few enough for a 0.5M-parameter model to learn in a few hundred SFT steps;
    the difficulty is in chaining the steps.
    """
    d = lambda: r.randint(2, 6)  # noqa: E731
    if kind == "add":
        a, b = d(), d()
        return f"{{n}} has {a} {{t}}, gets {b} more. How many now?", [(a, "+", b, a + b)]
    if kind == "sub":
        a = r.randint(5, 12)
        b = r.randint(2, min(6, a - 1))
        return f"{{n}} has {a} {{t}}, loses {b}. How many left?", [(a, "-", b, a - b)]
    if kind == "mul":
        a, b = d(), d()
        return f"{{n}} buys {a} bags of {b} {{t}}. How many {{t}}?", [(a, "*", b, a * b)]
    if kind == "add_sub":
        a, b = d(), d()
        c = r.randint(2, min(6, a + b - 1))
        return (f"{{n}} has {a} {{t}}, gets {b}, loses {c}. How many left?",
                [(a, "+", b, a + b), (a + b, "-", c, a + b - c)])
    if kind == "mul_add":
        a, b, c = r.randint(2, 4), r.randint(2, 5), d()
        return (f"{{n}} buys {a} bags of {b} {{t}}, finds {c}. How many now?",
                [(a, "*", b, a * b), (a * b, "+", c, a * b + c)])
    if kind == "mul_sub":
        a, b = r.randint(2, 4), r.randint(2, 5)
        c = r.randint(2, min(6, a * b - 1))
        return (f"{{n}} buys {a} bags of {b} {{t}}, loses {c}. How many left?",
                [(a, "*", b, a * b), (a * b, "-", c, a * b - c)])
    if kind == "mul_add_sub":
        a, b, c = r.randint(2, 4), r.randint(2, 5), d()
        e = r.randint(2, min(6, a * b + c - 1))
        return (f"{{n}} buys {a} bags of {b} {{t}}, finds {c}, loses {e}. How many left?",
                [(a, "*", b, a * b), (a * b, "+", c, a * b + c), (a * b + c, "-", e, a * b + c - e)])
    if kind == "add_sub_add":
        a, b = d(), d()
        c = r.randint(2, min(6, a + b - 1))
        e = d()
        return (f"{{n}} has {a} {{t}}, gets {b}, loses {c}, gets {e}. How many now?",
                [(a, "+", b, a + b), (a + b, "-", c, a + b - c), (a + b - c, "+", e, a + b - c + e)])
    if kind == "more":
        a, b = d(), d()
        return (f"{{n}} has {a} {{t}}. {{m}} has {b} more. How many in all?",
                [(a, "+", b, a + b), (a, "+", a + b, 2 * a + b)])
    raise ValueError(kind)


KINDS = ["add", "sub", "mul", "add_sub", "mul_add", "mul_sub", "more", "mul_add_sub", "add_sub_add"]


def make_item(r: random.Random) -> Item:
    template, steps = _steps(r.choice(KINDS), r)
    n, m = r.sample(NAMES, 2)
    question = template.format(n=n, m=m, t=r.choice(THINGS))
    final = steps[-1][3]
    work = "\n".join(f"{x}{op}{y}={z}" for x, op, y, z in steps)
    answer = f"{work}\n#### {final}"
    return Item(
        domain="math", prompt=question, answer=answer, alt=f"#### {final}",
        record={"question": question, "answer": answer},
    )


def final_number(text: str) -> str | None:
    """The number after the last `####` (GSM8K's convention), without commas or `$`."""
    if "####" not in text:
        return None
    tail = text.rsplit("####", 1)[1].strip().replace(",", "").replace("$", "")
    num = tail.split()[0] if tail.split() else ""
    return num.rstrip(".") or None
