"""Every method, by name: tropd's own (tropd.methods) and the baselines package, registered on import.

The registry (tropd.registry) only holds what `register` was given and imports no method; this module
imports them all and reads it back. Methods import the registry, never this module, so the import
graph has no cycle: entry points and the loop -> catalog -> methods -> registry.
"""
from __future__ import annotations

import importlib

from tropd.errors import ConfigError
from tropd.registry import _REGISTRY, Method


def _load_all() -> None:
    importlib.import_module("tropd.methods")
    try:
        importlib.import_module("baselines")  # ships with the project; depends on tropd, not vice versa
    except ModuleNotFoundError as e:  # pragma: no cover
        if e.name != "baselines":
            raise


def get_method(name: str) -> Method:
    _load_all()
    if name not in _REGISTRY:
        raise ConfigError(f"method.name: unknown method '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def all_methods() -> dict[str, Method]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))
