"""Math graders: GSM8K final numbers and \\boxed{} answers checked with math-verify.

- GSM8K (and tiny_math): the prediction is found by the first rule that matches, in this order:
  1. the first number on the line of the last '####' (the benchmark's own format);
  2. the number in the last \\boxed{...} (\\fbox, `\\boxed 8` too; `\\$`, `\\text{...}` and thousands
     separators ignored; a \\frac{a}{b} of two integers is a/b);
  3. the number after the last "answer is" / "answer:" phrase ("The final answer is $18.", "**Answer:** 18");
  4. the last number in the completion.
  It is correct if it equals the gold number (after '####' in the reference) as a decimal, after
  removing ',' and '$' (lm-eval's and verl's comparison). Each sample records the rule (`rule`).
- MATH-500 / AIME: the prediction is the content of the last \\boxed{...} or \\fbox{...} (the brace must
  follow the command, spaces allowed; braces matched), or of `\\boxed 8` (no braces: the token after
  it, as MATH's own extractor reads it); gold and prediction are each parsed by math-verify as a
  boxed expression, gold first, and compared with `verify(gold, pred)` (symbolic / numeric
  equivalence). With no box at all, math-verify's own extraction of the whole completion ("final
  answer is ...", then the last expression) is the prediction.

A gold answer that cannot be graded is an error at load time, not a column of wrong answers:
tropd.eval.tasks raises UserError for a GSM8K gold with no number after '####' (`gold_number`) and
for a MATH/AIME gold that math-verify parses to nothing (`unparsable_golds`). Each gold is parsed by
math-verify once per process: the load-time check keeps the parse and grading reuses it (as do the
k samples of one item).

math-verify bounds its parsing and comparison with SIGALRM, which only works in a process's main
thread (elsewhere it fails and reports "wrong" silently). So grading runs in the calling thread
only when that is the main thread; otherwise the same function runs in a one-process pool, in that
worker's main thread.
"""
from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation

from tropd.eval import stats

VERIFY_TIMEOUT_S = 5
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _number(s: str) -> Decimal | None:
    s = s.replace(",", "").replace("$", "").rstrip(".")
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


_HASH_LINE = re.compile(r"####([^\n]*)")
_ANSWER_IS = re.compile(r"answer(?:\s+is)?\s*[:=]?[\s*_:$\\]*(-?[\d,]*\.?\d+)", re.I)
_FRAC = re.compile(r"^\s*\\d?frac\{(-?\d+)\}\{(\d+)\}\s*$")


def _clean(num: str) -> str:
    return num.replace(",", "").replace("$", "").rstrip(".")


def _boxed_number(content: str) -> str | None:
    """The number a GSM8K-style \\boxed{} holds: units, `\\$`, `\\,` / `{,}` separators ignored."""
    frac = _FRAC.match(content)
    if frac and int(frac.group(2)):
        return str(Decimal(frac.group(1)) / Decimal(frac.group(2)))
    content = re.sub(r"\\text\{[^{}]*\}|\\[,!;: ]|\{,\}|\\\$",
                     lambda m: "," if "," in m.group() else "", content)
    nums = _NUMBER.findall(content)
    return _clean(nums[0]) if nums else None


def gsm8k_extract_rule(text: str) -> tuple[str | None, str | None]:
    """(number, rule) by the documented order: '####' line, last \\boxed{}, "answer is", last number."""
    hashes = _HASH_LINE.findall(text)
    if hashes:
        nums = _NUMBER.findall(hashes[-1])
        if nums:
            return _clean(nums[0]), "####"
    boxed = last_boxed(text)
    if boxed is not None and (num := _boxed_number(boxed)) is not None:
        return num, "boxed"
    phrases = _ANSWER_IS.findall(text)
    if phrases:
        return _clean(phrases[-1]), "answer_is"
    nums = _NUMBER.findall(text)
    return (_clean(nums[-1]), "last_number") if nums else (None, None)


def gsm8k_extract(text: str) -> str | None:
    return gsm8k_extract_rule(text)[0]


def gold_number(gold: str) -> Decimal | None:
    """The GSM8K gold (the text after '####', see tasks.gsm8k_final) as a number; None: not one."""
    return _number(gold)


def gsm8k_correct(gold: str, pred: str | None) -> bool:
    if pred is None:
        return False
    g, p = _number(gold), _number(pred)
    return g is not None and p is not None and g == p


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_TOKEN = re.compile(r" +([^\s$]+)")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...} whose brace follows the command (spaces
    allowed; braces matched), or of `\\boxed 8` (the token after the space, up to whitespace or '$',
    trailing '.' / ',' dropped); None without one."""
    for m in reversed(list(_BOX.finditer(text))):
        i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return text[i + 1 : j]
            continue  # never closed: an earlier box may be whole
        bare = _BARE_TOKEN.match(text, m.end())
        if bare and bare.group(1).rstrip(".,;"):
            return bare.group(1).rstrip(".,;")
    return None


_GOLDS: dict[str, list] = {}  # gold -> math-verify's parse of \\boxed{gold} ([]: unparsable), per process


def _parsed_gold(gold: str) -> list:
    if gold not in _GOLDS:
        from math_verify import parse

        _GOLDS[gold] = parse(f"\\boxed{{{gold}}}", parsing_timeout=VERIFY_TIMEOUT_S)
    return _GOLDS[gold]


def _boxed_correct(gold: str, pred: str | None) -> bool:
    from math_verify import parse, verify

    if pred is None:
        return False
    g = _parsed_gold(gold)
    p = parse(f"\\boxed{{{pred}}}", parsing_timeout=VERIFY_TIMEOUT_S)
    return bool(g) and bool(p) and bool(verify(g, p, timeout_seconds=VERIFY_TIMEOUT_S))


def _gold_parses(golds: list[str]) -> list[bool]:
    return [bool(_parsed_gold(g)) for g in golds]


def unparsable_golds(golds: list[str]) -> list[int]:
    """Indices of the golds that math-verify parses to nothing as \\boxed{gold} (every answer to
    them would be graded wrong). From the main thread the parses are kept for grading; elsewhere
    they run in a worker process (math-verify's alarms), as `grade` does."""
    if threading.current_thread() is threading.main_thread():
        ok = _gold_parses(golds)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            ok = pool.submit(_gold_parses, golds).result()
    return [i for i, good in enumerate(ok) if not good]


def _unboxed(gold: str, completion: str) -> tuple[str | None, bool]:
    """No box: math-verify's own extraction of the whole completion, and its verdict."""
    from math_verify import parse, verify

    p = parse(completion, parsing_timeout=VERIFY_TIMEOUT_S)
    if not p:
        return None, False
    g = _parsed_gold(gold)
    return str(p[-1]), bool(g) and bool(verify(g, p, timeout_seconds=VERIFY_TIMEOUT_S))


def _grade(kind: str, pairs: list[tuple[str, str]]) -> list[dict]:
    out = []
    for gold, completion in pairs:
        if kind == "gsm8k":
            pred, rule = gsm8k_extract_rule(completion)
            ok = gsm8k_correct(gold, pred)
        else:
            pred, rule = last_boxed(completion), "boxed"
            ok = _boxed_correct(gold, pred)
            if pred is None:
                (pred, ok), rule = _unboxed(gold, completion), "math-verify"
        out.append({"gold": gold, "pred": pred, "rule": rule if pred is not None else None, "correct": ok})
    return out


def grade(kind: str, pairs: list[tuple[str, str]]) -> list[dict]:
    """[(gold, completion)] -> [{"gold", "pred", "correct"}]; kind is "gsm8k" or "boxed"."""
    if kind == "gsm8k" or threading.current_thread() is threading.main_thread():
        return _grade(kind, pairs)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_grade, kind, pairs).result()


def summarize(per_item: list[list[dict]]) -> dict:
    """acc = avg@k (mean over items of the share of correct samples); pass@n for n > 1 samples;
    extracted = share of samples with an answer found at all (a diagnostic)."""
    n_min = min(len(s) for s in per_item)
    metrics = {"acc": stats.mean_ci([sum(r["correct"] for r in s) / len(s) for s in per_item])}
    if n_min > 1:
        metrics[f"pass@{n_min}"] = stats.mean_ci(
            [stats.pass_at_k(len(s), sum(r["correct"] for r in s), n_min) for s in per_item])
    metrics["extracted"] = stats.mean_ci([sum(r["pred"] is not None for r in s) / len(s) for s in per_item])
    return metrics
