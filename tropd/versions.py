"""Versions of the packages that make a result's numbers, recorded in every eval and run summary.

    {"torch": "2.13.0+cpu", "transformers": "5.24.0", ..., "punkt_tab": "missing"}

torch, transformers and accelerate make the models' numbers; math-verify, evalplus, lm_eval,
if-verifiable and nltk are the graders' libraries, and `punkt_tab` says whether NLTK's sentence
model data was there ("available" / "missing": without it the IFEval/IFBench sentence checks use an
untrained tokenizer, see tropd.eval.graders.ifeval). A package that is not installed is left out.
Versions come from the installed distributions' metadata (importlib.metadata), without importing
the packages; only the punkt_tab check imports nltk (once per process).

`tropd aggregate` prints the versions the summaries recorded (tropd.report.provenance), not those of
the environment it runs in.
"""
from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("torch", "transformers", "accelerate", "math-verify", "evalplus", "lm_eval", "if-verifiable",
            "nltk")
PUNKT = "punkt_tab"  # key of the NLTK data check


def _punkt() -> str | None:
    """"available" / "missing", or None where nltk is not installed or cannot say."""
    try:
        version("nltk")
    except PackageNotFoundError:
        return None
    try:
        from tropd.eval.graders.ifeval import punkt_available  # imports nltk: only here, lazily

        return "available" if punkt_available() else "missing"
    except Exception:  # a broken nltk must not stop an eval from writing its summary
        return None


@functools.lru_cache(maxsize=None)
def _cached(punkt: bool) -> tuple[tuple[str, str], ...]:
    out = []
    for name in PACKAGES:
        try:
            out.append((name, version(name)))
        except PackageNotFoundError:
            pass
    found = _punkt() if punkt else None
    if found is not None:
        out.append((PUNKT, found))
    return tuple(out)


def package_versions(punkt: bool = True) -> dict[str, str]:
    """{package: version} for the installed ones of PACKAGES, plus "punkt_tab": "available"/"missing"
    where nltk is installed and `punkt` (the graders' data; a training run leaves it out, because the
    check imports nltk, which would count in the run's peak memory and no training number depends on it)."""
    return dict(_cached(punkt))


def format_versions(v: dict) -> str:
    """`torch 2.13.0+cpu, transformers 5.24.0, ..., punkt_tab missing`: PACKAGES' order, then any
    other keys (recorded by another version of this module) alphabetically."""
    order = {k: i for i, k in enumerate((*PACKAGES, PUNKT))}
    keys = sorted(v, key=lambda k: (order.get(k, len(order)), k))
    return ", ".join(f"{k} {v[k]}" for k in keys)
