"""`tropd prepare`: build (tiny, smol) or check (external) a profile's models and data.

Dispatches on `prepare.kind`. Building is idempotent: a second call with the same settings
prints that the outputs are up to date and does nothing. The profile modules are imported lazily,
so preparing one profile never needs another profile's dependencies.
"""
from __future__ import annotations

import argparse
import importlib

from tropd.config import ExternalPrepare, SmolPrepare, TinyPrepare, load_config
from tropd.data import train_file
from tropd.errors import UserError
from tropd.models import check_profile_models


def prepare_main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, overrides=getattr(args, "overrides", None) or [])
    kind = cfg.prepare
    if isinstance(kind, TinyPrepare):
        from tropd.tiny.build import prepare_tiny

        return prepare_tiny(cfg)
    if isinstance(kind, SmolPrepare):
        return int(importlib.import_module("tropd.smol").prepare(cfg) or 0)
    if isinstance(kind, ExternalPrepare):
        check_profile_models(cfg)
        if not train_file(cfg).is_file():
            raise UserError(f"{train_file(cfg)} is missing: an external profile brings its own training "
                            "prompts, one {id, domain, prompt, reference} object per line (docs/scale.md)")
        print(f"tropd prepare: teacher {cfg.teacher.path}, student {cfg.student.path} and "
              f"{train_file(cfg)} found")
        return 0
    raise AssertionError(f"unhandled prepare kind {type(kind).__name__}")  # the config is typed


main = prepare_main
