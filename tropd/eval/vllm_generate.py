"""Evaluation decoding with vLLM (`eval.backend: vllm`, the `gpu` extra): the contract of
tropd.eval.generate, served by one engine per evaluated model.

Why: at the paper's settings (k = 32 samples of up to 32,768 tokens) HF `generate` runs each batch
until its longest row stops, and math500 alone is estimated at days per model (docs/scale.md).
vLLM schedules sequences continuously, so a finished sample frees its slot at once.

What carries over from the HF generator, and what does not:
- Prompts are chat-templated and tokenized by tropd (`encode_prompts`), and token ids go in
  (`skip_tokenizer_init`): both backends see the same prompt tokens. Completions are decoded with
  the same tokenizer and cut after the first EOS, which ends a sample as it does in the HF loop.
- The only stop token is the tokenizer's EOS, as in HF generate: `ignore_eos` keeps the EOS ids of
  the model's generation config (which vLLM reads even with generation_config="vllm") out of the
  stop tokens, and `stop_token_ids` still ends a sample at ours.
- Every (seed, task, item, sample) keeps its own seed (`SamplingParams.seed`), which fixes its
  random draws. The engine core runs in vLLM's default child process, so that shutting it down
  frees its GPU memory for the next model (tropd.infra.vllm_engine); in-process engines do not reliably
  (vLLM issue #21073). The price: vLLM schedules a child-process engine by arrival timing, and bf16
  logits vary with how requests are batched, so a sample at a near-tie can differ between reruns
  and with the rest of the batch, which HF generate's samples do not. The texts are not those of
  the HF backend either (other kernels, other random streams): a table compares models evaluated
  with one backend, and the eval summary records which.
- temperature 0 is greedy, as in HF.
- `max_model_len` is the longest prompt plus `max_new_tokens`, the least the engine must hold.
"""
from __future__ import annotations

from typing import Any

from tropd.errors import UserError
from tropd.eval.generate import Generation, encode_prompts
from tropd.infra.seeding import derive_seed


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
    """An eval engine, its core in a child process (see the module docstring)."""
    from tropd.infra.vllm_engine import new_engine

    return new_engine(import_vllm(), args, in_process=False)


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
        ignore_eos=True, detokenize=False, skip_special_tokens=True) for i, j in rows]
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
