"""Learning curves: greedy held-out evaluation every `train.eval_every` steps of a training run."""
from __future__ import annotations

import time

from tropd.config import RunConfig
from tropd.errors import UserError


class HeldOut:
    """Greedy held-out evaluation during training (train.eval_every): learning curves. The items are
    loaded once; each evaluation generates with the current student (tropd.eval.generate, which
    draws no random numbers at temperature 0 and restores train mode) and grades with the task's
    grader, as `tropd eval` does."""

    def __init__(self, cfg: RunConfig, tok):
        from tropd.eval.tasks import get_task, load_items

        tc = cfg.train
        self.every, self.cfg, self.tok = tc.eval_every, cfg, tok
        names = tc.eval_tasks or cfg.eval.tasks
        limit = tc.eval_limit or cfg.eval.limit
        self.tasks = [(t, load_items(t, cfg, limit)) for t in (get_task(n) for n in names)]
        generated = [t.name for t, _ in self.tasks if t.grader == "mmlu"]
        if generated:
            raise UserError(f"train.eval_tasks: {generated} are log-likelihood tasks; learning curves "
                            "use generated tasks")

    @classmethod
    def maybe(cls, cfg: RunConfig, tok, world) -> HeldOut | None:
        if not cfg.train.eval_every:
            return None
        if world.size > 1:
            raise UserError("train.eval_every: learning curves are evaluated in one process; set it to 0 "
                            "under accelerate with several processes")
        return cls(cfg, tok)

    def at(self, step: int, total: int, model) -> dict[str, float]:
        """{"heldout_<task>": score, "heldout_avg": mean, "time_eval": s} after 0-based `step`, or {}."""
        if (step + 1) % self.every and step + 1 < total:
            return {}
        from tropd.eval.generate import generate
        from tropd.eval.graders import grade, summarize

        t0 = time.perf_counter()
        e = self.cfg.eval
        out = {}
        for task, items in self.tasks:
            ids = [it.id for it in items]
            gens = generate(model, self.tok, [it.prompt for it in items], 1, 0.0, e.max_new_tokens, 0,
                            task.name, ids, e.batch_size)
            samples = [(g.item, g.text) for g in gens]
            per_item = [[r] for r in grade(task, items, samples)]
            out[f"heldout_{task.name}"] = float(summarize(task, per_item)[task.primary]["mean"])
        out["heldout_avg"] = sum(out.values()) / len(out)
        out["time_eval"] = time.perf_counter() - t0
        return out
