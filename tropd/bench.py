"""`tropd bench`: memory and speed of the harness against the plain operations it is built from.

    tropd bench --out results/bench            # about 2 minutes on a 2-core CPU
    tropd bench --out /tmp/b --quick           # small sizes, seconds (tests)
    tropd bench --backends MODEL_DIR --out results/bench/gpu   # vLLM vs HF rollout tokens/s (GPU)
    tropd bench --gpu --out results/bench/gpu  # training loop, paper-deepseek shapes (tropd.benchlib.gpu)
    tropd bench --peers --out results/bench    # tropd against TRL, same work (tropd.benchlib.peers)
    tropd bench --roofline --out results/bench # step phases against the CPU's ceiling (benchlib.roofline)

Writes OUT/summary.json and OUT/summary.md (atomically) with:
- loss_memory_ratio   : peak memory of the chunked TrOPD loss path / naive full-vocabulary path
                        (T = 4096, V = 49152; goal <= 0.25)                  tropd.benchlib.memory
- step_overhead_ratio : one harness training step / the same raw operations (goal <= 1.10)
                                                                              tropd.benchlib.step
- rollout_speed_ratio : HF-backend tokens/s / model.generate tokens/s (goal >= 0.95)
                                                                              tropd.benchlib.rollout
- eval throughput     : code checks/s and math items/s of tropd.eval's graders
                                                                              tropd.benchlib.evalspeed
Every timing is the median over interleaved repeats; the machine (CPU, cores, load, versions) is
recorded with the numbers, since on a shared machine they only mean something side by side.
"""
from __future__ import annotations

import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from tropd.benchlib import evalspeed, memory, rollout, step
from tropd.benchlib.common import loadavg, machine
from tropd.benchlib.report import GOALS, render_markdown
from tropd.infra.io import atomic_write_json, atomic_write_text

FULL = {
    "memory": {"T": 4096, "V": 49152, "D": 64, "K": 64, "chunk": 256}, "teacher_memory": True,
    # chunk 128 makes (chunk, V) float32 buffers of 24 MiB, under glibc's adaptive mmap threshold
    "memory_extra": [("chunked chunk=128", "chunked", 128, 0),
                     ("chunked chunk=128, mmap>=1MiB", "chunked", 128, 1 << 20)],
    "step": step.StepShape(), "step_repeats": 9,
    "rollout_shapes": rollout.SHAPES, "rollout_repeats": {"tiny": 15, "vocab49k": 5},
    "eval": {"n_code": 10, "n_math": 100, "repeats": 3},
}
QUICK = {
    "memory": {"T": 128, "V": 1024, "D": 16, "K": 8, "chunk": 48}, "teacher_memory": False,
    "memory_extra": [("chunked chunk=32", "chunked", 32, 0)],
    "step": step.StepShape(vocab=64, teacher_hidden=32, teacher_layers=1, student_hidden=16, student_layers=1,
                           prompts=2, rollouts=2, max_new=6, topk=4, chunk=4, micro_batch=2),
    "step_repeats": 2,
    "rollout_shapes": rollout.QUICK_SHAPES, "rollout_repeats": {"tiny": 2},
    "eval": {"n_code": 1, "n_math": 4, "repeats": 1},
}


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def bench_memory(sizes: dict, teacher: bool, extra: list[tuple], fresh_process: bool) -> dict:
    """Each probe in its own interpreter, two at a time (peak RSS is per process); --quick measures in
    this process instead (interpreter start-up would dominate a seconds-long run).

    `extra`: (name, path, chunk, mmap_threshold) probes beside the headline pair, e.g. another chunk
    size, or glibc's mmap threshold pinned to show what the allocator adds.
    """
    probes = {p: (p, sizes["chunk"], 0) for p in ["chunked", "naive"]
              + (["teacher_chunked", "teacher_naive"] if teacher else [])}
    probes.update({name: (path, chunk, thr) for name, path, chunk, thr in extra})
    where = "one subprocess each" if fresh_process else "in this process"
    _log(f"memory: {', '.join(probes)} at T={sizes['T']} V={sizes['V']} ({where})")

    def one(spec):
        path, chunk, thr = spec
        kw = {**sizes, "chunk": chunk, "mmap_threshold": thr}
        return memory.measure(path, **kw) if fresh_process else memory.measure_here(path, **kw)

    if fresh_process:
        with ThreadPoolExecutor(2) as pool:
            res = dict(zip(probes, pool.map(one, probes.values())))
    else:
        res = {name: one(spec) for name, spec in probes.items()}
    for p, r in res.items():
        _log(f"  {p:24s} peak {r['peak_mb']:8.1f} MiB  ({r['wall_s']:.1f} s)")
    out = {"sizes": sizes, "paths": res, "fresh_process": fresh_process,
           "loss_memory_ratio": res["chunked"]["peak_mb"] / res["naive"]["peak_mb"],
           "same_loss": math.isclose(res["chunked"]["value"], res["naive"]["value"],
                                     rel_tol=1e-4, abs_tol=1e-5)}
    if teacher:
        out["teacher_memory_ratio"] = res["teacher_chunked"]["peak_mb"] / res["teacher_naive"]["peak_mb"]
    return out


def bench_main(args) -> int:
    if args.backends:
        return backends_main(args)
    if args.gpu:
        from tropd.benchlib import gpu

        return gpu.main(args)
    if args.peers:
        return peers_main(args)
    if args.roofline:
        return roofline_main(args)
    cfg = QUICK if args.quick else FULL
    out = Path(args.out)
    t_start = time.time()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny profile's setting; the machine is shared
    info = machine()
    _log(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, 1 thread, "
         f"load {info['loadavg_start']}")
    try:
        mem = bench_memory(cfg["memory"], cfg["teacher_memory"], cfg["memory_extra"],
                           fresh_process=not args.quick)
        _log(f"step overhead: harness step vs raw ops, {cfg['step_repeats']} interleaved rounds")
        st = step.run(cfg["step"], cfg["step_repeats"], progress=lambda m: _log(f"  step {m}"))
        _log(f"  harness {st['harness_s']:.3f} s, raw {st['raw_s']:.3f} s")
        rolls = {}
        for shape in cfg["rollout_shapes"]:
            reps = cfg["rollout_repeats"][shape.name]
            _log(f"rollout {shape.name}: HF backend vs generate, {reps} rounds")
            rolls[shape.name] = rollout.run_shape(shape, reps,
                                                  progress=lambda m: _log(f"  rollout {m}"))
            r = rolls[shape.name]
            _log(f"  hf {r['hf_tok_s']:.0f} tok/s, generate {r['generate_tok_s']:.0f} tok/s")
        _log("eval throughput: code checks, math items")
        ev = evalspeed.run(**cfg["eval"])
    finally:
        torch.set_num_threads(threads_before)

    head = rollout.SHAPES[0].name if not args.quick else rollout.QUICK_SHAPES[0].name
    summary = {
        "loss_memory_ratio": mem["loss_memory_ratio"],
        "step_overhead_ratio": st["ratio"]["median_of_ratios"],
        "rollout_speed_ratio": rolls[head]["ratio"]["median_of_ratios"],
        "eval_code_checks_per_s": ev["code"].get("checks_per_s"),
        "eval_math_items_per_s": ev["math"].get("items_per_s"),
        "goals": GOALS,
        "quick": bool(args.quick),
        "machine": {**info, "torch_threads": 1, "loadavg_end": loadavg()},
        "wall_s": time.time() - t_start,
        "details": {"memory": mem, "step": st, "rollout": rolls, "rollout_head_shape": head,
                    "eval": ev},
    }
    summary["meets_goal"] = {
        "loss_memory_ratio": summary["loss_memory_ratio"] <= GOALS["loss_memory_ratio"]["max"],
        "step_overhead_ratio": summary["step_overhead_ratio"] <= GOALS["step_overhead_ratio"]["max"],
        "rollout_speed_ratio": summary["rollout_speed_ratio"] >= GOALS["rollout_speed_ratio"]["min"],
    }
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", render_markdown(summary))
    _log(f"wrote {out / 'summary.json'} and summary.md in {summary['wall_s']:.0f} s")
    for k, ok in summary["meets_goal"].items():
        print(f"{k:22s} {summary[k]:.3f}  {'meets' if ok else 'MISSES'} goal")
    return 0


def backends_main(args) -> int:
    """`--backends MODEL_DIR`: tropd.benchlib.backends, written to OUT/backends.{json,md}."""
    from tropd.benchlib import backends
    from tropd.errors import UserError

    model = args.backends
    if model == "random":
        from tropd.config import REPO_ROOT

        model = backends.random_model(REPO_ROOT / "models" / "bench" / "random-qwen2-1.5b")  # gitignored
    elif not Path(model).is_dir():
        raise UserError(f"--backends {model}: not a model folder (or `random`)")
    if min(args.rows, args.max_new, args.repeats) < 1:
        raise UserError("--rows, --max-new and --repeats must be >= 1")
    _log(f"rollout backends on {model}: {args.rows} rows x {args.max_new} tokens, {args.repeats} rounds")
    res = backends.run(model, args.rows, args.max_new, args.repeats, progress=_log)
    out = Path(args.out)
    atomic_write_json(out / "backends.json", res)
    atomic_write_text(out / "backends.md", backends.render(res))
    for name, b in res["backends"].items():
        print(f"{name:5s} {b['tok_s']:10.0f} tokens/s ({b['tokens']:.0f} tokens in {b['median_s']:.2f} s)")
    print(f"vllm / hf: {res['vllm_over_hf']:.2f} -> {out / 'backends.md'}")
    return 0


def peers_main(args) -> int:
    """tropd against TRL (tropd.benchlib.peers): OUT/peers.{md,json}, and the ratios into OUT/summary.json
    (tropd.benchlib.peers.summary_keys) beside what is there. Results of other profiles already in
    OUT/peers.json are kept beside the new one."""
    import importlib.util

    from tropd.benchlib import peers
    from tropd.errors import UserError

    if importlib.util.find_spec("trl") is None:
        raise UserError("tropd bench --peers needs TRL: pip install -e '.[peers]'")
    pairs = [x for x in args.peer_pairs.split(",") if x]
    unknown = sorted(set(pairs) - set(peers.PAIRS))
    if unknown or min(args.peer_steps, args.peer_repeats, args.threads) < 1:
        raise UserError(f"--peer-pairs {unknown} unknown (known: {', '.join(peers.PAIRS)})" if unknown else
                        "--peer-steps, --peer-repeats and --threads must be >= 1")
    from tropd.config import load_config

    profile = load_config(args.profile, overrides=args.overrides).profile  # a bad profile: one line, first
    out = Path(args.out)
    work = peers.Work(args.profile, steps=args.peer_steps, threads=args.threads, overrides=tuple(args.overrides))
    info = machine()
    _log(f"peers: {', '.join(pairs)} on {args.profile}, {work.steps} steps, {args.peer_repeats} runs a side")
    agreement = peers.gkd_loss_agreement(work) if "gkd" in pairs else None
    res = peers.run(work, pairs, args.peer_repeats, _log)
    res.update(profile=profile, gkd_loss_agreement=agreement, loadavg_start=info.get("loadavg_start"),
               loadavg_end=loadavg())
    results = _beside_other_profiles(out / "peers.json", res)
    atomic_write_text(out / "peers.md", peers.markdown(results, info))
    _merge_summary(out, peers.summary_keys(res))
    print((out / "peers.md").read_text())
    return 0


def roofline_main(args) -> int:
    """OUT/roofline.{md,json,png}: the profile's step phases against this CPU's ceiling; the fractions
    into OUT/summary.json as roofline_<profile>_<phase>_fraction. Results of other profiles already in
    OUT/roofline.json are kept beside the new one."""
    from tropd.benchlib import roofline
    from tropd.config import load_config
    from tropd.errors import UserError

    if min(args.roofline_steps, args.threads) < 1:
        raise UserError("--roofline-steps and --threads must be >= 1")
    load_config(args.profile, overrides=args.overrides)  # a bad profile is one line, before any run
    out = Path(args.out)
    info = machine()
    res = roofline.run(args.profile, args.roofline_steps, args.threads, args.overrides, log=_log)
    res["machine"] = info
    results = _beside_other_profiles(out / "roofline.json", res)
    full = [r for r in results if "machine_peak_tflops" in r]
    atomic_write_text(out / "roofline.md", roofline.markdown(full, info))
    roofline.plot(full, out / "roofline.png")
    _merge_summary(out, {f"roofline_{res['profile']}_{k}_fraction": v["fraction_of_machine"]
                         for k, v in res["phases"].items() if k != "optimizer"})
    print((out / "roofline.md").read_text())
    return 0


def _beside_other_profiles(path: Path, res: dict) -> list[dict]:
    """Writes `res` into the JSON list at `path` in place of the result of its profile, keeping the other
    profiles' (a file of another shape is replaced); returns the new list."""
    old = json.loads(path.read_text()) if path.is_file() else []
    kept = [r for r in old if r.get("profile") != res["profile"]] if isinstance(old, list) else []
    results = [*kept, res]
    atomic_write_json(path, results)
    return results


def _merge_summary(out: Path, keys: dict) -> None:
    """New keys into OUT/summary.json (made by `tropd bench`), the rest as it is; nothing without one."""
    summary = out / "summary.json"
    if summary.is_file():
        atomic_write_json(summary, {**json.loads(summary.read_text()), **keys})
