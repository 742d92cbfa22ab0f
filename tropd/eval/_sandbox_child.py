"""The contained side of tropd.eval.sandbox: run as a script in a fresh interpreter, once per check.

It reads one job (pickle, from the trusted parent) on stdin, locks itself down, runs the job, and
writes one JSON report (with the parent's nonce) to the pipe it was given as its original stdout.
The order matters: everything privileged happens before the first untrusted byte runs.

1. imports that need the file system (evalplus, numpy, a preload list of stdlib modules: the
   interpreter may live under a directory the unprivileged uid cannot read, e.g. /root/.pyenv);
2. a new network namespace (root: unshare(CLONE_NEWNET); otherwise a new user + network
   namespace where the kernel allows it): no interface but a down loopback, so no network at all;
3. resource limits: address space, file size, CPU seconds, processes (fork bombs), open files, no
   core dumps;
4. as root: drop to `nobody` (setgroups, setgid, setuid) after giving it the private directory;
   the kernel then refuses writes outside it and signals to the harness; no_new_privs; die with the
   parent;
5. a Python audit hook (fail-closed) refusing writes, deletes, renames and links outside the
   private directory, reads outside the interpreter's own library folders (so a program cannot read
   the benchmark's answers), process creation, signals, sockets and ctypes.

Python-level guards alone can be bypassed by a determined program, which is why the kernel layers
(2-4) come first; where they are unavailable (not root, no user namespaces) the report says so.
This file imports nothing from tropd: it must start fast and trust nothing it did not bring.
"""
import os
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

# Modules honest HumanEval/MBPP solutions and tests import (measured over the canonical solutions);
# loaded while the interpreter's files are still readable.
PRELOAD = (
    "math cmath re typing collections collections.abc heapq itertools functools bisect operator "
    "array random hashlib copy string fractions decimal statistics datetime calendar json numbers "
    "dataclasses enum textwrap unicodedata struct abc contextlib time queue shutil subprocess signal"
).split()


def _lock_network(libc, layers):
    if os.geteuid() == 0:
        if libc.unshare(CLONE_NEWNET) == 0:
            layers.append("netns")
    elif libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        layers.append("userns+netns")


def _limit_resources(lim, layers):
    import resource

    mem = lim["memory_bytes"]
    pairs = [
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_AS, mem),
        (resource.RLIMIT_DATA, mem),
        (resource.RLIMIT_FSIZE, lim["file_bytes"]),
        (resource.RLIMIT_CPU, lim["cpu_s"]),
        (resource.RLIMIT_NOFILE, lim["nofile"]),
        (resource.RLIMIT_NPROC, lim["nproc"]),
    ]
    for what, value in pairs:
        soft, hard = resource.getrlimit(what)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(what, (value, value))
    layers.append("rlimits")


def _drop_privileges(libc, tmp, layers):
    import signal

    if os.geteuid() == 0:
        import pwd

        nobody = pwd.getpwnam("nobody")
        os.chown(tmp, nobody.pw_uid, nobody.pw_gid)
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
        layers.append("uid:nobody")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # set after setuid, which clears it


def _audit_hook(tmp, read_roots):
    """A fail-closed audit hook; it uses only objects captured here, not globals a program can patch."""
    import posix
    import posixpath

    getcwd, normpath, join, dirname = posix.getcwd, posixpath.normpath, posixpath.join, posixpath.dirname
    fspath = os.fspath
    _isinstance, _int, _bytes, _any, _PermissionError = isinstance, int, bytes, any, PermissionError
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    inside = tmp + "/"
    roots = tuple(r.rstrip("/") + "/" for r in read_roots)
    devices = ("/dev/null", "/dev/urandom", "/dev/random", "/dev/zero", "/proc/meminfo")
    path_events = {
        "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.truncate": 1, "os.chmod": 1, "os.chown": 1,
        "os.utime": 1, "os.chflags": 1, "os.lchflags": 1, "os.setxattr": 1, "os.removexattr": 1,
        "shutil.rmtree": 1, "shutil.chown": 1, "os.rename": 2, "os.link": 2, "shutil.copyfile": 2,
        "shutil.copymode": 2, "shutil.copystat": 2, "shutil.copytree": 2, "shutil.move": 2,
        "shutil.make_archive": 1, "shutil.unpack_archive": 2,
    }
    denied = ("os.kill", "os.killpg", "signal.pthread_kill", "os.system", "os.exec", "os.posix_spawn",
              "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen", "pty.spawn", "os.startfile",
              "os.setuid", "os.setgid", "sys.remote_exec")
    denied_prefixes = ("socket.", "ctypes.", "_posixsubprocess.")

    def resolve(p):
        if _isinstance(p, _int):
            return None  # an already-open descriptor
        p = fspath(p)
        if _isinstance(p, _bytes):
            p = p.decode("utf-8", "surrogateescape")
        return normpath(p if p.startswith("/") else join(getcwd(), p))

    def is_inside(p):
        r = resolve(p)
        return r is None or r == tmp or r.startswith(inside)

    def hook(event, args):
        if event == "open":
            path, flags = args[0], args[2]
            r = resolve(path)
            if r is None or r == tmp or r.startswith(inside):
                return
            if _isinstance(flags, _int) and flags & write_flags:
                raise _PermissionError(f"sandbox: write outside the private directory: {r}")
            if r in devices or r.startswith("/proc/self/") or _any(r.startswith(x) for x in roots):
                return
            raise _PermissionError(f"sandbox: read outside the allowed folders: {r}")
        if event in denied or event.startswith(denied_prefixes):
            raise _PermissionError(f"sandbox: {event} is not allowed")
        n = path_events.get(event)
        if n:
            for p in args[:n]:
                if not is_inside(p):
                    raise _PermissionError(f"sandbox: {event} outside the private directory")
        elif event == "os.symlink":  # (src, dst, dir_fd): the link and its target must stay inside
            src, dst = args[0], args[1]
            if not is_inside(dst) or not is_inside(join(dirname(resolve(dst)), fspath(src))):
                raise _PermissionError("sandbox: symlink leaving the private directory")

    return hook


def _library_roots():
    """Folders the interpreter loads code from (stdlib, site-packages): the only readable ones."""
    import sysconfig

    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        roots.update({prefix + "/lib", prefix + "/lib64"})
    return sorted(roots | {os.path.realpath(r) for r in roots})


class _Box:
    """Stands in for multiprocessing.Value in evalplus.eval.unsafe_execute."""

    def __init__(self, value):
        self.value = value


def _run_evalplus(job, report):
    """evalplus's own per-phase check (unsafe_execute: its guard, time limits, special oracles).

    Each phase's status is reported as soon as it is known, so a later phase that runs past the
    deadline does not take the earlier verdicts with it."""
    import builtins
    import contextlib
    import shutil
    import subprocess
    import time

    import evalplus.eval as E
    from evalplus.eval.utils import TimeoutException

    import signal

    mods = (os, builtins, shutil, subprocess, sys.modules)
    saved = [dict(m if m is sys.modules else vars(m)) for m in mods]
    out = {}
    # evalplus's per-input limits are wall-clock; here they count the program's CPU time (SIGPROF),
    # with a wall-clock backstop at `wall_slack` times the limit (a program that sleeps), so that a
    # busy machine does not turn an honest program into a timeout. With fast_check an input that runs
    # out of time ends the phase as plain _FAILED: record that a limit was reached, so the harness
    # re-checks it and does not cache it. Used time too: a program may swallow the exception.
    slack, clock, cpu = float(job.get("wall_slack", 1.0)), time.monotonic, time.process_time
    setitimer, sigfn = signal.setitimer, signal.signal
    real_swallow = E.swallow_io

    @contextlib.contextmanager
    def time_limit(seconds):
        def expire(signum, frame):
            out["time_limit_hit"] = True  # here too: the program may catch what is raised
            raise TimeoutException("Timed out!")

        t0, c0 = clock(), cpu()
        sigfn(signal.SIGPROF, expire)
        sigfn(signal.SIGALRM, expire)
        setitimer(signal.ITIMER_PROF, seconds)
        setitimer(signal.ITIMER_REAL, seconds * slack)
        try:
            yield
        except TimeoutException:
            out["time_limit_hit"] = True
            raise
        finally:
            setitimer(signal.ITIMER_PROF, 0)
            setitimer(signal.ITIMER_REAL, 0)
            if cpu() - c0 >= seconds or clock() - t0 >= seconds * slack:
                out["time_limit_hit"] = True

    @contextlib.contextmanager
    def swallow_io():
        """evalplus's, noting the type of the first exception the program raised (why it failed)."""
        with real_swallow():
            try:
                yield
            except BaseException as e:
                name = type(e).__name__
                out.setdefault("exception", str.__str__(name)[:60] if isinstance(name, str) else "?")
                raise

    E.swallow_io = swallow_io
    E.time_limit = time_limit  # unsafe_execute looks it up in its module's globals
    for ph in job["phases"]:
        n = len(ph["inputs"])
        stat, progress, details = _Box(E._UNKNOWN), _Box(0), [False] * n
        E.unsafe_execute(job["dataset"], job["entry_point"], job["code"], ph["inputs"], ph["expected"],
                         ph["time_limits"], job["atol"], job["fast_check"], stat, details, progress)
        # reliability_guard disables os/shutil/builtins functions; restore them for the next phase
        for m, d in zip(mods, saved):
            (m if m is sys.modules else vars(m)).update(d)
        status = E._mapping.get(stat.value) or E.TIMEOUT
        done = details[: progress.value]
        if (job["dataset"] == "humaneval" and job["entry_point"] == "find_zero" and job["fast_check"]
                and stat.value == E._SUCCESS and progress.value == 0):
            # evalplus 0.3.1 bug (fixed upstream after the release): its find_zero oracle `continue`s
            # before recording a passed input, so even the canonical solution "fails". With
            # fast_check any failed input ends the phase as _FAILED, so _SUCCESS means all passed.
            done = [True] * n
        if status == E.PASS and (len(done) != n or not all(done)):
            status = E.FAIL
        out[ph["name"]] = status
        report({ph["name"]: status})
        if status != E.PASS:
            break
    return out


def _run_asserts(job):
    """Run `code`, then `setup`, then each test statement under a per-test time limit."""
    import signal

    class Timeout(BaseException):
        pass

    def alarm(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, alarm)
    g = {"__name__": "__main__"}
    passed = 0
    try:
        signal.setitimer(signal.ITIMER_REAL, job["time_limit"])
        exec(compile(job["code"], "<solution>", "exec"), g)
        exec(compile(job.get("setup", ""), "<setup>", "exec"), g)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for test in job["tests"]:
            signal.setitimer(signal.ITIMER_REAL, job["time_limit"])
            exec(compile(test, "<test>", "exec"), g)
            signal.setitimer(signal.ITIMER_REAL, 0)
            passed += 1
    except Timeout:
        return {"status": "timeout", "passed": passed, "error": "Timeout"}
    except BaseException as e:  # noqa: BLE001 - any failure of untrusted code is a failed test
        signal.setitimer(signal.ITIMER_REAL, 0)
        return {"status": "fail", "passed": passed, "error": type(e).__name__}
    return {"status": "pass", "passed": passed, "error": None}


def main():
    sys.path[:] = [p for p in sys.path if p != os.path.dirname(os.path.abspath(__file__))]
    import ctypes
    import json
    import pickle

    res_fd = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    job = pickle.load(sys.stdin.buffer)  # the harness's settings (nonce, limits, directory) ...
    job.update(pickle.load(sys.stdin.buffer))  # ... then the check itself
    for fd in (0, 1, 2):  # the program's prints go nowhere; the report goes to res_fd
        os.dup2(null, fd)
    write, dumps, nonce = os.write, json.dumps, job["nonce"]
    tmp = job["tmpdir"]

    for name in [*PRELOAD, *job.get("preload", ())]:
        try:
            __import__(name)
        except ImportError:
            pass
    if job["kind"] == "evalplus":
        import evalplus.eval  # noqa: F401  (numpy and psutil come with it)

    layers = []
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        roots = _library_roots()
        os.chdir(tmp)
        if job["network"]:
            _lock_network(libc, layers)
        _limit_resources(job["limits"], layers)
        if job["drop_privileges"]:
            _drop_privileges(libc, tmp, layers)
        if job["audit"]:
            sys.addaudithook(_audit_hook(tmp, roots))
            layers.append("audit")
    except BaseException as e:  # noqa: BLE001 - report a broken set-up instead of dying silently
        write(res_fd, (dumps({"nonce": nonce, "layers": layers, "setup_error": repr(e)}) + "\n").encode())
        os._exit(3)

    try:
        if job["kind"] == "evalplus":
            result = _run_evalplus(job, lambda part: write(
                res_fd, (dumps({"nonce": nonce, "layers": layers, "partial": part}) + "\n").encode()))
        elif job["kind"] == "asserts":
            result = _run_asserts(job)
        else:
            result = {"error": f"unknown job kind {job['kind']!r}"}
    except BaseException as e:  # noqa: BLE001
        result = {"error": type(e).__name__}
    write(res_fd, (dumps({"nonce": nonce, "layers": layers, "result": result}) + "\n").encode())
    os._exit(0)  # no atexit handlers or finalizers of the program run after the report


if __name__ == "__main__":
    main()
