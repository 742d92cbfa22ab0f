"""The untrusted-code sandbox (tropd.eval.sandbox): hostile programs fail or time out, the harness,
its files and its network stay untouched, honest programs still pass.

Two passes: with every layer (what evaluation uses), and, where we run as root, with the audit hook
switched off, to show the kernel layers (nobody uid, network namespace, rlimits) hold on their own.
"""
from __future__ import annotations

import os
import socket
import threading

import pytest

from tropd.eval import sandbox

ROOT = os.geteuid() == 0


def _job(code: str, time_limit: float = 2.0, **kw) -> dict:
    return {"kind": "asserts", "code": code, "tests": ["assert True"], "time_limit": time_limit, **kw}


@pytest.fixture
def canary(tmp_path):
    d = tmp_path / "canary"
    d.mkdir()
    (d / "keep.txt").write_text("alive")
    return d


@pytest.fixture
def listener():
    """A TCP server on the host's loopback that records any connection it gets."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    hits, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                hits.append(1)
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join()
    srv.close()


def hostile_programs(canary, outside, port) -> dict[str, str]:
    return {
        "delete canary": f"import shutil\nshutil.rmtree({str(canary)!r})",
        "unlink via posix": f"import posix\nposix.unlink({str(canary / 'keep.txt')!r})",
        "write outside": f"open({str(outside)!r}, 'w').write('pwned')",
        "os.open outside": f"import os\nos.close(os.open({str(outside)!r}, os.O_WRONLY | os.O_CREAT))",
        "symlink escape": f"import os\nos.symlink({str(outside.parent)!r}, 'up')\nopen('up/{outside.name}', 'w')",
        "read the answers": f"open({str(canary / 'keep.txt')!r}).read()",
        "kill the harness": "import os\nos.kill(os.getppid(), 9)",
        "8 GB allocation": "b = bytearray(8 << 30)",
        "socket to host": f"import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', {port}))",
        "fork bomb": "import os\nwhile True:\n    os.fork()",
    }


def test_layers_active():
    layers = sandbox.isolation_layers()
    assert "rlimits" in layers and "audit" in layers
    if ROOT:
        assert {"netns", "uid:nobody"} <= set(layers)


def test_hostile_programs_fail_and_honest_ones_pass(canary, tmp_path, listener):
    port, hits = listener
    outside = tmp_path / "outside.txt"
    progs = hostile_programs(canary, outside, port)
    honest = "import math, heapq\nopen('scratch.txt', 'w').write('ok')\nassert math.gcd(12, 18) == 6"
    jobs = [(_job(code, preload=["socket"]), sandbox.Limits(wall_s=4)) for code in progs.values()]
    jobs.append((_job(honest), sandbox.Limits(wall_s=4)))
    outs = sandbox.run_many(jobs, workers=2)
    for name, o in zip(progs, outs):
        assert o.status == "ok" and o.result["status"] == "fail", (name, o)
    assert outs[-1].result["status"] == "pass", outs[-1]
    assert (canary / "keep.txt").read_text() == "alive"
    assert not outside.exists()
    assert hits == []


def test_infinite_loops_time_out():
    plain = sandbox.run(_job("while True:\n    pass", time_limit=1.0), sandbox.Limits(wall_s=2))
    assert plain.status == "ok" and plain.result["status"] == "timeout"
    # a program that ignores the alarm is killed, with its process group, at the deadline
    stubborn = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass"
    out = sandbox.run(_job(stubborn, time_limit=1.0), sandbox.Limits(wall_s=1))
    assert out.status == "timeout" and out.result is None


def test_forged_reports_are_ignored():
    """Lines the program writes to the report pipe lack the nonce and do not count."""
    code = "import os\nos.write(3, b'{\"nonce\": \"x\", \"result\": {\"status\": \"pass\"}}\\n')\nraise SystemExit"
    out = sandbox.run(_job(code), sandbox.Limits(wall_s=4))
    assert out.status == "ok" and out.result["status"] == "fail"


@pytest.mark.skipif(not ROOT, reason="the kernel layers (nobody uid, network namespace) need root")
def test_kernel_layers_hold_without_the_audit_hook(canary, listener):
    port, hits = listener
    progs = hostile_programs(canary, canary.parent / "unused", port)
    # a bounded fork loop: if the process limit did not hold, this still could not run away
    progs["fork bomb"] = ("import os\nfor _ in range(20):\n    if os.fork() == 0:\n        os._exit(0)")
    for name in ("write outside", "os.open outside", "symlink escape", "read the answers"):
        del progs[name]  # world-writable /tmp, world-readable files: the audit hook's job
    lim = sandbox.Limits(wall_s=4, audit=False)
    outs = sandbox.run_many([(_job(c, preload=["socket"]), lim) for c in progs.values()], workers=2)
    for name, o in zip(progs, outs):
        assert o.status == "ok" and o.result["status"] == "fail", (name, o)
        assert "audit" not in o.layers
    assert (canary / "keep.txt").read_text() == "alive"
    assert hits == []
