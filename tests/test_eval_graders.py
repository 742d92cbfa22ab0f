"""Math, instruction-following and multiple-choice graders on the real benchmark data, plus the
statistics: gold answers score 1, answers shuffled across items score about 0, known cases of
strict / loose instruction following come out right, pass@k matches its definition."""
from __future__ import annotations

import json
import random
import threading
from math import comb

import pytest

from tropd.eval import stats
from tropd.eval.graders import ifeval, math, mmlu
from tropd.eval.tasks import benchmarks_root, get_task, load_items

pytestmark = pytest.mark.skipif(not (benchmarks_root() / "gsm8k").is_dir(), reason="no shared/benchmarks")

FORMATS = {
    "gsm8k": ("gsm8k", lambda a: f"She has 3 apples, then 1,000 more.\n#### {a}"),
    "math500": ("boxed", lambda a: f"Step one.\nSo the answer is $\\boxed{{{a}}}$."),
    "aime24": ("boxed", lambda a: f"\\boxed{{{a}}}"),
    "aime25": ("boxed", lambda a: f"\\boxed{{{a}}}"),
}


@pytest.mark.parametrize("task", list(FORMATS))
def test_gold_answers_score_one_and_shuffled_score_about_zero(task):
    kind, fmt = FORMATS[task]
    golds = [it.ref["answer"] for it in load_items(get_task(task), None)]
    res = math.grade(kind, [(g, fmt(g)) for g in golds])
    assert all(r["correct"] for r in res), [r for r in res if not r["correct"]][:3]
    golds = golds[:200]  # shuffling a subset is enough to show the grader does not say yes to anything
    shuffled = golds[:]
    random.Random(0).shuffle(shuffled)
    res = math.grade(kind, [(g, fmt(s)) for g, s in zip(golds, shuffled)])
    hits = [(g, s) for (g, s), r in zip(zip(golds, shuffled), res) if r["correct"]]
    assert len(hits) <= 0.05 * len(golds)
    # the few that still match are items whose answers really are the same number / expression
    assert all(g.strip().replace(",", "") == s.strip().replace(",", "") for g, s in hits)


def test_answer_extraction():
    assert math.gsm8k_extract("3 + 4 = 7\n#### 1,234") == "1234"
    assert math.gsm8k_extract("so 5 then 12.50 dollars") == "12.50"
    assert math.gsm8k_extract("no digits") is None
    assert math.gsm8k_correct("12.5", "12.50") and not math.gsm8k_correct("12", "13")
    # the documented order: '####' line, last \boxed{}, "answer is" phrase, last number (issue 22's cases)
    hope = "... \\boxed{230}\n\nI hope this helps with your 2 questions!"
    assert math.gsm8k_extract_rule(hope) == ("230", "boxed")
    assert math.gsm8k_extract_rule("Final answer: 18\n(Check: 18 + 7 = 25.)") == ("18", "answer_is")
    assert math.gsm8k_extract_rule("#### 18\nNote: 2 steps.") == ("18", "####")
    assert math.gsm8k_extract("The cost is \\boxed{\\$1{,}200 \\text{ dollars}}.") == "1200"
    assert math.last_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert math.last_boxed("no box") is None
    # `\boxed 8` has no brace: the token after it, not the first '{' further on
    assert math.last_boxed(r"$\boxed 8$, since $\frac{1}{2} < 1$.") == "8"
    assert math.last_boxed(r"\fbox{ \sqrt{\frac{1}{2}} } and \boxed{") == r" \sqrt{\frac{1}{2}} "
    res = math.grade("boxed", [(r"\frac{1}{2}", r"\boxed{0.5}"), ("3", "the answer is $3$"),
                               (r"\left( 3, \frac{\pi}{2} \right)", r"\boxed{(3,\pi/2)}"),
                               ("8", r"$\boxed 8$, since $\frac{1}{2} < 1$."), ("3", "the answer is $4$")])
    # no box at all: math-verify's own extraction of the whole text decides
    assert [r["correct"] for r in res] == [True, True, True, True, False]
    assert [r["rule"] for r in res] == ["boxed", "math-verify", "boxed", "boxed", "math-verify"]


def test_math_verify_outside_the_main_thread():
    """math-verify's alarms only work in a main thread; from a worker thread grading goes through a
    process, and still gives the right verdicts (not a silent 'wrong')."""
    out = {}
    t = threading.Thread(target=lambda: out.update(r=math.grade("boxed", [("14/3", r"\boxed{\frac{14}{3}}"),
                                                                        ("2", r"\boxed{3}")])))
    t.start()
    t.join()
    assert [r["correct"] for r in out["r"]] == [True, False]


def _doc(ids, kwargs):
    return {"key": 1, "prompt": "p", "instruction_id_list": ids, "kwargs": kwargs}


def test_ifeval_strict_and_loose():
    end = _doc(["startend:end_checker"], [{"end_phrase": "Is there anything else I can help with?"}])
    comma = _doc(["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}])
    res = ifeval.grade_ifeval([
        (end, "Sure.\nIs there anything else I can help with?\n**"),  # loose only
        (end, "Sure. Is there anything else I can help with?"),
        (comma, "all lower and no commas"),
        (comma, "Upper, with a comma"),
    ])
    assert [(r["strict"], r["loose"]) for r in res] == [
        ([False], [True]), ([True], [True]), ([True, True], [True, True]), ([False, False], [False, False])]
    m = ifeval.summarize([[r] for r in res])
    assert m["prompt_strict"]["mean"] == pytest.approx(2 / 4)
    assert m["prompt_loose"]["mean"] == pytest.approx(3 / 4)
    assert m["inst_strict"]["mean"] == pytest.approx(3 / 6)


def test_ifeval_real_items_load_and_grade():
    items = load_items(get_task("ifeval"), None, limit=40)
    res = ifeval.grade_ifeval([(it.ref, "hello world") for it in items])
    assert len(res) == 40 and all(len(r["strict"]) == len(it.ref["instruction_id_list"])
                                  for r, it in zip(res, items))


def test_ifbench_checkers():
    pytest.importorskip("if_verifiable")
    row = json.loads((benchmarks_root() / "ifbench" / "IFBench_test.jsonl").open().readline())
    assert row["instruction_id_list"] == ["count:keywords_multiple"]
    good = "kaleidoscope " + "nebula " * 2 + "whisper " * 3 + "labyrinth " * 5 + "paradox " * 7
    res = ifeval.grade_ifbench([(row, good), (row, "nothing here")])
    assert [r["strict"] for r in res] == [[True], [False]]



def _ifbench_item(pred):
    return next(it for it in load_items(get_task("ifbench"), None) if pred(it))


def test_ifbench_a_checker_that_crashes_on_the_response_is_a_fail_not_a_dropped_prompt():
    """IFBench's quote checker raises IndexError (a LookupError, like NLTK's missing-data error) on "!"."""
    pytest.importorskip("if_verifiable")
    item = _ifbench_item(lambda it: it.ref["instruction_id_list"] == ["format:quote_unquote"])
    for response in ["!", 'He said "hi"\n!']:
        (r,) = ifeval.grade_ifbench([(item.ref, response)])
        assert r["strict"] == [False] and r["loose"] == [False], (response, r)


def test_ifbench_which_instructions_are_scorable_does_not_depend_on_the_response():
    pytest.importorskip("if_verifiable")
    item = _ifbench_item(lambda it: "ratio:stop_words" in it.ref["instruction_id_list"])
    patterns = {response: [x is None for x in ifeval.grade_ifbench([(item.ref, response)])[0]["strict"]]
                for response in ["", "Some answer here. Another sentence.", "!"]}
    assert len({tuple(v) for v in patterns.values()}) == 1, patterns

def test_mmlu_letters():
    assert mmlu.letter("B") == "B" and mmlu.letter("C. because") == "C"
    assert mmlu.letter("I think the answer is (D).") == "D" and mmlu.letter("none") is None
    items = load_items(get_task("mmlu"), None, limit=20)
    gold = mmlu.grade_text([(it.ref, "ABCD"[it.ref["answer_index"]]) for it in items])
    wrong = mmlu.grade_text([(it.ref, "ABCD"[(it.ref["answer_index"] + 1) % 4]) for it in items])
    assert all(r["correct"] for r in gold) and not any(r["correct"] for r in wrong)


def test_pass_at_k_matches_its_definition():
    for n, c, k in [(5, 0, 1), (5, 2, 1), (5, 2, 3), (10, 9, 5), (4, 4, 4)]:
        assert stats.pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))
    with pytest.raises(ValueError):
        stats.pass_at_k(2, 1, 3)


def test_bootstrap_intervals_are_seeded_and_contain_the_mean():
    vals = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    a, b = stats.mean_ci(vals), stats.mean_ci(vals)
    assert a == b and a["ci95"][0] <= a["mean"] <= a["ci95"][1] and a["mean"] == 0.7
    r = stats.ratio_ci([1, 2, 0], [2, 2, 1])
    assert r["mean"] == pytest.approx(3 / 5) and r["ci95"][0] <= r["mean"] <= r["ci95"][1]
    assert stats.mean_ci([0.5]) == {"mean": 0.5, "ci95": [0.5, 0.5]}


def test_mmlu_letters_only_from_answer_like_forms():
    given = {"A": "A", "(B)": "B", "C.": "C", "D)": "D", "C. because": "C", "(A) since": "A", "B) it is": "B",
             "A good answer is C": "C", "Answer: B": "B", "the correct answer is (D).": "D"}
    none = ["A good answer needs care", "Options B and C are both wrong", "A.I. helps", "A cat",
            "the answer is a tricky one", "I'd say D is wrong", ""]
    assert {s: mmlu.letter(s) for s in given} == given
    assert [mmlu.letter(s) for s in none] == [None] * len(none)


def test_mmlu_unknown_gold_letter_is_an_error(tmp_path, monkeypatch):
    import gzip

    from tropd.errors import UserError

    (tmp_path / "mmlu").mkdir()
    rows = [{"question": "q0", "choices": ["a", "b", "c", "d"], "answer": "B"},
            {"question": "q1", "choices": ["a", "b", "c", "d"], "answer": "E"}]
    with gzip.open(tmp_path / "mmlu" / "test.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("TROPD_BENCHMARKS", str(tmp_path))
    with pytest.raises(UserError, match=r"item 1: gold answer 'E' is not one of A-D"):
        load_items(get_task("mmlu"), None)


def test_ifbench_dropped_prompts_are_counted_and_none_scorable_is_an_error():
    from tropd.errors import UserError

    def r(vals, note=None):
        return {"strict": vals, "loose": vals, "grader_note": note}

    unscorable = r([None, True], "unscorable offline: count:pos (Resource averaged_perceptron_tagger)")
    m = ifeval.summarize([[r([True])], [r([False, True])], [unscorable]])
    assert m["prompt_strict"]["mean"] == pytest.approx(1 / 2)  # the unscorable prompt is left out ...
    assert (m["prompts_scored"]["count"], m["prompts_dropped"]["count"]) == (2, 1)  # ... and counted
    assert m["prompts_dropped"]["of"] == 3 and m["prompts_dropped"]["mean"] == pytest.approx(1 / 3)
    with pytest.raises(UserError, match=r"^ifbench: none of its 2 prompts can be scored.*count:pos"):
        ifeval.summarize([[unscorable], [unscorable]], "ifbench")


def _bench_file(root, rel: str, rows: list[dict]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("bad", ["#### ", "no marker at all", "#### about twelve"])
def test_gsm8k_gold_without_a_number_is_an_error(tmp_path, monkeypatch, bad):
    """A gold with no number after '####' would grade every answer wrong: loading it raises."""
    from tropd.errors import UserError

    rows = [{"question": "q0", "answer": "2+2=4\n#### 4"},
            {"question": "q1", "answer": "1,000 + 1\n#### 1,001"},
            {"question": "q2", "answer": "3\n" + bad}]
    _bench_file(tmp_path, "gsm8k/test.jsonl", rows)
    monkeypatch.setenv("TROPD_BENCHMARKS", str(tmp_path))
    with pytest.raises(UserError, match=r"gsm8k/test\.jsonl: item 2 \(gsm8k/2\): gold answer has no number"):
        load_items(get_task("gsm8k"), None)
    _bench_file(tmp_path, "gsm8k/test.jsonl", rows[:2])
    assert [it.ref["answer"] for it in load_items(get_task("gsm8k"), None)] == ["4", "1001"]


def test_boxed_gold_that_math_verify_cannot_parse_is_an_error(tmp_path, monkeypatch):
    from tropd.errors import UserError

    rows = [{"unique_id": "a/1", "problem": "p", "answer": "\\frac{1}{2}"},
            {"unique_id": "b/2", "problem": "p", "answer": "}{"},
            {"unique_id": "c/3", "problem": "p", "answer": "7"}]
    _bench_file(tmp_path, "math500/test.jsonl", rows)
    monkeypatch.setenv("TROPD_BENCHMARKS", str(tmp_path))
    with pytest.raises(UserError, match=r"math500/test\.jsonl: item b/2: math-verify cannot parse the gold"):
        load_items(get_task("math500"), None)
    assert [it.id for it in load_items(get_task("math500"), None, limit=1)] == ["a/1"]  # kept items only
    _bench_file(tmp_path, "aime24/test.jsonl", [{"id": 60, "problem": "p", "answer": ""}])
    with pytest.raises(UserError, match=r"aime24/test\.jsonl: item 60: math-verify cannot parse the gold "
                                         r"answer '' as"):
        load_items(get_task("aime24"), None)


def test_boxed_golds_are_parsed_once_per_eval(tmp_path, monkeypatch):
    """The load-time check's parse is the one grading uses, for every sample of the item."""
    import math_verify

    from tropd.eval.graders import grade

    golds = ["\\frac{1}{2}", "7", "x+1"]
    rows = [{"unique_id": f"u/{i}", "problem": "p", "answer": a} for i, a in enumerate(golds)]
    _bench_file(tmp_path, "math500/test.jsonl", rows)
    monkeypatch.setenv("TROPD_BENCHMARKS", str(tmp_path))
    monkeypatch.setattr(math, "_GOLDS", {})
    calls = []
    real = math_verify.parse
    monkeypatch.setattr(math_verify, "parse", lambda text, **kw: calls.append(text) or real(text, **kw))
    task = get_task("math500")
    items = load_items(task, None)
    assert sorted(calls) == sorted(f"\\boxed{{{r['answer']}}}" for r in rows)
    samples = [(i, f"\\boxed{{{a}}}") for i, a in enumerate(["0.5", "7.0", "1+x"]) for _ in range(3)]  # k = 3
    assert all(r["correct"] for r in grade(task, items, samples))
    assert len(calls) == 3 + 9  # each gold once (at load), then only the 9 predictions
