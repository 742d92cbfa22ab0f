"""One synthetic item, the record every domain module (math_task, code_task, instruct_task) draws and
tropd.tiny.synthetic collects: its own module so that the domains and the collector import it, and
not each other."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    domain: str
    prompt: str  # the user message
    answer: str  # the teacher-style completion (also the train.jsonl reference)
    alt: str  # the same item answered in the other style (the student's mismatch share)
    record: dict  # the held-out row in the real benchmark format (ids added when written)
