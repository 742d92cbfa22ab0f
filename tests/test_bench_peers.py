"""tropd bench --peers: both sides build and train on a toy profile, and tropd's GKD loss equals TRL's
after the documented 1/(beta (1 - beta)) scaling. Skipped where TRL is not installed (it is an extra,
`pip install -e '.[peers]'`); nothing here is timed."""
from __future__ import annotations

import pytest

pytest.importorskip("trl")

from tropd.benchlib import peers  # noqa: E402

# The tiny profile's kind of template (tropd/tiny/tokenizer.py): a conversation with an answer renders
# as prompt + marker + answer + EOS, which GKDTrainer's collator needs to find the answer's tokens.
TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '=\\n' + m['content'] + "
            "eos_token }}{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}{{ '=\\n' }}{% endif %}")


@pytest.fixture(scope="module")
def chat_profile(tmp_path_factory):
    from conftest import build_profile
    from transformers import AutoTokenizer

    path = build_profile(tmp_path_factory.mktemp("peers"))
    for name in ("teacher", "student"):
        d = path.parent / "models" / name
        tok = AutoTokenizer.from_pretrained(d)
        tok.chat_template = TEMPLATE
        tok.save_pretrained(d)
    return path


@pytest.mark.parametrize("pair", ["opd", "gkd"])
def test_both_sides_train_the_same_prompts(chat_profile, pair):
    work = peers.Work(str(chat_profile), steps=2, threads=1)
    cfg = peers._config(work, pair)
    rows = peers._prompts_in_order(cfg)
    tc = cfg.train
    assert len(rows) == tc.steps * tc.prompts_per_step * tc.rollouts_per_prompt
    assert rows[0] == rows[tc.rollouts_per_prompt - 1]  # each prompt once per rollout, in tropd's order
    assert cfg.method.name == pair and cfg.train.lr_schedule == "constant"
    ours, theirs = peers.run_tropd(work, pair), peers.run_trl(work, pair)
    for res in (ours, theirs):
        assert len(res["step_s"]) == 2 and all(t > 0 for t in res["step_s"])
        # generation is timed once a step, inside the step
        assert len(res["gen_s"]) == 2 and all(0 < g < t for g, t in zip(res["gen_s"], res["step_s"]))
        assert len(res["tokens"]) == 2 and sum(res["tokens"]) > 0


def test_gkd_losses_agree_after_scaling(chat_profile):
    got = peers.gkd_loss_agreement(peers.Work(str(chat_profile), steps=1, threads=1), n=4, beta=0.5)
    assert got["tokens"] > 0 and got["trl"] > 0
    assert got["rel_diff"] < 1e-5, got


def test_markdown_and_summary_keys_per_profile():
    side = {"median_step_s": 1.0, "tokens_per_s": 100.0, "peak_rss_mb": 500.0}

    def res(profile):
        return {"profile": profile, "work": {"profile": f"{profile}.yaml", "overrides": [], "steps": 4, "threads": 2},
                "repeats": 3, "pairs": {"opd": {"trl": "DistillationTrainer", "median": {
                    "tropd": side, "trl": {**side, "median_step_s": 2.0}}, "step_ratio": 0.5, "mem_ratio": 1.0}}}

    md = peers.markdown([res("tiny"), res("smol")], {"cpu": "x", "cores": 2})
    assert md.count("| opd | DistillationTrainer | 1.000 | 2.000 | 0.50 |") == 2
    assert "## tiny" in md and "## smol" in md
    assert peers.summary_keys(res("tiny")) == {"peer_opd_step_ratio": 0.5, "peer_opd_mem_ratio": 1.0}
    assert peers.summary_keys(res("smol")) == {"peer_smol_opd_step_ratio": 0.5, "peer_smol_opd_mem_ratio": 1.0}
    assert "Where a step goes" not in md  # results measured before the split have none
    split = res("tiny")
    for s, gen in (("tropd", 0.25), ("trl", 0.5)):
        m = split["pairs"]["opd"]["median"][s]
        split["pairs"]["opd"]["median"][s] = {**m, "median_gen_s": gen, "median_rest_s": m["median_step_s"] - gen}
    assert "| opd | 0.250 | 0.750 | 0.500 | 1.500 |" in peers.markdown([split], {"cpu": "x", "cores": 2})
    paired = res("tiny")
    paired["pairs"]["opd"]["runs"] = {"tropd": [side, {**side, "median_step_s": 3.0}],
                                      "trl": [{**side, "median_step_s": 2.0}, {**side, "median_step_s": 2.0}]}
    assert "| 0.50 (0.50-1.50) |" in peers.markdown([paired], {"cpu": "x", "cores": 2})
