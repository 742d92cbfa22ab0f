"""Starting and stopping vLLM engines: what the rollout backend (tropd.rollout.vllm) and the eval
generator (tropd.eval.vllm_generate) share. vLLM is the `gpu` extra; the caller imports it.

- Where an engine runs is `VLLM_ENABLE_V1_MULTIPROCESSING` at construction: "0" puts vLLM's engine
  core in this process, "1" (vLLM's default) in a child process. Setting os.environ is not enough
  once an in-process engine has started: its EngineCore caches every vLLM env var
  (`vllm.envs.enable_envs_cache`, vLLM PR #29289), so the next engine would read the old value.
  `new_engine` drops that cache (`vllm.envs.disable_envs_cache`, where it exists) first.
- An in-process engine reseeds the process's global generators with its engine seed; `new_engine`
  puts the caller's random state back.
- Dropping an engine does not free its GPU memory (vLLM issues #21073, #23793). `shutdown` stops the
  engine core: a child process exits and its memory goes with it; an in-process core frees what it
  can. `release_gpu`, called once no reference to the engine is left, runs vLLM's own clean-up
  (parallel state, the heap it froze for the garbage collector) and empties the CUDA cache.
"""
from __future__ import annotations

import gc
import os
import random
import sys


def _fresh_env() -> None:
    try:
        from vllm import envs
    except ImportError:  # a vLLM without the module (or a test's fake)
        return
    disable = getattr(envs, "disable_envs_cache", None)  # vLLM >= 0.12
    if callable(disable):
        disable()


def new_engine(vllm, args: dict, in_process: bool):
    """vllm.LLM(**args), its engine core in this process or in a child process.

    An in-process engine seeds the process's global random generators with its engine seed
    (vLLM's worker calls set_random_seed: Python, NumPy, torch CPU and CUDA), which would give every
    training run the same global stream whatever its seed; they are put back as they were."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
    _fresh_env()
    if not in_process:
        return vllm.LLM(**args)
    saved = _rng_state()
    try:
        return vllm.LLM(**args)
    finally:
        _set_rng_state(saved)


def _rng_state() -> tuple:
    import numpy as np
    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _set_rng_state(state: tuple) -> None:
    import numpy as np
    import torch

    py, npy, cpu, cuda = state
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def shutdown(llm) -> None:
    """Stop the engine core of `llm` (LLM.shutdown where vLLM has it, else its engine client's)."""
    for path in (("shutdown",), ("llm_engine", "engine_core", "shutdown")):
        fn = llm
        for attr in path:
            fn = getattr(fn, attr, None)
        if callable(fn):
            fn()
            return


def release_gpu() -> None:
    """Free what stopped engines left, once the caller holds no reference to them."""
    gc.unfreeze()  # an engine freezes the heap at start-up; frozen objects are never collected
    gc.collect()
    if "vllm" in sys.modules:  # never imported: no engine ran, and importing it costs seconds
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
        except ImportError:  # a vLLM without it, or a test's fake
            pass
        else:
            cleanup_dist_env_and_memory()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
