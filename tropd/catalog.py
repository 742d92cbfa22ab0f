"""Every method, by name: tropd's own (tropd.methods) and the baselines package, registered on import.

The registry (tropd.registry) only holds what `register` was given and imports no method; this module
imports them all and reads it back. Methods import the registry, never this module, so the import
graph has no cycle: entry points and the loop -> catalog -> methods -> registry.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tropd.errors import ConfigError
from tropd.registry import _REGISTRY, Method

if TYPE_CHECKING:
    from tropd.config import RunConfig


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


@dataclass(frozen=True)
class Bound:
    """A run's method, looked up once, with its parameters parsed once by the method's own dataclass:
    what training uses. Made by `bind`, never from raw config keys."""

    name: str
    method: Method
    params: Any


def bind(cfg: RunConfig) -> Bound:
    """The config's method and parsed parameters, after the checks that need the method (tropd.config
    checks everything else, and knows no method): a backend that cannot sample its behaviour policy,
    a multi-stage schedule under FSDP. Raises ConfigError, one line, before any compute."""
    method = get_method(cfg.method.name)
    params = method.parse_params(cfg.method.params)
    from tropd.rollout.policies import Blend

    if cfg.train.backend == "vllm" and isinstance(method.behaviour(params), Blend):
        raise ConfigError(f"train.backend: vllm cannot sample {cfg.method.name}'s token-by-token "
                          "teacher/student blend; use train.backend: hf for it")
    w = cfg.workflow
    if w.train_parallel == "fsdp" and w.gpus_per_train > 1:  # what tropd train would refuse on the GPUs
        from tropd.errors import UserError
        from tropd.infra.fsdp import check_request

        try:
            check_request(w.gpus_per_train, cfg.train.prompts_per_step, method.schedule.multi_stage)
        except UserError as e:
            raise ConfigError(f"workflow.train_parallel=fsdp with {w.gpus_per_train} GPUs, method "
                              f"{cfg.method.name}: {e}") from None
    return Bound(cfg.method.name, method, params)
