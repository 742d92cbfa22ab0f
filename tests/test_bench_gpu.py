"""`tropd bench --gpu` at its toy shapes (runs on the CPU): the real training loop runs, every phase and
the loss paths are reported, and the FLOP count it divides by is the models' real size.

Functional only: nothing here asserts a timing (the machine is shared); the H200 numbers are in
results/bench/gpu/.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from tropd.benchlib import gpu


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    from tropd.cli import main

    out = tmp_path_factory.mktemp("gpu-bench")
    assert main(["bench", "--gpu", "--quick", "--out", str(out)]) == 0
    return json.loads((out / "summary.json").read_text()), (out / "summary.md").read_text()


def test_quick_gpu_bench_measures_every_phase(summary):
    s, md = summary
    assert s["errors"] == {}
    assert s["train"]["status"] == "finished"
    cfg = gpu.QUICK.overrides
    rows = cfg["train.prompts_per_step"] * cfg["train.rollouts_per_prompt"]
    assert len(s["train"]["steps"]) == gpu.QUICK.steps
    for name in ("rollout", "teacher_score", "student_fwd_bwd", "optimizer"):
        p = s["phases"][name]
        assert p["s"] > 0 and len(p["s_by_step"]) == gpu.QUICK.steps, name
        assert p["mfu_vs_probe"] is not None and p["mfu_vs_probe"] >= 0, name
    roll = s["phases"]["rollout"]
    assert 0 < roll["tokens"] <= rows * cfg["train.max_new_tokens"]
    # scoring and the student pass run over every prompt and response position of the step
    assert s["phases"]["teacher_score"]["tokens"] == s["phases"]["student_fwd_bwd"]["tokens"] > roll["tokens"]
    assert s["prompt_len"] == gpu.QUICK.prompt_words + 5  # the template's 5 tokens around the words
    loss = s["loss"]
    assert loss["same_loss"] and loss["memory_ratio"] > 0 and loss["time_ratio"] > 0
    assert s["matmul_tflops"] > 0
    d = s["decode"]
    for k in ("fp32_autocast", "bf16", "hf_generate_bf16"):
        assert d[k + "_s_per_step"] > 0 and d[k + "_tokens_per_s"] > 0, k
    for heading in ("| rollout |", "| teacher_score |", "## Loss path", "chunked / naive",
                    "## HF rollout loop"):
        assert heading in md


@pytest.mark.parametrize("shape", [gpu.STUDENT_1_5B, gpu.TEACHER_7B, gpu.QUICK.student])
def test_parameter_count_matches_the_model(shape):
    """The FLOP count's parameters are those of the transformers model of that shape (built on the meta
    device: no memory), split into blocks, input embedding and LM head."""
    from transformers import Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(shape.config(0, 0, 0, max_positions=1024))
    p = gpu.params(shape)
    assert sum(t.numel() for t in model.parameters()) == sum(p.values())
    assert model.get_output_embeddings().weight.numel() == p["head"]
    if shape is gpu.STUDENT_1_5B:  # DeepSeek-R1-Distill-Qwen-1.5B: 1.78B with its untied head
        assert math.isclose(sum(p.values()), 1.777e9, rel_tol=1e-3)


def test_flops_per_token_counts_attention():
    s = gpu.QUICK.student
    base = gpu.flops_per_token(s, 0)
    assert base == 2 * (gpu.params(s)["blocks"] + gpu.params(s)["head"])
    assert gpu.flops_per_token(s, 100) - base == 4 * s.num_hidden_layers * s.hidden_size * 100


def test_tokenizer_has_the_paper_vocabulary_size():
    tok = gpu.build_tokenizer(gpu.GPUBenchShape().tokens)
    assert len(tok) == 151665 < gpu.STUDENT_1_5B.vocab_size < gpu.TEACHER_7B.vocab_size
    from tropd.models import format_prompt

    ids = tok(format_prompt(tok, "w5 w7"), add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == 7


def test_full_run_refuses_a_machine_without_cuda(tmp_path):
    from tropd.cli import main

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the full bench")
    assert main(["bench", "--gpu", "--out", str(tmp_path)]) != 0
    assert not (tmp_path / "summary.json").exists()


def test_phase_clock_waits_for_cuda_work(monkeypatch):
    """CUDA kernels run asynchronously: the loop's phase clock must synchronise the device first, or
    one phase's kernels are charged to the next (the GPU bench's per-phase times rely on it)."""
    from tropd import train

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    train._clock(torch.device("cpu"))
    assert calls == []
    train._clock(torch.device("cuda", 0))
    assert calls == [torch.device("cuda", 0)]
