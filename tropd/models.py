"""Model and tokenizer loading: HF folders, GGUF files (through transformers), Llama from a config.

Everything is a transformers model; nothing here defines a model class. Prompts are formatted with
the tokenizer's chat template, so teacher and student must share it (`tropd preflight` checks).
"""
from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import torch

from tropd.config import ModelSpec, REPO_ROOT
from tropd.errors import UserError

# Never reach a hub at run time: every model is a local folder or an already-cached id.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:  # weight-loading bars are noise in logs; training has its own progress bar
    from transformers.utils import logging as _hf_logging

    _hf_logging.disable_progress_bar()
except ImportError:  # pragma: no cover
    pass

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def local_path(path: str) -> str:
    """A repository-relative folder if it exists there; otherwise the path (or hub id) as given."""
    p = Path(path)
    if not p.is_absolute() and (REPO_ROOT / p).exists():
        return str(REPO_ROOT / p)
    return path


# A Hugging Face hub id is `name` or `namespace/name`; a path with more parts is a folder.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def check_exists(spec: ModelSpec, role: str, hint: str = "run `tropd prepare` first") -> None:
    """Fail early, in one line naming the role, the path and `hint`, where a model cannot load offline:
    a folder that is not there, or a hub id that is not in the local HF cache (runs never download).
    A path with a slash more than `namespace/name`, or one starting with `.` or `/`, is a folder."""
    if not spec.path:
        raise UserError(f"{role}.path is empty")
    path = local_path(spec.path)
    if Path(path).exists():
        if spec.gguf_file and not (Path(path) / spec.gguf_file).is_file():
            raise UserError(f"{role}.gguf_file not found: {Path(path) / spec.gguf_file}")
        return
    if spec.path.startswith((".", "/")) or not _HUB_ID.fullmatch(spec.path):
        raise UserError(f"{role}: model not found at {spec.path} ({hint})")
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(spec.path, spec.gguf_file or "config.json"), str):
        raise UserError(f"{role}: model not found at {spec.path}: no such folder, nor in the local Hugging Face "
                        f"cache (runs are offline; {hint})")


def check_profile_models(cfg) -> None:
    """The teacher and student of a profile, checked before anything loads, with the way to get them:
    `tropd prepare` for the profiles it builds, a download for external ones (docs/scale.md)."""
    from tropd.config import ExternalPrepare

    source = getattr(cfg, "source", None) or "<profile yaml>"
    for spec, role in ((cfg.teacher, "teacher"), (cfg.student, "student")):
        hint = (f"download it and set {role}.path, see docs/scale.md" if isinstance(cfg.prepare, ExternalPrepare)
                else f"profile '{cfg.profile}' is not prepared: run `tropd prepare --config {source}`")
        check_exists(spec, role, hint)


def load_tokenizer(spec: ModelSpec):
    from transformers import AutoTokenizer

    kw = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    tok = AutoTokenizer.from_pretrained(local_path(spec.path), **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: ModelSpec, role: str = "model", trainable: bool = False, device=None):
    """An HF causal LM from a folder, hub id or GGUF file, in the spec's dtype, on its device.

    `device` is where `device: auto` goes (a data-parallel process's own GPU); an explicit
    `<role>.device` wins."""
    from transformers import AutoModelForCausalLM

    check_exists(spec, role)
    kw = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(local_path(spec.path), dtype=DTYPES[spec.dtype], **kw)
    auto = device is not None and spec.device == "auto"
    model.to(torch.device(device) if auto else resolve_device(spec.device))
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)
    return model


def cache_kw(model: torch.nn.Module) -> str:
    """The forward's KV-cache argument: recent transformers (5.24 here) call it `cache` and remove the
    older `past_key_values` in 5.40; the project supports transformers from 4.51, which knows only that."""
    lm = model.lm if hasattr(model, "gathered") else model  # tropd.infra.fsdp.Root passes keywords to its LM
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def output_rows(model) -> int:
    """Rows of the model's output layer (its logits' last dimension)."""
    return int(model.get_output_embeddings().weight.shape[0])


def shared_vocab(teacher, student, tok) -> int:
    """How many logit rows teacher and student are compared over: the smaller output layer.

    Output layers are often padded past the tokenizer (DeepSeek-R1-Distill-Qwen-1.5B has 151,936
    rows, Skywork-OR1-Math-7B 152,064, for the same 151,665 tokens), and the scorer compares the two
    distributions row for row. Rows past the smaller layer stand for no token, so both models'
    logits are cut to the shared rows and renormalised there: a no-op for the smaller model, whose
    behaviour log-probs then stay those it samples with, and a change of the larger one's
    normaliser by the mass it puts on padding. Rows that the tokenizer uses are never cut."""
    rows = {"teacher": output_rows(teacher), "student": output_rows(student)}
    role = min(rows, key=rows.get)
    if rows[role] < len(tok):
        raise UserError(f"the {role}'s output layer has {rows[role]} rows but the tokenizer has "
                        f"{len(tok)} tokens: its logits cannot score every token")
    return rows[role]


def build_llama(vocab_size: int, hidden: int, layers: int, heads: int = 4, ffn_mult: int = 4,
                max_positions: int = 512, bos_token_id: int | None = None,
                eos_token_id: int | None = None, pad_token_id: int | None = None, seed: int = 0):
    """A Llama-architecture transformers model built from a config (random init, seeded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=ffn_mult * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max_positions, bos_token_id=bos_token_id,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def format_prompt(tok, text: str) -> str:
    """The user message rendered with the tokenizer's chat template (generation prompt added)."""
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text
