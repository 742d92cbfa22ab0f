"""The provenance line printed under every table: which code, configs and packages made it."""
from __future__ import annotations

import datetime
from importlib.metadata import PackageNotFoundError, version

from tropd.report.tables import Table

PACKAGES = ("torch", "transformers", "tropd")


def package_versions() -> str:
    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def provenance_line(t: Table, code_versions: list[str]) -> str:
    """`Provenance: results from code ..., config hashes ..., packages ..., aggregated at ... on <date>`."""
    from tropd.config import code_version

    runs = [f"{r.label} {r.run_hash}" for r in t.rows if r.run_hash]
    evals = sorted({r.eval_hash for r in t.rows if r.eval_hash})
    hashes = "; ".join(filter(None, [
        ("train " + ", ".join(runs)) if runs else "",
        ("eval " + ", ".join(evals)) if evals else "",
    ])) or "none recorded"
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return (f"Provenance: results from code {', '.join(code_versions) or 'unknown'}; config hashes: {hashes}; "
            f"{package_versions()}; aggregated at commit {code_version()} on {today}.")
