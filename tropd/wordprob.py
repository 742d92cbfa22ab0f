"""Multi-step arithmetic word problems in GSM8K's format: the smol profile's distillation task.

Why this task family (issue 23): SmolLM2-135M-Instruct as shipped solves 1.5% of GSM8K, so a
teacher distilled on GSM8K has nothing to teach. English word problems of two or three steps
with small numbers (operands up to 50, products of one-digit factors) keep GSM8K's shape (a
question, a worked solution of one sentence per step, `#### N`, EOS) at a difficulty a 135M model
can master by SFT, so the teacher is clearly better than a pruned student at exactly what it
distils.

Teacher style: one sentence per step, each with its equation (`Mia buys 4 * 6 = 24 marbles.`),
then `#### N`. Other style (the student's `mismatch` share, as in the tiny profile): the bare
`#### N`. The bare answer puts the whole computation in one token position, so it is weaker, and
its first token is where the teacher, which always starts with a sentence, gives little
probability: the student's samples fall where the teacher disagrees.

Items are drawn from `random.Random(seed)`; the same seed gives the same items on every machine.
"""
from __future__ import annotations

import random

NAMES = ["Mia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Zoe", "Omar", "Nina", "Ravi", "Sara", "Tom",
         "Lena", "Jack", "Aisha", "Ben", "Chloe", "Diego", "Hana", "Ivan"]
# (thing, container, containers): "bags with 6 marbles in each bag"
THINGS = [("marbles", "bag", "bags"), ("apples", "basket", "baskets"), ("stickers", "sheet", "sheets"),
          ("pencils", "box", "boxes"), ("cookies", "tray", "trays"), ("cards", "pack", "packs"),
          ("eggs", "carton", "cartons"), ("books", "crate", "crates"), ("shells", "jar", "jars"),
          ("beads", "bag", "bags")]
PRONOUN = {n: ("She" if n in {"Mia", "Emma", "Ava", "Zoe", "Nina", "Sara", "Lena", "Aisha", "Chloe", "Hana"}
               else "He") for n in NAMES}


def _problem(kind: str, r: random.Random) -> tuple[str, list[str], int]:
    """(question, solution sentences, answer) of one kind."""
    n, m = r.sample(NAMES, 2)
    p = PRONOUN[n]
    t, c, cs = r.choice(THINGS)
    if kind == "bags_add":
        a, b, k = r.randint(5, 40), r.randint(2, 9), r.randint(2, 9)
        q = (f"{n} has {a} {t}. {p} buys {b} {cs} with {k} {t} in each {c}. "
             f"How many {t} does {n} have now?")
        return q, [f"{n} buys {b} * {k} = {b * k} {t}.", f"Now {n} has {a} + {b * k} = {a + b * k} {t}."], a + b * k
    if kind == "bags_give":
        b, k = r.randint(2, 9), r.randint(3, 9)
        g = r.randint(2, b * k - 1)
        q = (f"{n} buys {b} {cs} with {k} {t} in each {c}. {p} gives {g} {t} to {m}. "
             f"How many {t} does {n} have left?")
        return q, [f"{n} buys {b} * {k} = {b * k} {t}.",
                   f"After giving {g} to {m}, {n} has {b * k} - {g} = {b * k - g} {t} left."], b * k - g
    if kind == "more_total":
        a, d = r.randint(5, 40), r.randint(2, 30)
        q = f"{n} has {a} {t}. {m} has {d} more {t} than {n}. How many {t} do they have together?"
        return q, [f"{m} has {a} + {d} = {a + d} {t}.",
                   f"Together they have {a} + {a + d} = {2 * a + d} {t}."], 2 * a + d
    if kind == "fewer_total":
        a = r.randint(10, 50)
        d = r.randint(2, a - 2)
        q = f"{n} has {a} {t}. {m} has {d} fewer {t} than {n}. How many {t} do they have together?"
        return q, [f"{m} has {a} - {d} = {a - d} {t}.",
                   f"Together they have {a} + {a - d} = {2 * a - d} {t}."], 2 * a - d
    if kind == "share":
        k, b = r.randint(2, 9), r.randint(2, 9)
        e = r.randint(2, 20)
        q = (f"{n} has {k * b} {t} and shares them equally among {b} friends. Each friend then finds "
             f"{e} more {t}. How many {t} does each friend have now?")
        return q, [f"Each friend gets {k * b} / {b} = {k} {t}.",
                   f"Each friend now has {k} + {e} = {k + e} {t}."], k + e
    if kind == "change":
        b, k = r.randint(2, 9), r.randint(2, 9)
        bill = 10 * ((b * k) // 10 + 1) + 10 * r.randint(0, 3)
        q = (f"{n} buys {b} {t} at {k} dollars each and pays with {bill} dollars. "
             f"How much change does {n} get in dollars?")
        return q, [f"The {t} cost {b} * {k} = {b * k} dollars.",
                   f"The change is {bill} - {b * k} = {bill - b * k} dollars."], bill - b * k
    if kind == "days":
        a, d, e = r.randint(2, 9), r.randint(2, 9), r.randint(2, 30)
        q = (f"{n} collects {a} {t} every day for {d} days. Then {m} gives {n} {e} more {t}. "
             f"How many {t} does {n} have?")
        return q, [f"In {d} days {n} collects {a} * {d} = {a * d} {t}.",
                   f"With the gift {n} has {a * d} + {e} = {a * d + e} {t}."], a * d + e
    if kind == "three_step":
        a, b, k = r.randint(5, 30), r.randint(2, 9), r.randint(2, 9)
        g = r.randint(2, a + b * k - 1)
        q = (f"{n} has {a} {t}. {p} buys {b} {cs} with {k} {t} in each {c}, then gives {g} {t} to {m}. "
             f"How many {t} does {n} have left?")
        return q, [f"{n} buys {b} * {k} = {b * k} {t}.", f"Then {n} has {a} + {b * k} = {a + b * k} {t}.",
                   f"After giving {g} away, {n} has {a + b * k} - {g} = {a + b * k - g} {t} left."], \
            a + b * k - g
    if kind == "three_more":
        a, d = r.randint(5, 30), r.randint(2, 20)
        e = r.randint(2, 20)
        o = r.choice([x for x in NAMES if x not in (n, m)])
        q = (f"{n} has {a} {t}. {m} has {d} more {t} than {n}, and {o} has {e} more {t} than {m}. "
             f"How many {t} does {o} have?")
        return q, [f"{m} has {a} + {d} = {a + d} {t}.", f"{o} has {a + d} + {e} = {a + d + e} {t}."], a + d + e
    raise ValueError(kind)


KINDS = ["bags_add", "bags_give", "more_total", "fewer_total", "share", "change", "days", "three_step",
         "three_more"]


def make(seed: int, n: int) -> list[dict]:
    """`n` distinct problems as GSM8K rows: {"question", "answer" (worked, `#### N`), "alt"
    (the bare `#### N`), "kind"}. Duplicated questions are drawn again."""
    r = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        kind = KINDS[len(rows) % len(KINDS)]
        q, steps, ans = _problem(kind, r)
        if q in seen:
            continue
        seen.add(q)
        rows.append({"question": q, "answer": "\n".join(steps) + f"\n#### {ans}", "alt": f"#### {ans}",
                     "kind": kind})
    return rows

