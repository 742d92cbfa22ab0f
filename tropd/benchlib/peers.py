"""`tropd bench --peers`: tropd against TRL, the library a researcher would pick instead.

    pip install -e '.[peers]'                        # TRL (1.16), never a core dependency
    tropd bench --peers --threads 2 --peer-repeats 5 --out results/bench   # both pairs on tiny
    tropd bench --peers --profile configs/smol.yaml --peer-pairs opd --peer-steps 4 --peer-repeats 2 \
        --threads 2 --out results/bench                                 # one pair at SmolLM2 scale

The same work on both sides, per pair: the profile's teacher and student (HF folders), the same
prompts in the same order (tropd's own seeded prompt order, `PromptSet.indices`, fed to TRL as an
unshuffled dataset with each prompt repeated once per rollout), train.prompts_per_step x
train.rollouts_per_prompt sequences a step in one micro-batch, the same maximum new tokens,
temperature 1, AdamW with the same learning rate, betas, weight decay and gradient clip, a constant
schedule, fp32, the same thread count, for `steps` steps. One difference in how, not what: tropd's
rollout prefills each prompt once for its rollouts_per_prompt samples (tropd.rollout.hf), while TRL's
`generate` prefills each repeated row; the samples are drawn from the same distributions either way.
With the override train.share_prompts=true tropd's scoring and student pass run each prompt once too
(tropd.scoring); TRL's trainers run every row's whole sequence.

Pairs (which TRL objective is closest):
- tropd `opd` vs `trl.DistillationTrainer(beta=1.0)`: both train on the student's own samples toward
  the teacher's reverse KL. OPD follows the sampled per-token K1 reward (a policy gradient; only the
  sampled token's teacher log-prob is needed), TRL's loss is the full-vocabulary reverse KL at every
  position (its expectation over the next token, so more teacher compute per position). TRL's
  trainer has no rollouts-per-prompt knob, hence the repeated prompts.
- tropd `gkd` vs `trl.experimental.gkd.GKDTrainer`, both with lmbda = 1 (every step on-policy) and
  beta = 0.5. lmbda = 1 for the timing only: at 0.5 each side flips its own coin per step, and the
  step's work (a generation or none) would differ by chance. tropd's GKD loss is TRL's divided by
  beta (1 - beta) by design (baselines/gkd.py); `gkd_loss_agreement` checks that, on one batch,
  before any step.

Figures per pair: wall seconds per training step (each run's median over its steps after the first,
then the median over runs), tokens generated per second of step time, and the peak resident memory
of the process (models, optimizer, libraries: each run is a fresh interpreter, so the peaks are not
shared). Runs alternate order (tropd, TRL, TRL, tropd, ...) so a drift in machine load falls on both.
tropd's step time is the sum of its timed phases (rollout, scoring, forward/backward, optimizer,
checkpoint; train.py), TRL's is `on_step_begin` to `on_step_end` of its Trainer. Neither includes
set-up (model loading, dataset preparation). Each step also splits into generation (tropd's rollout
phase; TRL's generate call, timed by a subclass that overrides only to time it) and the rest, so a
ratio can be traced to the part of the step that makes it.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PAIRS = {
    "opd": {"method": "opd", "params": {}, "trl": "DistillationTrainer(beta=1.0): full-vocabulary reverse KL "
            "on the student's samples"},
    "gkd": {"method": "gkd", "params": {"beta": 0.5, "lmbda": 1.0}, "trl": "experimental GKDTrainer(beta=0.5, "
            "lmbda=1.0): generalised JSD on the student's samples"},
}


@dataclass(frozen=True)
class Work:
    """What both sides of a pair do: the profile (models, data, train.* settings) and the run length."""

    profile: str  # a profile YAML (configs/tiny.yaml)
    steps: int = 8
    threads: int = 2
    seed: int = 0
    overrides: tuple[str, ...] = ()  # key=value on the profile, for both sides


def _config(work: Work, pair: str):
    from tropd.config import load_config

    p = PAIRS[pair]
    return load_config(work.profile, method=p["method"], overrides=[
        f"seed={work.seed}", f"train.steps={work.steps}", "train.log_every=1", f"train.checkpoint_every={work.steps}",
        "train.eval_every=0", f"train.num_threads={work.threads}", "train.lr_schedule=constant",
        "train.warmup_steps=0", "train.dtype=float32", "train.backend=hf", *work.overrides,
        *(f"method.params.{k}={v!r}" for k, v in p["params"].items())])


def _prompts_in_order(cfg) -> list[dict]:
    """The rows tropd trains on, in its order, each once per rollout: what TRL's dataset holds."""
    from tropd.data import load_prompts, train_file
    from tropd.infra.io import read_jsonl
    from tropd.models import load_tokenizer

    rows = read_jsonl(train_file(cfg))
    by_id = {r["id"]: r for r in rows}
    ps = load_prompts(cfg, load_tokenizer(cfg.student))
    tc = cfg.train
    return [by_id[ps.ids[i]] for step in range(tc.steps) for i in ps.indices(step, tc.prompts_per_step)
            for _ in range(tc.rollouts_per_prompt)]


# ----------------------------------------------------------------------------- one side, one process


def run_tropd(work: Work, pair: str) -> dict:
    from tropd.catalog import bind
    from tropd.train import train

    cfg = _config(work, pair)
    with tempfile.TemporaryDirectory(prefix="peer-tropd-") as tmp:
        train(cfg, Path(tmp) / "run", log=lambda msg: None, bound=bind(cfg))
        lines = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [sum(v for k, v in m.items() if k.startswith("time_")) for m in lines]
    tokens = [m["tokens_per_s"] * m["time_rollout"] for m in lines]
    return {"step_s": steps, "gen_s": [m["time_rollout"] for m in lines], "tokens": tokens,
            "loss0": lines[0]["loss"]}


def run_trl(work: Work, pair: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    cfg = _config(work, pair)
    tc = cfg.train
    torch.set_num_threads(work.threads)
    rows = _prompts_in_order(cfg)
    tok = AutoTokenizer.from_pretrained(cfg.resolve(cfg.student.path))
    tok.padding_side = "left"  # TRL generates from left-padded prompts
    student = AutoModelForCausalLM.from_pretrained(cfg.resolve(cfg.student.path), torch_dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(cfg.resolve(cfg.teacher.path), torch_dtype=torch.float32)
    batch = tc.prompts_per_step * tc.rollouts_per_prompt
    common = dict(per_device_train_batch_size=batch, gradient_accumulation_steps=1, max_steps=tc.steps,
                  learning_rate=tc.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=tc.weight_decay,
                  adam_beta1=tc.adam_beta1, adam_beta2=tc.adam_beta2, max_grad_norm=tc.grad_clip or 1e9,
                  optim="adamw_torch", temperature=tc.temperature, bf16=False, fp16=False,
                  gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                  seed=work.seed, dataloader_num_workers=0, disable_dropout=True)
    timer = _StepTimer(TrainerCallback)
    with tempfile.TemporaryDirectory(prefix="peer-trl-") as tmp:
        if pair == "opd":
            from trl import DistillationConfig

            args = DistillationConfig(output_dir=tmp, beta=1.0, max_completion_length=tc.max_new_tokens,
                                      shuffle_dataset=False, **common)
            ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}]} for r in rows])
            trainer = _timed_distillation()(model=student, teacher_model=teacher, args=args, train_dataset=ds,
                                            processing_class=tok, callbacks=[timer.cb])
        else:
            from trl.experimental.gkd import GKDConfig

            p = PAIRS[pair]["params"]
            args = GKDConfig(output_dir=tmp, beta=p["beta"], lmbda=p["lmbda"], max_new_tokens=tc.max_new_tokens,
                             seq_kd=False, max_length=4096, **common)
            ds = Dataset.from_list([{"messages": [{"role": "user", "content": r["prompt"]},
                                                  {"role": "assistant", "content": r.get("reference", "")}]}
                                    for r in rows])
            trainer = _counting_gkd()(model=student, teacher_model=teacher, args=args, train_dataset=ds,
                                      processing_class=tok, callbacks=[timer.cb])
            # tropd's prompt order: GKDTrainer (an SFTTrainer) would shuffle
            trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
        trainer.train()
    if pair == "opd":
        tokens = [h["completions/mean_length"] * batch for h in trainer.state.log_history
                  if "completions/mean_length" in h]
    else:
        tokens = trainer.generated
    return {"step_s": timer.times, "gen_s": trainer.gen_s, "tokens": tokens,
            "loss0": next(h["loss"] for h in trainer.state.log_history if "loss" in h)}


class _StepTimer:
    """Wall time of each Trainer step, from `on_step_begin` to `on_step_end`."""

    def __init__(self, base):
        self.times: list[float] = []
        outer = self

        class CB(base):
            def on_step_begin(self, args, state, control, **kw):
                outer.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                outer.times.append(time.perf_counter() - outer.t0)

        self.cb = CB()


def _timed_distillation():
    """DistillationTrainer that times its generation (`_generate`: prompts to completion ids, once a step
    inside `training_step`), so a step splits into generation and the rest as tropd's does."""
    from trl import DistillationTrainer

    class Timed(DistillationTrainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.gen_s: list[float] = []

        def _generate(self, prompts):
            t0 = time.perf_counter()
            out = super()._generate(prompts)
            self.gen_s.append(time.perf_counter() - t0)
            return out

    return Timed


def _counting_gkd():
    """GKDTrainer that counts the tokens it generates (it logs no completion lengths) and times the
    generation, once a step inside `training_step`."""
    from trl.experimental.gkd import GKDTrainer

    class Counting(GKDTrainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.generated: list[int] = []
            self.gen_s: list[float] = []

        def generate_on_policy_outputs(self, model, inputs, generation_config):  # a static method upstream
            t0 = time.perf_counter()
            ids, mask, labels = GKDTrainer.generate_on_policy_outputs(model, inputs, generation_config)
            self.gen_s.append(time.perf_counter() - t0)
            self.generated.append(int((labels != -100).sum()))  # completion tokens, prompt and padding masked
            return ids, mask, labels

    return Counting


def gkd_loss_agreement(work: Work, n: int = 8, beta: float = 0.5) -> dict:
    """tropd's GKD per-token loss times beta (1 - beta) against TRL's `generalized_jsd_loss`, on one
    batch (the first n training rows: prompt + reference answer), same logits, same positions."""
    import torch
    from trl.experimental.gkd import GKDTrainer

    from baselines.gkd import generalized_jsd
    from tropd.models import format_prompt, load_model, load_tokenizer

    cfg = _config(work, "gkd")
    tok = load_tokenizer(cfg.student)
    rows = _prompts_in_order(cfg)[: n * cfg.train.rollouts_per_prompt: cfg.train.rollouts_per_prompt]
    seqs, starts = [], []
    for r in rows:
        p = tok(format_prompt(tok, r["prompt"]), add_special_tokens=False)["input_ids"]
        a = tok(r.get("reference", ""), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        seqs.append(p + a)
        starts.append(len(p))
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), tok.pad_token_id)
    labels = torch.full((len(seqs), T), -100)
    for i, (s, k) in enumerate(zip(seqs, starts)):
        ids[i, : len(s)] = torch.tensor(s)
        labels[i, k: len(s)] = torch.tensor(s[k:])
    attn = (torch.arange(T)[None] < torch.tensor([len(s) for s in seqs])[:, None]).long()
    with torch.no_grad():
        s_logits = load_model(cfg.student, "student").eval()(input_ids=ids, attention_mask=attn).logits[:, :-1]
        t_logits = load_model(cfg.teacher, "teacher").eval()(input_ids=ids, attention_mask=attn).logits[:, :-1]
    V = min(s_logits.shape[-1], t_logits.shape[-1])
    s_logits, t_logits, lab = s_logits[..., :V].float(), t_logits[..., :V].float(), labels[:, 1:]
    trl = float(GKDTrainer.generalized_jsd_loss(s_logits, t_logits, labels=lab, beta=beta))
    mask = lab != -100
    ours = float(generalized_jsd(s_logits, t_logits, beta)[mask].mean()) * beta * (1 - beta)
    return {"beta": beta, "tokens": int(mask.sum()), "trl": trl, "tropd_scaled": ours,
            "rel_diff": abs(ours - trl) / max(abs(trl), 1e-12)}


def _worker(argv: list[str]) -> int:
    side, pair, spec, out = argv
    raw = json.loads(spec)
    work = Work(**{**raw, "overrides": tuple(raw.get("overrides", ()))})
    res = (run_tropd if side == "tropd" else run_trl)(work, pair)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps(res))
    return 0


# ----------------------------------------------------------------------------- orchestration


def _one(side: str, pair: str, work: Work, log) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    env = {**os.environ, "OMP_NUM_THREADS": str(work.threads), "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "tropd.benchlib.peers", side, pair, json.dumps(asdict(work)), out],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"peer bench {side}/{pair} failed:\n{p.stderr[-3000:]}")
    res = json.loads(Path(out).read_text())
    os.unlink(out)
    res["process_s"] = time.time() - t0
    after = res["step_s"][1:] or res["step_s"]
    res["median_step_s"] = statistics.median(after)
    gen = res["gen_s"][1:] or res["gen_s"]
    res["median_gen_s"] = statistics.median(gen)
    res["median_rest_s"] = statistics.median(s - g for s, g in zip(after, gen))
    res["tokens_per_s"] = sum(res["tokens"][1:] or res["tokens"]) / max(sum(after), 1e-9)
    log(f"{pair} {side}: {res['median_step_s']:.3f} s/step, {res['tokens_per_s']:.0f} tok/s, "
        f"peak {res['peak_rss_mb']:.0f} MB")
    return res


def run(work: Work, pairs: list[str], repeats: int, log) -> dict:
    """Every pair, `repeats` runs a side, alternating which side goes first."""
    out = {"work": asdict(work), "repeats": repeats, "pairs": {}}
    for pair in pairs:
        runs = {"tropd": [], "trl": []}
        for r in range(repeats):
            for side in (("tropd", "trl") if r % 2 == 0 else ("trl", "tropd")):
                runs[side].append(_one(side, pair, work, log))
        med = {s: {k: statistics.median(x[k] for x in runs[s]) for k in (
            "median_step_s", "median_gen_s", "median_rest_s", "tokens_per_s", "peak_rss_mb")} for s in runs}
        out["pairs"][pair] = {
            "tropd_method": PAIRS[pair]["method"], "tropd_params": PAIRS[pair]["params"], "trl": PAIRS[pair]["trl"],
            "runs": runs, "median": med,
            "step_ratio": med["tropd"]["median_step_s"] / med["trl"]["median_step_s"],
            "tokens_per_s_ratio": med["tropd"]["tokens_per_s"] / med["trl"]["tokens_per_s"],
            "mem_ratio": med["tropd"]["peak_rss_mb"] / med["trl"]["peak_rss_mb"],
        }
    return out


def _spread(p: dict) -> str:
    """' (lo-hi)': the step ratio's range over the runs paired in order, when the runs are there."""
    runs = p.get("runs")
    if not runs:
        return ""
    r = [a["median_step_s"] / b["median_step_s"] for a, b in zip(runs["tropd"], runs["trl"])]
    return f" ({min(r):.2f}-{max(r):.2f})"


def summary_keys(res: dict) -> dict:
    """The ratios for summary.json: peer_<pair>_{step,mem}_ratio for the tiny profile (the headline
    pairs), peer_<profile>_<pair>_... for any other."""
    pre = "peer_" if res["profile"] == "tiny" else f"peer_{res['profile']}_"
    return {f"{pre}{pair}_{what}_ratio": p[f"{what}_ratio"] for pair, p in res["pairs"].items()
            for what in ("step", "mem")}


def markdown(results: list[dict], machine: dict) -> str:
    """peers.md: a section per profile measured (each result of `run`, with its profile name, machine
    load and, when the gkd pair ran, the step-0 loss agreement)."""
    lines = ["# tropd against TRL: the same distillation work, side by side", "",
             "Generated by `tropd bench --peers`; tropd.benchlib.peers says what each side does. Medians: "
             "each run's median step after the first, then the median over runs, sides in alternating order. "
             "In brackets: the range of the ratio over the runs paired in the order they ran (tropd's i-th "
             "run over TRL's i-th), the machine's run-to-run spread on the same work.",
             "", f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores.", ""]
    for res in results:
        w = res["work"]
        lines += [f"## {res['profile']}: `{w['profile']}` {' '.join(w['overrides'])}".rstrip(), "",
                  f"{w['steps']} steps, {w['threads']} threads, {res['repeats']} runs a side; load "
                  f"{res.get('loadavg_start', '?')} at the start, {res.get('loadavg_end', '?')} at the end.", "",
                  "| pair | TRL side | s/step tropd | s/step TRL | ratio | tok/s tropd | tok/s TRL | peak MB tropd | "
                  "peak MB TRL | mem ratio |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for pair, p in res["pairs"].items():
            a, b = p["median"]["tropd"], p["median"]["trl"]
            lines.append(f"| {pair} | {p['trl']} | {a['median_step_s']:.3f} | {b['median_step_s']:.3f} | "
                         f"{p['step_ratio']:.2f}{_spread(p)} | {a['tokens_per_s']:.0f} | {b['tokens_per_s']:.0f} | "
                         f"{a['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} | {p['mem_ratio']:.2f} |")
        split = {pair: p["median"] for pair, p in res["pairs"].items() if "median_gen_s" in p["median"]["tropd"]}
        if split:
            lines += ["", "Where a step goes (s/step, medians as above): generation is tropd's rollout and TRL's "
                      "generate call; the rest is scoring, the student's forward and backward, the loss and the "
                      "optimizer.", "", "| pair | tropd generation | tropd rest | TRL generation | TRL rest |",
                      "|---|---:|---:|---:|---:|"]
            lines += [f"| {pair} | {m['tropd']['median_gen_s']:.3f} | {m['tropd']['median_rest_s']:.3f} | "
                      f"{m['trl']['median_gen_s']:.3f} | {m['trl']['median_rest_s']:.3f} |" for pair, m in split.items()]
        ag = res.get("gkd_loss_agreement")
        if ag:
            lines += ["", f"GKD loss at step 0 on one batch ({ag['tokens']} answer tokens, beta "
                      f"{ag['beta']}): TRL {ag['trl']:.6f}, tropd x beta(1-beta) "
                      f"{ag['tropd_scaled']:.6f}, relative difference {ag['rel_diff']:.1e}."]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(_worker(sys.argv[1:]))
