"""The vLLM backend's translation code against a fake `vllm` module (CPU), and one real end-to-end
run marked `gpu` (skipped unless CUDA and vLLM are present).

The fake records what the backend asks of vLLM: engine arguments, one SamplingParams per request,
weight loads into the engine's model, prefix-cache resets, sleep/wake. Its "model" samples from
the request seed alone, so the checks here are about the plumbing, not about vLLM's sampler.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import types
from dataclasses import dataclass

import pytest
import torch

from tropd.rollout.policies import Student, Teacher
from tropd.methods.tropd import guided_or_student
from tropd.errors import UserError
from tropd.models import build_llama
from tropd.rollout import collect, make_backend

V, EOS, PAD = 23, 2, 0


# ----------------------------------------------------------------------------- the fake vllm


@dataclass
class Logprob:
    logprob: float
    rank: int = 1


class FakeSamplingParams:
    def __init__(self, **kw):
        self.kw = kw
        for k, v in kw.items():
            setattr(self, k, v)


class FakeModel:
    def __init__(self, events):
        self.events, self.loaded = events, {}

    def load_weights(self, weights):
        self.loaded = {k: v.detach().clone() for k, v in weights}
        self.events.append("load")


class FakeLLM:
    instances: list = []

    def __init__(self, **kw):
        self.kw = kw
        # Like vLLM >= 0.12: an in-process engine core caches the env vars (enable_envs_cache), and
        # later engines read the cache until vllm.envs.disable_envs_cache() drops it.
        envs = sys.modules["vllm"].envs
        self.multiproc = envs.cache.get("VLLM_ENABLE_V1_MULTIPROCESSING",
                                        os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1"))
        if self.multiproc == "0":
            envs.cache["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            torch.manual_seed(0)  # vLLM's worker seeds the process's generators (set_random_seed)
            random.seed(0)
        self.events: list[str] = []
        # real vllm.LLM has no shutdown(); its engine client has
        self.llm_engine = types.SimpleNamespace(
            engine_core=types.SimpleNamespace(shutdown=lambda: self.events.append("shutdown")))
        self.model = FakeModel(self.events)
        self.requests: list[tuple[list[int], FakeSamplingParams]] = []
        FakeLLM.instances.append(self)

    def generate(self, prompts, params, use_tqdm=True):
        assert isinstance(params, list) and len(params) == len(prompts)
        self.events.append("generate")
        outs = []
        for p, sp in zip(prompts, params):
            self.requests.append((p["prompt_token_ids"], sp))
            g = torch.Generator().manual_seed(sp.seed)
            ids, lps = [], []
            for _ in range(sp.max_tokens):
                tok = int(torch.randint(3, V, (), generator=g))
                if ids and float(torch.rand((), generator=g)) < 0.2 and sp.stop_token_ids:
                    tok = sp.stop_token_ids[0]
                ids.append(tok)
                # the sampled token plus a top-1 alternative, as vLLM returns them with logprobs=1
                lps.append({tok: Logprob(-0.1 * len(ids)), 1: Logprob(-0.01)})
                if tok in sp.stop_token_ids:
                    break
            reason = "stop" if ids and ids[-1] in sp.stop_token_ids else "length"
            comp = types.SimpleNamespace(token_ids=ids, logprobs=lps, finish_reason=reason)
            outs.append(types.SimpleNamespace(outputs=[comp], prompt_token_ids=p["prompt_token_ids"]))
        return outs

    def apply_model(self, fn):
        return [fn(self.model)]

    def reset_prefix_cache(self):
        self.events.append("reset")

    def sleep(self, level=1):
        self.events.append(f"sleep{level}")

    def wake_up(self):
        self.events.append("wake")


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = FakeLLM, FakeSamplingParams
    mod.envs = types.ModuleType("vllm.envs")
    mod.envs.cache = {}
    mod.envs.disable_envs_cache = mod.envs.cache.clear
    FakeLLM.instances = []
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return mod


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A student and a teacher saved to folders (vLLM loads models by path)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("vllm_models")
    out = []
    for name, hidden, seed in (("student", 16, 2), ("teacher", 32, 1)):
        m = build_llama(V, hidden, 1, heads=2, eos_token_id=EOS, pad_token_id=PAD, seed=seed)
        m.save_pretrained(root / name)
        out.append(type(m).from_pretrained(root / name))
    return out


def backend(models, **kw):
    from tropd.rollout.vllm import VLLMBackend

    s, t = models
    return VLLMBackend(s, t, None, {EOS}, PAD, **kw)


# ----------------------------------------------------------------------------- translation


def test_sampling_params_one_per_request(fake_vllm, models):
    b = backend(models, gpu_memory_utilization=0.4, max_model_len=512, engine_kwargs={"swap_space": 2})
    res = b.sample("student", [[3, 4], [5], [6, 7, 8]], [5, 0, 3], [11, 12, 13], temperature=0.7, top_p=0.9)
    (llm,) = FakeLLM.instances
    assert llm.kw["model"] == models[0].name_or_path and llm.kw["logprobs_mode"] == "processed_logprobs"
    assert llm.kw["gpu_memory_utilization"] == 0.4 and llm.kw["max_model_len"] == 512
    assert llm.kw["swap_space"] == 2 and llm.kw["dtype"] == "auto" and llm.multiproc == "0"
    assert llm.kw["skip_tokenizer_init"] is True and llm.kw["generation_config"] == "vllm"
    # max_new 0 sends no request; the others carry their own seed and length
    assert [r[0] for r in llm.requests] == [[3, 4], [6, 7, 8]]
    sp = [r[1] for r in llm.requests]
    assert [p.seed for p in sp] == [11, 13] and [p.max_tokens for p in sp] == [5, 3]
    assert all(p.temperature == 0.7 and p.top_p == 0.9 and p.logprobs == 1 and p.n == 1 for p in sp)
    # our EOS only: ignore_eos keeps the model's generation-config EOS ids out of the stop tokens
    assert all(p.stop_token_ids == [EOS] and p.ignore_eos and p.detokenize is False for p in sp)
    assert res[1] == ([], [], False)
    for (ids, lps, fin), n in zip((res[0], res[2]), (5, 3)):
        assert 1 <= len(ids) <= n and len(lps) == len(ids)
        assert lps == pytest.approx([-0.1 * (i + 1) for i in range(len(ids))])  # the sampled token's
        assert fin == (ids[-1] == EOS)


def test_a_context_too_short_for_prompt_plus_new_tokens_is_refused(fake_vllm, models):
    """vLLM would cap such a rollout at max_model_len silently; tropd says which setting to raise."""
    b = backend(models, max_model_len=8)
    assert len(b.sample("student", [[3, 4, 5]], [5], [1])[0][0]) <= 5  # 3 + 5 fits
    with pytest.raises(UserError, match=r"vllm.max_model_len=8 cannot hold a 4-token prompt plus 5 new"):
        b.sample("student", [[3, 4, 5], [3, 4, 5, 6]], [5, 5], [1, 2])


def test_parse_output_refuses_missing_logprobs():
    from tropd.rollout.vllm import parse_output

    comp = types.SimpleNamespace(token_ids=[5, EOS], logprobs=None)
    with pytest.raises(RuntimeError, match="logprobs"):
        parse_output(types.SimpleNamespace(outputs=[comp]), 4, {EOS})
    comp = types.SimpleNamespace(token_ids=[5, EOS], logprobs=[{5: Logprob(-1.0)}, {7: Logprob(-2.0)}])
    with pytest.raises(RuntimeError, match="sampled token"):
        parse_output(types.SimpleNamespace(outputs=[comp]), 4, {EOS})
    comp = types.SimpleNamespace(token_ids=[5, EOS], logprobs=[{5: Logprob(-1.0)}, {EOS: -0.5}])
    assert parse_output(types.SimpleNamespace(outputs=[comp]), 4, {EOS}) == ([5, EOS], [-1.0, -0.5], True)


def test_same_seed_same_sample_whatever_the_batch(fake_vllm, models):
    b = backend(models)
    alone = b.sample("student", [[3, 4]], [6], [99])
    batch = b.sample("student", [[5], [3, 4]], [6, 6], [7, 99])
    assert batch[1] == alone[0]


def test_teacher_engine_is_built_lazily_in_its_own_process(fake_vllm, models):
    """In its own process even though the in-process student engine cached VLLM_ENABLE_V1_MULTIPROCESSING=0."""
    b = backend(models, teacher_gpu_memory_utilization=0.2)
    assert fake_vllm.envs.cache == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    assert len(FakeLLM.instances) == 1  # only the student engine until a method samples pi_T
    batch = collect(Teacher(), b, [[3, 4, 5]], [[1]], 2, step=0, total_steps=10, seed=0,
                    max_new_tokens=8, temperature=1.0, top_p=1.0, pad_id=PAD)
    student, teacher = FakeLLM.instances
    assert teacher.kw["model"] == models[1].name_or_path and teacher.multiproc == "1"
    assert teacher.kw["gpu_memory_utilization"] == 0.2 and teacher.kw["skip_tokenizer_init"] is True
    assert batch.from_teacher_BT[batch.response_mask_BT].all() and not student.requests


def test_guided_rollout_continues_the_teacher_prefix(fake_vllm, models):
    pytest.importorskip("tropd.methods.guidance")
    from tropd.catalog import get_method

    params = get_method("tropd").parse_params({"guided_fraction": 1.0})  # every rollout gets a prefix
    b = backend(models)
    batch = collect(guided_or_student(params), b, [[3, 4, 5]], [[1]], 4, step=0, total_steps=10, seed=0,
                    max_new_tokens=8, temperature=1.0, top_p=1.0, pad_id=PAD)
    student, teacher = FakeLLM.instances
    assert len(teacher.requests) == 4
    # the student continues from prompt + teacher prefix, with what is left of the length budget
    for prompt, sp in student.requests:
        assert prompt[:3] == [3, 4, 5] and sp.max_tokens == 8 - (len(prompt) - 3)
    assert batch.from_teacher_BT.any()


def test_an_engine_with_padded_output_rows_samples_only_the_shared_ids(fake_vllm, models, tmp_path):
    """A teacher padded past the student's output layer (paper-deepseek) samples its guidance prefixes
    with its extra rows biased out; the student engine, which has no extra rows, without a bias."""
    from tropd.rollout.vllm import PADDING_BIAS

    from conftest import padded

    padded(models[1], 4).save_pretrained(tmp_path / "teacher")
    t = type(models[1]).from_pretrained(tmp_path / "teacher")
    b = backend((models[0], t), vocab=V)
    b.sample("teacher", [[3, 4]], [4], [1])
    b.sample("student", [[3, 4]], [4], [1])
    student, teacher = FakeLLM.instances
    assert [sp.logit_bias for _, sp in teacher.requests] == [{V + i: PADDING_BIAS for i in range(4)}]
    assert not any(hasattr(sp, "logit_bias") for _, sp in student.requests)
    assert float(torch.tensor(PADDING_BIAS, dtype=torch.float32).exp()) == 0.0  # the rows get no mass


def test_trb_blend_is_refused(fake_vllm, models):
    with pytest.raises(UserError, match="backend=hf"):
        backend(models).sample_blend([[3]], [4], [1], combine=None)


def test_missing_vllm_is_a_user_error(monkeypatch, models):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(UserError, match=r"\.\[gpu\]"):
        backend(models)


# ----------------------------------------------------------------------------- weight sync


def test_weights_reach_the_engine_before_every_rollout(fake_vllm, models, tmp_path):
    s = type(models[0]).from_pretrained(models[0].name_or_path)
    b = backend((s, models[1]))
    (llm,) = FakeLLM.instances
    b.sample("student", [[3]], [2], [1])
    assert llm.events == ["load", "reset", "generate"]  # the engine may hold stale weights at start
    b.sample("student", [[3]], [2], [1])
    assert llm.events[3:] == ["generate"]  # unchanged weights: no second push
    with torch.no_grad():
        s.lm_head.weight.mul_(2.0)  # what an optimizer step (or a checkpoint load) does
    b.sample("student", [[3]], [2], [1])
    assert llm.events[4:] == ["load", "reset", "generate"]
    assert torch.equal(llm.model.loaded["lm_head.weight"], s.lm_head.weight)
    assert "model.layers.0.self_attn.q_proj.weight" in llm.model.loaded  # HF names, vLLM maps them
    b.sync_weights(s)  # the explicit push after an optimizer step
    assert llm.events[7:] == ["load", "reset"] and b.syncs == 3


def test_sleep_mode_defers_the_push_to_the_next_rollout(fake_vllm, models):
    s = type(models[0]).from_pretrained(models[0].name_or_path)
    b = backend((s, models[1]), sleep=True)
    (llm,) = FakeLLM.instances
    assert llm.kw["enable_sleep_mode"] is True
    b.sample("student", [[3]], [2], [1])
    assert llm.events == ["load", "reset", "generate", "sleep1"]
    with torch.no_grad():
        s.lm_head.weight.add_(1.0)
    b.sync_weights(s)  # asleep: nothing to write into yet
    assert llm.events[-1] == "sleep1"
    b.sample("student", [[3]], [2], [1])
    assert llm.events[4:] == ["wake", "load", "reset", "generate", "sleep1"]
    assert torch.equal(llm.model.loaded["lm_head.weight"], s.lm_head.weight)
    # a rank with no prompts this time still pushes (a collective under FSDP) and sleeps again, so
    # every rank's engine is asleep when sync_weights runs
    with torch.no_grad():
        s.lm_head.weight.add_(1.0)
    b.sample("student", [], [], [])
    assert llm.events[9:] == ["wake", "load", "reset", "sleep1"]
    b.sync_weights(s)
    assert llm.events[-1] == "sleep1" and b.syncs == 3


def test_an_in_process_engine_leaves_the_trainers_random_state_alone(fake_vllm, models):
    """vLLM seeds the process's generators when an in-process engine starts; a training run's own
    seed (torch.manual_seed(cfg.seed) in train) must survive it."""
    torch.manual_seed(1234)
    random.seed(99)
    expect_torch, expect_py = torch.get_rng_state(), random.getstate()
    backend(models)
    assert FakeLLM.instances[0].multiproc == "0"
    assert torch.equal(torch.get_rng_state(), expect_torch) and random.getstate() == expect_py


def test_multi_process_runs_use_the_external_launcher_and_the_hf_teacher(fake_vllm, models, monkeypatch):
    """vLLM's external launcher puts every engine in the calling process, where a second one (with sleep
    mode) cannot start: under WORLD_SIZE > 1 the teacher writes its tokens with the HF model instead."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    b = backend(models, sleep=True)
    assert FakeLLM.instances[0].kw["distributed_executor_backend"] == "external_launcher"
    batch = collect(Teacher(), b, [[3, 4, 5]], [[1]], 2, step=0, total_steps=10, seed=0,
                    max_new_tokens=8, temperature=1.0, top_p=1.0, pad_id=PAD)
    assert len(FakeLLM.instances) == 1 and "teacher" not in b.engines  # no second engine
    from tropd.rollout.hf import HFBackend

    hf = HFBackend(*models, {EOS}, PAD)
    direct = collect(Teacher(), hf, [[3, 4, 5]], [[1]], 2, step=0, total_steps=10, seed=0,
                     max_new_tokens=8, temperature=1.0, top_p=1.0, pad_id=PAD)
    assert torch.equal(batch.input_ids_BL, direct.input_ids_BL) and torch.equal(batch.behav_logp_BT, direct.behav_logp_BT)
    assert batch.from_teacher_BT[batch.response_mask_BT].all()


def test_train_with_the_vllm_backend_syncs_after_every_step(fake_vllm, tiny_profile, tmp_path):
    from tropd.config import load_config
    from tropd.train import train

    cfg = load_config(tiny_profile, method="opd", overrides=[
        "train.backend=vllm", "train.steps=3", "vllm.gpu_memory_utilization=0.55", "vllm.max_model_len=96",
        "vllm.enforce_eager=true"])
    summary = train(cfg, tmp_path / "run", log=lambda m: None)
    assert summary["backend"] == "vllm" and summary["status"] == "finished"
    (llm,) = FakeLLM.instances
    # the profile's vllm: section reaches the engine
    kw = llm.kw
    assert (kw["gpu_memory_utilization"], kw["max_model_len"], kw["enforce_eager"]) == (0.55, 96, True)
    # a push before the first rollout, then one after each of the 3 optimizer steps
    assert llm.events == ["load", "reset", "generate"] + ["load", "reset", "generate"] * 2 + ["load", "reset"]
    from safetensors.torch import load_file

    final = load_file(tmp_path / "run" / "student" / "model.safetensors")
    assert torch.equal(llm.model.loaded["model.embed_tokens.weight"], final["model.embed_tokens.weight"])


def test_backend_built_through_make_backend(fake_vllm, models):
    tok = types.SimpleNamespace(eos_token_id=EOS, pad_token_id=PAD)
    b = make_backend("vllm", *models, tok, tensor_parallel_size=2, enforce_eager=True)
    assert b.name == "vllm" and b.eos_ids == {EOS} and b.pad_id == PAD
    assert FakeLLM.instances[0].kw["tensor_parallel_size"] == 2 and FakeLLM.instances[0].kw["enforce_eager"]


# ----------------------------------------------------------------------------- evaluation decoding


@pytest.fixture
def vllm_eval_profile(tmp_path):
    """A throw-away profile with eval.backend: vllm and 5 held-out tiny_math items."""
    import yaml
    from conftest import build_profile

    from tropd.infra.io import atomic_write_jsonl
    from tropd.tiny.synthetic import generate, held_out_rows

    cfg = build_profile(tmp_path)
    _, items = generate("math", 0, 4, 5)
    atomic_write_jsonl(tmp_path / "data" / "math" / "test.jsonl", held_out_rows("math", items))
    data = yaml.safe_load(cfg.read_text())
    data["eval"] = {"tasks": ["tiny_math"], "max_new_tokens": 9, "backend": "vllm", "dtype": "bfloat16",
                    "gpu_memory_utilization": 0.8}
    data["vllm"] = {"enforce_eager": True}
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def test_eval_decodes_with_one_vllm_engine_and_a_seed_per_sample(fake_vllm, vllm_eval_profile, tmp_path):
    from tropd.cli import main
    from tropd.config import load_config
    from tropd.eval.generate import encode_prompts
    from tropd.eval.tasks import get_task, load_items
    from tropd.infra.io import read_jsonl
    from tropd.models import load_tokenizer
    from tropd.infra.seeding import derive_seed

    cfg = load_config(vllm_eval_profile)
    model = cfg.resolve(cfg.student.path)
    outs = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.json"
        assert main(["eval", "--config", str(vllm_eval_profile), "--model", str(model), "--task", "tiny_math",
                     "--out", str(out), "--k", "3", "--temperature", "0.7", "--seed", "4"]) == 0
        outs.append(json.loads(out.read_text()))
    llm = FakeLLM.instances[0]
    assert len(FakeLLM.instances) == 2  # one engine per tropd eval process
    tok = load_tokenizer(cfg.student)
    items = load_items(get_task("tiny_math"), cfg)
    longest = max(len(p) for p in encode_prompts(tok, [it.prompt for it in items]))
    kw = llm.kw
    assert kw["model"] == str(model) and kw["dtype"] == "bfloat16" and kw["max_model_len"] == longest + 9
    assert kw["gpu_memory_utilization"] == 0.8 and kw["enforce_eager"] and kw["skip_tokenizer_init"]
    assert [x.multiproc for x in FakeLLM.instances] == ["1", "1"]  # a child process: shutdown frees it
    # one request per (item, sample), the tokenized chat prompt, its own seed
    assert len(llm.requests) == 3 * len(items)
    assert [r[0] for r in llm.requests[:3]] == [encode_prompts(tok, [items[0].prompt])[0]] * 3
    assert [sp.seed for _, sp in llm.requests[:4]] == [derive_seed(4, "eval", "tiny_math", items[i].id, j)
                                                         for i, j in ((0, 0), (0, 1), (0, 2), (1, 0))]
    assert all(sp.max_tokens == 9 and sp.temperature == 0.7 and sp.stop_token_ids == [tok.eos_token_id]
               and sp.ignore_eos for _, sp in llm.requests)
    a, b = outs
    assert a["decoding"]["backend"] == "vllm" and a["n_samples"] == 3 * len(items)
    rows = read_jsonl(tmp_path / "a.samples.jsonl")
    assert a["tokens_generated"] == sum(r["n_tokens"] for r in rows) > 0
    assert all(r["n_tokens"] <= 9 for r in rows) and any(r["finished"] for r in rows)
    assert [r["completion"] for r in rows] == [r["completion"] for r in read_jsonl(tmp_path / "b.samples.jsonl")]
    assert a["metrics"] == b["metrics"]


def test_eval_shuts_an_engine_down_before_the_hf_model_or_the_next_model(fake_vllm, vllm_eval_profile,
                                                                        monkeypatch):
    """The engine holds most of the GPU and dropping it does not free it: MMLU's HF model and the
    next seed's model come after an explicit shutdown of its engine core, and no reference to it
    is left for the clean-up to miss."""
    import tropd.infra.vllm_engine

    from tropd.config import load_config
    from tropd.evaluate import _Model

    cfg = load_config(vllm_eval_profile)
    m = _Model(cfg, str(cfg.resolve(cfg.student.path)), [["1+1?"]], 4)
    held = []  # what the model still holds each time the GPU is cleaned up
    monkeypatch.setattr(tropd.infra.vllm_engine, "release_gpu", lambda: held.append((m._llm, m._hf)))
    first = m.llm
    assert m.hf is not None and first.events == ["shutdown"] and m._llm is None
    second = m.llm
    assert m._hf is None and second is not first  # the HF model went before the engine came back
    m.close()
    assert second.events == ["shutdown"]
    assert held and all(h == (None, None) for h in held)


def test_eval_without_vllm_is_a_one_line_error(monkeypatch, vllm_eval_profile, tmp_path, capsys):
    from tropd.cli import main
    from tropd.config import load_config

    monkeypatch.setitem(sys.modules, "vllm", None)
    cfg = load_config(vllm_eval_profile)
    out = tmp_path / "never.json"
    assert main(["eval", "--config", str(vllm_eval_profile), "--model", str(cfg.resolve(cfg.student.path)),
                 "--task", "tiny_math", "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "eval.backend=vllm needs vLLM" in line and not out.exists()


def test_bench_backends_times_both_backends_on_one_model(fake_vllm, models, tmp_path):
    """`tropd bench --backends` (the GPU check of vLLM against HF tokens/s) on the fake engine: both
    backends sample the same rows for max_new tokens each, and the report is written."""
    from tropd.cli import main

    out = tmp_path / "bench"
    assert main(["bench", "--backends", models[0].name_or_path, "--out", str(out), "--rows", "3",
                 "--max-new", "5", "--repeats", "2"]) == 0
    r = json.loads((out / "backends.json").read_text())
    assert r["backends"]["hf"]["tokens"] == 15 and len(r["backends"]["hf"]["times_s"]) == 2
    assert r["backends"]["vllm"]["tokens"] == 15 and r["vllm_over_hf"] > 0
    (llm,) = FakeLLM.instances
    assert len(llm.requests) == 3 * 3  # a warm-up round and two timed ones
    assert all(sp.max_tokens == 5 and sp.stop_token_ids == [] for _, sp in llm.requests)
    assert "vLLM / HF tokens/s" in (out / "backends.md").read_text()


def test_bench_random_model_has_the_shape_asked_for(tmp_path):
    from tropd.benchlib.backends import QWEN2_1_5B, random_model

    shape = {**QWEN2_1_5B, "num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
             "num_attention_heads": 4, "vocab_size": 97}
    path = random_model(tmp_path / "m", shape)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["num_key_value_heads"] == 2 and cfg["vocab_size"] == 97
    mtime = (tmp_path / "m" / "config.json").stat().st_mtime_ns
    assert random_model(path, shape) == path and (tmp_path / "m" / "config.json").stat().st_mtime_ns == mtime
    assert QWEN2_1_5B["num_hidden_layers"] == 28 and QWEN2_1_5B["vocab_size"] == 151936


# ----------------------------------------------------------------------------- real vLLM on a GPU


@pytest.mark.gpu
def test_vllm_end_to_end_on_gpu(tmp_path):
    """Real vLLM: behaviour log-probs agree with the trainer's scoring, and a weight sync changes
    what the engine samples from (checked against a deliberately perturbed student)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("vllm")
    from tropd.rollout.vllm import VLLMBackend
    from tropd.scoring import student_forward

    models = []
    for name, hidden, seed in (("student", 128, 2), ("teacher", 256, 1)):  # head_dim 64: vLLM kernels
        m = build_llama(V, hidden, 2, heads=2, eos_token_id=EOS, pad_token_id=PAD, seed=seed,
                        max_positions=256)
        m.to(torch.bfloat16).save_pretrained(tmp_path / name)
        models.append(type(m).from_pretrained(tmp_path / name, dtype=torch.bfloat16).cuda())
    s, t = models
    b = VLLMBackend(s, t, None, {EOS}, PAD, gpu_memory_utilization=0.2, teacher_gpu_memory_utilization=0.2,
                    enforce_eager=True, max_model_len=256)
    prompts = [[3, 4, 5], [6, 7], [8, 9, 10, 11]]

    def gap(model) -> float:
        batch = collect(Student(), b, prompts, [[1]] * 3, 2, step=0, total_steps=1, seed=0,
                        max_new_tokens=24, temperature=1.0, top_p=1.0, pad_id=PAD).to("cuda")
        with torch.no_grad():
            lp = student_forward(model, batch, None, chunk=64)["logp_BT"]
        m = batch.response_mask_BT
        return float((lp[m] - batch.behav_logp_BT[m]).abs().mean())

    assert gap(s) < 0.05  # bf16 kernels differ a little, never by this much
    with torch.no_grad():
        s.lm_head.weight.mul_(4.0)  # a very different student
    b.sync_weights(s)
    assert gap(s) < 0.05
    assert not math.isnan(gap(s))
    guided = collect(Teacher(), b, prompts, [[1]] * 3, 1, step=0, total_steps=1, seed=0,
                     max_new_tokens=8, temperature=1.0, top_p=1.0, pad_id=PAD)
    assert guided.from_teacher_BT[guided.response_mask_BT].all()
    assert b.engines["teacher"] is not b.engines["student"]
    from tropd.infra.vllm_engine import shutdown

    for e in b.engines.values():
        shutdown(e)


@pytest.mark.gpu
def test_vllm_eval_decoding_on_gpu(tmp_path):
    """Real vLLM evaluation decoding: greedy texts agree with HF generate's (same prompts, same model;
    bf16 kernels may split a near-tie, so most rather than all); seeded sampling mostly repeats on
    a rerun, in the same or another order (the engine's child process batches requests as they
    arrive, and batching can split a near-tie); the engine's memory comes back after shutdown."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("vllm")
    from conftest import make_tokenizer

    from tropd.eval.generate import generate
    from tropd.eval.vllm_generate import engine_args, generate_vllm, make_engine
    from tropd.infra.vllm_engine import release_gpu, shutdown

    tok = make_tokenizer(tmp_path / "m")
    m = build_llama(len(tok), 128, 2, heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=0, seed=3,
                    max_positions=256)
    m.to(torch.bfloat16).save_pretrained(tmp_path / "m")
    model = type(m).from_pretrained(tmp_path / "m", dtype=torch.bfloat16).cuda()
    prompts, ids = ["12+5?", "3*4?", "what is 7-2?"], ["a", "b", "c"]
    llm = make_engine(engine_args(str(tmp_path / "m"), "bfloat16", 128, 0.3, True, {}))
    greedy_v = generate_vllm(llm, tok, prompts, 1, 0.0, 24, 0, "t", ids)
    greedy_h = generate(model, tok, prompts, 1, 0.0, 24, 0, "t", ids)
    assert sum(a.text == b.text for a, b in zip(greedy_v, greedy_h)) >= 2
    first = generate_vllm(llm, tok, prompts, 4, 1.0, 24, 5, "t", ids)
    again = generate_vllm(llm, tok, prompts, 4, 1.0, 24, 5, "t", ids)
    assert sum(a.text == b.text for a, b in zip(first, again)) >= len(first) // 2
    by_key = {(ids[g.item], g.sample): g.text for g in first}
    rev = generate_vllm(llm, tok, prompts[::-1], 4, 1.0, 24, 5, "t", ids[::-1])
    assert sum(by_key[(ids[::-1][g.item], g.sample)] == g.text for g in rev) >= len(rev) // 2
    shutdown(llm)
    del llm
    release_gpu()
    free, total = torch.cuda.mem_get_info()
    assert free > 0.5 * total  # the engine's 30% share is back, not held until the process ends


@pytest.mark.gpu
def test_vllm_padded_teacher_samples_only_shared_ids_on_gpu(tmp_path):
    """Real vLLM, a teacher padded past the student's rows (paper-deepseek's shape, scaled down):
    the biased-out rows are never sampled, and the behaviour log-probs are those of the cut
    distribution the trainer scores (teacher_score(..., vocab=V)), though the rows would take most
    of the mass uncut."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("vllm")
    from conftest import padded

    from tropd.rollout.vllm import VLLMBackend
    from tropd.scoring import teacher_score
    from tropd.infra.vllm_engine import shutdown

    models = []
    for name, hidden, seed in (("student", 128, 2), ("teacher", 256, 1)):
        m = build_llama(V, hidden, 2, heads=2, eos_token_id=EOS, pad_token_id=PAD, seed=seed,
                        max_positions=256)
        if name == "teacher":
            m = padded(m, 4, scale=2.0)
        m.to(torch.bfloat16).save_pretrained(tmp_path / name)
        models.append(type(m).from_pretrained(tmp_path / name, dtype=torch.bfloat16).cuda())
    s, t = models
    assert t.get_output_embeddings().weight.shape[0] == V + 4
    b = VLLMBackend(s, t, None, {EOS}, PAD, vocab=V, gpu_memory_utilization=0.2,
                    teacher_gpu_memory_utilization=0.2, enforce_eager=True, max_model_len=256)
    prompts = [[3, 4, 5], [6, 7], [8, 9, 10, 11]]
    batch = collect(Teacher(), b, prompts, [[1]] * 3, 4, step=0, total_steps=1, seed=0,
                    max_new_tokens=24, temperature=1.0, top_p=1.0, pad_id=PAD).to("cuda")
    m = batch.response_mask_BT
    assert m.sum() > 0 and int(batch.input_ids_BL.max()) < V
    with torch.no_grad():
        cut = teacher_score(t, batch, 4, 64, vocab=V)["teacher_logp_BT"]
        whole = teacher_score(t, batch, 4, 64)["teacher_logp_BT"]
    assert float((cut[m] - batch.behav_logp_BT[m]).abs().mean()) < 0.05
    assert float((whole[m] - batch.behav_logp_BT[m]).abs().mean()) > 0.5  # the cut is what matches
    for e in b.engines.values():
        shutdown(e)
