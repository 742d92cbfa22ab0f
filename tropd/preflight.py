"""`tropd preflight`: can this teacher supervise this student, token for token?

Checks, each failing with a one-line reason before any training compute:
1. the tokenizers share the vocabulary (same token -> id map), the special tokens and the chat
   template (per-token log-probs are only comparable over one vocabulary);
2. both output layers cover the tokenizer; where one is padded past the other, the extra rows are
   cut from its logits (tropd.models.shared_vocab) and the report says how many;
3. the scoring path is consistent: the student scored as its own teacher gives a sampled reverse
   KL of 0 (to float tolerance) on the student's own samples.
It also reports the teacher-student sampled reverse KL, a first look at the mismatch.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from tropd.config import RunConfig, config_hash, load_config
from tropd.data import load_prompts
from tropd.errors import UserError
from tropd.infra.io import atomic_write_json
from tropd.models import check_profile_models, load_model, load_tokenizer, output_rows, shared_vocab
from tropd.rollout import collect, make_backend
from tropd.rollout.policies import Student
from tropd.scoring import student_forward, teacher_score


def check_tokenizers(t_tok, s_tok) -> None:
    tv, sv = t_tok.get_vocab(), s_tok.get_vocab()
    if tv != sv:
        only_t = len(set(tv) - set(sv))
        only_s = len(set(sv) - set(tv))
        moved = sum(1 for k in set(tv) & set(sv) if tv[k] != sv[k])
        raise UserError(f"teacher and student vocabularies differ ({len(tv)} vs {len(sv)} tokens; "
                        f"{only_t} only in teacher, {only_s} only in student, {moved} with other ids)")
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(t_tok, name) != getattr(s_tok, name):
            raise UserError(f"teacher and student differ in {name}: "
                            f"{getattr(t_tok, name)} vs {getattr(s_tok, name)}")
    if (t_tok.chat_template or "") != (s_tok.chat_template or ""):
        raise UserError("teacher and student chat templates differ")


def preflight(cfg: RunConfig, n_prompts: int = 4) -> dict:
    t0 = time.time()
    check_profile_models(cfg)
    t_tok, s_tok = load_tokenizer(cfg.teacher), load_tokenizer(cfg.student)
    check_tokenizers(t_tok, s_tok)
    teacher = load_model(cfg.teacher, "teacher")
    student = load_model(cfg.student, "student")
    vocab = shared_vocab(teacher, student, s_tok)
    prompts = load_prompts(cfg, s_tok)
    idx = prompts.indices(0, n_prompts)
    backend = make_backend("hf", student, teacher, s_tok, vocab)
    tc = cfg.train
    batch = collect(Student(), backend, [prompts.prompt_tokens[i] for i in idx],
                    [prompts.reference_tokens[i] for i in idx], 2, step=0, total_steps=1,
                    seed=cfg.seed, max_new_tokens=tc.max_new_tokens, temperature=tc.temperature,
                    top_p=tc.top_p, pad_id=s_tok.pad_token_id)
    batch = batch.to(next(student.parameters()).device)
    m = batch.response_mask_BT
    with torch.no_grad():
        self_t = teacher_score(student, batch, tc.topk, tc.chunk_size, vocab=vocab)
        self_s = student_forward(student, batch, self_t["teacher_topk_ids_BTK"], tc.chunk_size, vocab=vocab)
        real_t = teacher_score(teacher, batch, tc.topk, tc.chunk_size, vocab=vocab)
    self_kl = float(((self_s["logp_BT"] - self_t["teacher_logp_BT"]).abs() * m).max())
    topk_gap = float((self_s["student_topk_logp_BTK"] - self_t["teacher_topk_logp_BTK"]).abs().max())
    if self_kl > 1e-4 or topk_gap > 1e-4:
        raise UserError(f"student scored as its own teacher gives KL {self_kl:.2e} (top-k gap "
                        f"{topk_gap:.2e}); the scoring path is inconsistent")
    rkl = float(((self_s["logp_BT"] - real_t["teacher_logp_BT"]) * m).sum() / m.sum().clamp_min(1))
    low = float(((real_t["teacher_logp_BT"] < torch.log(torch.tensor(0.01))) & m).sum() / m.sum().clamp_min(1))
    return {
        "ok": True, "vocab_size": len(s_tok),
        "output_rows": {"teacher": output_rows(teacher), "student": output_rows(student)},
        "rows_compared": vocab, "self_kl_max_abs": self_kl, "self_topk_gap": topk_gap,
        "teacher_student_rkl": rkl, "frac_student_tokens_teacher_prob_below_0.01": low,
        "config_hash": config_hash(cfg), "wall_s": time.time() - t0,
    }


def preflight_main(args) -> int:
    cfg = load_config(args.config, overrides=args.overrides)
    report = preflight(cfg)
    if args.out:
        atomic_write_json(Path(args.out), report)
    rows = report["output_rows"]
    cut = "" if rows["teacher"] == rows["student"] else (
        f" (output layers {rows['teacher']} / {rows['student']} rows: compared over the first "
        f"{report['rows_compared']})")
    print(f"preflight ok: vocab {report['vocab_size']}{cut}, self-KL {report['self_kl_max_abs']:.1e}, "
          f"teacher-student sampled RKL {report['teacher_student_rkl']:.3f}, "
          f"{100 * report['frac_student_tokens_teacher_prob_below_0.01']:.1f}% of student tokens "
          f"have teacher prob < 0.01")
    return 0
