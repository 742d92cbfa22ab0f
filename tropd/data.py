"""Training prompts: `<paths.data>/train.jsonl` rows {"id", "domain", "prompt", "reference"}.

The order is a seeded permutation per epoch, so the prompts of step s are a pure function of
(seed, s): the data position needs no state beyond the step number.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tropd.config import RunConfig
from tropd.errors import UserError
from tropd.io import read_jsonl
from tropd.models import format_prompt
from tropd.seeding import generator


@dataclass
class PromptSet:
    ids: list[str]
    prompt_tokens: list[list[int]]
    reference_tokens: list[list[int]]
    seed: int

    def __len__(self) -> int:
        return len(self.ids)

    def indices(self, step: int, per_step: int) -> list[int]:
        """Prompt indices of `step`: a window into the concatenation of seeded epoch permutations."""
        n = len(self.ids)
        start, out = step * per_step, []
        for pos in range(start, start + per_step):
            epoch, off = divmod(pos, n)
            perm = torch.randperm(n, generator=generator(self.seed, "data", epoch))
            out.append(int(perm[off]))
        return out


def train_file(cfg: RunConfig):
    return cfg.resolve(cfg.paths.data) / "train.jsonl"


def load_prompts(cfg: RunConfig, tok) -> PromptSet:
    path = train_file(cfg)
    if not path.is_file():
        raise UserError(f"profile '{cfg.profile}' is not prepared: {path} is missing "
                        f"(run `tropd prepare --config <profile yaml>`)")
    rows = read_jsonl(path)
    for i, r in enumerate(rows, 1):
        for key in ("id", "prompt"):
            if key not in r:
                raise UserError(f"{path}:{i}: missing field '{key}'")
    if cfg.train.prompt_domains:
        rows = [r for r in rows if r.get("domain") in cfg.train.prompt_domains]
    if not rows:
        raise UserError(f"{path}: no training prompts (train.prompt_domains={cfg.train.prompt_domains})")
    templated = bool(getattr(tok, "chat_template", None))
    prompts = [tok(format_prompt(tok, r["prompt"]), add_special_tokens=not templated)["input_ids"]
               for r in rows]
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    refs = [tok(r.get("reference", ""), add_special_tokens=False)["input_ids"] + eos for r in rows]
    return PromptSet([r["id"] for r in rows], prompts, refs, cfg.seed)
