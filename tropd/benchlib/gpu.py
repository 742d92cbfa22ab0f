"""`tropd bench --gpu`: the real training loop at the paper-deepseek shapes on one GPU, offline.

    tropd bench --gpu --out results/bench/gpu       # one CUDA GPU; about 5 minutes on an H200
    tropd bench --gpu --quick --out /tmp/gpu        # toy shapes, CPU or GPU, seconds (the tests)

Nothing comes from the network: the speed of a step depends on the shapes, not the weights.
1. A word-level tokenizer of 151,665 tokens (the size of the DeepSeek-R1 / Qwen2.5 tokenizer) with a
   ChatML-like template, built with `tokenizers`; both models get it.
2. Random-weight Qwen2 models from their configs, saved in bf16: the student shaped like
   DeepSeek-R1-Distill-Qwen-1.5B (28 layers, 1,536 wide, 151,936 output rows), the teacher like
   Skywork-OR1-Math-7B (Qwen2.5-Math-7B: 28 layers, 3,584 wide, 152,064 output rows, so the padded
   rows are cut as in the paper profile). On CUDA they are written to /dev/shm (RAM) when it has room.
3. `tropd.train.train` on `configs/paper-deepseek.yaml` with the method `tropd` (guidance on: the 7B
   teacher writes prefixes at the first steps) and reduced settings: 8 prompts x 4 rollouts, 1,024 new
   tokens, top-k 64, 3 steps, HF rollout backend (vLLM is not measured here). The profile's own settings
   stay: fp32 master weights with bf16 autocast, gradient checkpointing, micro-batch 4, chunk 512.
   Per phase, from metrics.jsonl (the loop synchronises CUDA before reading its clock): rollout,
   teacher scoring, student forward + backward, optimizer, and their tokens/s. Step 0 is a warm-up
   (kernel selection, allocator growth) and is reported but left out of the medians.
4. Model FLOPs utilisation (MFU) per phase: FLOPs counted from the shapes (`flops_per_token`) over the
   phase's wall time, against the card's dense bf16 peak and against a bf16 matrix-multiply probe run in
   the same process (what this card reaches on 8192^3 products).
5. The chunked loss path (`tropd.scoring`) against the naive full-vocabulary one at T = 8192,
   V = 151,936 (one sequence, the registered TrOPD loss, backward included, under bf16 autocast as in
   training): peak GPU memory above the set-up's and wall time (median of repeats), as ratios.

Writes OUT/summary.json and OUT/summary.md atomically; the run's folder (models, metrics) is temporary.
"""
from __future__ import annotations

import json
import math
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tropd.benchlib.common import machine

# Dense bf16 tensor-core peaks (vendor datasheets, no sparsity), for MFU. Unknown cards: the probe only.
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0,
                    "L40S": 362.1, "A10": 125.0}


@dataclass(frozen=True)
class Qwen2Shape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    rope_theta: float = 10000.0

    def config(self, bos: int, eos: int, pad: int, max_positions: int):
        from transformers import Qwen2Config

        return Qwen2Config(**asdict(self), max_position_embeddings=max_positions, tie_word_embeddings=False,
                           bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)


# config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B and of Skywork/Skywork-OR1-Math-7B
STUDENT_1_5B = Qwen2Shape(1536, 8960, 28, 12, 2, 151936, 10000.0)
TEACHER_7B = Qwen2Shape(3584, 18944, 28, 28, 4, 152064, 10000.0)


@dataclass
class GPUBenchShape:
    student: Qwen2Shape = STUDENT_1_5B
    teacher: Qwen2Shape = TEACHER_7B
    tokens: int = 151665  # the tokenizer's size (output layers are padded past it)
    prompt_words: int = 240  # words of random text per prompt (plus the template's tokens)
    method: str = "tropd"
    steps: int = 3
    overrides: dict = field(default_factory=lambda: {
        "train.prompts_per_step": 8, "train.rollouts_per_prompt": 4, "train.max_new_tokens": 1024,
        "train.topk": 64, "train.backend": "hf", "train.num_threads": 8,
    })
    loss: dict = field(default_factory=lambda: {"T": 8192, "V": 151936, "D": 1536, "K": 64, "chunk": 512})
    loss_repeats: int = 3
    matmul_n: int = 8192
    decode_steps: int = 48


QUICK = GPUBenchShape(
    student=Qwen2Shape(32, 64, 2, 4, 2, 300), teacher=Qwen2Shape(48, 96, 2, 4, 2, 310), tokens=290,
    prompt_words=6, steps=2,
    overrides={"train.prompts_per_step": 2, "train.rollouts_per_prompt": 2, "train.max_new_tokens": 12,
               "train.topk": 8, "train.backend": "hf", "train.num_threads": 1, "train.micro_batch": 2,
               "train.chunk_size": 8, "train.gradient_checkpointing": False,
               # fp32 on a CPU; also, accelerate fixes mixed precision once per process, and the
               # tests' other runs in this process are fp32
               "train.dtype": "float32"},
    loss={"T": 256, "V": 300, "D": 32, "K": 8, "chunk": 64}, loss_repeats=2, matmul_n=256, decode_steps=4,
)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> "
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")


def build_tokenizer(n_tokens: int):
    """A word-level fast tokenizer: 3 special tokens, the template's role words, then `w0`, `w1`, ...

    The paper's tokenizer cannot be fetched offline; what the loop needs from it is the vocabulary size,
    EOS / pad ids and a chat template, which this one has."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = SPECIALS + ["user", "assistant", "[UNK]"]
    words += [f"w{i}" for i in range(n_tokens - len(words))]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=SPECIALS[0], pad_token=SPECIALS[0],
                                  unk_token="[UNK]", additional_special_tokens=SPECIALS[1:])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(shape: Qwen2Shape, tok, path: Path, device: torch.device, seed: int) -> None:
    """A random-weight Qwen2 of `shape`, initialised on `device` (seconds for a 7B on a GPU), saved bf16."""
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = shape.config(tok.eos_token_id, tok.eos_token_id, tok.pad_token_id, max_positions=32768)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(prev)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    del model


def params(shape: Qwen2Shape) -> dict:
    """Parameter counts from the shape: the transformer blocks, the input embedding, the LM head."""
    d, f, L, V = shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers, shape.vocab_size
    kv = d // shape.num_attention_heads * shape.num_key_value_heads
    per_layer = (d * d + d) + 2 * (d * kv + kv) + d * d + 3 * d * f + 2 * d  # q,k,v (biased), o, MLP, norms
    return {"blocks": L * per_layer + d, "embed": V * d, "head": V * d}


def flops_per_token(shape: Qwen2Shape, ctx: float, head: bool = True) -> float:
    """Forward FLOPs of one token: 2 x (blocks + LM head) for the matrix products, plus causal attention's
    QK^T and AV, 2 x 2 x layers x width x `ctx` (the mean number of earlier positions it attends to).
    head=False: a position whose logits are not computed (a prompt position: the rollout's prefill keeps
    the last one only, scoring applies the head to response positions only).
    Model FLOPs (PaLM's convention): the recomputation of gradient checkpointing is not counted."""
    p = params(shape)
    return 2 * (p["blocks"] + (p["head"] if head else 0)) + 4 * shape.num_hidden_layers * shape.hidden_size * ctx


def matmul_probe(n: int, device: torch.device, repeats: int = 10) -> float:
    """TFLOP/s of an n x n x n bf16 product on `device` (float32 on a CPU), mean of `repeats` after 3."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mib(nbytes: float) -> float:
    return nbytes / 2**20


def loss_paths(sizes: dict, device: torch.device, repeats: int) -> dict:
    """Chunked vs naive TrOPD loss path (tropd.benchlib.memory's set-up and paths) on `device`.

    Peak memory: the allocator's peak above what the set-up holds (CUDA), or the process's peak RSS
    growth (CPU, where --quick runs it). Time: median of `repeats` after one warm-up run."""
    from tropd.benchlib import memory
    from tropd.benchlib.common import peak_rss

    out = {}
    for path in ("chunked", "naive"):
        model, batch, scored = memory._setup(sizes["T"], sizes["V"], sizes["D"], sizes["K"])
        model.to(device)
        batch = batch.to(device)
        scored = {k: v.to(device) for k, v in scored.items()}
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

        def once(path=path, model=model, batch=batch, scored=scored, autocast=autocast):
            model.zero_grad(set_to_none=True)
            with autocast:
                value = memory.run_path(path, model, batch, scored, sizes["K"], sizes["chunk"])
            _sync(device)
            return value

        once()  # warm-up: kernels, allocator
        model.zero_grad(set_to_none=True)
        _sync(device)
        times, peak = [], None
        for r in range(repeats):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                base = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
                t0 = time.perf_counter()
                value = once()
                times.append(time.perf_counter() - t0)
                peak = max(peak or 0.0, _mib(torch.cuda.max_memory_allocated(device) - base))
            else:
                with peak_rss() as mem:
                    t0 = time.perf_counter()
                    value = once()
                    times.append(time.perf_counter() - t0)
                peak = max(peak or 0.0, mem["peak_mb"])
        out[path] = {"peak_mb": peak, "median_s": statistics.median(times), "times_s": times, "value": value}
        del model, batch, scored
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"sizes": sizes, "autocast_bf16": device.type == "cuda", "paths": out,
            "memory_ratio": out["chunked"]["peak_mb"] / out["naive"]["peak_mb"],
            "time_ratio": out["chunked"]["median_s"] / out["naive"]["median_s"],
            "same_loss": math.isclose(out["chunked"]["value"], out["naive"]["value"], rel_tol=2e-2,
                                      abs_tol=1e-3)}


def write_data(path: Path, n: int, words: int, vocab_words: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "train.jsonl", "w") as f:
        for i in range(n):
            ids = torch.randint(0, vocab_words, (words,), generator=g).tolist()
            f.write(json.dumps({"id": f"p{i}", "domain": "math", "prompt": " ".join(f"w{j}" for j in ids),
                                "reference": ""}) + "\n")


def _workdir(device: torch.device, need_gb: float) -> Path:
    shm = Path("/dev/shm")
    if device.type == "cuda" and shm.is_dir() and shutil.disk_usage(shm).free > need_gb * 2**30:
        return Path(tempfile.mkdtemp(prefix="tropd-gpu-bench-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="tropd-gpu-bench-"))


def decode_profile(shape: GPUBenchShape, device: torch.device, prompt_len: int) -> dict:
    """Where a rollout's time goes: `steps` decode steps of tropd's HF sampling loop for one step's rows.

    Variants on the same random student and prompts: the training set-up (fp32 master weights under bf16
    autocast), a bf16 copy without autocast, and HF `generate` (greedy) on the bf16 copy as the library
    reference. For the first, a torch.profiler pass splits the wall time into GPU kernel time and the
    rest (Python, kernel launches, host syncs): a loop far from its kernels' time is launch-bound, which
    larger batches, CUDA graphs or vLLM fix and faster kernels do not."""
    from transformers import Qwen2ForCausalLM

    from tropd.benchlib.step import left_pad, random_prompts
    from tropd.rollout.hf import decode

    o = shape.overrides
    rows, steps = o["train.prompts_per_step"] * o["train.rollouts_per_prompt"], shape.decode_steps
    tok = build_tokenizer(shape.tokens)
    torch.manual_seed(1)
    with torch.device(device):
        model = Qwen2ForCausalLM(shape.student.config(tok.eos_token_id, tok.eos_token_id, tok.pad_token_id,
                                                      max_positions=32768))
    model.eval().requires_grad_(False)
    prompts = random_prompts(rows, shape.tokens - 6, seed=0, lo=prompt_len, hi=prompt_len + 1)
    seeds = list(range(rows))

    def run_decode(m, autocast: bool) -> float:
        ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast and device.type == "cuda")
        _sync(device)
        t0 = time.perf_counter()
        with ctx:
            decode([m], prompts, [steps] * rows, seeds, set(), tok.pad_token_id,
                   vocab=shape.student.vocab_size)
        _sync(device)
        return (time.perf_counter() - t0) / steps

    out: dict = {"rows": rows, "prompt_len": prompt_len, "steps": steps}
    model.float()
    run_decode(model, True)  # warm-up
    out["fp32_autocast_s_per_step"] = statistics.median(run_decode(model, True) for _ in range(2))
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            wall = run_decode(model, True) * steps
        kernel_us = sum(e.self_device_time_total for e in prof.key_averages())
        out["profiled_wall_s"] = wall
        out["gpu_kernel_s"] = kernel_us / 1e6
        out["gpu_busy_frac"] = kernel_us / 1e6 / wall
    model.to(torch.bfloat16)
    run_decode(model, False)
    out["bf16_s_per_step"] = statistics.median(run_decode(model, False) for _ in range(2))
    ids, att = left_pad(prompts, tok.pad_token_id)
    ids, att = ids.to(device), att.to(device)
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=att, do_sample=False, max_new_tokens=4, min_new_tokens=4,
                       pad_token_id=tok.pad_token_id)
        _sync(device)
        t0 = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=att, do_sample=False, max_new_tokens=steps,
                       min_new_tokens=steps, pad_token_id=tok.pad_token_id)
        _sync(device)
    out["hf_generate_bf16_s_per_step"] = (time.perf_counter() - t0) / steps
    for k in ("fp32_autocast", "bf16", "hf_generate_bf16"):
        out[f"{k}_tokens_per_s"] = rows / out[f"{k}_s_per_step"]
    del model
    return out


PARTS = ("matmul", "loss", "train", "decode")


def run(shape: GPUBenchShape, progress=lambda m: None, save=lambda res: None, parts=PARTS) -> dict:
    """Every part runs even if an earlier one failed (a lent GPU is scarce): a failure is recorded in
    "errors" under the part's name. The short parts run first and `save` gets the results after each
    part, so a run cut off by its time limit still leaves what it measured."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t_start = time.time()
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    res: dict = {"machine": machine(), "device": name, "errors": {}}
    ps, pt = params(shape.student), params(shape.teacher)
    res["shape"] = {"student": asdict(shape.student), "teacher": asdict(shape.teacher),
                    "tokens": shape.tokens, "prompt_words": shape.prompt_words, "params_student": ps,
                    "params_teacher": pt}
    need_gb = 2 * (sum(ps.values()) + sum(pt.values())) / 1e9 * 1.2 + 8  # bf16 files + the fp32 student
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in res["device"]), None)
    res["bf16_peak_tflops"] = peak
    if "matmul" in parts:
        progress("matrix-multiply probe")
        _part(res, "matmul", progress, lambda: res.update(matmul_tflops=matmul_probe(shape.matmul_n, device),
                                                           matmul_n=shape.matmul_n))
        save(res)
    if "loss" in parts:
        progress(f"loss paths at T={shape.loss['T']}, V={shape.loss['V']}")
        _part(res, "loss", progress,
              lambda: res.update(loss=loss_paths(shape.loss, device, shape.loss_repeats)))
        save(res)
    if "decode" in parts:
        progress("decode profile of the HF rollout loop")
        _part(res, "decode", progress, lambda: res.update(
            decode=decode_profile(shape, device, prompt_len=shape.prompt_words + 5)))
        save(res)
    if "train" in parts:
        work = _workdir(device, need_gb)
        try:
            _part(res, "train", progress, lambda: _train(shape, device, work, res, progress))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for ph in res.get("phases", {}).values():
        ph["mfu_vs_probe"] = ph["tflops"] / res["matmul_tflops"] if res.get("matmul_tflops") else None
        ph["mfu"] = ph["tflops"] / peak if peak else None
    res["wall_s"] = time.time() - t_start
    save(res)
    return res


def _part(res: dict, name: str, progress, fn) -> None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - recorded, and the other parts still run
        import traceback

        res["errors"][name] = f"{type(e).__name__}: {e}"
        progress(f"{name} FAILED: {type(e).__name__}: {e}\n{traceback.format_exc()}")


def _train(shape: GPUBenchShape, device: torch.device, work: Path, res: dict, progress) -> None:
    from tropd.config import REPO_ROOT, load_config
    from tropd.train import train

    t0 = time.time()
    tok = build_tokenizer(shape.tokens)
    ps, pt = res["shape"]["params_student"], res["shape"]["params_teacher"]
    progress(f"models: student {sum(ps.values()) / 1e9:.2f}B, teacher {sum(pt.values()) / 1e9:.2f}B "
             f"parameters, random bf16, in {work}")
    build_model(shape.student, tok, work / "student", device, seed=1)
    build_model(shape.teacher, tok, work / "teacher", device, seed=2)
    n_prompts = shape.overrides["train.prompts_per_step"] * shape.steps
    write_data(work / "data", n_prompts, shape.prompt_words, shape.tokens - 6)
    res["setup_s"] = time.time() - t0
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    overrides = {**shape.overrides, "train.steps": shape.steps, "train.checkpoint_every": shape.steps + 1,
                 "train.log_every": 1, "train.lr_schedule": "constant",
                 "paths.data": str(work / "data"), "paths.models": str(work), "paths.results": str(work),
                 "teacher.path": str(work / "teacher"), "student.path": str(work / "student")}
    cfg = load_config(REPO_ROOT / "configs" / "paper-deepseek.yaml", method=shape.method,
                      overrides=[f"{k}={v}" for k, v in overrides.items()])
    progress(f"tropd train: {shape.method}, {shape.steps} steps, "
             + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in shape.overrides.items()))
    t0 = time.time()
    summary = train(cfg, work / "run", log=progress)
    res["train_wall_s"] = time.time() - t0
    metrics = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    res["train"] = {"status": summary["status"], "peak_mem_mb": summary["peak_mem_mb"],
                    "config": {"method": shape.method, "steps": shape.steps, **shape.overrides,
                               "dtype": cfg.train.dtype, "student_dtype": cfg.student.dtype,
                               "gradient_checkpointing": cfg.train.gradient_checkpointing,
                               "micro_batch": cfg.train.micro_batch, "chunk_size": cfg.train.chunk_size},
                    "steps": metrics}
    from tropd.models import format_prompt  # as tropd.data tokenizes a training prompt

    text = format_prompt(tok, " ".join(["w0"] * shape.prompt_words))
    prompt_len = len(tok(text, add_special_tokens=False)["input_ids"])
    rows = shape.overrides["train.prompts_per_step"] * shape.overrides["train.rollouts_per_prompt"]
    res["phases"] = phases(metrics, shape.student, shape.teacher, rows, prompt_len,
                           shape.overrides["train.prompts_per_step"], cfg.train.share_prompts)
    res["prompt_len"] = prompt_len


def phases(metrics: list[dict], student: Qwen2Shape, teacher: Qwen2Shape, rows: int, prompt_len: float,
           prompts: int, share_prompts: bool = False) -> dict:
    """Per-phase seconds, tokens/s and TFLOP/s of a `tropd train` run's metrics lines, medians over the
    steps after the first (all steps if one); `rows` sequences a step from `prompts` distinct prompts of
    `prompt_len` tokens.

    Tokens: a rollout counts the tokens written (teacher prefixes and student continuations, each at its
    model's FLOPs); its FLOPs add the student's prefill of each distinct prompt, once (tropd.rollout.hf
    shares it among the prompt's samples; a guided rollout's teacher prefill is left out: the roofline
    runs OPD); scoring and the student pass count every row's prompt and response positions, a prompt
    once with `share_prompts` (train.share_prompts), the LM head at response positions only."""
    scored = prompts if share_prompts else rows  # prompt forwards in scoring and the student pass
    timed = metrics[1:] or metrics
    out: dict[str, dict] = {}
    for name, key in (("rollout", "time_rollout"), ("teacher_score", "time_score"),
                      ("student_fwd_bwd", "time_fwd_bwd"), ("optimizer", "time_optim")):
        per = []
        for m in timed:
            resp = m["response_len"]  # mean tokens per response, teacher prefix included
            written = resp * rows
            student_written = m["tokens_per_s"] * m["time_rollout"]
            if name == "rollout":
                tokens = written
                ctx = prompt_len + resp / 2  # a decoded token attends to the prompt and half the response
                fl = (student_written * flops_per_token(student, ctx)
                      + (written - student_written) * flops_per_token(teacher, ctx)
                      + prompts * prompt_len * flops_per_token(student, prompt_len / 2, head=False))
            elif name == "teacher_score":
                tokens = scored * prompt_len + rows * resp
                fl = _scored(teacher, prompt_len, resp, rows, scored)
            elif name == "student_fwd_bwd":
                tokens = scored * prompt_len + rows * resp
                fl = 3 * _scored(student, prompt_len, resp, rows, scored)  # backward = 2 x forward
            else:
                tokens = 0.0
                fl = 0.0
            per.append((m[key], tokens, fl))
        secs = statistics.median(p[0] for p in per)
        tok = statistics.median(p[1] for p in per)
        fl = statistics.median(p[2] for p in per)
        out[name] = {"s": secs, "tokens": tok, "tokens_per_s": tok / secs if tok else None,
                     "tflops": fl / secs / 1e12, "s_by_step": [m[key] for m in metrics]}
    return out


def _scored(shape: Qwen2Shape, prompt_len: float, resp: float, rows: int, prompts: int) -> float:
    """Forward FLOPs of scoring `rows` sequences whose prompts run `prompts` times: the blocks over the
    prompts and over every row's response (which attends to its prompt and half its response), the
    LM head over the response positions only (tropd.scoring applies it there). With prompts = rows
    this is the one pass over every position."""
    return (prompts * prompt_len * flops_per_token(shape, prompt_len / 2, head=False)
            + rows * resp * (flops_per_token(shape, prompt_len + resp / 2, head=False) + 2 * params(shape)["head"]))


def render(r: dict) -> str:
    lines = [f"# tropd training step on {r['device']}", ""]
    for part, err in r["errors"].items():
        lines += [f"**{part} failed**: `{err}`", ""]
    if "train" in r:
        c = r["train"]["config"]
        lines += [f"Random-weight Qwen2 models of the paper-deepseek shapes (student "
                  f"{sum(r['shape']['params_student'].values()) / 1e9:.2f}B, teacher "
                  f"{sum(r['shape']['params_teacher'].values()) / 1e9:.2f}B parameters), `tropd train` with "
                  f"method `{c['method']}` on configs/paper-deepseek.yaml: "
                  f"{c['train.prompts_per_step']} prompts x "
                  f"{c['train.rollouts_per_prompt']} rollouts, {c['train.max_new_tokens']} new tokens, top-k "
                  f"{c['train.topk']}, {c['steps']} steps, {c['train.backend']} rollouts, student "
                  f"{c['student_dtype']} master weights with {c['dtype']} compute, gradient checkpointing "
                  f"{c['gradient_checkpointing']}, micro-batch {c['micro_batch']}, chunk {c['chunk_size']}. "
                  f"Medians over steps 1-{c['steps'] - 1} (step 0 is a warm-up). Run status: "
                  f"{r['train']['status']}.", "",
                  "| phase | s / step | tokens | tokens/s | TFLOP/s | MFU (bf16 peak) | of matmul probe | "
                  "s by step |", "|---|---|---|---|---|---|---|---|"]
        pct = lambda x: f"{x:.1%}" if x is not None else "-"  # noqa: E731
        for name, p in r["phases"].items():
            tps = f"{p['tokens_per_s']:,.0f}" if p["tokens_per_s"] else "-"
            lines.append(f"| {name} | {p['s']:.2f} | {p['tokens']:,.0f} | {tps} | {p['tflops']:.1f} | "
                         f"{pct(p.get('mfu'))} | {pct(p.get('mfu_vs_probe'))} | "
                         f"{', '.join(f'{s:.2f}' for s in p['s_by_step'])} |")
        where = "GPU memory (allocator peak)" if r["device"] != "cpu" else "process memory (peak RSS)"
        lines += ["", f"Peak {where} of the run: {r['train']['peak_mem_mb'] / 1024:.1f} GiB. "
                  f"Set-up (tokenizer, "
                  f"models written) {r['setup_s']:.0f} s, training {r['train_wall_s']:.0f} s."]
    if "matmul_tflops" in r:
        peak = r["bf16_peak_tflops"]
        lines += ["", f"Matrix-multiply probe ({r['matmul_n']}^3, same process): "
                  f"{r['matmul_tflops']:.1f} TFLOP/s; "
                  f"dense bf16 peak of the card: {peak if peak else 'unknown'} TFLOP/s."]
    if "loss" in r:
        lo = r["loss"]
        s = lo["sizes"]
        lines += ["", f"## Loss path at T = {s['T']}, V = {s['V']} (one sequence, TrOPD loss, backward, "
                  f"{'bf16 autocast' if lo['autocast_bf16'] else 'fp32'})", "",
                  "| path | peak memory MiB | median s |", "|---|---|---|"]
        for name, p in lo["paths"].items():
            lines.append(f"| {name} | {p['peak_mb']:.0f} | {p['median_s']:.3f} |")
        lines += ["", f"chunked / naive: memory {lo['memory_ratio']:.3f}, time {lo['time_ratio']:.2f}; "
                  f"same loss: "
                  f"{lo['same_loss']}."]
    if "decode" in r:
        d = r["decode"]
        lines += ["", f"## HF rollout loop, {d['rows']} rows after a {d['prompt_len']}-token prompt, "
                  f"{d['steps']} decode steps", "", "| variant | ms / decode step | tokens/s |",
                  "|---|---|---|"]
        for k, name in (("fp32_autocast", "tropd loop, fp32 weights + bf16 autocast (training)"),
                        ("bf16", "tropd loop, bf16 weights"),
                        ("hf_generate_bf16", "HF generate, greedy, bf16")):
            lines.append(f"| {name} | {d[k + '_s_per_step'] * 1e3:.1f} | {d[k + '_tokens_per_s']:,.0f} |")
        if "gpu_busy_frac" in d:
            lines += ["", f"GPU kernels run {d['gpu_busy_frac']:.0%} of the training variant's wall time "
                      f"({d['gpu_kernel_s']:.2f} of {d['profiled_wall_s']:.2f} s, torch.profiler)."]
    wall = f"{r['wall_s']:.0f} s" if r.get("wall_s") else "unfinished"
    lines += ["", f"Whole bench {wall}. torch {r['machine']['torch']}, transformers "
              f"{r['machine']['transformers']}.", ""]
    return "\n".join(lines)


def main(args) -> int:
    from dataclasses import replace

    from tropd.errors import UserError
    from tropd.infra.io import atomic_write_json, atomic_write_text

    shape = QUICK if args.quick else GPUBenchShape()
    if args.steps is not None:
        if args.steps < 2:
            raise UserError("--steps must be >= 2 (step 0 is a warm-up)")
        shape = replace(shape, steps=args.steps)
    if not args.quick and not torch.cuda.is_available():
        raise UserError("tropd bench --gpu needs a CUDA GPU (add --quick for the toy shapes on a CPU)")
    t = time.strftime
    out = Path(args.out)

    def save(res: dict) -> None:
        res.setdefault("wall_s", None)
        atomic_write_json(out / "summary.json", res)
        atomic_write_text(out / "summary.md", render(res))

    parts = tuple(args.parts.split(",")) if args.parts else PARTS
    if set(parts) - set(PARTS):
        raise UserError(f"--parts {args.parts}: expected a comma-separated subset of {','.join(PARTS)}")
    res = run(shape, progress=lambda m: print(f"[bench-gpu {t('%H:%M:%S')}] {m}", flush=True), save=save,
              parts=parts)
    print(render(res))
    return 0 if not res["errors"] and res.get("train", {}).get("status", "finished") == "finished" else 1
