"""`tropd` command line: one subcommand per pipeline stage; every Snakemake rule calls one.

Errors the user can fix (bad config, missing files, mismatched models) exit 2 with one line on
stderr, before any compute. Modules are imported lazily so `tropd --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/tiny.yaml", help="profile YAML (default: tiny)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tropd", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("prepare", help="build the profile's data, tokenizer and models (idempotent)")
    _add_config(p)
    p.add_argument("overrides", nargs="*", help="key=value config overrides")

    p = sub.add_parser("preflight", help="check teacher/student compatibility (vocab, template, KL 0)")
    _add_config(p)
    p.add_argument("--out", help="write the report JSON here")
    p.add_argument("overrides", nargs="*")

    p = sub.add_parser("train", help="distil the student with one method")
    _add_config(p)
    p.add_argument("--method", required=True, help="method preset: a name in configs/methods/, or a YAML path")
    p.add_argument("--seed", required=True, help="seed, or comma-separated seeds run one after another")
    p.add_argument("--out", required=True, help="run directory (resumes if it exists); {seed} for several")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")

    p = sub.add_parser("eval", help="generate with a model and score a task")
    _add_config(p)
    p.add_argument("--model", required=True, help="HF model folder")
    p.add_argument("--task", required=True,
                   help="task, or comma-separated tasks scored with one model load (--out then needs {task})")
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", default="0", help="seed, or comma-separated seeds ({seed} in --model / --out)")
    p.add_argument("--out", required=True,
                   help="summary JSON (samples go beside it); may contain {task}")

    p = sub.add_parser("score", help="score generations from a JSONL file")
    _add_config(p)
    p.add_argument("--task", required=True)
    p.add_argument("--samples", required=True,
                   help="JSONL rows with 'id' and 'completion' (code tasks: or 'solution', a whole program)")
    p.add_argument("--out", required=True)
    p.add_argument("--chat", action="store_true",
                   help="code tasks: the completions are chat answers (sanitized as evalplus does, run "
                        "whole) rather than continuations of the prompt")

    p = sub.add_parser("aggregate", help="tables and plots from eval summaries")
    _add_config(p)
    p.add_argument("--out", default=None, help="output folder (default: results/<profile>)")
    p.add_argument("overrides", nargs="*")

    sub.add_parser("methods", help="every --method preset: the function it runs and the parameters it sets")

    p = sub.add_parser("bench", help="speed and memory benchmarks -> results/bench/")
    p.add_argument("--out", default="results/bench")
    p.add_argument("--quick", action="store_true", help="small sizes (for tests)")
    p.add_argument("--backends", metavar="MODEL_DIR",
                   help="instead: rollout tokens/s of the vllm against the hf backend on this model (GPU)")
    p.add_argument("--gpu", action="store_true",
                   help="instead: the training loop at paper-deepseek shapes on one GPU (tropd.benchlib.gpu)")
    p.add_argument("--steps", type=int, default=None, help="--gpu: training steps (default 3; 0 warms up)")
    p.add_argument("--parts", default=None, help="--gpu: a subset of matmul,loss,decode,train (default all)")
    p.add_argument("--peers", action="store_true",
                   help="instead: tropd against TRL on the same work (pip install -e '.[peers]'; tropd.benchlib.peers)")
    p.add_argument("--roofline", action="store_true",
                   help="instead: each phase of a training step against this CPU's matmul ceiling (tropd.benchlib.roofline)")
    p.add_argument("--roofline-steps", type=int, default=6, help="--roofline: training steps")
    p.add_argument("--profile", default="configs/tiny.yaml",
                   help="--peers / --roofline: the profile whose models and data are used")
    p.add_argument("--peer-steps", type=int, default=8, help="--peers: training steps a run")
    p.add_argument("--peer-repeats", type=int, default=3, help="--peers: runs a side, alternating order")
    p.add_argument("--peer-pairs", default="opd,gkd", help="--peers: a subset of opd,gkd")
    p.add_argument("--threads", type=int, default=1, help="--peers / --roofline: torch threads (of each side)")
    p.add_argument("overrides", nargs="*", help="--peers / --roofline: key=value on the profile")
    p.add_argument("--rows", type=int, default=256, help="--backends: sequences per rollout")
    p.add_argument("--max-new", type=int, default=1024, help="--backends: new tokens per sequence")
    p.add_argument("--repeats", type=int, default=3, help="--backends: timed rounds")
    return ap


# subcommand -> module with `main(args) -> int`
_COMMANDS = {
    "prepare": "tropd.prepare",
    "preflight": "tropd.preflight",
    "train": "tropd.train",
    "eval": "tropd.evaluate",
    "score": "tropd.evaluate",
    "aggregate": "tropd.aggregate",
    "methods": "tropd.cli",
    "bench": "tropd.bench",
}


def methods_main(args: argparse.Namespace) -> int:
    """Every name `--method` accepts (a preset, configs/methods/<name>.yaml), the registered function it
    runs, the parameters the preset sets (the rest keep the function's defaults) and what it is."""
    from tropd.config import REPO_ROOT, method_preset
    from tropd.catalog import get_method

    for path in sorted((REPO_ROOT / "configs" / "methods").glob("*.yaml")):
        m = method_preset(path.stem).get("method", {})
        fn = get_method(m.get("name", path.stem))
        params = ", ".join(f"{k}={v}" for k, v in (m.get("params") or {}).items()) or "(defaults)"
        print(f"{path.stem:16s} -> {fn.name:12s} {params}\n{'':20s}{fn.description}  [{fn.reference}]")
    return 0


def parse_seeds(text: str) -> list[int]:
    """`--seed 3` or `--seed 0,1,2` (one process for several runs: start-up is paid once)."""
    from tropd.errors import UserError

    try:
        seeds = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--seed {text}: expected an integer or comma-separated integers") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserError(f"--seed {text}: expected distinct non-negative integers")
    return seeds


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from tropd.errors import ConfigError
    from tropd.errors import UserError

    try:
        if args.cmd == "methods":
            return methods_main(args)
        mod = importlib.import_module(_COMMANDS[args.cmd])
        fn = getattr(mod, f"{args.cmd}_main", None) or mod.main
        return int(fn(args) or 0)
    except (ConfigError, UserError) as e:
        print(f"tropd {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unwritable output, full disk: name the file, keep it one line
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"tropd {args.cmd}: error: cannot write or read{where}: {e.strerror or e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
