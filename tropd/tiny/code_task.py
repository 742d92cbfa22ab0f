"""Synthetic HumanEval+-style functions: a def line and a one-line docstring; the body is one line.

The completion of a code prompt is the function body that continues the HumanEval prompt, so
evalplus can run prompt + completion. Teacher style: `    return EXPR\n`. Other style (the
student's `mismatch` share): `    ans = EXPR\n    return ans\n`, which is valid Python but starts
where the teacher puts almost no mass and is twice as long (twice the chances of a slip).
"""
from __future__ import annotations

import random

from tropd.tiny.item import Item

FUNC_NAMES = ["f", "g", "h", "calc", "solve", "func", "op", "run", "apply", "get"]
INT_ARGS = ["x", "n", "k", "m", "v"]
PAIR_ARGS = [("a", "b"), ("x", "y"), ("m", "n"), ("p", "q")]
STR_ARGS = ["s", "w", "text", "word"]
LIST_ARGS = ["xs", "nums", "vals", "items"]

# (argument kind, docstring template, expression template); {c} {d} are small constants.
FAMILIES: list[tuple[str, str, str]] = [
    ("int", "Return {0} plus {c}.", "{0} + {c}"),
    ("int", "Return {0} minus {c}.", "{0} - {c}"),
    ("int", "Return {0} times {c}.", "{0} * {c}"),
    ("int", "Return {0} mod {c}.", "{0} % {c}"),
    ("int", "Return {0} times {c} plus {d}.", "{0} * {c} + {d}"),
    ("int", "Return True if {0} is more than {c}.", "{0} > {c}"),
    ("int", "Return True if {0} is even.", "{0} % 2 == 0"),
    ("pair", "Return {0} plus {1}.", "{0} + {1}"),
    ("pair", "Return {0} times {1}.", "{0} * {1}"),
    ("pair", "Return the larger of {0} and {1}.", "max({0}, {1})"),
    ("pair", "Return the smaller of {0} and {1}.", "min({0}, {1})"),
    ("str", "Return {0} reversed.", "{0}[::-1]"),
    ("str", "Return {0} in upper case.", "{0}.upper()"),
    ("str", "Return the length of {0}.", "len({0})"),
    ("str", "Return the first {c} letters of {0}.", "{0}[:{c}]"),
    ("str", "Return {0} repeated {c} times.", "{0} * {c}"),
    ("list", "Return the sum of {0}.", "sum({0})"),
    ("list", "Return the largest item in {0}.", "max({0})"),
    ("list", "Return {0} sorted.", "sorted({0})"),
    ("list", "Return the last item of {0}.", "{0}[-1]"),
    ("list", "Return {0} with each item plus {c}.", "[y + {c} for y in {0}]"),
]
N_BASE, N_PLUS = 3, 5


def _inputs(kind: str, r: random.Random) -> list:
    if kind == "int":
        return [r.randint(-20, 50)]
    if kind == "pair":
        return [r.randint(-20, 50), r.randint(-20, 50)]
    if kind == "str":
        return ["".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(1, 8)))]
    return [[r.randint(0, 20) for _ in range(r.randint(1, 6))]]


def make_item(r: random.Random) -> Item:
    kind, doc_t, expr_t = r.choice(FAMILIES)
    args = {"int": lambda: (r.choice(INT_ARGS),), "pair": lambda: r.choice(PAIR_ARGS),
            "str": lambda: (r.choice(STR_ARGS),), "list": lambda: (r.choice(LIST_ARGS),)}[kind]()
    consts = {"c": r.randint(2, 9), "d": r.randint(2, 9)}
    name = r.choice(FUNC_NAMES)
    doc, expr = doc_t.format(*args, **consts), expr_t.format(*args, **consts)
    prompt = f'def {name}({", ".join(args)}):\n    """{doc}"""\n'
    body = f"    return {expr}\n"
    fn = run_function(prompt + body, name)
    base = [_inputs(kind, r) for _ in range(N_BASE)]
    plus = [_inputs(kind, r) for _ in range(N_PLUS)]
    checks = "".join(f"    assert candidate({', '.join(map(repr, a))}) == {fn(*a)!r}\n" for a in base)
    record = {
        "prompt": prompt, "entry_point": name, "canonical_solution": body,
        "test": f"\n\ndef check(candidate):\n{checks}", "contract": "",
        "base_input": base, "plus_input": plus, "atol": 0,
    }
    return Item(domain="code", prompt=prompt, answer=body,
                alt=f"    ans = {expr}\n    return ans\n", record=record)


def run_function(code: str, name: str):
    """The function `name` defined by trusted generator code (never by model output)."""
    namespace: dict = {}
    exec(compile(code, "<tiny-code>", "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace[name]
