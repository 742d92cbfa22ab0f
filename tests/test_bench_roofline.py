"""tropd bench --roofline on a toy profile: FLOPs counted from the shapes, a fraction per phase, the
files and the summary keys written. Nothing is timed against a bound."""
from __future__ import annotations

import json

from tropd.benchlib import roofline
from tropd.benchlib.gpu import flops_per_token


def test_shape_and_flops_from_the_model_folder(tiny_profile):
    s = roofline.shape_of(tiny_profile.parent / "models" / "student")
    assert (s.hidden_size, s.num_hidden_layers) == (16, 1)
    # 2 x (blocks + head) per token, plus attention over ctx earlier positions
    assert flops_per_token(s, 10) - flops_per_token(s, 0) == 4 * s.num_hidden_layers * s.hidden_size * 10


def test_roofline_writes_fractions_and_keeps_other_profiles(tiny_profile, tmp_path):
    from tropd.cli import main as cli

    out = tmp_path / "bench"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"step_overhead_ratio": 1.0}))
    (out / "roofline.json").write_text(json.dumps([{"profile": "other", "phases": {}}]))
    assert cli(["bench", "--roofline", "--profile", str(tiny_profile), "--roofline-steps", "2", "--out", str(out)]) == 0
    results = json.loads((out / "roofline.json").read_text())
    assert [r["profile"] for r in results] == ["other", "test"]
    r = results[-1]
    for name in ("rollout", "teacher_score", "student_fwd_bwd"):
        p = r["phases"][name]
        assert p["tflops"] > 0 and 0 < p["fraction_of_machine"] and p["tokens"] > 0
    assert r["furthest"] in r["phases"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step_overhead_ratio"] == 1.0 and summary["roofline_test_rollout_fraction"] > 0
    assert "Furthest from the ceiling" in (out / "roofline.md").read_text()
    assert (out / "roofline.png").stat().st_size > 0
