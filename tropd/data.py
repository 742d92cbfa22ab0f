"""Training prompts: `<paths.data>/train.jsonl` rows {"id", "domain", "prompt", "reference"}.

The order is a seeded permutation per epoch, so the prompts of step s are a pure function of
(seed, s): the data position needs no state beyond the step number.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tropd.config import RunConfig
from tropd.errors import UserError
from tropd.infra.io import read_jsonl
from tropd.models import format_prompt
from tropd.infra.seeding import generator


class _Lazy:
    """Token ids of row i, computed on first use: a run reads a few hundred of the file's prompts,
    and templating + tokenizing all of them cost seconds per run on the tiny profile."""

    def __init__(self, encode, texts: list[str]):
        self._encode, self._texts, self._cache = encode, texts, {}

    def __getitem__(self, i: int) -> list[int]:
        if i not in self._cache:
            self._cache[i] = self._encode(self._texts[i])
        return self._cache[i]


@dataclass
class PromptSet:
    ids: list[str]
    prompt_tokens: _Lazy  # prompt_tokens[i]: chat-formatted prompt ids of row i
    reference_tokens: _Lazy  # reference_tokens[i]: reference answer ids + EOS
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
                        f"(run `tropd prepare --config {getattr(cfg, 'source', None) or '<profile yaml>'}`)")
    rows = read_jsonl(path)
    for i, r in enumerate(rows, 1):
        for key in ("id", "prompt"):
            if key not in r:
                raise UserError(f"{path}:{i}: missing field '{key}'")
    if cfg.train.prompt_domains:
        missing = sorted(set(cfg.train.prompt_domains) - {r.get("domain") for r in rows})
        if missing:
            raise UserError(f"train.prompt_domains: {missing} not among the domains of {path}")
        rows = [r for r in rows if r.get("domain") in cfg.train.prompt_domains]
    if not rows:
        raise UserError(f"{path}: no training prompts (train.prompt_domains={cfg.train.prompt_domains})")
    templated = bool(getattr(tok, "chat_template", None))
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    prompts = _Lazy(lambda text: tok(format_prompt(tok, text), add_special_tokens=not templated)["input_ids"],
                    [r["prompt"] for r in rows])
    refs = _Lazy(lambda text: tok(text, add_special_tokens=False)["input_ids"] + eos,
                 [r.get("reference", "") for r in rows])
    return PromptSet([r["id"] for r in rows], prompts, refs, cfg.seed)
