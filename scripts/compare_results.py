"""Did the tables move? A regenerated results folder against another, cell by cell.

    python scripts/compare_results.py OLD NEW [--what "how NEW was made"] [--out REPORT.md]

OLD and NEW are results folders of one profile (results/tiny and a fresh clone's results/tiny, say).
Compared: every eval summary's metric means (evals/<row>/<seed>/<task>.json), every cell of every
table CSV (tables/*.csv, hashes and timings left out), the claims' verdicts (claims.md), and per run
the largest step-by-step difference of the training loss (runs/*/*/metrics.jsonl). Written for
issue 24, to show what train.share_prompts does to the committed tiny tables
(results/bench/share_prompts/tables_moved.md).
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

SKIP_COLUMNS = ("run_config_hash", "eval_config_hash")


def evals(old: Path, new: Path) -> tuple[int, list[str]]:
    same, moved = 0, []
    for f in sorted(old.glob("evals/*/*/*.json")):
        a, b = json.loads(f.read_text())["metrics"], json.loads((new / f.relative_to(old)).read_text())["metrics"]
        for key in a:
            if a[key]["mean"] == b[key]["mean"]:
                same += 1
            else:
                moved.append(f"{f.relative_to(old).with_suffix('')} {key}: {a[key]['mean']:.4g} -> {b[key]['mean']:.4g}")
    return same, moved


def cells(old: Path, new: Path) -> tuple[int, list[str]]:
    same, moved = 0, []
    for f in sorted(old.glob("tables/*.csv")):
        rows_a = list(csv.DictReader(f.open()))
        rows_b = list(csv.DictReader((new / f.relative_to(old)).open()))
        for a, b in zip(rows_a, rows_b):
            for key in a:
                if key in SKIP_COLUMNS or "time" in key:
                    continue
                if a[key] == b[key]:
                    same += 1
                else:
                    moved.append(f"{f.name} {a.get('row')} {a.get('column')} {key}: {a[key]} -> {b[key]}")
    return same, moved


def verdicts(folder: Path) -> dict[str, str]:
    return dict(re.findall(r"^\| \((\w)\).*\| \*\*(\w+)\*\* \|$", (folder / "claims.md").read_text(), re.M))


def claim_tests(old: Path, new: Path) -> list[str]:
    """The claims' test lines (a paired difference and its interval each) that changed, old then new."""
    a = [x for x in (old / "claims.md").read_text().splitlines() if x.startswith("- ")]
    b = [x for x in (new / "claims.md").read_text().splitlines() if x.startswith("- ")]
    return [f"{x}\n  now: {y[2:]}" for x, y in zip(a, b) if x != y]


def losses(old: Path, new: Path) -> list[tuple[str, float, bool]]:
    out = []
    for f in sorted(old.glob("runs/*/*/metrics.jsonl")):
        a = [json.loads(x)["loss"] for x in f.read_text().splitlines()]
        b = [json.loads(x)["loss"] for x in (new / f.relative_to(old)).read_text().splitlines()]
        out.append((str(f.parent.relative_to(old)), max(abs(x - y) for x, y in zip(a, b)), a[0] == b[0]))
    return out


def report(old: Path, new: Path, what: str = "") -> str:
    e_same, e_moved = evals(old, new)
    c_same, c_moved = cells(old, new)
    va, vb = verdicts(old), verdicts(new)
    runs = losses(old, new)
    lines = [f"# {new} against {old}", "", *([what, ""] if what else []),
             f"- eval metric means: {e_same} the same, {len(e_moved)} moved",
             f"- table cells: {c_same} the same, {len(c_moved)} moved",
             f"- claims' verdicts: {'the same' if va == vb else 'CHANGED'} "
             f"({', '.join(f'({k}) {va[k]} -> {vb.get(k)}' for k in va)})",
             f"- runs: {len(runs)}; loss bit for bit the same at every step in "
             f"{sum(d == 0 for _, d, _ in runs)}, at step 0 in {sum(s for _, _, s in runs)}; largest "
             f"step-by-step difference {max(d for _, d, _ in runs):.3g} ({max(runs, key=lambda r: r[1])[0]})",
             "", "## Claims' tests that changed (old, then now)", "", *claim_tests(old, new),
             "", "## Eval metrics that moved", "", *(f"- {m}" for m in e_moved)]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--what", default="", help="a line on how NEW was made")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    text = report(args.old, args.new, args.what)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
