"""The training loop end to end on random tiny models: outputs, resume after SIGKILL (bitwise),
bad input refused before any work, finished runs not redone."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tropd import checkpoint as ckpt

CLI = [sys.executable, "-m", "tropd.cli"]


def run_cli(*args, env=None, check=False) -> subprocess.CompletedProcess:
    e = dict(os.environ, **(env or {}))
    p = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=e, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(p.stderr[-2000:])
    return p


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "student" / "model.safetensors")


def test_train_writes_outputs_and_skips_finished(tiny_profile, tmp_path):
    out = tmp_path / "run"
    run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out, check=True)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(6))
    for key in ("loss", "rkl", "grad_norm", "student_entropy", "response_len", "tokens_per_s",
                "time_rollout", "time_score", "time_fwd_bwd", "time_optim"):
        assert key in lines[0], key
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps_done"] == 6
    assert (out / "student" / "config.json").is_file() and (out / "config.resolved.yaml").is_file()
    mtime = (out / "summary.json").stat().st_mtime_ns
    again = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
                    "eval.temperature=0.7", check=True)  # evaluating it otherwise is not another run
    assert "nothing to do" in again.stdout
    assert (out / "summary.json").stat().st_mtime_ns == mtime


def test_several_seeds_in_one_process_and_deleted_summary_restored(tiny_profile, reference_run, tmp_path):
    """`--seed 1,2` trains both runs; seed 1 equals the separate run bitwise. A grouped Snakemake job
    that is interrupted deletes the summaries of its finished seeds: the rerun restores them from
    .finished.json instead of training again."""
    pattern = str(tmp_path / "run{seed}")
    run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "1,2", "--out", pattern, check=True)
    a, b = weights(tmp_path / "run1"), weights(reference_run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "run2" / "summary.json").is_file()
    summary = (tmp_path / "run1" / "summary.json").read_text()
    (tmp_path / "run1" / "summary.json").unlink()
    again = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "1,2", "--out", pattern,
                    check=True)
    assert again.stdout.count("nothing to do") == 2
    assert (tmp_path / "run1" / "summary.json").read_text() == summary
    bad = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "1,2", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "{seed}" in bad.stderr and not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def reference_run(tiny_profile, tmp_path_factory) -> Path:
    ref = tmp_path_factory.mktemp("ref") / "run"
    run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "1", "--out", ref, check=True)
    return ref


@pytest.mark.parametrize("fault", ["kill@rollout:3", "kill@checkpoint:4", "kill@checkpoint-write:2", "kill@metrics:4"])
def test_sigkill_then_resume_is_bitwise_identical(tiny_profile, reference_run, tmp_path, fault):
    ref, cut = reference_run, tmp_path / "cut"
    killed = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "1", "--out", cut,
                     env={"TROPD_FAULT": fault})
    assert killed.returncode == -9, killed.stderr[-500:]
    assert not (cut / "summary.json").exists()
    run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "1", "--out", cut, check=True)
    a, b = weights(ref), weights(cut)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Every step's line is there once, with the reference's numbers (times aside).
    ref_lines, cut_lines = (_metric_lines(p / "metrics.jsonl") for p in (ref, cut))
    assert [x["step"] for x in cut_lines] == [x["step"] for x in ref_lines] == list(range(len(ref_lines)))
    assert [_no_times(x) for x in cut_lines] == [_no_times(x) for x in ref_lines]


def _metric_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _no_times(line: dict) -> dict:
    return {k: v for k, v in line.items() if not k.startswith("time_") and k != "tokens_per_s"}


def test_resumed_run_counts_the_wall_time_of_every_segment_and_logs_each_steps_lr(tiny_profile, tmp_path):
    """summary.wall_s (the tables' train time) is the time of the segments that count, the killed one's
    up to its checkpoint included; `lr` in a step's line is the rate that step used."""
    cut = tmp_path / "cut"
    killed = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "4", "--out", cut,
                     "train.warmup_steps=3", env={"TROPD_FAULT": "kill@rollout:5"})
    assert killed.returncode == -9, killed.stderr[-500:]
    state = json.loads((cut / "checkpoints" / "step_000004" / "state.json").read_text())
    assert state["wall_s"] > 0
    run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "4", "--out", cut,
            "train.warmup_steps=3", check=True)
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["wall_s"] > state["wall_s"]
    lrs = [json.loads(x)["lr"] for x in (cut / "metrics.jsonl").read_text().splitlines()]
    base = 1e-3  # the tiny profile's train.lr; linear warm-up over 3 steps, then constant
    assert lrs == pytest.approx([base / 3, 2 * base / 3, base, base, base, base])



def test_interrupted_run_resumes_after_a_logistics_change_and_refuses_a_real_one(tiny_profile, reference_run,
                                                                                   tmp_path):
    """Resuming compares the run's identity (run_hash), not the resolved file's text: a new
    log_every or checkpoint_every (e.g. after a SLURM time-out) or eval setting resumes; a new
    learning rate does not."""
    cut = tmp_path / "cut"
    killed = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "1", "--out", cut,
                     env={"TROPD_FAULT": "kill@rollout:5"})
    assert killed.returncode == -9, killed.stderr[-500:]
    bad = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "1", "--out", cut, "train.lr=0.5")
    assert bad.returncode == 2 and "holds a run with another config" in bad.stderr
    run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "1", "--out", cut,
            "train.checkpoint_every=3", "train.log_every=1", "train.keep_checkpoints=5",
            "eval.max_new_tokens=7", check=True)
    a, b = weights(reference_run), weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_kill_while_finishing_leaves_a_finished_run_not_one_that_restarts(tiny_profile, tmp_path):
    out = tmp_path / "run"
    killed = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
                     env={"TROPD_FAULT": "kill@finish:6"})
    assert killed.returncode == -9, killed.stderr[-500:]
    assert not (out / "summary.json").exists() and (out / "student").is_dir()
    lines = (out / "metrics.jsonl").read_text()
    again = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
                    "eval.temperature=0.7", check=True)  # evaluating it otherwise is not another run
    assert "nothing to do" in again.stdout and "resuming" not in again.stderr
    assert json.loads((out / "summary.json").read_text())["steps_done"] == 6
    assert (out / "metrics.jsonl").read_text() == lines

def test_corrupt_checkpoint_falls_back_to_previous(tiny_profile, tmp_path):
    cut = tmp_path / "cut"
    killed = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "2", "--out", cut,
                     env={"TROPD_FAULT": "kill@rollout:5"})
    assert killed.returncode == -9
    valid = ckpt.list_valid(cut / "checkpoints")
    assert [p.name for p in valid][-2:] == ["step_000002", "step_000004"]
    with open(valid[-1] / "model.safetensors", "r+b") as f:  # flip bytes: a torn write
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    logs: list[str] = []
    assert ckpt.latest(cut / "checkpoints", log=logs.append) == valid[-2]
    assert "failed its checksum" in logs[0]


def _bad(tiny_profile: Path, tmp_path: Path, edit) -> Path:
    cfg = yaml.safe_load(tiny_profile.read_text())
    edit(cfg)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize("case,edit,extra,expect", [
    ("unknown key", lambda c: c["train"].update(stepz=3), [], "unknown config key 'train.stepz'"),
    ("wrong type", lambda c: c["train"].update(lr="fast"), [], "train.lr"),
    ("out of range", lambda c: c["train"].update(steps=0), [], "train.steps"),
    ("unknown method", lambda c: None, ["--method", "nosuch"], "unknown method 'nosuch'"),
    ("missing data", lambda c: c["paths"].update(data="/nonexistent/data"), [], "is not prepared"),
    ("unknown domain", lambda c: c["train"].update(prompt_domains=["mathz"]), [],
     "train.prompt_domains: ['mathz'] not among the domains"),
])
def test_bad_input_is_one_line_error_and_writes_nothing(tiny_profile, tmp_path, case, edit, extra, expect):
    cfg = _bad(tiny_profile, tmp_path, edit)
    out = tmp_path / "never"
    args = ["train", "--config", cfg, "--seed", "0", "--out", out]
    args += extra or ["--method", "opd"]
    p = run_cli(*args)
    assert p.returncode == 2, p.stderr[-1000:]
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and expect in err[0], p.stderr
    assert not out.exists()


def test_vocabulary_mismatch_is_refused(tiny_profile, tmp_path):
    from transformers import AutoTokenizer

    cfg = yaml.safe_load(tiny_profile.read_text())
    other = tmp_path / "teacher2"
    shutil.copytree(cfg["teacher"]["path"], other)
    tok = AutoTokenizer.from_pretrained(other)
    tok.add_tokens(["<extra>"])
    tok.save_pretrained(other)
    cfg["teacher"]["path"] = str(other)
    p = tmp_path / "mismatch.yaml"
    p.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "never"
    r = run_cli("train", "--config", p, "--method", "opd", "--seed", "0", "--out", out)
    assert r.returncode == 2 and "vocabularies differ" in r.stderr and not out.exists()
    r = run_cli("preflight", "--config", p)
    assert r.returncode == 2 and "vocabularies differ" in r.stderr.strip().splitlines()[-1]


def test_preflight_passes_on_shared_tokenizer(tiny_profile, tmp_path):
    r = run_cli("preflight", "--config", tiny_profile, "--out", tmp_path / "pf.json", check=True)
    rep = json.loads((tmp_path / "pf.json").read_text())
    assert rep["ok"] and rep["self_kl_max_abs"] < 1e-5 and "preflight ok" in r.stdout


@pytest.mark.parametrize("method,extra", [("tropd", ["method.params.guided_fraction=1.0"]), ("gkd", []),
                                          ("trb", [])])
def test_a_teacher_with_a_padded_output_layer_trains_like_the_unpadded_one(tiny_profile, tmp_path, method, extra):
    """Real pairs differ in output rows past the tokenizer (paper-deepseek: 151,936 vs 152,064).
    preflight reports the cut, and each path that reads the teacher's logits trains as it does with
    the same teacher without the rows, which are made to take most of the mass where they are not
    cut: TrOPD (scores, top-k, guidance prefixes the teacher samples), GKD (full logits), TRB (the
    per-token blend of both models' distributions)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from conftest import padded

    cfg = yaml.safe_load(Path(tiny_profile).read_text())
    src = Path(cfg["teacher"]["path"])
    AutoTokenizer.from_pretrained(src).save_pretrained(tmp_path / "teacher")
    padded(AutoModelForCausalLM.from_pretrained(src), 6).save_pretrained(tmp_path / "teacher")
    cfg["teacher"]["path"] = str(tmp_path / "teacher")
    p = tmp_path / "padded.yaml"
    p.write_text(yaml.safe_dump(cfg))
    if method == "tropd":
        r = run_cli("preflight", "--config", p, "--out", tmp_path / "pf.json", check=True)
        rep = json.loads((tmp_path / "pf.json").read_text())
        rows = rep["vocab_size"]
        assert rep["output_rows"] == {"teacher": rows + 6, "student": rows} and rep["rows_compared"] == rows
        assert f"compared over the first {rows}" in r.stdout
    runs = {}
    for name, prof in (("plain", tiny_profile), ("padded", p)):
        runs[name] = tmp_path / name
        run_cli("train", "--config", prof, "--method", method, "--seed", "0", "--out", runs[name],
                "train.steps=3", *extra, check=True)
    a, b = ([json.loads(x) for x in (runs[n] / "metrics.jsonl").read_text().splitlines()] for n in runs)
    keys = {"tropd": ["prefix_len"], "gkd": [], "trb": ["trb_b"]}[method]
    if method == "tropd":
        assert a[0]["guided_frac"] == 1.0 and a[0]["prefix_len"] > 0
    if method == "trb":
        assert a[0]["trb_b"] > 0  # the teacher's distribution enters the sampled one
    for x, y in zip(a, b, strict=True):
        for key in ("loss", "grad_norm", "rkl", "teacher_entropy", "response_len", *keys):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), (x["step"], key)


def test_bf16_compute_keeps_fp32_weights_and_tracks_fp32(tiny_profile, reference_run, tmp_path):
    """train.dtype=bfloat16 is mixed precision, not a bf16 model: the saved student stays fp32 and
    the run follows the fp32 run (same seed) closely; bf16 rounding only perturbs it."""
    out = tmp_path / "bf16"
    run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "1", "--out", out,
            "train.dtype=bfloat16", check=True)
    w16, w32 = weights(out), weights(reference_run)
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in w16.values())
    assert any(not torch.equal(w16[k], w32[k]) for k in w32)  # bf16 compute really ran

    def rkl(run):
        return torch.tensor([json.loads(x)["rkl"] for x in (run / "metrics.jsonl").read_text().splitlines()])

    r16, r32 = rkl(out), rkl(reference_run)
    assert torch.isfinite(r16).all() and len(r16) == len(r32)
    assert (r16 - r32).abs().mean() < 0.25 * r32.abs().mean(), (r16, r32)


def test_shared_prompt_scoring_trains_like_one_pass(tiny_profile, reference_run, tmp_path, monkeypatch):
    """train.share_prompts reaches scoring and the student pass (both models, every micro-batch), and
    step 0 (same weights, same rollout) has the one-pass run's loss, reverse KL and gradient norm to
    float rounding (not bit for bit: from then on the two runs' samples drift apart)."""
    import tropd.scoring
    import tropd.train
    from tropd.config import load_config

    calls = []

    def spy(model, batch, share_prompts=False):
        calls.append(share_prompts)
        return real(model, batch, share_prompts)

    real = tropd.scoring._hidden_and_head
    monkeypatch.setattr(tropd.scoring, "_hidden_and_head", spy)
    cfg = load_config(tiny_profile, method="opd", overrides=["seed=1", "train.steps=1", "train.share_prompts=true"])
    tropd.train.train(cfg, tmp_path / "shared", log=lambda m: None)
    assert calls == [True] * 4  # teacher and student, two micro-batches of 4 rows
    first = [json.loads((run / "metrics.jsonl").read_text().splitlines()[0]) for run in (tmp_path / "shared",
                                                                                         reference_run)]
    for key in ("loss", "rkl", "grad_norm"):
        assert abs(first[0][key] - first[1][key]) < 1e-4 * max(1.0, abs(first[1][key])), key


def test_truncated_mask_drops_cut_responses_from_the_loss(tiny_profile, tmp_path):
    """train.truncated=mask: a step whose responses all ran into max_new_tokens has zero loss and no
    gradient, though its reverse KL is still logged; `keep` trains on the same responses."""
    def lines(mode):
        out = tmp_path / mode
        run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
                "train.max_new_tokens=1", f"train.truncated={mode}", check=True)
        return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]

    masked, kept = lines("mask"), lines("keep")
    cut = [i for i, x in enumerate(masked) if x["finished_frac"] == 0.0]
    assert cut, "expected steps where every response was cut (one new token, random models)"
    for i in cut:
        assert masked[i]["loss"] == 0.0 and masked[i]["grad_norm"] == 0.0 and masked[i]["rkl"] != 0.0
    assert kept[cut[0]]["loss"] != 0.0 and kept[cut[0]]["grad_norm"] > 0.0
    assert all(0.0 <= x["finished_frac"] <= 1.0 for x in masked)


def test_truncated_mask_hides_cut_responses_from_the_method(tiny_profile, tmp_path, monkeypatch):
    """train.truncated=mask: the method sees exactly the loss mask, so a selection over the batch
    (Entropy-OPD's top 20% by entropy) ranks only the tokens it trains on, never a cut response's."""
    import tropd.train
    from tropd.config import load_config
    from tropd.registry import TokenStats

    seen, reduced = [], []

    def stats(**kw):
        seen.append(kw["mask_BT"].clone())
        return TokenStats(**kw)

    def reduce(loss_BT, mask_BT, norm, denom):
        reduced.append(mask_BT.clone())
        return real_reduce(loss_BT, mask_BT, norm, denom)

    real_reduce = tropd.train.reduce_loss
    monkeypatch.setattr(tropd.train, "TokenStats", stats)
    monkeypatch.setattr(tropd.train, "reduce_loss", reduce)
    cfg = load_config(tiny_profile, method="entropy_opd", overrides=[
        "train.steps=2", "train.checkpoint_every=100", "train.max_new_tokens=1", "train.truncated=mask"])
    tropd.train.train(cfg, tmp_path / "run", log=lambda m: None)
    assert len(seen) == len(reduced) > 0
    assert all(torch.equal(a, b) for a, b in zip(seen, reduced))
    # every response has a token; the rows the method sees as empty are the cut ones
    assert any((~m.any(-1)).any() for m in seen), "expected responses cut at max_new_tokens=1"


def test_entropy_metrics_cover_the_tokens_the_student_wrote(tiny_profile, tmp_path, monkeypatch):
    """TrOPD's rollouts start with teacher-written prefixes: the logged entropies, like the reverse KL,
    are means over the student's own tokens, not over the teacher's text."""
    import tropd.train
    from tropd.config import load_config
    from tropd.registry import TokenStats

    masks: dict[str, list[torch.Tensor]] = {}
    real_acc = tropd.train._acc

    def acc(sums, key, val_BT, mask_BT, **kw):
        masks.setdefault(key, []).append(mask_BT.clone())
        return real_acc(sums, key, val_BT, mask_BT, **kw)

    teacher_tokens: list[torch.Tensor] = []

    def stats(**kw):
        teacher_tokens.append(kw["from_teacher_BT"].clone())
        return TokenStats(**kw)

    monkeypatch.setattr(tropd.train, "_acc", acc)
    monkeypatch.setattr(tropd.train, "TokenStats", stats)
    cfg = load_config(tiny_profile, method="tropd", overrides=["train.steps=2", "train.checkpoint_every=100"])
    tropd.train.train(cfg, tmp_path / "run", log=lambda m: None)
    rkl = masks["rkl"]
    assert all(torch.equal(a, b) for a, b in zip(masks["student_entropy"], rkl, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(masks["teacher_entropy"], rkl, strict=True))
    assert any(bool(t.any()) for t in teacher_tokens), "expected teacher prefixes at the first steps"
    assert not any(bool((m & t).any()) for m, t in zip(masks["student_entropy"], teacher_tokens, strict=True))


def test_old_run_with_fewer_schema_keys_is_still_recognised(tiny_profile, tmp_path):
    """A run written under an older schema (its resolved config lacks a key added since and holds a
    workflow key removed since; its summary holds the hash of that time) is still the same run: no
    retraining, no 'another config' error."""
    out = tmp_path / "run"
    run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out, check=True)
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    del resolved["train"]["truncated"]  # a key the schema gained since
    resolved["workflow"]["threads_train"] = 1  # and one it lost (workflow keys are not hashed)
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(resolved))
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps(dict(summary, config_hash="0ld0ld0ld0ld")))
    again = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
                    "eval.temperature=0.7", check=True)  # evaluating it otherwise is not another run
    assert "nothing to do" in again.stdout
    other = run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
                    "train.lr=0.5")
    assert other.returncode == 2 and "another config" in other.stderr


def test_config_hash_counts_only_values_that_differ_from_the_defaults():
    """The run hash and the workflow's rerun digest see only non-default values: a schema that
    gains a key (simulated by a subclass with one more field) leaves both unchanged, while a
    non-default value of the new key changes them."""
    from dataclasses import dataclass

    from tropd.config import EvalConfig, RunConfig, SmolPrepare, TrainConfig, config_hash, run_hash, settings_digest

    @dataclass
    class TrainLater(TrainConfig):
        new_knob: int = 3

    base, sections = RunConfig(), ("train", "method", "seed")
    later = RunConfig(train=TrainLater())
    assert config_hash(later) == config_hash(base)
    assert settings_digest(later, sections) == settings_digest(base, sections)
    assert config_hash(RunConfig(train=TrainLater(new_knob=4))) != config_hash(base)
    assert settings_digest(RunConfig(train=TrainLater(new_knob=4)), sections) != settings_digest(base, sections)
    assert config_hash(base) != config_hash(RunConfig(train=TrainConfig(truncated="mask")))
    assert config_hash(base) != config_hash(RunConfig(prepare=SmolPrepare()))  # the chosen kind counts
    assert config_hash(base) == config_hash(RunConfig(train=TrainConfig(checkpoint_every=7)))
    # eval settings are an eval summary's provenance, not a training run's identity
    vllm_eval = RunConfig(eval=EvalConfig(backend="vllm"))
    assert config_hash(vllm_eval) != config_hash(base) and run_hash(vllm_eval) == run_hash(base)
    assert run_hash(RunConfig(train=TrainConfig(truncated="mask"))) != run_hash(base)


def test_log_every_writes_every_nth_step_and_the_last(tiny_profile, tmp_path):
    out = tmp_path / "run"
    run_cli("train", "--config", tiny_profile, "--method", "opd", "--seed", "0", "--out", out,
            "train.log_every=4", check=True)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 5]


def test_a_run_written_today_stays_readable(tmp_path):
    """tests/expected/resolved_tiny_opd.yaml is the config.resolved.yaml a tiny OPD run wrote on
    2026-12-02. Every finished run on disk holds such a file and `tropd aggregate` reads it through
    the current schema: removing or renaming a key makes every old run unreadable (it happened once,
    with train.log_every), and changing a default changes what old runs mean. Either needs a
    deliberate migration, then a new fixture."""
    from tropd.config import load_config, resolved_hash, run_hash

    root = Path(__file__).resolve().parent
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(root / "expected" / "resolved_tiny_opd.yaml", run / "config.resolved.yaml")
    assert resolved_hash(run) == run_hash(load_config(root.parent / "configs" / "tiny.yaml", method="opd"))


def test_erpd_resumed_with_another_process_count_is_refused(tmp_path):
    """Each process keeps its own shard of ERPD's step-0 rollouts; another process count would read
    other prompts (or none), so it is an error that names the saved shards."""
    from types import SimpleNamespace

    from tropd.errors import UserError
    from baselines.erpd import ERPDParams, ERPDStages

    def stage(size, rank=0):
        world = SimpleNamespace(size=size, rank=rank, main=rank == 0)
        return ERPDStages(ERPDParams(stage1_frac=0.5), 10, tmp_path, torch.nn.Linear(2, 2), world)

    for rank in (0, 1):
        stage(2, rank).remember_rollout(0, {"rows": rank})
    assert stage(2, 1).fixed_rollout(3) == {"rows": 1}
    with pytest.raises(UserError, match=r"erpd_rollout\.rank0of2\.pt.*not erpd_rollout\.pt: resume with"):
        stage(1).fixed_rollout(3)
