"""Faults at the level of the whole DAG (issue: reliability), on a cut-down tiny-ci profile:

- a method whose loss turns NaN mid-run stops cleanly, is evaluated from its last good weights and
  tabulated as `diverged at step N`, while every other row is filled in: a result, not an error;
- two runs of the workflow with the same seeds, in two folders, give identical tables (every score,
  interval and divergence cell; the cost columns hold measured wall time and memory, and the config
  hashes name the two model folders).
"""
from __future__ import annotations

import os

import pandas as pd

from test_workflow import ci_profile, start_snakemake

FAULT = {"TROPD_FAULT": "nan@loss:3", "TROPD_FAULT_METHOD": "topk_fkl"}


def run_dag(root) -> str:
    root.mkdir(parents=True)
    profile = ci_profile(root, workflow={"methods": ["opd", "topk_fkl"], "seeds": [0]})
    old = {k: os.environ.get(k) for k in FAULT}
    os.environ.update(FAULT)
    try:
        p = start_snakemake(root, profile, "--cores", "2")
        assert p.wait(timeout=900) == 0, (root / "snakemake.log").read_text()[-3000:]
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return (root / "results" / "tables" / "main.md").read_text()


def test_divergence_is_tabulated_and_two_runs_give_identical_tables(tmp_path):
    a = run_dag(tmp_path / "a")
    rows = {line.split("|")[1].strip(): line for line in a.splitlines() if line.startswith("| ")}
    assert "diverged at step 3" in rows["Top-k FKL"], a
    assert "diverged" not in rows["OPD"] and "–" not in rows["OPD"].split("|")[2], a
    summary = (tmp_path / "a" / "results" / "runs" / "topk_fkl" / "seed0" / "summary.json").read_text()
    assert '"status": "diverged"' in summary and '"diverged_step": 3' in summary
    run_dag(tmp_path / "b")
    # every score, interval and divergence cell is identical; wall time and peak memory are measurements
    for name in ("main.csv", "ablation.csv"):
        a_t, b_t = (pd.read_csv(tmp_path / d / "results/tables" / name) for d in ("a", "b"))
        if "kind" in a_t:
            a_t, b_t = a_t[a_t.kind != "cost"], b_t[b_t.kind != "cost"]
        # the config hashes name the model folders, which differ between the two roots
        a_t, b_t = (t.drop(columns=[c for c in t if c.endswith("config_hash")]) for t in (a_t, b_t))
        assert len(a_t) > 0
        pd.testing.assert_frame_equal(a_t.reset_index(drop=True), b_t.reset_index(drop=True))
