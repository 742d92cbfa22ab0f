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
from tropd.report.collect import load_results, write_audit
from tropd.report.plots import benchmark_bars, training_curves
from tropd.report.provenance import provenance_line
from tropd.report.render import write_table
from tropd.report.tables import ablation_table, finished_table, main_table


def aggregate(config: str | Path, out: str | Path | None = None, overrides: list[str] | None = None) -> list[Path]:
    cfg = load_config(config, overrides=overrides)
    results_dir = cfg.resolve(cfg.paths.results)
    out = Path(out) if out else results_dir
    from tropd.report.stages import write_stages
    from tropd.sweep import is_sweep

    if is_sweep(cfg):
        from tropd.report.sweep_report import aggregate_sweep

        written = aggregate_sweep(cfg, out, _sweep_provenance(cfg))
        return [*written, write_stages(Path("logs") / cfg.profile / "benchmarks", out / "tables" / "stages.md")]
    res = load_results(results_dir, cfg.workflow.methods, cfg.workflow.seeds, cfg.eval.tasks)
    written = []
    tables = ((main_table(res), ("md", "csv", "tex")), (ablation_table(res), ("md", "csv")),
              (finished_table(res), ("md", "csv")))
    for table, formats in tables:
        table.provenance = provenance_line(table, res.code_versions())
        written += write_table(table, out / "tables" / table.name, formats)
    benchmark_bars(res, out / "plots" / "benchmarks.png")
    training_curves(res, out / "plots" / "training_curves.png")
    written += _paired_reports(cfg, res, out, tables[0][0].provenance)
    written += _gate_report(cfg, out)
    write_audit(res, out / "audit")  # per-run metrics, resolved configs, eval summaries

    # Snakemake runs jobs in its working directory and the rules log to logs/<profile>/ there
    stages = write_stages(Path("logs") / cfg.profile / "benchmarks", out / "tables" / "stages.md")
    return [*written, out / "plots" / "benchmarks.png", out / "plots" / "training_curves.png", stages]


def aggregate_main(args) -> int:
    for path in aggregate(args.config, args.out, args.overrides):
        print(path)
    return 0


def _paired_reports(cfg, res, out: Path, provenance: str) -> list[Path]:
    """The "vs OPD" table and claims.md of a one-level profile (tropd.report.claims)."""
    from tropd.infra.io import atomic_write_text
    from tropd.report.claims import claims_markdown, vs_opd_frame, vs_opd_markdown
    from tropd.report.study import Study, level_from_results, measured_mismatch

    probe = cfg.resolve(cfg.paths.models) / "probe.json"
    knob = getattr(cfg.prepare, "mismatch", None)
    level = level_from_results(res, cfg.profile, knob, measured_mismatch(probe),
                               [(m, m, 1.0) for m in cfg.workflow.methods], cfg.train.steps)
    study = Study(cfg.profile, list(cfg.eval.tasks), list(cfg.workflow.seeds), [level], cfg.eval.claim_column)
    frame = vs_opd_frame(study)
    paths = [out / "tables" / "vs_opd.csv", out / "tables" / "vs_opd.md", out / "claims.md"]
    atomic_write_text(paths[0], frame.to_csv(index=False))
    atomic_write_text(paths[1], vs_opd_markdown(study, frame, provenance))
    atomic_write_text(paths[2], claims_markdown(study, provenance))
    return paths


def _gate_report(cfg, out: Path) -> list[Path]:
    """tables/gate.md and audit/probe.json: the teacher-student gate measured by `tropd prepare`
    before any distillation (profiles whose probe has one: smol, tropd/smol.py)."""
    import json
    import shutil

    from tropd.infra.io import atomic_write_text

    probe = cfg.resolve(cfg.paths.models) / "probe.json"
    try:
        p = json.loads(probe.read_text())
        g = p["gate"]
    except (OSError, ValueError, KeyError):
        return []
    from tropd.smol import GATE_FINISHED, GATE_POINTS

    acc, fin, lp = p["accuracy"], p["finished"], p["teacher_logp_per_token"]
    low = p["teacher_logp"]["student_samples"]["frac_below_0.01"]
    ok = lambda b: "yes" if b else "**no**"  # noqa: E731
    lines = [f"# Before distillation: is the teacher clearly better than the student? (`{cfg.profile}`)", "",
             f"Measured by `tropd prepare` on {p['n']} held-out problems (neither trained on nor in the eval "
             f"set), greedy, up to {p['max_new_tokens']} new tokens. Source: `audit/probe.json`.", "",
             "| check | teacher | student | required | holds |", "|---|---:|---:|---|---|",
             f"| greedy accuracy (%) | {100 * acc['teacher']:.1f} | {100 * acc['student']:.1f} | teacher ≥ student "
             f"+ {GATE_POINTS} points | {ok(g['teacher_minus_student_points'] >= GATE_POINTS)} |",
             f"| answers ended with EOS (%) | {100 * fin['teacher']:.1f} | {100 * fin['student']:.1f} | teacher ≥ "
             f"{100 * GATE_FINISHED:.0f}% | {ok(fin['teacher'] >= GATE_FINISHED)} |",
             f"| teacher log-prob per token of the model's greedy answers | {lp['teacher']:.3f} | {lp['student']:.3f} "
             f"| own > student's | {ok(g['teacher_prefers_own_answers'])} |", "",
             f"Gate: **{'passed' if g['passed'] else 'failed'}**. Measured mismatch: {100 * low:.1f}% of the "
             f"student's own tokens (sampled at T=1) get teacher probability < 0.01 (knob prepare.mismatch = "
             f"{p.get('mismatch_knob')}).", ""]
    path = out / "tables" / "gate.md"
    atomic_write_text(path, "\n".join(lines))
    (out / "audit").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(probe, out / "audit" / "probe.json")
    return [path, out / "audit" / "probe.json"]


def _sweep_provenance(cfg) -> str:
    import datetime

    from tropd.config import code_version
    from tropd.versions import format_versions, package_versions

    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return (f"Provenance: aggregated at commit {code_version()} on {today}; each run's code version and config "
            f"hash are in its summary under audit/; packages {format_versions(package_versions(punkt=False))}.")
