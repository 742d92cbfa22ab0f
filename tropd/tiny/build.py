"""`tropd prepare` for the tiny profile: data, tokenizer, SFT'd teacher and student, a probe.

Outputs (paths from the config):
  <data>/train.jsonl                       {"id", "domain", "prompt", "reference"}
  <data>/{math,code,instruct}/test.jsonl   GSM8K / HumanEval+ / IFEval rows
  <models>/{teacher,student}/              HF folders (model + the shared tokenizer)
  <models>/probe.json                      teacher vs student accuracy and log-prob gap
`prepare.build` splits this for a sweep that shares one teacher between students prepared at several
mismatch levels (configs/sweep.yaml): `teacher` writes the data, the tokenizer and <models>/teacher;
`student` writes <models>/student and <models>/probe.json only, with the tokenizer rebuilt from the
same data and checked against the prepared teacher's (teacher.path), so that students of every level
are the same SFT run (init, batch order, items) but for which answers are in the other style.
Idempotent: a stamp (hash of the prepare section, the seed and GENERATOR_VERSION) is written
last into both folders (the models folder only for `student`; a teacher's stamp leaves out the
student's settings); when it matches and every output exists nothing is done. Everything is
built in temporary folders beside the outputs and moved into place entry by entry, stamp last,
so an interrupted run never leaves a folder that looks prepared.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import tempfile
import time
from pathlib import Path

import torch

from tropd.config import RunConfig
from tropd.errors import ConfigError, UserError
from tropd.infra.io import atomic_write_json, atomic_write_jsonl, move_into, read_jsonl
from tropd.models import build_llama
from tropd.infra.seeding import derive_seed
from tropd.tiny import GENERATOR_VERSION
from tropd.tiny.probe import probe
from tropd.tiny.sft import sft
from tropd.tiny.item import Item
from tropd.tiny.synthetic import generate, held_out_rows, train_rows
from tropd.tiny.tokenizer import encode_pair, train_tokenizer

STAMP = ".prepare-stamp.json"
MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
PROBE_PROMPTS = 32  # training prompts per domain for the log-prob probe


def stamp_of(cfg: RunConfig) -> str:
    """Hash of what the outputs depend on: the prepare section (minus the thread count), the seed
    and the generator version."""
    section = dataclasses.asdict(cfg.prepare)
    section.pop("num_threads", None)
    if section["build"] == "both":
        del section["build"]  # stamps from before the field existed stay valid
    elif section["build"] == "teacher":  # the teacher does not depend on the student's settings
        for key in ("mismatch", "student_hidden", "student_layers", "student_steps"):
            del section[key]
    blob = json.dumps({"prepare": section, "seed": cfg.seed,
                       "version": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def roles(cfg: RunConfig) -> tuple[str, ...]:
    """The models this prepare trains (prepare.build)."""
    b = cfg.prepare.build
    return ("teacher", "student") if b == "both" else (b,)


def stamped_folders(cfg: RunConfig) -> tuple[Path, ...]:
    data, models = cfg.resolve(cfg.paths.data), cfg.resolve(cfg.paths.models)
    return (models,) if cfg.prepare.build == "student" else (data, models)


def expected_outputs(cfg: RunConfig) -> tuple[Path, Path, list[Path]]:
    data, models = cfg.resolve(cfg.paths.data), cfg.resolve(cfg.paths.models)
    files = [] if cfg.prepare.build == "student" else (
        [data / "train.jsonl"] + [data / d / "test.jsonl" for d in cfg.prepare.domains])
    files += [models / role / f for role in roles(cfg) for f in MODEL_FILES]
    return data, models, files


def is_up_to_date(cfg: RunConfig) -> bool:
    data, models, files = expected_outputs(cfg)
    want = stamp_of(cfg)
    for folder in stamped_folders(cfg):
        try:
            if json.loads((folder / STAMP).read_text()).get("stamp") != want:
                return False
        except (OSError, ValueError):
            return False
    return all(f.is_file() for f in files)


def _check(cfg: RunConfig) -> None:
    p = cfg.prepare
    data, models, _ = expected_outputs(cfg)
    if data == models:
        raise ConfigError("paths.data and paths.models must be different folders")
    if not p.domains:
        raise ConfigError("prepare.domains: at least one domain is needed")
    for key in ("n_train", "n_test", "math_weight", "teacher_hidden", "teacher_layers", "student_hidden",
                "student_layers", "sft_batch", "max_len"):
        if getattr(p, key) <= 0:
            raise ConfigError(f"prepare.{key}: must be > 0, got {getattr(p, key)}")
    for key in ("teacher_steps", "student_steps", "num_threads"):  # 0 steps = an untrained model
        if getattr(p, key) < 0:
            raise ConfigError(f"prepare.{key}: must be >= 0, got {getattr(p, key)}")
    for role in ("teacher", "student"):
        if getattr(p, f"{role}_hidden") % 8:
            raise ConfigError(f"prepare.{role}_hidden: must be a multiple of 8 (4 heads, even head size)")


def _tail_mean(losses: list[float], n: int = 20) -> float:
    return sum(losses[-n:]) / len(losses[-n:]) if losses else float("nan")


def _examples(tok, items: list[Item], use_alt: list[bool]) -> list[tuple[list[int], list[int]]]:
    return [encode_pair(tok, it.prompt, it.alt if alt else it.answer) for it, alt in zip(items, use_alt)]


def _train_model(tok, examples, hidden: int, layers: int, steps: int, cfg: RunConfig, role: str):
    p = cfg.prepare
    model = build_llama(len(tok), hidden, layers, heads=4, max_positions=max(128, p.max_len),
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id, seed=derive_seed(cfg.seed, "tiny-init", role))
    losses = sft(model, examples, steps=steps, batch=p.sft_batch, lr=p.sft_lr, seed=cfg.seed,
                 pad_id=tok.pad_token_id, max_len=p.max_len, tag=role)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, losses


def _train_and_save(tok, hidden, layers, steps, examples, cfg, role, models_tmp: Path):
    """SFT one model and save it with the tokenizer under models_tmp/role; returns the loss curve."""
    model, losses = _train_model(tok, examples, hidden, layers, steps, cfg, role)
    model.save_pretrained(models_tmp / role)
    tok.save_pretrained(models_tmp / role)
    return losses


def build(cfg: RunConfig, data_tmp: Path, models_tmp: Path) -> dict:
    """Write every output of the tiny profile under the two temporary folders; returns the probe."""
    p = cfg.prepare
    train: dict[str, list[Item]] = {}
    test: dict[str, list[Item]] = {}
    for d in p.domains:
        train[d], test[d] = generate(d, cfg.seed, p.n_train, p.n_test)
        if p.build != "student":  # a student-only build reads the data its teacher's build wrote
            atomic_write_jsonl(data_tmp / d / "test.jsonl", held_out_rows(d, test[d]))
    if p.build != "student":
        atomic_write_jsonl(data_tmp / "train.jsonl", [r for d in p.domains for r in train_rows(train[d])])

    everything = [it for d in p.domains for it in train[d] + test[d]]
    tok = train_tokenizer(t for it in everything for t in (it.prompt, it.answer, it.alt))
    teacher_dir = cfg.resolve(cfg.teacher.path)
    if p.build == "student":
        from transformers import AutoTokenizer

        if not all((teacher_dir / f).is_file() for f in MODEL_FILES):
            raise UserError(f"prepare.build=student: no prepared teacher at {teacher_dir} (teacher.path); "
                            "run tropd prepare with prepare.build=teacher first")
        if AutoTokenizer.from_pretrained(teacher_dir).get_vocab() != tok.get_vocab():
            raise UserError(f"prepare.build=student: the teacher at {teacher_dir} has another vocabulary "
                            "than these settings build (prepare.n_train, n_test, domains or seed differ)")
    # SFT sees every training item once per epoch, math items `math_weight` times.
    items = [it for d in p.domains for it in train[d] * (p.math_weight if d == "math" else 1)]
    r = random.Random(derive_seed(cfg.seed, "tiny-mismatch"))
    use_alt = [r.random() < p.mismatch for _ in items]
    print(f"tropd prepare: {len(items)} SFT examples, vocabulary {len(tok)}, "
          f"{sum(use_alt)} student answers in the other style (mismatch {p.mismatch})", flush=True)

    jobs = {"teacher": (p.teacher_hidden, p.teacher_layers, p.teacher_steps, _examples(tok, items, [False] * len(items))),
            "student": (p.student_hidden, p.student_layers, p.student_steps, _examples(tok, items, use_alt))}
    jobs = {role: job for role, job in jobs.items() if role in roles(cfg)}
    # One after the other, each with every thread: run side by side with one thread each, the
    # teacher alone took longer than both in a row (measured: 240 s against 228 s).
    losses = {role: _train_and_save(tok, *job, cfg, role, models_tmp) for role, job in jobs.items()}
    from transformers import LlamaForCausalLM

    models = {role: LlamaForCausalLM.from_pretrained(models_tmp / role).eval() for role in jobs}
    if "teacher" not in models:
        models["teacher"] = LlamaForCausalLM.from_pretrained(teacher_dir).eval()
    if "student" not in models:  # a teacher-only build: no probe (each student's build writes one)
        return {"final_sft_loss": {k: _tail_mean(v) for k, v in losses.items()},
                "params": {k: sum(x.numel() for x in m.parameters()) for k, m in models.items()}}
    for role, model in models.items():
        if role not in losses:  # the prepared teacher of a student-only build
            continue
        n_params = sum(x.numel() for x in model.parameters())
        print(f"tropd prepare: {role} {n_params / 1e6:.2f}M parameters, final SFT loss "
              f"{_tail_mean(losses[role]):.3f}", flush=True)

    data_dir = cfg.resolve(cfg.paths.data) if p.build == "student" else data_tmp
    tests = {d: read_jsonl(data_dir / d / "test.jsonl") for d in p.domains}
    report = probe(models["teacher"], models["student"], tok, tests,
                   {d: [it.prompt for it in test[d]] for d in p.domains},
                   {d: [it.prompt for it in train[d][:PROBE_PROMPTS]] for d in p.domains},
                   max_new=cfg.train.max_new_tokens, seed=cfg.seed)
    report["final_sft_loss"] = {k: _tail_mean(v) if v else None for k, v in losses.items()}
    report["params"] = {k: sum(x.numel() for x in m.parameters()) for k, m in models.items()}
    report["mismatch_knob"] = p.mismatch
    atomic_write_json(models_tmp / "probe.json", report)
    return report


def _print_report(report: dict) -> None:
    if "accuracy" not in report:
        print(f"tropd prepare: teacher only, final SFT loss {report['final_sft_loss']}")
        return
    print("tropd prepare: greedy accuracy on the held-out sets (teacher / student)")
    for d, row in report["accuracy"].items():
        print(f"  {d:9s} {row['teacher']:.2f} / {row['student']:.2f}")
    lp = report["teacher_logp"]
    print(f"  teacher log-prob per token of teacher samples {lp['teacher_samples']['mean_teacher_logp']:.3f}, "
          f"of student samples {lp['student_samples']['mean_teacher_logp']:.3f} "
          f"({lp['student_samples']['frac_below_0.01']:.0%} of student tokens below p=0.01)")


def prepare_tiny(cfg: RunConfig) -> int:
    _check(cfg)
    data, models, _ = expected_outputs(cfg)
    stamp = stamp_of(cfg)
    if is_up_to_date(cfg):
        print(f"tropd prepare: {data} and {models} are up to date (stamp {stamp}); nothing to do")
        return 0
    t0 = time.time()
    torch.set_num_threads(cfg.prepare.num_threads or min(2, os.cpu_count() or 1))
    folders = stamped_folders(cfg)
    for folder in (data, models):
        folder.parent.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        (folder / STAMP).unlink(missing_ok=True)  # from here on the old outputs are not "prepared"
    with tempfile.TemporaryDirectory(dir=data.parent, prefix=f".{data.name}.tmp-") as dt, \
            tempfile.TemporaryDirectory(dir=models.parent, prefix=f".{models.name}.tmp-") as mt:
        report = build(cfg, Path(dt), Path(mt))
        record = {"stamp": stamp, "version": GENERATOR_VERSION, "seed": cfg.seed,
                  "prepare": dataclasses.asdict(cfg.prepare)}
        for tmp, final in ((Path(dt), data), (Path(mt), models)):
            if final in folders:
                atomic_write_json(tmp / STAMP, record)
                move_into(tmp, final, last=STAMP)
    _print_report(report)
    print(f"tropd prepare: wrote {data} and {models} in {time.time() - t0:.0f} s")
    return 0
