"""Fault injection on the training run: divergence is a result, a full disk or an unwritable
output is a one-line error that leaves earlier outputs intact. (SIGKILL/resume and corrupt
checkpoints: tests/test_train_core.py.)"""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from test_train_core import run_cli


def test_nan_loss_stops_cleanly_as_diverged(tiny_profile, tmp_path):
    out = tmp_path / "run"
    p = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
                env={"TROPD_FAULT": "nan@loss:3"})
    assert p.returncode == 0, p.stderr[-800:]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "diverged" and s["diverged_step"] == 3 and s["steps_done"] == 3
    assert (out / "student" / "model.safetensors").is_file()  # the last good weights, evaluable
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    assert "diverged at step 3" in p.stderr


def test_exploding_reverse_kl_bound(tiny_profile, tmp_path):
    """The run stops at the first step whose sampled reverse KL passes train.divergence_rkl; the steps
    before it stayed within the bound (this fixture's models start near 0 nats/token)."""
    out = tmp_path / "run"
    p = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
                "train.divergence_rkl=1e-3")
    assert p.returncode == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "diverged" and s["diverged_step"] is not None and s["diverged_step"] < 6
    before = [json.loads(x)["rkl"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(before) == s["diverged_step"] and all(r <= 1e-3 for r in before)
    assert "diverged at step" in p.stderr and "rkl=" in p.stderr


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_is_one_line_error_and_keeps_outputs(tiny_profile, small_disk):
    out = small_disk / "run"
    out.mkdir()
    keep = out / "notes.txt"
    keep.write_text("earlier output\n")
    (small_disk / "filler").write_bytes(b"x" * 30_000)
    p = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
                "train.checkpoint_every=1")
    assert p.returncode == 3, p.stderr[-800:]
    err = p.stderr.strip().splitlines()[-1]
    assert err.startswith("tropd train: error:") and "No space left on device" in err
    assert keep.read_text() == "earlier output\n"
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".tmp_*"))
    assert not (out / "summary.json").exists()


def test_unwritable_output_is_one_line_error(tiny_profile, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    p = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out",
                blocker / "run")
    assert p.returncode == 3
    assert len(p.stderr.strip().splitlines()) == 1 and "cannot write" in p.stderr


def test_resume_refuses_other_config(tiny_profile, tmp_path):
    out = tmp_path / "run"
    run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
            env={"TROPD_FAULT": "kill@rollout:3"})
    p = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
                "train.lr=0.5")
    assert p.returncode == 2 and "another config" in p.stderr
    cfg = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert cfg["train"]["lr"] == pytest.approx(1e-3)
