"""Rollout tokens/s of the vLLM backend against the HF backend, on one model folder (a GPU check).

    tropd bench --backends MODEL_DIR --out results/bench/gpu [--rows 256 --max-new 1024]
    tropd bench --backends random --out results/bench/gpu     # a random-weight model of the 1.5B's shape

Both backends get the same random prompts, one seed per row, the training temperature 1, and no
EOS ids, so every row writes exactly `max_new` tokens in both: tropd's vLLM requests carry
`ignore_eos` and stop only at the ids tropd passes (none here), not at the EOS of the model's
generation config. tokens/s counts the tokens each produced. The
model samples as the student of a step would: `HFBackend.sample("student")` (tropd's KV-cached
sampling loop) and `VLLMBackend.sample("student")` (one engine, weights pushed once before the
first timed round). Rounds alternate A B, B A after one untimed warm-up round each (engine start-up,
CUDA graphs, allocator) and the medians are reported.
"""
from __future__ import annotations

import time

from tropd.benchlib.common import interleaved, machine, median
from tropd.benchlib.step import random_prompts


# DeepSeek-R1-Distill-Qwen-1.5B's config.json (the paper-deepseek student): the speed depends on the
# shape, not the weights, so `--backends random` needs no download.
QWEN2_1_5B = {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
              "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
              "max_position_embeddings": 131072, "rope_theta": 10000.0, "tie_word_embeddings": False}


def random_model(path, shape: dict = QWEN2_1_5B) -> str:
    """A randomly initialised Qwen2 of `shape`, saved in bf16 to `path` (reused if already there)."""
    from pathlib import Path

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        torch.manual_seed(0)
        Qwen2ForCausalLM(Qwen2Config(**shape, bos_token_id=0, eos_token_id=1)).to(torch.bfloat16).save_pretrained(path)
    return str(path)


def run(model_dir: str, rows: int, max_new: int, repeats: int, gpu_memory_utilization: float = 0.5,
        progress=lambda m: None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from tropd.models import output_rows
    from tropd.rollout.hf import HFBackend
    from tropd.rollout.vllm import VLLMBackend

    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    model.to("cuda" if cuda else "cpu").eval().requires_grad_(False)
    prompts = random_prompts(rows, output_rows(model), seed=0, lo=32, hi=128)
    seeds = list(range(rows))
    t0 = time.perf_counter()
    backends = {
        "hf": HFBackend(model, model, set(), 0),
        "vllm": VLLMBackend(model, model, None, set(), 0, gpu_memory_utilization=gpu_memory_utilization,
                            max_model_len=128 + max_new),
    }
    start_s = time.perf_counter() - t0
    tokens: dict[str, list[int]] = {name: [] for name in backends}

    def variant(name):
        def fn():
            out = backends[name].sample("student", prompts, [max_new] * rows, seeds, 1.0, 1.0)
            tokens[name].append(sum(len(ids) for ids, _, _ in out))
        return fn

    times = interleaved({name: variant(name) for name in backends}, repeats, warmup=1, progress=progress)
    res = {}
    for name, ts in times.items():
        n = median(tokens[name][1:])  # the warm-up round's count left out, as its time is
        res[name] = {"median_s": median(ts), "tokens": n, "tok_s": n / median(ts), "times_s": ts}
    return {
        "model": model_dir, "rows": rows, "max_new": max_new, "repeats": repeats, "dtype": str(model.dtype),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu", "vllm_engine_start_s": start_s,
        "backends": res, "vllm_over_hf": res["vllm"]["tok_s"] / res["hf"]["tok_s"], "machine": machine(),
    }


def render(r: dict) -> str:
    lines = [f"# Rollout backends on {r['device']}", "",
             f"{r['model']} ({r['dtype']}), {r['rows']} rows x {r['max_new']} new tokens, median of "
             f"{r['repeats']} interleaved rounds after a warm-up; vLLM engine start {r['vllm_engine_start_s']:.0f} s.",
             "", "| backend | median s | tokens | tokens/s |", "|---|---|---|---|"]
    for name, b in r["backends"].items():
        lines.append(f"| {name} | {b['median_s']:.2f} | {b['tokens']:.0f} | {b['tok_s']:.0f} |")
    lines += ["", f"vLLM / HF tokens/s: {r['vllm_over_hf']:.2f}", ""]
    return "\n".join(lines)
