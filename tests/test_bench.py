"""`tropd bench`: the quick run writes both summaries with every figure, and its probes work.

Functional only: nothing here asserts a timing or a ratio's value (the machine is shared).
"""
from __future__ import annotations

import json
import math

import pytest
import torch


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def quick_summary(tmp_path_factory):
    import os

    from tropd.cli import main

    out = tmp_path_factory.mktemp("bench")
    old = os.environ.get("TROPD_CACHE")
    os.environ["TROPD_CACHE"] = str(out / "cache")  # evalplus ground truth of the subset goes here
    try:
        assert main(["bench", "--quick", "--out", str(out)]) == 0
    finally:
        if old is None:
            os.environ.pop("TROPD_CACHE")
        else:
            os.environ["TROPD_CACHE"] = old
    return out


def test_quick_bench_writes_all_figures(quick_summary):
    s = json.loads((quick_summary / "summary.json").read_text())
    for key in ("loss_memory_ratio", "step_overhead_ratio", "rollout_speed_ratio"):
        assert _positive(s[key]), key
        assert isinstance(s["meets_goal"][key], bool)
    for key, section in (("eval_code_checks_per_s", "code"), ("eval_math_items_per_s", "math")):
        ev = s["details"]["eval"][section]
        # a number where the graders and data exist, else an explicit pending with its reason
        assert _positive(s[key]) if ev["status"] == "ok" else (s[key] is None and ev["reason"])
    m = s["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["torch"] == torch.__version__ and len(m["loadavg_end"]) == 3
    assert s["quick"] is True
    # chunked and naive computed the same loss; every memory probe saw its own allocations
    mem = s["details"]["memory"]
    assert mem["same_loss"]
    assert all(_positive(p["peak_mb"]) for p in mem["paths"].values())
    md = (quick_summary / "summary.md").read_text()
    for key in ("loss_memory_ratio", "step_overhead_ratio", "rollout_speed_ratio", "eval_code_checks_per_s",
                "eval_math_items_per_s", "Load average"):
        assert key in md, key


def test_peak_rss_sees_an_allocation():
    from tropd.benchlib.common import peak_rss

    with peak_rss() as mem:
        x = torch.ones(16 * 2**20 // 4)  # 16 MiB, touched
        x += 1
    assert mem["peak_mb"] >= 15, mem
    del x


def test_memory_probe_in_a_fresh_process():
    from tropd.benchlib.memory import measure

    a = measure("chunked", T=40, V=300, D=8, K=4, chunk=16)
    b = measure("naive", T=40, V=300, D=8, K=4, chunk=16)
    assert a["path"] == "chunked" and math.isfinite(a["value"]) and a["peak_mb"] >= 0
    assert abs(a["value"] - b["value"]) < 1e-4  # same loss from both paths, across processes


