"""Paired statistics and the claims report: the interval against a hand computation, verdicts that
follow the data (and flip when the data flip), the slope against mismatch, and the sweep's arms."""
from __future__ import annotations

import math

import pytest

from tropd.config import REPO_ROOT, load_config
from tropd.report.claims import claims, claims_markdown, vs_opd_frame, vs_opd_markdown
from tropd.report.paired import all_of, any_of, paired, slope, verdict
from tropd.report.study import ArmData, Level, Study, run_stats


def test_paired_interval_matches_a_hand_computation():
    # differences 0.10, 0.05, 0.15: mean 0.10, sd 0.05, t(0.975, 2) = 4.302653 -> half 0.124207
    e = paired({0: 0.70, 1: 0.60, 2: 0.65, 3: 0.9}, {0: 0.60, 1: 0.55, 2: 0.50})  # seed 3 has no pair
    assert e.n == 3
    assert e.mean == pytest.approx(0.10)
    assert e.half_width == pytest.approx(4.302652729911275 * 0.05 / math.sqrt(3))
    assert (e.lo, e.hi) == pytest.approx((-0.0242074, 0.2242074), abs=1e-6)


def test_slope_matches_a_hand_computation():
    # y = 2x + noise; x = 0, 1, 2 (twice each): OLS by hand
    x = [0, 1, 2, 0, 1, 2]
    y = [0.1, 2.0, 4.1, -0.1, 2.2, 3.9]
    s = slope(x, y)
    xm, ym = sum(x) / 6, sum(y) / 6
    b = sum((a - xm) * (c - ym) for a, c in zip(x, y)) / sum((a - xm) ** 2 for a in x)
    resid = [c - (ym + b * (a - xm)) for a, c in zip(x, y)]
    se = math.sqrt(sum(r * r for r in resid) / 4 / sum((a - xm) ** 2 for a in x))
    assert s.slope == pytest.approx(b)
    assert s.half_width == pytest.approx(2.7764451051977987 * se)  # t(0.975, 4)
    assert slope([1, 1, 1], [1, 2, 3]) is None and slope([0, 1], [0, 1]) is None


def test_verdict_rule_and_its_combinations():
    assert verdict(0.1, 0.3, +1) == "supported"
    assert verdict(-0.3, -0.1, +1) == "contradicted"
    assert verdict(-0.1, 0.3, +1) == "inconclusive"
    assert verdict(-0.3, -0.1, -1) == "supported"
    assert verdict(float("nan"), 1, +1) == "inconclusive"
    assert all_of(["supported", "supported"]) == "supported"
    assert all_of(["supported", "inconclusive"]) == "inconclusive"
    assert all_of(["supported", "contradicted"]) == "contradicted"
    assert any_of(["supported", "inconclusive"]) == "supported"
    assert any_of(["supported", "contradicted"]) == "inconclusive"
    assert any_of(["contradicted", "inconclusive"]) == "contradicted"


def _arm(level, method, scale, avg, gn, ent):
    a = ArmData(level, method if scale == 1 else f"{method}_lr{scale:g}x", method, scale)
    for seed, (v, g, h) in enumerate(zip(avg, gn, ent)):
        a.scores[seed] = {"tiny_math": v, "avg": v}
        a.stats[seed] = {"grad_norm_mean": g, "entropy_2nd_half": h}
    return a


def _study(sign: int) -> Study:
    """Three levels; TrOPD's lead over OPD (times `sign`) grows with the mismatch and with the lr."""
    levels = []
    for name, x, gap in (("0.2", 0.10, 0.02), ("0.5", 0.20, 0.06), ("0.8", 0.30, 0.10)):
        lv = Level(name, float(name), x, student={"tiny_math": 0.4, "avg": 0.4}, teacher={"tiny_math": 1.0, "avg": 1.0})
        base = [0.60, 0.62, 0.58]
        for scale, extra in ((1.0, 0.0), (2.5, 0.05)):
            opd = [b - extra for b in base]
            lv.arms[f"opd{scale}"] = _arm(name, "opd", scale, opd, [5.0, 5.2, 4.9], [0.30, 0.31, 0.29])
            trop = [o + sign * (gap + extra) + d for o, d in zip(opd, (0.004, -0.003, 0.001))]
            lv.arms[f"tropd{scale}"] = _arm(name, "tropd", scale, trop, [5.0 - sign * 4, 5.1 - sign * 4, 4.8 - sign * 4],
                                            [0.30 + sign * 0.1, 0.32 + sign * 0.1, 0.29 + sign * 0.1])
        lv.arms["topk_fkl"] = _arm(name, "topk_fkl", 1.0, [0.40 - sign * 0.2 + d for d in (0.01, 0, -0.01)],
                                   [1, 1, 1], [0.1, 0.1, 0.1])
        lv.arms["fkl_outlier"] = _arm(name, "fkl_outlier", 1.0, [0.60 + d for d in (0.01, 0, -0.01)],
                                      [1, 1, 1], [0.1, 0.1, 0.1])
        levels.append(lv)
    return Study("synthetic", ["tiny_math"], [0, 1, 2], levels)


def test_claim_verdicts_flip_when_the_data_flip():
    up = {c.key: c.verdict for c in claims(_study(+1))}
    down = {c.key: c.verdict for c in claims(_study(-1))}
    assert up == {"a": "supported", "b": "supported", "c": "supported", "d": "supported"}
    assert down == {"a": "contradicted", "b": "contradicted", "c": "contradicted", "d": "contradicted"}


def test_claims_markdown_states_the_rule_first_and_every_verdict():
    text = claims_markdown(_study(+1))
    rule = text.index("**Rule")
    assert rule < text.index("## (a)")
    for key in "abcd":
        assert f"| ({key})" in text
    assert "supported" in text


def test_vs_opd_table_pairs_by_seed_per_level_and_pooled():
    study = _study(+1)
    frame = vs_opd_frame(study)
    row = frame[(frame.level == "0.2") & (frame.method == "tropd") & (frame.lr_scale == 1.0) & (frame.column == "avg")]
    assert row.iloc[0]["mean"] == pytest.approx(0.02 + (0.004 - 0.003 + 0.001) / 3)
    assert row.iloc[0]["n_pairs"] == 3
    pooled = frame[(frame.level == "pooled") & (frame.method == "tropd") & (frame.column == "avg")]
    assert set(pooled["n_pairs"]) == {9}
    assert "Pooled over levels" in vs_opd_markdown(study, frame)


def test_one_level_study_leaves_claim_c_untested():
    s = _study(+1)
    s.levels = s.levels[:1]
    for lv in s.levels:
        lv.arms = {k: a for k, a in lv.arms.items() if a.lr_scale == 1}
    c = {x.key: x for x in claims(s)}["c"]
    assert c.verdict == "inconclusive" and not c.tests and "Not tested" in c.notes[0]


def test_run_stats_summarise_gradient_norm_entropy_and_the_learning_curve():
    metrics = [{"step": i, "grad_norm": float(i + 1), "student_entropy": float(i)} for i in range(10)]
    metrics[4]["heldout_avg"], metrics[9]["heldout_avg"] = 0.8, 0.6
    st = run_stats(metrics, 10)
    assert st["grad_norm_mean"] == pytest.approx(5.5) and st["grad_norm_max"] == 10
    assert st["entropy_2nd_half"] == pytest.approx(7.0)  # steps 5..9
    assert (st["heldout_best"], st["heldout_final"], st["drop"]) == pytest.approx((0.8, 0.6, 0.2))


def test_sweep_profile_arms():
    from tropd.sweep import arms, level_overrides

    cfg = load_config(REPO_ROOT / "configs" / "sweep.yaml")
    assert len(cfg.sweep.levels) >= 3
    for x in cfg.sweep.levels:
        names = [a.name for a in arms(cfg, x)]
        assert {"opd", "tropd", "clip_outlier", "topk_fkl"} <= set(names)
        for m in cfg.sweep.lr_methods:
            for s in cfg.sweep.lr_scales:
                assert f"{m}_lr{s:g}x" in names
        assert f"prepare.mismatch={x!r}" in level_overrides(cfg, x)
    at = {a.name for a in arms(cfg, cfg.sweep.readings_level)}
    assert set(cfg.sweep.readings) <= at
    # every arm's config resolves: the level's knob and student, the arm's lr
    x = cfg.sweep.levels[0]
    a = next(a for a in arms(cfg, x) if a.lr_scale != 1)
    run = load_config(REPO_ROOT / "configs" / "sweep.yaml", method=a.method,
                      overrides=[*level_overrides(cfg, x), *a.overrides])
    assert run.prepare.mismatch == x and run.train.lr == pytest.approx(cfg.train.lr * a.lr_scale)
    assert f"m{x:g}" in run.student.path


def test_aggregate_of_a_synthetic_sweep_writes_every_output(tmp_path):
    """`tropd aggregate` on a sweep profile: per-level result trees in, tables, plots, claims.md and the
    audit copies (gzip metrics, resolved configs) out."""
    import gzip
    import json

    import yaml

    from tropd.cli import main as cli
    from tropd.sweep import arms

    prof = {"profile": "synsweep", "paths": {k: str(tmp_path / k) for k in ("data", "models", "results")},
            "train": {"steps": 4}, "eval": {"tasks": ["tiny_math", "tiny_code"]},
            "workflow": {"methods": ["opd", "tropd", "topk_fkl"], "seeds": [0, 1, 2]},
            "sweep": {"levels": [0.2, 0.8], "lr_scales": [2.5], "lr_methods": ["opd", "tropd"],
                      "readings_level": 0.8, "readings": ["fkl_outlier", "tropd_g_fixed"]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(prof))
    cfg = load_config(path)
    for i, x in enumerate(cfg.sweep.levels):
        name = f"{x:g}"
        (tmp_path / "models" / f"m{name}").mkdir(parents=True)
        (tmp_path / "models" / f"m{name}" / "probe.json").write_text(json.dumps(
            {"teacher_logp": {"student_samples": {"frac_below_0.01": 0.1 + 0.1 * i}}}))
        level = tmp_path / "results" / f"m{name}"
        rows = [a.name for a in arms(cfg, x)] + ["teacher", "student"]
        for j, row in enumerate(rows):
            for seed in (0, 1, 2):
                for task, domain in (("tiny_math", "math"), ("tiny_code", "code")):
                    e = {"task": task, "domain": domain, "primary": "accuracy", "decoding": {"temperature": 0.0},
                         "model": row, "metrics": {"accuracy": {"mean": 0.3 + 0.05 * j + 0.01 * seed}}}
                    p = level / "evals" / row / f"seed{seed}" / f"{task}.json"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text(json.dumps(e))
                if row in ("teacher", "student"):
                    continue
                d = level / "runs" / row / f"seed{seed}"
                d.mkdir(parents=True, exist_ok=True)
                (d / "summary.json").write_text(json.dumps({"status": "finished", "seed": seed}))
                (d / "metrics.jsonl").write_text("".join(json.dumps(
                    {"step": s, "grad_norm": 1.0 + s + j, "student_entropy": 0.5,
                     **({"heldout_avg": 0.4 + 0.01 * s} if s % 2 else {})}) + "\n" for s in range(4)))
    assert cli(["aggregate", "--config", str(path)]) == 0
    out = tmp_path / "results"
    for f in ("claims.md", "tables/scores.md", "tables/vs_opd.md", "tables/vs_opd.csv", "tables/slopes.md",
              "tables/readings.md", "tables/per_seed.csv", "plots/score_vs_mismatch.png",
              "plots/learning_curves.png", "plots/grad_norm.png", "m0.2/probe.json"):
        assert (out / f).is_file(), f
    m = out / "audit" / "m0.8" / "tropd_g_fixed" / "seed1" / "metrics.jsonl.gz"
    assert len(gzip.decompress(m.read_bytes()).decode().splitlines()) == 4
    tuning = (out / "tables" / "tuning.md").read_text()  # OPD at the lowest level, each lr against x1
    assert "Level 0.2 (measured mismatch 10.0%)" in tuning
    assert "(x2.5) |" in tuning and "+15.0 [+15.0, +15.0] | 3 |" in tuning, tuning
    claims_text = (out / "claims.md").read_text()
    assert "measured 10.0%" in claims_text and "## (c)" in claims_text


def test_claim_column_decides_on_that_task_alone():
    """eval.claim_column: the claims test one task (smol: the distilled one), not the average that
    regression columns dilute."""
    study = _study(+1)
    for lv in study.levels:  # the average says the opposite of the task
        for arm in lv.arms.values():
            for s in arm.scores.values():
                s["avg"] = 1.0 - s["tiny_math"]
    assert {c.key: c.verdict for c in claims(study)}["a"] == "contradicted"
    study.claim_column = "tiny_math"
    cl = {c.key: c for c in claims(study)}
    assert cl["a"].verdict == "supported" and "Math (syn.)" in cl["a"].tests[0].what


def test_claim_column_must_be_avg_or_a_task(tmp_path):
    from tropd.config import ConfigError

    path = tmp_path / "p.yaml"
    path.write_text("profile: p\neval: {tasks: [tiny_math], claim_column: gsm8k}\n")
    with pytest.raises(ConfigError, match="eval.claim_column"):
        load_config(path)
