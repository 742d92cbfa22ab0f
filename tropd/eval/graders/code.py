"""Code graders: evalplus's checker (HumanEval+, MBPP+, tiny_code) and MBPP's own asserts.

Every candidate runs in tropd.eval.sandbox, one contained process per sample. For evalplus tasks
the child runs evalplus's own `unsafe_execute` (its float tolerance and special oracles), first on
the base inputs and, if those pass, on the plus inputs; the expected outputs are evalplus's ground
truth (the canonical solutions run once in this process, which is trusted data, and cached under
the tropd cache by the data file's md5). evalplus's CLI is not used: it always waits 20 s on a
sleeping thread.

The program checked, by how the sample came (evalplus's own conventions, `solution_for`):
- "chat" (`tropd eval` with a chat template; `tropd score --chat`): the answer goes through
  `evalplus.sanitize` (the code block, the imports and what the entry point reaches; prose, tests
  and `__main__` blocks dropped) and runs as the whole solution, with no prompt prepended, as
  evalplus.codegen does for chat models: an answer that leaves out `from typing import List` fails;
- "continuation" (`tropd eval` without one, and the tiny tasks, whose models continue the prompt):
  cut at evalplus's stop strings for direct completion, appended to the prompt, sanitized, as
  evalplus.codegen does for base models;
- "completion" (a `completion` field in `tropd score`): the prompt + the text, as evalplus.evaluate;
- "solution" (a `solution` field): run as is, as evalplus.evaluate.
`tropd eval` writes the program it checked as each row's `solution`, so a per-sample file scores
the same again with `tropd score` and with evalplus's own evaluate. MBPP's sanitized problems are
natural language: there the first fenced block (else the text) is the solution.

Time limits: evalplus's per-input limits (max(1 s, 4 x the canonical solution's time)) count the
program's CPU time here, with a wall-clock backstop of WALL_SLACK x the limit (evalplus: wall-clock
only), so a verdict does not depend on how busy the machine is; a sample that still reached a limit
is checked again alone, after the others, and that verdict counts. Each row says why a sample failed
(`reason`: wrong, error, time_limit, memory, sandbox_error; `error`: the exception's type) and how
long its check took (`duration_s`).
"""
from __future__ import annotations

import os
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path

from tropd.errors import UserError
from tropd.eval import cache_dir, sandbox, stats

MIN_TIME_LIMIT = 1.0  # evalplus's defaults: per-input limit = max(1 s, 4 x canonical time)
GT_TIME_FACTOR = 4.0  # env TROPD_EVALPLUS_MIN_TIME / TROPD_EVALPLUS_TIME_FACTOR override both, for
# machines much busier than the one that timed the canonical solutions (the limits are wall-clock)
PHASE_CAP_S = 60.0  # evalplus's per-task cap
MBPP_TEST_LIMIT = 5.0  # seconds per MBPP assert (the reference solutions take milliseconds)
WALL_SLACK = 3.0  # wall-clock backstop of a per-input CPU limit, and of the whole check's budget
GRADER_VERSION = 3  # part of every cached verdict's key: bump it when a change here or in the
# sandbox's child could change a verdict, so verdicts of the old checker are not reused

_OVERRIDE = {"humaneval": "HUMANEVAL_OVERRIDE_PATH", "mbpp": "MBPP_OVERRIDE_PATH"}
_PROBLEMS: dict[tuple[str, str], dict] = {}
_TRUTH: dict[tuple[str, str], dict] = {}
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def _evalplus_data(dataset: str, path: Path):
    """evalplus's data module, pointed at `path` (env var before import; module global after)."""
    os.environ[_OVERRIDE[dataset]] = str(path)
    if dataset == "humaneval":
        import evalplus.data.humaneval as mod
    else:
        import evalplus.data.mbpp as mod
    setattr(mod, _OVERRIDE[dataset], str(path))  # read at import; one process may grade several files
    return mod


def load_problems(dataset: str, path: Path) -> dict:
    """{task_id: problem} in file order, through evalplus's loader (MBPP+ inputs deserialised)."""
    key = (dataset, str(path))
    if key not in _PROBLEMS:
        mod = _evalplus_data(dataset, path)
        with redirect_stdout(sys.stderr):
            load = mod.get_human_eval_plus if dataset == "humaneval" else mod.get_mbpp_plus
            try:
                problems = load(err_incomplete=False)
            except (KeyError, ValueError, TypeError) as e:
                raise UserError(f"{path}: not in evalplus format ({type(e).__name__}: {e})") from None
        for tid, p in problems.items():
            missing = [k for k in ("task_id", "prompt", "entry_point", "canonical_solution", "base_input",
                                   "plus_input") if k not in p]
            if missing:
                raise UserError(f"{path}: problem {tid} lacks field(s) {', '.join(missing)}")
            p.setdefault("atol", 0)
            p.setdefault("contract", "")
        if not problems:
            raise UserError(f"{path}: no problems")
        _PROBLEMS[key] = problems
    return _PROBLEMS[key]


def ground_truth(dataset: str, path: Path) -> dict:
    """evalplus's expected outputs and canonical timings per task, cached by the file's md5."""
    key = (dataset, str(path))
    if key not in _TRUTH:
        problems = load_problems(dataset, path)
        mod = _evalplus_data(dataset, path)
        import evalplus.evaluate as ev
        from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS

        ev.CACHE_DIR = str(cache_dir() / "evalplus")  # instead of ~/.cache/evalplus
        hashcode = mod.get_human_eval_plus_hash() if dataset == "humaneval" else mod.get_mbpp_plus_hash()
        not_none = MBPP_OUTPUT_NOT_NONE_TASKS if dataset == "mbpp" else []
        with redirect_stdout(sys.stderr):
            _TRUTH[key] = ev.get_groundtruth(problems, hashcode, not_none)
    return _TRUTH[key]


def extract_code(completion: str, entry_point: str | None = None) -> str:
    """The python code in a completion: a fenced block if any (preferring the entry point's)."""
    blocks = [code for lang, code in _FENCE.findall(completion)
              if lang.lower() in ("", "python", "py", "python3")]
    if not blocks:
        return completion
    if entry_point:
        for b in blocks:
            if re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", b, re.M):
                return b
    return blocks[0]


MODES = ("chat", "continuation", "completion", "solution")


def _stop_strings(dataset: str) -> list[str]:
    from evalplus.provider.utility import EOS, extra_eos_for_direct_completion

    return EOS + extra_eos_for_direct_completion(dataset)


def solution_for(mode: str, dataset: str, prompt: str, text: str, entry_point: str) -> str:
    """The program evalplus would check for this sample (see the module docstring)."""
    if mode == "solution":
        return text
    if mode == "completion":
        return prompt + text
    from evalplus.sanitize import sanitize

    if mode == "chat":
        return sanitize(text, entry_point)
    if mode == "continuation":
        cut = min([text.index(s) for s in _stop_strings(dataset) if s in text], default=len(text))
        return sanitize(prompt + text[:cut], entry_point)
    raise ValueError(f"unknown code mode {mode!r} (one of {', '.join(MODES)})")


def _phase(name: str, inputs: list, expected: list, times: list[float]) -> dict:
    floor = float(os.environ.get("TROPD_EVALPLUS_MIN_TIME", MIN_TIME_LIMIT))
    factor = float(os.environ.get("TROPD_EVALPLUS_TIME_FACTOR", GT_TIME_FACTOR))
    limits = [max(floor, factor * t) for t in times]
    return {"name": name, "inputs": inputs, "expected": expected, "time_limits": limits}


def _budget(phases: list[dict]) -> float:
    return sum(min(PHASE_CAP_S, sum(p["time_limits"])) + 1.0 for p in phases)


def check_evalplus(dataset: str, path: Path, samples: list[tuple[str, str]], plus: bool = True,
                   workers: int | None = None, cache: bool = True,
                   modes: list[str] | None = None) -> list[dict]:
    """[(task_id, text)] -> [{"base": status, "plus": status | None, "solution", "reason", "error",
    "duration_s", "rechecked", "sandbox", "sandbox_error"}] (statuses "pass"/"fail"/"timeout").

    `modes` says how each text came (MODES; default "completion"). "plus" is None where it was not
    run: base inputs failed (the plus metric needs both), or the task is base-only. "sandbox_error"
    says why a check gave no verdict (None when it did).
    """
    problems, truth = load_problems(dataset, path), ground_truth(dataset, path)
    modes = modes or ["completion"] * len(samples)
    jobs, programs = [], []
    for (tid, text), mode in zip(samples, modes):
        p, gt = problems[tid], truth[tid]
        phases = [_phase("base", p["base_input"], gt["base"], gt["base_time"])]
        if plus:
            phases.append(_phase("plus", p["plus_input"], gt["plus"], gt["plus_time"]))
        program = solution_for(mode, dataset, p["prompt"], text, p["entry_point"])
        job = {"kind": "evalplus", "dataset": dataset, "entry_point": p["entry_point"], "code": program,
               "atol": p["atol"], "fast_check": True, "wall_slack": WALL_SLACK, "phases": phases}
        jobs.append((job, sandbox.Limits(wall_s=WALL_SLACK * _budget(phases))))
        programs.append(program)
    digests: dict[str, str] = {}  # per task: its inputs and outputs are hashed once, not per sample
    for (tid, _), (job, _) in zip(samples, jobs):
        digests.setdefault(tid, _phases_digest(job["phases"]))
    keys = [_verdict_key(job, digests[tid]) for (tid, _), (job, _) in zip(samples, jobs)]
    known = {k: v for k in set(keys) if cache and (v := _cached_verdict(k)) is not None}
    todo = {k: j for k, j in zip(keys, jobs) if k not in known}  # identical programs run once
    for k, o in zip(todo, sandbox.run_many(list(todo.values()), workers)):
        known[k] = _evalplus_verdict(o, plus)
    # A verdict that reached a time limit may be the load of the checks running beside it: check it
    # again alone, after the others, and keep that one.
    again = [k for k in todo if known[k]["reason"] == "time_limit"]
    for k, o in zip(again, sandbox.run_many([todo[k] for k in again], workers=1)):
        known[k] = {**_evalplus_verdict(o, plus), "rechecked": True}
    for k in todo:
        v = known[k]
        # a clean verdict is a function of the program; one that reached a time limit is checked
        # again next time too
        if cache and v["sandbox_error"] is None and v["reason"] != "time_limit":
            _store_verdict(k, v)
    return [{**known[k], "solution": prog} for k, prog in zip(keys, programs)]


def _evalplus_verdict(o: sandbox.Outcome, plus: bool) -> dict:
    res = o.result if isinstance(o.result, dict) else {}
    lost = "timeout" if o.status == "timeout" else "fail"  # no verdict: killed or crashed
    base = res.get("base") or lost
    v = {"base": base, "plus": (res.get("plus") or lost) if plus and base == "pass" else None,
         "sandbox": o.status if o.status != "ok" else None,
         "sandbox_error": _sandbox_error(o, "base" in res), "duration_s": round(o.wall_s, 3),
         "rechecked": False}
    passed = v["base"] == "pass" and v["plus"] in (None, "pass")
    v["error"] = None if passed else res.get("exception")
    v["reason"] = None if passed else _reason(v, res)
    return v


def _reason(v: dict, res: dict) -> str:
    """Why a sample failed: sandbox_error (no verdict), time_limit, memory, error (the program
    raised; `error` names the exception), or wrong (it returned a wrong answer)."""
    if v["sandbox_error"]:
        return "sandbox_error"
    if res.get("time_limit_hit") or v["sandbox"] == "timeout" or "timeout" in (v["base"], v["plus"]):
        return "time_limit"
    if res.get("exception") == "MemoryError":
        return "memory"
    return "error" if res.get("exception") else "wrong"


def _sandbox_error(o: sandbox.Outcome, has_verdict: bool) -> str | None:
    """Why a check ended without a verdict: a set-up error or crash of the sandbox, or an error of
    the checker in it. None for a verdict and for a timeout (the program's own fail)."""
    if o.status == "crash":
        return f"crash ({o.detail})" if o.detail else "crash"
    if o.status == "ok" and not has_verdict:
        err = o.result.get("error") if isinstance(o.result, dict) else None
        return f"no verdict from the checker ({err or 'empty result'})"
    return None


def raise_if_nothing_ran(task: str, results: list[dict]) -> None:
    """A sandbox that ran none of a task's checks must not read as 0% pass."""
    errors = [r["sandbox_error"] for r in results if r.get("sandbox_error")]
    if results and len(errors) == len(results):
        raise UserError(f"{task}: the sandbox ran none of its {len(results)} checks"
                        f" (first error: {errors[0]})")


def _phases_digest(phases: list[dict]) -> str:
    """Digest of a check's inputs, expected outputs and limits. Pickled, not JSON: MBPP+ has dicts
    with tuple keys, or with int and str keys, that JSON cannot write or sort (the order is the data
    file's, so the same every time)."""
    import hashlib
    import pickle

    return hashlib.sha256(pickle.dumps(phases, protocol=4)).hexdigest()


def _verdict_key(job: dict, phases_digest: str | None = None) -> str:
    """Digest of everything a verdict depends on: the program, the inputs, expected outputs, limits,
    and the checker's versions (evalplus's and this grader's)."""
    import hashlib
    import json

    import evalplus

    digest = phases_digest or _phases_digest(job["phases"])
    rest = {k: v for k, v in job.items() if k != "phases"}
    blob = json.dumps({"job": rest, "phases": digest, "evalplus": evalplus.__version__,
                       "grader": GRADER_VERSION}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cached_verdict(key: str) -> dict | None:
    """Verdicts are cached by content (tropd cache, `verdicts/`): many models write the same program
    for an item (every reference seed, most small students), and each check costs a process."""
    import json

    p = cache_dir() / "verdicts" / key[:2] / f"{key}.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _store_verdict(key: str, verdict: dict) -> None:
    from tropd.infra.io import atomic_write_json

    p = cache_dir() / "verdicts" / key[:2] / f"{key}.json"
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(p, verdict)
    except OSError:
        pass  # a cache that cannot be written only costs time


def check_mbpp(samples: list[tuple[str, dict]], workers: int | None = None) -> list[dict]:
    """[(completion, ref with tests/setup)] -> [{"status", "passed_tests", "reason", "error",
    "duration_s", "rechecked", "sandbox", "sandbox_error"}] with MBPP's own asserts; a timeout is
    checked again alone, as for evalplus."""
    jobs = []
    for completion, ref in samples:
        job = {"kind": "asserts", "code": extract_code(completion), "setup": ref.get("setup", ""),
               "tests": list(ref["tests"]), "time_limit": MBPP_TEST_LIMIT}
        jobs.append((job, sandbox.Limits(wall_s=MBPP_TEST_LIMIT * (len(ref["tests"]) + 1))))
    out = [_mbpp_verdict(o) for o in sandbox.run_many(jobs, workers)]
    again = [i for i, r in enumerate(out) if r["reason"] == "time_limit"]
    for i, o in zip(again, sandbox.run_many([jobs[i] for i in again], workers=1)):
        out[i] = {**_mbpp_verdict(o), "rechecked": True}
    return out


def _mbpp_verdict(o: sandbox.Outcome) -> dict:
    res = o.result if o.status == "ok" and isinstance(o.result, dict) else {}
    status = res.get("status") or ("timeout" if o.status == "timeout" else "fail")
    v = {"status": status, "passed_tests": res.get("passed", 0),
         "sandbox": o.status if o.status != "ok" else None,
         "sandbox_error": _sandbox_error(o, "status" in res), "duration_s": round(o.wall_s, 3),
         "rechecked": False}
    err = res.get("error") if status != "pass" else None
    v["error"] = err if err not in (None, "Timeout", "AssertionError") else None  # a failed assert: wrong
    if status == "pass":
        v["reason"] = None
    elif v["sandbox_error"]:
        v["reason"] = "sandbox_error"
    elif status == "timeout":
        v["reason"] = "time_limit"
    elif err == "MemoryError":
        v["reason"] = "memory"
    else:
        v["reason"] = "wrong" if err == "AssertionError" else "error"
    return v


def summarize(per_item: list[list[dict]], keys: list[tuple[str, str]]) -> dict:
    """pass@k metrics: `keys` = [(metric prefix, result field)], a sample passing if the field is "pass".

    With several samples per item, pass@1 and pass@n (n = fewest samples of any item) are reported,
    both with the unbiased estimator. `sandbox_errors`: the share ("mean") and number ("count") of
    checks that ended without a verdict, each scored as a fail.
    """
    n_min = min(len(s) for s in per_item)
    metrics = {}
    for prefix, fieldname in keys:
        for k in stats.ks_for(n_min):
            vals = [stats.pass_at_k(len(s), sum(r[fieldname] == "pass" for r in s), k) for s in per_item]
            metrics[f"{prefix}pass@{k}"] = stats.mean_ci(vals)
    n = sum(len(s) for s in per_item)
    bad = sum(bool(r.get("sandbox_error")) for s in per_item for r in s)
    metrics["sandbox_errors"] = {"mean": bad / n, "ci95": [bad / n, bad / n], "count": bad, "of": n}
    return metrics
