"""`tropd aggregate`: the paper's tables and figures from a profile's eval and run summaries.

    tropd aggregate --config configs/tiny.yaml [--out results/tiny]

Reads <paths.results>/evals/ and <paths.results>/runs/ (the layout of workflow/Snakefile) for the
profile's workflow.methods x workflow.seeds x eval.tasks and writes
    <out>/tables/main.{md,csv,tex}     Table 4 layout: methods + references x benchmarks + cost
    <out>/tables/ablation.{md,csv}     Table 5 layout: outlier objective x guidance
    <out>/tables/finished.{md,csv}     share of generations that ended with EOS (repetition loops)
    <out>/plots/benchmarks.png         Figure 1 style
    <out>/plots/training_curves.png    Figure 3 style
    <out>/tables/stages.md             time per stage, from Snakemake's benchmark files
Missing result files leave their cells empty (n counts the seeds present); results of different
configs in one row stop it with a one-line error.
"""
from __future__ import annotations

from pathlib import Path

from tropd.config import load_config
from tropd.report.collect import load_results
from tropd.report.plots import benchmark_bars, training_curves
from tropd.report.provenance import provenance_line
from tropd.report.render import write_table
from tropd.report.tables import ablation_table, finished_table, main_table


def aggregate(config: str | Path, out: str | Path | None = None, overrides: list[str] | None = None) -> list[Path]:
    cfg = load_config(config, overrides=overrides)
    results_dir = cfg.resolve(cfg.paths.results)
    out = Path(out) if out else results_dir
    res = load_results(results_dir, cfg.workflow.methods, cfg.workflow.seeds, cfg.eval.tasks)
    written = []
    tables = ((main_table(res), ("md", "csv", "tex")), (ablation_table(res), ("md", "csv")),
              (finished_table(res), ("md", "csv")))
    for table, formats in tables:
        table.provenance = provenance_line(table, res.code_versions())
        written += write_table(table, out / "tables" / table.name, formats)
    benchmark_bars(res, out / "plots" / "benchmarks.png")
    training_curves(res, out / "plots" / "training_curves.png")
    from tropd.report.stages import write_stages

    # Snakemake runs jobs in its working directory and the rules log to logs/<profile>/ there
    stages = write_stages(Path("logs") / cfg.profile / "benchmarks", out / "tables" / "stages.md")
    return [*written, out / "plots" / "benchmarks.png", out / "plots" / "training_curves.png", stages]


def aggregate_main(args) -> int:
    for path in aggregate(args.config, args.out, args.overrides):
        print(path)
    return 0
