"""The Snakemake workflow: every profile in configs/ plans its whole DAG, the config schema matches
tropd's RunConfig and rejects bad profiles, and the profiles parse."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from tropd.config import REPO_ROOT, RunConfig, load_config

SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
PROFILES = sorted((REPO_ROOT / "configs").glob("*.yaml"))


def snakemake(*args: str, cwd: Path = REPO_ROOT, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def job_counts(out: str) -> dict[str, int]:
    """The `Job stats` table of a dry run: {rule: count}."""
    table = out.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_dry_run_plans_the_whole_dag(profile):
    cfg = load_config(profile)  # the CLI accepts the profile too
    wf = cfg.workflow
    r = snakemake("-n", "--forceall", "--quiet", "rules", "--configfile", str(profile.relative_to(REPO_ROOT)))
    assert r.returncode == 0, r.stderr[-2000:]
    if cfg.sweep.levels:  # the mismatch sweep: one teacher; per level a student, a preflight, its arms
        from tropd.sweep import arms

        n_levels, n_arms = len(cfg.sweep.levels), sum(len(arms(cfg, x)) for x in cfg.sweep.levels)
        assert job_counts(r.stdout + r.stderr) == {
            "prepare_teacher": 1, "prepare_student": n_levels, "preflight": n_levels, "train": n_arms,
            "eval": n_arms + 2 * n_levels, "aggregate": 1, "all": 1}
        return
    models = len(wf.methods) + 2  # + teacher and untrained student
    if wf.jobs == "per_method":  # one job per method / model covers every seed and task
        train, evals = len(wf.methods), models
    else:
        train, evals = len(wf.methods) * len(wf.seeds), models * len(wf.seeds) * len(cfg.eval.tasks)
    assert job_counts(r.stdout + r.stderr) == {
        "prepare": 1, "preflight": 1, "train": train, "aggregate": 1, "all": 1, "eval": evals,
    }


def planned_resources(out: str) -> dict[str, set[tuple]]:
    """{rule: {(threads, resources...)}} of a dry run's job blocks."""
    plan: dict[str, set[tuple]] = {}
    for block in re.split(r"^rule ", out, flags=re.M)[1:]:
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        if res and "mem_mb=" in res[1]:
            r = dict(kv.split("=", 1) for kv in res[1].split(", "))
            plan.setdefault(block.split(":", 1)[0], set()).add(
                (int(threads[1]) if threads else 1, r.get("gpu", "0"), int(r["mem_mb"]), int(r["runtime"])))
    return plan


@pytest.mark.parametrize("name", ["tiny", "tiny-ci", "smol"])
def test_cpu_profiles_keep_their_job_resources(name):
    """The eval settings (mem_mb_eval, runtime_eval, runtime_eval_tasks) and the eval threads default
    to what these jobs asked for before they existed: the train job's memory, time and threads."""
    profile = REPO_ROOT / "configs" / f"{name}.yaml"
    cfg = load_config(profile)
    wf = cfg.workflow
    assert (wf.mem_mb_eval, wf.runtime_eval, wf.runtime_eval_tasks, wf.gpus_per_train) == (0, 0, {}, 0)
    r = snakemake("-n", "--forceall", "--cores", "2", "--configfile", str(profile.relative_to(REPO_ROOT)))
    assert r.returncode == 0, r.stderr[-2000:]
    plan = planned_resources(r.stdout + r.stderr)
    threads = min(cfg.train.num_threads or 2, 2)
    train = (threads, "0", wf.mem_mb_train, wf.runtime_train * (len(wf.seeds) if wf.jobs == "per_method" else 1))
    assert plan["train"] == {train}
    assert plan["eval"] == {(threads, "0", wf.mem_mb_train, wf.runtime_train)}
    assert plan["prepare"] == {(min(getattr(cfg.prepare, "num_threads", 0) or 2, 2), "0", wf.mem_mb_train, wf.runtime_train)}


def test_eval_settings_set_eval_jobs_only(tmp_path):
    """mem_mb_eval / runtime_eval / runtime_eval_tasks reach the eval jobs (per task; a per_method job
    gets the sum over its seeds and tasks) and leave the train jobs alone."""
    cfg = yaml.safe_load((REPO_ROOT / "configs" / "tiny-ci.yaml").read_text())
    cfg["workflow"].update(mem_mb_eval=1500, runtime_eval=7, runtime_eval_tasks={"tiny_math": 11})
    seeds, tasks = len(cfg["workflow"]["seeds"]), cfg["eval"]["tasks"]
    path = tmp_path / "profile.yaml"
    for jobs in ("per_run", "per_method"):
        cfg["workflow"]["jobs"] = jobs
        path.write_text(yaml.safe_dump(cfg))
        r = snakemake("-n", "--forceall", "--cores", "2", "--configfile", str(path))
        assert r.returncode == 0, r.stderr[-2000:]
        plan = planned_resources(r.stdout + r.stderr)
        runtimes = {t for _, _, _, t in plan["eval"]}
        if jobs == "per_run":
            assert runtimes == {11, 7} if len(tasks) > 1 else {11}
        else:
            assert runtimes == {seeds * sum(11 if t == "tiny_math" else 7 for t in tasks)}
        assert {m for _, _, m, _ in plan["eval"]} == {1500}
        wf = load_config(path).workflow
        assert {(m, t) for _, _, m, t in plan["train"]} == {
            (wf.mem_mb_train, wf.runtime_train * (seeds if jobs == "per_method" else 1))}


def test_default_profile_is_tiny_and_shell_commands_call_tropd():
    r = snakemake("-n", "--forceall", "--printshellcmds")
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "Using workflow specific profile workflow/profiles/default" in out
    assert "Config file(s): ['" + str(REPO_ROOT / "configs" / "tiny.yaml") in out
    assert ("tropd train --config configs/tiny.yaml --method opd --seed 0,1,2"
            " --out results/tiny/runs/opd/seed{seed} > logs/tiny/train/opd.log 2>&1") in out
    assert ("tropd eval --config configs/tiny.yaml --model models/tiny/teacher"
            " --task tiny_math,tiny_code,tiny_instruct --seed 0,1,2"
            " --out results/tiny/evals/teacher/seed{seed}/{task}.json") in out
    assert "--model results/tiny/runs/tropd/seed{seed}/student" in out


def test_bad_profile_fails_at_load(tmp_path):
    bad = yaml.safe_load((REPO_ROOT / "configs" / "tiny.yaml").read_text())
    bad["train"]["steps"] = "ten"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    r = snakemake("-n", "--configfile", str(path))
    assert r.returncode != 0 and "'ten' is not of type 'integer'" in r.stdout + r.stderr
    r = snakemake("-n", "--config", "seed=1")
    assert r.returncode != 0 and "--config overrides are not supported" in r.stdout + r.stderr


# ----------------------------------------------------------------------------- schema


def validate(cfg: dict) -> dict:
    from snakemake.utils import validate as sm_validate

    sm_validate(cfg, str(SCHEMA))
    return cfg


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(extra=1), "Additional properties are not allowed ('extra'"),
    (lambda c: c["train"].update(lr="fast"), "'fast' is not of type 'number'"),
    (lambda c: c["train"].update(stpes=3), "('stpes' was unexpected)"),
    (lambda c: c["workflow"].update(seeds=[0, 0]), "has non-unique elements"),
    (lambda c: c["workflow"].update(methods=["teacher"]), "should not be valid"),
    (lambda c: c["prepare"].update(kind="smol"), "'student_hidden'"),
    (lambda c: c["eval"].update(tasks="tiny_math"), "is not of type 'array'"),
])
def test_schema_rejects_bad_configs(mutate, message):
    from snakemake.exceptions import WorkflowError

    cfg = yaml.safe_load((REPO_ROOT / "configs" / "tiny.yaml").read_text())
    validate(cfg)
    mutate(cfg)
    with pytest.raises(WorkflowError) as e:
        validate(cfg)
    assert message in str(e.value)


def test_schema_fills_defaults_like_runconfig():
    cfg = validate({"profile": "x"})
    d = dataclasses.asdict(RunConfig())
    for section in ("paths", "train", "eval", "workflow", "teacher", "method", "vllm"):
        assert cfg[section] == d[section], section


def _fields(cls) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls)


def _check_section(cls, schema: dict, where: str) -> None:
    props = schema["properties"]
    hints = _fields(cls)
    assert set(props) == set(hints), f"{where}: schema keys {sorted(props)} != RunConfig keys {sorted(hints)}"
    jtype = {int: "integer", float: "number", str: "string", bool: "boolean"}
    for name, tp in hints.items():
        p = props[name]
        if typing.get_origin(tp) is typing.Literal:
            assert set(p.get("enum", [p.get("const")])) <= set(typing.get_args(tp)), f"{where}.{name}"
        elif tp in jtype:
            assert p["type"] == jtype[tp], f"{where}.{name}"
        elif typing.get_origin(tp) is list:
            assert p["type"] == "array", f"{where}.{name}"


def test_schema_mirrors_runconfig():
    """Every RunConfig field is in the schema with a matching type, and nothing else is."""
    from tropd.config import ExternalPrepare, ModelSpec, SmolPrepare, TinyPrepare

    schema = yaml.safe_load(SCHEMA.read_text())
    top = schema["properties"]
    assert set(top) == set(_fields(RunConfig))
    for name, tp in _fields(RunConfig).items():
        if dataclasses.is_dataclass(tp) and name not in ("teacher", "student"):
            _check_section(tp, top[name], name)
    _check_section(ModelSpec, schema["$defs"]["model"], "teacher")
    branches = {b["then"]["properties"]["kind"]["const"]: b["then"] for b in top["prepare"]["allOf"]}
    for cls in (TinyPrepare, SmolPrepare, ExternalPrepare):
        _check_section(cls, branches[cls().kind], f"prepare[{cls().kind}]")


# ----------------------------------------------------------------------------- real runs


def ci_profile(root: Path, **sections) -> Path:
    """configs/tiny-ci.yaml cut down further, every path under `root`; `sections` update its sections."""
    cfg = yaml.safe_load((REPO_ROOT / "configs" / "tiny-ci.yaml").read_text())
    cfg["paths"] = {k: str(root / k) for k in ("data", "models", "results")}
    cfg["teacher"]["path"], cfg["student"]["path"] = str(root / "models/teacher"), str(root / "models/student")
    cfg["prepare"].update(n_train=60, n_test=5, teacher_steps=20, student_steps=10)
    cfg["train"].update(steps=8, checkpoint_every=2)
    cfg["eval"].update(tasks=["tiny_math"], limit=4)
    cfg["workflow"].update(methods=["opd"], seeds=[0, 1])
    for key, value in sections.items():
        cfg[key].update(value)
    path = root / "profile.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_snakemake(root: Path, profile: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    log = open(root / "snakemake.log", "a")
    return subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(REPO_ROOT / "workflow" / "Snakefile"),
                             "--configfile", str(profile), *args], cwd=root, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def outputs(root: Path) -> dict[Path, float]:
    """Every declared output that exists and that Snakemake has recorded as complete, with its mtime.

    A job's output can exist while Snakemake still marks it incomplete (the job wrote it, Snakemake
    has not yet seen the job end); a SIGKILL then makes Snakemake rightly run that job again.
    """
    import base64

    marks = root / ".snakemake" / "incomplete"
    pending = {base64.urlsafe_b64decode(f.name).decode() for f in marks.glob("*") if f.is_file()
               and f.name != "migration_underway"} if marks.is_dir() else set()
    found = [root / "models/.prepared", root / "results/preflight.json",
             *root.glob("results/runs/*/seed*/summary.json"), *root.glob("results/evals/*/seed*/*.json")]
    return {p: p.stat().st_mtime for p in found if p.is_file() and str(p) not in pending}


def wait_for(cond, timeout: float, proc: subprocess.Popen) -> None:
    import time

    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, "snakemake ended before the interruption point"
        assert time.time() < deadline, "timed out waiting for the interruption point"
        time.sleep(0.5)


def interrupt(proc: subprocess.Popen, sig: int) -> None:
    """Like Ctrl-C (SIGINT) or a dying machine (SIGKILL): the whole process group gets the signal."""
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)


@pytest.mark.slow
def test_interrupted_workflow_resumes_without_redoing_finished_jobs(tmp_path):
    """Ctrl-C in a training run, then a SIGKILL of everything, then a rerun: finished jobs keep
    their outputs untouched, the interrupted run resumes from its checkpoint, the tables appear."""
    import signal

    profile = ci_profile(tmp_path, workflow={"jobs": "per_run"})  # per-seed jobs: per-output mtimes
    ckpts = lambda: list(tmp_path.glob("results/runs/opd/seed*/checkpoints/*"))  # noqa: E731
    p = start_snakemake(tmp_path, profile, "--cores", "2")
    wait_for(lambda: ckpts() and len(outputs(tmp_path)) >= 3, 600, p)
    interrupt(p, signal.SIGINT)
    assert not list(tmp_path.glob(".snakemake/locks/*")), "Ctrl-C must release the lock"
    done = outputs(tmp_path)
    p = start_snakemake(tmp_path, profile, "--cores", "2")
    wait_for(lambda: set(outputs(tmp_path)) - set(done), 600, p)
    interrupt(p, signal.SIGKILL)
    done = outputs(tmp_path)
    snakefile = str(REPO_ROOT / "workflow" / "Snakefile")
    assert snakemake("--unlock", "-s", snakefile, "--configfile", str(profile), cwd=tmp_path).returncode == 0
    p = start_snakemake(tmp_path, profile, "--cores", "2")
    assert p.wait(timeout=900) == 0, (tmp_path / "snakemake.log").read_text()[-3000:]
    after = outputs(tmp_path)
    assert {k: after[k] for k in done} == done, "a finished job was run again"
    assert len(after) == 2 + 2 + 3 * 2  # flag, preflight, 2 runs, (opd, teacher, student) x 2 seeds
    logs = "".join(f.read_text() for f in tmp_path.glob("logs/tiny-ci/train/opd/seed*.log"))
    assert "resuming" in logs
    assert (tmp_path / "results/tables/main.md").is_file()
