"""Overhead of one harness training step over the raw operations it is made of.

harness step (the body of `tropd.train`'s loop, minus logging and checkpoints):
    collect(Student(), HFBackend) -> per micro-batch: teacher_score -> student_forward ->
    method.fn -> reduce_loss -> accelerator.backward; then clip_grad_norm_, optimizer and
    scheduler step, zero_grad (accelerate-prepared student / optimizer / scheduler, as train.py).
raw step, same prompts and the same batch:
    student.generate(do_sample=True) for exactly as many new tokens, a teacher forward on the
    harness's batch, a student forward + backward with a plain masked cross-entropy on it, AdamW step.

Both variants run in turn every round (harness, then raw on the batch the harness just sampled);
each has its own copy of the student and its own optimizer, starting from the same weights. EOS is
disabled on both sides so that every row writes exactly `max_new` tokens.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tropd.benchlib.common import interleaved, median, ratio_stats


@dataclass
class StepShape:
    vocab: int = 128  # about the tiny profile's word-level vocabulary
    teacher_hidden: int = 128
    teacher_layers: int = 2
    student_hidden: int = 96
    student_layers: int = 2
    prompts: int = 16  # tiny profile: 16 prompts x 4 rollouts, 48 new tokens, top-k 8
    rollouts: int = 4
    max_new: int = 48
    topk: int = 8
    chunk: int = 256
    micro_batch: int = 64


def random_prompts(n: int, vocab: int, seed: int = 0, lo: int = 8, hi: int = 20) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]


def left_pad(prompts: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), both (N, P), prompts right-aligned as generate expects."""
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    att = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p)
        att[i, P - len(p):] = 1
    return ids, att


def generate_raw(model, ids: torch.Tensor, att: torch.Tensor, max_new: int) -> torch.Tensor:
    """`model.generate` sampling exactly `max_new` tokens per row (no EOS, no top-k / top-p filter)."""
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=att, do_sample=True, max_new_tokens=max_new,
                             min_new_tokens=max_new, eos_token_id=None, pad_token_id=0, top_k=0,
                             top_p=1.0, temperature=1.0)
    assert out.shape[1] == ids.shape[1] + max_new, out.shape
    return out


class StepBench:
    """A teacher/student pair, prompts, and the two step variants as zero-argument callables."""

    def __init__(self, shape: StepShape, method: str = "opd", method_params: dict | None = None):
        from accelerate import Accelerator

        from tropd.config import TrainConfig
        from tropd.models import build_llama
        from tropd.catalog import get_method
        from tropd.rollout.hf import HFBackend
        from tropd.runstate import make_optimizer

        self.shape = sh = shape
        self.teacher = build_llama(sh.vocab, sh.teacher_hidden, sh.teacher_layers, pad_token_id=0, seed=1)
        self.teacher.eval().requires_grad_(False)
        student = build_llama(sh.vocab, sh.student_hidden, sh.student_layers, pad_token_id=0, seed=2)
        self.student_raw = copy.deepcopy(student).train()
        self.tc = TrainConfig(steps=1000, prompts_per_step=sh.prompts, rollouts_per_prompt=sh.rollouts,
                              max_new_tokens=sh.max_new, micro_batch=sh.micro_batch, chunk_size=sh.chunk,
                              topk=sh.topk)
        self.method = get_method(method)
        self.params = self.method.parse_params(method_params or {})
        self.acc = Accelerator(cpu=True)
        opt, sched = make_optimizer(student.train(), self.tc)
        self.student, self.opt, self.sched = self.acc.prepare(student, opt, sched)
        self.backend = HFBackend(self.acc.unwrap_model(self.student), self.teacher, set(), 0)
        self.opt_raw = torch.optim.AdamW(self.student_raw.parameters(), lr=self.tc.lr)
        self.prompts = random_prompts(sh.prompts, sh.vocab)
        self.ids, self.att = left_pad([p for p in self.prompts for _ in range(sh.rollouts)])
        self.batch = None
        self.step_i = 0
        self.phases: dict[str, dict[str, list[float]]] = {}

    def harness(self) -> None:
        from tropd.reduce import reduce_loss, step_denominator
        from tropd.registry import StepContext, TokenStats
        from tropd.rollout import collect
        from tropd.scoring import student_forward, teacher_score

        tc, m = self.tc, self.method
        t0 = time.perf_counter()
        batch = collect(m.behaviour(self.params), self.backend, self.prompts, [[1]] * len(self.prompts),
                        tc.rollouts_per_prompt, step=self.step_i, total_steps=tc.steps, seed=0,
                        max_new_tokens=tc.max_new_tokens, temperature=tc.temperature, top_p=tc.top_p,
                        pad_id=0)
        t1 = time.perf_counter()
        denom = step_denominator(batch.response_mask_BT, tc.loss_norm)
        full = m.scores.full_logits
        for mb in range(0, batch.size, tc.micro_batch):
            micro = batch.select(slice(mb, mb + tc.micro_batch))
            scored = teacher_score(self.teacher, micro, tc.topk, tc.chunk_size, full)
            stud = student_forward(self.student, micro, scored["teacher_topk_ids_BTK"], tc.chunk_size, full)
            s = TokenStats(mask_BT=micro.response_mask_BT, from_teacher_BT=micro.from_teacher_BT,
                           behav_logp_BT=micro.behav_logp_BT, **scored, **stud)
            res = m.fn(s, self.params, StepContext(self.step_i, tc.steps, micro.row_seeds(0, self.step_i)))
            self.acc.backward(reduce_loss(res.loss_BT, s.mask_BT, tc.loss_norm, denom))
        t2 = time.perf_counter()
        self.acc.clip_grad_norm_(self.student.parameters(), tc.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self._phase("harness", rollout=t1 - t0, score_fwd_bwd=t2 - t1, optim=time.perf_counter() - t2)
        self.batch = batch
        self.step_i += 1

    def _phase(self, variant: str, **secs: float) -> None:
        for k, v in secs.items():
            self.phases.setdefault(variant, {}).setdefault(k, []).append(v)

    def raw(self) -> None:
        t0 = time.perf_counter()
        generate_raw(self.student_raw, self.ids, self.att, self.shape.max_new)
        t1 = time.perf_counter()
        b = self.batch
        P, T = b.prompt_width, b.response_width
        kw = {"input_ids": b.input_ids_BL, "attention_mask": b.attention_mask_BL,
              "position_ids": b.position_ids_BL()}
        with torch.no_grad():
            self.teacher(**kw).logits
        logits = self.student_raw(**kw).logits[:, P - 1 : P - 1 + T]
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b.input_ids_BL[:, P:].reshape(-1),
                              reduction="none")
        m = b.response_mask_BT.reshape(-1).float()
        ((nll * m).sum() / m.sum()).backward()
        t2 = time.perf_counter()
        self.opt_raw.step()
        self.opt_raw.zero_grad(set_to_none=True)
        self._phase("raw", rollout=t1 - t0, score_fwd_bwd=t2 - t1, optim=time.perf_counter() - t2)


def run(shape: StepShape, repeats: int, method: str = "opd", method_params: dict | None = None,
        progress=None) -> dict:
    """Median times and the paired ratio harness / raw over `repeats` interleaved rounds."""
    torch.manual_seed(0)
    sb = StepBench(shape, method, method_params)
    sb.harness()  # first batch for the raw step, and a warm-up
    sb.phases.clear()
    t = interleaved({"harness": sb.harness, "raw": sb.raw}, repeats, warmup=1, progress=progress)
    phases = {v: {k: median(xs[-repeats:]) for k, xs in d.items()} for v, d in sb.phases.items()}
    return {"phases_s": phases, "method": method, "method_params": method_params or {}, "shape": vars(shape),
            "harness_s": median(t["harness"]), "raw_s": median(t["raw"]),
            "ratio": ratio_stats(t["harness"], t["raw"]), "times": t}
