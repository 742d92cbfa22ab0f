"""Where a profile's DAG spent its time: Snakemake's per-job benchmark files, summed per rule.

Each rule's `benchmark:` TSV (logs/<profile>/benchmarks/...) holds one job's wall seconds (`s`),
CPU seconds and peak RSS. This table sums them per stage, so a reader sees what a rerun costs and
where; the DAG's own wall time is shorter than the sum when jobs ran side by side (--cores 2).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

STAGES = ("prepare", "preflight", "train", "eval", "aggregate")


def stage_table(bench_dir: Path) -> pd.DataFrame | None:
    """One row per stage with jobs, summed wall / CPU seconds and the largest peak RSS; None if no data."""
    rows = []
    for stage in STAGES:
        files = [bench_dir / f"{stage}.tsv"] + sorted((bench_dir / stage).rglob("*.tsv"))
        frames = [pd.read_csv(f, sep="\t") for f in files if f.is_file()]
        if not frames:
            continue
        d = pd.concat(frames)
        rows.append({"stage": stage, "jobs": len(files) - (not files[0].is_file()),
                     "wall_s": round(float(d["s"].sum()), 1), "cpu_s": round(float(d["cpu_time"].sum()), 1),
                     "max_rss_mb": round(float(d["max_rss"].max()), 0)})
    return pd.DataFrame(rows) if rows else None


def write_stages(bench_dir: Path, path: Path) -> Path:
    from tropd.infra.io import atomic_write_text

    t = stage_table(bench_dir)
    if t is None:
        atomic_write_text(path, f"No Snakemake benchmark files under `{bench_dir}` (not run through the workflow).\n")
        return path
    lines = ["| stage | jobs | wall s (sum over jobs) | CPU s | peak RSS MB |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.stage} | {r.jobs} | {r.wall_s:.0f} | {r.cpu_s:.0f} | {r.max_rss_mb:.0f} |"
              for r in t.itertuples()]
    note = ("\nSummed from Snakemake's per-job benchmark files in "
            f"`{bench_dir}`. Jobs that ran side by side make the DAG's wall time shorter than the sum; "
            "jobs that ran one after another (as many cores as one job's threads) make it the sum.")
    if "aggregate" not in set(t.stage):
        note += " The aggregate job that writes this table is not in it (its time is not known yet)."
    note += "\n"
    atomic_write_text(path, "\n".join(lines) + "\n" + note)
    return path
