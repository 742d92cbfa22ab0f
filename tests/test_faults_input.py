"""Bad input, key by key and file by file: each gives one line naming the problem, a non-zero exit,
and no output (issue: reliability). Preemption and divergence faults are in test_faults_train.py
and test_train_core.py; stale results in test_aggregate.py; the workflow in test_faults_workflow.py.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
import yaml

from tropd.cli import main
from tropd.config import ConfigError, RunConfig, TinyPrepare, load_config

WRONG = {int: "not-a-number", float: "not-a-number", str: 12345, bool: "maybe"}


def leaf_keys(cls=RunConfig, prefix="") -> list[tuple[str, object]]:
    """Every scalar / list / mapping key of the config with its annotation (tiny prepare section)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp = f"{prefix}{f.name}", hints[f.name]
        if f.name == "prepare":
            out += leaf_keys(TinyPrepare, "prepare.")
        elif dataclasses.is_dataclass(tp):
            out += leaf_keys(tp, key + ".")
        elif key not in ("prepare.kind", "method.name"):  # tags: tested below with their own message
            out.append((key, tp))
    return out


def wrong_value(tp) -> object:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "no-such-choice"
    if origin in (list, dict):
        return "not-a-collection"
    return WRONG[tp]


@pytest.mark.parametrize("key,tp", leaf_keys(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_config_key_rejects_a_wrong_type(tiny_profile, key, tp):
    with pytest.raises(ConfigError) as e:
        load_config(tiny_profile, overrides=[f"{key}={json.dumps(wrong_value(tp))}"])
    msg = str(e.value)
    assert key in msg and "\n" not in msg, msg


OUT_OF_RANGE = [
    ("train.steps", 0), ("train.prompts_per_step", 0), ("train.rollouts_per_prompt", -1),
    ("train.max_new_tokens", 0), ("train.micro_batch", 0), ("train.chunk_size", 0), ("train.topk", 0),
    ("train.checkpoint_every", 0), ("train.keep_checkpoints", 0), ("train.lr", -1e-3),
    ("train.weight_decay", -0.1), ("train.warmup_steps", -1), ("train.temperature", -1.0),
    ("train.grad_clip", -1.0), ("train.top_p", 0.0), ("train.top_p", 1.5), ("eval.k", 0),
    ("eval.max_new_tokens", 0), ("eval.temperature", -0.5), ("eval.limit", -1),
    ("prepare.mismatch", 1.5), ("vllm.gpu_memory_utilization", 1.5), ("vllm.tensor_parallel_size", 0), ("vllm.max_model_len", -1),
    ("vllm.tensor_parallel_size", 2), ("train.adam_beta1", 1.0), ("train.adam_beta2", -0.1),
    ("train.divergence_rkl", 0.0),
]


@pytest.mark.parametrize("key,value", OUT_OF_RANGE, ids=lambda x: str(x))
def test_out_of_range_values_are_refused(tiny_profile, tmp_path, key, value):
    prof = yaml.safe_load(Path(tiny_profile).read_text())
    if key.startswith("prepare."):
        prof["prepare"] = {"kind": "tiny"}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(prof))
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides=[f"{key}={value}"])
    assert key in str(e.value), str(e.value)


@pytest.mark.parametrize("override,expect", [
    ("prepare.kind=nosuch", "prepare.kind"), ("method.name=nosuch", "unknown method 'nosuch'"),
    ("method.params.nosuch=1", "nosuch"), ("eval.k=2", "eval.k"),  # k > 1 with greedy decoding
    ("student.dtype=float16", "student.dtype: float16 cannot be trained"),
    ('eval.task_limits={"tiny_maths":5}', "eval.task_limits: ['tiny_maths'] not in eval.tasks"),
    ('vllm.engine_kwargs={"logprobs_mode":"raw_logprobs"}', "vllm.engine_kwargs: ['logprobs_mode'] are set by tropd"),
    ('vllm.engine_kwargs={"data_parallel_size":2}', "vllm.engine_kwargs: ['data_parallel_size'] are set by tropd"),
    ("method.name=trb train.backend=vllm", "train.backend: vllm cannot sample trb"),
    ("train.share_prompts=true train.gradient_checkpointing=true", "train.share_prompts: not with"),
])
def test_tags_methods_and_combinations(tiny_profile, override, expect):
    from tropd.catalog import bind

    with pytest.raises(ConfigError) as e:  # the method's own checks: where the method is known
        bind(load_config(tiny_profile, overrides=override.split(" ")))
    assert expect in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.fixture()
def eval_profile(tiny_profile, tmp_path):
    prof = yaml.safe_load(Path(tiny_profile).read_text())
    prof["paths"]["data"] = str(tmp_path / "data")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(prof))
    return path, prof["teacher"]["path"], tmp_path / "data" / "math" / "test.jsonl"


GOOD = {"question": "1+1?", "answer": "1+1=2\n#### 2"}


@pytest.mark.parametrize("content,expect", [
    (json.dumps(GOOD) + "\n{not json\n", "test.jsonl:2: invalid JSON"),
    (json.dumps({"question": "1+1?"}) + "\n", "lacks field(s) answer"),
    ("", "no items"),
    ("[1, 2]\n", "expected a JSON object"),
    (None, "not found"),
])
def test_malformed_or_empty_benchmark_file(eval_profile, tmp_path, capsys, content, expect):
    cfg, teacher, data = eval_profile
    if content is not None:
        data.parent.mkdir(parents=True)
        data.write_text(content)
    out = tmp_path / "out" / "e.json"
    assert main(["eval", "--config", str(cfg), "--model", teacher, "--task", "tiny_math", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert not out.parent.exists()


def test_malformed_real_benchmark_file(tmp_path, monkeypatch, capsys):
    """The same for a real benchmark, read from TROPD_BENCHMARKS (GSM8K's own format)."""
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text(json.dumps(GOOD) + "\n" + '{"question": 3' + "\n")
    monkeypatch.setenv("TROPD_BENCHMARKS", str(tmp_path))
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"id": "gsm8k/0", "completion": "#### 2"}) + "\n")
    out = tmp_path / "o.json"
    assert main(["score", "--task", "gsm8k", "--samples", str(samples), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gsm8k/test.jsonl:2: invalid JSON" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("override,same", [
    ("train.log_every=5", True), ("train.checkpoint_every=7", True), ("train.keep_checkpoints=9", True),
    ("vllm.gpu_memory_utilization=0.2", True), ("vllm.sleep=true", True),
    ("train.lr=0.5", False), ("vllm.enforce_eager=true", False),
])
def test_run_identity_and_the_train_rules_rerun_trigger_agree(tiny_profile, override, same):
    """What tropd train accepts on an existing run (config_hash) is what does not rerun the train rule
    (settings_digest over the sections config_hash covers): one definition, no rerun that then fails."""
    from tropd.config import config_hash, settings_digest

    sections = ("profile", "seed", "prepare", "teacher", "student", "train", "method", "eval", "vllm")
    a, b = (load_config(tiny_profile, overrides=o) for o in ([], [override]))
    assert (config_hash(a) == config_hash(b)) is same
    assert (settings_digest(a, sections) == settings_digest(b, sections)) is same
