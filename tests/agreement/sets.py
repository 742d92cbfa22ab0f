"""Sample sets for the grader-agreement suite, written the way real models answer.

Each set is a list of dicts with an `id` (task/style/item), the `style`, what the grader needs, and
for math an `expect` flag (whether the answer the sample states is the gold one: the writer's
intent, used to compare extraction rules, not to score tropd). Everything is built from the real
benchmark files in shared/benchmarks with fixed rules, so the sets are the same on every machine.
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from tropd.eval.tasks import benchmarks_root, gsm8k_final


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------------------- GSM8K

def _gsm8k_styles(x: str) -> dict[str, str]:
    n = int(x.replace(",", "")) if re.fullmatch(r"-?\d+", x) else None
    big = f"{n:,}" if n is not None else x
    return {
        "hash": f"3 + 4 = 7 and 7 * 2 = 14.\n#### {x}",
        "hash_comma": f"So the total is {big}.\n#### {big}",
        "hash_then_note": f"#### {x}\nNote: I used 2 steps.",
        "answer_is": f"First, 12 * 3 = 36. Then we subtract 5.\nThe answer is {x}.",
        "answer_is_units": f"The answer is: {x} apples (from 3 baskets).",
        "final_answer_check": f"Final answer: {x}\n(Check: {x} + 7 = {n + 7 if n is not None else 7}.)",
        "boxed_trailing": f"So the total is \\boxed{{{x}}}.\n\nI hope this helps with your 2 questions!",
        "boxed_latex_sentence": f"Therefore, the final answer is $\\boxed{{{x}}}$. I hope it is correct.",
        "boxed_dollar": f"The cost is \\boxed{{\\${x}}}.",
        "boxed_text_unit": f"\\boxed{{{x} \\text{{ dollars}}}}",
        "bold_answer": f"Adding 5 and 6 gives 11.\n**Answer:** {x}",
        "last_number": f"We add 2 and 3 to get 5, then multiply to get {x}.",
        "dollars_sentence": f"She makes ${big} every week, since 4 weeks pass.\nThe final answer is ${big}.",
        "decimal_zero": f"#### {x}.00",
        "bare": f"{x}",
        "final_answer_sentence_then_more": f"The final answer is {x}. It took 3 hours.",
    }


def gsm8k_set(n_items: int = 14) -> list[dict]:
    rows = _jsonl(benchmarks_root() / "gsm8k" / "test.jsonl")[:n_items]
    golds = [gsm8k_final(r["answer"]) for r in rows]
    out = []
    for i, gold in enumerate(golds):
        wrong = str(int(gold) + 1 + i % 3)
        for s, name in enumerate(_gsm8k_styles(gold)):
            right = (i + s) % 3 != 0
            text = _gsm8k_styles(gold if right else wrong)[name]
            out.append({"id": f"gsm8k/{name}/{i}", "style": name, "gold": gold, "text": text,
                        "expect": right})
    return out


# -------------------------------------------------------------------------------- MATH-500 boxed

def _simple(a: str) -> bool:
    """An answer that `\\boxed 8` (no braces) can carry: one token, no spaces or braces."""
    return re.fullmatch(r"-?\d+(\.\d+)?|[A-Za-z]", a) is not None


def _boxed_styles(x: str, w: str) -> dict[str, str]:
    styles = {
        "boxed_dollars": f"Step 1. Simplify.\nStep 2. Solve.\n$\\boxed{{{x}}}$",
        "final_answer_sentence": f"The final answer is $\\boxed{{{x}}}$. I hope it is correct.",
        "boxed_then_remark": f"$\\boxed{{{x}}}$, since $\\frac{{1}}{{2}} < 1$ and $3 > 2$.",
        "two_boxes_last_counts": f"A first try gives \\boxed{{{w}}}, but correcting the sign: \\boxed{{{x}}}",
        "fbox": f"So we get \\fbox{{{x}}}.",
        "spaces_inside": f"Answer: \\boxed{{ {x} }}",
        "display_math": f"Hence\n\\[\n\\boxed{{{x}}}\n\\]\nas required.",
        "no_box_answer_is": f"The answer is ${x}$.",
        "text_then_box_then_text": f"Let $y = 2$. Then \\boxed{{{x}}} is its value for $y = 2$.",
    }
    if _simple(x):
        styles["boxed_no_braces"] = f"$\\boxed {x}$, since $\\frac{{1}}{{2}} < 1$."
        styles["boxed_no_braces_end"] = f"Therefore the answer is \\boxed {x}"
    return styles


def boxed_set(n_items: int = 14) -> list[dict]:
    rows = _jsonl(benchmarks_root() / "math500" / "test.jsonl")
    # every answer kind: integers (which `\\boxed 8` can carry), fractions, radicals, tuples, text
    ints = [r for r in rows if _simple(str(r["answer"]))][: n_items // 2]
    rest = [r for r in rows if not _simple(str(r["answer"]))][: n_items - len(ints)]
    out = []
    for i, r in enumerate(ints + rest):
        gold = str(r["answer"])
        group = ints if i < len(ints) else rest  # a wrong answer of the same kind
        wrong = str(group[(group.index(r) + 1) % len(group)]["answer"])
        names = list(_boxed_styles(gold, wrong))
        for s, name in enumerate(names):
            right = (i + s) % 4 != 0
            text = _boxed_styles(gold if right else wrong, gold if not right else wrong)[name]
            out.append({"id": f"math500/{name}/{i}", "style": name, "gold": gold, "text": text,
                        "expect": right and gold != wrong})
    return out


# ---------------------------------------------------------------------------------- HumanEval+

CODE_PROBLEMS = {
    "humaneval": ("humanevalplus/HumanEvalPlus.jsonl.gz",
                  ["HumanEval/0", "HumanEval/2", "HumanEval/4", "HumanEval/5", "HumanEval/7", "HumanEval/11",
                   "HumanEval/12", "HumanEval/13", "HumanEval/22", "HumanEval/28", "HumanEval/29",
                   "HumanEval/35"]),
    # MBPP+ prompts are docstrings and its canonical solutions whole programs (some with imports)
    "mbpp": ("mbppplus/MbppPlus.jsonl.gz",
             ["Mbpp/2", "Mbpp/3", "Mbpp/4", "Mbpp/6", "Mbpp/7", "Mbpp/8", "Mbpp/9", "Mbpp/11", "Mbpp/12",
              "Mbpp/16", "Mbpp/17", "Mbpp/19"]),
}


def code_problems(dataset: str = "humaneval") -> list[dict]:
    rel, ids = CODE_PROBLEMS[dataset]
    rows = {r["task_id"]: r for r in _jsonl(benchmarks_root() / rel)}
    return [rows[t] for t in ids]


def _mutate(body: str) -> str:
    """A plausible wrong program: the first comparison or arithmetic operator changed."""
    for a, b in (("<", ">"), (" + ", " - "), ("==", "!="), (" - ", " + "), ("True", "False")):
        if a in body:
            return body.replace(a, b, 1)
    return body + "    return None\n"


def _no_imports(prompt: str) -> str:
    return "\n".join(line for line in prompt.split("\n") if not line.startswith(("from ", "import ")))


def code_set(dataset: str = "humaneval") -> list[dict]:
    """Per problem: base-model continuations (`completion`), whole programs (`solution`), and chat
    answers in many shapes (`chat`: what `tropd eval` generates with a chat template)."""
    out = []
    for p in code_problems(dataset):
        tid, prompt, body, ep = p["task_id"], p["prompt"], p["canonical_solution"], p["entry_point"]
        if dataset == "humaneval":  # the prompt holds the signature and imports, the solution a body
            full, bare = prompt + body, _no_imports(prompt).lstrip("\n") + body
        else:  # the prompt is a docstring, the solution a whole program
            full, bare = body.lstrip("\n"), _no_imports(body).lstrip("\n")
        renamed = full.replace(f"def {ep}(", "def _solve(", 1).replace(f"{ep}(", "_solve(")
        helper = renamed + f"\n\ndef {ep}(*args, **kwargs):\n    return _solve(*args, **kwargs)\n"
        call = f"{ep}(*{json.dumps(p['base_input'][0])})"
        main = f"\n\nif __name__ == '__main__':\n    print({call})\n"
        samples = {
            ("completion", "continuation"): body,
            ("completion", "continuation_wrong"): _mutate(body),
            ("solution", "whole_program"): full,
            ("chat", "fenced_with_imports"): f"Here is the solution:\n```python\n{full}```\nIt runs in O(n).",
            ("chat", "fenced_without_imports"): f"```python\n{bare}```",
            ("chat", "unfenced_without_imports"): bare,
            ("chat", "prose_around_unfenced"): f"Sure! Here's how:\n\n{full}\n\nThe loop visits each item.",
            ("chat", "main_block"): f"```python\n{full}{main}```",
            ("chat", "failing_example_assert"): f"```python\n{full}\n\nassert {call} == 'not this'\n```",
            ("chat", "usage_block_first"): f"Usage:\n```python\nprint({call})\n```\n```python\n{full}```",
            ("chat", "helper_function"): f"```python\n{helper}```",
            ("chat", "fenced_wrong"): f"```python\n{_mutate(full)}```",
        }
        for (field, style), text in samples.items():
            out.append({"id": f"{dataset}/{style}/{tid}", "style": style, "task_id": tid, "field": field,
                        "text": text})
    return out


# -------------------------------------------------------------------------------------- IFEval

SENTENCES = [
    "Dr. Smith met Mr. Jones in the U.S. capital last year.",
    "They talked about the plan at 9 a.m. on a Monday.",
    "Mrs. Brown, e.g. the chair, took notes.",
    "The budget was approx. five million dollars.",
    "Everyone agreed that the results were good.",
    "St. Louis and Washington D.C. were both mentioned.",
    "The final report is due in Jan. next year.",
    "Prof. Lee said it was the best option.",
]
PLAIN = ["The sky was clear.", "We walked home.", "It rained later.", "Dinner was late.", "All was well.",
         "The end came soon.", "Birds sang loudly.", "Nobody minded."]


def _trained_count():
    """Sentences by NLTK's English Punkt (its parameters, no change to nltk's data path)."""
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    from tropd.eval.graders.punkt_data import _english_params

    tok = PunktSentenceTokenizer()
    tok._params = _english_params()
    return lambda text: len(tok.tokenize(text))


def _sentences(n: int, rich: bool, count=None) -> str:
    """Text of abbreviation-heavy (rich) or plain sentences that NLTK's English Punkt counts as n."""
    pool = SENTENCES if rich else PLAIN
    n = max(n, 1)
    if count is None:
        return " ".join(pool[i % len(pool)] for i in range(n))
    parts: list[str] = []
    i = 0
    while count(" ".join(parts)) < n if parts else True:
        parts.append(pool[i % len(pool)])
        i += 1
        if count(" ".join(parts)) > n:  # a two-sentence line overshot: use a plain one instead
            parts[-1] = PLAIN[i % len(PLAIN)]
    return " ".join(parts)


def _caps_text(n_caps: int) -> str:
    words = ["NASA", "USA", "IMPORTANT", "NOTE", "FAST", "SAFE", "BIG", "NEW", "TOP", "KEY"]
    caps = " ".join(words[i % len(words)] for i in range(n_caps))
    return f"Dr. Smith of the U.S. team said {caps} things. Mr. Jones agreed at 9 a.m. on Monday."


def ifeval_set() -> list[dict]:
    rows = _jsonl(benchmarks_root() / "ifeval" / "input_data.jsonl")
    count = _trained_count()
    out = []
    for r in rows:
        ids = r["instruction_id_list"]
        texts = {}
        for iid, kw in zip(ids, r["kwargs"]):
            if iid == "length_constraints:number_sentences":
                n = kw["num_sentences"]
                texts["sentences_rich_at"] = _sentences(n, True, count)
                texts["sentences_rich_below"] = _sentences(n - 1, True, count)
                texts["sentences_rich_above"] = _sentences(n + 1, True, count)
                texts["sentences_plain_at"] = _sentences(n, False)
            elif iid == "change_case:capital_word_frequency":
                n = kw["capital_frequency"]
                texts["caps_below"] = _caps_text(n - 1)
                texts["caps_at"] = _caps_text(n)
            elif iid == "keywords:letter_frequency":
                texts["letters"] = "A letter count test: " + " ".join(["quick"] * kw["let_frequency"])
                texts["letters_plain"] = "Short text."
        for style, text in texts.items():
            out.append({"id": f"ifeval/{style}/{r['key']}", "style": style, "doc": r, "text": text})
    return out


SETS = {"gsm8k": gsm8k_set, "math500": boxed_set, "humaneval": code_set,
        "mbppplus": lambda: code_set("mbpp"), "ifeval": ifeval_set}
