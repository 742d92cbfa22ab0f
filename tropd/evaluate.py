"""`tropd eval` (generate with a model, then score) and `tropd score` (score completions from a file).

Both write, atomically, a per-sample JSONL beside OUT (OUT with .json replaced by .samples.jsonl)
and the summary JSON OUT that the aggregate step reads:

  {"task", "domain", "model", "n_items", "n_samples", "primary", "metrics": {name: {"mean", "ci95"}},
   "decoding": {"k", "temperature", "max_new_tokens", "seed", "limit", "backend"}, "tokens_generated",
   "config_hash", "code_version", "versions", "wall_s"}

Metric values are fractions in [0, 1]; ci95 is a seeded percentile bootstrap over items
(tropd.eval.stats). `score` cannot know how the completions were decoded: its decoding block has
k = the fewest samples of any id, and null temperature / max_new_tokens / seed. `backend` is the
generator (eval.backend: hf, or vllm, tropd.eval.vllm_generate); log-likelihood tasks (MMLU) always
score with the HF model. `tokens_generated` counts the tokens this task generated in this process:
0 for scored files, log-likelihood tasks, and a greedy evaluation reused from the same model's first
seed. Over `wall_s` (which, for a job's first generated task, includes starting the model or
engine, and always includes grading) it is a lower bound on the decoding rate, to size
`workflow.runtime_eval` from a first job. `versions` are the
packages that produced the numbers (tropd.versions.package_versions: torch, transformers, the
graders' libraries, whether NLTK's punkt_tab data was there); `tropd aggregate` prints them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from tropd.config import REPO_ROOT, ModelSpec, RunConfig, code_version, config_hash, load_config
from tropd.errors import UserError
from tropd.infra.io import atomic_write_json, atomic_write_jsonl, read_jsonl


def samples_path(out: str | Path) -> Path:
    out = str(out)
    return Path(out[: -len(".json")] + ".samples.jsonl" if out.endswith(".json") else out + ".samples.jsonl")


def _config_path(path: str) -> Path | None:
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_absolute() and (REPO_ROOT / p).is_file():
        return REPO_ROOT / p
    return None


def _load_cfg(path: str, required: bool) -> RunConfig | None:
    p = _config_path(path)
    if p is None:
        if required:
            raise UserError(f"config file not found: {path}")
        return None
    return load_config(p)


def _model_spec(cfg: RunConfig, model: str) -> ModelSpec:
    """`eval.dtype` for every model; the GGUF file and device of the profile's teacher/student spec
    when --model is one of them."""
    target = Path(model).resolve()
    for spec in (cfg.teacher, cfg.student):
        if spec.path and cfg.resolve(spec.path).resolve() == target:
            return ModelSpec(path=str(target), gguf_file=spec.gguf_file, dtype=cfg.eval.dtype, device=spec.device)
    return ModelSpec(path=model, dtype=cfg.eval.dtype)


def _write(out: str, task, rows: list[dict], per_item: list[list[dict]], model: str | None,
           decoding: dict, cfg: RunConfig | None, t0: float, generated: bool = True) -> dict:
    from tropd.eval.graders import summarize
    from tropd.versions import package_versions

    metrics = summarize(task, per_item)
    summary = {
        "task": task.name, "domain": task.domain, "model": model, "n_items": len(per_item),
        "n_samples": len(rows), "primary": task.primary, "metrics": metrics, "decoding": decoding,
        "tokens_generated": sum(r.get("n_tokens", 0) for r in rows) if generated else 0,
        "config_hash": config_hash(cfg) if cfg is not None else None, "code_version": code_version(),
        "versions": package_versions(), "wall_s": round(time.time() - t0, 3),
    }
    atomic_write_jsonl(samples_path(out), rows)
    atomic_write_json(out, summary)
    m = metrics[task.primary]
    print(f"{task.name}: {task.primary} = {m['mean']:.4f} [{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}] "
          f"({len(per_item)} items, {len(rows)} samples, {summary['wall_s']:.1f} s) -> {out}")
    for name in ("sandbox_errors", "prompts_dropped"):  # samples scored as fails / prompts left out
        if metrics.get(name, {}).get("count"):
            print(f"{task.name}: {name} = {metrics[name]['count']} of {metrics[name]['of']}", file=sys.stderr)
    return summary


def _per_item(samples: list[tuple[int, str]], results: list[dict]) -> list[list[dict]]:
    groups: dict[int, list[dict]] = defaultdict(list)
    for (i, _), r in zip(samples, results):
        groups[i].append(r)
    return [groups[i] for i in sorted(groups)]


def eval_main(args: argparse.Namespace) -> int:
    """Generate and score one or more tasks with one model load (tasks share the process start-up,
    which dominates small evaluations)."""
    t0 = time.time()
    from tropd.eval.tasks import get_task, load_items

    cfg = _load_cfg(args.config, required=True)
    names = [t for t in args.task.split(",") if t]
    if not names:
        raise UserError("--task: no task given")
    if len(names) > 1 and "{task}" not in args.out:
        raise UserError(f"--out {args.out}: several tasks need a {{task}} placeholder in --out")
    # Generated tasks before log-likelihood ones: with eval.backend vllm, one switch of engine at most.
    tasks = sorted((get_task(n) for n in names), key=lambda t: t.grader == "mmlu")
    e = cfg.eval
    k = args.k if args.k is not None else e.k
    temperature = args.temperature if args.temperature is not None else e.temperature
    max_new = args.max_new_tokens if args.max_new_tokens is not None else e.max_new_tokens
    if k < 1 or max_new < 1 or temperature < 0 or (args.limit is not None and args.limit < 0):
        raise UserError("need --k >= 1, --max-new-tokens >= 1, --temperature >= 0, --limit >= 0")
    # --limit applies to every task; otherwise eval.task_limits, then eval.limit
    limits = [args.limit if args.limit is not None else e.task_limits.get(t.name, e.limit) for t in tasks]
    if k > 1 and temperature == 0:
        raise UserError(f"--k {k} samples need --temperature > 0")
    from tropd.cli import parse_seeds

    seeds = parse_seeds(args.seed)
    if len(seeds) > 1 and "{seed}" not in args.out:
        raise UserError(f"--out {args.out}: several seeds need a {{seed}} placeholder in --out")
    from tropd.models import check_exists

    for seed in seeds:  # the model first: before prepare, that is the error to meet, not the data's
        check_exists(_model_spec(cfg, args.model.replace("{seed}", str(seed))), "--model",
                     "a model folder: a run's student/ or a prepared profile's models")
    items_by_task = [load_items(task, cfg, n) for task, n in zip(tasks, limits)]  # every input checked first
    if e.backend == "vllm" and any(t.grader != "mmlu" for t in tasks):
        from tropd.eval.vllm_generate import import_vllm

        import_vllm()  # a missing `gpu` extra fails here, before any model is loaded

    import torch

    if cfg.train.num_threads > 0:
        # A GPU profile's eval job gets one GPU's share of the train threads (workflow/rules/common.smk
        # EVAL_THREADS), which Snakemake passes as OMP_NUM_THREADS: stay within it.
        job = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        torch.set_num_threads(min(cfg.train.num_threads, job) if job > 0 else cfg.train.num_threads)
    loaded, done = None, {}
    for seed in seeds:
        path = args.model.replace("{seed}", str(seed))
        if loaded is None or loaded.path != path:  # reference models are the same for every seed
            if loaded is not None:
                loaded.close()
            loaded = _Model(cfg, path, [[it.prompt for it in items] for items in items_by_task], max_new)
        for task, items, limit in zip(tasks, items_by_task, limits):
            t1 = time.time()
            out = args.out.replace("{seed}", str(seed)).replace("{task}", task.name)
            # Greedy decoding does not depend on the seed: the same model's other seeds reuse the result.
            reuse = done.get((path, task.name)) if temperature == 0 and k == 1 else None
            rows, per_item, decoding = reuse or _eval_task(task, items, loaded, seed, cfg, k,
                                                           temperature, max_new, limit)
            done[(path, task.name)] = (rows, per_item, decoding)
            _write(out, task, rows, per_item, path, {**decoding, "seed": seed}, cfg, t1, generated=not reuse)
    print(f"eval: {len(seeds)} seed(s) x {len(tasks)} task(s) in {time.time() - t0:.1f} s")
    return 0


class _Model:
    """One evaluated model, each part loaded on first use: the HF model (eval.backend hf, and the
    log-likelihood tasks under either backend) and the vLLM engine (eval.backend vllm), whose context
    is sized for the longest prompt of the job's tasks plus `max_new` tokens. The engine takes most of
    the GPU, so loading one part frees the other (eval_main runs the generated tasks first)."""

    def __init__(self, cfg: RunConfig, path: str, prompt_lists: list[list[str]], max_new: int):
        from tropd.models import check_exists, load_tokenizer

        self.cfg, self.path, self.spec = cfg, path, _model_spec(cfg, path)
        check_exists(self.spec, "--model", "a model folder: a run's student/ or a prepared profile's models")
        self.tok = load_tokenizer(self.spec)
        self.prompt_lists, self.max_new = prompt_lists, max_new
        self._hf = self._llm = None

    @property
    def hf(self):
        if self._hf is None:
            from tropd.models import load_model

            self.close()
            self._hf = load_model(self.spec, role="--model")
        return self._hf

    @property
    def llm(self):
        if self._llm is None:
            from tropd.eval.vllm_generate import engine_args, longest_prompt, make_engine
            from tropd.models import local_path

            if self.spec.gguf_file:
                raise UserError(f"eval.backend=vllm: {self.path} is a GGUF file; evaluate it with eval.backend=hf")
            e, v = self.cfg.eval, self.cfg.vllm
            self.close()
            context = longest_prompt(self.tok, self.prompt_lists) + self.max_new
            self._llm = make_engine(engine_args(
                local_path(self.spec.path), e.dtype, context, e.gpu_memory_utilization, v.enforce_eager,
                v.engine_kwargs))
        return self._llm

    def close(self) -> None:
        """Free the GPU for the other part, or for the next model (a per_method job evaluates one
        model per seed)."""
        from tropd.infra.vllm_engine import release_gpu, shutdown

        llm, self._hf, self._llm = self._llm, None, None
        if llm is not None:
            shutdown(llm)  # its child process exits, and the memory with it
        del llm  # release_gpu frees only what nothing references
        release_gpu()


def code_mode(task, tok) -> str | None:
    """How an evalplus task's generations are read (graders.code.MODES), from how they were made:
    "chat" where the tokenizer has a chat template (the model answers the instruction to write a
    script), "continuation" where it has none (the model continues the problem's prompt, as evalplus
    prompts base models) and for the tiny tasks (their models were trained to continue it); None
    for other tasks."""
    if task.grader != "evalplus":
        return None
    if task.name.startswith("tiny_") or not getattr(tok, "chat_template", None):
        return "continuation"
    return "chat"


def _eval_task(task, items, model: _Model, seed, cfg, k, temperature, max_new, limit):
    """Generate (or score log-likelihoods) and grade: (rows, per-item results, decoding settings)."""
    e = cfg.eval
    tok = model.tok
    if task.grader == "mmlu":  # log-likelihood scoring: nothing is generated
        from tropd.eval.graders import mmlu

        results = mmlu.loglik_eval(model.hf, tok, items, e.batch_size, seed)
        samples = [(i, r["pred"]) for i, r in enumerate(results)]
        rows = [{"id": items[i].id, "sample": 0, "completion": text, **r}
                for (i, text), r in zip(samples, results)]
        decoding = {"k": 1, "temperature": 0.0, "max_new_tokens": 0, "seed": seed, "limit": limit,
                    "backend": "hf"}
    else:
        from tropd.eval.graders import grade

        prompts, ids = [it.prompt for it in items], [it.id for it in items]
        mode = code_mode(task, tok)
        if mode == "continuation" and not task.name.startswith("tiny_"):
            prompts = [it.ref["prompt"] for it in items]  # a base model continues the problem itself
        if e.backend == "vllm":
            from tropd.eval.vllm_generate import generate_vllm

            gens = generate_vllm(model.llm, tok, prompts, k, temperature, max_new, seed, task.name, ids)
        else:
            from tropd.eval.generate import generate

            gens = generate(model.hf, tok, prompts, k, temperature, max_new, seed, task.name, ids, e.batch_size)
        samples = [(g.item, g.text) for g in gens]
        results = grade(task, items, samples, [mode] * len(samples) if mode else None)
        rows = [{"id": items[g.item].id, "sample": g.sample, "completion": g.text, "n_tokens": g.n_tokens,
                 "finished": g.finished, **({"code_mode": mode} if mode else {}), **r}
                for g, r in zip(gens, results)]
        decoding = {"k": k, "temperature": float(temperature), "max_new_tokens": max_new,
                    "seed": seed, "limit": limit, "backend": e.backend}
    return rows, _per_item(samples, results), decoding


def score_main(args: argparse.Namespace) -> int:
    t0 = time.time()
    from tropd.eval.graders import grade
    from tropd.eval.tasks import get_task, load_items

    task = get_task(args.task)
    cfg = _load_cfg(args.config, required=task.name.startswith("tiny_"))
    items = load_items(task, cfg)
    index = {it.id: i for i, it in enumerate(items)}
    lines = read_jsonl(args.samples)
    if not lines:
        raise UserError(f"{args.samples}: no samples")
    samples, modes, unknown, counts = [], [], [], defaultdict(int)
    code = task.grader == "evalplus"
    chat = bool(getattr(args, "chat", False))
    for n, row in enumerate(lines, 1):
        # evalplus's fields: a `solution` is the whole program, run as is (it wins over a completion);
        # a `completion` continues the prompt (or, with --chat, is a chat answer to sanitize)
        if code and "id" in row and isinstance(row.get("solution"), str):
            text, mode = row["solution"], "solution"
        elif "id" in row and isinstance(row.get("completion"), str):
            text, mode = row["completion"], "chat" if chat else "completion"
        else:
            raise UserError(f"{args.samples}: line {n} needs 'id' and a string 'completion'"
                            + (" or 'solution'" if code else ""))
        key = str(row["id"])
        if key not in index:
            unknown.append(key)
            continue
        samples.append((index[key], text))
        modes.append(mode)
        counts[key] += 1
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        raise UserError(f"{args.samples}: {len(unknown)} id(s) not in task {task.name}: {shown}")
    results = grade(task, items, samples, modes if code else None)
    seen: dict[int, int] = defaultdict(int)
    rows = []
    for (i, text), r in zip(samples, results):
        rows.append({"id": items[i].id, "sample": seen[i], "completion": text, **r})
        seen[i] += 1
    decoding = {"k": min(counts.values()), "temperature": None, "max_new_tokens": None, "seed": None,
                "limit": 0}
    _write(args.out, task, rows, _per_item(samples, results), None, decoding, cfg, t0)
    return 0


if __name__ == "__main__":
    from tropd.cli import main

    sys.exit(main(sys.argv[1:]))
