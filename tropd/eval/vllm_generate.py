"""Evaluation decoding with vLLM (`eval.backend: vllm`, the `gpu` extra): the contract of
tropd.eval.generate, served by one engine per evaluated model.

Why: at the paper's settings (k = 32 samples of up to 32,768 tokens) HF `generate` runs each batch
until its longest row stops, and math500 alone is estimated at days per model (docs/scale.md).
vLLM schedules sequences continuously, so a finished sample frees its slot at once.

What carries over from the HF generator, and what does not:
- Prompts are chat-templated and tokenized by tropd (`encode_prompts`), and token ids go in
  (`skip_tokenizer_init`): both backends see the same prompt tokens. Completions are decoded with
  the same tokenizer and cut after the first EOS, which ends a sample as it does in the HF loop.
- Every (seed, task, item, sample) keeps its own seed (`SamplingParams.seed`), which fixes its
  random draws. The engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), where vLLM
  schedules deterministically, so a rerun of the same job on the same vLLM version and GPU gives
  the same texts (vLLM's reproducibility notes). Unlike the HF generator, a sample can still depend
  on the rest of the batch: bf16 logits vary with how requests are batched, which can flip a
  near-tie. The texts are not those of the HF backend (other kernels, other random streams): a
  table compares models evaluated with one backend, and the eval summary records which.
- temperature 0 is greedy, as in HF.
- `max_model_len` is the longest prompt plus `max_new_tokens`, the least the engine must hold.
"""
from __future__ import annotations

import os
from typing import Any

from tropd.errors import UserError
from tropd.eval.generate import Generation, encode_prompts
from tropd.seeding import derive_seed


def import_vllm():
    try:
        import vllm  # the `gpu` extra; never installed on CPU machines
    except ImportError:
        raise UserError("eval.backend=vllm needs vLLM: pip install -e '.[gpu]' in a CUDA environment "
                        "(or use eval.backend=hf)") from None
    return vllm


def engine_args(path: str, dtype: str, max_model_len: int, gpu_memory_utilization: float,
                enforce_eager: bool, engine_kwargs: dict[str, Any]) -> dict:
    """vllm.LLM arguments for evaluating the model at `path`."""
    return {
        "model": path, "dtype": dtype, "seed": 0, "skip_tokenizer_init": True, "generation_config": "vllm",
        "max_model_len": max_model_len, "gpu_memory_utilization": gpu_memory_utilization,
        "enforce_eager": enforce_eager, "tensor_parallel_size": 1, **engine_kwargs,
    }


def make_engine(args: dict):
    """An in-process vllm.LLM (deterministic scheduling; see the module docstring)."""
    vllm = import_vllm()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    return vllm.LLM(**args)


def shutdown(llm) -> None:
    """Release the engine's GPU memory now: dropping the last reference does not (vLLM issues
    #23793, #21073), and the next model, or the HF model for MMLU, needs the GPU."""
    for path in (("shutdown",), ("llm_engine", "engine_core", "shutdown")):
        fn = llm
        for attr in path:
            fn = getattr(fn, attr, None)
        if callable(fn):
            fn()
            break
    try:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
    except ImportError:  # the fake vllm of the tests, or a vLLM without it
        return
    cleanup_dist_env_and_memory()


def generate_vllm(llm, tok, prompts: list[str], k: int, temperature: float, max_new_tokens: int,
                  seed: int, task: str, ids: list[str]) -> list[Generation]:
    """k completions per prompt from the engine `llm`; returns them ordered by (item, sample)."""
    vllm = import_vllm()
    if k > 1 and temperature == 0:
        raise ValueError("k > 1 samples need temperature > 0")
    encoded = encode_prompts(tok, prompts)
    eos = tok.eos_token_id
    rows = [(i, j) for i in range(len(prompts)) for j in range(k)]
    params = [vllm.SamplingParams(
        n=1, temperature=temperature, top_p=1.0, max_tokens=max_new_tokens,
        seed=derive_seed(seed, "eval", task, ids[i], j), stop_token_ids=[eos] if eos is not None else [],
        detokenize=False, skip_special_tokens=True) for i, j in rows]
    outs = llm.generate([{"prompt_token_ids": list(encoded[i])} for i, _ in rows], params, use_tqdm=True)
    gens = []
    for (i, j), out in zip(rows, outs, strict=True):
        new = [int(t) for t in out.outputs[0].token_ids][:max_new_tokens]
        finished = eos is not None and eos in new
        if finished:
            new = new[: new.index(eos) + 1]
        gens.append(Generation(i, j, tok.decode(new, skip_special_tokens=True), len(new), finished))
    return gens


def longest_prompt(tok, prompt_lists: list[list[str]]) -> int:
    """Tokens in the longest chat-templated prompt over every task (sizes the engine's context)."""
    return max((len(p) for prompts in prompt_lists for p in encode_prompts(tok, prompts)), default=1)
