"""`tropd aggregate` on synthetic result files: means and t intervals over seeds, the config-hash guard,
divergence notes, the three table formats and the two figures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tropd.cli import main as cli
from tropd.errors import UserError
from tropd.report.stats import over_seeds

TASKS = {"tiny_math": "math", "gsm8k": "math", "tiny_code": "code"}


VERSIONS = {"torch": "2.11.0+recorded", "transformers": "5.24.0", "math-verify": "0.9.0",
            "punkt_tab": "missing"}


def write_results(root: Path, scores: dict, runs: dict | None = None, hashes: dict | None = None,
                  methods=("opd", "tropd"), seeds=(0, 1, 2), decoding: dict | None = None,
                  versions: dict | None = None) -> Path:
    """A profile YAML + result tree. scores[(row, seed, task)] = fraction; runs[(method, seed)] = summary
    fields to change; hashes[(row, seed, task)] = eval config hash (default "evalhash");
    versions[(row, seed, task)] = the eval summary's versions block (default VERSIONS; None: no block)."""
    res = root / "results"
    for (row, seed, task), value in scores.items():
        e = {"task": task, "domain": TASKS[task], "model": row, "n_items": 10, "n_samples": 10,
             "primary": "accuracy", "metrics": {"accuracy": {"mean": value, "ci95": [0, 1]}},
             "decoding": decoding or {"temperature": 0.0}, "config_hash": (hashes or {}).get((row, seed, task), "evalhash"),
             "code_version": "abc1234", "wall_s": 1.0}
        v = (versions or {}).get((row, seed, task), VERSIONS)
        if v is not None:
            e["versions"] = v
        path = res / "evals" / row / f"seed{seed}" / f"{task}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(e))
    for m in methods:
        for s in seeds:
            d = res / "runs" / m / f"seed{s}"
            d.mkdir(parents=True, exist_ok=True)
            summary = {"status": "finished", "diverged_step": None, "steps_done": 40, "wall_s": 120.0 + s,
                       "tokens_generated": 2_000_000, "teacher_tokens_scored": 1_500_000, "peak_mem_mb": 900.0,
                       "config_hash": f"hash-{m}-seed{s}", "code_version": "abc1234", "method": m, "seed": s,
                       "versions": VERSIONS, **(runs or {}).get((m, s), {})}
            if summary["versions"] is None:
                del summary["versions"]
            (d / "summary.json").write_text(json.dumps(summary))
            rng = np.random.default_rng(s)
            lines = [{"step": i, "loss": 1.0, "rkl": 1.0 / (i + 1) + 0.05 * rng.random(),
                      "student_entropy": 2 - i / 40, "grad_norm": 1 + rng.random(),
                      **({"outlier": 0.1 + 0.01 * rng.random()} if m == "tropd" else {})} for i in range(40)]
            (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = {"profile": "synthetic", "paths": {"data": str(root / "data"), "models": str(root / "models"),
                                             "results": str(res)},
           "eval": {"tasks": list(TASKS)}, "workflow": {"methods": list(methods), "seeds": list(seeds)}}
    path = root / "profile.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def full_scores(base: dict[str, float], step: float = 0.1) -> dict:
    """Every row x seed x task; row r scores base[r] + step * seed on every task."""
    return {(row, s, t): base[row] + step * s for row in base for s in (0, 1, 2) for t in TASKS}


BASE = {"opd": 0.3, "tropd": 0.4, "teacher": 0.7, "student": 0.1}


def read_main(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "results" / "tables" / "main.csv")


def _slow_t_interval(x: list[float]) -> tuple[float, float]:
    """Mean ± t_{0.975, n-1} s / sqrt(n), written out with table values of t."""
    t975 = {1: 12.706204736, 2: 4.302652730, 4: 2.776445105}[len(x) - 1]
    mean = sum(x) / len(x)
    s = (sum((v - mean) ** 2 for v in x) / (len(x) - 1)) ** 0.5
    return mean - t975 * s / len(x) ** 0.5, mean + t975 * s / len(x) ** 0.5


def test_seed_interval_is_the_t_interval_not_the_seed_range():
    for x in ([0.2, 0.6], [0.1, 0.5, 0.9], [0.3, 0.31, 0.35, 0.4, 0.2]):
        e = over_seeds(x)
        assert (e.lo, e.hi) == pytest.approx(_slow_t_interval(x)) and e.n == len(x)
        assert e.mean - e.lo == pytest.approx(e.hi - e.mean)  # symmetric: "mean ± half-width" is exact
    # three seeds: the interval is wider than their range (a percentile bootstrap gave the range)
    e3 = over_seeds([0.1, 0.5, 0.9])
    assert e3.lo < 0.1 and e3.hi > 0.9
    assert over_seeds([0.5, 0.5, 0.5]) == over_seeds([0.5, 0.5, 0.5]) and over_seeds([0.5, 0.5]).half_width == 0
    e1 = over_seeds([0.5])
    assert (e1.lo, e1.hi, e1.n) == (0.5, 0.5, 1)
    assert over_seeds([]) is None


def test_main_table_means_cis_and_formats(tmp_path):
    cfg = write_results(tmp_path, full_scores(BASE))
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    df = read_main(tmp_path)
    cell = df[(df.row == "opd") & (df.column == "tiny_math")].iloc[0]
    ref = over_seeds([0.3, 0.4, 0.5])
    assert cell["mean"] == pytest.approx(0.4) and cell["n_seeds"] == 3
    assert (cell["ci95_lo"], cell["ci95_hi"]) == pytest.approx((ref.lo, ref.hi), abs=1e-6)
    assert cell["text"] == f"40.0 ± {100 * (ref.hi - ref.lo) / 2:.1f}"
    # math has two tasks -> a domain average; code has one -> none; overall Avg over the 3 tasks.
    assert set(df[df.row == "opd"].column) == {"tiny_math", "gsm8k", "tiny_code", "avg_math", "avg",
                                                "tokens_generated", "teacher_tokens_scored", "train_time", "peak_mem"}
    avg = df[(df.row == "tropd") & (df.column == "avg")].iloc[0]
    assert avg["mean"] == pytest.approx(0.5)
    assert df[(df.row == "opd") & (df.column == "train_time")].iloc[0]["mean"] == pytest.approx(121.0)
    assert set(df.eval_config_hash) == {"evalhash"}
    # no config.resolved.yaml: the summaries' own hashes cover the seed, so no seed-free hash is known
    assert df[df.row == "opd"].run_config_hash.isna().all()
    md = (tmp_path / "results" / "tables" / "main.md").read_text()
    assert "| Teacher |" in md and "| Student (untrained) |" in md and "| TrOPD |" in md
    assert "2.00M" in md and "2.0 min" in md and "900 MB" in md
    assert "Provenance:" in md and "eval evalhash" in md
    # the versions the summaries recorded, once (they agree), not the aggregating environment's
    assert "packages torch 2.11.0+recorded, transformers 5.24.0, math-verify 0.9.0, punkt_tab missing;" in md
    assert md.count("torch") == 1 and "aggregating environment" not in md
    tex = (tmp_path / "results" / "tables" / "main.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"$\pm$" in tex and r"Math (syn.)" in tex
    abl = (tmp_path / "results" / "tables" / "ablation.md").read_text()
    assert "log r (OPD)" in abl and "top-k FKL" in abl and "| yes |" in abl
    for name in ("benchmarks.png", "training_curves.png"):
        assert (tmp_path / "results" / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_generation_note_names_vllm_decoding(tmp_path):
    """HF generate and vLLM draw other samples: a table says which decoded its columns (old
    summaries without decoding.backend were HF's)."""
    decoding = {"k": 1, "temperature": 0.0, "max_new_tokens": 256, "limit": 10, "backend": "vllm"}
    cfg = write_results(tmp_path, full_scores(BASE), decoding=decoding)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    md = (tmp_path / "results" / "tables" / "main.md").read_text()
    assert "k=1, temperature 0, up to 256 new tokens (vLLM)." in md


def test_greedy_reference_rows_are_one_measurement_sampled_ones_are_not(tmp_path):
    """tropd eval reuses one greedy evaluation of the teacher and the untrained student for every
    seed: that is one measurement, shown without an interval or an n=, not three seeds that agree."""
    scores = {k: (BASE[k[0]] if k[0] in ("teacher", "student") else v) for k, v in full_scores(BASE).items()}
    greedy = {"k": 1, "temperature": 0.0, "max_new_tokens": 256, "limit": 10}
    cfg = write_results(tmp_path / "greedy", scores, decoding=greedy)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    df = read_main(tmp_path / "greedy")
    teacher = df[(df.row == "teacher") & (df.column == "gsm8k")].iloc[0]
    assert teacher["n_seeds"] == 1 and teacher["text"] == "70.0"
    assert df[(df.row == "opd") & (df.column == "gsm8k")].iloc[0]["n_seeds"] == 3
    md = (tmp_path / "greedy" / "results" / "tables" / "main.md").read_text()
    assert "one greedy evaluation, the same for every seed" in md
    assert "GSM8K 10" in md and "k=1, temperature 0, up to 256 new tokens" in md

    sampled = {**greedy, "k": 4, "temperature": 0.6}
    cfg = write_results(tmp_path / "sampled", full_scores(BASE), decoding=sampled)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    teacher = read_main(tmp_path / "sampled").query("row == 'teacher' and column == 'gsm8k'").iloc[0]
    assert teacher["n_seeds"] == 3 and teacher["text"].startswith("80.0 ± ")


def test_greedy_reference_seeds_that_disagree_are_not_one_measurement(tmp_path):
    """Greedy evals of the teacher that differ between seeds (0.95 / 0.90 / 0.85) are not one
    measurement repeated: the row shows their mean and interval over seeds, not seed 0's bare 95.0."""
    greedy = {"k": 1, "temperature": 0.0, "max_new_tokens": 256, "limit": 10}
    scores = {k: (BASE[k[0]] if k[0] == "student" else v) for k, v in full_scores(BASE).items()}
    scores.update({("teacher", s, t): v for s, v in enumerate((0.95, 0.90, 0.85)) for t in TASKS})
    same = {(m, s): {"config_hash": f"hash-{m}"} for m in ("opd", "tropd") for s in (0, 1, 2)}  # not at issue
    cfg = write_results(tmp_path, scores, decoding=greedy, runs=same)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    df = read_main(tmp_path)
    teacher = df[(df.row == "teacher") & (df.column == "gsm8k")].iloc[0]
    ref = over_seeds([0.95, 0.90, 0.85])
    assert teacher["n_seeds"] == 3 and teacher["mean"] == pytest.approx(0.9)
    assert teacher["text"] == f"90.0 ± {100 * ref.half_width:.1f}" and teacher["text"] != "95.0"
    student = df[(df.row == "student") & (df.column == "gsm8k")].iloc[0]
    assert student["n_seeds"] == 1 and student["text"] == "10.0"  # its seeds agree: one measurement
    md = (tmp_path / "results" / "tables" / "main.md").read_text()
    assert "Student (untrained): one greedy evaluation, the same for every seed" in md
    assert "Teacher: greedy evaluations that differ between seeds" in md
    # values equal up to float noise are still one measurement
    scores.update({("teacher", s, t): 0.95 + 1e-12 * s for s in (0, 1, 2) for t in TASKS})
    cfg = write_results(tmp_path, scores, decoding=greedy, runs=same)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    teacher = read_main(tmp_path).query("row == 'teacher' and column == 'gsm8k'").iloc[0]
    assert teacher["n_seeds"] == 1 and teacher["text"] == "95.0"


def test_provenance_prints_the_recorded_package_versions(tmp_path):
    """Each distinct versions block the summaries recorded, with its rows; old summaries without one
    fall back to the aggregating environment, and the line says so."""
    from tropd.versions import format_versions, package_versions

    other = {**VERSIONS, "torch": "2.12.0"}
    versions = {("tropd", s, t): other for s in (0, 1, 2) for t in TASKS}
    cfg = write_results(tmp_path / "differ", full_scores(BASE), versions=versions)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    md = (tmp_path / "differ" / "results" / "tables" / "main.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("Provenance:"))
    assert "packages differ between results (2 sets): " in line
    assert f"{format_versions(VERSIONS)} (rows Student (untrained), Teacher, OPD, TrOPD)" in line
    assert f"{format_versions(other)} (rows TrOPD)" in line  # tropd's run summaries recorded VERSIONS
    assert "aggregating environment" not in line

    none = {k: None for k in full_scores(BASE)}
    runs = {(m, s): {"versions": None} for m in ("opd", "tropd") for s in (0, 1, 2)}
    cfg = write_results(tmp_path / "old", full_scores(BASE), runs=runs, versions=none)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    md = (tmp_path / "old" / "results" / "tables" / "main.md").read_text()
    env = format_versions(package_versions())
    assert f"the result summaries record no package versions (written before the versions block); " \
           f"the aggregating environment has {env};" in md
    assert "2.11.0+recorded" not in md

    partial = {("teacher", 0, "gsm8k"): None}
    cfg = write_results(tmp_path / "partial", full_scores(BASE), versions=partial)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    md = (tmp_path / "partial" / "results" / "tables" / "main.md").read_text()
    n_files = len(full_scores(BASE)) + 6  # evals + run summaries
    assert f"packages {format_versions(VERSIONS)}; 1 of {n_files} result summaries record no package" in md


def test_package_versions_block():
    from importlib.metadata import version

    from tropd.eval.graders.ifeval import punkt_available
    from tropd.versions import PACKAGES, package_versions

    v = package_versions()
    assert v["torch"] == version("torch") and v["math-verify"] == version("math-verify")
    assert set(v) <= {*PACKAGES, "punkt_tab"} and "tropd" not in v
    assert v["punkt_tab"] == ("available" if punkt_available() else "missing")
    assert all(isinstance(x, str) for x in v.values())


def test_one_seed_says_n1_and_missing_cells(tmp_path):
    """One seed: means without intervals, n=1 said once; a missing eval leaves its cells empty."""
    scores = {k: v for k, v in full_scores(BASE).items() if k[1] == 0}
    del scores[("opd", 0, "gsm8k")]
    cfg = write_results(tmp_path, scores, seeds=(0,))
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    df = read_main(tmp_path)
    assert df[(df.row == "opd") & (df.column == "tiny_math")].iloc[0]["text"] == "30.0"
    assert "one seed (n=1)" in (tmp_path / "results" / "tables" / "main.md").read_text()
    assert df[(df.row == "opd") & (df.column == "gsm8k")].iloc[0]["text"] == "–"
    assert df[(df.row == "opd") & (df.column == "avg")].iloc[0]["text"] == "–"  # needs every task


def test_a_missing_seed_is_counted(tmp_path):
    scores = full_scores(BASE)
    del scores[("opd", 2, "gsm8k")]
    cfg = write_results(tmp_path, scores)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    df = read_main(tmp_path)
    cell = df[(df.row == "opd") & (df.column == "gsm8k")].iloc[0]
    assert cell["n_seeds"] == 2 and cell["mean"] == pytest.approx(0.35) and cell["text"].endswith("(n=2)")
    assert (cell["ci95_lo"], cell["ci95_hi"]) == pytest.approx(_slow_t_interval([0.3, 0.4]))
    assert df[(df.row == "opd") & (df.column == "avg")].iloc[0]["n_seeds"] == 2  # seeds with every task


def test_diverged_run_is_marked_not_dropped(tmp_path):
    runs = {("tropd", 1): {"status": "diverged", "diverged_step": 37, "steps_done": 37}}
    cfg = write_results(tmp_path, full_scores(BASE), runs=runs)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    md = (tmp_path / "results" / "tables" / "main.md").read_text()
    assert "(diverged at step 37 in 1/3 seeds)" in md
    row = next(line for line in md.splitlines() if line.startswith("| TrOPD |"))
    assert "50.0 ±" in row  # the diverged seed's eval (of its last good weights) still counts
    df = read_main(tmp_path)
    assert df[(df.row == "tropd") & (df.column == "avg")].iloc[0]["diverged_steps"] == 37


def test_mixed_config_hashes_in_a_row_are_refused(tmp_path, capsys):
    hashes = {("opd", 2, "gsm8k"): "otherhash"}
    cfg = write_results(tmp_path, full_scores(BASE), hashes=hashes)
    assert cli(["aggregate", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "row 'opd' mixes eval configs" in err
    assert "evals/opd/seed0/tiny_math.json" in err and "evals/opd/seed2/gsm8k.json" in err



def test_runs_without_resolved_configs_are_not_compared(tmp_path):
    """A run's summary hash covers its seed, so seeds of one row always differ there: without
    config.resolved.yaml there is no seed-free hash to compare, and the row is accepted."""
    from tropd.aggregate import aggregate

    cfg = write_results(tmp_path, full_scores(BASE), runs={("tropd", 2): {"config_hash": "zzz"}})
    aggregate(cfg)  # no "mixes training configs"
    df = read_main(tmp_path)
    assert df[df.row.isin(["opd", "tropd"])].run_config_hash.isna().all()


def test_run_rows_compare_resolved_configs_without_the_seed(tmp_path):
    """Real runs hash their seed too; rows compare the resolved configs with the seed set to 0."""
    from tropd.config import dump_yaml, load_config

    cfg = write_results(tmp_path, full_scores(BASE))
    for m in ("opd", "tropd"):
        for s in (0, 1, 2):
            changed = ["train.lr=0.5"] if (m, s) == ("tropd", 2) else []
            rc = load_config(cfg, overrides=[f"seed={s}", *changed])
            (tmp_path / "results" / "runs" / m / f"seed{s}" / "config.resolved.yaml").write_text(dump_yaml(rc))
    from tropd.aggregate import aggregate

    with pytest.raises(UserError, match=r"row 'tropd' mixes training configs"):
        aggregate(cfg)
    # a seed trained after an eval setting changed is the same training config
    rc = load_config(cfg, overrides=["seed=2", "eval.max_new_tokens=7"])
    (tmp_path / "results" / "runs" / "tropd" / "seed2" / "config.resolved.yaml").write_text(dump_yaml(rc))
    aggregate(cfg)  # seeds differ, training settings agree: accepted
    df = read_main(tmp_path)
    assert df[df.row == "opd"].run_config_hash.nunique() == 1
    h = df[df.row == "tropd"].run_config_hash.iloc[0]
    from tropd.config import run_hash

    assert h == run_hash(load_config(cfg, overrides=["seed=0"]))
    assert f"train OPD {df[df.row == 'opd'].run_config_hash.iloc[0]}, TrOPD {h}" in \
        (tmp_path / "results" / "tables" / "main.md").read_text()


def test_no_results_is_a_one_line_error(tmp_path, capsys):
    cfg = write_results(tmp_path, {}, methods=("opd",), seeds=(0,))
    assert cli(["aggregate", "--config", str(cfg)]) == 2
    assert "no eval summaries" in capsys.readouterr().err


def test_finished_table_reads_the_samples_beside_each_summary(tmp_path):
    cfg = write_results(tmp_path, full_scores(BASE), seeds=(0, 1, 2))
    evals = tmp_path / "results" / "evals"
    for seed, done in enumerate(([True, True, False, False], [True, False, False, False], [False] * 4)):
        rows = [{"id": str(i), "completion": "x", "finished": f} for i, f in enumerate(done)]
        (evals / "opd" / f"seed{seed}" / "tiny_math.samples.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
    (evals / "teacher" / "seed0" / "gsm8k.samples.jsonl").write_text('{"id": "0", "completion": "ll"}\n')
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    df = pd.read_csv(tmp_path / "results" / "tables" / "finished.csv")
    cell = df[(df.row == "opd") & (df.column == "tiny_math")].iloc[0]
    assert cell["mean"] == pytest.approx((0.5 + 0.25 + 0.0) / 3) and cell["n_seeds"] == 3
    # only tasks with a `finished` flag somewhere get a column (log-likelihood tasks have none)
    assert set(df.column) == {"tiny_math"}
    assert "ended with EOS" in (tmp_path / "results" / "tables" / "finished.md").read_text()


def test_code_version_is_dirty_for_code_edits_not_for_results(tmp_path):
    """The aggregate job rewrites the committed tables before it reads the commit: that is not a code edit."""
    import subprocess

    from tropd.config import code_version

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "main.md").write_text("old\n")
    (tmp_path / "train.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "c")
    clean = code_version(tmp_path)
    assert clean and not clean.endswith("-dirty")
    (tmp_path / "results" / "main.md").write_text("new\n")
    assert code_version(tmp_path) == clean
    (tmp_path / "train.py").write_text("x = 2\n")
    assert code_version(tmp_path) == clean + "-dirty"


def test_run_summaries_without_the_graders_punkt_check_agree_with_the_evals(tmp_path):
    """Run summaries leave out punkt_tab (tropd.versions.package_versions(punkt=False)); that alone
    is not a second set of versions."""
    from tropd.versions import format_versions

    runs = {(m, s): {"versions": {k: v for k, v in VERSIONS.items() if k != "punkt_tab"}}
            for m in ("opd", "tropd") for s in (0, 1, 2)}
    cfg = write_results(tmp_path / "r", full_scores(BASE), runs=runs)
    assert cli(["aggregate", "--config", str(cfg)]) == 0
    md = (tmp_path / "r" / "results" / "tables" / "main.md").read_text()
    assert f"packages {format_versions(VERSIONS)};" in md and "packages differ" not in md


def test_aggregate_writes_the_vs_opd_table_and_claims(tmp_path):
    """Every profile gets the paired "vs OPD" table and claims.md; TrOPD 0.1 above OPD at every seed is a
    paired difference of exactly +10 points with a zero-width interval (claim a supported)."""
    profile = write_results(tmp_path, full_scores(BASE))
    assert cli(["aggregate", "--config", str(profile)]) == 0
    tables = tmp_path / "results" / "tables"
    frame = pd.read_csv(tables / "vs_opd.csv")
    avg = frame[(frame.method == "tropd") & (frame.column == "avg")].iloc[0]
    assert (avg["mean"], avg["ci95_lo"], avg["ci95_hi"], avg["n_pairs"]) == pytest.approx((0.1, 0.1, 0.1, 3))
    assert "+10.0" in (tables / "vs_opd.md").read_text()
    claims = (tmp_path / "results" / "claims.md").read_text()
    assert "| (a) TrOPD beats OPD" in claims and "**supported**" in claims.split("\n## ")[0]
    assert "Not tested by this profile" in claims  # (c) needs several levels or learning rates
    audit = tmp_path / "results" / "audit" / "tropd" / "seed1"  # every run auditable without retraining
    import gzip

    src = tmp_path / "results" / "runs" / "tropd" / "seed1" / "metrics.jsonl"
    assert gzip.decompress((audit / "metrics.jsonl.gz").read_bytes()) == src.read_bytes()
    assert (audit / "evals").is_dir() and any((audit / "evals").iterdir())


def test_gate_table_from_the_prepare_probe(tmp_path):
    """A profile whose prepare measured the teacher-student gate (smol) gets tables/gate.md and the
    probe in audit/; the table says which check fails."""
    import json

    profile = write_results(tmp_path, full_scores(BASE))
    cfg = __import__("tropd.config", fromlist=["load_config"]).load_config(profile)
    models = cfg.resolve(cfg.paths.models)
    models.mkdir(parents=True, exist_ok=True)
    probe = {"n": 64, "max_new_tokens": 96, "accuracy": {"teacher": 0.70, "student": 0.55},
             "finished": {"teacher": 1.0, "student": 0.9}, "teacher_logp_per_token": {"teacher": -0.1, "student": -0.9},
             "teacher_logp": {"student_samples": {"frac_below_0.01": 0.2}}, "mismatch_knob": 0.5,
             "gate": {"teacher_minus_student_points": 15.0, "teacher_finished": 1.0,
                      "teacher_prefers_own_answers": True, "passed": False}}
    (models / "probe.json").write_text(json.dumps(probe))
    assert cli(["aggregate", "--config", str(profile)]) == 0
    gate = (tmp_path / "results" / "tables" / "gate.md").read_text()
    assert "| greedy accuracy (%) | 70.0 | 55.0 | teacher ≥ student + 20 points | **no** |" in gate
    assert "Gate: **failed**" in gate and "20.0% of the student's own tokens" in gate
    assert json.loads((tmp_path / "results" / "audit" / "probe.json").read_text()) == probe
