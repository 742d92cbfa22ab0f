"""Shared fixtures: a throw-away profile with random tiny models (seconds, no `tropd prepare`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789+-*=#:?. \n")


def make_tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, **{c: i + 3 for i, c in enumerate(CHARS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    tok.chat_template = "{{ bos_token }}{{ messages[-1]['content'] }}{% if add_generation_prompt %}=\n{% endif %}"
    tok.save_pretrained(path)
    return tok


def build_profile(root: Path, steps: int = 6, method_overrides: dict | None = None) -> Path:
    """Random teacher (bigger) and student + train.jsonl under `root`; returns the profile YAML path."""
    from tropd.models import build_llama

    data, models = root / "data", root / "models"
    data.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"math/{i}", "domain": "math", "prompt": f"{i}+{i % 7}?", "reference": f"{i + i % 7}"}
            for i in range(40)]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, hidden, seed in (("teacher", 32, 1), ("student", 16, 2)):
        tok = make_tokenizer(models / name)
        m = build_llama(len(tok), hidden, 1, heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=0, seed=seed)
        m.save_pretrained(models / name)
    cfg = {
        "profile": "test", "seed": 0,
        "paths": {"data": str(data), "models": str(models), "results": str(root / "results")},
        "prepare": {"kind": "external"},
        "teacher": {"path": str(models / "teacher")}, "student": {"path": str(models / "student")},
        "train": {"steps": steps, "prompts_per_step": 4, "rollouts_per_prompt": 2, "max_new_tokens": 8,
                  "lr": 1e-3, "micro_batch": 4, "topk": 4, "checkpoint_every": 2, "num_threads": 1},
        "eval": {"tasks": [], "max_new_tokens": 8},
    }
    path = root / "profile.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def padded(model, extra: int, scale: float = 20.0, seed: int = 5):
    """A copy of `model` whose output layer has `extra` more rows, large enough to take most of the
    mass where they are kept (real checkpoints pad theirs past the tokenizer: 151,936 / 152,064)."""
    import copy

    m = copy.deepcopy(model)
    rows = m.get_output_embeddings().weight.shape[0]
    m.resize_token_embeddings(rows + extra, mean_resizing=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = m.get_output_embeddings().weight
        w[rows:] = scale * torch.randn(extra, w.shape[1], generator=g)
    return m.eval()


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return build_profile(tmp_path_factory.mktemp("profile"))
