"""Which items `eval.limit` keeps: the first ones, except where the file is sorted by something that
matters (MMLU, by subject), where the kept items are spread evenly over the file."""
from __future__ import annotations

from collections import Counter

import pytest

from tropd.eval.tasks import benchmarks_root, get_task, load_items

pytestmark = pytest.mark.skipif(not (benchmarks_root() / "mmlu").is_dir(), reason="no shared/benchmarks")


def _subject(item) -> str:
    return item.ref["subject"]


def test_mmlu_subset_covers_every_subject_in_proportion():
    task = get_task("mmlu")
    full = load_items(task, None)
    kept = load_items(task, None, limit=500)
    assert len(kept) == 500 and len({it.id for it in kept}) == 500
    order = {it.id: i for i, it in enumerate(full)}
    assert [order[it.id] for it in kept] == sorted(order[it.id] for it in kept)  # file order kept
    all_subjects, got = Counter(map(_subject, full)), Counter(map(_subject, kept))
    assert len(all_subjects) == 57 and set(got) == set(all_subjects)
    for subject, n in all_subjects.items():  # evenly spaced: within one item of the proportional share
        assert abs(got[subject] - 500 * n / len(full)) <= 1, subject


def test_other_tasks_keep_the_first_items_and_limit_above_size_keeps_all():
    gsm8k = get_task("gsm8k")
    full = load_items(gsm8k, None)
    assert [it.id for it in load_items(gsm8k, None, limit=7)] == [it.id for it in full[:7]]
    assert len(load_items(get_task("mmlu"), None, limit=10**6)) == len(load_items(get_task("mmlu"), None))


def test_vendored_golds_all_load_and_subsets_parse_only_their_golds(monkeypatch):
    """Every vendored gold passes the load-time check (GSM8K 1319, MATH-500 + AIME 560); math-verify
    parses the golds of the kept items only."""
    import math_verify

    from tropd.eval.graders import math

    assert len(load_items(get_task("gsm8k"), None)) == 1319
    monkeypatch.setattr(math, "_GOLDS", {})
    calls = []
    real = math_verify.parse
    monkeypatch.setattr(math_verify, "parse", lambda text, **kw: calls.append(text) or real(text, **kw))
    assert len(load_items(get_task("math500"), None, limit=5)) == 5 and len(calls) == 5
    items = [it for t in ("math500", "aime24", "aime25") for it in load_items(get_task(t), None)]
    assert len(items) == 560
    golds = {f"\\boxed{{{it.ref['answer']}}}" for it in items}
    assert len(calls) == len(set(calls)) == len(golds)  # each distinct gold once, the first 5 not again
