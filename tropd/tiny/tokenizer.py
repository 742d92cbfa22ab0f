"""The tiny profile's tokenizer: effectively character-level, trained locally with `tokenizers`.

Every character is a token (digits individually, so numbers are spelled digit by digit), except
a run of four spaces, which is one token so that Python indentation costs one token per level.
The chat template renders `<bos>` + the user message + the answer marker `<|answer|>`; the
completion follows and ends with `<eos>`. Nothing is inserted between the user message and the
marker, so for a HumanEval prompt (which ends with a newline) the completion is exactly the body
that continues it.
"""
from __future__ import annotations

import string
from collections.abc import Iterable

PAD, BOS, EOS, UNK, ANSWER = "<pad>", "<bos>", "<eos>", "<unk>", "<|answer|>"
SPECIALS = [PAD, BOS, EOS, UNK, ANSWER]
INDENT = "    "

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}{{ '<|answer|>' + m['content'] + eos_token }}"
    "{% else %}{{ m['content'] }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|answer|>' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str]):
    """A PreTrainedTokenizerFast whose vocabulary is every piece in `texts` plus printable ASCII."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(unk_token=UNK))
    # One piece per character, except an indentation level; printable ASCII is always in the
    # vocabulary so that any model output can be encoded again.
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(f"{INDENT}|[\\s\\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()  # pieces are glued back as they are: no spaces inserted
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1, show_progress=False)
    corpus = [string.printable, INDENT]
    tk.train_from_iterator(_chain(corpus, texts), trainer=trainer)
    bos_id = tk.token_to_id(BOS)
    tk.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos_id)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=[ANSWER], model_max_length=512,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _chain(*parts: Iterable[str]):
    for part in parts:
        yield from part


def encode_pair(tok, prompt_text: str, answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids as the rollout sees them, answer ids + eos): the SFT example of one item."""
    from tropd.models import format_prompt

    p = tok(format_prompt(tok, prompt_text), add_special_tokens=False)["input_ids"]
    a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return p, a
