"""Synthetic IFEval-style prompts: write a few given words, following one or two format rules.

Only instructions whose lm-eval checker is deterministic and needs no downloaded data are used
(no language detection, no sentence splitter): punctuation:no_comma, detectable_format:title,
detectable_format:number_bullet_lists, startend:quotation, startend:end_checker,
keywords:existence and detectable_content:postscript. The content is copied from the prompt, so
the skill being measured is the format. Teacher style: every rule followed. Other style (the
student's `mismatch` share): the plain comma-separated list, ignoring the rules (an
instruction-blind student, the common real-world gap that distillation closes).
"""
from __future__ import annotations

import random

from tropd.tiny.item import Item

WORDS = ["cat", "dog", "pig", "cow", "fox", "owl", "bee", "ant", "sun", "moon", "star", "tree",
         "leaf", "rock", "sand", "rain", "snow", "wind", "fish", "bird", "frog", "lake", "hill",
         "rose", "corn", "rice", "milk", "cake", "pie", "tea", "red", "blue", "gold", "pink"]
END_PHRASES = ["Bye.", "Done.", "The end.", "Thanks."]

NO_COMMA = "punctuation:no_comma"
TITLE = "detectable_format:title"
BULLETS = "detectable_format:number_bullet_lists"
QUOTE = "startend:quotation"
END = "startend:end_checker"
KEYWORD = "keywords:existence"
PS = "detectable_content:postscript"

# Pairs whose rules can both hold in one short answer (e.g. a quoted answer cannot open with a
# title, and an extra keyword would change the bullet count).
COMPATIBLE = {
    NO_COMMA: [TITLE, QUOTE, END, KEYWORD, PS, BULLETS],
    TITLE: [NO_COMMA, END, KEYWORD, PS, BULLETS],
    BULLETS: [TITLE, END, PS, NO_COMMA],
    QUOTE: [NO_COMMA, KEYWORD],
    END: [NO_COMMA, TITLE, BULLETS, KEYWORD],
    KEYWORD: [NO_COMMA, TITLE, QUOTE, END],
    PS: [NO_COMMA, TITLE, BULLETS],
}
# Rules are applied in this order (content, join, prefix, wrap, suffix).
ORDER = [KEYWORD, BULLETS, NO_COMMA, TITLE, QUOTE, END, PS]


def _phrase(rule: str, kw: dict) -> str:
    return {
        NO_COMMA: "No commas.",
        TITLE: "Add a title.",
        BULLETS: f"Use {kw.get('num_bullets')} bullets.",
        QUOTE: "Use quotes.",
        END: f"End with {kw.get('end_phrase')}",
        KEYWORD: f"Include {(kw.get('keywords') or [''])[0]}.",
        PS: "Add a P.S.",
    }[rule]


def render(words: list[str], rules: list[str], kwargs: list[dict]) -> str:
    """The answer to `words` that follows every rule in `rules` (the teacher's answer)."""
    kw = dict(zip(rules, kwargs))
    items = list(words)
    if KEYWORD in kw:
        items.append(kw[KEYWORD]["keywords"][0])
    if BULLETS in kw:
        text = "\n".join(f"* {w}" for w in items)
    elif NO_COMMA in kw:
        text = " ".join(items)
    else:
        text = ", ".join(items)
    if TITLE in kw:
        text = f"<<list>>\n{text}"
    if QUOTE in kw:
        text = f'"{text}"'
    if END in kw:
        text = f"{text}\n{kw[END]['end_phrase']}"
    if PS in kw:
        text = f"{text}\nP.S. that is all"
    return text


def make_item(r: random.Random) -> Item:
    words = r.sample(WORDS, r.randint(2, 4))
    first = r.choice(list(COMPATIBLE))
    rules = [first] if r.random() < 0.6 else [first, r.choice(COMPATIBLE[first])]
    rules = sorted(set(rules), key=ORDER.index)
    kwargs = []
    for rule in rules:
        if rule == BULLETS:
            kwargs.append({"num_bullets": len(words)})
        elif rule == END:
            kwargs.append({"end_phrase": r.choice(END_PHRASES)})
        elif rule == KEYWORD:
            kwargs.append({"keywords": [r.choice([w for w in WORDS if w not in words])]})
        elif rule == PS:
            kwargs.append({"postscript_marker": "P.S."})
        else:
            kwargs.append({})
    prompt = " ".join([f"Write {' '.join(words)}."] + [_phrase(u, k) for u, k in zip(rules, kwargs)])
    record = {"prompt": prompt, "instruction_id_list": rules, "kwargs": kwargs}
    return Item(domain="instruct", prompt=prompt, answer=render(words, rules, kwargs),
                alt=", ".join(words), record=record)
