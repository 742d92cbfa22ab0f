"""Code verdicts do not depend on the machine's load (issue 22: canonical HumanEval+ solutions mixed
with hostile samples once scored 157/164 on a busy machine, 161/164 on quiet reruns).

Real HumanEval+ problems (canonical solutions, plus inputs) mixed with hostile samples are scored
once on a quiet machine; then by two `tropd score` processes at once sharing one verdict cache, and
with every core kept busy by other processes. Verdicts and failure reasons must be the same.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest
import yaml

from tropd.eval.graders import code
from tropd.eval.tasks import benchmarks_root
from tropd.infra.io import read_jsonl

HEP = benchmarks_root() / "humanevalplus" / "HumanEvalPlus.jsonl.gz"
pytestmark = pytest.mark.skipif(not HEP.is_file(), reason="no shared/benchmarks")
IDS = ["HumanEval/0", "HumanEval/4", "HumanEval/12", "HumanEval/13", "HumanEval/35", "HumanEval/53"]
HOSTILE = [("HumanEval/0", "    while True:\n        pass\n"),
           ("HumanEval/4", "    import posix\n    while True:\n        posix.fork()\n"),
           ("HumanEval/12", "    x = bytearray(8 << 30)\n    return None\n")]


def _setup(tmp_path):
    """The slice as the tiny_code task of a throw-away profile, and the samples file."""
    rows = {r["task_id"]: r for r in map(json.loads, gzip.open(HEP, "rt"))}
    (tmp_path / "data" / "code").mkdir(parents=True)
    path = tmp_path / "data" / "code" / "test.jsonl"
    path.write_text("".join(json.dumps(rows[i]) + "\n" for i in IDS))
    cfg = tmp_path / "profile.yaml"
    cfg.write_text(yaml.safe_dump({"profile": "t", "paths": {"data": str(tmp_path / "data")},
                                   "prepare": {"kind": "external"}}))
    samples = [(i, rows[i]["canonical_solution"]) for i in IDS] + HOSTILE
    lines = tmp_path / "samples.jsonl"
    lines.write_text("".join(json.dumps({"id": i, "completion": c}) + "\n" for i, c in samples))
    return path, cfg, samples, lines


def _verdicts(rows):
    return [(r["base"], r["plus"], r["reason"]) for r in rows]


def test_concurrent_scorers_and_a_busy_machine_give_the_quiet_verdicts(tmp_path, monkeypatch):
    path, cfg, samples, lines = _setup(tmp_path)
    monkeypatch.setenv("TROPD_CACHE", str(tmp_path / "quiet"))
    quiet = _verdicts(code.check_evalplus("humaneval", path, samples, cache=False))
    assert quiet[: len(IDS)] == [("pass", "pass", None)] * len(IDS)
    assert [v[2] for v in quiet[len(IDS):]] == ["time_limit", "error", "memory"]

    # two scorers at once, one verdict cache between them
    env = {**os.environ, "TROPD_CACHE": str(tmp_path / "shared"), "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-m", "tropd.cli", "score", "--config", str(cfg), "--task",
                               "tiny_code", "--samples", str(lines), "--out", str(tmp_path / f"s{n}.json")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for n in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
        p.stderr.close()
    for n in range(2):
        assert _verdicts(read_jsonl(tmp_path / f"s{n}.samples.jsonl")) == quiet

    # every core busy with other processes (the limits count CPU time, not wall-clock time)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        monkeypatch.setenv("TROPD_CACHE", str(tmp_path / "busy"))
        loaded = code.check_evalplus("humaneval", path, samples, cache=False)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert _verdicts(loaded) == quiet
    assert all(r["duration_s"] > 0 for r in loaded)
