"""A one-node SLURM cluster on this machine, for testing the workflow's SLURM profile.

    python tests/slurm_cluster.py start /tmp/slurm   # install if needed, start; prints `export SLURM_CONF=...`
    python tests/slurm_cluster.py stop /tmp/slurm

Debian's slurm-wlm (installed with apt when missing; needs root), munged, slurmctld and slurmd as
root without systemd. Everything the daemons write (config, state, spool, logs, pid files) lives
under the given folder; clients find the config through SLURM_CONF, and while the cluster runs
/etc/slurm/slurm.conf links to it (for the in-job srun, see SYSTEM_CONF).
Ports are picked free, so two clusters on one machine do not collide. The node offers all CPUs,
90% of the memory and one fake GPU (gres File=/dev/null): jobs asking for `gpu=1` are scheduled
like on a GPU node. No slurmdbd, so no sacct: use `--slurm-status-command squeue`.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

MUNGE_PID = Path("/run/munge/munged.pid")
# The slurm-jobstep plugin drops SLURM_CONF before its in-job `srun`, which then reads the system
# path: while the cluster runs, that path is a symlink to our config (only if nothing else is there).
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
SBIN = Path("/usr/sbin")


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def installed() -> bool:
    return all((SBIN / d).exists() for d in ("slurmctld", "slurmd", "munged")) and shutil.which("sbatch") is not None


def install() -> str | None:
    """Install slurm-wlm with apt if missing; returns why it is impossible, or None on success."""
    if installed():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "slurm-wlm is not installed and apt-get as root is not available"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "slurm-wlm"]):
        r = _run(cmd, env=env, timeout=600)
        if r.returncode != 0:
            return f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    return None if installed() else "slurm-wlm installed but its daemons are missing"


class LocalSlurm:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.conf = self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def _node_line(self, host: str) -> str:
        """`slurmd -C` reports the real CPUs and memory; keep 10% of the memory for the system."""
        out = _run([str(SBIN / "slurmd"), "-C"]).stdout.split("\n")[0]
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        mem = int(int(fields.get("RealMemory", "4000")) * 0.9)
        return f"NodeName={host} CPUs={fields.get('CPUs', os.cpu_count())} RealMemory={mem} Gres=gpu:1 State=UNKNOWN"

    def write_config(self) -> None:
        host = socket.gethostname().split(".")[0]
        for d in ("etc", "state", "spool", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text("\n".join([
            "ClusterName=tropdtest", f"SlurmctldHost={host}", "SlurmUser=root", "AuthType=auth/munge",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log", f"SlurmdLogFile={r}/log/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none", "ReturnToService=2", "GresTypes=gpu", "SchedulerParameters=sched_interval=2",
            "MinJobAge=900",  # keep finished jobs visible to scontrol/squeue for the checks
            self._node_line(host),
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")
        (self.root / "etc" / "gres.conf").write_text(f"NodeName={host} Name=gpu File=/dev/null\n")

    def start(self, timeout: float = 60) -> None:
        self.write_config()
        if _alive(MUNGE_PID) is None:
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
                shutil.chown(d, "munge", "munge")
            r = _run(["su", "-s", "/bin/sh", "munge", "-c", str(SBIN / "munged")])
            if r.returncode != 0:
                raise RuntimeError(f"munged did not start: {r.stderr.strip()}")
            (self.root / "munged.ours").touch()  # so that `stop` from another process stops it too
        self._link_system_conf()
        for daemon in ("slurmctld", "slurmd"):
            r = _run([str(SBIN / daemon), "-f", str(self.conf)], env=self.env)
            if r.returncode != 0:
                raise RuntimeError(f"{daemon} did not start: {r.stderr.strip()} (logs in {self.root}/log)")
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = _run(["sinfo", "-h", "-o", "%t"], env=self.env).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node did not come up (sinfo: {state!r}; logs in {self.root}/log)")

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink() and not SYSTEM_CONF.exists():
            SYSTEM_CONF.unlink()  # left behind by a cluster that was not stopped
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            if SYSTEM_CONF.resolve() != self.conf:
                raise RuntimeError(f"{SYSTEM_CONF} exists (another SLURM setup); in-job srun would not "
                                   f"find {self.conf}")
            return
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)

    def stop(self) -> None:
        """Stop the daemons this cluster started, by their pid files; munged only if we started it."""
        pid_files = [self.root / "slurmd.pid", self.root / "slurmctld.pid"]
        if (self.root / "munged.ours").exists():
            pid_files.append(MUNGE_PID)
        for pid_file in pid_files:
            pid = _alive(pid_file)
            if pid is None:
                continue
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if _alive(pid_file) != pid:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf:
            SYSTEM_CONF.unlink()

    def log_tail(self, n: int = 30) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / "log" / name
            if path.is_file():
                out += [f"--- {name}", *path.read_text().splitlines()[-n:]]
        return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__)
        return 2
    cluster = LocalSlurm(argv[1])
    if argv[0] == "start":
        why = install()
        if why:
            print(why, file=sys.stderr)
            return 1
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf}")
    else:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
