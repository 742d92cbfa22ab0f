"""The reference graders, called from Python as their own pipelines call them (tests only).

- math: math-verify on the whole completion, `verify(parse(\\boxed{gold}), parse(completion))`, its
  default extraction (boxed first, then "final answer is" phrases, then the last expression);
  for GSM8K also lm-eval's two filters (strict-match: the `#### N` regex; flexible-extract: the last
  number) with its exact_match settings, read from lm-eval's own gsm8k.yaml;
- code: evalplus's pipeline: a chat answer goes through `evalplus.sanitize` (as evalplus.codegen
  does for chat models), a `completion` gets the prompt prepended, a `solution` runs as is
  (evalplus.evaluate), then `evalplus.evaluate.check_correctness` (its own process and limits);
- IFEval: lm-eval's `process_results`, with NLTK's English Punkt model.
"""
from __future__ import annotations

import functools
from pathlib import Path


def math_verify(gold: str, text: str) -> bool:
    from math_verify import parse, verify

    g = parse(f"\\boxed{{{gold}}}")
    p = parse(text)
    return bool(g) and bool(p) and bool(verify(g, p))


@functools.lru_cache(maxsize=None)
def _gsm8k_yaml() -> dict:
    import lm_eval
    import yaml

    path = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    return yaml.safe_load(path.read_text())


def lm_eval_gsm8k(gold: str, text: str) -> dict[str, bool]:
    """{filter name: exact match} for lm-eval's gsm8k filters; the target is lm-eval's doc_to_target
    (the full answer, which its `(?s).*#### ` ignore-regex cuts to the number)."""
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    cfg = _gsm8k_yaml()
    metric = next(m for m in cfg["metric_list"] if m["metric"] == "exact_match")
    kw = {k: metric[k] for k in ("ignore_case", "ignore_punctuation", "regexes_to_ignore")}
    out = {}
    for f in cfg["filter_list"]:
        regex = f["filter"][0]
        flt = RegexFilter(regex["regex_pattern"], regex.get("group_select", 0))
        pred = list(flt.apply([[text]], [{}]))[0][0]
        out[f["name"]] = bool(exact_match_hf_evaluate([pred], [f"#### {gold}"], **kw)["exact_match"])
    return out


def evalplus_solution(problem: dict, field: str, text: str) -> str:
    from evalplus.sanitize import sanitize

    if field == "chat":
        return sanitize(text, problem["entry_point"])
    if field == "completion":
        return problem["prompt"] + text
    return text


def evalplus_verdicts(dataset: str, problems: dict, truth: dict, samples: list[dict]) -> list[str]:
    """evalplus's base verdict ("pass"/"fail"/"timeout") for each sample (task_id, field, text)."""
    from evalplus.evaluate import check_correctness

    out = []
    for i, s in enumerate(samples):
        p = problems[s["task_id"]]
        sol = evalplus_solution(p, s["field"], s["text"])
        # limits as tropd's slow-machine setting (12 x canonical, 1 s floor): load must not decide
        r = check_correctness(dataset, i, p, sol, truth[s["task_id"]], base_only=True, fast_check=True,
                              identifier=s["id"], min_time_limit=1.0, gt_time_limit_factor=12.0)
        out.append(r["base"][0])
    return out


def ifeval(doc: dict, text: str) -> tuple[list[bool], list[bool]]:
    """lm-eval's (strict, loose) instruction verdicts, with NLTK's English Punkt."""
    import random

    from tropd.eval.graders.punkt_data import ensure_english_punkt

    assert ensure_english_punkt() != "missing", "the reference needs NLTK's English Punkt"
    from lm_eval.tasks.ifeval import utils

    random.seed(0)  # lm-eval seeds once per run: the letters it draws depend on the order of prompts
    r = utils.process_results(doc, [text])
    return [bool(x) for x in r["inst_level_strict_acc"]], [bool(x) for x in r["inst_level_loose_acc"]]
