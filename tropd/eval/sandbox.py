"""Run untrusted generated code contained: one fresh interpreter per check (the harness side).

Each check gets its own process (`_sandbox_child.py`, started with a clean environment) in a new
session, with a private temporary directory as its working directory. The child locks itself down
before running anything untrusted (see its docstring for the layers: network namespace, rlimits for
memory / file size / CPU / processes, `nobody` uid when we are root, a fail-closed audit hook). This
side enforces the wall-clock deadline by killing the whole process group, caps how much the child
may send back, checks the report's nonce, and removes the directory afterwards.

evalplus's `reliability_guard` still runs inside the child for evalplus checks (it is part of how
evalplus scores), but it is not what contains the program: it only nulls some Python functions.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

CHILD = Path(__file__).with_name("_sandbox_child.py")
REPORT_CAP = 1 << 20  # bytes a child may send back before it is killed
STARTUP_S = 5.0  # interpreter start + imports, added to every deadline (2 shared cores are slow)
LOAD_BYTES_PER_S = 20e6  # unpickling speed assumed for the job (HumanEval+/MBPP+ outputs reach 800 MB)


@dataclass(frozen=True)
class Limits:
    """Per-check limits. `wall_s` covers the checked code only; startup time is added on top."""

    wall_s: float = 10.0
    memory_bytes: int = 4 << 30  # RLIMIT_AS, as evalplus's default
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: the largest file the program may write
    nproc: int = 1  # RLIMIT_NPROC: no new processes or threads (the kernel enforces it for non-root)
    nofile: int = 64
    network: bool = True  # new network namespace
    drop_privileges: bool = True  # setuid(nobody) when running as root
    audit: bool = True  # the audit hook (tests switch it off to check the kernel layers alone)


@dataclass
class Outcome:
    status: str  # "ok" (the child reported), "timeout" (killed at the deadline or CPU limit), "crash"
    result: dict | None = None  # the child's result; after a timeout or crash, its partial results
    layers: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    detail: str = ""


def default_workers() -> int:
    """Checks run in parallel (each in its own process); TROPD_SANDBOX_WORKERS overrides."""
    env = os.environ.get("TROPD_SANDBOX_WORKERS")
    return max(1, int(env)) if env else max(1, min(2, os.cpu_count() or 1))


def _child_env(tmp: str, limits: Limits) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmp, "TMPDIR": tmp,
        "PYTHONHASHSEED": "0",  # set iteration order must not make a check flaky
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "EVALPLUS_MAX_MEMORY_BYTES": str(limits.memory_bytes),  # its guard must not raise our limit
    }


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child is its session's leader: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def _read_report(proc: subprocess.Popen, deadline: float) -> tuple[bytes, bool]:
    """Everything the child writes to its report pipe, until EOF, the deadline, or the cap."""
    buf = bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(buf), True
            if not sel.select(timeout=left):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return bytes(buf), False
            buf += chunk
            if len(buf) > REPORT_CAP:
                return bytes(buf[:0]), False
    finally:
        sel.close()


def run(job: dict, limits: Limits = Limits()) -> Outcome:
    """Run one job (see _sandbox_child: kind "evalplus" or "asserts") in a fresh contained process."""
    t0 = time.monotonic()
    tmp = os.path.realpath(tempfile.mkdtemp(prefix="tropd-sbx-"))
    nonce = secrets.token_hex(16)
    data = pickle.dumps(job)
    load_s = len(data) / LOAD_BYTES_PER_S  # big expected outputs take a while to load
    cpu_s = int(math.ceil(limits.wall_s + STARTUP_S + load_s)) + 1
    meta = pickle.dumps({
        "nonce": nonce, "tmpdir": tmp, "network": limits.network,
        "drop_privileges": limits.drop_privileges, "audit": limits.audit,
        "limits": {"memory_bytes": limits.memory_bytes, "file_bytes": limits.file_bytes,
                   "cpu_s": cpu_s, "nofile": limits.nofile, "nproc": limits.nproc},
    })
    proc = subprocess.Popen(
        [sys.executable, "-s", "-B", str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, cwd=tmp, env=_child_env(tmp, limits), start_new_session=True,
        close_fds=True,
    )
    try:
        try:
            proc.stdin.write(meta)
            proc.stdin.write(data)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        deadline = time.monotonic() + STARTUP_S + load_s + limits.wall_s  # from the hand-over
        raw, timed_out = _read_report(proc, deadline)
        _kill_group(proc)  # whatever is left of the group (the child may still be a zombie: pid kept)
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()
        proc.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.monotonic() - t0
    report, partial = _parse(raw, nonce)
    if report is not None and "setup_error" in report:
        return Outcome("crash", None, report.get("layers", []), wall, "sandbox set-up: " + report["setup_error"])
    if report is not None:
        return Outcome("ok", report.get("result"), report.get("layers", []), wall)
    status = "timeout" if timed_out or rc in (-signal.SIGXCPU, -signal.SIGKILL) else "crash"
    return Outcome(status, partial or None, [], wall, f"exit {rc}")


def _parse(raw: bytes, nonce: str) -> tuple[dict | None, dict]:
    """The child's final report (None if absent: the check failed) and its merged partial results.

    Lines without our nonce are ignored: the checked program could write to the pipe too."""
    final, partial = None, {}
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or obj.get("nonce") != nonce:
            continue
        if isinstance(obj.get("partial"), dict):
            partial.update(obj["partial"])
        elif "result" in obj or "setup_error" in obj:
            final = obj
    return final, partial


def run_many(jobs: list[tuple[dict, Limits]], workers: int | None = None) -> list[Outcome]:
    """Run jobs in parallel worker threads (each job still gets its own process); order is kept."""
    workers = workers or default_workers()
    if workers == 1 or len(jobs) <= 1:
        return [run(j, lim) for j, lim in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda jl: run(*jl), jobs))


def isolation_layers() -> list[str]:
    """Which containment layers are active on this machine (runs an empty check)."""
    out = run({"kind": "asserts", "code": "", "tests": [], "time_limit": 1.0}, Limits(wall_s=5))
    return out.layers
