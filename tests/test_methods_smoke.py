"""Every method preset trains a few steps on a tiny random profile with a fixed seed, and its logged
losses match stored values (tests/expected/method_losses.json).

Regenerate the stored values after an intended change of a method with
    TROPD_UPDATE_EXPECTED=1 python -m pytest tests/test_methods_smoke.py
and say why in the commit message.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from tropd.config import REPO_ROOT, load_config
from tropd.train import train

EXPECTED = Path(__file__).parent / "expected" / "method_losses.json"
PRESETS = sorted(p.stem for p in (REPO_ROOT / "configs" / "methods").glob("*.yaml"))
STEPS = 4


@pytest.fixture(scope="module")
def store():
    data = json.loads(EXPECTED.read_text()) if EXPECTED.is_file() else {}
    yield data
    if os.environ.get("TROPD_UPDATE_EXPECTED"):
        EXPECTED.parent.mkdir(exist_ok=True)
        EXPECTED.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize("preset", PRESETS)
def test_method_smoke(preset, tiny_profile, tmp_path, store):
    torch.set_num_threads(1)
    cfg = load_config(tiny_profile, method=preset,
                      overrides=[f"train.steps={STEPS}", "train.checkpoint_every=100", "seed=3"])
    summary = train(cfg, tmp_path / "run", log=lambda m: None)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines]
    assert summary["status"] == "finished", summary
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    # SeqKD trains on teacher samples only: there is no on-policy token to measure reverse KL on
    on_policy = () if preset == "seqkd" else ("rkl", "student_entropy")
    for key in (*on_policy, "grad_norm", "response_len"):
        assert all(key in x for x in lines), key
    if os.environ.get("TROPD_UPDATE_EXPECTED"):
        store[preset] = losses
        return
    assert preset in store, f"no stored losses for {preset}: run with TROPD_UPDATE_EXPECTED=1"
    assert losses == pytest.approx(store[preset], rel=1e-4, abs=1e-6)


def test_a_method_that_never_reads_the_teacher_skips_scoring(tiny_profile, tmp_path, monkeypatch):
    """SeqKD declares Scores(teacher=False): the loop never calls the teacher forward."""
    import tropd.train
    from tropd.catalog import get_method
    from tropd.registry import _REGISTRY, Scores, register

    get_method("seqkd")
    assert [n for n, m in _REGISTRY.items() if not m.scores.teacher] == ["seqkd"]

    def no_scoring(*a, **k):
        raise AssertionError("teacher_score called for a method that does not read the teacher")

    monkeypatch.setattr(tropd.train, "teacher_score", no_scoring)
    cfg = load_config(tiny_profile, method="seqkd", overrides=["train.steps=2", "train.checkpoint_every=100"])
    summary = train(cfg, tmp_path / "run", log=lambda m: None)
    assert summary["teacher_tokens_scored"] == 0 and summary["tokens_generated"] > 0
    with pytest.raises(ValueError, match="does not score"):
        register("needs_without_scores", description="", reference="",
                 scores=Scores(teacher=False, full_logits=True))(lambda s, p, c: None)
