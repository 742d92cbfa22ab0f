"""The paper's tables as data: Table 4 (main: methods x benchmarks, domain averages, cost) and
Table 5 (ablation: outlier objective x guidance).

A `Table` is a list of rows, each a dict of `Cell`s keyed by column; tropd.report.render turns it
into Markdown, CSV and LaTeX. Every score cell is a mean over seeds with a 95% Student-t interval
(tropd.report.stats); averages are taken per seed first (over the benchmarks of a domain, or over
all benchmarks, as the paper's Avg), then their interval over seeds. The reference rows (teacher,
untrained student) under greedy decoding are one measurement, whatever the number of seeds, when
every seed holds the same value; greedy evals that differ between seeds are shown over seeds, with
an interval, and the legend says so (tropd.report.collect.Results.single_measurement).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tropd.eval.tasks import TASKS
from tropd.report.collect import Results
from tropd.report.stats import Estimate, over_seeds

METHOD_LABELS = {
    "opd": "OPD", "tropd": "TrOPD", "tropd_mask": "TrOPD Mask (+guidance)",
    "tropd_clip": "TrOPD Clip (+guidance)", "mask_outlier": "Mask Outlier", "clip_outlier": "Clip Outlier",
    "fkl_outlier": "FKL Outlier", "topk_fkl": "Top-k FKL", "jsd": "JSD", "entropy_opd": "Entropy OPD",
    "eopd": "EOPD", "reopold": "REOPOLD", "reopold_2stage": "REOPOLD (two-stage)", "trb": "TRB",
    "gkd": "GKD", "seqkd": "SeqKD", "erpd": "ERPD",
    "tropd_g_fixed": "TrOPD (fixed prefix length)", "tropd_g_allguided": "TrOPD (every rollout guided)",
    "tropd_g_tfrac": "TrOPD (prefix as share of teacher answer)",
    "tropd_g_sepnorm": "TrOPD (prefix tokens normalised apart)",
    "teacher": "Teacher", "student": "Student (untrained)",
}
TASK_LABELS = {
    "tiny_math": "Math (syn.)", "tiny_code": "Code (syn.)", "tiny_instruct": "Instruct (syn.)",
    "smol_wordprob": "Word problems",
    "gsm8k": "GSM8K", "math500": "MATH-500", "aime24": "AIME24", "aime25": "AIME25", "humaneval": "HumanEval",
    "humanevalplus": "HumanEval+", "mbpp": "MBPP", "mbppplus": "MBPP+", "ifeval": "IFEval", "ifbench": "IFBench",
    "mmlu": "MMLU",
}
DOMAIN_ORDER = ["math", "code", "general", "instruct"]
# Table 5: preset -> (what the objective does on outlier tokens, teacher-prefix guidance)
ABLATION = {
    "opd": ("log r (OPD)", "no"), "mask_outlier": ("0 (mask)", "no"), "clip_outlier": ("τ (clip)", "no"),
    "topk_fkl": ("top-k FKL, all tokens", "no"), "fkl_outlier": ("top-k FKL", "no"),
    "tropd_mask": ("0 (mask)", "yes"), "tropd_clip": ("τ (clip)", "yes"), "tropd": ("top-k FKL", "yes"),
}
COST = [  # column key, label, summary key, unit formatter
    ("tokens_generated", "Tokens gen.", "tokens_generated", "count"),
    ("teacher_tokens_scored", "Teacher tok.", "teacher_tokens_scored", "count"),
    ("train_time", "Train time", "wall_s", "seconds"),
    ("peak_mem", "Peak mem.", "peak_mem_mb", "mb"),
]


def label(name: str) -> str:
    return METHOD_LABELS.get(name, name)


@dataclass
class Column:
    key: str
    label: str
    kind: str  # "text" | "task" | "domain" | "overall" | "cost"
    unit: str = "percent"  # "percent" | "count" | "seconds" | "mb" | "text"


@dataclass
class Cell:
    est: Estimate | None = None
    text: str | None = None  # fixed text (descriptor columns); else formatted from est
    note: str = ""  # appended in parentheses, e.g. "diverged at step 37 in 1/3 seeds"
    single: bool = False  # one measurement by design (a greedy reference row): no interval, no n=


@dataclass
class Row:
    key: str
    label: str
    cells: dict[str, Cell] = field(default_factory=dict)
    run_hash: str | None = None
    eval_hash: str | None = None
    diverged: list[tuple[int, int]] = field(default_factory=list)  # (seed, step)
    versions: list[dict | None] = field(default_factory=list)  # per result file (None: not recorded)


@dataclass
class Table:
    name: str
    columns: list[Column]
    rows: list[Row]
    n_seeds: int  # seeds configured (cells with fewer say n=...)
    notes: list[str] = field(default_factory=list)
    provenance: str = ""


def per_seed(res: Results, row: str, tasks: list[str]) -> list[float]:
    """Mean over `tasks` for every seed that has all of them (the first such seed only, for a row
    whose seeds repeat one measurement)."""
    vals = []
    for seed in res.seeds:
        got = [res.evals.get((row, seed, t)) for t in tasks]
        if all(got):
            vals.append(sum(e.value for e in got) / len(got))
    return vals[:1] if res.single_measurement(row) else vals


def score_columns(res: Results) -> list[Column]:
    """Benchmarks, then the average of each domain with two or more of them, then the overall Avg."""
    cols = [Column(t, TASK_LABELS.get(t, t), "task") for t in res.tasks]
    by_domain = domain_tasks(res)
    for d, ts in by_domain.items():
        if len(ts) > 1:
            cols.append(Column(f"avg_{d}", f"{d.capitalize()} avg", "domain"))
    if len(res.tasks) > 1:
        cols.append(Column("avg", "Avg", "overall"))
    return cols


def domain_tasks(res: Results) -> dict[str, list[str]]:
    found = {res.domains[t] for t in res.tasks if t in res.domains}
    order = [d for d in DOMAIN_ORDER if d in found] + sorted(found - set(DOMAIN_ORDER))
    return {d: [t for t in res.tasks if res.domains.get(t) == d] for d in order}


def score_cells(res: Results, row: str) -> dict[str, Cell]:
    by_domain = domain_tasks(res)
    single = res.single_measurement(row)
    cells = {t: Cell(over_seeds(per_seed(res, row, [t])), single=single) for t in res.tasks}
    for d, ts in by_domain.items():
        if len(ts) > 1:
            cells[f"avg_{d}"] = Cell(over_seeds(per_seed(res, row, ts)), single=single)
    if len(res.tasks) > 1:
        cells["avg"] = Cell(over_seeds(per_seed(res, row, res.tasks)), single=single)
    return cells


def _diverged(res: Results, method: str) -> list[tuple[int, int]]:
    return [(s, r.diverged_step) for (m, s), r in sorted(res.runs.items())
            if m == method and r.diverged_step is not None]


def diverged_note(diverged: list[tuple[int, int]], n_runs: int) -> str:
    if not diverged:
        return ""
    steps = ", ".join(str(step) for _, step in diverged)
    word = "step" if len(diverged) == 1 else "steps"
    return f"diverged at {word} {steps} in {len(diverged)}/{n_runs} seeds"


def score_legend(res: Results, what: str = "Scores in %") -> str:
    n_seeds = len(res.seeds)
    if n_seeds == 1:
        return f"{what}, one seed (n=1): no interval"
    text = f"{what}: mean ± half-width of the 95% Student-t interval over seeds (n={n_seeds} unless marked)"
    refs = [label(r) for r in ("teacher", "student") if res.single_measurement(r)]
    if refs:
        text += f"; {' and '.join(refs)}: one greedy evaluation, the same for every seed, so no interval"
    differ = [label(r) for r in ("teacher", "student") if res.greedy_disagreement(r)]
    if differ:
        text += (f"; {' and '.join(differ)}: greedy evaluations that differ between seeds, so shown over "
                 f"seeds with an interval")
    return text


def eval_note(res: Results) -> str:
    """What each benchmark column measured: items per task and the decoding, from the eval summaries."""
    parts, decodings = [], set()
    for t in res.tasks:
        got = [e for (_, _, tk), e in res.evals.items() if tk == t]
        sizes = sorted({e.n_items for e in got if e.n_items is not None})
        if sizes:
            parts.append(f"{TASK_LABELS.get(t, t)} {'/'.join(map(str, sizes))}")
        # 0 new tokens: log-likelihood, nothing decoded. Summaries from before eval.backend are HF's.
        decodings |= {(e.decoding.get("k"), e.decoding.get("temperature"), e.decoding.get("max_new_tokens"),
                       e.decoding.get("backend", "hf")) for e in got if e.decoding.get("max_new_tokens")}
    if not parts:
        return ""
    how = "; ".join(f"k={k}, temperature {temp:g}, up to {m} new tokens" + (" (vLLM)" if b == "vllm" else "")
                    for k, temp, m, b in sorted(decodings))
    spread = [TASK_LABELS.get(t, t) for t in res.tasks if t in TASKS and TASKS[t].subset == "spread"]
    rule = "where fewer than the test set: its first items" + (
        f"; {', '.join(spread)}: items spread evenly over the file, which is sorted by subject" if spread else "")
    return f"Items per benchmark: {', '.join(parts)} ({rule}). Generation: {how or 'none'}."


def _row(res: Results, key: str, with_cost: bool) -> Row:
    row = Row(key, label(key), score_cells(res, key), res.run_hash(key), res.eval_hash(key),
              versions=res.versions(key))
    if key in res.methods:
        row.diverged = _diverged(res, key)
        n_runs = sum(1 for (m, _) in res.runs if m == key)
        last = list(row.cells)[-1]  # the overall average (or the only benchmark)
        row.cells[last].note = diverged_note(row.diverged, n_runs)
        if with_cost:
            for col, _, skey, _ in COST:
                vals = [float(r.summary[skey]) for (m, _), r in res.runs.items() if m == key and skey in r.summary]
                row.cells[col] = Cell(over_seeds(vals))
    return row


def main_table(res: Results) -> Table:
    cols = [Column("method", "Method", "text", "text"), *score_columns(res)]
    cols += [Column(c, lab, "cost", unit) for c, lab, _, unit in COST]
    rows = [_row(res, k, with_cost=True) for k in ("student", "teacher", *res.methods)]
    for r in rows:
        r.cells["method"] = Cell(text=r.label)
    notes = [score_legend(res) + "; cost columns: mean over seeds.", *filter(None, [eval_note(res)])]
    if any(r.diverged for r in rows):
        notes.append("Diverged runs are scored at their last good weights.")
    return Table("main", cols, rows, len(res.seeds), notes)


def ablation_table(res: Results) -> Table:
    cols = [Column("method", "Method", "text", "text"), Column("outlier", "Outlier objective", "text", "text"),
            Column("guidance", "Guidance", "text", "text"), *score_columns(res)]
    rows = []
    for key in ("student", *[m for m in ABLATION if m in res.methods]):
        r = _row(res, key, with_cost=False)
        outlier, guidance = ABLATION.get(key, ("–", "–"))
        r.cells.update(method=Cell(text=r.label), outlier=Cell(text=outlier), guidance=Cell(text=guidance))
        rows.append(r)
    notes = [score_legend(res) + ". Rows: the ablation presets that were run, of "
             + ", ".join(ABLATION) + "."]
    if len(rows) == 1:
        notes.append("None of the ablation presets is in workflow.methods of this profile.")
    return Table("ablation", cols, rows, len(res.seeds), notes)


def finished_table(res: Results) -> Table:
    """Share of generations that ended with EOS within eval.max_new_tokens, per model and generated
    task: a score near the floor reads differently when the model never finishes an answer."""
    tasks = [t for t in res.tasks if any(e.finished is not None for (_, _, tk), e in res.evals.items() if tk == t)]
    cols = [Column("method", "Method", "text", "text"), *[Column(t, TASK_LABELS.get(t, t), "task") for t in tasks]]
    rows = []
    for key in ("student", "teacher", *res.methods):
        cells = {"method": Cell(text=label(key))}
        for t in tasks:
            vals = [e.finished for (r, _, tk), e in sorted(res.evals.items()) if r == key and tk == t
                    and e.finished is not None]
            single = res.single_measurement(key)
            cells[t] = Cell(over_seeds(vals[:1] if single else vals), single=single)
        rows.append(Row(key, label(key), cells, res.run_hash(key), res.eval_hash(key),
                        versions=res.versions(key)))
    notes = [score_legend(res, "Share (%) of generations that ended with EOS within eval.max_new_tokens") + "."]
    return Table("finished", cols, rows, len(res.seeds), notes)
