"""Read a profile's result files (eval summaries, run summaries, metrics) for the tables and plots.

Layout (written by the workflow; see workflow/Snakefile):
    <results>/evals/{row}/seed{seed}/{task}.json   row = a method preset, "teacher" or "student"
    <results>/runs/{method}/seed{seed}/summary.json, metrics.jsonl, config.resolved.yaml

A table row averages seeds, so all of a row's files must come from one configuration. Each file
carries a config hash; a run's hash (tropd.config.run_hash, which leaves out the eval settings) covers
its seed too, so runs are compared by the hash of their resolved config with the seed set to 0. A run folder without config.resolved.yaml has no such hash
(its summary's own hash differs from seed to seed by design), so it is not compared. Two files of one
row that disagree stop the aggregation with a one-line error naming both: a table must never quietly
average an old result with a new one.

Each summary also records the package versions that produced it (tropd.versions; None in summaries
written before that block existed), which the provenance line under every table prints.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tropd.errors import UserError
from tropd.infra.io import read_jsonl

REFERENCES = ("teacher", "student")


@dataclass
class EvalResult:
    path: Path
    row: str
    seed: int
    task: str
    domain: str
    value: float  # headline metric, a fraction in [0, 1]
    config_hash: str | None
    code_version: str | None
    finished: float | None = None  # share of generations that ended with EOS (None: nothing generated)
    model: str | None = None  # the weights that were evaluated
    decoding: dict = field(default_factory=dict)  # k, temperature, max_new_tokens, limit
    n_items: int | None = None
    versions: dict | None = None  # package versions that produced it (tropd.versions); None: not recorded

    @property
    def deterministic(self) -> bool:
        """Greedy decoding (or log-likelihood scoring): the seed does not enter the result."""
        return self.decoding.get("temperature") == 0


@dataclass
class RunResult:
    path: Path  # the run folder
    method: str
    seed: int
    summary: dict
    row_hash: str | None  # seed-independent config hash (see module docstring)

    @property
    def versions(self) -> dict | None:
        v = self.summary.get("versions")
        return v if isinstance(v, dict) else None

    @property
    def diverged_step(self) -> int | None:
        return self.summary.get("diverged_step") if self.summary.get("status") == "diverged" else None

    def metrics(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        return read_jsonl(path) if path.is_file() else []


@dataclass
class Results:
    methods: list[str]
    seeds: list[int]
    tasks: list[str]
    evals: dict[tuple[str, int, str], EvalResult] = field(default_factory=dict)  # (row, seed, task)
    runs: dict[tuple[str, int], RunResult] = field(default_factory=dict)  # (method, seed)
    domains: dict[str, str] = field(default_factory=dict)  # task -> domain

    @property
    def rows(self) -> list[str]:
        return [*self.methods, *REFERENCES]

    def single_measurement(self, row: str) -> bool:
        """A reference row whose every eval is one model under greedy decoding and whose seeds all
        hold the same value (within 1e-9) for each task: its seeds repeat one measurement (tropd eval
        reuses it), so it counts once, not as n seeds that agree.

        Greedy evals whose values differ between seeds (nondeterministic kernels, evals run on other
        machines or batch sizes) are not one measurement: the row is then shown like a method's, as n
        seeds with an interval, which states the spread that was measured. Raising instead would
        stop the whole table over a reference row whose disagreement is real information; taking
        one seed's value (as before) would hide it. `greedy_disagreement` names such rows for the
        legend."""
        return self._greedy_seeds_agree(row) is True

    def greedy_disagreement(self, row: str) -> bool:
        """A reference row of greedy evals of one model whose seeds' values differ (see
        single_measurement)."""
        return self._greedy_seeds_agree(row) is False

    def _greedy_seeds_agree(self, row: str) -> bool | None:
        """None unless `row` is a reference row of greedy evals of one model per task; else whether
        every task's seeds hold one value (within 1e-9)."""
        got = [e for (r, _, _), e in self.evals.items() if r == row]
        if not (row in REFERENCES and got and all(e.deterministic for e in got)
                and len({(e.task, e.model) for e in got}) == len({e.task for e in got})):
            return None
        by_task: dict[str, list[float]] = {}
        for e in got:
            by_task.setdefault(e.task, []).append(e.value)
        return all(max(v) - min(v) <= 1e-9 for v in by_task.values())

    def versions(self, row: str) -> list[dict | None]:
        """The package versions each of the row's eval and run summaries recorded (None: none)."""
        found = [e.versions for (r, _, _), e in sorted(self.evals.items()) if r == row]
        return found + [r.versions for (m, _), r in sorted(self.runs.items()) if m == row]

    def eval_hash(self, row: str) -> str | None:
        hashes = {e.config_hash for (r, _, _), e in self.evals.items() if r == row and e.config_hash}
        return next(iter(hashes), None)

    def run_hash(self, row: str) -> str | None:
        hashes = {r.row_hash for (m, _), r in self.runs.items() if m == row and r.row_hash}
        return next(iter(hashes), None)

    def code_versions(self) -> list[str]:
        found = {e.code_version for e in self.evals.values()}
        found |= {r.summary.get("code_version") for r in self.runs.values()}
        # a full 40-hex commit and its short form name one version
        return sorted({v[:7] if re.fullmatch(r"[0-9a-f]{40}", v) else v for v in found if v})


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def read_eval(path: Path, row: str, seed: int, task: str) -> EvalResult:
    d = _read_json(path)
    try:
        primary = d["primary"]
        value = float(d["metrics"][primary]["mean"])
        domain = str(d["domain"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not an eval summary (needs domain, primary and metrics[primary].mean)") from None
    if d.get("task", task) != task:
        raise UserError(f"{path}: holds task {d['task']!r}, expected {task!r}")
    return EvalResult(path, row, seed, task, domain, value, d.get("config_hash"), d.get("code_version"),
                      _finished_share(path), d.get("model"), d.get("decoding") or {}, d.get("n_items"),
                      d["versions"] if isinstance(d.get("versions"), dict) else None)


def _finished_share(summary: Path) -> float | None:
    """Share of the samples beside `summary` that ended with EOS: a model caught in a repetition loop
    runs into max_new_tokens, which a score alone does not show."""
    from tropd.evaluate import samples_path

    path = samples_path(summary)
    if not path.is_file():
        return None
    flags = [r["finished"] for r in read_jsonl(path) if isinstance(r.get("finished"), bool)]
    return sum(flags) / len(flags) if flags else None


def seedless_hash(run_dir: Path, summary: dict) -> str | None:
    """Hash of the run's resolved config with the seed set to 0 (runs of one row share it); None
    (not compared) where the run has no config.resolved.yaml: the summary's own config_hash covers
    the seed, so it differs between the seeds of one row and cannot stand in for it."""
    from tropd.config import resolved_hash

    return resolved_hash(run_dir, seed=0)


def read_run(run_dir: Path, method: str, seed: int) -> RunResult:
    path = run_dir / "summary.json"
    s = _read_json(path)
    if s.get("status") not in ("finished", "diverged"):
        raise UserError(f"{path}: status must be 'finished' or 'diverged', got {s.get('status')!r}")
    if "seed" in s and s["seed"] != seed:
        raise UserError(f"{path}: holds seed {s['seed']}, expected {seed} from its folder name")
    return RunResult(run_dir, method, seed, s, seedless_hash(run_dir, s))


def _check_one_config(row: str, items: list[tuple[Path, str | None]], what: str) -> None:
    """All files of a row must name one config hash (files without a hash are not compared)."""
    first: dict[str, Path] = {}
    for path, h in items:
        if h is None:
            continue
        first.setdefault(h, path)
        if len(first) > 1:
            (h1, p1), (h2, p2) = list(first.items())[:2]
            raise UserError(f"row {row!r} mixes {what} configs: {p1} has config hash {h1} but {p2} has {h2}; "
                            f"rerun or delete the stale result")


def load_results(results_dir: Path, methods: list[str], seeds: list[int], tasks: list[str]) -> Results:
    """Every result file the profile's workflow writes that exists; missing ones are left out."""
    res = Results(list(methods), list(seeds), list(tasks))
    for row in res.rows:
        for seed in seeds:
            for task in tasks:
                path = results_dir / "evals" / row / f"seed{seed}" / f"{task}.json"
                if path.is_file():
                    e = read_eval(path, row, seed, task)
                    known = res.domains.setdefault(task, e.domain)
                    if known != e.domain:
                        raise UserError(f"{path}: task {task} has domain {e.domain!r} here but {known!r} elsewhere")
                    res.evals[(row, seed, task)] = e
            if row in methods:
                run_dir = results_dir / "runs" / row / f"seed{seed}"
                if (run_dir / "summary.json").is_file():
                    res.runs[(row, seed)] = read_run(run_dir, row, seed)
        _check_one_config(row, [(e.path, e.config_hash) for (r, _, _), e in res.evals.items() if r == row], "eval")
        _check_one_config(row, [(r.path / "summary.json", r.row_hash) for (m, _), r in res.runs.items() if m == row],
                          "training")
    if not res.evals:
        raise UserError(f"no eval summaries under {results_dir / 'evals'}; run the workflow (snakemake) first")
    return res


def write_audit(res: Results, dest: Path) -> None:
    """Under `dest`, what lets anyone recompute a table or a curve without retraining: each run's per-step
    metrics (gzip, mtime 0 so that the bytes depend on the content only), resolved config and summary,
    and each eval summary: dest/{row}/seed{s}/ and dest/{row}/seed{s}/evals/{task}.json."""
    import gzip
    import io
    import shutil

    from tropd.infra.io import atomic_write_bytes

    for (arm, seed), run in res.runs.items():
        d = dest / arm / f"seed{seed}"
        d.mkdir(parents=True, exist_ok=True)
        for name in ("config.resolved.yaml", "summary.json"):
            if (run.path / name).is_file():
                shutil.copyfile(run.path / name, d / name)
        src = run.path / "metrics.jsonl"
        if src.is_file():
            buf = io.BytesIO()
            with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
                f.write(src.read_bytes())
            atomic_write_bytes(d / "metrics.jsonl.gz", buf.getvalue())
    for (row, seed, task), e in res.evals.items():
        d = dest / row / f"seed{seed}" / "evals"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(e.path, d / f"{task}.json")
