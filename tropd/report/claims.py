"""The paper's claims, decided from a study (tropd.report.study) by a rule fixed before any run:
the "vs OPD" table and `claims.md`, both written by `tropd aggregate`.

Every comparison is paired: a method's value minus OPD's at the same seed, level and learning rate
(tropd.report.paired), with its 95% Student-t interval over the pairs. Pooled comparisons take every
(level, seed) pair of the levels that have both arms. The verdict of one test is `paired.verdict`:
supported when the interval lies wholly on the claimed side of 0, contradicted when it lies wholly
on the other side, inconclusive otherwise. A claim with several tests combines them (`all_of` for a
claim that says all of them, `any_of` for one that either stress axis would show).
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

import pandas as pd

from tropd.report.paired import Slope, all_of, any_of, paired, slope, verdict
from tropd.report.stats import Estimate
from tropd.report.study import ArmData, Level, Study
from tropd.report.tables import TASK_LABELS, label

RULE = (
    "**Rule (fixed before the runs; `tropd/report/claims.py`).** Every test is a paired difference: a "
    "method's value minus the comparison's at the same seed (same prompts and sampling streams), the "
    "same mismatch level and the same learning rate, with its 95% Student-t interval over the pairs "
    "(mean ± t(0.975, n-1)·sd/√n); a slope is the least-squares slope of those differences against the "
    "measured mismatch, with its 95% t interval (n-2 degrees of freedom). A test is **supported** when "
    "its interval lies wholly on the side of 0 the claim predicts, **contradicted** when it lies wholly "
    "on the other side, **inconclusive** when it contains 0. A claim that says several things (b, d) is "
    "supported when all its tests are, contradicted when any is; a claim that either stress axis would "
    "show (c) is supported when one axis supports it and none contradicts it, contradicted in the "
    "mirror case, inconclusive when they disagree or say nothing. Scores are final greedy held-out "
    "accuracies averaged over the profile's tasks (Avg), or the one task a profile names in "
    "eval.claim_column (smol: the distilled task), in points (%)."
)


@dataclass
class Test:
    name: str
    what: str  # what was compared, in words
    est: Estimate | Slope | None
    direction: int  # +1: the claim predicts > 0
    unit: str = "pt"  # "pt" (score points), "" (raw), "/unit" (slope per unit of mismatch)

    @property
    def verdict(self) -> str:
        if self.est is None:
            return "inconclusive"
        lo, hi = (self.est.lo, self.est.hi)
        return verdict(lo, hi, self.direction)

    def text(self) -> str:
        if self.est is None:
            return "no data"
        e = self.est
        mean = e.slope if isinstance(e, Slope) else e.mean
        k = 100 if self.unit in ("pt", "pt/unit") else 1
        unit = {"pt": " pt", "pt/unit": " pt per unit of measured mismatch", "": ""}[self.unit]
        return f"{k * mean:+.2f}{unit} [{k * e.lo:+.2f}, {k * e.hi:+.2f}] (n={e.n} pairs)"


@dataclass
class Claim:
    key: str
    statement: str
    tests: list[Test]
    combine: str  # "all" | "any" | "one"
    notes: list[str]

    @property
    def verdict(self) -> str:
        parts = [t.verdict for t in self.tests]
        if not self.tests:
            return "inconclusive"
        if self.combine == "any":
            return any_of(parts)
        return all_of(parts)


# ----------------------------------------------------------------------------- pairing helpers


def pairs(study: Study, method: str, base: str, column: str, scale: float = 1.0,
          base_scale: float | None = None) -> dict[tuple[str, int], float]:
    """(level, seed) -> method minus base on `column`, at one learning-rate multiple. `base` may be
    "student" (the level's untrained student, one measurement)."""
    out = {}
    for lv in study.levels:
        a = study.arm(lv, method, scale)
        if a is None:
            continue
        va = a.col(column)
        if base == "student":
            if column not in lv.student:
                continue
            vb = {s: lv.student[column] for s in va}
        else:
            b = study.arm(lv, base, scale if base_scale is None else base_scale)
            if b is None:
                continue
            vb = b.col(column)
        out.update({(lv.name, s): va[s] - vb[s] for s in va if s in vb})
    return out


def pooled(d: dict) -> Estimate | None:
    return paired(d, {k: 0.0 for k in d})


def slope_vs_mismatch(study: Study, d: dict[tuple[str, int], float]) -> Slope | None:
    x = {lv.name: lv.measured for lv in study.levels}
    keys = [k for k in d if x.get(k[0]) is not None]
    return slope([x[k[0]] for k in keys], [d[k] for k in keys])


def did(study: Study, method: str, base: str, column: str, hi: float, lo: float = 1.0) -> dict:
    """Difference in differences: (method - base at lr x hi) - (method - base at lr x lo), per pair."""
    a, b = pairs(study, method, base, column, hi), pairs(study, method, base, column, lo)
    return {k: a[k] - b[k] for k in a if k in b}


# ----------------------------------------------------------------------------- the claims


def claims(study: Study) -> list[Claim]:
    scales = [s for s in study.lr_scales() if s != 1.0]
    hi = max(scales) if scales else None
    multi = len(study.levels) > 1
    col = study.claim_column  # the score the claims test (eval.claim_column): Avg unless the profile says
    lab = TASK_LABELS.get(col, "Avg")

    a_tests = [Test("a", f"TrOPD − OPD, {lab}, pooled over levels, OPD-tuned lr", pooled(pairs(study, "tropd", "opd", col)), +1)]
    a_notes = [f"Clip Outlier − OPD (the bounded-reward control): "
               f"{Test('', '', pooled(pairs(study, 'clip_outlier', 'opd', col)), +1).text()}."]
    if multi:
        for lv in study.levels:
            d = {k: v for k, v in pairs(study, "tropd", "opd", col).items() if k[0] == lv.name}
            a_notes.append(f"Level {lv.name}: TrOPD − OPD {Test('', '', pooled(d), +1).text()}.")
    if hi is not None:
        a_notes.append(f"At {hi:g}x the lr: TrOPD − OPD {Test('', '', pooled(pairs(study, 'tropd', 'opd', col, hi)), +1).text()}.")

    b_tests = [
        Test("b1", f"top-k FKL − untrained student, {lab} (collapse: below where it started)",
             pooled(pairs(study, "topk_fkl", "student", col)), -1),
        Test("b2", f"FKL Outlier − top-k FKL, {lab} (top-k FKL on outliers only works better)",
             pooled(pairs(study, "fkl_outlier", "topk_fkl", col)), +1),
    ]
    b_notes = [f"top-k FKL − OPD: {Test('', '', pooled(pairs(study, 'topk_fkl', 'opd', col)), +1).text()}.",
               f"TrOPD (FKL on outliers, with guidance) − top-k FKL: "
               f"{Test('', '', pooled(pairs(study, 'tropd', 'topk_fkl', col)), +1).text()}."]

    c_tests: list[Test] = []
    c_notes: list[str] = []
    if multi:
        c_tests.append(Test("c1", f"slope of (TrOPD − OPD, {lab}) against the measured mismatch, OPD-tuned lr",
                            slope_vs_mismatch(study, pairs(study, "tropd", "opd", col)), +1, "pt/unit"))
        c_notes.append("OPD's own gain over the untrained student against the measured mismatch (slope): "
                       f"{Test('', '', slope_vs_mismatch(study, pairs(study, 'opd', 'student', col)), +1, 'pt/unit').text()}.")
        c_notes.append("Clip Outlier − OPD against the measured mismatch (slope): "
                       f"{Test('', '', slope_vs_mismatch(study, pairs(study, 'clip_outlier', 'opd', col)), +1, 'pt/unit').text()}.")
    if hi is not None:
        c_tests.append(Test("c2", f"(TrOPD − OPD at {hi:g}x lr) − (TrOPD − OPD at the OPD-tuned lr), {lab}, pooled",
                            pooled(did(study, "tropd", "opd", col, hi)), +1))
        c_notes.append(f"OPD at {hi:g}x − OPD at the tuned lr: "
                       f"{Test('', '', pooled(pairs(study, 'opd', 'opd', col, hi, 1.0)), +1).text()}; TrOPD: "
                       f"{Test('', '', pooled(pairs(study, 'tropd', 'tropd', col, hi, 1.0)), +1).text()}; Clip Outlier: "
                       f"{Test('', '', pooled(pairs(study, 'clip_outlier', 'clip_outlier', col, hi, 1.0)), +1).text()}.")
        c_notes.append(f"Clip Outlier in place of TrOPD in c2: "
                       f"{Test('', '', pooled(did(study, 'clip_outlier', 'opd', col, hi)), +1).text()}.")
    if not c_tests:
        c_notes.append("Not tested by this profile: one mismatch level and one learning rate "
                       "(the `sweep` profile tests it).")

    d_tests = [
        Test("d1", "TrOPD − OPD, mean gradient norm before clipping, pooled, OPD-tuned lr",
             pooled(pairs(study, "tropd", "opd", "grad_norm_mean")), -1, ""),
        Test("d2", "TrOPD − OPD, student entropy over the second half of training (nats/token), pooled",
             pooled(pairs(study, "tropd", "opd", "entropy_2nd_half")), +1, ""),
    ]
    d_notes = [f"Clip Outlier − OPD: gradient norm {Test('', '', pooled(pairs(study, 'clip_outlier', 'opd', 'grad_norm_mean')), -1, '').text()}, "
               f"entropy {Test('', '', pooled(pairs(study, 'clip_outlier', 'opd', 'entropy_2nd_half')), +1, '').text()}."]
    return [
        Claim("a", "TrOPD beats OPD (paper Tables 3-4: +3.5 points on average).", a_tests, "one", a_notes),
        Claim("b", "Stand-alone top-k FKL collapses, while top-k FKL on outliers only works (Table 5).",
              b_tests, "all", b_notes),
        Claim("c", "OPD degrades or becomes unstable as the teacher-student mismatch (or the step size) grows; "
                   "TrOPD holds.", c_tests, "any", c_notes),
        Claim("d", "TrOPD lowers the gradient norm and keeps the student's entropy higher (Fig. 3).",
              d_tests, "all", d_notes),
    ]


def claims_markdown(study: Study, provenance: str = "") -> str:
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    cl = claims(study)
    lines = [f"# Claims, decided from the `{study.profile}` results", "",
             f"Generated by `tropd aggregate` on {today}; do not edit by hand.", "", RULE, "",
             "| claim | verdict |", "|---|---|"]
    lines += [f"| ({c.key}) {c.statement} | **{c.verdict}** |" for c in cl]
    lines.append("")
    levels = ", ".join(f"{lv.name} (measured {100 * lv.measured:.1f}%)" if lv.measured is not None else lv.name
                       for lv in study.levels)
    lines += [f"Mismatch levels (knob, and measured share of the student's own tokens with teacher "
              f"probability < 0.01): {levels}. Seeds: {', '.join(map(str, study.seeds))}.", ""]
    for c in cl:
        lines += [f"## ({c.key}) {c.statement}", "", f"Verdict: **{c.verdict}**" +
                  ("" if len(c.tests) < 2 else f" ({'all' if c.combine == 'all' else 'any'} of the tests below)."), ""]
        for t in c.tests:
            lines.append(f"- {t.name}: {t.what} (predicted {'> 0' if t.direction > 0 else '< 0'}): "
                         f"{t.text()} → {t.verdict}")
        lines += [f"- {n}" for n in c.notes]
        lines.append("")
    if provenance:
        lines += [provenance, ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the vs-OPD table


def _fmt(e: Estimate | None, k: float = 100) -> str:
    if e is None:
        return "–"
    if e.n == 1:
        return f"{k * e.mean:+.1f} (n=1)"
    return f"{k * e.mean:+.1f} [{k * e.lo:+.1f}, {k * e.hi:+.1f}]"


def vs_opd_frame(study: Study) -> pd.DataFrame:
    """One line per (level or 'pooled', arm, column): the paired difference to OPD at the same lr."""
    cols = [*study.columns, "grad_norm_mean", "entropy_2nd_half"]
    recs = []
    groups: list[tuple[str, list[Level]]] = [(lv.name, [lv]) for lv in study.levels]
    if len(study.levels) > 1:
        groups.append(("pooled", study.levels))
    for gname, lvs in groups:
        sub = Study(study.profile, study.tasks, study.seeds, lvs, study.claim_column)
        for method in study.methods():
            if method == "opd":
                continue
            for scale in study.lr_scales():
                for c in cols:
                    d = pairs(sub, method, "opd", c, scale)
                    if not d:
                        continue
                    e = pooled(d)
                    recs.append({"level": gname, "method": method, "lr_scale": scale, "column": c,
                                 "mean": e.mean, "ci95_lo": e.lo, "ci95_hi": e.hi, "n_pairs": e.n,
                                 "verdict_gt0": verdict(e.lo, e.hi, +1)})
    return pd.DataFrame.from_records(recs)


def vs_opd_markdown(study: Study, frame: pd.DataFrame, provenance: str = "") -> str:
    col_labels = {**{t: TASK_LABELS.get(t, t) for t in study.tasks}, "avg": "Avg",
                  "grad_norm_mean": "grad norm", "entropy_2nd_half": "entropy (2nd half)"}
    cols = [c for c in col_labels if c in set(frame["column"])] if len(frame) else []
    lines = [f"# Paired difference to OPD (`{study.profile}`)", "",
             "Method minus OPD at the same seed, mismatch level and learning rate (lr x1 = the OPD-tuned "
             "value): mean [95% Student-t interval over the pairs]. Scores in points (%); gradient norm "
             "(mean over steps, before clipping) and student entropy (mean over the second half of the "
             "steps, nats/token) in their units. `pooled`: every (level, seed) pair of all levels.", ""]
    if not len(frame):
        return "\n".join(lines + ["No method has both its own and OPD's results.", ""])
    for gname in dict.fromkeys(frame["level"]):
        lines += [f"## {'Pooled over levels' if gname == 'pooled' else 'Level ' + gname}", "",
                  "| Method | lr | " + " | ".join(col_labels[c] for c in cols) + " |",
                  "|---|---:|" + "---:|" * len(cols)]
        g = frame[frame["level"] == gname]
        for (method, scale), rows in g.groupby(["method", "lr_scale"], sort=False):
            cells = []
            for c in cols:
                r = rows[rows["column"] == c]
                if r.empty:
                    cells.append("–")
                    continue
                r = r.iloc[0]
                k = 100 if c in study.columns else 1
                e = Estimate(r["mean"], r["ci95_lo"], r["ci95_hi"], int(r["n_pairs"]))
                cells.append(_fmt(e, k) if k == 100 else
                             (f"{e.mean:+.3f} [{e.lo:+.3f}, {e.hi:+.3f}]" if e.n > 1 else f"{e.mean:+.3f} (n=1)"))
            lines.append(f"| {label(method)} | x{scale:g} | " + " | ".join(cells) + " |")
        lines.append("")
    if provenance:
        lines += [provenance, ""]
    return "\n".join(lines)


def arm_label(a: ArmData) -> str:
    return label(a.method) + ("" if a.lr_scale == 1 else f" (lr x{a.lr_scale:g})")


def finite(x: float) -> bool:
    return x is not None and math.isfinite(x)
