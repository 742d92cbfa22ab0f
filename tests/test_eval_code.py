"""Code grading through evalplus's checker and MBPP's asserts, every candidate in the sandbox.

Golden checks: canonical solutions pass base and plus, known-wrong ones fail. The default run uses
slices of the real files (written to a temporary file, so evalplus's ground truth is computed for
the slice only, in seconds); the full HumanEval+ / MBPP+ / MBPP runs are marked slow.
A `tropd score` call mixing hostile and honest samples: the hostile ones fail or time out, nothing
outside the sandbox changes, the honest ones are scored right.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from tropd.cli import main
from tropd.eval.graders import code
from tropd.eval.tasks import benchmarks_root
from tropd.infra.io import read_jsonl

HEP = benchmarks_root() / "humanevalplus" / "HumanEvalPlus.jsonl.gz"
MBPPP = benchmarks_root() / "mbppplus" / "MbppPlus.jsonl.gz"
needs_data = pytest.mark.skipif(not HEP.is_file(), reason="no shared/benchmarks")


def _slice(src: Path, ids: list[str], dst: Path) -> Path:
    rows = {r["task_id"]: r for r in map(json.loads, gzip.open(src, "rt"))}
    dst.write_text("".join(json.dumps(rows[i]) + "\n" for i in ids))
    return dst


@needs_data
def test_humanevalplus_canonical_pass_and_wrong_fail(tmp_path):
    ids = ["HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/32", "HumanEval/53", "HumanEval/101"]
    path = _slice(HEP, ids, tmp_path / "he.jsonl")
    probs = code.load_problems("humaneval", path)
    canon = [(i, probs[i]["canonical_solution"]) for i in ids]
    wrong = [("HumanEval/0", "    return False\n"), ("HumanEval/53", "    return x - y\n"),
             ("HumanEval/2", "```python\ndef truncate_number(number: float) -> float:\n    return number\n```")]
    res = code.check_evalplus("humaneval", path, canon + wrong, cache=False)
    # HumanEval/32 (find_zero) included: evalplus 0.3.1 fails even its canonical solution there
    assert [(r["base"], r["plus"]) for r in res[: len(ids)]] == [("pass", "pass")] * len(ids)
    assert [r["base"] for r in res[len(ids):]] == ["fail"] * 3


@needs_data
def test_mbppplus_canonical_pass(tmp_path):
    ids = ["Mbpp/2", "Mbpp/3", "Mbpp/4", "Mbpp/17", "Mbpp/580"]  # 580: inputs deserialised as tuples
    path = _slice(MBPPP, ids, tmp_path / "mbpp.jsonl")
    probs = code.load_problems("mbpp", path)
    res = code.check_evalplus("mbpp", path, [(i, probs[i]["canonical_solution"]) for i in ids]
                              + [("Mbpp/2", "def similar_elements(a, b):\n    return ()\n")], cache=False)
    assert [(r["base"], r["plus"]) for r in res[:-1]] == [("pass", "pass")] * len(ids)
    assert res[-1]["base"] == "fail"


def test_code_extraction():
    chat = "Here:\n```python\nimport math\n\ndef f(x):\n    return x\n```\nand ```\nprint(1)\n```"
    assert code.extract_code(chat, "f").startswith("import math")
    assert code.extract_code("    return 1\n", "f") == "    return 1\n"
    prompt = 'from typing import List\n\n\ndef f(x: List[int]):\n    """doc"""\n'
    body = "    return x\n"
    # evalplus's conventions: a completion continues the prompt, a solution runs as is, a chat answer
    # is sanitized (its code, imports and what f reaches; prose, tests and main blocks dropped) and
    # runs whole, so an answer without the prompt's import keeps none
    assert code.solution_for("completion", "humaneval", prompt, body, "f") == prompt + body
    assert code.solution_for("solution", "humaneval", prompt, "x = 1", "f") == "x = 1"
    answer = "Sure:\n```python\ndef f(x: List[int]):\n    return x\n\nprint(f([1]))\n```\nDone."
    assert code.solution_for("chat", "humaneval", prompt, answer, "f") == "def f(x: List[int]):\n    return x"
    # a base model's continuation is cut where evalplus stops generating, then sanitized with the prompt
    tail = "\n\ndef check():\n    assert 0\n"
    cont = code.solution_for("continuation", "humaneval", prompt, body + tail, "f")
    assert cont.startswith("from typing import List") and cont.endswith("return x") and "check" not in cont


def _mini_code_task(root: Path) -> Path:
    """A 3-problem HumanEval+-format file; `add`'s plus inputs are negative numbers."""
    probs = [
        {"task_id": "Mini/0", "prompt": 'def add(a, b):\n    """Return a plus b."""\n', "entry_point": "add",
         "canonical_solution": "    return a + b\n", "base_input": [[1, 2], [3, 4]],
         "plus_input": [[-1, -2], [0, -5]], "atol": 0, "contract": ""},
        {"task_id": "Mini/1", "prompt": 'def rev(s):\n    """Return s reversed."""\n', "entry_point": "rev",
         "canonical_solution": "    return s[::-1]\n", "base_input": [["ab"], ["xyz"]],
         "plus_input": [[""], ["a"]], "atol": 0, "contract": ""},
        {"task_id": "Mini/2", "prompt": 'def half(x):\n    """Return x / 2."""\n', "entry_point": "half",
         "canonical_solution": "    return x / 2\n", "base_input": [[1.0], [3.0]],
         "plus_input": [[0.1], [1e-9]], "atol": 1e-6, "contract": ""},
    ]
    data = root / "data"
    (data / "code").mkdir(parents=True)
    (data / "code" / "test.jsonl").write_text("".join(json.dumps(p) + "\n" for p in probs))
    cfg = root / "profile.yaml"
    cfg.write_text(yaml.safe_dump({"profile": "t", "paths": {"data": str(data)}, "prepare": {"kind": "external"}}))
    return cfg


def test_score_mixes_hostile_and_honest_samples(tmp_path):
    """One `tropd score` call; hostile bodies bypass evalplus's own guard (via `posix`), so what
    stops them is the sandbox."""
    cfg = _mini_code_task(tmp_path)
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep.txt").write_text("alive")
    outside = tmp_path / "outside.txt"
    hostile = [
        f"    import posix\n    posix.unlink({str(canary / 'keep.txt')!r})\n    posix.rmdir({str(canary)!r})\n"
        "    return a + b\n",
        f"    import posix\n    fd = posix.open({str(outside)!r}, posix.O_WRONLY | posix.O_CREAT)\n"
        "    posix.write(fd, b'x')\n    return a + b\n",
        "    import posix\n    while True:\n        posix.fork()\n",
        "    while True:\n        pass\n",
        "    x = bytearray(8 << 30)\n    return a + b\n",
        "    import posix\n    posix.kill(posix.getppid(), 9)\n    return a + b\n",
        "    import socket\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n    return a + b\n",
    ]
    lines = [{"id": "Mini/0", "completion": h} for h in hostile]
    lines += [{"id": "Mini/0", "completion": "    return a + b\n"},
              {"id": "Mini/0", "completion": "    return abs(a) + abs(b)\n"},  # passes base only
              {"id": "Mini/1", "completion": "    return s[::-1]\n"},
              {"id": "Mini/2", "solution": "def half(x):\n    return x * 0.5\n"}]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "score.json"
    assert main(["score", "--config", str(cfg), "--task", "tiny_code", "--samples", str(samples),
                 "--out", str(out)]) == 0
    rows = read_jsonl(tmp_path / "score.samples.jsonl")
    n = len(hostile)
    assert all(r["base"] in ("fail", "timeout") for r in rows[:n]), rows[:n]
    assert [(r["base"], r["plus"]) for r in rows[n:]] == [("pass", "pass"), ("pass", "fail"),
                                                         ("pass", "pass"), ("pass", "pass")]
    assert (canary / "keep.txt").read_text() == "alive" and not outside.exists()
    summary = json.loads(out.read_text())
    m = summary["metrics"]
    # Mini/0: 1 of 9 samples passes plus, 2 of 9 base; Mini/1 and Mini/2 pass
    assert m["plus_pass@1"]["mean"] == pytest.approx((1 / 9 + 1 + 1) / 3)
    assert m["base_pass@1"]["mean"] == pytest.approx((2 / 9 + 1 + 1) / 3)
    assert summary["n_items"] == 3 and summary["n_samples"] == n + 4 and summary["decoding"]["k"] == 1


def _score_canonical(task: str, data: Path, tmp_path: Path, monkeypatch) -> list[dict]:
    """`tropd score` on every canonical solution of an evalplus file; the per-sample rows."""
    # evalplus's limits are 4x the canonical wall time; a busy shared 2-core box needs more
    monkeypatch.setenv("TROPD_EVALPLUS_TIME_FACTOR", "12")
    monkeypatch.setenv("TROPD_CACHE", str(tmp_path / "cache"))  # every program really runs
    samples = tmp_path / f"{task}.jsonl"
    samples.write_text("".join(json.dumps({"id": r["task_id"], "completion": r["canonical_solution"]}) + "\n"
                               for r in map(json.loads, gzip.open(data, "rt"))))
    out = tmp_path / f"{task}.json"
    assert main(["score", "--task", task, "--samples", str(samples), "--out", str(out)]) == 0
    return read_jsonl(tmp_path / f"{task}.samples.jsonl")


@needs_data
@pytest.mark.slow
def test_full_humanevalplus_canonical_164(tmp_path, monkeypatch):
    rows = _score_canonical("humanevalplus", HEP, tmp_path, monkeypatch)
    assert len(rows) == 164 and all(r["base"] == "pass" and r["plus"] == "pass" for r in rows), \
        [r["id"] for r in rows if r["plus"] != "pass"]


@needs_data
@pytest.mark.slow
def test_full_mbppplus_and_mbpp_canonical(tmp_path, monkeypatch):
    # MBPP+: evalplus itself times out on Mbpp/599's plus inputs on a slow or busy machine (its
    # canonical solution needs about 80 s there, the per-task cap is 60 s); allow that one only.
    bad = [r["id"] for r in _score_canonical("mbppplus", MBPPP, tmp_path, monkeypatch) if r["plus"] != "pass"]
    assert set(bad) <= {"Mbpp/599"}, bad
    mbpp = benchmarks_root() / "mbpp" / "sanitized-mbpp.jsonl"
    samples = tmp_path / "mbpp.jsonl"
    samples.write_text("".join(json.dumps({"id": r["task_id"], "completion": r["code"]}) + "\n"
                               for r in read_jsonl(mbpp)))
    assert main(["score", "--task", "mbpp", "--samples", str(samples), "--out", str(tmp_path / "m.json")]) == 0
    bad = [r["id"] for r in read_jsonl(tmp_path / "m.samples.jsonl") if r["status"] != "pass"]
    assert len(bad) <= 2, bad


def test_time_limited_verdicts_are_not_cached(tmp_path, monkeypatch):
    """evalplus's per-input limits are wall-clock, so a fail that reached one (raised, or swallowed by
    the program) may be the machine's load: it is checked again, while clean verdicts are cached."""
    monkeypatch.setenv("TROPD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TROPD_EVALPLUS_MIN_TIME", "0.3")  # keeps the looping programs short
    path = _mini_code_task(tmp_path).parent / "data" / "code" / "test.jsonl"
    swallow = "    try:\n        while True:\n            pass\n    except BaseException:\n        return 0\n"
    samples = [("Mini/0", "    return a + b\n"), ("Mini/0", "    return a - b\n"),
               ("Mini/0", "    while True:\n        pass\n"), ("Mini/0", swallow)]
    res = code.check_evalplus("humaneval", path, samples)
    assert [r["base"] for r in res] == ["pass", "fail", "fail", "fail"]
    cached = list((tmp_path / "cache" / "verdicts").rglob("*.json"))
    assert len(cached) == 2, cached  # the right and the wrong program, not the two slow ones
    again = code.check_evalplus("humaneval", path, samples)
    drop = ("duration_s",)  # the verdicts are the same; the time taken is not
    assert [{k: v for k, v in r.items() if k not in drop} for r in again] == \
        [{k: v for k, v in r.items() if k not in drop} for r in res]
    # why each failed: a wrong answer, and a time limit for both loops (the swallowed one included)
    assert [r["reason"] for r in res] == [None, "wrong", "time_limit", "time_limit"]
    assert res[2]["rechecked"] and res[3]["rechecked"] and not res[1]["rechecked"]


def test_verdict_key_covers_the_checker_versions(monkeypatch):
    import evalplus

    job = {"kind": "evalplus", "code": "def f(): pass", "phases": []}
    keys = {code._verdict_key(job)}
    monkeypatch.setattr(code, "GRADER_VERSION", code.GRADER_VERSION + 1)
    keys.add(code._verdict_key(job))
    monkeypatch.setattr(evalplus, "__version__", "0.0.0-other")
    keys.add(code._verdict_key(job))
    assert len(keys) == 3


def test_sandbox_errors_are_counted_and_a_dead_sandbox_is_an_error(tmp_path, monkeypatch, capsys):
    from tropd.eval import sandbox

    cfg = _mini_code_task(tmp_path)
    monkeypatch.setenv("TROPD_CACHE", str(tmp_path / "cache"))
    lines = [{"id": "Mini/0", "completion": "    return a + b\n"},
             {"id": "Mini/0", "completion": "    import posix\n    posix._exit(0)\n"},  # no verdict
             {"id": "Mini/1", "completion": "    return s[::-1]\n"},
             {"id": "Mini/2", "completion": "    return x / 2\n"}]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "score.json"
    argv = ["score", "--config", str(cfg), "--task", "tiny_code", "--samples", str(samples),
            "--out", str(out)]
    assert main(argv) == 0
    m = json.loads(out.read_text())["metrics"]
    assert (m["sandbox_errors"]["count"], m["sandbox_errors"]["of"]) == (1, 4)
    rows = read_jsonl(tmp_path / "score.samples.jsonl")
    assert [bool(r["sandbox_error"]) for r in rows] == [False, True, False, False]
    assert rows[1]["base"] == "fail" and rows[1]["sandbox_error"].startswith("crash")
    # a sandbox that cannot start runs nothing: an error naming the task, not 0% pass
    monkeypatch.setenv("TROPD_CACHE", str(tmp_path / "cache2"))  # no cached verdicts to fall back on
    monkeypatch.setattr(sandbox, "CHILD", tmp_path / "missing_child.py")
    out.unlink()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "tiny_code" in err and "ran none of its 4 checks" in err and "crash" in err and "\n" not in err
    assert not out.exists()
