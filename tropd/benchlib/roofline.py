"""`tropd bench --roofline`: how close each phase of a training step comes to what this CPU can do.

    tropd bench --roofline --out results/bench                       # the tiny profile, OPD, 6 steps
    tropd bench --roofline --profile configs/smol.yaml --roofline-steps 4 --threads 2 \
        --out results/bench

One process: a short `tropd train` run of the profile (its models, data and train.* settings; fp32,
train.num_threads as given), then, in the same process at the same thread count and dtype, two
matrix-multiply probes:
- the machine's ceiling: the best of square fp32 products (n = 512, 1024, 2048), the figure a
  roofline is drawn against;
- the models' own ceiling: products of the shapes the student's forward actually multiplies
  (rows x width by width x width), which says how much of the gap is the model being small.
A phase's FLOPs are counted from the shapes (tropd.benchlib.gpu.flops_per_token: 2 x parameters
per token plus attention; backward = 2 x forward), its seconds from the run's metrics (train.py's
timers), the median over the steps after the first. Fraction = achieved FLOP/s / the ceiling.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tropd.benchlib.gpu import Qwen2Shape, matmul_probe, phases


def shape_of(model_dir: Path) -> Qwen2Shape:
    """The FLOP-relevant shape from a model folder's config.json (Llama and Qwen2 name them alike; the
    Qwen2 q/k/v biases counted by tropd.benchlib.gpu.params are d + 2 kv per layer: noise here)."""
    c = json.loads((Path(model_dir) / "config.json").read_text())
    heads = c["num_attention_heads"]
    return Qwen2Shape(c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], heads,
                      c.get("num_key_value_heads") or heads, c["vocab_size"])


def own_shape_probe(rows: int, width: int, repeats: int = 20) -> float:
    """TFLOP/s of (rows x width) @ (width x width), fp32: the student's projections at its own width."""
    a, b = torch.randn(rows, width), torch.randn(width, width)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * width * width * repeats / (time.perf_counter() - t0) / 1e12


def run(profile: str, steps: int, threads: int, overrides: list[str], method: str = "opd", log=print) -> dict:
    from tropd.catalog import bind
    from tropd.config import load_config
    from tropd.data import load_prompts
    from tropd.models import load_tokenizer
    from tropd.train import train

    torch.set_num_threads(threads)
    cfg = load_config(profile, method=method, overrides=[
        f"train.steps={steps}", "train.log_every=1", f"train.checkpoint_every={steps}", "train.eval_every=0",
        f"train.num_threads={threads}", "train.dtype=float32", "train.backend=hf", *overrides])
    tc = cfg.train
    log(f"roofline: {cfg.profile} {method}, {steps} steps of {tc.prompts_per_step} x {tc.rollouts_per_prompt}, "
        f"{threads} threads")
    with tempfile.TemporaryDirectory(prefix="roofline-") as tmp:
        summary = train(cfg, Path(tmp) / "run", log=lambda m: None, bound=bind(cfg))
        metrics = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    ps = load_prompts(cfg, load_tokenizer(cfg.student))
    used = [i for s in range(steps) for i in ps.indices(s, tc.prompts_per_step)]
    prompt_len = statistics.mean(len(ps.prompt_tokens[i]) for i in used)
    student, teacher = shape_of(cfg.resolve(cfg.student.path)), shape_of(cfg.resolve(cfg.teacher.path))
    rows = tc.prompts_per_step * tc.rollouts_per_prompt
    ph = phases(metrics, student, teacher, rows, prompt_len, tc.prompts_per_step, tc.share_prompts)
    machine_peak = max(matmul_probe(n, torch.device("cpu"), repeats=5) for n in (512, 1024, 2048))
    seq = prompt_len + statistics.median(m["response_len"] for m in metrics)
    own_peak = own_shape_probe(int(rows * seq), student.hidden_size)
    for name, p in ph.items():
        p["fraction_of_machine"] = p["tflops"] / machine_peak
        p["fraction_of_own_shape"] = p["tflops"] / own_peak
    timed = {k: v for k, v in ph.items() if k != "optimizer"}
    return {"profile": cfg.profile, "method": method, "steps": steps, "threads": threads, "rows": rows,
            "prompt_len": prompt_len, "student": student.__dict__, "teacher": teacher.__dict__,
            "machine_peak_tflops": machine_peak, "own_shape_peak_tflops": own_peak, "phases": ph,
            "furthest": min(timed, key=lambda k: timed[k]["fraction_of_machine"]),
            "step_s": statistics.median(sum(v for k, v in m.items() if k.startswith("time_")) for m in metrics[1:]
                                        or metrics),
            "status": summary["status"]}


def markdown(results: list[dict], machine: dict) -> str:
    lines = ["# Roofline: each phase of a training step against this CPU's matrix-multiply ceiling", "",
             f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, load "
             f"{machine.get('loadavg_start', '?')} at the start. Generated by `tropd bench --roofline` "
             "(tropd/benchlib/roofline.py says how FLOPs and ceilings are counted).", ""]
    for r in results:
        lines += [f"## {r['profile']} ({r['method']}, {r['steps']} steps of {r['rows']} sequences, "
                  f"{r['threads']} threads, fp32)", "",
                  f"Ceiling: {1e3 * r['machine_peak_tflops']:.1f} GFLOP/s (best square fp32 product); at the "
                  f"student's own width ({r['student']['hidden_size']}) a product reaches "
                  f"{1e3 * r['own_shape_peak_tflops']:.1f} GFLOP/s. Median step {r['step_s']:.2f} s.", "",
                  "| phase | s/step | tokens/s | GFLOP/s | of the ceiling | of the own-width product |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, p in r["phases"].items():
            tps = "–" if not p["tokens_per_s"] else f"{p['tokens_per_s']:.0f}"
            lines.append(f"| {name} | {p['s']:.3f} | {tps} | {1e3 * p['tflops']:.2f} | "
                         f"{100 * p['fraction_of_machine']:.1f}% | {100 * p['fraction_of_own_shape']:.1f}% |")
        lines += ["", f"Furthest from the ceiling: **{r['furthest']}**.", ""]
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.6), squeeze=False)
    for ax, r in zip(axes[0], results):
        names = [k for k in r["phases"] if k != "optimizer"]
        vals = [1e3 * r["phases"][k]["tflops"] for k in names]
        ax.bar(names, vals, color="#4c72b0")
        ax.axhline(1e3 * r["machine_peak_tflops"], color="k", ls="--", lw=1, label="square fp32 product")
        ax.axhline(1e3 * r["own_shape_peak_tflops"], color="#c44e52", ls=":", lw=1, label="product at the student's width")
        ax.set_yscale("log")
        ax.set_ylabel("GFLOP/s")
        ax.set_title(f"{r['profile']}: {r['method']}, {r['threads']} thread(s)", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
