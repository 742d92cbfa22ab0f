# Config loading and validation, the path layout, and the few helpers the rules share.
#
# The profile YAML is read twice: here (to expand methods x seeds x tasks) and by every `tropd`
# command (which gets the same file through --config). So exactly one file must describe the run:
# `--configfile configs/<profile>.yaml` replaces the default instead of being merged into it, and
# `--config key=value` is refused (the tropd commands would not see it).

import hashlib
import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tropd.config import ConfigError, RunConfig, build, load_config, settings_digest

REPO_ROOT = Path(workflow.basedir).resolve().parent
DEFAULT_CONFIGFILE = REPO_ROOT / "configs" / "tiny.yaml"
AT_ROOT = Path.cwd().resolve() == REPO_ROOT


def repo_path(rel):
    """A repository file as the tropd CLI finds it: relative at the root, absolute elsewhere."""
    p = REPO_ROOT / rel
    return os.path.relpath(p) if AT_ROOT else str(p)


if workflow.config_settings.config:
    raise WorkflowError(
        "tropd workflow: --config overrides are not supported (the tropd commands read the profile "
        "file only); copy the profile YAML, edit it and pass it with --configfile"
    )
if len(workflow.overwrite_configfiles) > 1:
    raise WorkflowError("tropd workflow: pass one --configfile (every tropd command reads one profile)")
if workflow.overwrite_configfiles:
    CONFIGFILE = Path(workflow.overwrite_configfiles[0])
else:
    CONFIGFILE = DEFAULT_CONFIGFILE

    configfile: str(DEFAULT_CONFIGFILE)


CFG = os.path.relpath(CONFIGFILE) if AT_ROOT and CONFIGFILE.resolve().is_relative_to(REPO_ROOT) else str(CONFIGFILE)

validate(config, "../schemas/config.schema.yaml")
try:  # the dataclass schema too: the same strict checks as every tropd command
    RUN_CONFIG = build(RunConfig, config)
    if config["workflow"]["train_parallel"] == "fsdp" and config["workflow"]["gpus_per_train"] > 1:
        # Every method's config, for what FSDP refuses (tropd.catalog.bind). Only here: it
        # imports torch, seconds that every job's parse of this file would pay.
        from tropd.catalog import bind

        for _m in config["workflow"]["methods"]:
            bind(load_config(CONFIGFILE, method=_m))
except ConfigError as e:
    raise WorkflowError(f"tropd workflow: {CONFIGFILE}: {e}") from None

PROFILE = config["profile"]
METHODS = config["workflow"]["methods"]
SEEDS = config["workflow"]["seeds"]
TASKS = config["eval"]["tasks"]
REFERENCES = ["teacher", "student"]  # evaluated like the methods, shown as reference rows

# tropd resolves relative paths against the repository root, Snakemake against its working
# directory: the two agree only at the root (or with absolute paths).
if not AT_ROOT:
    relative = [k for k, v in config["paths"].items() if not Path(v).is_absolute()]
    if relative:
        raise WorkflowError(
            f"tropd workflow: run snakemake at the repository root ({REPO_ROOT}) or make "
            f"paths.{relative[0]} in {CONFIGFILE} absolute"
        )

# ---------------------------------------------------------------------------- path layout
RESULTS = config["paths"]["results"]
MODELS = config["paths"]["models"]
LOGS = f"logs/{PROFILE}"
BENCH = f"{LOGS}/benchmarks"  # Snakemake's per-job wall time and peak memory (TSV)
PREPARED = f"{MODELS}/.prepared"  # flag written by Snakemake when `tropd prepare` succeeds
PREFLIGHT = f"{RESULTS}/preflight.json"
RUN_DIR = f"{RESULTS}/runs/{{method}}/seed{{seed}}"
RUN_SUMMARY = f"{RESULTS}/runs/{{method}}/seed{{seed}}/summary.json"
EVAL_JSON = f"{RESULTS}/evals/{{model}}/seed{{seed}}/{{task}}.json"
TABLES = f"{RESULTS}/tables"
PLOTS = f"{RESULTS}/plots"


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    method=_alternatives(METHODS),
    model=_alternatives(METHODS + REFERENCES),
    task=_alternatives(TASKS),
    seed=r"\d+",


# ---------------------------------------------------------------------------- rerun triggers
def settings(*sections):
    """Digest of config sections, used as a rule param: Snakemake reruns a job when it changes.

    Each rule digests only what changes its output, so e.g. a new eval setting reruns the evals,
    not the training runs. Only values that differ from the schema defaults count, so a key added
    to the schema later does not rerun every finished job.
    """
    return settings_digest(RUN_CONFIG, sections)


MODEL_SECTIONS = ("prepare", "teacher", "student")
# Everything tropd.config.run_hash covers: all but where files go, what to expand, and the evals.
TRAIN_SECTIONS = tuple(k for k in config if k not in ("paths", "workflow", "sweep", "eval"))


# ---------------------------------------------------------------------------- resources
RES = config["workflow"]
TRAIN_GPUS = RES["gpus_per_train"]
GPU = min(TRAIN_GPUS, 1)  # prepare, preflight and eval are single processes: one GPU at most
# A train job asks the scheduler for the torch threads it uses (train.num_threads; 0 = torch's
# default, every core), shared by its gpus_per_train processes. A one-GPU job (eval) asks for one
# GPU's share of them, THREADS // gpus_per_train: CPU threads in proportion to GPUs, so that on a
# machine with as many cores per GPU as a train job has, the GPUs, not the cores, bound how many jobs
# run at once (paper profiles: 8 threads per 4-GPU run, 2 per eval; `--cores 16 --resources gpu=8`
# runs 2 train or 8 eval jobs side by side). With no GPUs (tiny, smol) eval jobs ask for THREADS too.
THREADS = config["train"]["num_threads"] or workflow.cores
EVAL_THREADS = max(1, THREADS // TRAIN_GPUS) if TRAIN_GPUS > 1 else THREADS
# Eval jobs' memory and wall time (workflow.mem_mb_eval, runtime_eval, runtime_eval_tasks); 0 = the
# train values, which is what the CPU profiles use.
EVAL_MEM_MB = RES["mem_mb_eval"] or RES["mem_mb_train"]


def eval_runtime(task):
    """Minutes for one (model, seed, task) eval job."""
    return RES["runtime_eval_tasks"].get(task) or RES["runtime_eval"] or RES["runtime_train"]


def eval_runtime_per_method():
    """Minutes for a per_method eval job (every seed and task of a model, one after another);
    without eval settings of its own, runtime_train as before."""
    if not (RES["runtime_eval"] or RES["runtime_eval_tasks"]):
        return RES["runtime_train"]
    return len(SEEDS) * sum(eval_runtime(t) for t in TASKS)


# ---------------------------------------------------------------------------- input functions
def train_command(w):
    """`tropd train`, or with workflow.gpus_per_train > 1 one process per GPU, data parallel
    (configs/accelerate/ddp.yaml) or with the student sharded (fsdp.yaml): workflow.train_parallel.

    Runs sharing a node need distinct rendezvous ports: derived from the job's method and seed(s).
    """
    if TRAIN_GPUS > 1:
        launch = repo_path(f"configs/accelerate/{RES['train_parallel']}.yaml")
        key = f"{w.method}/{getattr(w, 'seed', SEED_LIST)}"
        port = 20000 + int(hashlib.sha256(key.encode()).hexdigest(), 16) % 20000
        return (f"accelerate launch --config_file {launch} --num_processes {TRAIN_GPUS}"
                f" --main_process_port {port} -m tropd.cli train")
    return "tropd train"


def eval_model_path(w):
    """The model an eval job scores: a reference from the config or a run's final student.

    Grouped jobs (workflow.jobs: per_method) have no seed wildcard: the path keeps a {seed}
    placeholder that `tropd eval --seed 0,1,2` fills in.
    """
    if w.model in REFERENCES:
        return config[w.model]["path"]
    seed = getattr(w, "seed", "{seed}")
    return f"{RUN_DIR.format(method=w.model, seed=seed)}/student"


def eval_input(w):
    if w.model in REFERENCES:
        return ancient(PREPARED)
    if hasattr(w, "seed"):
        return RUN_SUMMARY.format(method=w.model, seed=w.seed)
    return expand(RUN_SUMMARY, method=w.model, seed=SEEDS)


SEED_LIST = ",".join(str(s) for s in SEEDS)
