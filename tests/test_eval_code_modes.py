"""Which program is checked for a code sample, by how it came (evalplus's conventions, issue 22),
and why a sample failed."""
from __future__ import annotations

import json
from types import SimpleNamespace

from test_eval_code import _mini_code_task

from tropd.cli import main
from tropd.eval.graders import code
from tropd.eval.tasks import get_task
from tropd.evaluate import code_mode
from tropd.infra.io import read_jsonl

FENCED = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nIt adds."


def _score(tmp_path, cfg, rows, name, *extra):
    samples = tmp_path / f"{name}.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / f"{name}.json"
    assert main(["score", "--config", str(cfg), "--task", "tiny_code", "--samples", str(samples),
                 "--out", str(out), *extra]) == 0
    return read_jsonl(tmp_path / f"{name}.samples.jsonl")


def test_score_reads_solution_and_completion_fields_as_evalplus(tmp_path, monkeypatch):
    monkeypatch.setenv("TROPD_CACHE", str(tmp_path / "cache"))
    cfg = _mini_code_task(tmp_path)
    rows = [{"id": "Mini/0", "completion": "    return a + b\n"},  # continues the prompt
            {"id": "Mini/0", "solution": "def add(a, b):\n    return a + b\n"},  # a whole program
            {"id": "Mini/0", "solution": "def add(a, b):\n    return a - b\n",
             "completion": "    return a + b\n"},
            {"id": "Mini/0", "completion": FENCED}]  # a chat answer in a completion field
    got = _score(tmp_path, cfg, rows, "plain")
    # a solution wins over a completion; prompt + a chat answer is not Python (evalplus fails it too)
    assert [r["base"] for r in got] == ["pass", "pass", "fail", "fail"]
    assert [(r["reason"], r["error"]) for r in got[2:]] == [("wrong", None), ("error", "SyntaxError")]
    assert got[3]["solution"].startswith('def add(a, b):\n    """Return a plus b."""\nHere you go:')
    # --chat: the answer is sanitized and run whole
    chat = _score(tmp_path, cfg, rows[3:], "chat", "--chat")
    assert chat[0]["base"] == "pass" and chat[0]["solution"] == "def add(a, b):\n    return a + b"
    # a per-sample file scores the same again: each row carries the program that was checked
    again = _score(tmp_path, cfg, chat + got, "again")
    assert [r["base"] for r in again] == ["pass", "pass", "pass", "fail", "fail"]


def test_eval_picks_the_mode_from_how_it_generated():
    chat_tok, base_tok = SimpleNamespace(chat_template="{{ x }}"), SimpleNamespace(chat_template=None)
    assert code_mode(get_task("humanevalplus"), chat_tok) == "chat"
    assert code_mode(get_task("mbppplus"), base_tok) == "continuation"
    assert code_mode(get_task("tiny_code"), chat_tok) == "continuation"  # trained to continue the prompt
    assert code_mode(get_task("gsm8k"), chat_tok) is None


def test_mbpp_failures_say_why():
    ref = {"tests": ["assert f(2) == 4", "assert f(3) == 6"], "setup": ""}
    res = code.check_mbpp([("def f(x):\n    return 2 * x\n", ref), ("def f(x):\n    return x + 2\n", ref),
                           ("def f(x):\n    return y\n", ref)], workers=1)
    assert [(r["status"], r["reason"], r["error"]) for r in res] == [
        ("pass", None, None), ("fail", "wrong", None), ("fail", "error", "NameError")]
    assert all(r["duration_s"] > 0 and not r["rechecked"] for r in res)
